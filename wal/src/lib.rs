//! OpenWit's write-ahead log.
//!
//! A directory of segment files `NNNNNNNNNNNNNNNNNNNN.wal`, each starting with a 16-byte header
//! (`OWWAL\r\n\x1a`, format version, reserved) followed by frames: body length (u32 LE), CRC32C of the
//! body (u32 LE), body. A body is a protobuf `Record`: a batch (id, tenant, signal, receiver, items,
//! the OTLP request bytes, metadata, source offsets) or a completion (ids of batches every exporter
//! has stored). Batches are written and fdatasynced before anyone is told they are accepted;
//! completions are written without a sync, because losing one only means a replay that idempotent
//! exporters skip.
//!
//! Recovery reads every segment: a frame that runs past the end of the last segment is a torn write
//! (never acknowledged) and is truncated; any other frame whose CRC fails is copied to
//! `quarantine/`, logged and counted, and reading resumes at the next valid frame.

pub mod format;
pub mod reader;
pub mod writer;

pub use format::{Completion, MetaEntry, Record, SourceRange, WalBatch, record};
pub use reader::{ScanResult, scan_segment};
pub use writer::{Recovered, Wal, WalConfig, WalError, WalStats};
