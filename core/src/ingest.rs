//! The durable front door: what receivers hand their decoded requests to.
//!
//! A receiver calls `Ingest::ingest` and answers its client with the result. The daemon's
//! implementation gathers requests into batches, writes each batch to the WAL, fdatasyncs, and only
//! then hands the batch to the pipelines and returns `Ok`: "accepted" always means "on disk".

use crate::{AckToken, ConsumeError, LazyPayload, Metadata, SourceOffsets, TenantId};
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How a receiver gathers requests into WAL batches (`batching:` in its config).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Close a batch once it holds this many items.
    pub max_items: usize,
    /// Close a batch once its requests add up to this many bytes.
    pub max_bytes: usize,
    /// Close a batch this long after its first request. Short: every request waits for it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig { max_items: 8192, max_bytes: 4 << 20, timeout: Duration::from_millis(2) }
    }
}

/// One decoded request.
pub struct IngestRequest {
    /// The receiver's id: batches are replayed into this receiver's pipelines.
    pub receiver: Arc<str>,
    pub tenant: TenantId,
    pub payload: LazyPayload,
    /// The request's protobuf bytes, when the receiver has them (saves re-encoding for the WAL).
    pub raw: Option<bytes::Bytes>,
    pub metadata: Metadata,
    pub batching: BatchingConfig,
    /// How long the request may wait for room in a full pipeline before it is refused.
    pub wait: Duration,
    /// The source offsets the request carries (Kafka), stored with its WAL batch; empty otherwise.
    pub sources: Vec<SourceOffsets>,
}

/// Proof that a request is in the WAL. While any receipt of a WAL batch is held, the batch counts as
/// not complete: it stays in the WAL (and is replayed after a crash) even once every exporter has
/// stored it. A Kafka receiver holds its receipts until the offsets are committed, so the WAL keeps
/// every record the source would redeliver.
#[derive(Debug, Default)]
pub struct Receipt {
    /// Held, never read: dropping the last reference is what completes the batch.
    _token: Option<Arc<AckToken>>,
}

impl Receipt {
    pub fn new(token: Arc<AckToken>) -> Receipt {
        Receipt { _token: Some(token) }
    }
}

/// Accepts requests durably.
#[async_trait]
pub trait Ingest: Send + Sync {
    /// Returns once the request is fsynced in the WAL and handed to its pipelines, or refused.
    async fn ingest(&self, req: IngestRequest) -> Result<Receipt, ConsumeError>;
}
