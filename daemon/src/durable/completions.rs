//! Recording completed batches, and the janitor.

use openwit_core::telemetry::Telemetry;
use openwit_core::{Completion, batch_id_text};
use openwit_wal::Wal;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Runs until every ack token and the writer are gone (the pipelines have drained), then syncs the
/// WAL so that the completions of a clean shutdown survive it.
pub async fn run_completions(
    wal: Arc<Mutex<Wal>>,
    mut rx: mpsc::UnboundedReceiver<Completion>,
    telemetry: Arc<Telemetry>,
    janitor_every: Duration,
) {
    let mut janitor = tokio::time::interval(janitor_every);
    janitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            c = rx.recv() => {
                let Some(first) = c else { break };
                let mut batch = vec![first];
                while let Ok(c) = rx.try_recv() {
                    batch.push(c);
                }
                record(&wal, batch, &telemetry).await;
            }
            _ = janitor.tick() => {
                let w = wal.clone();
                let t = telemetry.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                    match w.collect_garbage() {
                        Ok(n) if n > 0 => tracing::debug!(segments = n, "janitor removed fully stored WAL segments"),
                        Ok(_) => {}
                        Err(e) => tracing::error!("janitor: {e}"),
                    }
                    let s = w.stats();
                    t.wal_disk_bytes.set(s.disk_bytes as i64);
                    t.wal_segments.set(s.segments as i64);
                    t.wal_pending_batches.set(s.pending_batches as i64);
                })
                .await;
            }
        }
    }
    let _ = tokio::task::spawn_blocking(move || {
        let mut w = wal.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = w.sync().and_then(|()| w.collect_garbage().map(|_| ())) {
            tracing::error!("WAL sync at shutdown failed: {e}");
        }
    })
    .await;
}

async fn record(wal: &Arc<Mutex<Wal>>, batch: Vec<Completion>, telemetry: &Telemetry) {
    let mut ok = Vec::new();
    for c in batch {
        match c.error {
            None => ok.push(c.id.to_vec()),
            Some(e) => {
                // Kept in the WAL: replayed at the next start.
                tracing::error!(batch = %batch_id_text(&c.id), "batch failed and is kept in the WAL for replay: {e}");
                telemetry
                    .wal_batches
                    .get_or_create(&vec![("outcome".into(), "failed".into())])
                    .inc();
            }
        }
    }
    if ok.is_empty() {
        return;
    }
    let n = ok.len() as u64;
    let w = wal.clone();
    match tokio::task::spawn_blocking(move || {
        w.lock().unwrap_or_else(|p| p.into_inner()).complete(&ok)
    })
    .await
    {
        Ok(Ok(())) => {
            telemetry
                .wal_batches
                .get_or_create(&vec![("outcome".into(), "completed".into())])
                .inc_by(n);
        }
        Ok(Err(e)) => tracing::error!(
            "cannot record completed batches in the WAL (they will be replayed): {e}"
        ),
        Err(e) => tracing::error!("completion task failed: {e}"),
    }
}
