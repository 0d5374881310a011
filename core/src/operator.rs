//! Actions an operator can take on a running daemon (through an extension's API).

use async_trait::async_trait;

/// What extensions may ask of the running pipelines.
#[async_trait]
pub trait Operator: Send + Sync {
    /// Sends failed WAL batches through their pipelines again: the given ids (in text form), or
    /// every failed batch with `None`. Returns how many were sent.
    async fn retry_failed(&self, batch_ids: Option<Vec<String>>) -> Result<usize, OperatorError>;
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("batch {0} is not a failed batch of this daemon (it may be pending, completed, or held by another node)")]
    NotFailed(String),
    #[error("{0}")]
    Unavailable(String),
}
