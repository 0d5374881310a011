//! The `otlp` (gRPC; also `otlp_grpc`) and `otlphttp` (also `otlp_http`) exporters: forward OTLP to
//! another Collector or backend, as the Collector's exporters do.

mod grpc;
mod http;
mod retry;

pub use grpc::factory as grpc_factory;
pub use http::factory as http_factory;

use openwit_core::ConfigIssue;
use retry::RetryConfig;
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;

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

/// `tls`: only plaintext is supported for now, so `insecure: true` must be said out loud for
/// endpoints that the Collector would reach over TLS.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub insecure: bool,
}

/// Keys both OTLP exporters share.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Common {
    pub tls: TlsConfig,
    pub headers: BTreeMap<String, String>,
    pub compression: Compression,
    pub retry_on_failure: RetryConfig,
    /// Accepted for compatibility; OpenWit queues in front of every exporter itself.
    pub sending_queue: Option<IgnoredAny>,
}

impl Common {
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

/// The error for a TLS endpoint, which this build cannot reach yet.
fn tls_unsupported(endpoint: &str, what_to_do: &str) -> ConfigIssue {
    ConfigIssue::new("tls", format!("TLS to {endpoint} is not supported yet; {what_to_do}"))
}
