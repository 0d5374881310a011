//! Where queries read from: the daemon's catalog (it connects on first use, so an outage is an error per
//! query, not a failed start) and the storage roots its files name, opened through the daemon's storage
//! resolver (so a bucket an exporter writes is read with the same client and credentials).

use super::bloom_filters::BloomFilterCache;
use super::engine::Limits;
use super::engine::{FailureKind, QueryError};
use super::read_cache::{CachingStore, ReadCache};
use super::text_search::IndexCache;
use object_store::ObjectStore;
use openwit_catalog::Catalog;
use openwit_core::Signal;
use openwit_core::fresh::{FreshData, Snapshot};
use openwit_storage::{Destination, Storage};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Sources {
    catalog: Catalog,
    storage: Arc<Storage>,
    /// For roots no exporter here opened (a bucket other daemons write to): object_store settings,
    /// on top of the standard AWS_/GOOGLE_/AZURE_ environment variables.
    storage_options: BTreeMap<String, String>,
    /// Full-text indexes opened by earlier queries.
    indexes: IndexCache,
    /// Bloom filters read by earlier queries.
    blooms: Arc<BloomFilterCache>,
    /// Rows the daemon's exporters hold that are not in stable files yet.
    fresh: Arc<FreshData>,
    /// Remote stores are read through the read cache with a bound on requests in flight.
    remote: Option<(Arc<ReadCache>, usize)>,
    /// The wrapped store of each bucket (one bound per bucket, shared by every query).
    wrapped: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Sources {
    pub fn new(
        catalog: Catalog,
        storage: Arc<Storage>,
        storage_options: BTreeMap<String, String>,
        limits: &Limits,
        fresh: Arc<FreshData>,
    ) -> Sources {
        Sources {
            catalog,
            storage,
            storage_options,
            indexes: IndexCache::new(limits.index_cache_bytes),
            blooms: Arc::new(BloomFilterCache::new(limits.bloom_filter_cache_bytes)),
            fresh,
            remote: None,
            wrapped: Mutex::default(),
        }
    }

    pub fn set_remote_reads(&mut self, cache: Arc<ReadCache>, max_concurrent: usize) {
        self.remote = Some((cache, max_concurrent));
    }

    /// The URL and store a destination is read through: a bucket through the read cache (when set),
    /// local directories as they are.
    pub fn store(&self, dest: &Destination) -> (String, Arc<dyn ObjectStore>) {
        let (url, store) = dest.store();
        let Some((cache, max)) = &self.remote else { return (url, store) };
        if url == "file://" {
            return (url, store);
        }
        let mut w = self.wrapped.lock().unwrap_or_else(|p| p.into_inner());
        let wrapped = w
            .entry(url.clone())
            .or_insert_with(|| Arc::new(CachingStore::new(store, &url, cache.clone(), *max)) as Arc<dyn ObjectStore>)
            .clone();
        (url, wrapped)
    }

    /// The fresh files of `signal` (every table when `None`) and `tenant`, as they are now. Taken before
    /// the catalog is listed (see `Snapshot::hidden`).
    pub async fn fresh(&self, signal: Option<Signal>, tenant: &str) -> Snapshot {
        let (fresh, tenant) = (self.fresh.clone(), tenant.to_string());
        // The exporters' locks may be held while a row group is encoded: wait off the async workers.
        tokio::task::spawn_blocking(move || fresh.snapshot(signal, Some(&tenant))).await.unwrap_or_default()
    }

    /// Indexes kept opened between queries.
    pub fn indexes(&self) -> &IndexCache {
        &self.indexes
    }

    /// Bloom filters kept between queries.
    pub fn bloom_filters(&self) -> &Arc<BloomFilterCache> {
        &self.blooms
    }

    /// The catalog; a catalog error met through it is reported as unavailable.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A catalog error, as the query's answer.
    pub fn unavailable(&self, e: openwit_catalog::CatalogError) -> BoxError {
        let message = format!("catalog {} unavailable: {e}", self.catalog.display_url());
        Box::new(QueryError::new(FailureKind::Unavailable, message))
    }

    /// The destination a file's `root` names, opened on first use.
    pub fn destination(&self, root: &str) -> Result<Arc<Destination>, BoxError> {
        self.storage
            .open_for_reading(root, &self.storage_options)
            .map_err(|e| format!("cannot open the store {root} that the catalog names: {e}").into())
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sources({})", self.catalog.display_url())
    }
}
