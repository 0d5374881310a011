//! Where OpenWit keeps its files: a local directory, or a prefix in an object store (S3 and
//! S3-compatible servers, GCS, Azure). The daemon opens one `Storage` resolver and hands it to every
//! component that reads or writes files (the Parquet exporter, the query extension), so a bucket is
//! reached with one client, its credentials and its retry policy, whoever asks.

mod destination;
mod endpoint;
mod local;
mod resolver;

pub use destination::Destination;
pub use endpoint::{Endpoint, EndpointError, Service};
pub use local::{create_dir_all_durably, size_and_tail, sync_dir, write_durably, write_durably_with};
pub use resolver::Storage;

use std::path::PathBuf;

/// What went wrong with a store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("storage task failed: {0}")]
    Task(String),
}
