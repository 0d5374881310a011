//! Replaying what the WAL holds without a completion.

use super::metrics::WalMetrics;
use super::{Routes, signal_of};
use openwit_core::memory::{HELD_PER_PROTOBUF_BYTE, MemoryBudget};
use openwit_core::{
    AckToken, Batch, BatchId, Completion, DurableOffsets, LazyPayload, Lineage, Metadata, SourceOffsets, TenantId,
};
use openwit_wal::WalBatch;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Sends each batch through its receiver's pipelines again, waiting for room as needed (at start, for
/// what the WAL holds without a completion; while running, for lost and operator-retried batches).
/// Batches whose receiver or signal no longer has a pipeline stay in the WAL, with an error in the log.
/// At start, a batch read from a source with offsets (Kafka) is also held in `offsets` (its receiver's)
/// until the source's committed offset passes it; the redeliverer passes none (the receiver still holds
/// the batch's receipt then).
pub async fn replay(
    pending: Vec<WalBatch>,
    routes: &Routes,
    memory: &Arc<MemoryBudget>,
    completions: &mpsc::UnboundedSender<Completion>,
    metrics: &WalMetrics,
    track: &super::Tracking,
    mut offsets: Option<&mut HashMap<String, DurableOffsets>>,
) {
    if pending.is_empty() {
        return;
    }
    tracing::info!(batches = pending.len(), "replaying WAL batches that were not fully stored");
    let mut replayed = 0u64;
    for mut b in pending {
        let Some(id) = BatchId::from_slice(&b.id) else {
            tracing::error!("WAL batch with a malformed id skipped");
            continue;
        };
        let text = id.to_string();
        let Some(signal) = signal_of(b.signal) else {
            tracing::error!(batch = %text, signal = b.signal, "WAL batch of unknown signal kept");
            continue;
        };
        let Some(fanout) = routes.get(&(Arc::from(b.receiver.as_str()), signal)) else {
            tracing::error!(batch = %text, receiver = %b.receiver, %signal, "no pipeline for this WAL batch any more; it stays in the WAL");
            continue;
        };
        let held = b.payload.len() as u64 * HELD_PER_PROTOBUF_BYTE;
        let row = super::new_batch(&b, b.payload.len(), &track.node_id);
        // Read as a receiver reads a request: kept as bytes when the conversion reads them.
        let bytes = bytes::Bytes::from(std::mem::take(&mut b.payload));
        let (payload, tenant) = match (LazyPayload::from_protobuf(signal, bytes), TenantId::new(&b.tenant)) {
            (Ok(p), Ok(t)) => (p, t),
            (Err(e), _) => {
                tracing::error!(batch = %text, "WAL batch payload does not decode ({e}); it stays in the WAL");
                continue;
            }
            (_, Err(e)) => {
                tracing::error!(batch = %text, "WAL batch has an invalid tenant ({e}); it stays in the WAL");
                continue;
            }
        };
        track.tracker.send(openwit_catalog::Update::Replayed { batch: row, at: super::now_ms() });
        let metadata: Metadata = b.metadata.into_iter().map(|m| (m.key, m.values)).collect();
        let token = AckToken::redelivered(id, completions.clone());
        for r in offsets.is_some().then_some(&b.sources).into_iter().flatten() {
            let o = SourceOffsets {
                topic: Arc::from(r.topic.as_str()),
                partition: r.partition,
                first: r.first_offset,
                last: r.last_offset,
            };
            if let Some(offsets) = offsets.as_deref_mut() {
                offsets.entry(b.receiver.clone()).or_default().hold_until_committed(&o, token.clone());
            }
        }
        let batch = Batch {
            tenant,
            payload,
            metadata: Arc::new(metadata),
            lineage: Lineage::whole(token, b.items),
            columnar: Default::default(),
            // Waits for room in the budget like a new batch would (the WAL keeps it meanwhile).
            memory: memory.charge(held).await,
        };
        if fanout.send(batch).await.is_err() {
            tracing::error!(batch = %text, "pipeline closed during replay");
            continue;
        }
        track.tracker.send(openwit_catalog::Update::Ingested { batch_id: text, at: super::now_ms() });
        replayed += 1;
    }
    metrics.replayed.inc_by(replayed);
}
