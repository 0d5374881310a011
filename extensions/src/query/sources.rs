//! Where queries read from: the catalog (connected on first use, so an outage is an error per query,
//! not a failed start) and the stores its files name, opened once per root.

use super::engine::{FailureKind, QueryError};
use openwit_catalog::Catalog;
use openwit_core::shared::Stores;
use openwit_exporters::parquet::destination::Destination;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Sources {
    catalog_url: String,
    catalog: OnceCell<Catalog>,
    /// Stores this daemon's exporters opened, by bucket URL: read with the same client and credentials.
    shared: Arc<Stores>,
    /// For roots no exporter here opened (a bucket other daemons write to): object_store settings,
    /// on top of the standard AWS_/GOOGLE_/AZURE_ environment variables.
    storage_options: BTreeMap<String, String>,
    opened: Mutex<HashMap<String, Arc<Destination>>>,
}

impl Sources {
    pub fn new(catalog_url: String, shared: Arc<Stores>, storage_options: BTreeMap<String, String>) -> Sources {
        Sources { catalog_url, catalog: OnceCell::new(), shared, storage_options, opened: Mutex::default() }
    }

    pub async fn catalog(&self) -> Result<&Catalog, BoxError> {
        self.catalog.get_or_try_init(|| Catalog::connect(&self.catalog_url)).await.map_err(|e| {
            let message = format!("catalog {} unavailable: {e}", openwit_catalog::redact(&self.catalog_url));
            Box::new(QueryError::new(FailureKind::Unavailable, message)) as BoxError
        })
    }

    /// The destination a file's `root` names, opened on first use.
    pub fn destination(&self, root: &str) -> Result<Arc<Destination>, BoxError> {
        let mut opened = self.opened.lock().expect("sources lock");
        if let Some(d) = opened.get(root) {
            return Ok(d.clone());
        }
        let mut dest = Destination::open_for_reading(root, &self.storage_options)
            .map_err(|e| format!("cannot open the store {root} that the catalog names: {e}"))?;
        let (url, _) = dest.store();
        if let Some(store) = self.shared.get(&url) {
            dest = dest.with_store(store);
        }
        let dest = Arc::new(dest);
        opened.insert(root.to_string(), dest.clone());
        Ok(dest)
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sources({})", openwit_catalog::redact(&self.catalog_url))
    }
}
