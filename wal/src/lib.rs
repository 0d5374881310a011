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
//! A commit whose write or fdatasync fails is refused, and the WAL makes sure its frames are never replayed:
//! after a failed write it truncates them away and syncs; after a failed fdatasync it never writes to or
//! syncs that segment again (the kernel may have dropped the pages, and a second fdatasync could succeed
//! without writing them) and records the batches as voided in a fresh segment, synced, before appending
//! anything else. Until that record is durable (a full or failing disk), every append is refused.
//!
//! Recovery reads every segment: a frame that runs past the end of the last segment is a torn write
//! (never acknowledged) and is truncated; any other frame whose CRC fails is copied to
//! `quarantine/`, logged and counted, and reading resumes at the next valid frame. A segment that cannot
//! be read at all (an I/O error, a damaged header) is moved to `quarantine/` whole and the rest replays.

pub mod format;
pub mod reader;
pub mod writer;

pub use format::{Appendable, Completion, MetaEntry, OutgoingBatch, Record, SourceRange, Voided, WalBatch, record};
pub use reader::{ScanResult, scan_segment};
pub use writer::{QuarantinedSegment, Recovered, Wal, WalConfig, WalError, WalStats};
