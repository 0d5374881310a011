//! Buffered rows in less memory: columns whose rows repeat in runs are held once per run.
//!
//! OTLP nests items under their resource and scope, and a table copies the resource's and scope's
//! fields onto each of their rows (`resource_attributes`, `scope_schema_url`, a metric's description
//! on each of its points): such columns repeat in runs of consecutive rows. In the load generator's
//! spans the resource attributes were 520 of a row's 1,131 Arrow bytes, and an open file buffers a row
//! group's rows in Arrow until they are sorted and written — the largest thing the exporter holds.
//! While buffered, such a column is held as `Dictionary(Int32, <its type>)` over its runs (one copy per
//! run, a 4-byte key per row); [`BufferedColumn`] reads the sorted rows back as they are written (for
//! the Parquet writer, still by runs where it can), and a query reading buffered rows gets them back
//! through `columnar::conform` (a cast from the dictionary to its value type). Rows from the conversion come with the resource's and
//! scope's columns held so already (once per scope group, `columnar::to_grouped_record_batch`), and
//! [`compact`] leaves them as they are; it looks for runs in the other columns, and in every column of
//! rows read back from files (compaction's).

use super::addressable::addressable;
use arrow::array::make_comparator;
use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Array, MapArray, RecordBatch, RecordBatchOptions, StructArray,
    UInt32Array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::SortOptions;
use arrow::compute::kernels::partition::partition;
use arrow::compute::{interleave, take};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema};
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
    // (Empty strings compared at Arrow's unallocated address cost ~200 ns each: `addressable`.)
    let column = &addressable(column.clone())?;
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

/// The rows `indices` of `batches` whole, in `schema`'s types: [`BufferedColumn::gather`] for every
/// column, cast back to the table's type (the writer gathers a column at a time; the tests compare
/// whole rows).
#[cfg(test)]
pub fn gather(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
    indices: &[(usize, usize)],
) -> Result<RecordBatch, ArrowError> {
    let columns = (0..schema.fields().len())
        .map(|i| {
            let gathered = BufferedColumn::new(schema.field(i), i, batches)?.gather(indices)?;
            arrow::compute::cast(&gathered, schema.field(i).data_type())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(indices.len()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
}

/// A column's rows as `dictionary_chunk::encode` takes them: parts, and each row's index into their
/// values one after the other ([`BufferedColumn::encodable`]).
pub type Encodable = (Vec<ArrayRef>, Vec<i32>);

/// Column `i` of the buffered `batches` (each as [`compact`] left it), read back a slice of sorted rows
/// at a time by [`gather`](Self::gather).
pub struct BufferedColumn<'a> {
    source: Source<'a>,
}

enum Source<'a> {
    /// Each row copied from its batch, or from its run's value where a batch holds the column by runs.
    Copied { values: Vec<&'a ArrayRef>, keys: Vec<Option<&'a Int32Array>> },
    /// Bytes, or a map of bytes, held by runs in every batch: the rows are a dictionary over all the
    /// runs' values (`values`, batch `b`'s from `base[b]` on) and their values are not copied. Copying
    /// a resource's 13 attributes into each of its rows was a third of the time the writer spent on
    /// `resource_attributes` (docs/BENCHMARKS.md); the encoder interns each row's value either way.
    Runs { values: ArrayRef, keys: Vec<&'a Int32Array>, base: Vec<i32> },
}

impl<'a> BufferedColumn<'a> {
    pub fn new(field: &Field, i: usize, batches: &'a [RecordBatch]) -> Result<Self, ArrowError> {
        let mut values: Vec<&ArrayRef> = Vec::with_capacity(batches.len());
        let mut keys: Vec<Option<&Int32Array>> = Vec::with_capacity(batches.len());
        for batch in batches {
            let a = batch.column(i);
            // Held by runs: a dictionary where the table has none (a cheap test: comparing a map's whole
            // type for every batch and slice was 5 % of the writer's time).
            let by_runs = matches!(a.data_type(), DataType::Dictionary(..))
                && !matches!(field.data_type(), DataType::Dictionary(..));
            if by_runs {
                let dict = a.as_dictionary_opt::<Int32Type>().filter(|d| d.values().data_type() == field.data_type());
                let dict = dict.ok_or_else(|| {
                    ArrowError::SchemaError(format!(
                        "column {} is {} in a buffered batch, {} in the table",
                        field.name(),
                        a.data_type(),
                        field.data_type()
                    ))
                })?;
                values.push(dict.values());
                keys.push(Some(dict.keys()));
            } else {
                values.push(a);
                keys.push(None);
            }
        }
        let every_batch_by_runs = keys.iter().all(|k| k.is_some_and(|k| k.null_count() == 0));
        if !batches.is_empty() && every_batch_by_runs && encoded_from_a_dictionary(field.data_type()) {
            let base = bases(&values).ok_or_else(|| too_many_runs(field))?;
            let values: Vec<&dyn Array> = values.iter().map(|v| v.as_ref()).collect();
            let values = addressable(arrow::compute::concat(&values)?)?;
            let keys = keys.into_iter().flatten().collect();
            return Ok(Self { source: Source::Runs { values, keys, base } });
        }
        Ok(Self { source: Source::Copied { values, keys } })
    }

    /// For a column held by runs in every batch (bytes or a map of bytes): the runs' values, and for
    /// each of the rows `indices` the index of its run's value among them.
    fn by_runs(&self, indices: &[(usize, usize)]) -> Option<(&ArrayRef, Vec<i32>)> {
        match &self.source {
            Source::Runs { values, keys, base } => {
                Some((values, indices.iter().map(|&(b, r)| base[b] + keys[b].value(r)).collect()))
            }
            Source::Copied { .. } => None,
        }
    }

    /// The rows `indices` as `dictionary_chunk::encode` takes them, where it can: parts (arrays of
    /// bytes or maps of bytes) and each row's index into their values one after the other. A column
    /// held by runs in every batch: the runs' values, a row's index its run's; otherwise each batch's
    /// array, or the values of its runs where it holds the column by runs, a row's index its own or its
    /// run's. `None` for other types.
    pub fn encodable(&self, indices: &[(usize, usize)]) -> Result<Option<Encodable>, ArrowError> {
        if let Some((values, rows)) = self.by_runs(indices) {
            return Ok(Some((vec![values.clone()], rows)));
        }
        let Source::Copied { values, keys } = &self.source else { return Ok(None) };
        let Some(first) = values.first() else { return Ok(None) };
        if !encoded_from_a_dictionary(first.data_type()) || keys.iter().flatten().any(|k| k.null_count() > 0) {
            return Ok(None);
        }
        let Some(base) = bases(values) else { return Ok(None) };
        // (Empty strings compared at Arrow's unallocated address cost ~200 ns each: `addressable`.)
        let parts = values.iter().map(|&v| addressable(v.clone())).collect::<Result<Vec<_>, _>>()?;
        let rows = indices.iter().map(|&(b, r)| base[b] + keys[b].map_or(r as i32, |k| k.value(r))).collect();
        Ok(Some((parts, rows)))
    }

    /// The rows `indices` ((batch, row) pairs) of the column: in the table's type, or, for a column
    /// held by runs in every batch, as a dictionary over the runs' values with the table's value type
    /// (a map's keys and values each such a dictionary over the runs' entries). The Parquet writer takes
    /// either for the table's type (with the leaves' field from [`leaf_field`]).
    pub fn gather(&self, indices: &[(usize, usize)]) -> Result<ArrayRef, ArrowError> {
        match &self.source {
            Source::Copied { values, keys } => {
                let values: Vec<&dyn Array> = values.iter().map(|v| v.as_ref()).collect();
                let values = &values;
                let gathered = if keys.iter().all(Option::is_none) {
                    interleave(values, indices)?
                } else {
                    let at: Vec<(usize, usize)> =
                        indices.iter().map(|&(b, r)| (b, keys[b].map_or(r, |k| k.value(r) as usize))).collect();
                    interleave(values, &at)?
                };
                addressable(gathered)
            }
            Source::Runs { values, .. } => {
                let (_, rows) = self.by_runs(indices).expect("held by runs");
                match values.as_map_opt() {
                    Some(map) => map_over(map, &rows),
                    None => Ok(Arc::new(DictionaryArray::try_new(Int32Array::from(rows), values.clone())?)),
                }
            }
        }
    }
}

/// The field to compute a gathered column's leaves with: `field` with the gathered array's type (a
/// dictionary where the table has its values, see [`BufferedColumn::gather`]).
pub fn leaf_field(field: &Field, gathered: &dyn Array) -> Field {
    field.clone().with_data_type(gathered.data_type().clone())
}

/// Where each of `values` starts among all of them one after the other; `None` past 2^31 values in
/// all (a row's index into them is an `i32`).
fn bases(values: &[&ArrayRef]) -> Option<Vec<i32>> {
    let mut base = Vec::with_capacity(values.len());
    let mut next = 0usize;
    for v in values {
        base.push(i32::try_from(next).ok()?);
        next += v.len();
    }
    i32::try_from(next).ok()?;
    Some(base)
}

fn too_many_runs(field: &Field) -> ArrowError {
    ArrowError::ComputeError(format!("column {}: more than 2^31 values held by runs in one row group", field.name()))
}

/// Types whose values the Parquet writer encodes from a dictionary as from the values themselves (bytes,
/// see `parquet::arrow::arrow_writer::byte_array`); a map of them.
fn encoded_from_a_dictionary(t: &DataType) -> bool {
    let bytes =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary);
    match t {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(f) => f.len() == 2 && bytes(f[0].data_type()) && bytes(f[1].data_type()),
            _ => false,
        },
        t => bytes(t),
    }
}

/// The maps `rows` of `map`, their keys and values dictionaries over `map`'s entries (one index per
/// entry, shared by both).
fn map_over(map: &MapArray, rows: &[i32]) -> Result<ArrayRef, ArrowError> {
    let from = map.value_offsets();
    let per_row = map.entries().len().div_ceil(map.len().max(1));
    let mut entries: Vec<i32> = Vec::with_capacity(rows.len() * per_row);
    let mut offsets: Vec<i32> = Vec::with_capacity(rows.len() + 1);
    offsets.push(0);
    for &r in rows {
        entries.extend(from[r as usize]..from[r as usize + 1]);
        offsets.push(
            i32::try_from(entries.len())
                .map_err(|_| ArrowError::ComputeError("a slice's maps have more than 2^31 entries".to_string()))?,
        );
    }
    let nulls = map.nulls().map(|n| NullBuffer::from_iter(rows.iter().map(|&r| n.is_valid(r as usize))));
    let index = ScalarBuffer::from(entries);
    let keys = DictionaryArray::try_new(Int32Array::new(index.clone(), None), map.keys().clone())?;
    let values = DictionaryArray::try_new(Int32Array::new(index, None), map.values().clone())?;
    let DataType::Map(entries_field, ordered) = map.data_type() else { unreachable!("a MapArray's type is a map") };
    let DataType::Struct(names) = entries_field.data_type() else { unreachable!("a map's entries are a struct") };
    let fields = Fields::from(vec![
        names[0].as_ref().clone().with_data_type(keys.data_type().clone()),
        names[1].as_ref().clone().with_data_type(values.data_type().clone()),
    ]);
    let entries = StructArray::try_new(fields.clone(), vec![Arc::new(keys), Arc::new(values)], None)?;
    let entries_field = Arc::new(entries_field.as_ref().clone().with_data_type(DataType::Struct(fields)));
    Ok(Arc::new(MapArray::try_new(entries_field, OffsetBuffer::new(offsets.into()), entries, nulls, *ordered)?))
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

    /// Spans of three resources (30 each) whose attributes have gaps: the second has no resource (its
    /// attributes null), the third an attribute without a value (an empty value, its type says so). As
    /// the table's rows.
    pub(crate) fn spans_with_gaps(t: u64) -> RecordBatch {
        let mut valueless = attr("k8s.pod.name", "");
        valueless.value = None;
        let resources = [
            Some(Resource {
                attributes: vec![attr("service.name", "a"), attr("host.name", "h")],
                ..Default::default()
            }),
            None,
            Some(Resource { attributes: vec![attr("service.name", "c"), valueless], ..Default::default() }),
        ];
        let resource_spans = resources
            .into_iter()
            .enumerate()
            .map(|(r, resource)| ResourceSpans {
                resource,
                scope_spans: vec![ScopeSpans {
                    spans: (0..30)
                        .map(|i| Span {
                            trace_id: vec![r as u8; 16],
                            start_time_unix_nano: t + (i * 3 + r) as u64,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        let req = ExportTraceServiceRequest { resource_spans };
        columnar::to_record_batch("acme", &openwit_core::Payload::Traces(req)).unwrap()
    }

    #[test]
    fn bytes_and_maps_held_by_runs_in_every_batch_are_gathered_as_dictionaries_over_the_runs() {
        let batches = [spans(3, 40, T0), spans_with_gaps(T0 + 5), spans(2, 25, T0 + 9)];
        let held: Vec<RecordBatch> = batches.iter().map(|b| compact(b).unwrap()).collect();
        let schema = batches[0].schema();
        let order: Vec<(usize, usize)> = (0..150).map(|i| (i % 3, (i * 7) % [120, 90, 50][i % 3])).collect();
        let expected = interleave_record_batch(&batches.iter().collect::<Vec<_>>(), &order).unwrap();
        let column = |name: &str| {
            let (i, field) = schema.column_with_name(name).unwrap();
            BufferedColumn::new(field, i, &held).unwrap().gather(&order).unwrap()
        };
        // A map: its keys and values dictionaries over the runs' entries, the maps' nulls kept.
        let resources = column("resource_attributes");
        let map = resources.as_map();
        assert!(matches!(map.keys().data_type(), DataType::Dictionary(..)), "{}", map.data_type());
        assert!(matches!(map.values().data_type(), DataType::Dictionary(..)), "{}", map.data_type());
        assert!(map.null_count() > 0, "the resource-less spans' nulls are in the gather");
        // Bytes: a dictionary over the runs' values.
        assert!(matches!(column("scope_schema_url").data_type(), DataType::Dictionary(..)));
        // Each is the rows asked for once cast to the table's type (what the Parquet writer reads from
        // it: the writer's tests compare the bytes written).
        assert_eq!(gather(&schema, &held, &order).unwrap(), expected);
        // A batch holding the column row by row sends the whole column the copying way.
        let mixed = [held[0].clone(), spans(20, 1, T0)];
        let (i, field) = schema.column_with_name("resource_attributes").unwrap();
        let copied = BufferedColumn::new(field, i, &mixed).unwrap().gather(&[(0, 1), (1, 2)]).unwrap();
        assert_eq!(copied.data_type(), field.data_type());
        // A column of empty strings (no trace_state here) is handed over with an allocated values
        // buffer either way (see `addressable`): gathered by runs, and copied.
        assert!(!column("trace_state").is_empty());
        assert!(!super::super::addressable::dangles(column("trace_state").as_ref()));
        let (i, field) = schema.column_with_name("trace_state").unwrap();
        let mixed = [held[0].clone(), spans(20, 1, T0)];
        let copied = BufferedColumn::new(field, i, &mixed).unwrap().gather(&[(0, 1), (1, 2)]).unwrap();
        let taken = arrow::compute::take(mixed[1].column(i), &UInt32Array::from(vec![2]), None).unwrap();
        assert!(super::super::addressable::dangles(taken.as_ref()), "Arrow's kernels give no allocation");
        assert!(!super::super::addressable::dangles(copied.as_ref()));
    }
}
