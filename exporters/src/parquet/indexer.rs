//! Builds the full-text index (`openwit-index`) of every logs and spans file the uploader stores and puts
//! it beside the file: `<file>.parquet.tantivy` in the same store, written and fsynced locally, uploaded
//! and verified like the file, then recorded in the catalog's `indexes` table (which sets `index_pip` on
//! the batches it completes). It runs after the file is stored, on its own task, so indexing never delays
//! an acknowledgement; the uploader waits only when more than a few files queue here.
//!
//! The rows are read from the local copy: a hard link taken before the upload (which moves or removes
//! the staged file) keeps it until the index is built.
//!
//! Repair: at start and every `index.repair_interval`, this exporter's stable files that have no usable
//! index are indexed again from the stored file — an index a crash interrupted (built, uploaded but not
//! recorded: the object is overwritten, so none is left orphaned), one deleted or damaged (a query that
//! cannot read it marks it `missing`), or one whose build failed. Until then queries scan the file.

use super::uploader::{Shared, Step, now_ms};
use openwit_catalog::{FileRow, IndexRow, TANTIVY, Unindexed};
use openwit_core::memory::MemoryBudget;
use openwit_core::text_index::{Spec, Table};
use openwit_index::IndexError;
use parquet::file::reader::ChunkReader;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Files waiting to be indexed before the uploader waits (each holds its rows on local disk).
pub const QUEUE: usize = 2;

/// The suffix of an index object after its file's path.
pub const SUFFIX: &str = ".tantivy";

/// Files repaired per pass (each copied from the store to local disk, one at a time).
const REPAIR_BATCH: i64 = 16;

/// What this exporter indexes.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The spec of each indexed table (none: indexing is off).
    pub specs: BTreeMap<Table, Spec>,
    pub repair_interval: Duration,
    /// Tantivy's indexing arena (`index.memory_megabytes`).
    pub arena_bytes: usize,
    /// The process's memory budget, charged with Tantivy's indexing arena while a file is indexed
    /// (`None`: nothing is charged).
    pub memory: Option<Arc<MemoryBudget>>,
}

impl Settings {
    fn spec_of(&self, table_name: &str) -> Option<&Spec> {
        self.specs.get(&Table::by_name(table_name)?)
    }
}

/// One stored file to index.
pub struct IndexJob {
    file_id: String,
    /// The file's path in the store.
    rel: String,
    /// A hard link to the local copy.
    link: PathBuf,
    spec: Spec,
}

/// Where indexing keeps its links, scratch directories and bundles: beside the staging directory (the
/// same file system, for the links), not in it (the staging directory holds only files to upload).
fn work_dir(staging: &Path) -> PathBuf {
    let mut name = staging.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".index");
    staging.with_file_name(name)
}

/// Clears what an interrupted run left (called before any job is prepared).
pub fn clear(staging: &Path) {
    let dir = work_dir(staging);
    if dir.exists() {
        tracing::info!(dir = %dir.display(), "removing index work a previous run left unfinished");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A job for `local` (a file about to be uploaded) when its table is indexed: links it so that the upload
/// cannot take the rows away. `None` (logged) when the link cannot be made: the repair pass indexes the
/// file later from the store.
pub fn prepare(shared: &Shared, row: &FileRow, local: &Path) -> Option<IndexJob> {
    let spec = shared.index.spec_of(&row.table_name)?.clone();
    let dir = work_dir(&shared.staging);
    let link = dir.join(format!("{}.parquet", row.file_id));
    let made = std::fs::create_dir_all(&dir).and_then(|()| {
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(local, &link)
    });
    match made {
        Ok(()) => Some(IndexJob { file_id: row.file_id.clone(), rel: row.path.clone(), link, spec }),
        Err(e) => {
            tracing::warn!(file = %row.path, "cannot keep the rows for indexing ({e}); the file will be indexed from the store");
            None
        }
    }
}

/// The indexer task: every job in order until the uploader closes the channel, and the repair pass
/// whenever no job waits.
pub async fn run(shared: std::sync::Arc<Shared>, mut rx: mpsc::Receiver<IndexJob>) {
    let mut repair = tokio::time::interval(shared.index.repair_interval.max(Duration::from_millis(10)));
    repair.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let repairing = !shared.index.specs.is_empty();
    loop {
        tokio::select! {
            biased;
            job = rx.recv() => match job {
                Some(job) => {
                    let link = job.link.clone();
                    let source = move || std::fs::File::open(&link).map_err(|e| e.to_string());
                    index(&shared, &job.file_id, &job.rel, &job.spec, source, "built").await;
                    let _ = std::fs::remove_file(&job.link);
                }
                None => break,
            },
            _ = repair.tick(), if repairing => repair_pass(&shared).await,
        }
    }
}

/// Indexes again this exporter's stable files that have no usable index, from the stored files.
async fn repair_pass(shared: &Shared) {
    // The uploader's recovery runs first (it may make files stable).
    let catalog = shared.wait_ready().await;
    let tables: Vec<&str> = shared.index.specs.keys().map(|t| t.name()).collect();
    let which = Unindexed {
        exporter: &shared.exporter,
        node_id: &shared.node_id,
        root: &shared.destination.root,
        tables: &tables,
    };
    let files = match catalog.unindexed_files(TANTIVY, &which, REPAIR_BATCH).await {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(exporter = %shared.exporter, "cannot look for files to index again ({e}); trying later");
            return;
        }
    };
    for f in files {
        let Some(spec) = shared.index.spec_of(&f.table_name).cloned() else { continue };
        tracing::info!(exporter = %shared.exporter, file = %f.path, "indexing a stored file that has no usable index");
        let file = match shared.destination.open_stored(&f.path, &work_dir(&shared.staging)).await {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(exporter = %shared.exporter, file = %f.path, "cannot read a stored file to index it ({e})");
                continue;
            }
        };
        index(shared, &f.file_id, &f.path, &spec, move || Ok(file), "rebuilt").await;
    }
}

/// Builds, stores and records the index of one file whose rows `source` gives.
async fn index<R, S>(shared: &Shared, file_id: &str, rel: &str, spec: &Spec, source: S, how: &'static str)
where
    R: ChunkReader + 'static,
    S: FnOnce() -> Result<R, String> + Send + 'static,
{
    let work = work_dir(&shared.staging);
    let scratch = work.join(format!("{file_id}.tmp"));
    let bundle = work.join(format!("{file_id}{SUFFIX}"));
    let (out, spec_owned, table) = (bundle.clone(), spec.clone(), spec.table.name());
    // The arena is charged whatever the budget holds (the build does not wait for room: a starved
    // budget would keep files from being indexed, and so from being stored); while it is held, batches
    // wait for the budget instead, so that under overload the arena takes the place of batches in
    // memory rather than adding to them. It is given back when the build ends.
    let arena = shared.index.memory.as_ref().map(|m| m.charge_held(shared.index.arena_bytes as u64));
    let arena_bytes = shared.index.arena_bytes;
    let built = tokio::task::spawn_blocking(move || {
        openwit_core::testing::pause_point("index-build");
        build(&spec_owned, source()?, arena_bytes, &scratch, &out)
    })
    .await;
    drop(arena);
    let (size, tail) = match built {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            shared.metrics.indexed(table, "failed", 0);
            tracing::warn!(file = %rel, "cannot index the file ({e}); it will be searched by scanning");
            let _ = std::fs::remove_file(&bundle);
            return;
        }
        Err(e) => {
            shared.metrics.indexed(table, "failed", 0);
            tracing::error!(file = %rel, "indexing panicked ({e}); the file will be searched by scanning");
            let _ = std::fs::remove_file(&bundle);
            return;
        }
    };
    let index_rel = format!("{rel}{SUFFIX}");
    let dest = &shared.destination;
    shared
        .until_ok(Step::Upload, &format!("uploading the index {index_rel} to {}", dest.root), || async {
            if !dest.verify(&index_rel, size, Some(tail)).await.map_err(|e| e.to_string())? {
                dest.upload(&bundle, &index_rel).await.map_err(|e| e.to_string())?;
                if !dest.verify(&index_rel, size, Some(tail)).await.map_err(|e| e.to_string())? {
                    return Err(format!("{index_rel} does not match the local index after the upload"));
                }
            }
            Ok(())
        })
        .await;
    let _ = std::fs::remove_file(&bundle);
    let row = IndexRow {
        file_id: file_id.to_string(),
        kind: TANTIVY.to_string(),
        path: index_rel.clone(),
        byte_size: size as i64,
        state: openwit_catalog::STABLE.to_string(),
        created_at: now_ms(),
    };
    shared
        .until_ok(Step::Catalog, "recording an index in the catalog", || async {
            shared.catalog.record_index(&row).await.map_err(|e| e.to_string())
        })
        .await;
    shared.metrics.indexed(table, how, size);
    tracing::debug!(file = %rel, index = %index_rel, bytes = size, "index stored");
}

/// Reads the file's rows, builds the bundle into `out` (fsynced); returns its size and last 8 bytes.
fn build<R: ChunkReader + 'static>(
    spec: &Spec,
    source: R,
    arena_bytes: usize,
    scratch: &Path,
    out: &Path,
) -> Result<(u64, [u8; 8]), String> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder = ParquetRecordBatchReaderBuilder::try_new(source).map_err(|e| e.to_string())?;
    // Only the columns the index holds are decoded (attribute maps are the costly part of a row).
    let mut wanted: Vec<&str> = spec.fields.iter().map(String::as_str).chain(["time"]).collect();
    if wanted.contains(&"attributes") {
        wanted.push("attribute_types");
    }
    let roots: Vec<usize> = wanted.iter().filter_map(|n| builder.schema().index_of(n).ok()).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder.with_projection(mask).build().map_err(|e| e.to_string())?;
    // Batches go to the index as they are decoded (a compacted file's columns do not fit in memory).
    let batches = reader.map(|b| b.map_err(|e| IndexError::Rows(format!("cannot read the file: {e}"))));
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    // The bundle goes to its file as it is packed: a large file's index is tens of megabytes.
    let built = openwit_storage::write_durably_with(out, |w| {
        openwit_index::build::build_from(spec, batches, arena_bytes, scratch, w)
    });
    let _ = std::fs::remove_dir_all(scratch);
    built.map_err(|e| e.to_string())?;
    openwit_storage::size_and_tail(out).map_err(|e| format!("cannot read {}: {e}", out.display()))
}
