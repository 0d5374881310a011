//! The `spans` table: one row per span.

use super::ColumnarError;
use super::resource_scope::{self, Dict, Grouping, ResourceRow, ScopeRow, Start, dict_str};
use super::{
    AttrMapBuilder, AttrSizes, TypesBuilder, append_attrs, append_codes, append_entries, attr_builders, column,
    decode_encoded, finish, read_encoded, tenant_column, timestamp_type, ts, unts,
};
use arrow::array::{
    Array, AsArray, BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
    TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, TimestampNanosecondType, UInt32Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

fn event_fields() -> Fields {
    let (mut m, mut t) = attr_builders();
    Fields::from(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("name", DataType::Utf8, false),
        Field::new("attributes", arrow::array::ArrayBuilder::finish(&mut m).data_type().clone(), true),
        Field::new("attribute_types", arrow::array::ArrayBuilder::finish(&mut t).data_type().clone(), true),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ])
}

fn link_fields() -> Fields {
    let (mut m, mut t) = attr_builders();
    Fields::from(vec![
        Field::new("trace_id", DataType::Binary, false),
        Field::new("span_id", DataType::Binary, false),
        Field::new("trace_state", DataType::Utf8, false),
        Field::new("attributes", arrow::array::ArrayBuilder::finish(&mut m).data_type().clone(), true),
        Field::new("attribute_types", arrow::array::ArrayBuilder::finish(&mut t).data_type().clone(), true),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("flags", DataType::UInt32, false),
    ])
}

fn struct_builder(fields: Fields) -> StructBuilder {
    let builders: Vec<Box<dyn arrow::array::ArrayBuilder>> = fields
        .iter()
        .map(|f| -> Box<dyn arrow::array::ArrayBuilder> {
            match f.name().as_str() {
                "time" => Box::new(TimestampNanosecondBuilder::new().with_data_type(timestamp_type())),
                "attributes" => Box::new(attr_builders().0),
                "attribute_types" => Box::new(attr_builders().1),
                "trace_id" | "span_id" => Box::new(BinaryBuilder::new()),
                "dropped_attributes_count" | "flags" => Box::new(UInt32Builder::new()),
                _ => Box::new(StringBuilder::new()),
            }
        })
        .collect();
    StructBuilder::new(fields, builders)
}

/// Appends attributes to the map and type builders that are fields `at` and `at + 1` of a struct.
fn struct_attrs(
    s: &mut StructBuilder,
    at: usize,
    attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> Result<(), ArrowError> {
    let m =
        s.field_builder::<AttrMapBuilder>(at).ok_or_else(|| ArrowError::SchemaError("attributes builder".into()))?;
    let codes = append_entries(m, attrs)?;
    let t = s.field_builder::<TypesBuilder>(at + 1).ok_or_else(|| ArrowError::SchemaError("types builder".into()))?;
    append_codes(t, &codes);
    Ok(())
}

macro_rules! field {
    ($s:expr, $i:expr, $t:ty) => {
        $s.field_builder::<$t>($i).ok_or_else(|| ArrowError::SchemaError(format!("struct field {}", $i)))?
    };
}

/// One row per span of a trace request, all for `tenant`, held as [`super::to_grouped_record_batch`] says.
pub fn to_grouped_record_batch(tenant: &str, req: &ExportTraceServiceRequest) -> Result<RecordBatch, ArrowError> {
    rows(tenant, req, true)
}

/// One row per item of `req`; `grouped`: held as [`super::to_grouped_record_batch`] says, else the
/// table's rows.
pub(super) fn rows(tenant: &str, req: &ExportTraceServiceRequest, grouped: bool) -> Result<RecordBatch, ArrowError> {
    // The builders are allocated at their size (see `AttrSizes`).
    let mut sizes = AttrSizes::default();
    for s in req.resource_spans.iter().flat_map(|rs| &rs.scope_spans).flat_map(|ss| &ss.spans) {
        sizes.add(&s.attributes);
    }
    let mut c = Columns::new(&sizes);
    let mut rs_cols = resource_scope::Builders::new();
    for rs in &req.resource_spans {
        let res = ResourceRow::new(rs.resource.as_ref(), &rs.schema_url);
        for ss in &rs.scope_spans {
            rs_cols.append_rows(&res, &ScopeRow::new(ss.scope.as_ref(), &ss.schema_url), ss.spans.len())?;
            for s in &ss.spans {
                c.scalars(&Scalars {
                    trace_id: &s.trace_id,
                    span_id: &s.span_id,
                    parent_span_id: &s.parent_span_id,
                    trace_state: &s.trace_state,
                    name: &s.name,
                    kind: s.kind,
                    start: s.start_time_unix_nano,
                    end: s.end_time_unix_nano,
                    status: s.status.as_ref().map(|st| (st.code, st.message.as_str())),
                    flags: s.flags,
                    dropped_attributes_count: s.dropped_attributes_count,
                    dropped_events_count: s.dropped_events_count,
                    dropped_links_count: s.dropped_links_count,
                });
                append_attrs(&mut c.attrs, &mut c.types, Some(&s.attributes))?;
                for e in &s.events {
                    c.event(e)?;
                }
                c.events.append(true);
                for l in &s.links {
                    c.link(l)?;
                }
                c.links.append(true);
            }
        }
    }
    c.finish(tenant, rs_cols, grouped)
}

/// A span's values but its attributes, events and links, borrowed from where they are held (a
/// decoded `Span`, or the request's bytes).
#[derive(Default)]
pub(super) struct Scalars<'a> {
    pub(super) trace_id: &'a [u8],
    pub(super) span_id: &'a [u8],
    pub(super) parent_span_id: &'a [u8],
    pub(super) trace_state: &'a str,
    pub(super) name: &'a str,
    pub(super) kind: i32,
    pub(super) start: u64,
    pub(super) end: u64,
    /// Code and message, when the span has a status.
    pub(super) status: Option<(i32, &'a str)>,
    pub(super) flags: u32,
    pub(super) dropped_attributes_count: u32,
    pub(super) dropped_events_count: u32,
    pub(super) dropped_links_count: u32,
}

/// The builders of the spans table's own columns (the resource and scope ones are
/// `resource_scope::Builders`); each span appends its row to every one of them.
pub(super) struct Columns {
    n: usize,
    time: TimestampNanosecondBuilder,
    end_time: TimestampNanosecondBuilder,
    duration: Int64Builder,
    trace_id: BinaryBuilder,
    span_id: BinaryBuilder,
    parent: BinaryBuilder,
    trace_state: StringBuilder,
    name: Dict,
    kind: Int32Builder,
    status_code: Int32Builder,
    status_message: StringBuilder,
    flags: UInt32Builder,
    pub(super) attrs: AttrMapBuilder,
    pub(super) types: TypesBuilder,
    dropped: UInt32Builder,
    /// A span's events are appended one by one (`event`), then the span's list (`append(true)`).
    pub(super) events: ListBuilder<StructBuilder>,
    dropped_events: UInt32Builder,
    /// Like `events`.
    pub(super) links: ListBuilder<StructBuilder>,
    dropped_links: UInt32Builder,
}

impl Columns {
    /// Builders with room for the rows and attributes `sizes` counted.
    pub(super) fn new(sizes: &AttrSizes) -> Columns {
        let n = sizes.rows();
        let (attrs, types) = sizes.builders();
        Columns {
            n,
            time: TimestampNanosecondBuilder::with_capacity(n).with_data_type(timestamp_type()),
            end_time: TimestampNanosecondBuilder::with_capacity(n).with_data_type(timestamp_type()),
            duration: Int64Builder::with_capacity(n),
            trace_id: BinaryBuilder::with_capacity(n, 16 * n),
            span_id: BinaryBuilder::with_capacity(n, 8 * n),
            parent: BinaryBuilder::with_capacity(n, 8 * n),
            trace_state: StringBuilder::with_capacity(n, 0),
            name: Dict::new(),
            kind: Int32Builder::with_capacity(n),
            status_code: Int32Builder::with_capacity(n),
            status_message: StringBuilder::with_capacity(n, 0),
            flags: UInt32Builder::with_capacity(n),
            attrs,
            types,
            dropped: UInt32Builder::with_capacity(n),
            events: ListBuilder::with_capacity(struct_builder(event_fields()), n),
            dropped_events: UInt32Builder::with_capacity(n),
            links: ListBuilder::with_capacity(struct_builder(link_fields()), n),
            dropped_links: UInt32Builder::with_capacity(n),
        }
    }

    pub(super) fn scalars(&mut self, s: &Scalars<'_>) {
        self.time.append_value(ts(s.start));
        self.end_time.append_value(ts(s.end));
        self.duration.append_value(s.end.wrapping_sub(s.start) as i64);
        self.trace_id.append_value(s.trace_id);
        self.span_id.append_value(s.span_id);
        self.parent.append_value(s.parent_span_id);
        self.trace_state.append_value(s.trace_state);
        self.name.append_value(s.name);
        self.kind.append_value(s.kind);
        self.status_code.append_option(s.status.map(|(code, _)| code));
        self.status_message.append_option(s.status.map(|(_, message)| message));
        self.flags.append_value(s.flags);
        self.dropped.append_value(s.dropped_attributes_count);
        self.dropped_events.append_value(s.dropped_events_count);
        self.dropped_links.append_value(s.dropped_links_count);
    }

    /// Appends one event of the span being appended.
    pub(super) fn event(&mut self, e: &span::Event) -> Result<(), ArrowError> {
        let eb = self.events.values();
        field!(eb, 0, TimestampNanosecondBuilder).append_value(ts(e.time_unix_nano));
        field!(eb, 1, StringBuilder).append_value(&e.name);
        struct_attrs(eb, 2, &e.attributes)?;
        field!(eb, 4, UInt32Builder).append_value(e.dropped_attributes_count);
        eb.append(true);
        Ok(())
    }

    /// Appends one link of the span being appended.
    pub(super) fn link(&mut self, l: &span::Link) -> Result<(), ArrowError> {
        let lb = self.links.values();
        field!(lb, 0, BinaryBuilder).append_value(&l.trace_id);
        field!(lb, 1, BinaryBuilder).append_value(&l.span_id);
        field!(lb, 2, StringBuilder).append_value(&l.trace_state);
        struct_attrs(lb, 3, &l.attributes)?;
        field!(lb, 5, UInt32Builder).append_value(l.dropped_attributes_count);
        field!(lb, 6, UInt32Builder).append_value(l.flags);
        lb.append(true);
        Ok(())
    }

    pub(super) fn finish(
        self,
        tenant: &str,
        rs_cols: resource_scope::Builders,
        grouped: bool,
    ) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<(&str, Box<dyn arrow::array::ArrayBuilder>, bool)> = vec![
            ("tenant", Box::new(tenant_column(tenant, self.n)), false),
            ("time", Box::new(self.time), false),
            ("end_time", Box::new(self.end_time), false),
            ("duration_ns", Box::new(self.duration), false),
            ("trace_id", Box::new(self.trace_id), false),
            ("span_id", Box::new(self.span_id), false),
            ("parent_span_id", Box::new(self.parent), false),
            ("trace_state", Box::new(self.trace_state), false),
            ("name", Box::new(self.name), false),
            ("kind", Box::new(self.kind), false),
            ("status_code", Box::new(self.status_code), true),
            ("status_message", Box::new(self.status_message), true),
            ("flags", Box::new(self.flags), false),
            ("attributes", Box::new(self.attrs), false),
            ("attribute_types", Box::new(self.types), false),
            ("dropped_attributes_count", Box::new(self.dropped), false),
            ("events", Box::new(self.events), false),
            ("dropped_events_count", Box::new(self.dropped_events), false),
            ("links", Box::new(self.links), false),
            ("dropped_links_count", Box::new(self.dropped_links), false),
        ];
        finish(columns, rs_cols.columns(grouped)?)
    }
}

/// Rebuilds the trace request from rows (adjacent rows with the same resource and scope share them).
pub fn from_record_batch(batch: &RecordBatch) -> Result<ExportTraceServiceRequest, ColumnarError> {
    let c = |n: &str| column(batch, n);
    let time = c("time")?.as_primitive::<TimestampNanosecondType>();
    let end_time = c("end_time")?.as_primitive::<TimestampNanosecondType>();
    let trace_id = c("trace_id")?.as_binary::<i32>();
    let span_id = c("span_id")?.as_binary::<i32>();
    let parent = c("parent_span_id")?.as_binary::<i32>();
    let trace_state = c("trace_state")?.as_string::<i32>();
    let name = c("name")?;
    let kind = c("kind")?.as_primitive::<Int32Type>();
    let status_code = c("status_code")?.as_primitive::<Int32Type>();
    let status_message = c("status_message")?.as_string::<i32>();
    let flags = c("flags")?.as_primitive::<UInt32Type>();
    let rs_read = resource_scope::Reader::new(batch)?;
    let attrs = c("attributes")?.as_map();
    let types = c("attribute_types")?.as_list::<i32>();
    let dropped = c("dropped_attributes_count")?.as_primitive::<UInt32Type>();
    let events = c("events")?.as_list::<i32>();
    let dropped_events = c("dropped_events_count")?.as_primitive::<UInt32Type>();
    let links = c("links")?.as_list::<i32>();
    let dropped_links = c("dropped_links_count")?.as_primitive::<UInt32Type>();

    let mut out = ExportTraceServiceRequest::default();
    let mut grouping = Grouping::new();
    for row in 0..batch.num_rows() {
        let (rk, sk) = rs_read.keys(row)?;
        match grouping.next(rk, sk) {
            Start::Nothing => {}
            Start::Resource(rk, sk) => {
                out.resource_spans.push(ResourceSpans {
                    resource: rk.resource()?,
                    scope_spans: vec![ScopeSpans {
                        scope: sk.scope()?,
                        spans: Vec::new(),
                        schema_url: sk.schema_url(),
                    }],
                    schema_url: rk.schema_url(),
                });
            }
            Start::Scope(sk) => {
                let rs = out.resource_spans.last_mut().ok_or("internal: no resource group")?;
                rs.scope_spans.push(ScopeSpans { scope: sk.scope()?, spans: Vec::new(), schema_url: sk.schema_url() });
            }
        }
        let ev = events.value(row);
        let ev = ev.as_struct();
        let mut span_events = Vec::with_capacity(ev.len());
        for i in 0..ev.len() {
            let enc = read_encoded(ev.column(2).as_map(), ev.column(3).as_list::<i32>(), i).unwrap_or_default();
            span_events.push(span::Event {
                time_unix_nano: unts(ev.column(0).as_primitive::<TimestampNanosecondType>().value(i)),
                name: ev.column(1).as_string::<i32>().value(i).to_string(),
                attributes: decode_encoded(&enc)?,
                dropped_attributes_count: ev.column(4).as_primitive::<UInt32Type>().value(i),
            });
        }
        let lk = links.value(row);
        let lk = lk.as_struct();
        let mut span_links = Vec::with_capacity(lk.len());
        for i in 0..lk.len() {
            let enc = read_encoded(lk.column(3).as_map(), lk.column(4).as_list::<i32>(), i).unwrap_or_default();
            span_links.push(span::Link {
                trace_id: lk.column(0).as_binary::<i32>().value(i).to_vec(),
                span_id: lk.column(1).as_binary::<i32>().value(i).to_vec(),
                trace_state: lk.column(2).as_string::<i32>().value(i).to_string(),
                attributes: decode_encoded(&enc)?,
                dropped_attributes_count: lk.column(5).as_primitive::<UInt32Type>().value(i),
                flags: lk.column(6).as_primitive::<UInt32Type>().value(i),
            });
        }
        let span = Span {
            trace_id: trace_id.value(row).to_vec(),
            span_id: span_id.value(row).to_vec(),
            trace_state: trace_state.value(row).to_string(),
            parent_span_id: parent.value(row).to_vec(),
            flags: flags.value(row),
            name: dict_str(name, row)?.unwrap_or_default(),
            kind: kind.value(row),
            start_time_unix_nano: unts(time.value(row)),
            end_time_unix_nano: unts(end_time.value(row)),
            attributes: decode_encoded(&read_encoded(attrs, types, row).unwrap_or_default())?,
            dropped_attributes_count: dropped.value(row),
            events: span_events,
            dropped_events_count: dropped_events.value(row),
            links: span_links,
            dropped_links_count: dropped_links.value(row),
            status: (!status_code.is_null(row))
                .then(|| Status { code: status_code.value(row), message: status_message.value(row).to_string() }),
        };
        let rs = out.resource_spans.last_mut().ok_or("internal: no resource group")?;
        rs.scope_spans.last_mut().ok_or("internal: no scope group")?.spans.push(span);
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::attributes::strategies::attributes;
    use crate::columnar::test_support::{normalize, resource, scope};
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use proptest::prelude::*;
    use prost::Message;

    fn span_strategy() -> impl Strategy<Value = Span> {
        let ids = (
            prop::collection::vec(any::<u8>(), 0..20),
            prop::collection::vec(any::<u8>(), 0..10),
            prop::collection::vec(any::<u8>(), 0..10),
        );
        let event = (any::<u64>(), ".{0,6}", attributes(), any::<u32>()).prop_map(
            |(time_unix_nano, name, attributes, dropped_attributes_count)| span::Event {
                time_unix_nano,
                name,
                attributes,
                dropped_attributes_count,
            },
        );
        let link = (
            prop::collection::vec(any::<u8>(), 0..17),
            prop::collection::vec(any::<u8>(), 0..9),
            ".{0,5}",
            attributes(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags)| {
                span::Link { trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags }
            });
        (
            ids,
            (".{0,5}", any::<u32>(), ".{0,8}", any::<i32>(), any::<u64>(), any::<u64>()),
            (attributes(), any::<u32>(), prop::collection::vec(event, 0..3), any::<u32>()),
            (prop::collection::vec(link, 0..3), any::<u32>(), prop::option::of((".{0,6}", any::<i32>()))),
        )
            .prop_map(build_span)
    }

    type SpanParts = (
        (Vec<u8>, Vec<u8>, Vec<u8>),
        (String, u32, String, i32, u64, u64),
        (Vec<opentelemetry_proto::tonic::common::v1::KeyValue>, u32, Vec<span::Event>, u32),
        (Vec<span::Link>, u32, Option<(String, i32)>),
    );

    fn build_span(parts: SpanParts) -> Span {
        let ((trace_id, span_id, parent_span_id), (trace_state, flags, name, kind, start, end), a, l) = parts;
        let (attributes, dropped_attributes_count, events, dropped_events_count) = a;
        let (links, dropped_links_count, status) = l;
        Span {
            trace_id,
            span_id,
            trace_state,
            parent_span_id,
            flags,
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            dropped_attributes_count,
            events,
            dropped_events_count,
            links,
            dropped_links_count,
            status: status.map(|(message, code)| Status { message, code }),
        }
    }

    pub(in crate::columnar) fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        let scope_spans = (scope(), prop::collection::vec(span_strategy(), 0..4), "[a-z:/]{0,6}")
            .prop_map(|(scope, spans, schema_url)| ScopeSpans { scope, spans, schema_url });
        let resource_spans = (resource(), prop::collection::vec(scope_spans, 0..3), "[a-z:/]{0,6}")
            .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans { resource, scope_spans, schema_url });
        prop::collection::vec(resource_spans, 0..3)
            .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn otlp_to_arrow_to_otlp_is_lossless(req in request()) {
            let batch = rows("t1", &req, false).unwrap();
            // Held once per scope group, the rows are the same once expanded.
            prop_assert_eq!(&super::super::expand_groups(&to_grouped_record_batch("t1", &req).unwrap()).unwrap(), &batch);
            let spans: usize = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
            prop_assert_eq!(batch.num_rows(), spans);
            let back = from_record_batch(&batch).unwrap();
            // Compared as protobuf bytes: exact, NaN included.
            let expected = normalize(
                req.resource_spans.clone(),
                |r| (r.resource.as_ref().map(|x| x.encode_to_vec()), r.schema_url.clone()),
                |r| &mut r.scope_spans,
                |s| (s.scope.as_ref().map(|x| x.encode_to_vec()), s.schema_url.clone()),
                |s| &mut s.spans,
            );
            prop_assert_eq!(back.encode_to_vec(), ExportTraceServiceRequest { resource_spans: expected }.encode_to_vec());
        }
    }

    #[test]
    fn typed_columns_are_what_sql_users_expect() {
        let kv = |k: &str, v: any_value::Value| opentelemetry_proto::tonic::common::v1::KeyValue {
            key: k.into(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", any_value::Value::StringValue("cart".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "GET /cart".into(),
                        start_time_unix_nano: 1_000,
                        end_time_unix_nano: 1_750,
                        attributes: vec![kv("http.status_code", any_value::Value::IntValue(503))],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let b = rows("acme", &req, false).unwrap();
        assert_eq!(
            b.column_by_name("duration_ns").unwrap().as_primitive::<arrow::datatypes::Int64Type>().value(0),
            750
        );
        assert_eq!(dict_str(b.column_by_name("service_name").unwrap(), 0).unwrap().as_deref(), Some("cart"));
        assert_eq!(dict_str(b.column_by_name("tenant").unwrap(), 0).unwrap().as_deref(), Some("acme"));
        let attrs = b.column_by_name("attributes").unwrap().as_map();
        let entry = attrs.value(0);
        assert_eq!(entry.column(0).as_string::<i32>().value(0), "http.status_code");
        assert_eq!(entry.column(1).as_string::<i32>().value(0), "503", "the value's text, castable in SQL");
        assert_eq!(b.schema().field_with_name("time").unwrap().data_type(), &timestamp_type());
    }
}
