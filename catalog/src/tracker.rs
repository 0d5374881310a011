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
}

/// How often a node's heartbeat is written.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// The tracker task.
pub struct Tracker;

impl Tracker {
    /// Starts tracking into the catalog at `url`. The task connects (and reconnects) by itself,
    /// keeps the node's heartbeat, and ends once every handle is dropped and what it holds is written
    /// (or, with the catalog still unreachable, after a last attempt).
    pub fn start(url: String, flush_every: Duration, node: NodeInfo) -> (TrackerHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (TrackerHandle { tx }, tokio::spawn(run(url, rx, flush_every, node)))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn run(url: String, mut rx: mpsc::UnboundedReceiver<Update>, flush_every: Duration, node: NodeInfo) {
    let mut last_beat: Option<tokio::time::Instant> = None;
    let mut catalog: Option<Catalog> = None;
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
        if catalog.is_none() && tokio::time::Instant::now() >= next_connect {
            match Catalog::connect(&url).await {
                Ok(c) => {
                    if outage_logged {
                        tracing::info!(catalog = %c.url, queued = queue.len(), "catalog reachable again; tracking catches up");
                    }
                    catalog = Some(c);
                    outage_logged = false;
                    retry_in = Duration::from_millis(200);
                }
                Err(e) => {
                    if !outage_logged {
                        tracing::error!(
                            "batch tracking paused, catalog unreachable ({e}); ingest continues into the WAL"
                        );
                        outage_logged = true;
                    }
                    next_connect = tokio::time::Instant::now() + retry_in;
                    retry_in = (retry_in * 2).min(Duration::from_secs(10));
                }
            }
        }
        if let Some(c) = &catalog
            && last_beat.is_none_or(|t| t.elapsed() >= HEARTBEAT_EVERY)
        {
            match c.heartbeat(&node.node_id, &node.hostname, &node.version, now_ms()).await {
                Ok(()) => last_beat = Some(tokio::time::Instant::now()),
                Err(e) => tracing::warn!("node heartbeat failed: {e}"),
            }
        }
        if let Some(c) = &catalog {
            while !queue.is_empty() {
                let n = queue.len().min(GROUP);
                let group: Vec<Update> = queue.iter().take(n).cloned().collect();
                match c.apply(&group).await {
                    Ok(()) => {
                        queue.drain(..n);
                    }
                    Err(e) => {
                        tracing::warn!("batch tracker write failed ({e}); will retry");
                        catalog = None;
                        break;
                    }
                }
            }
        }
        if closed {
            if queue.is_empty() {
                break;
            }
            if catalog.is_none() && tokio::time::Instant::now() >= next_connect {
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
