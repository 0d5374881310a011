//! The `spans` table: one row per span.

use super::{
    AttrMapBuilder, EncodedAttrs, TypesBuilder, append_attrs, attr_builders, column, decode_encoded, finish,
    read_encoded, timestamp_type, ts, unts,
};
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    StringDictionaryBuilder, StructBuilder, TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, TimestampNanosecondType, UInt32Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{EntityRef, InstrumentationScope, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

/// `Resource.entity_refs`, stored as protobuf bytes: rare, and not worth columns of their own.
#[derive(Clone, PartialEq, prost::Message)]
struct EntityRefs {
    #[prost(message, repeated, tag = "1")]
    refs: Vec<EntityRef>,
}

type Dict = StringDictionaryBuilder<Int32Type>;

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
    let (entries, codes) = crate::attributes::encode_attributes(attrs);
    let m =
        s.field_builder::<AttrMapBuilder>(at).ok_or_else(|| ArrowError::SchemaError("attributes builder".into()))?;
    for (k, v) in &entries {
        m.keys().append_value(k);
        m.values().append_value(v);
    }
    m.append(true)?;
    let t = s.field_builder::<TypesBuilder>(at + 1).ok_or_else(|| ArrowError::SchemaError("types builder".into()))?;
    t.values().append_slice(&codes);
    t.append(true);
    Ok(())
}

macro_rules! field {
    ($s:expr, $i:expr, $t:ty) => {
        $s.field_builder::<$t>($i).ok_or_else(|| ArrowError::SchemaError(format!("struct field {}", $i)))?
    };
}

/// The resource's `service.name`, promoted to its own column.
fn service_name(r: Option<&Resource>) -> Option<&str> {
    r?.attributes.iter().find(|kv| kv.key == "service.name").and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

/// Converts a trace request into one row per span, all for `tenant`.
pub fn to_record_batch(tenant: &str, req: &ExportTraceServiceRequest) -> Result<RecordBatch, ArrowError> {
    let mut tenant_b = Dict::new();
    let mut time = TimestampNanosecondBuilder::new().with_data_type(timestamp_type());
    let mut end_time = TimestampNanosecondBuilder::new().with_data_type(timestamp_type());
    let mut duration = Int64Builder::new();
    let (mut trace_id, mut span_id, mut parent) = (BinaryBuilder::new(), BinaryBuilder::new(), BinaryBuilder::new());
    let mut trace_state = StringBuilder::new();
    let mut name = Dict::new();
    let mut kind = Int32Builder::new();
    let mut status_code = Int32Builder::new();
    let mut status_message = StringBuilder::new();
    let mut flags = UInt32Builder::new();
    let mut service = Dict::new();
    let (mut res_attrs, mut res_types) = attr_builders();
    let mut res_dropped = UInt32Builder::new();
    let mut res_entities = BinaryBuilder::new();
    let mut res_schema = StringBuilder::new();
    let mut scope_name = Dict::new();
    let mut scope_version = StringBuilder::new();
    let (mut scope_attrs, mut scope_types) = attr_builders();
    let mut scope_dropped = UInt32Builder::new();
    let mut scope_schema = StringBuilder::new();
    let (mut attrs, mut types) = attr_builders();
    let mut dropped = UInt32Builder::new();
    let mut events = ListBuilder::new(struct_builder(event_fields()));
    let mut dropped_events = UInt32Builder::new();
    let mut links = ListBuilder::new(struct_builder(link_fields()));
    let mut dropped_links = UInt32Builder::new();

    for rs in &req.resource_spans {
        let res = rs.resource.as_ref();
        let svc = service_name(res);
        let entity_bytes = res
            .filter(|r| !r.entity_refs.is_empty())
            .map(|r| EntityRefs { refs: r.entity_refs.clone() }.encode_to_vec());
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref();
            for s in &ss.spans {
                tenant_b.append_value(tenant);
                time.append_value(ts(s.start_time_unix_nano));
                end_time.append_value(ts(s.end_time_unix_nano));
                duration.append_value(s.end_time_unix_nano.wrapping_sub(s.start_time_unix_nano) as i64);
                trace_id.append_value(&s.trace_id);
                span_id.append_value(&s.span_id);
                parent.append_value(&s.parent_span_id);
                trace_state.append_value(&s.trace_state);
                name.append_value(&s.name);
                kind.append_value(s.kind);
                status_code.append_option(s.status.as_ref().map(|st| st.code));
                status_message.append_option(s.status.as_ref().map(|st| st.message.as_str()));
                flags.append_value(s.flags);
                service.append_option(svc);
                append_attrs(&mut res_attrs, &mut res_types, res.map(|r| r.attributes.as_slice()))?;
                res_dropped.append_option(res.map(|r| r.dropped_attributes_count));
                res_entities.append_option(entity_bytes.as_deref());
                res_schema.append_value(&rs.schema_url);
                scope_name.append_option(scope.map(|sc| sc.name.as_str()));
                scope_version.append_option(scope.map(|sc| sc.version.as_str()));
                append_attrs(&mut scope_attrs, &mut scope_types, scope.map(|sc| sc.attributes.as_slice()))?;
                scope_dropped.append_option(scope.map(|sc| sc.dropped_attributes_count));
                scope_schema.append_value(&ss.schema_url);
                append_attrs(&mut attrs, &mut types, Some(&s.attributes))?;
                dropped.append_value(s.dropped_attributes_count);
                let eb = events.values();
                for e in &s.events {
                    field!(eb, 0, TimestampNanosecondBuilder).append_value(ts(e.time_unix_nano));
                    field!(eb, 1, StringBuilder).append_value(&e.name);
                    struct_attrs(eb, 2, &e.attributes)?;
                    field!(eb, 4, UInt32Builder).append_value(e.dropped_attributes_count);
                    eb.append(true);
                }
                events.append(true);
                dropped_events.append_value(s.dropped_events_count);
                let lb = links.values();
                for l in &s.links {
                    field!(lb, 0, BinaryBuilder).append_value(&l.trace_id);
                    field!(lb, 1, BinaryBuilder).append_value(&l.span_id);
                    field!(lb, 2, StringBuilder).append_value(&l.trace_state);
                    struct_attrs(lb, 3, &l.attributes)?;
                    field!(lb, 5, UInt32Builder).append_value(l.dropped_attributes_count);
                    field!(lb, 6, UInt32Builder).append_value(l.flags);
                    lb.append(true);
                }
                links.append(true);
                dropped_links.append_value(s.dropped_links_count);
            }
        }
    }
    finish(vec![
        ("tenant", Box::new(tenant_b), false),
        ("time", Box::new(time), false),
        ("end_time", Box::new(end_time), false),
        ("duration_ns", Box::new(duration), false),
        ("trace_id", Box::new(trace_id), false),
        ("span_id", Box::new(span_id), false),
        ("parent_span_id", Box::new(parent), false),
        ("trace_state", Box::new(trace_state), false),
        ("name", Box::new(name), false),
        ("kind", Box::new(kind), false),
        ("status_code", Box::new(status_code), true),
        ("status_message", Box::new(status_message), true),
        ("flags", Box::new(flags), false),
        ("service_name", Box::new(service), true),
        ("resource_attributes", Box::new(res_attrs), true),
        ("resource_attribute_types", Box::new(res_types), true),
        ("resource_dropped_attributes_count", Box::new(res_dropped), true),
        ("resource_entity_refs", Box::new(res_entities), true),
        ("resource_schema_url", Box::new(res_schema), false),
        ("scope_name", Box::new(scope_name), true),
        ("scope_version", Box::new(scope_version), true),
        ("scope_attributes", Box::new(scope_attrs), true),
        ("scope_attribute_types", Box::new(scope_types), true),
        ("scope_dropped_attributes_count", Box::new(scope_dropped), true),
        ("scope_schema_url", Box::new(scope_schema), false),
        ("attributes", Box::new(attrs), false),
        ("attribute_types", Box::new(types), false),
        ("dropped_attributes_count", Box::new(dropped), false),
        ("events", Box::new(events), false),
        ("dropped_events_count", Box::new(dropped_events), false),
        ("links", Box::new(links), false),
        ("dropped_links_count", Box::new(dropped_links), false),
    ])
}

/// What identifies a resource group: its stored form, compared exactly.
#[derive(PartialEq)]
struct ResKey {
    attrs: Option<EncodedAttrs>,
    dropped: Option<u32>,
    entities: Option<Vec<u8>>,
    schema_url: String,
}

#[derive(PartialEq)]
struct ScopeKey {
    name: Option<String>,
    version: Option<String>,
    attrs: Option<EncodedAttrs>,
    dropped: Option<u32>,
    schema_url: String,
}

fn dict_str(a: &ArrayRef, row: usize) -> Result<Option<String>, String> {
    if a.is_null(row) {
        return Ok(None);
    }
    let d = a.as_dictionary_opt::<Int32Type>().ok_or("expected a dictionary column")?;
    let values = d.values().as_string::<i32>();
    Ok(Some(values.value(d.keys().value(row) as usize).to_string()))
}

/// Rebuilds the trace request from rows (adjacent rows with the same resource and scope share them).
pub fn from_record_batch(batch: &RecordBatch) -> Result<ExportTraceServiceRequest, String> {
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
    let res_attrs = c("resource_attributes")?.as_map();
    let res_types = c("resource_attribute_types")?.as_list::<i32>();
    let res_dropped = c("resource_dropped_attributes_count")?.as_primitive::<UInt32Type>();
    let res_entities = c("resource_entity_refs")?.as_binary::<i32>();
    let res_schema = c("resource_schema_url")?.as_string::<i32>();
    let scope_name = c("scope_name")?;
    let scope_version = c("scope_version")?.as_string::<i32>();
    let scope_attrs = c("scope_attributes")?.as_map();
    let scope_types = c("scope_attribute_types")?.as_list::<i32>();
    let scope_dropped = c("scope_dropped_attributes_count")?.as_primitive::<UInt32Type>();
    let scope_schema = c("scope_schema_url")?.as_string::<i32>();
    let attrs = c("attributes")?.as_map();
    let types = c("attribute_types")?.as_list::<i32>();
    let dropped = c("dropped_attributes_count")?.as_primitive::<UInt32Type>();
    let events = c("events")?.as_list::<i32>();
    let dropped_events = c("dropped_events_count")?.as_primitive::<UInt32Type>();
    let links = c("links")?.as_list::<i32>();
    let dropped_links = c("dropped_links_count")?.as_primitive::<UInt32Type>();
    let opt_u32 = |a: &arrow::array::PrimitiveArray<UInt32Type>, i: usize| (!a.is_null(i)).then(|| a.value(i));

    let mut out = ExportTraceServiceRequest::default();
    let mut last: Option<(ResKey, ScopeKey)> = None;
    for row in 0..batch.num_rows() {
        let rk = ResKey {
            attrs: read_encoded(res_attrs, res_types, row),
            dropped: opt_u32(res_dropped, row),
            entities: (!res_entities.is_null(row)).then(|| res_entities.value(row).to_vec()),
            schema_url: res_schema.value(row).to_string(),
        };
        let sk = ScopeKey {
            name: dict_str(scope_name, row)?,
            version: (!scope_version.is_null(row)).then(|| scope_version.value(row).to_string()),
            attrs: read_encoded(scope_attrs, scope_types, row),
            dropped: opt_u32(scope_dropped, row),
            schema_url: scope_schema.value(row).to_string(),
        };
        let same_res = last.as_ref().is_some_and(|(r, _)| *r == rk);
        let same_scope = same_res && last.as_ref().is_some_and(|(_, s)| *s == sk);
        if !same_res {
            let resource = match &rk.attrs {
                None => None,
                Some(enc) => Some(Resource {
                    attributes: decode_encoded(enc)?,
                    dropped_attributes_count: rk.dropped.unwrap_or(0),
                    entity_refs: match &rk.entities {
                        Some(b) => EntityRefs::decode(&b[..]).map_err(|e| format!("resource_entity_refs: {e}"))?.refs,
                        None => Vec::new(),
                    },
                }),
            };
            out.resource_spans.push(ResourceSpans {
                resource,
                scope_spans: Vec::new(),
                schema_url: rk.schema_url.clone(),
            });
        }
        if !same_scope {
            let scope = match &sk.attrs {
                None => None,
                Some(enc) => Some(InstrumentationScope {
                    name: sk.name.clone().unwrap_or_default(),
                    version: sk.version.clone().unwrap_or_default(),
                    attributes: decode_encoded(enc)?,
                    dropped_attributes_count: sk.dropped.unwrap_or(0),
                }),
            };
            let rs = out.resource_spans.last_mut().ok_or("internal: no resource group")?;
            rs.scope_spans.push(ScopeSpans { scope, spans: Vec::new(), schema_url: sk.schema_url.clone() });
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
        last = Some((rk, sk));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::strategies::attributes;
    use proptest::prelude::*;

    fn entity_ref() -> impl Strategy<Value = EntityRef> {
        (".{0,4}", "[a-z]{0,4}", prop::collection::vec("[a-z]{1,3}", 0..3), prop::collection::vec("[a-z]{1,3}", 0..2))
            .prop_map(|(schema_url, r#type, id_keys, description_keys)| EntityRef {
                schema_url,
                r#type,
                id_keys,
                description_keys,
            })
    }

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

    fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        let scope = prop::option::of(("[a-z]{0,4}", "[0-9.]{0,4}", attributes(), any::<u32>()).prop_map(
            |(name, version, attributes, dropped_attributes_count)| InstrumentationScope {
                name,
                version,
                attributes,
                dropped_attributes_count,
            },
        ));
        let scope_spans = (scope, prop::collection::vec(span_strategy(), 0..4), "[a-z:/]{0,6}")
            .prop_map(|(scope, spans, schema_url)| ScopeSpans { scope, spans, schema_url });
        let resource =
            prop::option::of((attributes(), any::<u32>(), prop::collection::vec(entity_ref(), 0..2)).prop_map(
                |(attributes, dropped_attributes_count, entity_refs)| Resource {
                    attributes,
                    dropped_attributes_count,
                    entity_refs,
                },
            ));
        let resource_spans = (resource, prop::collection::vec(scope_spans, 0..3), "[a-z:/]{0,6}")
            .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans { resource, scope_spans, schema_url });
        prop::collection::vec(resource_spans, 0..3)
            .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
    }

    /// What rows can carry: no empty groups, and adjacent groups with identical resources (scopes)
    /// are one group.
    fn normalize(req: &ExportTraceServiceRequest) -> ExportTraceServiceRequest {
        let key = |m: &Option<Resource>, url: &str| (m.as_ref().map(|r| r.encode_to_vec()), url.to_string());
        let skey =
            |m: &Option<InstrumentationScope>, url: &str| (m.as_ref().map(|s| s.encode_to_vec()), url.to_string());
        let mut out: Vec<ResourceSpans> = Vec::new();
        for rs in &req.resource_spans {
            let scopes: Vec<ScopeSpans> = rs.scope_spans.iter().filter(|s| !s.spans.is_empty()).cloned().collect();
            if scopes.is_empty() {
                continue;
            }
            match out.last_mut() {
                Some(last) if key(&last.resource, &last.schema_url) == key(&rs.resource, &rs.schema_url) => {
                    last.scope_spans.extend(scopes)
                }
                _ => out.push(ResourceSpans { scope_spans: scopes, ..rs.clone() }),
            }
        }
        for rs in &mut out {
            let mut merged: Vec<ScopeSpans> = Vec::new();
            for ss in std::mem::take(&mut rs.scope_spans) {
                match merged.last_mut() {
                    Some(last) if skey(&last.scope, &last.schema_url) == skey(&ss.scope, &ss.schema_url) => {
                        last.spans.extend(ss.spans)
                    }
                    _ => merged.push(ss),
                }
            }
            rs.scope_spans = merged;
        }
        ExportTraceServiceRequest { resource_spans: out }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn otlp_to_arrow_to_otlp_is_lossless(req in request()) {
            let batch = to_record_batch("t1", &req).unwrap();
            let spans: usize = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
            prop_assert_eq!(batch.num_rows(), spans);
            let back = from_record_batch(&batch).unwrap();
            // Compared as protobuf bytes: exact, NaN included.
            prop_assert_eq!(back.encode_to_vec(), normalize(&req).encode_to_vec());
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
        let b = to_record_batch("acme", &req).unwrap();
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
