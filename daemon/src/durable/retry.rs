//! Operator retries: failed WAL batches sent through their pipelines again, without a restart.

use super::{Routes, Tracking, replay};
use async_trait::async_trait;
use openwit_core::telemetry::Telemetry;
use openwit_core::{BatchId, Completion, Operator, OperatorError, batch_id_text};
use openwit_wal::Wal;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Batches whose last delivery failed; they are still in the WAL.
pub type FailedSet = Arc<Mutex<HashSet<BatchId>>>;

pub struct RetryRequest {
    ids: Option<Vec<String>>,
    reply: oneshot::Sender<Result<usize, OperatorError>>,
}

/// The `Operator` extensions call. It works once the pipelines run, and says so before that.
pub struct OperatorHandle {
    tx: mpsc::Sender<RetryRequest>,
}

pub fn operator() -> (Arc<OperatorHandle>, mpsc::Receiver<RetryRequest>) {
    let (tx, rx) = mpsc::channel(16);
    (Arc::new(OperatorHandle { tx }), rx)
}

#[async_trait]
impl Operator for OperatorHandle {
    async fn retry_failed(&self, batch_ids: Option<Vec<String>>) -> Result<usize, OperatorError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(RetryRequest { ids: batch_ids, reply })
            .await
            .map_err(|_| OperatorError::Unavailable("the pipelines are not running".into()))?;
        rx.await.map_err(|_| OperatorError::Unavailable("the pipelines stopped".into()))?
    }
}

/// Everything a retry needs.
pub struct Retrier {
    pub wal: Arc<Mutex<Wal>>,
    pub routes: Routes,
    pub completions: mpsc::UnboundedSender<Completion>,
    pub telemetry: Arc<Telemetry>,
    pub track: Tracking,
    pub failed: FailedSet,
}

/// Serves retry requests until `stop` (the receivers' stop): it then drops its pipeline handles so
/// that the pipelines can drain.
pub async fn run_retries(mut rx: mpsc::Receiver<RetryRequest>, r: Retrier, stop: CancellationToken) {
    loop {
        let req = tokio::select! {
            req = rx.recv() => match req { Some(req) => req, None => break },
            _ = stop.cancelled() => break,
        };
        let result = retry(&r, req.ids).await;
        let _ = req.reply.send(result);
    }
}

async fn retry(r: &Retrier, ids: Option<Vec<String>>) -> Result<usize, OperatorError> {
    let chosen: Vec<BatchId> = {
        let failed = r.failed.lock().unwrap_or_else(|p| p.into_inner());
        match ids {
            None => failed.iter().copied().collect(),
            Some(ids) => {
                let mut out = Vec::new();
                for text in ids {
                    let id = uuid::Uuid::parse_str(&text).map(|u| *u.as_bytes()).ok().filter(|id| failed.contains(id));
                    out.push(id.ok_or(OperatorError::NotFailed(text))?);
                }
                out
            }
        }
    };
    let wal = r.wal.clone();
    let ids = chosen.clone();
    let batches = tokio::task::spawn_blocking(move || {
        let w = wal.lock().unwrap_or_else(|p| p.into_inner());
        ids.iter().map(|id| w.read_pending(id)).collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| OperatorError::Unavailable(e.to_string()))?
    .map_err(|e| OperatorError::Unavailable(e.to_string()))?;
    let batches: Vec<_> = batches.into_iter().flatten().collect();
    {
        let mut failed = r.failed.lock().unwrap_or_else(|p| p.into_inner());
        for id in &chosen {
            failed.remove(id);
        }
    }
    let n = batches.len();
    tracing::info!(batches = n, ids = ?chosen.iter().map(batch_id_text).collect::<Vec<_>>(), "operator retry of failed batches");
    replay(batches, &r.routes, &r.completions, &r.telemetry, &r.track).await;
    Ok(n)
}
