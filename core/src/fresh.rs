//! Fresh data: rows an exporter holds that are not in a stable file yet — buffered in memory and in the
//! row groups of its open (active) files, or in finalized files waiting in staging for their upload.
//!
//! Exporters that hold such rows register a [`FreshSource`]; the query engine takes a [`Snapshot`] of
//! all of them before it lists the catalog's stable files, and leaves out of that listing every file
//! the snapshot holds and every file born after it ([`Snapshot::hidden`]). Each row is then read from
//! exactly one place (the reasoning is in `docs/architecture.md`, "Fresh data").

use crate::Signal;
use arrow::array::RecordBatch;
use parquet::file::metadata::ParquetMetaData;
use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

/// Where a fresh file's rows are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreshState {
    /// An open file: rows in memory, and row groups already written to its `.part` file.
    Active,
    /// Finalized, in staging, waiting for (or in) its upload.
    Staged,
}

impl FreshState {
    /// The name the `files` view shows.
    pub fn as_str(self) -> &'static str {
        match self {
            FreshState::Active => "active",
            FreshState::Staged => "staged",
        }
    }
}

/// One file's rows as they were when the snapshot was taken.
#[derive(Clone, Debug)]
pub struct FreshFile {
    pub file_id: String,
    pub exporter: String,
    pub node_id: String,
    pub state: FreshState,
    pub signal: Signal,
    pub tenant: String,
    /// Time range of every row of the file (buffered ones included), as the catalog will record it.
    pub min_time: i64,
    pub max_time: i64,
    /// Rows in the file and in memory together.
    pub rows: u64,
    /// The file in staging (`.part` while active).
    pub path: PathBuf,
    /// The file, opened: it stays readable when it is renamed, uploaded and removed meanwhile.
    pub file: Arc<File>,
    /// Bytes of `file` that hold Parquet data for this snapshot (active: the row groups written so far).
    pub len: u64,
    /// The Parquet metadata of those bytes: for an active file, its written row groups (the file has no
    /// footer yet); `None` when the footer is to be read from the file.
    pub metadata: Option<Arc<ParquetMetaData>>,
    /// Rows not encoded yet (active files only). Columns that repeat in runs may be held as dictionaries
    /// over their runs (the Parquet exporter's `runs`): read them in the table's types through
    /// `columnar::conform`.
    pub buffered: Vec<RecordBatch>,
}

impl FreshFile {
    /// Rows in `buffered`.
    pub fn buffered_rows(&self) -> usize {
        self.buffered.iter().map(RecordBatch::num_rows).sum()
    }

    /// Whether `len` bytes of the file hold row groups to read.
    pub fn has_row_groups(&self) -> bool {
        match &self.metadata {
            Some(m) => m.num_row_groups() > 0,
            None => self.len > 0,
        }
    }
}

/// What one source holds at one moment.
pub struct SourceSnapshot {
    pub files: Vec<FreshFile>,
    /// The source's count of files it opened, at the snapshot (see [`FreshSource::born_after`]).
    pub cut: u64,
}

/// Something holding rows that are acknowledged but not in a stable file yet.
pub trait FreshSource: Send + Sync {
    /// The files of `signal` (of `tenant`, or every tenant) as they are now, taken atomically: a file
    /// that moves from active to staged is in the snapshot once, in one of the two states; a staged
    /// file leaves only after the catalog records it stable.
    fn snapshot(&self, signal: Option<Signal>, tenant: Option<&str>) -> SourceSnapshot;
    /// Ids of the files this source opened after `cut` (of its snapshots) that may be in the catalog by
    /// now: their rows were written after the snapshot (or written again after a failure), so a query
    /// over the snapshot leaves them out.
    fn born_after(&self, cut: u64) -> HashSet<String>;
}

/// Every fresh source of the daemon: exporters register theirs, the query engine snapshots them.
#[derive(Default)]
pub struct FreshData {
    sources: Mutex<Vec<Weak<dyn FreshSource>>>,
}

impl FreshData {
    /// Adds a source; it is forgotten once dropped (an exporter rebuilt registers its successor).
    pub fn register(&self, source: &Arc<dyn FreshSource>) {
        let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        s.retain(|w| w.strong_count() > 0);
        s.push(Arc::downgrade(source));
    }

    /// Snapshots every live source. Blocking (it waits for each source's lock): call it off the async
    /// workers.
    pub fn snapshot(&self, signal: Option<Signal>, tenant: Option<&str>) -> Snapshot {
        let sources: Vec<Arc<dyn FreshSource>> =
            self.sources.lock().unwrap_or_else(|p| p.into_inner()).iter().filter_map(Weak::upgrade).collect();
        let mut snap = Snapshot::default();
        for s in sources {
            let taken = s.snapshot(signal, tenant);
            snap.files.extend(taken.files);
            snap.cuts.push((s, taken.cut));
        }
        snap
    }
}

/// The fresh files of every source at one moment.
#[derive(Default)]
pub struct Snapshot {
    pub files: Vec<FreshFile>,
    cuts: Vec<(Arc<dyn FreshSource>, u64)>,
}

impl Snapshot {
    /// Files to leave out of a catalog listing made after this snapshot: those the snapshot holds
    /// (read from here instead) and those born after it. Call it after the listing.
    pub fn hidden(&self) -> HashSet<String> {
        let mut ids: HashSet<String> = self.files.iter().map(|f| f.file_id.clone()).collect();
        for (s, cut) in &self.cuts {
            ids.extend(s.born_after(*cut));
        }
        ids
    }
}
