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
    track: super::Tracking,
    failed: super::FailedSet,
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
                record(&wal, batch, &telemetry, &track, &failed).await;
            }
            _ = janitor.tick() => {
                let w = wal.clone();
                let t = telemetry.clone();
                let tr = track.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                    match w.collect_garbage() {
                        Ok(ids) => cleaned(&tr, ids),
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
        match w.sync().and_then(|()| w.collect_garbage()) {
            Ok(ids) => cleaned(&track, ids),
            Err(e) => tracing::error!("WAL sync at shutdown failed: {e}"),
        }
    })
    .await;
}

/// Tells the tracker which batches' segments the janitor deleted.
fn cleaned(track: &super::Tracking, ids: Vec<Vec<u8>>) {
    if ids.is_empty() {
        return;
    }
    tracing::debug!(batches = ids.len(), "janitor removed fully stored WAL segments");
    let at = super::now_ms();
    for id in ids {
        if let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) {
            track.tracker.send(openwit_catalog::Update::Cleaned { batch_id: batch_id_text(&id), at });
        }
    }
}

async fn record(
    wal: &Arc<Mutex<Wal>>,
    batch: Vec<Completion>,
    telemetry: &Telemetry,
    track: &super::Tracking,
    failed: &super::FailedSet,
) {
    let mut ok = Vec::new();
    let at = super::now_ms();
    for c in batch {
        {
            // Remember failures so that an operator can retry them; forget them once stored.
            let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
            if c.error.is_some() {
                f.insert(c.id);
            } else {
                f.remove(&c.id);
            }
        }
        match c.error {
            None => {
                track.tracker.send(openwit_catalog::Update::Stored { batch_id: batch_id_text(&c.id), at });
                ok.push(c.id.to_vec());
            }
            Some(e) => {
                track.tracker.send(openwit_catalog::Update::Failed {
                    batch_id: batch_id_text(&c.id),
                    stage: openwit_catalog::Stage::Storage,
                    error: e.clone(),
                    at,
                });
                // Kept in the WAL: replayed at the next start.
                tracing::error!(batch = %batch_id_text(&c.id), "batch failed and is kept in the WAL for replay: {e}");
                telemetry.wal_batches.get_or_create(&vec![("outcome".into(), "failed".into())]).inc();
            }
        }
    }
    if ok.is_empty() {
        return;
    }
    let n = ok.len() as u64;
    let w = wal.clone();
    match tokio::task::spawn_blocking(move || w.lock().unwrap_or_else(|p| p.into_inner()).complete(&ok)).await {
        Ok(Ok(())) => {
            telemetry.wal_batches.get_or_create(&vec![("outcome".into(), "completed".into())]).inc_by(n);
        }
        Ok(Err(e)) => tracing::error!("cannot record completed batches in the WAL (they will be replayed): {e}"),
        Err(e) => tracing::error!("completion task failed: {e}"),
    }
}
