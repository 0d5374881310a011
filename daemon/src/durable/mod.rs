//! Durable ingest: requests become WAL batches, fsynced before anyone hears "accepted".
//!
//! - `writer`: gathers requests into batches per (receiver, signal, tenant, metadata), reserves room in
//!   the batch's pipelines, writes every ready batch and fdatasyncs once (group commit), then hands
//!   the batches on and answers the requests;
//! - `log`: the WAL's one owner (a thread): commits, completion records, reads, the janitor;
//! - `completions`: acts on each batch's outcome once every path settled it: stored batches get a
//!   completion record, failed ones are marked, lost ones go to the redeliverer;
//! - `replay`: sends WAL batches through their pipelines again: at start (before receivers accept
//!   anything new), and for the redeliverer;
//! - `redeliver`: lost batches delivered again with backoff (poison after `wal.max_redeliveries`), and
//!   operator retries of failed ones.

mod completions;
mod log;
mod metrics;
pub mod redeliver;
mod replay;
mod writer;

pub use completions::run_completions;
pub use log::{WalHandle, WalOwner};
pub use metrics::WalMetrics;

/// Where batch tracking goes, and who this daemon is in it.
#[derive(Clone)]
pub struct Tracking {
    pub tracker: openwit_catalog::TrackerHandle,
    pub node_id: std::sync::Arc<str>,
}

/// Milliseconds since the Unix epoch, as the catalog stores times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The catalog's view of a WAL batch.
/// The catalog's row for a batch written to the WAL: `b`'s fields, `payload_len` its payload's bytes
/// (a batch being written holds its payload in parts, see `OutgoingBatch`).
pub fn new_batch(b: &openwit_wal::WalBatch, payload_len: usize, node_id: &str) -> openwit_catalog::NewBatch {
    let text = openwit_core::BatchId::from_slice(&b.id).map(|i| i.to_string()).unwrap_or_default();
    let topics: Vec<String> = b.sources.iter().map(|s| format!("{}/{}", s.topic, s.partition)).collect();
    openwit_catalog::NewBatch {
        batch_id: text,
        client_id: b.tenant.clone(),
        signal: signal_of(b.signal).map_or("unknown", |s| s.as_str()).to_string(),
        receiver: b.receiver.clone(),
        node_id: node_id.to_string(),
        item_count: i64::from(b.items),
        byte_size: payload_len as i64,
        topics: (!topics.is_empty()).then(|| topics.join(",")),
        first_offset: b.sources.iter().map(|s| s.first_offset).min(),
        last_offset: b.sources.iter().map(|s| s.last_offset).max(),
        created_at: b.created_unix_ms,
    }
}
pub use redeliver::{Book, Redeliverer, RetryRequest, operator};
pub use replay::replay;
pub use writer::{Durable, Gates, Routes};

use openwit_core::Signal;

/// The signal number used in WAL records.
pub fn signal_code(s: Signal) -> i32 {
    match s {
        Signal::Traces => 1,
        Signal::Metrics => 2,
        Signal::Logs => 3,
    }
}

pub fn signal_of(code: i32) -> Option<Signal> {
    match code {
        1 => Some(Signal::Traces),
        2 => Some(Signal::Metrics),
        3 => Some(Signal::Logs),
        _ => None,
    }
}
