//! The HTTP APIs extensions serve, shared inside one daemon so that several extensions can answer on one
//! port (as `batch_monitor` and `query` do on 8083 by default).

use crate::ComponentId;
use std::collections::BTreeMap;
use std::sync::Mutex;

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
