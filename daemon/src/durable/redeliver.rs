//! Delivering WAL batches again while the daemon runs:
//! - automatically, when a delivery lost items without a verdict (a component panicked, a queue
//!   closed): after a backoff, up to `wal.max_redeliveries` times in a row; a batch lost every time is
//!   poison — marked failed, kept in the WAL, alerted on — instead of looping forever;
//! - when an operator retries failed batches (the batch monitor's API).

use super::log::WalHandle;
use super::metrics::WalMetrics;
use super::{Routes, Tracking, replay};
use async_trait::async_trait;
use openwit_core::memory::MemoryBudget;
use openwit_core::{BatchId, Completion, Operator, OperatorError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The first automatic redelivery waits this long; each next one twice as long, up to `MAX_DELAY`.
const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(10);

/// What this daemon knows of batches that did not complete: the failed ones (for operator retries)
/// and how often each lost one was delivered again in a row.
#[derive(Clone, Default)]
pub struct Book(Arc<Mutex<Ledger>>);

#[derive(Default)]
struct Ledger {
    failed: HashSet<BatchId>,
    lost: HashMap<BatchId, u32>,
}

impl Book {
    fn with<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The batch is stored: nothing to remember.
    pub fn forget(&self, id: &BatchId) {
        self.with(|l| {
            l.failed.remove(id);
            l.lost.remove(id);
        });
    }

    /// The batch failed: an operator may retry it (with a fresh set of automatic redeliveries).
    pub fn failed(&self, id: BatchId) {
        self.with(|l| {
            l.lost.remove(&id);
            l.failed.insert(id);
        });
    }

    /// Counts one more loss in a row; returns how many.
    fn lost_again(&self, id: BatchId) -> u32 {
        self.with(|l| {
            let n = l.lost.entry(id).or_default();
            *n += 1;
            *n
        })
    }
}

/// A batch lost without a verdict.
pub struct Lost {
    pub id: BatchId,
    pub reason: String,
}

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

/// Everything a redelivery needs.
pub struct Redeliverer {
    pub wal: WalHandle,
    pub routes: Routes,
    pub completions: mpsc::UnboundedSender<Completion>,
    pub metrics: Arc<WalMetrics>,
    pub track: Tracking,
    pub book: Book,
    /// Automatic redeliveries of a batch lost in a row before it is failed as poison.
    pub max_redeliveries: u32,
    pub memory: Arc<MemoryBudget>,
}

/// Serves lost batches and operator requests until `stop` (the receivers' stop): it then drops its
/// pipeline handles so that the pipelines can drain. Batches still waiting stay in the WAL.
pub async fn run(
    r: Redeliverer,
    mut operator: mpsc::Receiver<RetryRequest>,
    mut lost: mpsc::UnboundedReceiver<Lost>,
    stop: CancellationToken,
) {
    let mut due: Vec<(Instant, BatchId)> = Vec::new();
    loop {
        let next = due.iter().map(|(t, _)| *t).min();
        tokio::select! {
            _ = stop.cancelled() => break,
            req = operator.recv() => match req {
                Some(req) => {
                    let result = r.retry(req.ids).await;
                    let _ = req.reply.send(result);
                }
                None => break,
            },
            Some(l) = lost.recv() => {
                let n = r.book.lost_again(l.id);
                if n > r.max_redeliveries {
                    r.poison(l, n);
                } else {
                    let delay = FIRST_DELAY.saturating_mul(1 << (n - 1).min(16)).min(MAX_DELAY);
                    due.push((Instant::now() + delay, l.id));
                }
            }
            _ = sleep_until(next), if next.is_some() => {
                let now = Instant::now();
                let (ready, later): (Vec<_>, Vec<_>) = due.into_iter().partition(|(t, _)| *t <= now);
                due = later;
                let ids: Vec<BatchId> = ready.into_iter().map(|(_, id)| id).collect();
                match r.wal.read(ids).await {
                    Ok(batches) => {
                        tracing::info!(batches = batches.len(), "delivering lost batches again");
                        replay(batches, &r.routes, &r.memory, &r.completions, &r.metrics, &r.track, None).await;
                    }
                    Err(e) => tracing::error!("cannot read lost batches back from the WAL (they stay there): {e}"),
                }
            }
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Redeliverer {
    /// Lost too often in a row: kept in the WAL, failed, for an operator to look at.
    fn poison(&self, l: Lost, deliveries: u32) {
        let error = format!(
            "poison batch: lost without a verdict on {deliveries} deliveries in a row (last: {}); kept in the WAL",
            l.reason
        );
        tracing::error!(batch = %l.id, "{error}");
        self.book.failed(l.id);
        self.track.tracker.send(openwit_catalog::Update::Failed {
            batch_id: l.id.to_string(),
            stage: openwit_catalog::Stage::Storage,
            error,
            at: super::now_ms(),
        });
        self.metrics.failed.inc();
    }

    async fn retry(&self, ids: Option<Vec<String>>) -> Result<usize, OperatorError> {
        let chosen: Vec<BatchId> = self.book.with(|l| match ids {
            None => Ok(l.failed.iter().copied().collect()),
            Some(ids) => ids
                .into_iter()
                .map(|text| {
                    text.parse::<BatchId>()
                        .ok()
                        .filter(|id| l.failed.contains(id))
                        .ok_or(OperatorError::NotFailed(text))
                })
                .collect(),
        })?;
        let batches = self.wal.read(chosen.clone()).await.map_err(|e| OperatorError::Unavailable(e.to_string()))?;
        self.book.with(|l| {
            for id in &chosen {
                l.failed.remove(id);
            }
        });
        let n = batches.len();
        tracing::info!(batches = n, ids = ?chosen, "operator retry of failed batches");
        replay(batches, &self.routes, &self.memory, &self.completions, &self.metrics, &self.track, None).await;
        Ok(n)
    }
}
