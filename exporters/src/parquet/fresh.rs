//! What queries see of this exporter before its files are stable: the active files (rows buffered in
//! memory and row groups written to their `.part` files) and the finalized files waiting in staging.
//!
//! Two owners, one lock order: the writer (behind its mutex) owns the active files; [`FreshFiles`] (its
//! own small mutex, taken inside the writer's) holds the staged files and the files opened lately. A
//! file moves from active to staged under both locks, so a snapshot (which takes both) sees it once;
//! the uploader removes a staged file only after the catalog has committed it `stable`, so a catalog
//! listing made after a snapshot that missed it finds it there.

use super::writer::Writer;
use openwit_core::Signal;
use openwit_core::fresh::{FreshFile, FreshSource, SourceSnapshot};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the id of a file that left (stored or discarded) is remembered for [`FreshFiles::born_after`]:
/// far longer than a query takes from its snapshot to the end of its catalog listing.
const REMEMBER_LEFT: Duration = Duration::from_secs(600);

/// A file this exporter opened in this process.
struct Born {
    seq: u64,
    file_id: String,
    /// When it left the fresh files (stable, or discarded); `None` while active or staged.
    left: Option<Instant>,
}

/// The staged files and the files opened lately, shared by the writer, the uploader and queries.
#[derive(Default)]
pub struct FreshFiles {
    staged: BTreeMap<String, FreshFile>,
    /// Files opened so far: the cut of a snapshot.
    opened: u64,
    born: VecDeque<Born>,
}

impl FreshFiles {
    /// Numbers a file being opened.
    pub fn open(&mut self, file_id: &str) -> u64 {
        self.opened += 1;
        self.born.retain(|b| b.left.is_none_or(|t| t.elapsed() < REMEMBER_LEFT));
        self.born.push_back(Born { seq: self.opened, file_id: file_id.to_string(), left: None });
        self.opened
    }

    /// A finalized file, in staging until it is stored.
    pub fn staged(&mut self, file: FreshFile) {
        self.staged.insert(file.file_id.clone(), file);
    }

    /// A file that will not be read from here any more: stored (the catalog has it `stable`) or
    /// discarded (its rows are written again from the WAL).
    pub fn left(&mut self, file_id: &str) {
        self.staged.remove(file_id);
        if let Some(b) = self.born.iter_mut().find(|b| b.file_id == file_id) {
            b.left = Some(Instant::now());
        }
    }

    pub fn staged_files<'a>(&'a self, keep: impl Fn(&FreshFile) -> bool + 'a) -> impl Iterator<Item = &'a FreshFile> {
        self.staged.values().filter(move |f| keep(f))
    }

    pub fn cut(&self) -> u64 {
        self.opened
    }

    fn born_after(&self, cut: u64) -> HashSet<String> {
        self.born.iter().filter(|b| b.seq > cut).map(|b| b.file_id.clone()).collect()
    }
}

/// The exporter's [`FreshSource`], registered with the daemon for its queries.
pub struct ExporterFresh {
    pub writer: Arc<Mutex<Writer>>,
    pub files: Arc<Mutex<FreshFiles>>,
}

impl FreshSource for ExporterFresh {
    fn snapshot(&self, signal: Option<Signal>, tenant: Option<&str>) -> SourceSnapshot {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.snapshot(signal, tenant)
    }

    fn born_after(&self, cut: u64) -> HashSet<String> {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).born_after(cut)
    }
}
