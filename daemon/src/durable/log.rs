//! The WAL's one owner: a thread that holds the open `Wal` and does everything to it — group commits for
//! the writer, completion records, reads for redeliveries, the janitor — in the order it is asked. The
//! WAL's files are touched by nobody else, and its blocking I/O never runs on the async runtime.

use super::metrics::WalMetrics;
use openwit_core::BatchId;
use openwit_wal::{OutgoingBatch, Wal, WalBatch, WalError, WalStats};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

enum Command {
    Append(Vec<OutgoingBatch>, oneshot::Sender<Result<WalStats, WalError>>),
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
    pub async fn append(&self, batches: Vec<OutgoingBatch>) -> Result<WalStats, WalError> {
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
        // Checked before waiting, not only on a quiet channel: under steady load commands never stop
        // coming, and the janitor must still run on time.
        if Instant::now() >= next_janitor {
            janitor(&mut wal, metrics, cleaned);
            next_janitor = Instant::now() + janitor_every;
        }
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
            // The janitor's turn comes at the top of the loop.
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use openwit_core::telemetry::Telemetry;

    fn batch(n: u8) -> OutgoingBatch {
        let header = WalBatch { id: vec![n; 16], signal: 3, tenant: "t".into(), items: 1, ..Default::default() };
        OutgoingBatch::new(header, vec![bytes::Bytes::from(vec![0; 600 << 10])])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_janitor_runs_on_time_under_a_steady_stream_of_commands() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = openwit_wal::WalConfig {
            dir: dir.path().to_path_buf(),
            fsync: false,
            segment_bytes: 1 << 20,
            max_disk_bytes: 1 << 30,
        };
        let (wal, _) = Wal::open(cfg).unwrap();
        let cleaned = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = cleaned.clone();
        let metrics = Arc::new(WalMetrics::register(&Telemetry::default()));
        let (h, _owner) = WalHandle::start(wal, Duration::from_millis(50), metrics, move |ids| {
            seen.lock().unwrap().extend(ids);
        })
        .unwrap();
        // Three segments' worth of batches, all complete: the first segments may go.
        for n in 1..=6 {
            h.append(vec![batch(n)]).await.unwrap();
        }
        h.complete((1..=6).map(|n| BatchId([n; 16])).collect());
        // Commands keep coming, back to back: the channel is never quiet.
        let flood = h.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let sender = std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                flood.complete(Vec::new());
            }
        });
        let deadline = Instant::now() + Duration::from_millis(600);
        while Instant::now() < deadline && cleaned.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sender.join().unwrap();
        assert!(!cleaned.lock().unwrap().is_empty(), "the janitor never ran while commands kept coming");
    }
}
