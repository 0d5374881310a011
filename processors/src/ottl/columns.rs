//! Conditions evaluated a column at a time over a batch's Arrow rows (`openwit_core::columnar`), for
//! batches that already have them — after the `batch` processor, in a pipeline whose exporter stores
//! Parquet. One pass per leaf over one column, no item tree walked, no value copied: a dictionary
//! column (`severity_text`, a span's `name`) is tested once per distinct value, an attribute is
//! looked up in the map column's buffers and compared as text.
//!
//! Only conditions whose every part gives the same answer as the per-item evaluator compile here
//! (`compile` returns `None` otherwise, and the caller evaluates per item): comparisons of a field or
//! one attribute with a literal, `IsMatch` with a literal pattern, the `Is…` type tests, `and`, `or`,
//! `not`. None of these can fail on an item, so `error_mode` never comes into play. The unit tests
//! check both evaluators agree on generated batches.

use super::ast::Key;
use super::leaf::{Cell, Test};
use super::paths::{Bound, Context, Field};
use super::program::{CBool, Condition};
use super::val::Val;
use arrow::array::{Array, ArrayRef, AsArray, MapArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use arrow::record_batch::RecordBatch;
use openwit_core::attributes::{AttrType, decode_value};

/// A condition compiled for Arrow rows of one table.
#[derive(Clone, Debug)]
pub struct ColumnCondition(Node);

#[derive(Clone, Debug)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Const(bool),
    Leaf(Source, Test),
}

/// Where a leaf reads its value.
#[derive(Clone, Debug)]
enum Source {
    /// An integer column; a null cell (an absent status, resource or scope) reads as 0, as the per-item
    /// evaluator reads the default it inserts.
    Int(&'static str),
    /// A string column, plain or dictionary; null reads as "".
    Str(&'static str),
    /// A log body: text and type code.
    Body,
    /// One key of an attribute map column and its type column.
    Attr { map: &'static str, types: &'static str, key: String },
}

impl ColumnCondition {
    /// Compiles `c` (bound in `ctx`) for Arrow rows, or `None` when a part of it has no column form.
    pub fn compile(c: &Condition, ctx: Context) -> Option<ColumnCondition> {
        node(c.tree(), ctx).map(ColumnCondition)
    }

    /// One flag per row: whether the condition holds. `Err` when `rows` lack a column the condition
    /// reads (not a table of the condition's context).
    pub fn eval(&self, rows: &RecordBatch) -> Result<Vec<bool>, String> {
        eval(&self.0, rows)
    }
}

fn node(b: &CBool, ctx: Context) -> Option<Node> {
    Some(match b {
        CBool::Or(v) => Node::Or(v.iter().map(|x| node(x, ctx)).collect::<Option<_>>()?),
        CBool::And(v) => Node::And(v.iter().map(|x| node(x, ctx)).collect::<Option<_>>()?),
        CBool::Not(x) => Node::Not(Box::new(node(x, ctx)?)),
        CBool::Const(c) => Node::Const(*c),
        CBool::Leaf(b, t) => Node::Leaf(source(b, ctx)?, t.clone()),
        _ => return None,
    })
}

/// The column a bound path reads in the table of `ctx` (logs or spans).
fn source(b: &Bound, ctx: Context) -> Option<Source> {
    use Field::*;
    let attr = |map, types| match b.keys.as_slice() {
        [Key::Str(k)] => Some(Source::Attr { map, types, key: k.clone() }),
        _ => None,
    };
    match b.field {
        Attributes => return attr("attributes", "attribute_types"),
        ResourceAttributes => return attr("resource_attributes", "resource_attribute_types"),
        ScopeAttributes => return attr("scope_attributes", "scope_attribute_types"),
        _ if !b.keys.is_empty() => return None,
        _ => {}
    }
    Some(match (ctx, b.field) {
        (Context::Log | Context::Span, ScopeName) => Source::Str("scope_name"),
        (Context::Log | Context::Span, ScopeVersion) => Source::Str("scope_version"),
        (Context::Log | Context::Span, ResourceDropped) => Source::Int("resource_dropped_attributes_count"),
        (Context::Log | Context::Span, ScopeDropped) => Source::Int("scope_dropped_attributes_count"),
        (Context::Log | Context::Span, Flags) => Source::Int("flags"),
        (Context::Log | Context::Span, DroppedAttributes) => Source::Int("dropped_attributes_count"),
        (Context::Log, SeverityNumber) => Source::Int("severity_number"),
        (Context::Log, SeverityText) => Source::Str("severity_text"),
        (Context::Log, EventName) => Source::Str("event_name"),
        (Context::Log, Body) => Source::Body,
        (Context::Span, Name) => Source::Str("name"),
        (Context::Span, Kind) => Source::Int("kind"),
        (Context::Span, StatusCode) => Source::Int("status_code"),
        (Context::Span, StatusMessage) => Source::Str("status_message"),
        (Context::Span, TraceState) => Source::Str("trace_state"),
        (Context::Span, DroppedEvents) => Source::Int("dropped_events_count"),
        (Context::Span, DroppedLinks) => Source::Int("dropped_links_count"),
        _ => return None,
    })
}

fn eval(n: &Node, rows: &RecordBatch) -> Result<Vec<bool>, String> {
    let len = rows.num_rows();
    Ok(match n {
        Node::Const(c) => vec![*c; len],
        Node::Not(x) => eval(x, rows)?.into_iter().map(|b| !b).collect(),
        Node::And(v) | Node::Or(v) => {
            let and = matches!(n, Node::And(_));
            let mut acc = vec![and; len];
            for x in v {
                for (a, b) in acc.iter_mut().zip(eval(x, rows)?) {
                    *a = if and { *a && b } else { *a || b };
                }
            }
            acc
        }
        Node::Leaf(src, test) => leaf(src, test, rows)?,
    })
}

fn column<'a>(rows: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, String> {
    rows.column_by_name(name).ok_or_else(|| format!("the rows have no {name} column"))
}

fn leaf(src: &Source, test: &Test, rows: &RecordBatch) -> Result<Vec<bool>, String> {
    match src {
        Source::Int(name) => {
            let a = arrow::compute::cast(column(rows, name)?, &DataType::Int64).map_err(|e| e.to_string())?;
            let a = a.as_primitive::<Int64Type>();
            Ok((0..a.len()).map(|i| test.on(Cell::Int(if a.is_null(i) { 0 } else { a.value(i) }))).collect())
        }
        Source::Str(name) => {
            let a = column(rows, name)?;
            if let Some(d) = a.as_dictionary_opt::<Int32Type>() {
                // Each distinct value once, then a lookup per row.
                let values = d.values().as_string_opt::<i32>().ok_or_else(|| format!("{name} is not text"))?;
                let per_value: Vec<bool> = (0..values.len()).map(|i| test.on(Cell::Str(values.value(i)))).collect();
                let empty = test.on(Cell::Str(""));
                let keys = d.keys();
                return Ok((0..d.len())
                    .map(|i| if keys.is_null(i) { empty } else { per_value[keys.value(i) as usize] })
                    .collect());
            }
            let s = a.as_string_opt::<i32>().ok_or_else(|| format!("{name} is not text"))?;
            Ok((0..s.len()).map(|i| test.on(Cell::Str(if s.is_null(i) { "" } else { s.value(i) }))).collect())
        }
        Source::Body => {
            let text = column(rows, "body")?.as_string_opt::<i32>().ok_or("body is not text")?;
            let types = column(rows, "body_type")?.as_primitive_opt::<arrow::datatypes::UInt8Type>();
            let types = types.ok_or("body_type is not UInt8")?;
            (0..text.len()).map(|i| Ok(test.on(typed_cell(text.value(i), types.value(i))?))).collect()
        }
        Source::Attr { map, types, key } => {
            let map: &MapArray = column(rows, map)?.as_map_opt().ok_or_else(|| format!("{map} is not a map"))?;
            let types = column(rows, types)?.as_list_opt::<i32>().ok_or_else(|| format!("{types} is not a list"))?;
            let keys = map.keys().as_string_opt::<i32>().ok_or("attribute keys are not text")?;
            let vals = map.values().as_string_opt::<i32>().ok_or("attribute values are not text")?;
            let codes = types.values().as_primitive_opt::<arrow::datatypes::UInt8Type>().ok_or("type codes")?;
            let (offsets, code_offsets) = (map.value_offsets(), types.value_offsets());
            (0..map.len())
                .map(|row| {
                    if map.is_null(row) {
                        return Ok(test.on(Cell::Nil));
                    }
                    let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                    // The first entry with the key, as the per-item lookup finds it.
                    let Some(j) = (start..end).find(|&j| keys.value(j) == key) else {
                        return Ok(test.on(Cell::Nil));
                    };
                    let code_start = code_offsets[row] as usize;
                    // No type codes for a row means every value is a string.
                    let code = if code_offsets[row + 1] as usize == code_start {
                        AttrType::Str as u8
                    } else {
                        codes.value(code_start + (j - start))
                    };
                    Ok(test.on(typed_cell(vals.value(j), code)?))
                })
                .collect()
        }
    }
}

/// A stored (text, type code) value as a cell: strings borrowed, the rest decoded.
fn typed_cell(text: &str, code: u8) -> Result<Cell<'_>, String> {
    let t = AttrType::from_code(code).ok_or_else(|| format!("unknown attribute type code {code}"))?;
    Ok(match t {
        AttrType::Str => Cell::Str(text),
        AttrType::Missing | AttrType::Empty => Cell::Nil,
        AttrType::Int => Cell::Int(text.parse().map_err(|_| format!("stored int {text:?} does not parse"))?),
        other => Cell::Other(Val::from_any(decode_value(text, other)?.as_ref())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ottl::program::{condition, condition_without_leaves};
    use crate::ottl::walk::visit;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use openwit_core::Payload;
    use proptest::prelude::*;

    /// Conditions every part of which has a column form, over the log table.
    const LOG_CONDITIONS: &[&str] = &[
        "severity_number < SEVERITY_NUMBER_WARN",
        "severity_number >= 9",
        "9 < severity_number",
        "severity_text == \"INFO\"",
        "severity_text != \"WARN\"",
        "severity_text > \"I\"",
        "severity_text == 3",
        "body == \"timeout\"",
        "IsMatch(body, \"time\")",
        "IsMatch(body, \"^1\")",
        "body == 5",
        "body == 1.5",
        "body != nil",
        "IsString(body)",
        "IsMap(body)",
        "IsInt(body)",
        "attributes[\"http.route\"] == \"/health\"",
        "IsMatch(attributes[\"thread.name\"], \"-1$\")",
        "not IsMatch(attributes[\"thread.name\"], \"-1$\")",
        "attributes[\"n\"] > 3",
        "attributes[\"n\"] == 3.0",
        "attributes[\"k\"] == nil",
        "attributes[\"k\"] == true",
        "IsBool(attributes[\"k\"])",
        "IsList(attributes[\"k\"])",
        "IsMatch(attributes[\"k\"], \"a\")",
        "resource.attributes[\"service.name\"] == \"checkout\"",
        "resource.attributes[\"service.name\"] == nil",
        "scope.name == \"\"",
        "instrumentation_scope.name == \"lib-a\"",
        "instrumentation_scope.version != \"1\"",
        "resource.dropped_attributes_count == 0",
        "severity_number > 8 and (attributes[\"http.route\"] == \"/health\" or not IsString(body))",
        "true",
        "false or event_name == \"e1\"",
        "flags == 1",
        "dropped_attributes_count >= 1",
    ];

    const SPAN_CONDITIONS: &[&str] = &[
        "name == \"GET /health\"",
        "IsMatch(name, \"^GET\")",
        "kind == SPAN_KIND_SERVER",
        "status.code == STATUS_CODE_ERROR",
        "status.code == 0",
        "status.message == \"\"",
        "attributes[\"http.route\"] == \"/health\" and kind != SPAN_KIND_CLIENT",
        "trace_state == \"\"",
        "dropped_events_count > 0 or dropped_links_count > 0",
        "resource.attributes[\"service.name\"] != \"checkout\"",
    ];

    fn av(v: Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }

    /// A value of any type, small pools so that comparisons hit.
    fn value() -> impl Strategy<Value = Option<AnyValue>> {
        prop_oneof![
            Just(None),
            Just(Some(AnyValue { value: None })),
            prop::sample::select(vec!["timeout", "/health", "pool-1", "pool-11", "pool-2", "a", "", "1x"])
                .prop_map(|s| Some(av(Value::StringValue(s.into())))),
            (0i64..6).prop_map(|i| Some(av(Value::IntValue(i)))),
            prop::sample::select(vec![1.5, 3.0, -0.0, f64::NAN]).prop_map(|d| Some(av(Value::DoubleValue(d)))),
            any::<bool>().prop_map(|b| Some(av(Value::BoolValue(b)))),
            Just(Some(av(Value::BytesValue(vec![0xa1, 2])))),
            Just(Some(av(Value::ArrayValue(ArrayValue { values: vec![av(Value::StringValue("a".into()))] })))),
            Just(Some(av(Value::KvlistValue(KeyValueList {
                values: vec![KeyValue { key: "a".into(), value: Some(av(Value::IntValue(1))), ..Default::default() }]
            })))),
        ]
    }

    fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
        let key = prop::sample::select(vec!["http.route", "thread.name", "n", "k", "service.name"]);
        prop::collection::vec(
            (key, value()).prop_map(|(k, v)| KeyValue { key: k.into(), value: v, ..Default::default() }),
            0..4,
        )
    }

    fn resource() -> impl Strategy<Value = Option<Resource>> {
        prop::option::of((attributes(), 0u32..2).prop_map(|(attributes, dropped_attributes_count)| Resource {
            attributes,
            dropped_attributes_count,
            ..Default::default()
        }))
    }

    fn scope() -> impl Strategy<Value = Option<InstrumentationScope>> {
        prop::option::of(
            (prop::sample::select(vec!["", "lib-a", "lib-b"]), prop::sample::select(vec!["", "1"]))
                .prop_map(|(n, v)| InstrumentationScope { name: n.into(), version: v.into(), ..Default::default() }),
        )
    }

    fn log() -> impl Strategy<Value = LogRecord> {
        (
            0i32..25,
            prop::sample::select(vec!["", "INFO", "WARN", "ERROR", "info"]),
            value(),
            attributes(),
            0u32..3,
            prop::sample::select(vec!["", "e1"]),
        )
            .prop_map(|(severity_number, text, body, attributes, n, event)| LogRecord {
                severity_number,
                severity_text: text.into(),
                body,
                attributes,
                flags: n,
                dropped_attributes_count: n,
                event_name: event.into(),
                ..Default::default()
            })
    }

    fn logs() -> impl Strategy<Value = Payload> {
        let scope_logs = (scope(), prop::collection::vec(log(), 0..6)).prop_map(|(scope, log_records)| ScopeLogs {
            scope,
            log_records,
            ..Default::default()
        });
        let resource_logs = (resource(), prop::collection::vec(scope_logs, 0..3))
            .prop_map(|(resource, scope_logs)| ResourceLogs { resource, scope_logs, ..Default::default() });
        prop::collection::vec(resource_logs, 0..3)
            .prop_map(|resource_logs| Payload::Logs(ExportLogsServiceRequest { resource_logs }))
    }

    fn span() -> impl Strategy<Value = Span> {
        (
            prop::sample::select(vec!["GET /health", "GET /cart", "POST /pay"]),
            0i32..6,
            prop::option::of((0i32..3, prop::sample::select(vec!["", "boom"]))),
            attributes(),
            0u32..2,
        )
            .prop_map(|(name, kind, status, attributes, n)| Span {
                name: name.into(),
                kind,
                status: status.map(|(code, m)| Status { code, message: m.into() }),
                attributes,
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                dropped_events_count: n,
                trace_state: if n == 1 { "rv=1".into() } else { String::new() },
                ..Default::default()
            })
    }

    fn traces() -> impl Strategy<Value = Payload> {
        let scope_spans = (scope(), prop::collection::vec(span(), 0..6)).prop_map(|(scope, spans)| ScopeSpans {
            scope,
            spans,
            ..Default::default()
        });
        let resource_spans = (resource(), prop::collection::vec(scope_spans, 0..3))
            .prop_map(|(resource, scope_spans)| ResourceSpans { resource, scope_spans, ..Default::default() });
        prop::collection::vec(resource_spans, 0..3)
            .prop_map(|resource_spans| Payload::Traces(ExportTraceServiceRequest { resource_spans }))
    }

    /// The three evaluations on the same payload, for each condition: by columns, per item, and per item
    /// without `leaf` tests.
    fn agree(payload: &Payload, ctx: Context, conditions: &[&str]) -> Result<(), TestCaseError> {
        let rows = openwit_core::columnar::to_record_batch("t", payload).unwrap();
        for text in conditions {
            let c = condition(text, ctx).unwrap();
            let by_column = ColumnCondition::compile(&c, ctx)
                .unwrap_or_else(|| panic!("{text} has a column form"))
                .eval(&rows)
                .unwrap();
            let by_item = visit(&mut payload.clone(), ctx, |item| c.eval(item).unwrap());
            prop_assert_eq!(&by_column, &by_item, "{}", text);
            // And the tests that read values in place agree with the general evaluation.
            let general = condition_without_leaves(text, ctx).unwrap();
            let by_general = visit(&mut payload.clone(), ctx, |item| general.eval(item).unwrap());
            prop_assert_eq!(&by_item, &by_general, "{} (general)", text);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn log_conditions_give_the_per_item_answer(payload in logs()) {
            agree(&payload, Context::Log, LOG_CONDITIONS)?;
        }

        #[test]
        fn span_conditions_give_the_per_item_answer(payload in traces()) {
            agree(&payload, Context::Span, SPAN_CONDITIONS)?;
        }
    }

    #[test]
    fn what_has_no_column_form_is_left_to_the_per_item_evaluator() {
        for (text, ctx) in [
            ("Len(body) > 3", Context::Log),
            ("attributes[\"a\"][\"b\"] == \"x\"", Context::Log),
            ("severity_text == attributes[\"x\"]", Context::Log),
            ("time_unix_nano > 0", Context::Log),
            ("IsMatch(body, attributes[\"p\"])", Context::Log),
            ("HasPrefix(body, \"x\")", Context::Log),
            ("trace_id.string == \"00\"", Context::Span),
            ("severity_number > 3 and Len(body) > 3", Context::Log),
        ] {
            let c = condition(text, ctx).unwrap();
            assert!(ColumnCondition::compile(&c, ctx).is_none(), "{text}");
        }
    }

    #[test]
    fn rows_of_another_table_are_an_error_not_an_answer() {
        let c = condition("severity_text == \"INFO\"", Context::Log).unwrap();
        let spans =
            openwit_core::columnar::to_record_batch("t", &Payload::empty(openwit_core::Signal::Traces)).unwrap();
        let e = ColumnCondition::compile(&c, Context::Log).unwrap().eval(&spans).unwrap_err();
        assert!(e.contains("severity_text"), "{e}");
    }
}
