//! Batch tracking off the ingest path: updates are queued, grouped into one transaction per flush,
//! and kept in memory while the catalog is unreachable — ingest never waits for the catalog.

use crate::{Catalog, Update};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Updates held while the catalog is unreachable; past this the oldest are dropped (and counted):
/// the WAL, not the tracker, is what guarantees the data.
const MAX_QUEUED: usize = 1_000_000;
/// Largest group written in one transaction.
const GROUP: usize = 5_000;

/// Sends updates to the tracker task. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct TrackerHandle {
    tx: mpsc::UnboundedSender<Update>,
}

impl TrackerHandle {
    pub fn send(&self, u: Update) {
        // After shutdown nobody tracks any more; nothing to do.
        let _ = self.tx.send(u);
    }
}

/// This daemon, as the `nodes` table records it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub node_id: String,
    pub hostname: String,
    pub version: String,
    /// Where the node serves its APIs (`host:port` of its query API), empty when it serves none.
    pub address: String,
    /// When this run of the node started (Unix ms).
    pub started_at: i64,
    /// How often its heartbeat is written; three missed make it `stale`.
    pub heartbeat_every: Duration,
}

/// The tracker task.
pub struct Tracker;

impl Tracker {
    /// Starts tracking into `catalog`. The task keeps the node's heartbeat, waits out outages (backing
    /// off), and ends once every handle is dropped and what it holds is written (or, with the catalog
    /// still unreachable, after a last attempt).
    pub fn start(catalog: Catalog, flush_every: Duration, node: NodeInfo) -> (TrackerHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (TrackerHandle { tx }, tokio::spawn(run(catalog, rx, flush_every, node)))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn run(catalog: Catalog, mut rx: mpsc::UnboundedReceiver<Update>, flush_every: Duration, node: NodeInfo) {
    let mut last_beat: Option<tokio::time::Instant> = None;
    // Whether the last attempt reached the catalog; while not, attempts wait for `next_connect`.
    let mut reachable = false;
    let mut queue: VecDeque<Update> = VecDeque::new();
    let mut dropped = 0u64;
    let mut retry_in = Duration::from_millis(200);
    let mut next_connect = tokio::time::Instant::now();
    let mut outage_logged = false;
    let mut tick = tokio::time::interval(flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closed = false;
    loop {
        let mut due = closed;
        if !closed {
            tokio::select! {
                u = rx.recv() => match u {
                    Some(u) => queue.push_back(u),
                    None => {
                        closed = true;
                        due = true;
                    }
                },
                _ = tick.tick() => due = true,
            }
            while let Ok(u) = rx.try_recv() {
                queue.push_back(u);
            }
            if queue.len() > MAX_QUEUED {
                let excess = queue.len() - MAX_QUEUED;
                queue.drain(..excess);
                dropped += excess as u64;
                tracing::error!(
                    dropped,
                    "batch tracker queue full while the catalog is unreachable; oldest updates dropped (data is safe in the WAL)"
                );
            }
        }
        // Write on the tick, or as soon as a full group is waiting: grouping is what keeps tracking
        // from capping ingest.
        if !due && queue.len() < GROUP {
            continue;
        }
        if !reachable && tokio::time::Instant::now() < next_connect {
            // Backing off during an outage.
        } else if let Err(e) = write(&catalog, &mut queue, &node, &mut last_beat).await {
            if !outage_logged {
                tracing::error!("batch tracking paused, catalog unreachable ({e}); ingest continues into the WAL");
                outage_logged = true;
            }
            reachable = false;
            next_connect = tokio::time::Instant::now() + retry_in;
            retry_in = (retry_in * 2).min(Duration::from_secs(10));
        } else {
            if outage_logged {
                tracing::info!(catalog = %catalog.url, "catalog reachable again; tracking caught up");
            }
            reachable = true;
            outage_logged = false;
            retry_in = Duration::from_millis(200);
        }
        if closed {
            if queue.is_empty() {
                break;
            }
            if !reachable && tokio::time::Instant::now() >= next_connect {
                // One more attempt happens above on the next pass; then give up.
                if retry_in >= Duration::from_secs(2) {
                    tracing::error!(
                        lost = queue.len(),
                        "catalog unreachable at shutdown; these tracking updates are lost (the WAL is intact)"
                    );
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The node's heartbeat when due, then every queued update, in groups.
async fn write(
    catalog: &Catalog,
    queue: &mut VecDeque<Update>,
    node: &NodeInfo,
    last_beat: &mut Option<tokio::time::Instant>,
) -> Result<(), crate::CatalogError> {
    if last_beat.is_none_or(|t| t.elapsed() >= node.heartbeat_every) {
        catalog.heartbeat(node, now_ms()).await?;
        *last_beat = Some(tokio::time::Instant::now());
    }
    while !queue.is_empty() {
        let n = queue.len().min(GROUP);
        let group: Vec<Update> = queue.iter().take(n).cloned().collect();
        catalog.apply(&group).await?;
        queue.drain(..n);
    }
    Ok(())
}
