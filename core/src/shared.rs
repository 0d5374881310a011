//! Things components share inside one daemon: the object stores exporters opened (so the query
//! extension reads with the same clients and credentials), and the HTTP APIs extensions serve (so
//! several extensions can answer on one port, as `batch_monitor` and `query` do on 8083 by default).

use crate::ComponentId;
use object_store::ObjectStore;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Object stores by bucket URL (`s3://bucket`, `gs://bucket`, `az://container`).
#[derive(Default)]
pub struct Stores {
    by_url: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Stores {
    /// Remembers the store for `bucket_url`; the first one registered for a bucket is kept.
    pub fn register(&self, bucket_url: &str, store: Arc<dyn ObjectStore>) {
        self.by_url.lock().expect("stores lock").entry(bucket_url.to_string()).or_insert(store);
    }

    pub fn get(&self, bucket_url: &str) -> Option<Arc<dyn ObjectStore>> {
        self.by_url.lock().expect("stores lock").get(bucket_url).cloned()
    }
}

/// HTTP routes extensions asked to serve, by listening address.
#[derive(Default)]
pub struct HttpApis {
    routes: Mutex<BTreeMap<String, Vec<(ComponentId, axum::Router)>>>,
}

impl HttpApis {
    /// Adds `router` (whose paths must not collide with another extension's on the same endpoint).
    pub fn add(&self, endpoint: &str, owner: &ComponentId, router: axum::Router) {
        self.routes.lock().expect("apis lock").entry(endpoint.to_string()).or_default().push((owner.clone(), router));
    }

    /// Everything added so far, by endpoint; the registry is left empty.
    pub fn take(&self) -> BTreeMap<String, Vec<(ComponentId, axum::Router)>> {
        std::mem::take(&mut *self.routes.lock().expect("apis lock"))
    }
}
