//! The WAL's one owner: a thread that holds the open `Wal` and does everything to it — group commits for
//! the writer, completion records, reads for redeliveries, the janitor — in the order it is asked. The
//! WAL's files are touched by nobody else, and its blocking I/O never runs on the async runtime.

use super::metrics::WalMetrics;
use openwit_core::BatchId;
use openwit_wal::{Wal, WalBatch, WalError, WalStats};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

enum Command {
    Append(Vec<WalBatch>, oneshot::Sender<Result<WalStats, WalError>>),
    Complete(Vec<BatchId>),
    Read(Vec<BatchId>, oneshot::Sender<Result<Vec<WalBatch>, WalError>>),
}

/// Asks the WAL's owner to do something. Cheap to clone; the owner stops (after a last sync and
/// janitor pass) once every handle is gone.
#[derive(Clone)]
pub struct WalHandle {
    tx: std_mpsc::Sender<Command>,
}

/// The owner's thread, to wait for at shutdown.
pub struct WalOwner {
    done: oneshot::Receiver<()>,
}

impl WalOwner {
    /// Waits until the owner has synced what it holds and stopped.
    pub async fn stopped(self) {
        let _ = self.done.await;
    }
}

/// The owner's thread went away (it only does at shutdown).
fn gone() -> WalError {
    WalError::Io { path: "WAL".into(), source: std::io::Error::other("the WAL owner has stopped") }
}

impl WalHandle {
    /// Starts the owner thread. `cleaned` hears the ids of batches whose segments the janitor deleted.
    pub fn start(
        wal: Wal,
        janitor_every: Duration,
        metrics: Arc<WalMetrics>,
        cleaned: impl Fn(Vec<BatchId>) + Send + 'static,
    ) -> std::io::Result<(WalHandle, WalOwner)> {
        let (tx, rx) = std_mpsc::channel();
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new().name("openwit-wal".into()).spawn(move || {
            own(wal, rx, janitor_every, &metrics, &cleaned);
            let _ = done_tx.send(());
        })?;
        Ok((WalHandle { tx }, WalOwner { done }))
    }

    /// Writes the batches with one fdatasync (group commit); the WAL's numbers after it.
    pub async fn append(&self, batches: Vec<WalBatch>) -> Result<WalStats, WalError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Append(batches, reply)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Records these batches as complete (not synced: see `Wal::complete`).
    pub fn complete(&self, ids: Vec<BatchId>) {
        // After the owner stopped nothing completes any more; the batches are replayed at next start.
        let _ = self.tx.send(Command::Complete(ids));
    }

    /// Reads back batches that are still pending (missing ones are left out).
    pub async fn read(&self, ids: Vec<BatchId>) -> Result<Vec<WalBatch>, WalError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Read(ids, reply)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

fn own(
    mut wal: Wal,
    rx: std_mpsc::Receiver<Command>,
    janitor_every: Duration,
    metrics: &WalMetrics,
    cleaned: &dyn Fn(Vec<BatchId>),
) {
    let mut next_janitor = Instant::now() + janitor_every;
    loop {
        let wait = next_janitor.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Command::Append(batches, reply)) => {
                let started = Instant::now();
                let r = wal.append_batches(&batches).map(|()| wal.stats());
                metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                if let Ok(s) = &r {
                    metrics.publish(s);
                }
                let _ = reply.send(r);
            }
            Ok(Command::Complete(ids)) => {
                let ids: Vec<Vec<u8>> = ids.iter().map(|id| id.as_bytes().to_vec()).collect();
                if let Err(e) = wal.complete(&ids) {
                    tracing::error!("cannot record completed batches in the WAL (they will be replayed): {e}");
                }
            }
            Ok(Command::Read(ids, reply)) => {
                let r = ids
                    .iter()
                    .map(|id| wal.read_pending(id.as_bytes()))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|found| found.into_iter().flatten().collect());
                let _ = reply.send(r);
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                janitor(&mut wal, metrics, cleaned);
                next_janitor = Instant::now() + janitor_every;
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Every handle is gone (the pipelines have drained): make the completions of a clean shutdown
    // durable, and drop what they free.
    if let Err(e) = wal.sync() {
        tracing::error!("WAL sync at shutdown failed: {e}");
    }
    janitor(&mut wal, metrics, cleaned);
}

/// Deletes fully stored segments.
fn janitor(wal: &mut Wal, metrics: &WalMetrics, cleaned: &dyn Fn(Vec<BatchId>)) {
    match wal.collect_garbage() {
        Ok(ids) if !ids.is_empty() => {
            tracing::debug!(batches = ids.len(), "janitor removed fully stored WAL segments");
            cleaned(ids.iter().filter_map(|id| BatchId::from_slice(id)).collect());
        }
        Ok(_) => {}
        Err(e) => tracing::error!("janitor: {e}"),
    }
    metrics.publish(&wal.stats());
}
