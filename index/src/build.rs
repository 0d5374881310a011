//! Builds the index of one file's rows (in a scratch directory, returned as a bundle), or of rows held
//! in memory (for a scan): one document per row, with its row number, its time and the spec's fields.

use crate::IndexError;
use crate::bundle;
use crate::spec::{FLAGS, Kind, LONG_TEXT, ROW, Spec};
use arrow::array::{Array, ArrayRef, AsArray, MapArray};
use arrow::datatypes::{Int32Type, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;
use openwit_core::attributes::AttrType;
use std::sync::{Arc, Condvar, Mutex};
use tantivy::indexer::UserOperation;
use tantivy::schema::Field;
use tantivy::{Index, IndexWriter, TantivyDocument};

/// Indexing memory per build by default (the parquet exporter's `index.memory_megabytes`): enough for
/// a file's rows without flushing many small segments. Tantivy fills this arena before it writes a
/// segment, so a file of more than a few hundred thousand rows holds all of it while it is indexed (the
/// daemon charges it to its memory budget meanwhile).
pub const WRITER_HEAP: usize = 64 * 1024 * 1024;
/// Tantivy's smallest indexing arena for one thread (a scan's batch).
const SCAN_HEAP: usize = 15_000_000;

/// Batches handed to the indexing thread and not yet indexed, at most: the rows being read wait for it.
/// Without a bound, a file read faster than it is indexed queued all its documents (the daemon's RSS
/// rose by ~350 MiB while it indexed a file of 3M spans).
const QUEUED_BATCHES: usize = 2;

/// Counts the batches handed to the indexing thread and not yet indexed.
#[derive(Default)]
struct Pacer {
    queued: Mutex<usize>,
    indexed: Condvar,
}

impl Pacer {
    /// Waits until fewer than [`QUEUED_BATCHES`] are queued, then counts one more until the returned
    /// ticket (shared by the batch's documents) is dropped with the last of them. A wait ends after a
    /// second regardless: a stalled indexing thread shows as an error when the batch is handed over.
    fn ticket(self: &Arc<Pacer>) -> Arc<Ticket> {
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while *queued >= QUEUED_BATCHES {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            queued = self.indexed.wait_timeout(queued, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        *queued += 1;
        Arc::new(Ticket(self.clone()))
    }
}

/// One batch's place in the queue, given back when the indexing thread drops its last document.
struct Ticket(Arc<Pacer>);

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut queued = self.0.queued.lock().unwrap_or_else(|p| p.into_inner());
        *queued = queued.saturating_sub(1);
        self.0.indexed.notify_one();
    }
}

/// A document and its batch's ticket: Tantivy drops each document once it has indexed it.
struct Paced {
    doc: TantivyDocument,
    _ticket: Arc<Ticket>,
}

impl tantivy::Document for Paced {
    type Value<'a> = <TantivyDocument as tantivy::Document>::Value<'a>;
    type FieldsValuesIter<'a> = <TantivyDocument as tantivy::Document>::FieldsValuesIter<'a>;

    fn iter_fields_and_values(&self) -> Self::FieldsValuesIter<'_> {
        self.doc.iter_fields_and_values()
    }
}

/// Turns rows into documents as a spec says.
pub struct Builder {
    spec: Spec,
    row: Field,
    flags: Field,
    fields: Vec<(String, Kind, Field)>,
    index: Index,
}

impl Builder {
    fn with_index(spec: &Spec, index: Index) -> Builder {
        crate::spec::register(index.tokenizers());
        let schema = index.schema();
        let f = |n: &str| schema.get_field(n).expect("in the spec's schema");
        let fields =
            spec.fields.iter().map(|n| (n.clone(), spec.table.kind_of(n).unwrap_or(Kind::Text), f(n))).collect();
        Builder { spec: spec.clone(), row: f(ROW), flags: f(FLAGS), fields, index }
    }

    /// Adds `batch`'s rows, numbered from `first_row`; returns how many.
    fn add(
        &self,
        writer: &IndexWriter<Paced>,
        pacer: &Arc<Pacer>,
        batch: &RecordBatch,
        first_row: u64,
    ) -> Result<u64, IndexError> {
        let cols = self
            .fields
            .iter()
            .map(|(n, _, _)| batch.column_by_name(n).ok_or_else(|| IndexError::Rows(format!("no {n} column"))))
            .collect::<Result<Vec<_>, _>>()?;
        let types = batch.column_by_name("attribute_types");
        // Handed to the indexing thread a batch at a time: one document at a time, the hand-over (a
        // channel send and a thread wake-up each) cost about a third of the indexing CPU. Tantivy's
        // queue holds 10,000 hand-overs, so batches wait here for the indexing thread instead.
        let ticket = pacer.ticket();
        let mut docs = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let mut doc = Paced { doc: TantivyDocument::new(), _ticket: ticket.clone() };
            let doc_ref = &mut doc.doc;
            doc_ref.add_u64(self.row, first_row + i as u64);
            for ((name, _, field), col) in self.fields.iter().zip(&cols) {
                self.values(name, col, types, i, &mut |v: &str| {
                    if v.len() > LONG_TEXT {
                        doc_ref.add_text(self.flags, format!("long:{name}"));
                    }
                    doc_ref.add_text(*field, v);
                })?;
            }
            docs.push(UserOperation::Add(doc));
        }
        drop(ticket);
        writer.run(docs)?;
        Ok(batch.num_rows() as u64)
    }

    /// Hands `emit` the texts of column `name` in row `i` (none for a null or empty value), borrowed
    /// from the Arrow arrays where they are there as they are indexed.
    fn values(
        &self,
        name: &str,
        col: &ArrayRef,
        types: Option<&ArrayRef>,
        i: usize,
        emit: &mut dyn FnMut(&str),
    ) -> Result<(), IndexError> {
        if col.is_null(i) {
            return Ok(());
        }
        match name {
            "trace_id" => {
                let ids =
                    col.as_binary_opt::<i32>().ok_or_else(|| IndexError::Rows("trace_id is not binary".into()))?;
                if !ids.value(i).is_empty() {
                    emit(&hex(ids.value(i)));
                }
            }
            "attributes" => {
                let map: &MapArray =
                    col.as_map_opt().ok_or_else(|| IndexError::Rows("attributes is not a map".into()))?;
                let types = types
                    .and_then(|t| t.as_list_opt::<i32>())
                    .ok_or_else(|| IndexError::Rows("no attribute_types column beside attributes".into()))?;
                let keys = &self.spec.attribute_keys;
                let mut term = String::new();
                for (k, v) in string_attributes(map, types, i) {
                    if keys.is_empty() || keys.iter().any(|x| x == k) {
                        term.clear();
                        term.extend([k, "=", v]);
                        emit(&term);
                    }
                }
            }
            "events" => {
                let list = col.as_list_opt::<i32>().ok_or_else(|| IndexError::Rows("events is not a list".into()))?;
                let events = list.value(i);
                let names = events
                    .as_struct_opt()
                    .and_then(|s| s.column_by_name("name"))
                    .ok_or_else(|| IndexError::Rows("events have no name".into()))?;
                for j in 0..names.len() {
                    if let Some(s) = text_at(names, j).filter(|s| !s.is_empty()) {
                        emit(s);
                    }
                }
            }
            _ => {
                let s = text_at(col, i).ok_or_else(|| IndexError::Rows(format!("{name} is not text")))?;
                if !s.is_empty() {
                    emit(s);
                }
            }
        }
        Ok(())
    }

    fn write(
        &self,
        heap: usize,
        batches: impl IntoIterator<Item = Result<RecordBatch, IndexError>>,
    ) -> Result<(), IndexError> {
        // One indexing thread: the daemon indexes in the background beside ingest.
        let mut writer = self.index.writer_with_num_threads::<Paced>(1, heap)?;
        // Segments flushed when the arena fills are kept as they are: merging them would encode every
        // posting again (a third more CPU on a large file) to save little, as a search visits each.
        writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
        let pacer = Arc::new(Pacer::default());
        let mut row = 0u64;
        for b in batches {
            row += self.add(&writer, &pacer, &b?, row)?;
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        Ok(())
    }
}

/// Indexes `batches` (the rows of one file, in file order: row numbers count across them) as `spec`
/// says and returns the bundle. `scratch` is an empty directory the build may use; it is left for the
/// caller to remove.
pub fn build(spec: &Spec, batches: &[RecordBatch], scratch: &std::path::Path) -> Result<Vec<u8>, IndexError> {
    let mut out = Vec::new();
    build_from(spec, batches.iter().cloned().map(Ok), WRITER_HEAP, scratch, &mut out)?;
    Ok(out)
}

/// As [`build`], taking the rows a batch at a time as they are read and writing the bundle to `out` as
/// it is packed (returns its length), with an indexing arena of `heap` bytes: only one batch (and the
/// rows' times, 8 bytes each) is held at once beside it, whatever the file's size, and the bundle is
/// never held whole. With a file's indexed columns read
/// whole first, the daemon's RSS rose from ~230 MiB to 1.6 GiB while it indexed a file of 3M spans
/// (`bench/run-steady`; 576 MiB once streamed, 397 MiB once paced and packed to disk).
pub fn build_from(
    spec: &Spec,
    batches: impl IntoIterator<Item = Result<RecordBatch, IndexError>>,
    heap: usize,
    scratch: &std::path::Path,
    out: &mut impl std::io::Write,
) -> Result<u64, IndexError> {
    // Nothing is stored in the document store (hits are rows of the Parquet file): large blocks keep
    // its per-block overhead small.
    let settings = tantivy::IndexSettings { docstore_blocksize: 1 << 20, ..Default::default() };
    let index = Index::builder().schema(crate::spec::schema(spec)).settings(settings).create_in_dir(scratch)?;
    let b = Builder::with_index(spec, index);
    // The rows' times are encoded as they pass, a block at a time, into their file in the bundle.
    let file = std::fs::File::create(scratch.join(crate::time::TIME_FILE))?;
    let mut times = crate::time::TimeWriter::new(std::io::BufWriter::new(file))?;
    let batches = batches.into_iter().map(|b| {
        let b = b?;
        match b.column_by_name("time").and_then(|t| t.as_primitive_opt::<TimestampNanosecondType>()) {
            Some(t) => times.push(t.values())?,
            None => return Err(IndexError::Rows("no time column (nanosecond timestamps)".into())),
        }
        Ok(b)
    });
    b.write(heap, batches)?;
    times.finish()?.into_inner().map_err(|e| e.into_error())?;
    // The spec travels with the index: a reader knows what it can answer.
    let json = serde_json::to_vec(spec).map_err(|e| IndexError::Bundle(e.to_string()))?;
    std::fs::write(scratch.join(crate::spec::SPEC_FILE), json)?;
    bundle::pack_to(scratch, out)
}

/// An index of rows held in memory, as a file's would be: what a scan searches.
pub fn in_ram(spec: &Spec, batch: &RecordBatch) -> Result<Index, IndexError> {
    let b = Builder::with_index(spec, Index::create_in_ram(crate::spec::schema(spec)));
    b.write(SCAN_HEAP, [Ok(batch.clone())])?;
    Ok(b.index)
}

/// The text of a string or dictionary-of-strings value.
fn text_at(a: &ArrayRef, i: usize) -> Option<&str> {
    if a.is_null(i) {
        return None;
    }
    if let Some(s) = a.as_string_opt::<i32>() {
        return Some(s.value(i));
    }
    let d = a.as_dictionary_opt::<Int32Type>()?;
    Some(d.values().as_string_opt::<i32>()?.value(d.keys().value(i) as usize))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The string-valued attributes of row `i` (a row without type codes holds only strings).
fn string_attributes<'a>(
    map: &'a MapArray,
    types: &'a arrow::array::ListArray,
    i: usize,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    let (start, end) =
        if map.is_null(i) { (0, 0) } else { (map.value_offsets()[i] as usize, map.value_offsets()[i + 1] as usize) };
    let keys = map.keys().as_string::<i32>();
    let vals = map.values().as_string::<i32>();
    let codes = types.values().as_primitive::<arrow::datatypes::UInt8Type>();
    let code_start = types.value_offsets()[i] as usize;
    let typed = types.value_offsets()[i + 1] as usize > code_start;
    (start..end).filter_map(move |j| {
        let is_str = !typed || codes.value(code_start + (j - start)) == AttrType::Str as u8;
        is_str.then(|| (keys.value(j), vals.value(j)))
    })
}

#[cfg(test)]
mod pacing {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_batch_waits_while_two_are_queued_until_one_is_indexed() {
        let pacer = Arc::new(Pacer::default());
        let (first, second) = (pacer.ticket(), pacer.ticket());
        let (tx, rx) = std::sync::mpsc::channel();
        let p = pacer.clone();
        let third = std::thread::spawn(move || {
            let t = p.ticket();
            tx.send(()).unwrap();
            t
        });
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "a third batch was handed over at once");
        let copy = first.clone();
        drop(first);
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "a batch counts until its last document goes");
        drop(copy);
        rx.recv_timeout(Duration::from_secs(5)).expect("the third batch goes once one is indexed");
        drop((second, third.join().unwrap()));
        assert_eq!(*pacer.queued.lock().unwrap(), 0);
    }
}
