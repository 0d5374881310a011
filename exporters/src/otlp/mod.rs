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
    /// The queue in front of the exporter, in batches; the WAL behind it keeps every batch until stored.
    pub sending_queue: Option<SendingQueue>,
    /// `auth: {authenticator: <extension id>}`: credentials (or headers) added to every request.
    pub auth: Option<AuthRef>,
}

/// `sending_queue`, as the Collector's exporter helper names it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingQueue {
    pub enabled: bool,
    /// Accepted: exports run one at a time per exporter (order is kept; retries happen in place).
    pub num_consumers: usize,
    /// Batches the queue holds (with `sizer: requests`, the only sizer OpenWit counts in).
    pub queue_size: usize,
    pub sizer: String,
    /// Accepted: the WAL already persists every batch until the exporter stored it.
    pub storage: Option<String>,
    /// Accepted either way: a full queue makes receivers answer "retry later", and nothing accepted is
    /// dropped.
    pub blocking: bool,
    pub block_on_overflow: bool,
    /// Accepted: an exporter's verdict always waits for the result.
    pub wait_for_result: bool,
}

impl Default for SendingQueue {
    fn default() -> Self {
        SendingQueue {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            sizer: "requests".into(),
            storage: None,
            blocking: false,
            block_on_overflow: false,
            wait_for_result: false,
        }
    }
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

    fn check_queue(&self) -> Result<(), ConfigIssue> {
        let Some(q) = &self.sending_queue else { return Ok(()) };
        if q.sizer != "requests" {
            return Err(ConfigIssue::new(
                "sending_queue.sizer",
                format!("{:?} is not supported: OpenWit's queue counts batches (requests)", q.sizer),
            ));
        }
        if q.enabled && q.num_consumers == 0 {
            return Err(ConfigIssue::new("sending_queue.num_consumers", "must be at least 1"));
        }
        if q.enabled && q.queue_size == 0 {
            return Err(ConfigIssue::new("sending_queue.queue_size", "must be at least 1"));
        }
        Ok(())
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
        if self.sending_queue.as_ref().is_some_and(|q| q.storage.is_some()) {
            tracing::info!(exporter = %id, "sending_queue.storage: not needed, the WAL keeps every batch until the exporter stored it");
        }
    }

    /// Batches exported at once: `num_consumers` of an enabled `sending_queue`; without one, 1 (in
    /// order).
    fn consumers(&self) -> usize {
        self.sending_queue.as_ref().filter(|q| q.enabled).map_or(1, |q| q.num_consumers)
    }

    /// Batches the queue holds: `queue_size`, or 1 when the queue is disabled (the pipeline then waits
    /// on the exporter).
    fn queue_capacity(&self) -> Option<usize> {
        self.sending_queue.as_ref().map(|q| if q.enabled { q.queue_size } else { 1 })
    }
}
