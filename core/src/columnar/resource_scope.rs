//! The resource and scope columns every table has, written and read in one place.

use super::ColumnarError;
use super::wire::{self, Attr, AttrValue, Stop};
use super::{
    AttrMapBuilder, EncodedAttrs, TypesBuilder, append_attrs, attr_builders, column, decode_encoded, read_encoded,
};
use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BinaryArray, BinaryBuilder, DictionaryArray, Int32Array, ListArray,
    MapArray, PrimitiveArray, RecordBatchOptions, StringArray, StringBuilder, StringDictionaryBuilder, StructArray,
    UInt32Array, UInt32Builder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::kernels::partition::partition;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, UInt32Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::common::v1::{EntityRef, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use std::sync::Arc;

/// `Resource.entity_refs`, stored as protobuf bytes: rare, and not worth columns of their own.
#[derive(Clone, PartialEq, prost::Message)]
struct EntityRefs {
    #[prost(message, repeated, tag = "1")]
    refs: Vec<EntityRef>,
}

pub(crate) type Dict = StringDictionaryBuilder<Int32Type>;

/// A dictionary-encoded string cell.
pub(crate) fn dict_str(a: &ArrayRef, row: usize) -> Result<Option<String>, ColumnarError> {
    if a.is_null(row) {
        return Ok(None);
    }
    let d = a.as_dictionary_opt::<Int32Type>().ok_or("expected a dictionary column")?;
    let values = d.values().as_string::<i32>();
    Ok(Some(values.value(d.keys().value(row) as usize).to_string()))
}

/// The resource's `service.name`, promoted to its own column.
fn service_name(attrs: &[KeyValue]) -> Option<&str> {
    attrs.iter().find(|kv| kv.key == "service.name").and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

/// The columns whose values come from an item's resource and scope, equal for every item of a scope
/// group (the items of one `ScopeSpans`, `ScopeLogs` or `ScopeMetrics`), in the order the tables hold them.
pub const SCOPE_GROUP_COLUMNS: [&str; 12] = [
    "service_name",
    "resource_attributes",
    "resource_attribute_types",
    "resource_dropped_attributes_count",
    "resource_entity_refs",
    "resource_schema_url",
    "scope_name",
    "scope_version",
    "scope_attributes",
    "scope_attribute_types",
    "scope_dropped_attributes_count",
    "scope_schema_url",
];

/// Builders for `service_name`, `resource_*` and `scope_*`: one row per scope group (a resource and
/// scope and the items under them), repeated for each of the group's items when finished. So a
/// resource's attributes (13 in the load generator's spans) are encoded once per group rather than per
/// item: per item, appending them was ~10 % of the daemon's CPU while storing (perf, docs/BENCHMARKS.md).
pub(crate) struct Builders {
    service: Dict,
    res_attrs: AttrMapBuilder,
    res_types: TypesBuilder,
    res_dropped: UInt32Builder,
    res_entities: BinaryBuilder,
    res_schema: StringBuilder,
    scope_name: Dict,
    scope_version: StringBuilder,
    scope_attrs: AttrMapBuilder,
    scope_types: TypesBuilder,
    scope_dropped: UInt32Builder,
    scope_schema: StringBuilder,
    /// The number of items (rows) of each group row, in order.
    runs: Vec<usize>,
}

/// A resource's or scope's attributes: decoded by prost, or read in place from the request's bytes
/// (the direct path, `wire`).
pub(crate) enum GroupAttrs<'a> {
    Decoded(&'a [KeyValue]),
    InPlace(Vec<Attr<'a>>),
}

/// Appends one row's attributes (`None`: the group has no resource or scope) as `append_attrs` does.
fn append_group_attrs(
    map: &mut AttrMapBuilder,
    types: &mut TypesBuilder,
    attrs: Option<&GroupAttrs<'_>>,
) -> Result<(), Stop> {
    match attrs {
        None => Ok(append_attrs(map, types, None)?),
        Some(GroupAttrs::Decoded(a)) => Ok(append_attrs(map, types, Some(a))?),
        Some(GroupAttrs::InPlace(a)) => wire::append_attrs(map, types, a),
    }
}

/// One resource group's values, computed once per group rather than per row.
pub(crate) struct ResourceRow<'a> {
    /// The resource's attributes and dropped attributes count, if the group has a resource.
    resource: Option<(GroupAttrs<'a>, u32)>,
    service: Option<&'a str>,
    entities: Option<Vec<u8>>,
    schema_url: &'a str,
}

impl<'a> ResourceRow<'a> {
    pub(crate) fn new(resource: Option<&'a Resource>, schema_url: &'a str) -> Self {
        let entities = resource
            .filter(|r| !r.entity_refs.is_empty())
            .map(|r| EntityRefs { refs: r.entity_refs.clone() }.encode_to_vec());
        let service = resource.and_then(|r| service_name(&r.attributes));
        let resource = resource.map(|r| (GroupAttrs::Decoded(&r.attributes), r.dropped_attributes_count));
        ResourceRow { resource, service, entities, schema_url }
    }

    /// A resource read in place: its attributes and dropped attributes count (one with entity refs is
    /// decoded by prost instead, `new`).
    pub(crate) fn in_place(attrs: Vec<Attr<'a>>, dropped: u32, schema_url: &'a str) -> Self {
        let service = match attrs.iter().find(|a| a.key == "service.name").map(|a| a.value) {
            Some(AttrValue::Str(s)) => Some(s),
            _ => None,
        };
        ResourceRow { resource: Some((GroupAttrs::InPlace(attrs), dropped)), service, entities: None, schema_url }
    }
}

/// One scope group's scope: name, version, attributes and dropped attributes count, if it has one.
pub(crate) struct ScopeRow<'a> {
    scope: Option<(&'a str, &'a str, GroupAttrs<'a>, u32)>,
    schema_url: &'a str,
}

impl<'a> ScopeRow<'a> {
    pub(crate) fn new(scope: Option<&'a InstrumentationScope>, schema_url: &'a str) -> Self {
        let scope = scope
            .map(|s| (&s.name[..], &s.version[..], GroupAttrs::Decoded(&s.attributes), s.dropped_attributes_count));
        ScopeRow { scope, schema_url }
    }

    /// A scope read in place.
    pub(crate) fn in_place(
        (name, version): (&'a str, &'a str),
        attrs: Vec<Attr<'a>>,
        dropped: u32,
        schema_url: &'a str,
    ) -> Self {
        ScopeRow { scope: Some((name, version, GroupAttrs::InPlace(attrs), dropped)), schema_url }
    }
}

impl Builders {
    pub(crate) fn new() -> Builders {
        let (res_attrs, res_types) = attr_builders();
        let (scope_attrs, scope_types) = attr_builders();
        Builders {
            service: Dict::new(),
            res_attrs,
            res_types,
            res_dropped: UInt32Builder::new(),
            res_entities: BinaryBuilder::new(),
            res_schema: StringBuilder::new(),
            scope_name: Dict::new(),
            scope_version: StringBuilder::new(),
            scope_attrs,
            scope_types,
            scope_dropped: UInt32Builder::new(),
            scope_schema: StringBuilder::new(),
            runs: Vec::new(),
        }
    }

    /// Appends the resource and scope of `items` rows in a row (a scope group's items, in order).
    pub(crate) fn append_rows(
        &mut self,
        res: &ResourceRow<'_>,
        scope: &ScopeRow<'_>,
        items: usize,
    ) -> Result<(), Stop> {
        if items == 0 {
            return Ok(());
        }
        self.runs.push(items);
        let r = res.resource.as_ref();
        self.service.append_option(res.service);
        append_group_attrs(&mut self.res_attrs, &mut self.res_types, r.map(|(a, _)| a))?;
        self.res_dropped.append_option(r.map(|&(_, d)| d));
        self.res_entities.append_option(res.entities.as_deref());
        self.res_schema.append_value(res.schema_url);
        let s = scope.scope.as_ref();
        self.scope_name.append_option(s.map(|s| s.0));
        self.scope_version.append_option(s.map(|s| s.1));
        append_group_attrs(&mut self.scope_attrs, &mut self.scope_types, s.map(|s| &s.2))?;
        self.scope_dropped.append_option(s.map(|s| s.3));
        self.scope_schema.append_value(scope.schema_url);
        Ok(())
    }

    /// The columns, as fields, with a row per item; when `grouped`, the columns that cost memory per
    /// row (strings, maps, lists) held once per scope group where groups have two items or more on average: as
    /// `Dictionary(Int32, <type>)` over the group rows (neighbouring equal groups sharing one), each
    /// such field marked [`BY_SCOPE_GROUP`] ([`expand_groups`] gives a value per row).
    pub(crate) fn columns(mut self, grouped: bool) -> Result<Vec<(Field, ArrayRef)>, ArrowError> {
        let builders: [(&mut dyn ArrayBuilder, bool); 12] = [
            (&mut self.service, true),
            (&mut self.res_attrs, true),
            (&mut self.res_types, true),
            (&mut self.res_dropped, true),
            (&mut self.res_entities, true),
            (&mut self.res_schema, false),
            (&mut self.scope_name, true),
            (&mut self.scope_version, true),
            (&mut self.scope_attrs, true),
            (&mut self.scope_types, true),
            (&mut self.scope_dropped, true),
            (&mut self.scope_schema, false),
        ];
        let items: usize = self.runs.iter().sum();
        let grouped = grouped && self.runs.len() * MIN_ROWS_PER_GROUP <= items;
        // The group row of each item.
        let rows: Vec<u32> =
            (self.runs.iter().enumerate()).flat_map(|(g, &n)| std::iter::repeat_n(g as u32, n)).collect();
        let rows = UInt32Array::from(rows);
        let groups = SCOPE_GROUP_COLUMNS.into_iter().zip(builders).map(|(name, (b, nullable))| (name, b, nullable));
        groups
            .into_iter()
            .map(|(name, b, nullable)| {
                let values = b.finish();
                Ok(if values.len() == items {
                    (Field::new(name, values.data_type().clone(), nullable), values)
                } else if grouped && repeats_cost_memory(values.data_type()) {
                    let dict = one_per_run(values, &rows)?;
                    let marker = [(BY_SCOPE_GROUP.to_string(), "true".to_string())].into();
                    let field = Field::new(name, dict.data_type().clone(), nullable).with_metadata(marker);
                    (field, Arc::new(dict) as ArrayRef)
                } else {
                    let field = Field::new(name, values.data_type().clone(), nullable);
                    (field, repeat_runs(&values, &rows)?)
                })
            })
            .collect()
    }
}

/// `groups` (a value per scope group) as a dictionary with a row per item (`rows`: each item's group),
/// neighbouring groups of equal values (two requests of one agent in a batch) sharing one value, as
/// the Parquet writer's runs of equal rows would (compared by Arrow: exactly, bit for bit).
fn one_per_run(groups: ArrayRef, rows: &UInt32Array) -> Result<DictionaryArray<Int32Type>, ArrowError> {
    let runs = partition(std::slice::from_ref(&groups))?.ranges();
    if runs.len() == groups.len() {
        let keys = Int32Array::new(rows.values().iter().map(|&g| g as i32).collect(), None);
        return DictionaryArray::try_new(keys, groups);
    }
    let mut run_of_group: Vec<i32> = Vec::with_capacity(groups.len());
    for (r, run) in runs.iter().enumerate() {
        run_of_group.extend(std::iter::repeat_n(r as i32, run.len()));
    }
    let keys = Int32Array::new(rows.values().iter().map(|&g| run_of_group[g as usize]).collect(), None);
    let starts = UInt32Array::from_iter_values(runs.iter().map(|run| run.start as u32));
    DictionaryArray::try_new(keys, arrow::compute::take(groups.as_ref(), &starts, None)?)
}

/// A column is held once per scope group when its groups have at least this many rows on average:
/// below that, the keys cost more than the values they spare.
const MIN_ROWS_PER_GROUP: usize = 2;

/// The metadata key of a field held once per scope group (see [`expand_groups`]).
pub const BY_SCOPE_GROUP: &str = "openwit.by_scope_group";

/// Whether a column of this type is worth holding once per run of equal rows: values of variable size
/// or nested ones (fixed-width values and dictionaries are small per row already).
pub fn repeats_cost_memory(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Map(..)
            | DataType::Struct(_)
    )
}

fn by_scope_group(field: &Field) -> bool {
    field.metadata().contains_key(BY_SCOPE_GROUP)
}

/// The table's field for `field`: a field held once per scope group is its value type, unmarked.
fn table_field(field: &Field) -> Field {
    match field.data_type() {
        DataType::Dictionary(_, value) if by_scope_group(field) => {
            let mut metadata = field.metadata().clone();
            metadata.remove(BY_SCOPE_GROUP);
            field.clone().with_data_type(value.as_ref().clone()).with_metadata(metadata)
        }
        _ => field.clone(),
    }
}

/// The table's schema of rows that may hold columns once per scope group
/// ([`crate::columnar::to_grouped_record_batch`]).
pub fn table_schema(schema: &Schema) -> SchemaRef {
    if !schema.fields().iter().any(|f| by_scope_group(f)) {
        return Arc::new(schema.clone());
    }
    let fields: Vec<Field> = schema.fields().iter().map(|f| table_field(f)).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with a value per row in every column: the columns held once per scope group
/// ([`BY_SCOPE_GROUP`]) repeated for each of their rows, in the table's types.
pub fn expand_groups(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| by_scope_group(f)) {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| {
            if !by_scope_group(f) {
                return Ok(c.clone());
            }
            let dict = c.as_dictionary_opt::<Int32Type>().filter(|d| d.keys().null_count() == 0).ok_or_else(|| {
                ArrowError::SchemaError(format!(
                    "column {} is marked {BY_SCOPE_GROUP} but is {}",
                    f.name(),
                    c.data_type()
                ))
            })?;
            let rows = UInt32Array::new(dict.keys().values().iter().map(|&k| k as u32).collect(), None);
            repeat_runs(dict.values(), &rows)
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(table_schema(&schema), columns, &options)
}

/// The rows `rows` of `groups` (`take` copies a value at a time in tight loops; `MutableArrayData`
/// extending a row at a time was slower than appending).
fn repeat_runs(groups: &ArrayRef, rows: &UInt32Array) -> Result<ArrayRef, ArrowError> {
    match groups.as_map_opt() {
        Some(map) => repeat_map(map, rows),
        None => arrow::compute::take(groups.as_ref(), rows, None),
    }
}

/// `take` for a map, with exact-size buffers: arrow's takes a map's entries through
/// `MutableArrayData`, whose string buffers grow by doubling (the taken resource attributes held ~40 %
/// more memory than the builders' did). Here keys and values are taken by entry index.
fn repeat_map(map: &MapArray, rows: &UInt32Array) -> Result<ArrayRef, ArrowError> {
    let offsets = map.value_offsets();
    let mut entries: Vec<u32> = Vec::new();
    let mut lengths: Vec<usize> = Vec::with_capacity(rows.len());
    for &g in rows.values() {
        let (start, end) = (offsets[g as usize] as u32, offsets[g as usize + 1] as u32);
        entries.extend(start..end);
        lengths.push((end - start) as usize);
    }
    let entries = UInt32Array::from(entries);
    let pairs = map.entries();
    let columns =
        pairs.columns().iter().map(|c| arrow::compute::take(c.as_ref(), &entries, None)).collect::<Result<_, _>>()?;
    let pairs = StructArray::try_new(pairs.fields().clone(), columns, None)?;
    let nulls = map.nulls().map(|n| NullBuffer::from_iter(rows.values().iter().map(|&g| n.is_valid(g as usize))));
    let DataType::Map(field, sorted) = map.data_type() else { unreachable!("a map array has a map type") };
    Ok(Arc::new(MapArray::try_new(field.clone(), OffsetBuffer::from_lengths(lengths), pairs, nulls, *sorted)?))
}

/// What identifies a resource group: its stored form, compared exactly (NaN attributes included).
#[derive(Clone, PartialEq)]
pub(crate) struct ResKey {
    attrs: Option<EncodedAttrs>,
    dropped: Option<u32>,
    entities: Option<Vec<u8>>,
    schema_url: String,
}

#[derive(Clone, PartialEq)]
pub(crate) struct ScopeKey {
    name: Option<String>,
    version: Option<String>,
    attrs: Option<EncodedAttrs>,
    dropped: Option<u32>,
    schema_url: String,
}

/// Reads the resource and scope columns back.
pub(crate) struct Reader<'a> {
    res_attrs: &'a MapArray,
    res_types: &'a ListArray,
    res_dropped: &'a PrimitiveArray<UInt32Type>,
    res_entities: &'a BinaryArray,
    res_schema: &'a StringArray,
    scope_name: &'a ArrayRef,
    scope_version: &'a StringArray,
    scope_attrs: &'a MapArray,
    scope_types: &'a ListArray,
    scope_dropped: &'a PrimitiveArray<UInt32Type>,
    scope_schema: &'a StringArray,
}

fn opt_u32(a: &PrimitiveArray<UInt32Type>, i: usize) -> Option<u32> {
    (!a.is_null(i)).then(|| a.value(i))
}

impl<'a> Reader<'a> {
    pub(crate) fn new(batch: &'a RecordBatch) -> Result<Reader<'a>, ColumnarError> {
        let c = |n: &str| column(batch, n);
        Ok(Reader {
            res_attrs: c("resource_attributes")?.as_map(),
            res_types: c("resource_attribute_types")?.as_list::<i32>(),
            res_dropped: c("resource_dropped_attributes_count")?.as_primitive::<UInt32Type>(),
            res_entities: c("resource_entity_refs")?.as_binary::<i32>(),
            res_schema: c("resource_schema_url")?.as_string::<i32>(),
            scope_name: c("scope_name")?,
            scope_version: c("scope_version")?.as_string::<i32>(),
            scope_attrs: c("scope_attributes")?.as_map(),
            scope_types: c("scope_attribute_types")?.as_list::<i32>(),
            scope_dropped: c("scope_dropped_attributes_count")?.as_primitive::<UInt32Type>(),
            scope_schema: c("scope_schema_url")?.as_string::<i32>(),
        })
    }

    pub(crate) fn keys(&self, row: usize) -> Result<(ResKey, ScopeKey), ColumnarError> {
        let rk = ResKey {
            attrs: read_encoded(self.res_attrs, self.res_types, row),
            dropped: opt_u32(self.res_dropped, row),
            entities: (!self.res_entities.is_null(row)).then(|| self.res_entities.value(row).to_vec()),
            schema_url: self.res_schema.value(row).to_string(),
        };
        let sk = ScopeKey {
            name: dict_str(self.scope_name, row)?,
            version: (!self.scope_version.is_null(row)).then(|| self.scope_version.value(row).to_string()),
            attrs: read_encoded(self.scope_attrs, self.scope_types, row),
            dropped: opt_u32(self.scope_dropped, row),
            schema_url: self.scope_schema.value(row).to_string(),
        };
        Ok((rk, sk))
    }
}

impl ResKey {
    pub(crate) fn schema_url(&self) -> String {
        self.schema_url.clone()
    }

    pub(crate) fn resource(&self) -> Result<Option<Resource>, ColumnarError> {
        let Some(enc) = &self.attrs else { return Ok(None) };
        Ok(Some(Resource {
            attributes: decode_encoded(enc)?,
            dropped_attributes_count: self.dropped.unwrap_or(0),
            entity_refs: match &self.entities {
                Some(b) => EntityRefs::decode(&b[..]).map_err(|e| format!("resource_entity_refs: {e}"))?.refs,
                None => Vec::new(),
            },
        }))
    }
}

impl ScopeKey {
    pub(crate) fn schema_url(&self) -> String {
        self.schema_url.clone()
    }

    pub(crate) fn scope(&self) -> Result<Option<InstrumentationScope>, ColumnarError> {
        let Some(enc) = &self.attrs else { return Ok(None) };
        Ok(Some(InstrumentationScope {
            name: self.name.clone().unwrap_or_default(),
            version: self.version.clone().unwrap_or_default(),
            attributes: decode_encoded(enc)?,
            dropped_attributes_count: self.dropped.unwrap_or(0),
        }))
    }
}

/// Where adjacent rows change resource or scope group.
pub(crate) struct Grouping {
    last: Option<(ResKey, ScopeKey)>,
}

/// What a row starts: nothing new, a new scope group, or a new resource (and scope) group.
pub(crate) enum Start {
    Nothing,
    Scope(ScopeKey),
    Resource(ResKey, ScopeKey),
}

impl Grouping {
    pub(crate) fn new() -> Grouping {
        Grouping { last: None }
    }

    /// Compares a row's keys with the previous row's.
    pub(crate) fn next(&mut self, rk: ResKey, sk: ScopeKey) -> Start {
        let same_res = self.last.as_ref().is_some_and(|(r, _)| *r == rk);
        let same_scope = same_res && self.last.as_ref().is_some_and(|(_, s)| *s == sk);
        let start = match (same_res, same_scope) {
            (true, true) => Start::Nothing,
            (true, false) => Start::Scope(sk.clone()),
            (false, _) => Start::Resource(rk.clone(), sk.clone()),
        };
        self.last = Some((rk, sk));
        start
    }
}
