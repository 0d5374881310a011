//! Reading fresh files (`openwit_core::fresh`): the row groups an active file has written and the staged
//! files, through handles opened when the snapshot was taken (so a file renamed, uploaded and removed
//! meanwhile is still read as it was), and the staged files of a data directory for offline queries.

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{ParquetFileMetrics, ParquetFileReaderFactory};
use datafusion::physical_expr_common::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use openwit_core::Signal;
use openwit_core::fresh::{FreshFile, FreshSource, FreshState, SourceSnapshot};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a scan's fresh files are named (never read through an object store: [`FreshReaders`] serves them).
pub const FRESH_PREFIX: &str = "openwit-fresh";

/// The location a fresh file has in a scan.
pub fn location(f: &FreshFile) -> String {
    format!("{FRESH_PREFIX}/{}", f.file_id)
}

/// Serves the fresh files of one scan by their locations.
#[derive(Debug, Default)]
pub struct FreshReaders {
    files: HashMap<String, (Arc<File>, Option<Arc<ParquetMetaData>>)>,
}

impl FreshReaders {
    pub fn add(&mut self, f: &FreshFile) {
        self.files.insert(location(f), (f.file.clone(), f.metadata.clone()));
    }
}

impl ParquetFileReaderFactory for FreshReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        let name = file.object_meta.location.to_string();
        let (handle, metadata) = self.files.get(&name).cloned().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!("fresh file {name} is not in the scan's snapshot"))
        })?;
        let metrics = ParquetFileMetrics::new(partition_index, &name, metrics);
        Ok(Box::new(FreshReader { file: handle, len: file.object_meta.size, metadata, metrics }))
    }
}

struct FreshReader {
    file: Arc<File>,
    len: u64,
    metadata: Option<Arc<ParquetMetaData>>,
    metrics: ParquetFileMetrics,
}

fn read_at(file: &File, range: Range<u64>) -> Result<Bytes, ParquetError> {
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    file.read_exact_at(&mut buf, range.start).map_err(|e| ParquetError::External(Box::new(e)))?;
    Ok(Bytes::from(buf))
}

impl AsyncFileReader for FreshReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.metrics.bytes_scanned.add((range.end - range.start) as usize);
        let file = self.file.clone();
        async move {
            tokio::task::spawn_blocking(move || read_at(&file, range))
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))?
        }
        .boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.metrics.bytes_scanned.add(ranges.iter().map(|r| (r.end - r.start) as usize).sum());
        let file = self.file.clone();
        async move {
            tokio::task::spawn_blocking(move || ranges.into_iter().map(|r| read_at(&file, r)).collect())
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))?
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        if let Some(m) = &self.metadata {
            return futures::future::ready(Ok(m.clone())).boxed();
        }
        let (file, len) = (self.file.clone(), self.len);
        async move {
            tokio::task::spawn_blocking(move || footer(&file, len).map(Arc::new))
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))?
        }
        .boxed()
    }
}

/// A finalized file's metadata, page indexes included.
fn footer(file: &File, len: u64) -> Result<ParquetMetaData, ParquetError> {
    ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(&Positioned { file, len })
}

/// A file read by position (`pread`): handles to one file share their offset, so seeking is no way to
/// read one that others may read at the same time.
struct Positioned<'a> {
    file: &'a File,
    len: u64,
}

impl parquet::file::reader::Length for Positioned<'_> {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for Positioned<'_> {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> Result<Self::T, ParquetError> {
        Ok(bytes::Buf::reader(read_at(self.file, start..self.len)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        read_at(self.file, start..start + length as u64)
    }
}

/// The staged files a stopped (or crashed) daemon left in a data directory, for `openwit query` offline:
/// finalized files in `DATA_DIR/parquet/<exporter>/` not yet stored, each once (`.part` files are
/// unfinished and written again from the WAL at the next start; they are not read).
pub struct StagingDirectories {
    pub root: PathBuf,
}

impl StagingDirectories {
    fn files(&self) -> Vec<FreshFile> {
        let Ok(dirs) = std::fs::read_dir(&self.root) else { return Vec::new() };
        let mut out: Vec<FreshFile> = Vec::new();
        for d in dirs.flatten() {
            // Beside a staging directory: `<exporter>.index` holds links to files being indexed,
            // `<exporter>.compact` the janitor's compaction outputs (their rows are in stored files).
            if d.path().extension().is_some_and(|x| x == "index" || x == "compact") {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(d.path()) else { continue };
            for e in entries.flatten() {
                let path = e.path();
                let id = path.file_stem().map(|s| s.to_string_lossy().to_string());
                if path.extension().is_some_and(|x| x == "parquet")
                    && !out.iter().any(|f| Some(&f.file_id) == id.as_ref())
                {
                    match staged_file(&path, &d.file_name().to_string_lossy()) {
                        Ok(f) => out.push(f),
                        Err(err) => {
                            tracing::warn!(file = %path.display(), "cannot read a staged file ({err}); leaving it out")
                        }
                    }
                }
            }
        }
        out
    }
}

/// A staged file described by its own footer (OpenWit writes its table, tenant and time range there).
fn staged_file(path: &Path, exporter: &str) -> Result<FreshFile, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let metadata = footer(&file, len).map_err(|e| e.to_string())?;
    let kv: HashMap<&str, &str> = metadata
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv.key.as_str(), kv.value.as_deref()?)))
        .collect();
    let get = |k: &str| kv.get(k).copied().ok_or_else(|| format!("no {k} in its metadata"));
    let signal = match get("openwit.table")? {
        "spans" => Signal::Traces,
        "logs" => Signal::Logs,
        "metrics" => Signal::Metrics,
        other => return Err(format!("unknown table {other}")),
    };
    let time = |k: &str| get(k)?.parse::<i64>().map_err(|e| format!("{k}: {e}"));
    let file_id = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    // Node ids are part of the stored name only; offline, the file's own id is what matters.
    Ok(FreshFile {
        file_id,
        exporter: exporter.to_string(),
        node_id: String::new(),
        state: FreshState::Staged,
        signal,
        tenant: get("openwit.tenant")?.to_string(),
        min_time: time("openwit.min_time")?,
        max_time: time("openwit.max_time")?,
        rows: metadata.file_metadata().num_rows() as u64,
        path: path.to_path_buf(),
        file: Arc::new(file),
        len,
        metadata: Some(Arc::new(metadata)),
        buffered: Vec::new(),
    })
}

impl FreshSource for StagingDirectories {
    fn snapshot(&self, signal: Option<Signal>, tenant: Option<&str>) -> SourceSnapshot {
        let files = self
            .files()
            .into_iter()
            .filter(|f| signal.is_none_or(|s| s == f.signal) && tenant.is_none_or(|t| t == f.tenant))
            .collect();
        SourceSnapshot { files, cut: 0 }
    }

    /// No daemon writes here meanwhile (or if one does, its new files are not staged ones).
    fn born_after(&self, _cut: u64) -> HashSet<String> {
        HashSet::new()
    }
}
