//! Builds the index of one file's log rows, in a scratch directory, and returns it as a bundle.

use crate::IndexError;
use crate::bundle;
use crate::fields::*;
use arrow::array::{Array, AsArray, MapArray};
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;
use openwit_core::attributes::AttrType;
use tantivy::schema::{FAST, STRING, Schema, TEXT};
use tantivy::{Index, TantivyDocument};

/// The schema every log index has.
pub fn log_schema() -> Schema {
    let mut s = Schema::builder();
    s.add_u64_field(ROW, FAST);
    s.add_text_field(BODY, TEXT);
    for raw in [SEVERITY_TEXT, SERVICE_NAME, TRACE_ID, ATTRIBUTES] {
        s.add_text_field(raw, STRING);
    }
    s.build()
}

/// Indexing memory per build: enough for a file's rows without flushing many small segments.
const WRITER_HEAP: usize = 64 * 1024 * 1024;

/// Indexes `batches` (the rows of one logs file, in file order: row numbers count across them) and
/// returns the bundle. `scratch` is an empty directory the build may use; it is left for the caller to
/// remove.
pub fn logs(batches: &[RecordBatch], scratch: &std::path::Path) -> Result<Vec<u8>, IndexError> {
    let schema = log_schema();
    let field = |n: &str| schema.get_field(n).expect("in the schema");
    let (row_f, body_f, sev_f, svc_f, trace_f, attr_f) =
        (field(ROW), field(BODY), field(SEVERITY_TEXT), field(SERVICE_NAME), field(TRACE_ID), field(ATTRIBUTES));
    let index = Index::create_in_dir(scratch, schema.clone())?;
    // One indexing thread: the daemon indexes in the background beside ingest.
    let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, WRITER_HEAP)?;
    let mut row = 0u64;
    for b in batches {
        let col = |n: &str| b.column_by_name(n).ok_or_else(|| IndexError::Rows(format!("no {n} column")));
        let body = col("body")?.as_string_opt::<i32>().ok_or_else(|| IndexError::Rows("body is not text".into()))?;
        let sev = col("severity_text")?;
        let svc = col("service_name")?;
        let trace = col("trace_id")?.as_binary_opt::<i32>().ok_or_else(|| IndexError::Rows("trace_id".into()))?;
        let attrs: &MapArray = col("attributes")?.as_map_opt().ok_or_else(|| IndexError::Rows("attributes".into()))?;
        let types = col("attribute_types")?.as_list_opt::<i32>().ok_or_else(|| IndexError::Rows("types".into()))?;
        for i in 0..b.num_rows() {
            let mut doc = TantivyDocument::new();
            doc.add_u64(row_f, row);
            if !body.is_null(i) {
                doc.add_text(body_f, body.value(i));
            }
            for (f, a) in [(sev_f, sev), (svc_f, svc)] {
                if let Some(s) = dict_str(a, i).filter(|s| !s.is_empty()) {
                    doc.add_text(f, s);
                }
            }
            if !trace.is_null(i) && !trace.value(i).is_empty() {
                doc.add_text(trace_f, hex(trace.value(i)));
            }
            for (k, v) in string_attributes(attrs, types, i) {
                doc.add_text(attr_f, format!("{k}={v}"));
            }
            writer.add_document(doc)?;
            row += 1;
        }
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    bundle::pack(scratch)
}

fn dict_str(a: &arrow::array::ArrayRef, i: usize) -> Option<&str> {
    if a.is_null(i) {
        return None;
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
