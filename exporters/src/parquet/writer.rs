//! Active files: one per (table, tenant, hour), written in the staging directory while open, then
//! finalized (last row group, key-value metadata, footer, fsync, renamed to `*.parquet`).
//!
//! Rows are sorted within each row group — by `service_name`, then `time` (metrics: `service_name`,
//! `metric_name`, `time`; see [`super::sort_key::sort_by`]), the scope Parquet's `sorting_columns`
//! metadata describes — so a row group is buffered in Arrow until it is full.

use super::dictionary_chunk;
use super::fresh::FreshFiles;
use super::runs::{BufferedColumn, leaf_field};
use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use openwit_core::fresh::{FreshFile, FreshState, SourceSnapshot};
use openwit_core::memory::{Charge, MemoryBudget};
use openwit_core::{BatchId, Lineage, Signal, Verdict, columnar};
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ARROW_SCHEMA_META_KEY, ArrowSchemaConverter, ArrowWriter, encode_arrow_schema};
use parquet::basic::{ColumnOrder, Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{FileMetaData, KeyValue, ParquetMetaData, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Buffered Arrow rows are written as a row group at this size even before `row_group_size` rows
/// (per open file: this bounds the exporter's memory), or at half the memory budget if that is less.
/// Counted as they are held (repeated columns by runs, see `runs`): the load generator's spans take
/// ~560 bytes each so, about as many rows per row group as 64 MiB held when rows were held as they came.
const MAX_BUFFERED_BYTES: usize = 32 << 20;
/// A column's sorted rows are gathered and handed to its encoder this many at a time.
const WRITE_SLICE_ROWS: usize = 8192;
/// A span's parent's id is (nearly) unique per row: a dictionary would only cost. The other ids without
/// one (`span_id`, `trace_id` outside `spans`) are written `DELTA_LENGTH_BYTE_ARRAY` (see `properties`),
/// which has none.
const NO_DICTIONARY: [&str; 1] = ["parent_span_id"];
/// Columns that get bloom filters (point lookups: a trace, a service).
const BLOOM_FILTERED: [&str; 2] = ["trace_id", "service_name"];
/// Top-level columns written without min/max statistics: random ids, free text (searched through the
/// full-text index) and schema URLs, whose min and max prune nothing worth having, while computing them
/// for each page compares every value, twice (see `properties`).
const NO_STATISTICS: [&str; 9] = [
    "span_id",
    "parent_span_id",
    "trace_state",
    "status_message",
    "body",
    "metric_description",
    "resource_entity_refs",
    "resource_schema_url",
    "scope_schema_url",
];

/// Top-level columns written without zstd: what zstd saves on them is a few percent at most (runs of
/// a few small numbers or dictionary codes), while a reader creates a zstd context for every column
/// chunk it opens (the `parquet` crate's codec makes one to compress and one to decompress, ~160 KB
/// zeroed), which was 7–8 % of an aggregation's CPU over such columns (docs/BENCHMARKS.md, "Queries").
const UNCOMPRESSED: [&str; 4] = ["service_name", "status_code", "kind", "severity_number"];
/// The same for the delta-encoded times of spans and log records: bit-packed differences, nearly random
/// bits (zstd: 3.54 → 3.54 B per span for `end_time`). Not metric points': their times are plain
/// values that repeat (see `properties`), which zstd is there to find.
const UNCOMPRESSED_TIMES: [&str; 4] = ["time", "end_time", "duration_ns", "observed_time"];

/// Dictionary pages up to this size before a column falls back to plain values (parquet's default is
/// 1 MiB; attribute values of a large row group need more to stay dictionary-encoded).
const DICTIONARY_PAGE_BYTES: usize = 4 << 20;

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// Why rows could not be written into a file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The staging disk failed (full, read-only, an I/O error): worth retrying.
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    /// The Parquet encoder failed (most often an I/O error underneath): worth retrying.
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The rows are not those of their table (a missing time column): retrying will not help.
    #[error("{0}")]
    Rows(String),
}

impl WriteError {
    /// Whether writing the same rows again cannot succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, WriteError::Rows(_))
    }
}

#[derive(Clone, Debug)]
pub struct WriterSettings {
    /// The exporter's id (what the `files` view shows for fresh files).
    pub exporter: String,
    pub staging: PathBuf,
    pub node_id: String,
    pub compression_level: i32,
    pub row_group_rows: usize,
    pub max_bytes: u64,
    pub max_age: Duration,
    /// The columns rows are sorted by within a row group; `None`: the table's [`sort_by`] (what
    /// `openwit-bench --storage-only --sort-by` compares alternatives against).
    pub sort_by: Option<Vec<String>>,
    /// The process's memory budget, charged with the buffered rows (`None`: nothing is charged).
    pub memory: Option<Arc<MemoryBudget>>,
}

impl WriterSettings {
    fn sort_by(&self, table: &str) -> Vec<String> {
        self.sort_by.clone().unwrap_or_else(|| super::sort_key::sort_by(table))
    }

    /// An open file's buffered rows are written as a row group at this many Arrow bytes: the budget's
    /// other half is left to the batches on their way (a writer holding all of it would wait for rows
    /// the full budget keeps from coming).
    fn max_buffered_bytes(&self) -> usize {
        let half = self.memory.as_ref().map_or(u64::MAX, |m| m.limit() / 2);
        MAX_BUFFERED_BYTES.min(usize::try_from(half).unwrap_or(usize::MAX)).max(1)
    }
}

/// A batch's rows on their way into files, with the WAL items they are.
pub struct Rows<'a> {
    pub signal: Signal,
    pub tenant: &'a str,
    pub batch: RecordBatch,
    /// Per row: (index into `batch_ids`, item index in that WAL batch). Empty when no WAL backs the rows.
    pub items: Vec<(u32, u32)>,
    pub batch_ids: Vec<BatchId>,
    /// The obligations for these rows' items, held by every file they go to until it is stored.
    pub pledge: Lineage,
}

/// A finalized local file, ready for its upload.
#[derive(Debug)]
pub struct Finalized {
    pub file_id: String,
    pub local: PathBuf,
    /// Path under the destination root: `{table}/tenant=…/date=…/hour=…/{node}-{ulid}.parquet`.
    pub rel_path: String,
    pub signal: Signal,
    pub tenant: String,
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    pub bytes: u64,
    /// The file's last 8 bytes (footer length and magic), to verify the stored copy.
    pub tail: [u8; 8],
    /// (WAL batch, first item, item count) runs held by the file.
    pub held: Vec<(BatchId, u32, u32)>,
    /// Settled as stored once the file is stored: their WAL batches complete only then.
    pub pledge: Lineage,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    signal: Signal,
    tenant: String,
    hour: i64,
}

struct Active {
    key: Key,
    file_id: String,
    part: PathBuf,
    rel_path: String,
    /// Row groups are encoded a column at a time (`flush_row_group`), so the file is written through
    /// Parquet's lower-level writer with the column writers' factory.
    writer: SerializedFileWriter<File>,
    columns: ArrowRowGroupWriterFactory,
    sync: File,
    /// The file opened for reading, for queries over its written row groups (it stays readable when
    /// renamed and removed).
    reader: Arc<File>,
    /// The written row groups as Parquet metadata, rebuilt after each (the file has no footer yet),
    /// and how many bytes of the file they span.
    flushed: Option<Arc<ParquetMetaData>>,
    flushed_len: u64,
    /// Key-value metadata a reader of the written row groups needs (the Arrow schema).
    read_metadata: Vec<KeyValue>,
    schema: SchemaRef,
    sort_by: Vec<String>,
    /// Rows per row group at most (`row_group_size`).
    row_group_rows: usize,
    buffered: Vec<RecordBatch>,
    buffered_rows: usize,
    buffered_bytes: usize,
    /// What the buffered rows hold of the memory budget, given back once they are written.
    buffered_charge: Charge,
    rows: u64,
    min_time: i64,
    max_time: i64,
    opened: Instant,
    held: Vec<(BatchId, u32, u32)>,
    pledge: Lineage,
}

pub struct Writer {
    settings: WriterSettings,
    open: HashMap<Key, Active>,
    /// Staged files and the files opened lately, for queries (`fresh`).
    fresh: Arc<Mutex<FreshFiles>>,
}

impl Writer {
    pub fn new(settings: WriterSettings, fresh: Arc<Mutex<FreshFiles>>) -> Writer {
        Writer { settings, open: HashMap::new(), fresh }
    }

    fn fresh(&self) -> std::sync::MutexGuard<'_, FreshFiles> {
        self.fresh.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The files of `signal` and `tenant` (`None`: all) whose rows are not stable yet, as they are now:
    /// the active files' written row groups and buffered rows, and the staged files.
    pub fn snapshot(&self, signal: Option<Signal>, tenant: Option<&str>) -> SourceSnapshot {
        let keep = |s: Signal, t: &str| signal.is_none_or(|x| x == s) && tenant.is_none_or(|x| x == t);
        let mut files: Vec<FreshFile> =
            self.open.values().filter(|a| keep(a.key.signal, &a.key.tenant)).map(|a| a.fresh(&self.settings)).collect();
        let fresh = self.fresh();
        files.extend(fresh.staged_files(|f| keep(f.signal, &f.tenant)).cloned());
        SourceSnapshot { files, cut: fresh.cut() }
    }

    /// Finalizes an active file; it is staged (for queries) under the same lock that held it active.
    fn finalize(&mut self, a: Active) -> Result<Finalized, WriteError> {
        let (file_id, reader) = (a.file_id.clone(), a.reader.clone());
        match a.finalize() {
            Ok(f) => {
                self.fresh().staged(FreshFile {
                    file_id: f.file_id.clone(),
                    exporter: self.settings.exporter.clone(),
                    node_id: self.settings.node_id.clone(),
                    state: FreshState::Staged,
                    signal: f.signal,
                    tenant: f.tenant.clone(),
                    min_time: f.min_time,
                    max_time: f.max_time,
                    rows: f.rows,
                    path: f.local.clone(),
                    file: reader,
                    len: f.bytes,
                    metadata: None,
                    buffered: Vec::new(),
                });
                Ok(f)
            }
            Err(e) => {
                self.fresh().left(&file_id);
                Err(e)
            }
        }
    }

    /// Appends rows to the files of their hours; returns the files that reached their size. On an
    /// error every open file is discarded and its batches marked failed (they stay in the WAL).
    pub fn write(&mut self, rows: Rows<'_>) -> Result<Vec<Finalized>, WriteError> {
        let result = self.try_write(rows);
        if let Err(e) = &result {
            self.discard_all(e);
        }
        result
    }

    fn try_write(&mut self, rows: Rows<'_>) -> Result<Vec<Finalized>, WriteError> {
        let n = rows.batch.num_rows();
        if n == 0 {
            return Ok(Vec::new());
        }
        let times = effective_times(rows.signal, &rows.batch)?;
        let mut by_hour: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, t) in times.iter().enumerate() {
            by_hour.entry(t.max(&0) / NANOS_PER_HOUR).or_default().push(i as u32);
        }
        // The rows may hold some columns once per scope group (the conversion's form); a file holds the
        // table's types.
        let schema = openwit_core::columnar::table_schema(&rows.batch.schema());
        let mut done = Vec::new();
        let hours = by_hour.len();
        let mut pledge = Some(rows.pledge);
        for (h, (hour, idx)) in by_hour.into_iter().enumerate() {
            // Every file the rows go to holds their batches until it is stored.
            let file_pledge = if h + 1 == hours { pledge.take() } else { pledge.clone() }.unwrap_or_default();
            let part = if idx.len() == n {
                rows.batch.clone()
            } else {
                take_record_batch(&rows.batch, &UInt32Array::from(idx.clone()))?
            };
            let key = Key { signal: rows.signal, tenant: rows.tenant.to_string(), hour };
            if self.open.get(&key).is_some_and(|a| a.schema != schema) {
                // Another shape of rows (a newer OpenWit); a file holds one schema.
                let a = self.open.remove(&key).expect("checked");
                done.push(self.finalize(a)?);
            }
            if !self.open.contains_key(&key) {
                let a = Active::open(&self.settings, &key, schema.clone())?;
                self.fresh().open(&a.file_id);
                self.open.insert(key.clone(), a);
            }
            let a = self.open.get_mut(&key).expect("inserted");
            for &i in &idx {
                let t = times[i as usize];
                a.min_time = a.min_time.min(t);
                a.max_time = a.max_time.max(t);
                if let Some(&(b, item)) = rows.items.get(i as usize) {
                    a.hold(rows.batch_ids[b as usize], item);
                }
            }
            a.pledge.append(file_pledge);
            // Held by runs where rows repeat (a span's trace state, a metric's description on each of its
            // points): less memory for the seconds the row group takes to fill.
            let part = super::runs::compact(&part)?;
            let bytes = part.get_array_memory_size();
            a.buffered_rows += part.num_rows();
            a.buffered_bytes += bytes;
            if let Some(m) = &self.settings.memory {
                a.buffered_charge.append(m.charge_held(bytes as u64));
            }
            a.rows += part.num_rows() as u64;
            a.buffered.push(part);
            if a.buffered_rows >= self.settings.row_group_rows || a.buffered_bytes >= self.settings.max_buffered_bytes()
            {
                a.flush_row_group()?;
            }
            if a.estimated_size() >= self.settings.max_bytes {
                let a = self.open.remove(&key).expect("present");
                done.push(self.finalize(a)?);
            }
        }
        Ok(done)
    }

    /// Finalizes the files open longer than `max_age`.
    pub fn rotate_aged(&mut self) -> Result<Vec<Finalized>, WriteError> {
        let max_age = self.settings.max_age;
        let aged: Vec<Key> =
            self.open.iter().filter(|(_, a)| a.opened.elapsed() >= max_age).map(|(k, _)| k.clone()).collect();
        self.finalize_keys(aged)
    }

    /// Writes every open file's buffered rows as a row group if the memory budget is starved (a batch
    /// waits for room) and they hold a sixteenth of it or more: with several files open, their buffers
    /// together could keep the budget spent until the next file rotates. Returns the number of row
    /// groups written.
    pub fn relieve_memory(&mut self) -> Result<usize, WriteError> {
        let Some(memory) = self.settings.memory.as_ref().filter(|m| m.starved()) else {
            return Ok(0);
        };
        let held: usize = self.open.values().map(|a| a.buffered_bytes).sum();
        if (held as u64) < memory.limit() / 16 {
            return Ok(0);
        }
        let mut written = 0;
        let mut result = Ok(());
        for a in self.open.values_mut().filter(|a| !a.buffered.is_empty()) {
            result = a.flush_row_group();
            if result.is_err() {
                break;
            }
            written += 1;
        }
        if let Err(e) = result {
            self.discard_all(&e);
            return Err(e);
        }
        Ok(written)
    }

    /// Finalizes every open file (shutdown).
    pub fn finalize_all(&mut self) -> Result<Vec<Finalized>, WriteError> {
        let keys: Vec<Key> = self.open.keys().cloned().collect();
        self.finalize_keys(keys)
    }

    fn finalize_keys(&mut self, keys: Vec<Key>) -> Result<Vec<Finalized>, WriteError> {
        let mut done = Vec::new();
        for k in keys {
            if let Some(a) = self.open.remove(&k) {
                match self.finalize(a) {
                    Ok(f) => done.push(f),
                    Err(e) => {
                        self.discard_all(&e);
                        return Err(e);
                    }
                }
            }
        }
        Ok(done)
    }

    fn discard_all(&mut self, error: &WriteError) {
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        for (_, a) in self.open.drain() {
            fresh.left(&a.file_id);
            tracing::error!(file = %a.part.display(), "discarding an unfinished Parquet file ({error}); its batches stay in the WAL");
            let _ = std::fs::remove_file(&a.part);
            a.pledge.settle(&Verdict::Retryable(format!("parquet: {error}")));
        }
    }
}

impl Active {
    fn open(s: &WriterSettings, key: &Key, schema: SchemaRef) -> Result<Active, WriteError> {
        let file_id = ulid::Ulid::new().to_string();
        let table = columnar::table_name(key.signal);
        let start = time::OffsetDateTime::from_unix_timestamp(key.hour.clamp(0, 2_000_000) * 3600)
            .map_err(|e| WriteError::Rows(format!("hour {} cannot be placed: {e}", key.hour)))?;
        let rel_path = format!(
            "{table}/tenant={}/date={:04}-{:02}-{:02}/hour={:02}/{}-{file_id}.parquet",
            key.tenant,
            start.year(),
            u8::from(start.month()),
            start.day(),
            start.hour(),
            s.node_id
        );
        let part = s.staging.join(format!("{file_id}.parquet.part"));
        let io = |source| WriteError::Io { what: "cannot create", path: part.clone(), source };
        let file = File::create(&part).map_err(io)?;
        let sync = file.try_clone().map_err(io)?;
        let reader = Arc::new(File::open(&part).map_err(io)?);
        let props = properties(s, &schema, table, &key.tenant)?;
        // The Arrow writer sets the file up (the Arrow schema in the footer's metadata) and hands over
        // its parts.
        let (writer, columns) = ArrowWriter::try_new(file, schema.clone(), Some(props))?.into_serialized_writer()?;
        Ok(Active {
            key: key.clone(),
            file_id,
            part,
            rel_path,
            writer,
            columns,
            sync,
            reader,
            flushed: None,
            flushed_len: 0,
            read_metadata: vec![KeyValue::new(ARROW_SCHEMA_META_KEY.to_string(), encode_arrow_schema(&schema))],
            schema,
            sort_by: s.sort_by(table),
            row_group_rows: s.row_group_rows,
            buffered: Vec::new(),
            buffered_rows: 0,
            buffered_bytes: 0,
            buffered_charge: Charge::default(),
            rows: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
            opened: Instant::now(),
            held: Vec::new(),
            pledge: Lineage::default(),
        })
    }

    fn hold(&mut self, id: BatchId, item: u32) {
        match self.held.last_mut() {
            Some((b, start, len)) if *b == id && *start + *len == item => *len += 1,
            _ => self.held.push((id, item, 1)),
        }
    }

    /// Written bytes plus what the open row group and the buffered rows will add (a rough 8:1 for Arrow).
    fn estimated_size(&self) -> u64 {
        (self.writer.bytes_written() + self.buffered_bytes / 8) as u64
    }

    /// Writes the buffered rows as one row group, sorted (several if they are more than
    /// `row_group_rows`).
    fn flush_row_group(&mut self) -> Result<(), WriteError> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut self.buffered);
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        let order = super::sort_key::sorted_order(&batches, &self.sort_by)?;
        for group in order.chunks(self.row_group_rows.max(1)) {
            self.write_row_group(&batches, group)?;
        }
        // The row group's bytes go to the file (not fsynced: that is for `finalize`) so that queries can
        // read them through `reader`, described by metadata of their own.
        self.writer.flush().map_err(|source| WriteError::Io {
            what: "cannot write",
            path: self.part.clone(),
            source,
        })?;
        self.flushed = Some(self.flushed_metadata());
        self.flushed_len = self.writer.bytes_written() as u64;
        // The buffered rows are freed with `batches` on return (unless a query's snapshot still reads them).
        self.buffered_charge = Charge::default();
        Ok(())
    }

    /// Writes the rows `order` of `batches` as a row group, a column at a time: each column's values are
    /// gathered from the buffered batches a slice at a time, encoded, compressed and appended to the
    /// file before the next column is started. So the row group is never copied whole in Arrow, and one
    /// column's encoder and zstd context are alive at a time rather than every column's (about a
    /// megabyte of zstd context per column: the row group's write took ~50 MiB more than its rows,
    /// see docs/BENCHMARKS.md § Memory). The file's bytes are those of writing whole rows, but for
    /// bytes and maps of bytes without statistics, which `dictionary_chunk` encodes from where they are
    /// held, not gathered (the same rows, fewer hashes and copies; it holds a column's levels and
    /// dictionary indices for the row group, 4 bytes each, while it writes that column).
    fn write_row_group(&mut self, batches: &[RecordBatch], order: &[(usize, usize)]) -> Result<(), WriteError> {
        let mut writers = self.columns.create_column_writers(self.writer.flushed_row_groups().len())?.into_iter();
        let descriptors = self.writer.schema_descr().columns().to_vec();
        let props = self.writer.properties().clone();
        let mut first_leaf = 0;
        let mut row_group = self.writer.next_row_group()?;
        for (i, field) in self.schema.fields().iter().enumerate() {
            // A nested column (a map) has several leaves, each with its writer, in the schema's order.
            let leaves = compute_leaves(field, &arrow::array::new_empty_array(field.data_type()))?.len();
            let mut column: Vec<_> = writers.by_ref().take(leaves).collect();
            let descriptors = &descriptors[first_leaf..first_leaf + leaves];
            first_leaf += leaves;
            let buffered = BufferedColumn::new(field, i, batches)?;
            // Bytes and maps of bytes without statistics: encoded where they are held, each run's values
            // interned once and a row's own not copied first (`dictionary_chunk`).
            let encodable =
                if dictionary_chunk::applies(descriptors, &props) { buffered.encodable(order)? } else { None };
            let chunks = match encodable {
                Some((parts, rows)) => dictionary_chunk::encode(&parts, &rows, descriptors, &props)?,
                None => None,
            };
            if let Some(chunks) = chunks {
                for chunk in chunks {
                    row_group.append_column(&chunk.bytes, chunk.close)?;
                }
                continue;
            }
            for slice in order.chunks(WRITE_SLICE_ROWS) {
                let values = buffered.gather(slice)?;
                for (writer, leaf) in column.iter_mut().zip(compute_leaves(&leaf_field(field, &values), &values)?) {
                    writer.write(&leaf)?;
                }
            }
            for writer in column {
                writer.close()?.append_to_row_group(&mut row_group)?;
            }
        }
        row_group.close()?;
        Ok(())
    }

    /// Metadata describing the row groups written so far, as a footer would.
    fn flushed_metadata(&self) -> Arc<ParquetMetaData> {
        let groups = self.writer.flushed_row_groups().to_vec();
        let schema = groups.first().map(|g| g.schema_descr_ptr()).expect("called after a row group was written");
        let orders = schema
            .columns()
            .iter()
            .map(|c| {
                ColumnOrder::TYPE_DEFINED_ORDER(ColumnOrder::sort_order_for_type(
                    c.logical_type_ref(),
                    c.converted_type(),
                    c.physical_type(),
                ))
            })
            .collect();
        let rows = groups.iter().map(|g| g.num_rows()).sum();
        let file = FileMetaData::new(
            1,
            rows,
            Some(format!("OpenWit {}", env!("CARGO_PKG_VERSION"))),
            Some(self.read_metadata.clone()),
            schema,
            Some(orders),
        );
        Arc::new(ParquetMetaData::new(file, groups))
    }

    /// The file as a query sees it now.
    fn fresh(&self, s: &WriterSettings) -> FreshFile {
        FreshFile {
            file_id: self.file_id.clone(),
            exporter: s.exporter.clone(),
            node_id: s.node_id.clone(),
            state: FreshState::Active,
            signal: self.key.signal,
            tenant: self.key.tenant.clone(),
            min_time: self.min_time,
            max_time: self.max_time,
            rows: self.rows,
            path: self.part.clone(),
            file: self.reader.clone(),
            len: self.flushed_len,
            metadata: self.flushed.clone(),
            buffered: self.buffered.clone(),
        }
    }

    fn finalize(mut self) -> Result<Finalized, WriteError> {
        self.flush_row_group()?;
        for (k, v) in [("openwit.min_time", self.min_time), ("openwit.max_time", self.max_time)] {
            self.writer.append_key_value_metadata(KeyValue::new(k.to_string(), v.to_string()));
        }
        let io = |source| WriteError::Io { what: "cannot finalize", path: self.part.clone(), source };
        self.writer.close()?;
        self.sync.sync_all().map_err(io)?;
        let local = self.part.with_extension("");
        std::fs::rename(&self.part, &local).map_err(io)?;
        if let Some(dir) = local.parent() {
            openwit_storage::sync_dir(dir).map_err(io)?;
        }
        let (bytes, tail) = openwit_storage::size_and_tail(&local).map_err(io)?;
        self.held.sort_unstable();
        let mut held: Vec<(BatchId, u32, u32)> = Vec::with_capacity(self.held.len());
        for (b, s, l) in self.held {
            match held.last_mut() {
                Some((pb, ps, pl)) if *pb == b && *ps + *pl == s => *pl += l,
                _ => held.push((b, s, l)),
            }
        }
        Ok(Finalized {
            file_id: self.file_id,
            local,
            rel_path: self.rel_path,
            signal: self.key.signal,
            tenant: self.key.tenant,
            min_time: self.min_time,
            max_time: self.max_time,
            rows: self.rows,
            bytes,
            tail,
            held,
            pledge: self.pledge,
        })
    }
}

fn properties(
    s: &WriterSettings,
    schema: &SchemaRef,
    table: &str,
    tenant: &str,
) -> Result<WriterProperties, WriteError> {
    let level = ZstdLevel::try_new(s.compression_level)?;
    let descr = ArrowSchemaConverter::new().convert(schema)?;
    let leaf = |name: &str| descr.columns().iter().position(|c| c.path().string() == name);
    let sort_by = s.sort_by(table);
    // `sorting_columns` names leaf columns only: the recorded key stops before the first that is not
    // one (`resource_attributes`, a map), so it claims no more than the rows' order. Key columns the
    // table lacks order nothing and are skipped.
    let sorting: Vec<SortingColumn> = sort_by
        .iter()
        .filter(|n| schema.field_with_name(n).is_ok())
        .map_while(|n| leaf(n))
        .map(|i| SortingColumn { column_idx: i as i32, descending: false, nulls_first: true })
        .collect();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(s.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
        .set_sorting_columns(Some(sorting))
        .set_created_by(format!("OpenWit {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("openwit.table".to_string(), table.to_string()),
            KeyValue::new("openwit.tenant".to_string(), tenant.to_string()),
            KeyValue::new("openwit.sorted_by".to_string(), format!("{} (per row group)", sort_by.join(","))),
        ]));
    for c in NO_DICTIONARY {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    if table == "logs" {
        // Log bodies are nearly all distinct (templates with variable parts): their dictionary page
        // held almost the whole column chunk (~750 KB of a row group's ~860 KB), costs bytes (plain:
        // 12.11 instead of 13.11 B per record on the generator's data) and must be read whole to
        // decode any one row, where plain pages can be fetched alone for the rows an index selects
        // (see docs/BENCHMARKS.md, "Full-text search").
        b = b.set_column_dictionary_enabled(ColumnPath::from("body"), false);
    }
    // Encodings by kind of value, for every leaf column (nested ones included):
    // - nanosecond times and durations of spans and logs, and integer metric values: delta encoding
    //   (neighbouring rows are close in time, counters move little); metric points' times plain (below);
    // - doubles: byte-stream split, which lines up exponents and mantissas for zstd.
    // Measured with `openwit-bench --storage-only` (docs/BENCHMARKS.md): spans 50.7 → 42.8 bytes, metric
    // points 24.4 → 22.1, log records 44.8 → 40.4. Plain attribute values (no dictionary) and delta
    // bucket counts were tried and were larger.
    for c in descr.columns() {
        let path = c.path().clone();
        let name = path.parts().last().map(String::as_str).unwrap_or("");
        let encoding = match c.physical_type() {
            parquet::basic::Type::DOUBLE | parquet::basic::Type::FLOAT => Some(Encoding::BYTE_STREAM_SPLIT),
            // A metric point's times repeat: every point of an export shares its time, a series keeps
            // its start_time. Plain, zstd finds those repeats (8-byte matches); delta encoding hid them,
            // a miniblock's bit width following its largest gap. Metric points 18.7 → 16.4 bytes
            // (time 2.58 → 0.81, start_time with a dictionary 1.34 → 0.78; docs/BENCHMARKS.md).
            parquet::basic::Type::INT64 if table == "metrics" && (name == "time" || name == "start_time") => {
                Some(Encoding::PLAIN)
            }
            parquet::basic::Type::INT64
                if name.ends_with("time")
                    || name.ends_with("_ns")
                    || name == "time_unix_nano"
                    || name == "value_int" =>
            {
                Some(Encoding::DELTA_BINARY_PACKED)
            }
            // Ids (nearly) unique per row, so without a dictionary (random bytes, or empty where a log
            // record or an exemplar has no trace): their lengths apart from their bytes. Plain puts a
            // 4-byte length before each, and where empty and 16-byte ids mix at random (log records: 60 %
            // traced in the generator's data) zstd paid ~0.8 byte a row for those lengths. A span's
            // `trace_id` repeats for every span of its trace and keeps its dictionary (4.3 instead of 5.7
            // bytes per span); `parent_span_id` stays plain (zstd finds the siblings' repeats better
            // there: 4.9 → 5.3 B per span with its lengths apart, pyarrow on the same rows).
            parquet::basic::Type::BYTE_ARRAY
                if name == "span_id" || (name == "trace_id" && !(table == "spans" && path.string() == "trace_id")) =>
            {
                Some(Encoding::DELTA_LENGTH_BYTE_ARRAY)
            }
            _ => None,
        };
        if let Some(e) = encoding {
            b = b.set_column_dictionary_enabled(path.clone(), false).set_column_encoding(path, e);
        }
    }
    // Min/max statistics (per row group and per page, the page index) only where a query can prune
    // on them: the top-level columns, less `NO_STATISTICS`. Leaves inside maps, lists and structs
    // (attribute keys and values, events, links, buckets) get none: DataFusion does not prune on
    // them, and comparing every key and value for each page's min and max was ~4.5 % of storing's CPU
    // (perf, docs/BENCHMARKS.md).
    for c in descr.columns() {
        let path = c.path();
        if path.parts().len() > 1 || NO_STATISTICS.contains(&path.string().as_str()) {
            b = b.set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
        }
    }
    let times: &[&str] = if table == "metrics" { &[] } else { &UNCOMPRESSED_TIMES };
    for &c in UNCOMPRESSED.iter().chain(times) {
        if leaf(c).is_some() {
            b = b.set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED);
        }
    }
    for c in BLOOM_FILTERED {
        if leaf(c).is_some() {
            b = b.set_column_bloom_filter_enabled(ColumnPath::from(c), true);
        }
    }
    Ok(b.build())
}

/// The time that places a row in an hour: `time`, or for log records without one, `observed_time`.
fn effective_times(signal: Signal, batch: &RecordBatch) -> Result<Vec<i64>, WriteError> {
    let col = |n: &str| {
        batch
            .column_by_name(n)
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .ok_or_else(|| WriteError::Rows(format!("the {} rows have no {n} column", columnar::table_name(signal))))
    };
    let time = col("time")?;
    let observed = if signal == Signal::Logs { Some(col("observed_time")?) } else { None };
    Ok((0..batch.num_rows())
        .map(|i| {
            let t = time.value(i);
            match observed {
                Some(o) if t == 0 => o.value(i),
                _ => t,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use openwit_core::{AckToken, Outcome};
    use std::sync::Arc;
    use tokio::sync::mpsc;

    const HOUR: u64 = 3_600_000_000_000;
    const T0: u64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00Z

    fn settings(dir: &std::path::Path, max_bytes: u64) -> WriterSettings {
        WriterSettings {
            exporter: "parquet".into(),
            staging: dir.to_path_buf(),
            node_id: "node-1".into(),
            compression_level: 3,
            row_group_rows: 1000,
            max_bytes,
            max_age: Duration::from_secs(600),
            sort_by: None,
            memory: None,
        }
    }

    /// Row groups written so far into the open files.
    fn row_groups(w: &Writer) -> usize {
        w.open.values().map(|a| a.writer.flushed_row_groups().len()).sum()
    }

    /// A writer into `dir` whose buffered rows are charged to `budget`.
    fn budgeted_writer(dir: &std::path::Path, budget: &Arc<MemoryBudget>) -> Writer {
        Writer::new(WriterSettings { memory: Some(budget.clone()), ..settings(dir, u64::MAX) }, Arc::default())
    }

    /// The Arrow size of the three-span batches these tests write.
    fn three_spans_bytes() -> u64 {
        spans(&[T0 + 1, T0 + 2, T0 + 3]).get_array_memory_size() as u64
    }

    #[test]
    fn buffered_rows_hold_the_memory_budget_until_they_are_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (tx, _done) = mpsc::unbounded_channel();
        let token = AckToken::new(BatchId([7; 16]), tx);
        let budget = MemoryBudget::new(1 << 30);
        let mut w = budgeted_writer(tmp.path(), &budget);
        let batch = spans(&[T0 + 1, T0 + 2, T0 + 3]);
        let bytes = batch.get_array_memory_size() as u64;
        w.write(rows(batch, &token, 0)).unwrap();
        assert_eq!(budget.used(), bytes, "the buffered rows are charged");
        w.write(rows(spans(&[T0 + 4, T0 + 5, T0 + 6]), &token, 3)).unwrap();
        assert!(budget.used() > bytes);
        assert_eq!(row_groups(&w), 0);
        let files = w.finalize_all().unwrap();
        assert_eq!((files.len(), budget.used()), (1, 0), "written rows give their charge back");
    }

    #[test]
    fn an_open_file_writes_its_rows_before_they_take_half_the_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let (tx, _done) = mpsc::unbounded_channel();
        let token = AckToken::new(BatchId([7; 16]), tx);
        let one = three_spans_bytes();
        // Half the budget is 1.5 batches: the second batch has the two written as a row group.
        let budget = MemoryBudget::new(3 * one);
        let mut w = budgeted_writer(tmp.path(), &budget);
        w.write(rows(spans(&[T0 + 1, T0 + 2, T0 + 3]), &token, 0)).unwrap();
        assert_eq!((row_groups(&w), budget.used()), (0, one));
        w.write(rows(spans(&[T0 + 4, T0 + 5, T0 + 6]), &token, 3)).unwrap();
        assert_eq!((row_groups(&w), budget.used()), (1, 0), "row_group_size (1000 rows) was not reached");
    }

    #[test]
    fn buffered_rows_are_written_out_while_the_budget_is_starved() {
        let tmp = tempfile::tempdir().unwrap();
        let (tx, _done) = mpsc::unbounded_channel();
        let token = AckToken::new(BatchId([7; 16]), tx);
        let one = three_spans_bytes();
        let budget = MemoryBudget::new(16 * one);
        let mut w = budgeted_writer(tmp.path(), &budget);
        w.write(rows(spans(&[T0 + 1, T0 + 2, T0 + 3]), &token, 0)).unwrap();
        assert_eq!(w.relieve_memory().unwrap(), 0, "nobody waits for room: the rows stay buffered");
        assert!(budget.try_charge(16 * one).is_none(), "a batch waits for room");
        assert_eq!(w.relieve_memory().unwrap(), 1);
        assert_eq!((row_groups(&w), budget.used()), (1, 0));
        assert!(budget.try_charge(16 * one).is_some(), "the waiting batch fits now");
    }

    /// Row groups written a column at a time are the rows Parquet's own writer gives for the same
    /// sorted rows, and its bytes but for the columns `dictionary_chunk` encodes (whose statistics,
    /// page index and offset index's row starts and unencoded sizes are still the crate's): several
    /// slices per column (more rows than `WRITE_SLICE_ROWS`), map columns of several leaves, columns
    /// held by runs, and buffered rows split into row groups of at most `row_group_size`.
    #[test]
    fn row_groups_written_a_column_at_a_time_are_the_bytes_of_whole_rows() {
        use super::super::runs::tests::{spans as resources, spans_with_gaps};
        let tmp = tempfile::tempdir().unwrap();
        let (tx, _done) = mpsc::unbounded_channel();
        let token = AckToken::new(BatchId([7; 16]), tx);
        let s = WriterSettings { row_group_rows: 12_000, ..settings(tmp.path(), u64::MAX) };
        let mut w = Writer::new(s.clone(), Arc::default());
        // (Every batch's resource attributes held by runs: written from dictionaries over the runs.)
        let batches = [
            resources(4, 2_000, T0),
            resources(30, 100, T0 + 7),
            spans_with_gaps(T0 + 3),
            resources(3, 1_000, T0 + 11),
        ];
        let mut item = 0;
        for b in &batches {
            w.write(rows(b.clone(), &token, item)).unwrap();
            item += b.num_rows() as u32;
        }
        let files = w.finalize_all().unwrap();
        let ours = std::fs::read(&files[0].local).unwrap();

        let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let order = super::super::sort_key::sorted_order(std::slice::from_ref(&all), &s.sort_by("spans")).unwrap();
        let order = UInt32Array::from_iter_values(order.iter().map(|&(_, r)| r as u32));
        let sorted = take_record_batch(&all, &order).unwrap();
        let path = tmp.path().join("whole-rows.parquet");
        let props = properties(&s, &sorted.schema(), "spans", &files[0].tenant).unwrap();
        let mut theirs = ArrowWriter::try_new(File::create(&path).unwrap(), sorted.schema(), Some(props)).unwrap();
        theirs.write(&sorted).unwrap();
        for (k, v) in [("openwit.min_time", files[0].min_time), ("openwit.max_time", files[0].max_time)] {
            theirs.append_key_value_metadata(KeyValue::new(k.to_string(), v.to_string()));
        }
        theirs.close().unwrap();
        let groups = |b: &[u8]| {
            parquet::file::metadata::ParquetMetaDataReader::new()
                .parse_and_finish(&bytes::Bytes::copy_from_slice(b))
                .unwrap()
                .num_row_groups()
        };
        assert_eq!(groups(&ours), 2, "14,090 rows (written at the last batch) in row groups of at most 12,000");
        let theirs = std::fs::read(&path).unwrap();
        // Bytes and maps of bytes without statistics are encoded by `dictionary_chunk`: their chunks may
        // differ (a dictionary in another order, pages split elsewhere; `attributes`' keys, `trace_state`
        // and `resource_schema_url` come out the same here); every other column chunk is byte for byte
        // the crate's, and the files read back alike.
        let chunks = |b: &[u8]| {
            let meta = parquet::file::metadata::ParquetMetaDataReader::new()
                .parse_and_finish(&bytes::Bytes::copy_from_slice(b))
                .unwrap();
            let mut chunks = BTreeMap::new();
            for (g, group) in meta.row_groups().iter().enumerate() {
                for c in group.columns() {
                    let (start, len) = c.byte_range();
                    chunks.insert((g, c.column_path().string()), b[start as usize..(start + len) as usize].to_vec());
                }
            }
            chunks
        };
        let (a, b) = (chunks(&ours), chunks(&theirs));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        let differing: std::collections::BTreeSet<String> =
            a.iter().filter(|(k, v)| b[*k] != **v).map(|((_, path), _)| path.clone()).collect();
        let ours_only = [
            "attributes.entries.values",
            "resource_attributes.entries.keys",
            "resource_attributes.entries.values",
            "scope_schema_url",
        ];
        assert_eq!(differing.into_iter().collect::<Vec<_>>(), ours_only);
        // Whoever encoded a chunk, its statistics and page index are the crate's: what a query prunes by.
        let described = |b: &[u8]| {
            parquet::file::metadata::ParquetMetaDataReader::new()
                .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required)
                .parse_and_finish(&bytes::Bytes::copy_from_slice(b))
                .unwrap()
        };
        let (m, n) = (described(&ours), described(&theirs));
        let (column_index, offset_index) = (m.column_index().unwrap(), m.offset_index().unwrap());
        for (g, group) in m.row_groups().iter().enumerate() {
            for (c, chunk) in group.columns().iter().enumerate() {
                let other = n.row_group(g).column(c);
                let path = chunk.column_path().string();
                assert_eq!(chunk.statistics(), other.statistics(), "{path}");
                assert_eq!(chunk.definition_level_histogram(), other.definition_level_histogram(), "{path}");
                assert_eq!(chunk.unencoded_byte_array_data_bytes(), other.unencoded_byte_array_data_bytes(), "{path}");
                assert_eq!(column_index[g][c], n.column_index().unwrap()[g][c], "{path}");
                let (a, b) = (&offset_index[g][c], &n.offset_index().unwrap()[g][c]);
                let rows = |o: &parquet::file::page_index::offset_index::OffsetIndexMetaData| {
                    o.page_locations().iter().map(|p| p.first_row_index).collect::<Vec<_>>()
                };
                assert_eq!(rows(a), rows(b), "{path}");
                assert_eq!(a.unencoded_byte_array_data_bytes(), b.unencoded_byte_array_data_bytes(), "{path}");
            }
        }
        let read = |b: Vec<u8>| {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes::Bytes::from(b), 1 << 20)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect::<Vec<_>>();
            arrow::compute::concat_batches(&reader[0].schema(), &reader).unwrap()
        };
        assert_eq!(read(ours), read(theirs));
    }

    #[test]
    fn rows_held_by_runs_are_written_as_they_came() {
        use super::super::runs::tests::{grouped_spans, spans as resources};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
        let tmp = tempfile::tempdir().unwrap();
        let (tx, _done) = mpsc::unbounded_channel();
        let token = AckToken::new(BatchId([7; 16]), tx);
        let budget = MemoryBudget::new(1 << 30);
        let mut w = budgeted_writer(tmp.path(), &budget);
        // Batches whose resource columns repeat (held by runs; the last held once per scope group by
        // the conversion, as the exporter gives them) and one where they change at each row.
        let batches = [resources(3, 50, T0), resources(40, 1, T0 + 1000), resources(2, 70, T0 + 2000)];
        let given = [batches[0].clone(), batches[1].clone(), grouped_spans(2, 70, T0 + 2000)];
        let mut item = 0;
        for b in &given {
            w.write(rows(b.clone(), &token, item)).unwrap();
            item += b.num_rows() as u32;
        }
        let came: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        assert!((budget.used() as usize) < came * 3 / 4, "held {} bytes of the {came} the rows came in", budget.used());
        let files = w.finalize_all().unwrap();
        let read: Vec<RecordBatch> = ParquetRecordBatchReader::try_new(File::open(&files[0].local).unwrap(), 1 << 20)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let read = arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
        // What was written, sorted as a row group is (by service, then time), here through Arrow's row
        // format of the key columns (the writer ranks each dictionary's values instead).
        let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let keys: Vec<arrow::array::ArrayRef> =
            ["service_name", "time"].map(|k| all.column_by_name(k).unwrap().clone()).to_vec();
        let converter = arrow::row::RowConverter::new(
            keys.iter().map(|k| arrow::row::SortField::new(k.data_type().clone())).collect(),
        )
        .unwrap();
        let encoded = converter.convert_columns(&keys).unwrap();
        let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
        order.sort_by_key(|&i| encoded.row(i as usize));
        let expected = take_record_batch(&all, &UInt32Array::from(order)).unwrap();
        assert_eq!(read.num_rows(), 330);
        assert_eq!(read, expected);
    }

    #[test]
    fn rows_split_by_hour_held_once_per_scope_group_are_written_as_they_came() {
        use super::super::runs::tests::{grouped_spans, spans as resources};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
        let tmp = tempfile::tempdir().unwrap();
        let (tx, _done) = mpsc::unbounded_channel();
        let token = AckToken::new(BatchId([8; 16]), tx);
        let mut w = Writer::new(settings(tmp.path(), u64::MAX), Arc::default());
        // Two resources of 70 spans each, held once per scope group, every resource's last 35 spans in
        // the next hour: each hour's part takes rows from both groups.
        let batch = resources(2, 70, T0 + HOUR - 70);
        w.write(rows(grouped_spans(2, 70, T0 + HOUR - 70), &token, 0)).unwrap();
        let mut files = w.finalize_all().unwrap();
        files.sort_by_key(|f| f.min_time);
        assert_eq!(files.iter().map(|f| f.rows).collect::<Vec<_>>(), [70, 70]);
        let read: Vec<RecordBatch> = files
            .iter()
            .flat_map(|f| ParquetRecordBatchReader::try_new(File::open(&f.local).unwrap(), 1 << 20).unwrap())
            .map(Result::unwrap)
            .collect();
        let read = arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
        // Sorted as the files are (by hour, then service, then time): here the span index within each
        // resource orders both.
        let order: Vec<u32> = [0..35, 70..105, 35..70, 105..140].into_iter().flatten().collect();
        assert_eq!(read, take_record_batch(&batch, &UInt32Array::from(order)).unwrap());
    }

    fn spans(times: &[u64]) -> RecordBatch {
        let spans = times
            .iter()
            .enumerate()
            .map(|(i, t)| Span {
                trace_id: vec![1; 16],
                span_id: (i as u64).to_be_bytes().to_vec(),
                start_time_unix_nano: *t,
                ..Default::default()
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        };
        columnar::to_record_batch("acme", &openwit_core::Payload::Traces(req)).unwrap()
    }

    fn rows(batch: RecordBatch, token: &Arc<AckToken>, first_item: u32) -> Rows<'static> {
        let n = batch.num_rows() as u32;
        Rows {
            signal: Signal::Traces,
            tenant: "acme",
            batch,
            items: (first_item..first_item + n).map(|i| (0, i)).collect(),
            batch_ids: vec![*token.id()],
            pledge: Lineage::range(token.clone(), first_item, n),
        }
    }

    #[test]
    fn rows_go_to_the_file_of_their_hour_and_files_hold_their_batches_until_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let (tx, mut done) = mpsc::unbounded_channel();
        let token = AckToken::new(BatchId([7; 16]), tx);
        let mut w = Writer::new(settings(tmp.path(), u64::MAX), Arc::default());
        let out = w.write(rows(spans(&[T0 + 5, T0 + HOUR + 1, T0 + 9, T0 + 2 * HOUR]), &token, 0)).unwrap();
        assert!(out.is_empty(), "nothing reached its size");
        drop(token);
        let mut files = w.finalize_all().unwrap();
        files.sort_by_key(|f| f.min_time);
        assert_eq!(files.len(), 3);
        assert_eq!(files.iter().map(|f| f.rows).collect::<Vec<_>>(), vec![2, 1, 1]);
        assert_eq!((files[0].min_time, files[0].max_time), ((T0 + 5) as i64, (T0 + 9) as i64));
        assert!(files[0].rel_path.starts_with("spans/tenant=acme/date=2026-01-01/hour=00/node-1-"));
        assert!(files[1].rel_path.starts_with("spans/tenant=acme/date=2026-01-01/hour=01/"));
        assert!(files[2].rel_path.starts_with("spans/tenant=acme/date=2026-01-01/hour=02/"));
        // Items 0 and 2 in the first file, 1 and 3 in the others.
        assert_eq!(files[0].held, vec![(BatchId([7; 16]), 0, 1), (BatchId([7; 16]), 2, 1)]);
        assert_eq!(files[1].held, vec![(BatchId([7; 16]), 1, 1)]);
        for f in &files {
            assert!(f.local.exists() && f.local.extension().unwrap() == "parquet");
            assert_eq!(f.tail[4..], *b"PAR1");
        }
        assert!(done.try_recv().is_err(), "the WAL batch completes only when every file is stored");
        let last = files.pop().unwrap();
        for f in files {
            f.pledge.settle(&Verdict::Stored);
        }
        assert!(done.try_recv().is_err(), "one file is not stored yet");
        last.pledge.settle(&Verdict::Stored);
        assert_eq!(done.try_recv().unwrap().outcome, Outcome::Stored);
    }

    #[test]
    fn small_columns_and_the_times_of_spans_and_logs_are_written_without_zstd() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path(), u64::MAX);
        for (signal, table, plain) in [
            (Signal::Traces, "spans", &["time", "end_time", "duration_ns", "service_name", "status_code", "kind"][..]),
            (Signal::Logs, "logs", &["time", "observed_time", "service_name", "severity_number"][..]),
            (Signal::Metrics, "metrics", &["service_name"][..]),
        ] {
            let schema = columnar::to_record_batch("t", &openwit_core::Payload::empty(signal)).unwrap().schema();
            let props = properties(&s, &schema, table, "acme").unwrap();
            let descr = ArrowSchemaConverter::new().convert(&schema).unwrap();
            for c in descr.columns() {
                let name = c.path().string();
                let expected = if plain.contains(&name.as_str()) {
                    Compression::UNCOMPRESSED
                } else {
                    Compression::ZSTD(ZstdLevel::try_new(s.compression_level).unwrap())
                };
                assert_eq!(props.compression(c.path()), expected, "{table}.{name}");
            }
        }
    }

    #[test]
    fn metric_times_are_plain_for_zstd_to_find_their_repeats_and_other_times_delta_encoded() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path(), u64::MAX);
        for (signal, table, column, encoding) in [
            (Signal::Metrics, "metrics", "time", Encoding::PLAIN),
            (Signal::Metrics, "metrics", "start_time", Encoding::PLAIN),
            (Signal::Metrics, "metrics", "exemplars.list.item.time", Encoding::PLAIN),
            (Signal::Traces, "spans", "time", Encoding::DELTA_BINARY_PACKED),
            (Signal::Logs, "logs", "observed_time", Encoding::DELTA_BINARY_PACKED),
        ] {
            let schema = columnar::to_record_batch("t", &openwit_core::Payload::empty(signal)).unwrap().schema();
            let props = properties(&s, &schema, table, "acme").unwrap();
            let path = ColumnPath::from(column.split('.').map(String::from).collect::<Vec<_>>());
            assert_eq!(props.encoding(&path), Some(encoding), "{table}.{column}");
            assert!(!props.dictionary_enabled(&path), "{table}.{column}");
            if table == "metrics" {
                let zstd = Compression::ZSTD(ZstdLevel::try_new(s.compression_level).unwrap());
                assert_eq!(props.compression(&path), zstd, "{table}.{column}");
            }
        }
    }

    #[test]
    fn ids_without_a_dictionary_are_written_with_their_lengths_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path(), u64::MAX);
        // (table, column, its encoding; None: the crate's default, with or without a dictionary)
        for (signal, table, column, encoding, dictionary) in [
            (Signal::Logs, "logs", "trace_id", Some(Encoding::DELTA_LENGTH_BYTE_ARRAY), false),
            (Signal::Logs, "logs", "span_id", Some(Encoding::DELTA_LENGTH_BYTE_ARRAY), false),
            (Signal::Traces, "spans", "span_id", Some(Encoding::DELTA_LENGTH_BYTE_ARRAY), false),
            (Signal::Traces, "spans", "links.list.item.trace_id", Some(Encoding::DELTA_LENGTH_BYTE_ARRAY), false),
            (Signal::Metrics, "metrics", "exemplars.list.item.span_id", Some(Encoding::DELTA_LENGTH_BYTE_ARRAY), false),
            (Signal::Traces, "spans", "trace_id", None, true),
            (Signal::Traces, "spans", "parent_span_id", None, false),
        ] {
            let schema = columnar::to_record_batch("t", &openwit_core::Payload::empty(signal)).unwrap().schema();
            let props = properties(&s, &schema, table, "acme").unwrap();
            let path = ColumnPath::from(column.split('.').map(String::from).collect::<Vec<_>>());
            assert_eq!(props.encoding(&path), encoding, "{table}.{column}");
            assert_eq!(props.dictionary_enabled(&path), dictionary, "{table}.{column}");
        }
    }

    #[test]
    fn row_groups_record_their_sort_key_up_to_the_first_column_that_is_not_a_leaf() {
        let tmp = tempfile::tempdir().unwrap();
        let by_resource = WriterSettings {
            sort_by: Some(vec![
                "service_name".into(),
                "no_such_column".into(),
                "resource_attributes".into(),
                "time".into(),
            ]),
            ..settings(tmp.path(), u64::MAX)
        };
        for (s, signal, table, key, recorded) in [
            (
                settings(tmp.path(), u64::MAX),
                Signal::Metrics,
                "metrics",
                "service_name,metric_name,time",
                "service_name,metric_name,time",
            ),
            (settings(tmp.path(), u64::MAX), Signal::Traces, "spans", "service_name,time", "service_name,time"),
            (settings(tmp.path(), u64::MAX), Signal::Logs, "logs", "service_name,time", "service_name,time"),
            (
                by_resource,
                Signal::Traces,
                "spans",
                "service_name,no_such_column,resource_attributes,time",
                "service_name",
            ),
        ] {
            let schema = columnar::to_record_batch("t", &openwit_core::Payload::empty(signal)).unwrap().schema();
            let props = properties(&s, &schema, table, "acme").unwrap();
            let descr = ArrowSchemaConverter::new().convert(&schema).unwrap();
            let sorted: Vec<String> = props
                .sorting_columns()
                .unwrap()
                .iter()
                .map(|c| descr.column(c.column_idx as usize).path().string())
                .collect();
            // Parquet's `sorting_columns` names leaves: a map ends what it can say.
            assert_eq!(sorted.join(","), recorded, "{table}");
            let meta = props.key_value_metadata().unwrap();
            let said = meta.iter().find(|kv| kv.key == "openwit.sorted_by").and_then(|kv| kv.value.clone());
            assert_eq!(said.as_deref(), Some(format!("{key} (per row group)").as_str()), "{table}");
        }
    }

    #[test]
    fn a_file_is_finalized_once_it_reaches_its_size() {
        let tmp = tempfile::tempdir().unwrap();
        let (tx, _done) = mpsc::unbounded_channel();
        let token = AckToken::new(BatchId([1; 16]), tx);
        let mut s = settings(tmp.path(), 20_000);
        s.row_group_rows = 50;
        let mut w = Writer::new(s, Arc::default());
        let mut finalized = Vec::new();
        for k in 0..40u32 {
            let times: Vec<u64> = (0..50).map(|i| T0 + (k * 50 + i) as u64).collect();
            finalized.extend(w.write(rows(spans(&times), &token, k * 50)).unwrap());
        }
        finalized.extend(w.finalize_all().unwrap());
        assert!(finalized.len() > 2, "2,000 spans at ~20 kB per file make several files");
        assert_eq!(finalized.iter().map(|f| f.rows).sum::<u64>(), 2000);
        // Each file holds one contiguous run of the batch's items, and together they hold all of them.
        let mut runs: Vec<(u32, u32)> = finalized.iter().flat_map(|f| f.held.iter().map(|h| (h.1, h.2))).collect();
        runs.sort();
        assert_eq!(runs.iter().map(|r| r.1).sum::<u32>(), 2000);
        assert!(runs.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        // The size is checked after each row group; the footer of this wide schema comes on top.
        for f in &finalized[..finalized.len() - 1] {
            assert!(f.bytes < 100_000, "rotation near the size: {} bytes", f.bytes);
        }
    }

    #[test]
    fn log_records_without_a_time_are_placed_by_their_observed_time() {
        let tmp = tempfile::tempdir().unwrap();
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord { observed_time_unix_nano: T0 + 3 * HOUR, ..Default::default() },
                        LogRecord { time_unix_nano: T0, observed_time_unix_nano: T0 + 5 * HOUR, ..Default::default() },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let batch = columnar::to_record_batch("acme", &openwit_core::Payload::Logs(req)).unwrap();
        let mut w = Writer::new(settings(tmp.path(), u64::MAX), Arc::default());
        w.write(Rows {
            signal: Signal::Logs,
            tenant: "acme",
            batch,
            items: vec![],
            batch_ids: vec![],
            pledge: Lineage::default(),
        })
        .unwrap();
        let mut files = w.finalize_all().unwrap();
        files.sort_by_key(|f| f.min_time);
        assert_eq!(
            files.iter().map(|f| f.rel_path.split('/').nth(3).unwrap()).collect::<Vec<_>>(),
            ["hour=00", "hour=03"]
        );
    }

    #[test]
    fn a_write_error_discards_open_files_and_fails_their_batches() {
        let tmp = tempfile::tempdir().unwrap();
        let (tx, mut done) = mpsc::unbounded_channel();
        let token = AckToken::new(BatchId([3; 16]), tx);
        let mut w = Writer::new(settings(tmp.path(), u64::MAX), Arc::default());
        w.write(rows(spans(&[T0]), &token, 0)).unwrap();
        // Rows without a time column cannot be placed: the write fails.
        let good = spans(&[T0]);
        let bad = good.project(&[good.schema().index_of("trace_id").unwrap()]).unwrap();
        let e = w.write(rows(bad, &token, 1)).unwrap_err();
        assert!(e.is_permanent(), "rows without a time column will never fit: {e}");
        drop(token);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "the unfinished file is gone");
        let c = done.try_recv().unwrap();
        assert!(matches!(&c.outcome, Outcome::Failed(e) if e.contains("parquet")), "the batch is failed: {c:?}");
        assert!(w.finalize_all().unwrap().is_empty());
    }
}
