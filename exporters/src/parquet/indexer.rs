//! Builds the full-text index (`openwit-index`) of every logs file the uploader stores and puts it
//! beside the file: `<file>.parquet.tantivy` in the same store, verified like the file, then recorded
//! in the catalog's `indexes` table. It runs after the file is stored, on its own task, so indexing
//! never delays an acknowledgement; the uploader waits only when more than a few files queue here.
//!
//! The rows are read from the local copy: a hard link taken before the upload (which moves or removes
//! the staged file) keeps it until the index is built. A file whose index cannot be built is searched
//! by scanning; what a crash interrupts is cleared at the next start (the file then stays without an
//! index, searched by scanning, until indexes are rebuilt by the janitor — not built yet).

use super::uploader::{Shared, Step, now_ms};
use openwit_catalog::{IndexRow, TANTIVY};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Files waiting to be indexed before the uploader waits (each holds its rows on local disk).
pub const QUEUE: usize = 2;

/// The suffix of an index object after its file's path.
pub const SUFFIX: &str = ".tantivy";

/// One stored file to index.
pub struct IndexJob {
    file_id: String,
    /// The file's path in the store.
    rel: String,
    /// A hard link to the local copy.
    link: PathBuf,
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

/// A job for `local` (a logs file about to be uploaded): links it so that the upload cannot take the
/// rows away. `None` (logged) when the link cannot be made: the file is then searched by scanning.
pub fn prepare(staging: &Path, file_id: &str, local: &Path, rel: &str) -> Option<IndexJob> {
    let dir = work_dir(staging);
    let link = dir.join(format!("{file_id}.parquet"));
    let made = std::fs::create_dir_all(&dir).and_then(|()| {
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(local, &link)
    });
    match made {
        Ok(()) => Some(IndexJob { file_id: file_id.to_string(), rel: rel.to_string(), link }),
        Err(e) => {
            tracing::warn!(file = %rel, "cannot keep the rows for indexing ({e}); the file will be searched by scanning");
            None
        }
    }
}

/// The indexer task: every job in order until the uploader closes the channel.
pub async fn run(shared: std::sync::Arc<Shared>, mut rx: mpsc::Receiver<IndexJob>) {
    while let Some(job) = rx.recv().await {
        index(&shared, &job).await;
        let _ = std::fs::remove_file(&job.link);
    }
}

async fn index(shared: &Shared, job: &IndexJob) {
    let (link, scratch) = (job.link.clone(), work_dir(&shared.staging).join(format!("{}.tmp", job.file_id)));
    let bundle = work_dir(&shared.staging).join(format!("{}{SUFFIX}", job.file_id));
    let out = bundle.clone();
    let built = tokio::task::spawn_blocking(move || build(&link, &scratch, &out)).await;
    let (size, tail) = match built {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::warn!(file = %job.rel, "cannot index the file ({e}); it will be searched by scanning");
            return;
        }
        Err(e) => {
            tracing::error!(file = %job.rel, "indexing panicked ({e}); the file will be searched by scanning");
            return;
        }
    };
    let rel = format!("{}{SUFFIX}", job.rel);
    let dest = &shared.destination;
    shared
        .until_ok(Step::Upload, &format!("uploading the index {rel} to {}", dest.root), || async {
            if !dest.verify(&rel, size, Some(tail)).await.map_err(|e| e.to_string())? {
                dest.upload(&bundle, &rel).await.map_err(|e| e.to_string())?;
                if !dest.verify(&rel, size, Some(tail)).await.map_err(|e| e.to_string())? {
                    return Err(format!("{rel} does not match the local index after the upload"));
                }
            }
            Ok(())
        })
        .await;
    let _ = std::fs::remove_file(&bundle);
    let row = IndexRow {
        file_id: job.file_id.clone(),
        kind: TANTIVY.to_string(),
        path: rel.clone(),
        byte_size: size as i64,
        state: openwit_catalog::STABLE.to_string(),
        created_at: now_ms(),
    };
    shared
        .until_ok(Step::Catalog, "recording an index in the catalog", || async {
            shared.catalog.record_index(&row).await.map_err(|e| e.to_string())
        })
        .await;
    tracing::debug!(file = %job.rel, index = %rel, bytes = size, "index stored");
}

/// Reads the file's rows, builds the bundle into `out` (fsynced); returns its size and last 8 bytes.
fn build(link: &Path, scratch: &Path, out: &Path) -> Result<(u64, [u8; 8]), String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::io::Write;
    let file = std::fs::File::open(link).map_err(|e| e.to_string())?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(|e| e.to_string())?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let bytes = openwit_index::build::logs(&batches, scratch);
    let _ = std::fs::remove_dir_all(scratch);
    let bytes = bytes.map_err(|e| e.to_string())?;
    let mut f = std::fs::File::create(out).map_err(|e| e.to_string())?;
    f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(|e| e.to_string())?;
    let tail: [u8; 8] = bytes[bytes.len() - 8..].try_into().map_err(|_| "an empty index".to_string())?;
    Ok((bytes.len() as u64, tail))
}
