//! Authenticator extensions, as the Collector names them: `bearertokenauth` and `basicauth`. Each is
//! declared under `extensions`, listed in `service.extensions`, and referenced by
//! `auth: {authenticator: <id>}` on a receiver's protocol, an exporter, or OpenWit's API port.

pub mod basicauth;
pub mod bearertokenauth;
pub mod headers_setter;
mod htpasswd;

use async_trait::async_trait;
use openwit_core::auth::Authenticator;
use openwit_core::{Extension, ExtensionContext};
use tokio::task::JoinHandle;

/// An authenticator runs nothing of its own: it is consulted by the components that reference it.
struct AuthExtension(Authenticator);

#[async_trait]
impl Extension for AuthExtension {
    async fn start(self: Box<Self>, _ctx: ExtensionContext) -> anyhow::Result<JoinHandle<()>> {
        Ok(tokio::spawn(async {}))
    }

    fn authenticator(&self) -> Option<Authenticator> {
        Some(self.0.clone())
    }
}
