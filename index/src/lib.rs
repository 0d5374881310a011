//! OpenWit's full-text index: one Tantivy index per Parquet file of logs or spans, built from the file's
//! Arrow rows (`build`) as its table's `spec` says, kept as one object beside the file (`bundle`:
//! Tantivy's files end to end, each compressed, with a table of contents), and searched for the rows of the file a query
//! matches (`search`). Each indexed document carries its row number in the file, and the bundle holds
//! every row's time (`time`), so a hit is a row to read (or, for counts and histograms, already the
//! answer). `scan` answers the same queries over rows in memory, with the same analysis.
//!
//! What is indexed by default, per log row: `body` as analysed text (lower-cased words, with positions
//! for phrases); as exact terms `severity_text`, `service_name` and every string attribute as
//! `key=value` (`trace_id` as lower-case hex when configured). Per span: `name`, `status_message` and event names as text, string
//! attributes as `key=value`.

pub mod build;
pub mod bundle;
pub mod scan;
pub mod search;
pub mod spec;
pub mod time;

/// The Tantivy this crate builds with (queries over its indexes use the same).
pub use tantivy;

/// What can go wrong building, reading or searching an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the rows cannot be indexed: {0}")]
    Rows(String),
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("the index bundle is damaged: {0}")]
    Bundle(String),
    #[error("the query {query:?} is not valid: {message}")]
    Query { query: String, message: String },
    #[error("I/O while building the index: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests;
