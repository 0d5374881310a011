//! OTLP ⇄ Arrow: one row per item, typed core columns, attributes as a queryable map plus type codes
//! (see `docs/schema.md`). Conversion goes from the decoded protobuf, or straight from a request's
//! protobuf bytes (`wire` and the `*_wire` modules), into Arrow builders.

pub mod logs;
mod logs_wire;
pub mod metrics;
mod metrics_wire;
mod resource_scope;
pub use resource_scope::{BY_SCOPE_GROUP, SCOPE_GROUP_COLUMNS, expand_groups, repeats_cost_memory, table_schema};
pub mod spans;
mod spans_wire;
mod wire;

use crate::attributes::{AttrType, decode_attributes, write_value};
use crate::{Payload, Signal};
use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, ListArray, ListBuilder, MapArray, MapBuilder, StringBuilder, UInt8Builder,
};
use arrow::datatypes::{DataType, TimeUnit, UInt8Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

pub(crate) type AttrMapBuilder = MapBuilder<StringBuilder, StringBuilder>;
pub(crate) type TypesBuilder = ListBuilder<UInt8Builder>;

/// The table a signal is stored in (`spans`, `logs`, `metrics`).
pub fn table_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "spans",
        Signal::Logs => "logs",
        Signal::Metrics => "metrics",
    }
}

/// Why rows do not turn back into OTLP (rows another program wrote, or a newer OpenWit's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnarError {
    #[error("column {0:?} is missing")]
    MissingColumn(String),
    /// A column holds what its table's schema does not allow (a wrong type, an undecodable value).
    #[error("{0}")]
    Malformed(String),
}

impl From<String> for ColumnarError {
    fn from(s: String) -> ColumnarError {
        ColumnarError::Malformed(s)
    }
}

impl From<&str> for ColumnarError {
    fn from(s: &str) -> ColumnarError {
        ColumnarError::Malformed(s.to_string())
    }
}

/// One row per item of `payload`, in item order (spans, log records, metric data points as `Payload`
/// counts them), so that row `i` is item `i` of the batch's lineage.
pub fn to_record_batch(tenant: &str, payload: &Payload) -> Result<RecordBatch, ArrowError> {
    match payload {
        Payload::Traces(r) => spans::rows(tenant, r, false),
        Payload::Logs(r) => logs::rows(tenant, r, false),
        Payload::Metrics(r) => metrics::rows(tenant, r, false),
    }
}

/// The rows of [`to_record_batch`], except that the columns copied from each item's resource and
/// scope ([`SCOPE_GROUP_COLUMNS`]) that cost memory per row are held once per scope group, where
/// groups have two items or more on average: `Dictionary(Int32, <the table's type>)` fields marked
/// [`BY_SCOPE_GROUP`], whose keys number the groups. [`expand_groups`] gives the table's rows;
/// [`table_schema`] their schema. What the Parquet exporter buffers: repeating a resource's 13
/// attributes for each of its spans was ~5 % of the daemon's CPU while storing, and the rows it
/// buffers held them once per run again (docs/BENCHMARKS.md).
pub fn to_grouped_record_batch(tenant: &str, payload: &Payload) -> Result<RecordBatch, ArrowError> {
    match payload {
        Payload::Traces(r) => spans::to_grouped_record_batch(tenant, r),
        Payload::Logs(r) => logs::to_grouped_record_batch(tenant, r),
        Payload::Metrics(r) => metrics::to_grouped_record_batch(tenant, r),
    }
}

/// What [`skim`] found in requests' protobuf bytes: their items, and what their attributes take (the
/// conversion from those bytes allocates its builders by it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skimmed {
    sizes: AttrSizes,
    /// Log bodies' string bytes (logs), or metrics' descriptions' bytes once per point (metrics).
    text_bytes: usize,
    /// The metric points' lists' values (metrics).
    lists: metrics::ListSizes,
}

impl Skimmed {
    /// Items (spans, log records, metric points) counted.
    pub fn items(&self) -> usize {
        self.sizes.rows()
    }

    /// Adds another request's count (requests appended).
    pub fn add(&mut self, other: &Skimmed) {
        self.sizes.add_all(&other.sizes);
        self.text_bytes += other.text_bytes;
        self.lists.add_all(&other.lists);
    }
}

/// Whether a request's protobuf bytes (an `Export*ServiceRequest` of `signal`) can be converted
/// straight to rows by [`from_encoded`], and what they hold; `None` when they must be decoded by prost
/// (the direct path does not read everything the protocol allows, see `wire`), which
/// also says whether they are valid. Some: prost would decode them, to the same rows.
pub fn skim(signal: Signal, bytes: &[u8]) -> Option<Skimmed> {
    let mut s = Skimmed::default();
    match signal {
        Signal::Traces => spans_wire::skim(bytes, &mut s.sizes).ok()?,
        Signal::Logs => logs_wire::skim(bytes, &mut s.sizes, &mut s.text_bytes).ok()?,
        Signal::Metrics => metrics_wire::skim(bytes, &mut s.sizes, &mut s.text_bytes, &mut s.lists).ok()?,
    }
    Some(s)
}

/// The rows of requests whose bytes [`skim`] read (`parts`, in order; `skimmed`: their counts added
/// up), as [`to_grouped_record_batch`] (`grouped`) or [`to_record_batch`] would make them from the
/// decoded requests. `None` if the bytes are not what `skim` read (decode them instead).
pub fn from_encoded<'a>(
    tenant: &str,
    signal: Signal,
    parts: impl IntoIterator<Item = &'a [u8]>,
    skimmed: &Skimmed,
    grouped: bool,
) -> Option<Result<RecordBatch, ArrowError>> {
    let rows = match signal {
        Signal::Traces => spans_wire::rows(tenant, parts, &skimmed.sizes, grouped),
        Signal::Logs => logs_wire::rows(tenant, parts, &skimmed.sizes, skimmed.text_bytes, grouped),
        Signal::Metrics => {
            metrics_wire::rows(tenant, parts, &skimmed.sizes, skimmed.text_bytes, &skimmed.lists, grouped)
        }
    };
    match rows {
        Ok(rows) => Some(Ok(rows)),
        Err(wire::Stop::Arrow(e)) => Some(Err(e)),
        Err(wire::Stop::Unusual) => None,
    }
}

/// `batch` in `schema`: rows written by another version of OpenWit may order or type their columns
/// otherwise; columns are matched by name, cast where their type differs, and null where missing.
pub fn conform(batch: &RecordBatch, schema: &arrow::datatypes::SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => arrow::compute::cast(c, f.data_type()),
            None => Ok(arrow::array::new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
}

/// The OTLP request that a table's rows hold.
pub fn from_record_batch(signal: Signal, batch: &RecordBatch) -> Result<Payload, ColumnarError> {
    Ok(match signal {
        Signal::Traces => Payload::Traces(spans::from_record_batch(batch)?),
        Signal::Logs => Payload::Logs(logs::from_record_batch(batch)?),
        Signal::Metrics => Payload::Metrics(metrics::from_record_batch(batch)?),
    })
}

/// The `tenant` column of `rows` rows: one value for every row of a batch, looked up in the dictionary
/// once rather than per row.
pub(crate) fn tenant_column(tenant: &str, rows: usize) -> resource_scope::Dict {
    let mut b = resource_scope::Dict::new();
    if rows > 0 {
        b.append_values(tenant, rows);
    }
    b
}

/// Timestamps are nanoseconds since the epoch, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// OTLP times are `u64`; Arrow timestamps are `i64`. The bits are kept as they are, so every value
/// comes back exactly (times after 2262 would read as negative timestamps in SQL).
pub(crate) fn ts(nanos: u64) -> i64 {
    nanos as i64
}

pub(crate) fn unts(v: i64) -> u64 {
    v as u64
}

pub(crate) fn attr_builders() -> (AttrMapBuilder, TypesBuilder) {
    (MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()), ListBuilder::new(UInt8Builder::new()))
}

/// What a batch's attribute lists take in the builders, counted before they are appended so that the
/// builders are allocated once at their size: grown by doubling from Arrow's default 1,024, the keys'
/// and values' buffers of a batch of 8,192 spans were reallocated and copied a dozen times each, into
/// fresh pages each time (page faults and `memcpy` under `finish_grow`, ~4 % of the daemon's CPU while
/// storing spans, `perf`). Only lengths held in the `KeyValue`s are read, not the strings; values that
/// are not strings count nothing (their text is short, and a builder still grows if it must).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttrSizes {
    rows: usize,
    entries: usize,
    key_bytes: usize,
    value_bytes: usize,
}

impl AttrSizes {
    /// Counts one row's attributes.
    pub(crate) fn add(&mut self, attrs: &[KeyValue]) {
        self.rows += 1;
        self.entries += attrs.len();
        for kv in attrs {
            self.key_bytes += kv.key.len();
            self.value_bytes += string_len(kv.value.as_ref());
        }
    }

    /// Adds what another count counted.
    fn add_all(&mut self, other: &AttrSizes) {
        self.rows += other.rows;
        self.entries += other.entries;
        self.key_bytes += other.key_bytes;
        self.value_bytes += other.value_bytes;
    }

    /// Rows counted.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Map and type-code builders with room for the rows counted.
    pub(crate) fn builders(&self) -> (AttrMapBuilder, TypesBuilder) {
        let keys = StringBuilder::with_capacity(self.entries, self.key_bytes);
        let values = StringBuilder::with_capacity(self.entries, self.value_bytes);
        (
            MapBuilder::with_capacity(None, keys, values, self.rows),
            ListBuilder::with_capacity(UInt8Builder::new(), self.rows),
        )
    }
}

/// The bytes `value`'s text takes (a string), or at most takes (another scalar); 0 for nested values,
/// which grow the builder (what `AttrSizes` and log bodies count).
pub(crate) fn string_len(value: Option<&AnyValue>) -> usize {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.len(),
        Some(any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_)) | None => 0,
        Some(_) => value.map_or(0, |v| SCALAR_TEXT_PER_BYTE * prost::Message::encoded_len(v)),
    }
}

/// A scalar attribute value's text (an int, a bool, a double, bytes in hex) takes at most this many
/// bytes per byte of its `AnyValue` encoding (a double: 9 bytes, up to 24 characters; bytes: two hex
/// digits each): counted so that the values' builder is allocated once (growing it was ~1.6 % of the
/// daemon's samples storing spans, perf, docs/BENCHMARKS.md).
pub(crate) const SCALAR_TEXT_PER_BYTE: usize = 3;

/// Appends one attribute list (or null, for a resource or scope that is absent).
pub(crate) fn append_attrs(
    map: &mut AttrMapBuilder,
    types: &mut TypesBuilder,
    attrs: Option<&[KeyValue]>,
) -> Result<(), ArrowError> {
    let Some(attrs) = attrs else {
        map.append(false)?;
        types.append(false);
        return Ok(());
    };
    let codes = append_entries(map, attrs)?;
    append_codes(types, &codes);
    Ok(())
}

/// Appends one row's attributes to `map`, each value's text written straight into the values'
/// buffer, and returns their type codes as `encode_attributes` gives them (none when every value
/// is a string, which allocates nothing).
pub(crate) fn append_entries(map: &mut AttrMapBuilder, attrs: &[KeyValue]) -> Result<Vec<u8>, ArrowError> {
    let mut codes = Codes::new(attrs.len());
    for kv in attrs {
        map.keys().append_value(&kv.key);
        let values = map.values();
        codes.push(write_value(kv.value.as_ref(), values));
        values.append_value("");
    }
    map.append(true)?;
    Ok(codes.into_vec())
}

/// A row's type codes as `encode_attributes` gives them: none when every value is a string (which
/// allocates nothing), else one per value.
pub(crate) struct Codes(Vec<u8>, usize, usize);

impl Codes {
    /// For a row of `n` values.
    pub(crate) fn new(n: usize) -> Codes {
        Codes(Vec::new(), n, 0)
    }

    /// The next value's type.
    pub(crate) fn push(&mut self, t: AttrType) {
        let Codes(codes, n, seen) = self;
        if t != AttrType::Str && codes.is_empty() {
            // The first value that is not a string: the strings before it get their codes now.
            codes.reserve(*n);
            codes.resize(*seen, AttrType::Str as u8);
        }
        if !codes.is_empty() || t != AttrType::Str {
            codes.push(t as u8);
        }
        *seen += 1;
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

/// Appends one row's type codes (from `append_entries`).
pub(crate) fn append_codes(types: &mut TypesBuilder, codes: &[u8]) {
    types.values().append_slice(codes);
    types.append(true);
}

/// The encoded form of one row's attributes: (key, text) entries and type codes.
pub(crate) type EncodedAttrs = (Vec<(String, String)>, Vec<u8>);

pub(crate) fn read_encoded(map: &MapArray, types: &ListArray, row: usize) -> Option<EncodedAttrs> {
    if map.is_null(row) {
        return None;
    }
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let vals = entries.column(1).as_string::<i32>();
    let e = (0..keys.len()).map(|i| (keys.value(i).to_string(), vals.value(i).to_string())).collect();
    let t = types.value(row);
    let codes = t.as_primitive::<UInt8Type>().values().to_vec();
    Some((e, codes))
}

pub(crate) fn decode_encoded(enc: &EncodedAttrs) -> Result<Vec<KeyValue>, ColumnarError> {
    Ok(decode_attributes(&enc.0, &enc.1)?)
}

/// A column by name, with an error that says which is missing.
pub(crate) fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, ColumnarError> {
    batch.column_by_name(name).ok_or_else(|| ColumnarError::MissingColumn(name.to_string()))
}

/// Finishes builders into a record batch whose schema follows from the arrays; `built` columns
/// (finished already) follow them.
pub(crate) fn finish(
    columns: Vec<(&str, Box<dyn ArrayBuilder>, bool)>,
    built: Vec<(arrow::datatypes::Field, ArrayRef)>,
) -> Result<RecordBatch, ArrowError> {
    let mut fields = Vec::with_capacity(columns.len() + built.len());
    let mut arrays = Vec::with_capacity(columns.len() + built.len());
    let finished = columns.into_iter().map(|(name, mut b, nullable)| {
        let a = b.finish();
        (arrow::datatypes::Field::new(name, a.data_type().clone(), nullable), a)
    });
    for (field, a) in finished.chain(built) {
        fields.push(field);
        arrays.push(a);
    }
    RecordBatch::try_new(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)), arrays)
}

/// Generators and helpers shared by the tables' property tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::attributes::strategies::attributes;
    use opentelemetry_proto::tonic::common::v1::{EntityRef, InstrumentationScope};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use proptest::prelude::*;

    fn entity_ref() -> impl Strategy<Value = EntityRef> {
        (".{0,4}", "[a-z]{0,4}", prop::collection::vec("[a-z]{1,3}", 0..3), prop::collection::vec("[a-z]{1,3}", 0..2))
            .prop_map(|(schema_url, kind, id_keys, description_keys)| EntityRef {
                schema_url,
                r#type: kind,
                id_keys,
                description_keys,
            })
    }

    /// A resource, or none.
    pub fn resource() -> impl Strategy<Value = Option<Resource>> {
        prop::option::of((attributes(), any::<u32>(), prop::collection::vec(entity_ref(), 0..2)).prop_map(
            |(attributes, dropped_attributes_count, entity_refs)| Resource {
                attributes,
                dropped_attributes_count,
                entity_refs,
            },
        ))
    }

    /// A scope, or none.
    pub fn scope() -> impl Strategy<Value = Option<InstrumentationScope>> {
        prop::option::of(("[a-z]{0,4}", "[0-9.]{0,4}", attributes(), any::<u32>()).prop_map(
            |(name, version, attributes, dropped_attributes_count)| InstrumentationScope {
                name,
                version,
                attributes,
                dropped_attributes_count,
            },
        ))
    }

    /// What rows can carry: no empty groups, and adjacent groups with identical resources (scopes)
    /// merged. Keys are the protobuf bytes, so equality is exact.
    pub fn normalize<R: Clone, S, I, K: PartialEq, L: PartialEq>(
        groups: Vec<R>,
        rkey: impl Fn(&R) -> K,
        scopes: impl Fn(&mut R) -> &mut Vec<S>,
        skey: impl Fn(&S) -> L,
        items: impl Fn(&mut S) -> &mut Vec<I>,
    ) -> Vec<R> {
        let mut out: Vec<R> = Vec::new();
        for mut g in groups {
            let kept: Vec<S> = std::mem::take(scopes(&mut g))
                .into_iter()
                .filter_map(|mut s| (!items(&mut s).is_empty()).then_some(s))
                .collect();
            if kept.is_empty() {
                continue;
            }
            match out.last_mut() {
                Some(last) if rkey(last) == rkey(&g) => scopes(last).extend(kept),
                _ => {
                    *scopes(&mut g) = kept;
                    out.push(g);
                }
            }
        }
        for g in &mut out {
            let mut merged: Vec<S> = Vec::new();
            for mut s in std::mem::take(scopes(g)) {
                match merged.last_mut() {
                    Some(last) if skey(last) == skey(&s) => {
                        let moved = std::mem::take(items(&mut s));
                        items(last).extend(moved);
                    }
                    _ => merged.push(s),
                }
            }
            *scopes(g) = merged;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::encode_attributes;
    use crate::attributes::strategies::attributes;
    use proptest::prelude::*;

    proptest! {
        /// Rows appended straight into the builders hold what `encode_attributes` gives: the same
        /// (key, text) entries and the same codes, none when every value is a string.
        #[test]
        fn appended_attributes_are_their_encoded_form(rows in prop::collection::vec(prop::option::of(attributes()), 0..6)) {
            let (mut map, mut types) = attr_builders();
            for r in &rows {
                append_attrs(&mut map, &mut types, r.as_deref()).unwrap();
            }
            let (map, types) = (map.finish(), types.finish());
            for (row, r) in rows.iter().enumerate() {
                let expected = r.as_deref().map(encode_attributes);
                prop_assert_eq!(read_encoded(&map, &types, row), expected);
            }
        }
    }
}
