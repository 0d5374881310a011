//! Delivery of one batch to one or more bounded channels.
//!
//! A receiver shared by several pipelines, and a pipeline with several exporters, hand each batch to
//! several channels. Delivery is all-or-nothing: capacity is reserved in every channel first, so a full
//! channel refuses the batch everywhere and the client's retry cannot duplicate it in the others.

use crate::Batch;
use std::time::Duration;
use tokio::sync::mpsc;

/// Why a batch could not be handed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    /// A downstream queue stayed full: retryable (HTTP 429/503, gRPC `UNAVAILABLE`).
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
}

/// The set of channels a batch is delivered to.
#[derive(Clone, Debug, Default)]
pub struct Fanout {
    targets: Vec<mpsc::Sender<Batch>>,
}

impl Fanout {
    pub fn new(targets: Vec<mpsc::Sender<Batch>>) -> Fanout {
        Fanout { targets }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Delivers to every target, waiting at most `wait` for capacity. Used at the edge, where a full
    /// pipeline must turn into a retryable answer to the client rather than an unbounded wait.
    pub async fn send_within(&self, batch: Batch, wait: Duration) -> Result<(), ConsumeError> {
        match tokio::time::timeout(wait, self.reserve_all()).await {
            Ok(Ok(permits)) => {
                deliver(permits, batch);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConsumeError::Full),
        }
    }

    /// Delivers to every target, waiting as long as it takes. Used inside a pipeline, where waiting is
    /// how backpressure travels upstream to the edge.
    pub async fn send(&self, batch: Batch) -> Result<(), ConsumeError> {
        let permits = self.reserve_all().await?;
        deliver(permits, batch);
        Ok(())
    }

    /// Reserves room in every target without waiting; `None` if any is full (nothing is held then).
    /// The permits own their senders, so they can be held across an fsync.
    pub fn try_reserve_owned(&self) -> Result<Option<Vec<mpsc::OwnedPermit<Batch>>>, ConsumeError> {
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

    /// Delivers a batch through permits from `try_reserve_owned`.
    pub fn deliver_owned(permits: Vec<mpsc::OwnedPermit<Batch>>, batch: Batch) {
        let n = permits.len();
        let mut batch = Some(batch);
        for (i, p) in permits.into_iter().enumerate() {
            let b = if i + 1 == n { batch.take() } else { batch.clone() };
            if let Some(b) = b {
                p.send(b);
            }
        }
    }

    async fn reserve_all(&self) -> Result<Vec<mpsc::Permit<'_, Batch>>, ConsumeError> {
        let mut permits = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            permits.push(t.reserve().await.map_err(|_| ConsumeError::Closed)?);
        }
        Ok(permits)
    }
}

fn deliver(permits: Vec<mpsc::Permit<'_, Batch>>, batch: Batch) {
    let n = permits.len();
    let mut batch = Some(batch);
    for (i, p) in permits.into_iter().enumerate() {
        // The last target takes the original; the others get copies.
        let b = if i + 1 == n { batch.take() } else { batch.clone() };
        if let Some(b) = b {
            p.send(b);
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
    async fn full_target_refuses_everywhere() {
        let (a_tx, mut a_rx) = mpsc::channel(1);
        let (b_tx, mut b_rx) = mpsc::channel(1);
        let f = Fanout::new(vec![a_tx, b_tx.clone()]);
        b_tx.try_send(batch()).unwrap(); // b is now full
        let r = f.send_within(batch(), Duration::from_millis(20)).await;
        assert_eq!(r, Err(ConsumeError::Full));
        assert!(a_rx.try_recv().is_err(), "a must not receive a batch that b refused");
        b_rx.recv().await.unwrap();
        f.send_within(batch(), Duration::from_millis(20)).await.unwrap();
        assert!(a_rx.try_recv().is_ok());
        assert!(b_rx.try_recv().is_ok());
    }

    #[tokio::test]
    async fn closed_target_reports_closed() {
        let (a_tx, a_rx) = mpsc::channel(1);
        drop(a_rx);
        let f = Fanout::new(vec![a_tx]);
        assert_eq!(f.send(batch()).await, Err(ConsumeError::Closed));
    }
}
