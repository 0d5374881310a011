//! The `otlp` (gRPC; also `otlp_grpc`) and `otlphttp` (also `otlp_http`) exporters: forward OTLP to
//! another Collector or backend, as the Collector's exporters do.

mod grpc;
mod http;
mod retry;

pub use grpc::factory as grpc_factory;
pub use http::factory as http_factory;

use openwit_core::auth::{AuthRef, ClientAuth};
use openwit_core::tls::{Side, TlsSettings};
use openwit_core::{Batch, BuildEnv, ConfigIssue};
use retry::RetryConfig;
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Request compression.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
    #[serde(rename = "")]
    Empty,
}

impl Compression {
    fn enabled(self) -> Option<Compression> {
        match self {
            Compression::None | Compression::Empty => None,
            c => Some(c),
        }
    }
}

/// Keys both OTLP exporters share.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Common {
    /// The Collector's client `tls` keys (CA, client certificate, `insecure`, `server_name_override`…).
    pub tls: TlsSettings,
    pub headers: BTreeMap<String, String>,
    pub compression: Compression,
    pub retry_on_failure: RetryConfig,
    /// Accepted for compatibility; OpenWit queues in front of every exporter itself.
    pub sending_queue: Option<IgnoredAny>,
    /// `auth: {authenticator: <extension id>}`: credentials (or headers) added to every request.
    pub auth: Option<AuthRef>,
}

impl Common {
    /// The client side of the referenced authenticator (a wrong reference stops the start).
    fn client_auth(&self, id: &str, env: &BuildEnv) -> anyhow::Result<Option<Arc<dyn ClientAuth>>> {
        self.auth.as_ref().map(|r| env.auth.client(r).map_err(|m| anyhow::anyhow!("exporter {id}: {m}"))).transpose()
    }

    /// The headers of one request for `batch`: the configured ones, then the authenticator's.
    fn request_headers(
        base: &::http::HeaderMap,
        auth: Option<&Arc<dyn ClientAuth>>,
        batch: &Batch,
    ) -> Result<::http::HeaderMap, String> {
        let mut h = base.clone();
        if let Some(a) = auth {
            openwit_core::auth::apply(a.headers(&batch.metadata, &batch.tenant)?, &mut h);
        }
        Ok(h)
    }

    fn check_tls(&self) -> Result<(), ConfigIssue> {
        self.tls.validate(Side::Client).map_err(|i| ConfigIssue::new(format!("tls.{}", i.path), i.message))
    }

    fn check_headers(&self) -> Result<(), ConfigIssue> {
        for (k, v) in &self.headers {
            if ::http::HeaderName::from_bytes(k.as_bytes()).is_err() || ::http::HeaderValue::from_str(v).is_err() {
                return Err(ConfigIssue::new(format!("headers.{k}"), "is not a valid HTTP header name and value"));
            }
        }
        Ok(())
    }

    fn note_ignored(&self, id: &str) {
        if self.sending_queue.is_some() {
            tracing::warn!(exporter = %id, "sending_queue is accepted for Collector compatibility; OpenWit's own bounded queue is used");
        }
    }
}
