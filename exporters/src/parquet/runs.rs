//! Buffered rows in less memory: columns whose rows repeat in runs are held once per run.
//!
//! OTLP nests items under their resource and scope, and a table copies the resource's and scope's
//! fields onto each of their rows (`resource_attributes`, `scope_schema_url`, a metric's description
//! on each of its points): such columns repeat in runs of consecutive rows. In the load generator's
//! spans the resource attributes were 520 of a row's 1,131 Arrow bytes, and an open file buffers a row
//! group's rows in Arrow until they are sorted and written — the largest thing the exporter holds.
//! While buffered, such a column is held as `Dictionary(Int32, <its type>)` over its runs (one copy per
//! run, a 4-byte key per row); [`gather_column`] reads the sorted rows back in the table's types as
//! they are written, and a query reading buffered rows gets them back through `columnar::conform` (a cast
//! from the dictionary to its value type). Rows from the conversion come with the resource's and
//! scope's columns held so already (once per scope group, `columnar::to_grouped_record_batch`), and
//! [`compact`] leaves them as they are; it looks for runs in the other columns, and in every column of
//! rows read back from files (compaction's).

use arrow::array::make_comparator;
use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Array, RecordBatch, RecordBatchOptions, UInt32Array,
};
use arrow::compute::SortOptions;
use arrow::compute::kernels::partition::partition;
use arrow::compute::{interleave, take};
use arrow::datatypes::{Field, Int32Type, Schema};
use arrow::error::ArrowError;
use openwit_core::columnar::repeats_cost_memory;
use std::sync::Arc;

/// A column is held by runs when it has at most one run per this many rows: below that, the keys and
/// the copy cost more than they save.
const MIN_ROWS_PER_RUN: usize = 2;

/// `batch` with each column whose rows repeat in runs held as a dictionary over them; columns of
/// fixed-width values, and those held once per scope group already (the conversion's form, see
/// `openwit_core::columnar::to_grouped_record_batch`), stay as they are. (A sort key held so is ranked
/// by its runs: `sort_key`.)
pub fn compact(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let n = batch.num_rows();
    if n < 2 * MIN_ROWS_PER_RUN {
        return Ok(batch.clone());
    }
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let mut changed = false;
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let by_runs = if repeats_cost_memory(field.data_type()) { by_runs(column)? } else { None };
        match by_runs {
            Some(dict) => {
                changed = true;
                fields.push(field.as_ref().clone().with_data_type(dict.data_type().clone()));
                columns.push(Arc::new(dict));
            }
            None => {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
    }
    if !changed {
        return Ok(batch.clone());
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new_with_options(schema, columns, &RecordBatchOptions::new().with_row_count(Some(n)))
}

/// Neighbouring rows compared to guess whether a column repeats in runs before it is split into them.
const PROBES: usize = 16;

/// `column` as a dictionary over its runs of equal consecutive values, if it has few enough runs.
fn by_runs(column: &ArrayRef) -> Result<Option<DictionaryArray<Int32Type>>, ArrowError> {
    let n = column.len();
    // A few neighbours first: a column of values of their own (span ids, a span's attributes) is
    // skipped without comparing every row, which cost ~3 % of the daemon's CPU at a steady 10k spans/s.
    let same = make_comparator(column.as_ref(), column.as_ref(), SortOptions::default())?;
    let probes = PROBES.min(n - 1);
    let equal = (0..probes).filter(|p| {
        let i = p * (n - 1) / probes;
        same(i, i + 1).is_eq()
    });
    if equal.count() * MIN_ROWS_PER_RUN < probes {
        return Ok(None);
    }
    let runs = partition(std::slice::from_ref(column))?;
    if runs.len() * MIN_ROWS_PER_RUN > n {
        return Ok(None);
    }
    let starts: Vec<u32> = runs.ranges().into_iter().map(|run| run.start as u32).collect();
    Ok(Some(over_runs(column, &starts)?))
}

/// `column` as a dictionary with a value per run, the runs starting at `starts` (ascending, from 0).
fn over_runs(column: &ArrayRef, starts: &[u32]) -> Result<DictionaryArray<Int32Type>, ArrowError> {
    let n = column.len();
    let mut keys = Vec::with_capacity(n);
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(n, |&e| e as usize);
        keys.extend(std::iter::repeat_n(k as i32, end - start as usize));
    }
    let values = take(column.as_ref(), &UInt32Array::from(starts.to_vec()), None)?;
    DictionaryArray::try_new(Int32Array::from(keys), values)
}

/// The rows `indices` of `batches` whole, in `schema`: [`gather_column`] for every column (the writer
/// gathers a column at a time; the tests compare whole rows).
#[cfg(test)]
pub fn gather(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
    indices: &[(usize, usize)],
) -> Result<RecordBatch, ArrowError> {
    let columns = (0..schema.fields().len())
        .map(|i| gather_column(schema.field(i), i, batches, indices))
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(indices.len()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
}

/// Column `i` of the rows `indices` ((batch, row) pairs) of `batches` — each as [`compact`] left it —
/// in the table's type `field` (a column held by runs is gathered back from its runs' values).
pub fn gather_column(
    field: &Field,
    i: usize,
    batches: &[RecordBatch],
    indices: &[(usize, usize)],
) -> Result<ArrayRef, ArrowError> {
    let parts: Vec<&ArrayRef> = batches.iter().map(|b| b.column(i)).collect();
    let by_runs = |a: &ArrayRef| a.data_type() != field.data_type();
    if !parts.iter().any(|a| by_runs(a)) {
        let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        return interleave(&parts, indices);
    }
    // Each row is read from its run's value: the dictionaries' values (or the column itself, where a
    // batch holds it row by row) are interleaved through the rows' keys.
    let mut values: Vec<&dyn Array> = Vec::with_capacity(parts.len());
    let mut keys: Vec<Option<&Int32Array>> = Vec::with_capacity(parts.len());
    for a in &parts {
        if by_runs(a) {
            let dict = a.as_dictionary_opt::<Int32Type>().ok_or_else(|| {
                ArrowError::SchemaError(format!(
                    "column {} is {} in a buffered batch, {} in the table",
                    field.name(),
                    a.data_type(),
                    field.data_type()
                ))
            })?;
            values.push(dict.values().as_ref());
            keys.push(Some(dict.keys()));
        } else {
            values.push(a.as_ref());
            keys.push(None);
        }
    }
    let at: Vec<(usize, usize)> =
        indices.iter().map(|&(b, r)| (b, keys[b].map_or(r, |k| k.value(r) as usize))).collect();
    interleave(&values, &at)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::compute::interleave_record_batch;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use openwit_core::columnar::{self, SCOPE_GROUP_COLUMNS};

    const T0: u64 = 1_767_225_600_000_000_000;

    fn attr(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    /// Spans of `resources` resources (`svc-0`…, with a host attribute), `per` spans each, from time
    /// `t` on, as the table's Arrow rows. Also the writer's tests' rows.
    pub(crate) fn spans(resources: usize, per: usize, t: u64) -> RecordBatch {
        columnar::expand_groups(&grouped_spans(resources, per, t)).unwrap()
    }

    /// [`spans`] as the conversion holds them (`to_grouped_record_batch`): what the exporter writes.
    pub(crate) fn grouped_spans(resources: usize, per: usize, t: u64) -> RecordBatch {
        let resource_spans = (0..resources)
            .map(|r| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        attr("service.name", &format!("svc-{r}")),
                        attr("host.name", &format!("host-{r}")),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: (0..per)
                        .map(|i| Span {
                            trace_id: vec![r as u8; 16],
                            span_id: (i as u64).to_be_bytes().to_vec(),
                            name: format!("op-{}", i % 3),
                            start_time_unix_nano: t + (i * resources + r) as u64,
                            attributes: vec![attr("i", &i.to_string())],
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        let req = ExportTraceServiceRequest { resource_spans };
        columnar::spans::to_grouped_record_batch("acme", &req).unwrap()
    }

    #[test]
    fn repeated_columns_are_held_by_runs_and_read_back_as_they_were() {
        let rows = spans(3, 40, T0);
        let held = compact(&rows).unwrap();
        let dict = held.column_by_name("resource_attributes").unwrap().as_dictionary::<Int32Type>();
        assert_eq!(dict.values().len(), 3, "one value per resource");
        assert!(held.column_by_name("scope_schema_url").unwrap().as_dictionary_opt::<Int32Type>().is_some());
        assert_eq!(
            held.column_by_name("attributes").unwrap().data_type(),
            rows.schema().field_with_name("attributes").unwrap().data_type(),
            "a value per span stays as it is"
        );
        assert_eq!(
            held.column_by_name("service_name").unwrap().data_type(),
            rows.column_by_name("service_name").unwrap().data_type(),
            "a dictionary stays as it is"
        );
        // (The rows' resource columns are exact-size arrays, taken from one row per scope group, so
        // there is no builder slack for the runs to save: two thirds, not a half.)
        assert!(
            held.get_array_memory_size() * 3 < rows.get_array_memory_size() * 2,
            "{} bytes held for {}",
            held.get_array_memory_size(),
            rows.get_array_memory_size()
        );
        let size = |b: &RecordBatch| b.column_by_name("resource_attributes").unwrap().get_array_memory_size();
        assert!(size(&held) * 2 < size(&rows), "resource_attributes: {} bytes held for {}", size(&held), size(&rows));
        // Read back whole, in the table's types: for a query (a cast) and for writing (a gather).
        assert_eq!(columnar::conform(&held, &rows.schema()).unwrap(), rows);
        let all: Vec<(usize, usize)> = (0..rows.num_rows()).map(|r| (0, r)).collect();
        assert_eq!(gather(&rows.schema(), std::slice::from_ref(&held), &all).unwrap(), rows);
    }

    #[test]
    fn rows_gathered_across_batches_held_either_way_are_the_rows_asked_for() {
        // One batch by runs, one row by row (its resources change at every row): a gather mixes both.
        let (a, b) = (spans(2, 30, T0), spans(20, 1, T0));
        let held = [compact(&a).unwrap(), compact(&b).unwrap()];
        assert!(held[0].column_by_name("resource_attributes").unwrap().as_dictionary_opt::<Int32Type>().is_some());
        let resources = held[1].column_by_name("resource_attributes").unwrap();
        assert_eq!(
            resources.data_type(),
            a.column_by_name("resource_attributes").unwrap().data_type(),
            "a run per row: held as it is"
        );
        let order: Vec<(usize, usize)> =
            (0..50).map(|i| if i % 2 == 0 { (0, 29 - i / 2) } else { (1, (i * 7) % 20) }).collect();
        let expected = interleave_record_batch(&[&a, &b], &order).unwrap();
        assert_eq!(gather(&a.schema(), &held, &order).unwrap(), expected);
    }

    /// A request whose first two resources are the same (as two requests of one agent are in a
    /// batch), the first with an empty scope after its spans, then another resource: as the
    /// conversion holds it (`to_grouped_record_batch`) and as the table's rows.
    fn twin_resources() -> (RecordBatch, RecordBatch) {
        let resource = |name: &str| Resource { attributes: vec![attr("service.name", name)], ..Default::default() };
        let scope = |per: usize, t: u64| ScopeSpans {
            spans: (0..per)
                .map(|i| Span { trace_id: vec![1; 16], start_time_unix_nano: t + i as u64, ..Default::default() })
                .collect(),
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(resource("a")),
                    scope_spans: vec![scope(30, T0), scope(0, T0)],
                    ..Default::default()
                },
                ResourceSpans { resource: Some(resource("a")), scope_spans: vec![scope(30, T0)], ..Default::default() },
                ResourceSpans { resource: Some(resource("b")), scope_spans: vec![scope(40, T0)], ..Default::default() },
            ],
        };
        let grouped = columnar::spans::to_grouped_record_batch("acme", &req).unwrap();
        let rows = columnar::expand_groups(&grouped).unwrap();
        (grouped, rows)
    }

    #[test]
    fn columns_held_once_per_scope_group_are_kept_so_and_read_back_as_the_rows() {
        let (grouped, rows) = twin_resources();
        let held = compact(&grouped).unwrap();
        // A value per run of equal scope groups: the twins are one.
        let values =
            |b: &RecordBatch, name: &str| b.column_by_name(name).unwrap().as_dictionary::<Int32Type>().values().len();
        assert_eq!(values(&held, "resource_attributes"), 2);
        assert_eq!(values(&held, "scope_schema_url"), 1);
        for name in SCOPE_GROUP_COLUMNS {
            let (kept, given) = (held.column_by_name(name).unwrap(), grouped.column_by_name(name).unwrap());
            assert!(Arc::ptr_eq(kept, given), "{name} is held as the conversion made it");
        }
        // The span's own columns are compacted as ever (all spans have one trace id here).
        assert_eq!(values(&held, "trace_state"), 1);
        assert_eq!(columnar::conform(&held, &rows.schema()).unwrap(), rows);
        let all: Vec<(usize, usize)> = (0..rows.num_rows()).map(|r| (0, r)).collect();
        assert_eq!(gather(&rows.schema(), std::slice::from_ref(&held), &all).unwrap(), rows);
    }
}
