//! Where queries read from: the daemon's catalog (it connects on first use, so an outage is an error per
//! query, not a failed start) and the storage roots its files name, opened through the daemon's storage
//! resolver (so a bucket an exporter writes is read with the same client and credentials).

use super::engine::{FailureKind, QueryError};
use super::text_search::IndexCache;
use openwit_catalog::Catalog;
use openwit_storage::{Destination, Storage};
use std::collections::BTreeMap;
use std::sync::Arc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Sources {
    catalog: Catalog,
    storage: Arc<Storage>,
    /// For roots no exporter here opened (a bucket other daemons write to): object_store settings,
    /// on top of the standard AWS_/GOOGLE_/AZURE_ environment variables.
    storage_options: BTreeMap<String, String>,
    /// Full-text indexes opened by earlier queries.
    indexes: IndexCache,
}

impl Sources {
    pub fn new(
        catalog: Catalog,
        storage: Arc<Storage>,
        storage_options: BTreeMap<String, String>,
        index_cache_bytes: u64,
    ) -> Sources {
        Sources { catalog, storage, storage_options, indexes: IndexCache::new(index_cache_bytes) }
    }

    /// Indexes kept opened between queries.
    pub fn indexes(&self) -> &IndexCache {
        &self.indexes
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
