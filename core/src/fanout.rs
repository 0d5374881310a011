//! Delivery of one batch to one or more bounded channels.
//!
//! A receiver shared by several pipelines, and a pipeline with several exporters, hand each batch to
//! several channels. Delivery is all-or-nothing: capacity is reserved in every channel first, so a full
//! channel refuses the batch everywhere and the client's retry cannot duplicate it in the others.

use crate::Batch;
use tokio::sync::mpsc;

/// Why a batch could not be handed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    /// A downstream queue stayed full, or the memory budget stayed spent: retryable (HTTP 429, gRPC
    /// `UNAVAILABLE`).
    #[error("the pipeline is full; retry later")]
    Full,
    /// Downstream has stopped (the daemon is shutting down): retryable against a restarted daemon.
    #[error("the pipeline is shutting down; retry later")]
    Closed,
    /// The WAL is over its disk budget: retryable once exporters catch up.
    #[error("the write-ahead log is over its disk budget; retry later")]
    DiskBudget,
    /// The WAL cannot be written (an I/O error): retryable, and an operator should look.
    #[error("the write-ahead log cannot be written: {0}")]
    Unavailable(String),
    /// A `memory_limiter` refuses data while the process is over its soft limit: retryable.
    #[error("{0}")]
    MemoryLimit(String),
}

/// The set of channels a batch is delivered to.
#[derive(Clone, Debug, Default)]
pub struct Fanout {
    targets: Vec<mpsc::Sender<Batch>>,
}

/// Room reserved in one target; owns its sender, so it can be held across an fsync.
pub type Permit = mpsc::OwnedPermit<Batch>;

impl Fanout {
    pub fn new(targets: Vec<mpsc::Sender<Batch>>) -> Fanout {
        Fanout { targets }
    }

    /// One fan-out over the targets of several (a connector route to several pipelines).
    pub fn union<'a>(parts: impl IntoIterator<Item = &'a Fanout>) -> Fanout {
        Fanout { targets: parts.into_iter().flat_map(|f| f.targets.iter().cloned()).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Delivers to every target, waiting as long as it takes. Used inside a pipeline and for replay,
    /// where waiting is how backpressure travels upstream.
    pub async fn send(&self, batch: Batch) -> Result<(), ConsumeError> {
        let mut permits = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            permits.push(t.clone().reserve_owned().await.map_err(|_| ConsumeError::Closed)?);
        }
        Fanout::deliver(permits, batch);
        Ok(())
    }

    /// Reserves room in every target without waiting; `None` if any is full (nothing is held then).
    pub fn try_reserve(&self) -> Result<Option<Vec<Permit>>, ConsumeError> {
        let mut permits = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            match t.clone().try_reserve_owned() {
                Ok(p) => permits.push(p),
                Err(mpsc::error::TrySendError::Full(_)) => return Ok(None),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(ConsumeError::Closed),
            }
        }
        Ok(Some(permits))
    }

    /// Delivers a batch through reserved permits: the last target takes the original, the others
    /// get copies.
    pub fn deliver(permits: Vec<Permit>, batch: Batch) {
        let n = permits.len();
        let mut batch = Some(batch);
        for (i, p) in permits.into_iter().enumerate() {
            let b = if i + 1 == n { batch.take() } else { batch.clone() };
            if let Some(b) = b {
                p.send(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Payload, Signal, TenantId};

    fn batch() -> Batch {
        Batch::new(TenantId::default_tenant(), Payload::empty(Signal::Logs))
    }

    #[tokio::test]
    async fn a_full_target_refuses_everywhere_and_holds_nothing() {
        let (a_tx, mut a_rx) = mpsc::channel(1);
        let (b_tx, mut b_rx) = mpsc::channel(1);
        let f = Fanout::new(vec![a_tx.clone(), b_tx.clone()]);
        b_tx.try_send(batch()).unwrap(); // b is now full
        assert!(f.try_reserve().unwrap().is_none());
        // The refused reservation left a's room free.
        assert_eq!(a_tx.capacity(), 1);
        assert!(a_rx.try_recv().is_err(), "a must not receive a batch that b refused");
        b_rx.recv().await.unwrap();
        let permits = f.try_reserve().unwrap().expect("room in both now");
        Fanout::deliver(permits, batch());
        assert!(a_rx.try_recv().is_ok());
        assert!(b_rx.try_recv().is_ok());
    }

    #[tokio::test]
    async fn batches_left_in_a_closed_queue_are_lost_not_stored() {
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let token = crate::AckToken::new(crate::BatchId([1; 16]), done_tx);
        let (a_tx, a_rx) = mpsc::channel(4);
        let (b_tx, mut b_rx) = mpsc::channel(4);
        let mut b = batch();
        b.lineage = crate::Lineage::whole(token, 3);
        Fanout::new(vec![a_tx, b_tx]).send(b).await.unwrap();
        b_rx.recv().await.unwrap().settle(&crate::Verdict::Stored);
        assert!(done.try_recv().is_err(), "the other path still holds its copy");
        // The consumer of `a` goes away with the copy still queued.
        drop(a_rx);
        assert!(matches!(done.try_recv().unwrap().outcome, crate::Outcome::Lost(_)));
    }

    #[tokio::test]
    async fn send_waits_for_room_and_reports_closed_targets() {
        let (a_tx, mut a_rx) = mpsc::channel(1);
        let f = Fanout::new(vec![a_tx.clone()]);
        a_tx.try_send(batch()).unwrap();
        let sending = tokio::spawn({
            let f = f.clone();
            async move { f.send(batch()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!sending.is_finished(), "send must wait while the target is full");
        a_rx.recv().await.unwrap();
        sending.await.unwrap().unwrap();
        assert!(a_rx.recv().await.is_some());
        drop(a_rx);
        assert_eq!(f.send(batch()).await, Err(ConsumeError::Closed));
        assert_eq!(f.try_reserve().err(), Some(ConsumeError::Closed));
    }
}
