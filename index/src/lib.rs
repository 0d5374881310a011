//! OpenWit's full-text index: one Tantivy index per Parquet file of logs, built from the file's Arrow
//! rows (`build`), kept as one object beside the file (`bundle`: Tantivy's files end to end with a table
//! of contents, readable whole or by byte ranges), and searched for the rows of the file a query matches
//! (`search`). Each indexed document carries its row number in the file, so a hit is a row to read.
//!
//! What is indexed, per log row: `body` as analysed text (lower-cased words, with positions for phrases);
//! as exact terms `severity_text`, `service_name`, `trace_id` (lower-case hex) and every string attribute
//! as `key=value`.

pub mod build;
pub mod bundle;
pub mod scan;
pub mod search;

/// The index's field names (what `text_match` and `match_all` address).
pub mod fields {
    /// The row of the Parquet file a document stands for (a fast field).
    pub const ROW: &str = "row";
    pub const BODY: &str = "body";
    pub const SEVERITY_TEXT: &str = "severity_text";
    pub const SERVICE_NAME: &str = "service_name";
    pub const TRACE_ID: &str = "trace_id";
    /// String attributes as `key=value` terms.
    pub const ATTRIBUTES: &str = "attributes";
    /// The fields a query without a field name searches (`match_all`).
    pub const ALL_TEXT: [&str; 5] = [BODY, SEVERITY_TEXT, SERVICE_NAME, TRACE_ID, ATTRIBUTES];
}

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
