//! The HTTP APIs extensions serve, shared inside one daemon so that several extensions can answer on one
//! port (as `batch_monitor` and `query` do on 8083 by default).

use crate::ComponentId;
use crate::tls::TlsSettings;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// HTTP routes extensions asked to serve, by listening address.
#[derive(Default)]
pub struct HttpApis {
    routes: Mutex<BTreeMap<String, Vec<ApiRoutes>>>,
}

/// What one extension serves on an endpoint.
pub struct ApiRoutes {
    pub owner: ComponentId,
    pub router: axum::Router,
    /// Its `tls` (extensions sharing an endpoint must give the same).
    pub tls: Option<TlsSettings>,
}

impl HttpApis {
    /// Adds `router` (whose paths must not collide with another extension's on the same endpoint).
    pub fn add(&self, endpoint: &str, owner: &ComponentId, router: axum::Router, tls: Option<TlsSettings>) {
        self.routes.lock().expect("apis lock").entry(endpoint.to_string()).or_default().push(ApiRoutes {
            owner: owner.clone(),
            router,
            tls,
        });
    }

    /// Everything added so far, by endpoint; the registry is left empty.
    pub fn take(&self) -> BTreeMap<String, Vec<ApiRoutes>> {
        std::mem::take(&mut *self.routes.lock().expect("apis lock"))
    }
}
