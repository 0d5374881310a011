//! Acting on each WAL batch's outcome, once every path has settled it.

use super::log::WalHandle;
use super::metrics::WalMetrics;
use super::redeliver::{Book, Lost};
use openwit_core::{Completion, Outcome};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Runs until every ack token is gone (the pipelines have drained):
/// - stored → a completion record in the WAL (the janitor may then delete it), `storage_pip` in the catalog;
/// - failed (retryable or permanent verdict) → kept in the WAL, marked failed in the catalog, listed for
///   an operator retry;
/// - lost (dropped without a verdict) → handed to the redeliverer, which sends it again.
pub async fn run_completions(
    wal: WalHandle,
    mut rx: mpsc::UnboundedReceiver<Completion>,
    metrics: Arc<WalMetrics>,
    track: super::Tracking,
    book: Book,
    lost: mpsc::UnboundedSender<Lost>,
) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while let Ok(c) = rx.try_recv() {
            group.push(c);
        }
        let at = super::now_ms();
        let mut stored = Vec::new();
        for c in group {
            let error = c.outcome.error();
            match c.outcome {
                Outcome::Stored => {
                    book.forget(&c.id);
                    track.tracker.send(openwit_catalog::Update::Stored { batch_id: c.id.to_string(), at });
                    stored.push(c.id);
                }
                Outcome::Lost(reason) => {
                    tracing::warn!(batch = %c.id, "batch lost without a verdict ({reason}); it will be delivered again");
                    // After the redeliverer stopped (shutdown), the batch simply stays in the WAL.
                    let _ = lost.send(Lost { id: c.id, reason });
                }
                Outcome::Failed(_) | Outcome::Permanent(_) => {
                    let e = error.unwrap_or_default();
                    book.failed(c.id);
                    track.tracker.send(openwit_catalog::Update::Failed {
                        batch_id: c.id.to_string(),
                        stage: openwit_catalog::Stage::Storage,
                        error: e.clone(),
                        at,
                    });
                    tracing::error!(batch = %c.id, "batch failed and is kept in the WAL: {e}");
                    metrics.failed.inc();
                }
            }
        }
        if !stored.is_empty() {
            metrics.completed.inc_by(stored.len() as u64);
            wal.complete(stored);
        }
    }
}
