//! OTTL paths bound to a context: which field of which part of the item a path names, and how it is
//! read and written. Paths are checked when the statement is compiled, so an unknown path is a config
//! error at start.
//!
//! Contexts and their fields (the Collector's names; each context also reaches `resource.*`,
//! `instrumentation_scope.*` (or `scope.*`) and `cache`, and accepts its own name as a prefix, as in
//! `span.name`):
//! - `resource`: `attributes`, `dropped_attributes_count`
//! - `scope`: `name`, `version`, `attributes`, `dropped_attributes_count`
//! - `span`: `trace_id`, `trace_id.string`, `span_id`, `span_id.string`, `parent_span_id`,
//!   `parent_span_id.string`, `trace_state`, `name`, `kind`, `start_time_unix_nano`,
//!   `end_time_unix_nano`, `attributes`, `dropped_attributes_count`, `dropped_events_count`,
//!   `dropped_links_count`, `status.code`, `status.message`, `flags`
//! - `log`: `time_unix_nano`, `observed_time_unix_nano`, `severity_number`, `severity_text`, `body`,
//!   `attributes`, `trace_id`, `trace_id.string`, `span_id`, `span_id.string`, `flags`, `event_name`,
//!   `dropped_attributes_count`
//! - `metric`: `name`, `description`, `unit`, `type`, `aggregation_temporality`, `is_monotonic`
//! - `datapoint`: `attributes`, `start_time_unix_nano`, `time_unix_nano`, `value_double`, `value_int`,
//!   `count`, `sum`, `flags`, and `metric.name`, `metric.description`, `metric.unit`, `metric.type`
//!   (read only)

use super::ast::{Key, Path};
use super::leaf::Cell;
use super::val::Val;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};

/// The kind of item statements run over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Resource,
    Scope,
    Span,
    SpanEvent,
    Log,
    Metric,
    DataPoint,
}

impl Context {
    pub fn parse(name: &str) -> Option<Context> {
        Some(match name {
            "resource" => Context::Resource,
            "scope" | "instrumentation_scope" => Context::Scope,
            "span" => Context::Span,
            "spanevent" => Context::SpanEvent,
            "log" | "log_record" => Context::Log,
            "metric" => Context::Metric,
            "datapoint" => Context::DataPoint,
            _ => return None,
        })
    }

    fn prefixes(self) -> &'static [&'static str] {
        match self {
            Context::Resource => &["resource"],
            Context::Scope => &["scope", "instrumentation_scope"],
            Context::Span => &["span"],
            Context::SpanEvent => &["spanevent"],
            Context::Log => &["log"],
            Context::Metric => &["metric"],
            Context::DataPoint => &["datapoint"],
        }
    }
}

/// A field a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    ResourceAttributes,
    ResourceDropped,
    ScopeName,
    ScopeVersion,
    ScopeAttributes,
    ScopeDropped,
    Cache,
    Attributes,
    TraceId,
    TraceIdString,
    SpanId,
    SpanIdString,
    ParentSpanId,
    ParentSpanIdString,
    TraceState,
    Name,
    Kind,
    StartTime,
    EndTime,
    DroppedAttributes,
    DroppedEvents,
    DroppedLinks,
    StatusCode,
    StatusMessage,
    Flags,
    Time,
    ObservedTime,
    SeverityNumber,
    SeverityText,
    Body,
    EventName,
    Description,
    Unit,
    MetricType,
    Temporality,
    Monotonic,
    ValueDouble,
    ValueInt,
    Count,
    Sum,
    MetricName,
    MetricDescription,
    MetricUnit,
    MetricTypeOfPoint,
    SpanEventName,
    EventTime,
    EventDropped,
    ParentName,
    ParentKind,
    ParentAttributes,
}

/// A path bound to a context: a field, and keys into its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Bound {
    pub field: Field,
    pub keys: Vec<Key>,
}

/// Binds `path` in `ctx`, or says why it is not a path there.
pub fn bind(path: &Path, ctx: Context) -> Result<Bound, String> {
    let names: Vec<&str> = path.fields.iter().map(|f| f.name.as_str()).collect();
    let full = names.join(".");
    if let Some(f) = path.fields[..path.fields.len() - 1].iter().find(|f| !f.keys.is_empty()) {
        return Err(format!("path {full}: only the last field may be indexed, not {}", f.name));
    }
    let keys = path.fields.last().expect("a path has a field").keys.clone();
    // `span.name` in the span context is `name`.
    let rest: Vec<&str> = match names.split_first() {
        Some((first, rest)) if ctx.prefixes().contains(first) && !rest.is_empty() => rest.to_vec(),
        _ => names.clone(),
    };
    let name = rest.join(".");
    let field = shared_field(&name).or_else(|| own_field(ctx, &name)).ok_or_else(|| {
        format!("{full} is not a path of the {} context (see docs/ottl.md for its paths)", ctx_name(ctx))
    })?;
    let mappish = matches!(
        field,
        Field::Attributes | Field::ResourceAttributes | Field::ScopeAttributes | Field::Cache | Field::Body
    );
    if !keys.is_empty() && !mappish {
        return Err(format!("path {full}: {name} cannot be indexed"));
    }
    Ok(Bound { field, keys })
}

fn ctx_name(ctx: Context) -> &'static str {
    ctx.prefixes()[0]
}

fn shared_field(name: &str) -> Option<Field> {
    Some(match name {
        "resource.attributes" => Field::ResourceAttributes,
        "resource.dropped_attributes_count" => Field::ResourceDropped,
        "instrumentation_scope.name" | "scope.name" => Field::ScopeName,
        "instrumentation_scope.version" | "scope.version" => Field::ScopeVersion,
        "instrumentation_scope.attributes" | "scope.attributes" => Field::ScopeAttributes,
        "instrumentation_scope.dropped_attributes_count" | "scope.dropped_attributes_count" => Field::ScopeDropped,
        "cache" => Field::Cache,
        _ => return None,
    })
}

fn own_field(ctx: Context, name: &str) -> Option<Field> {
    use Field::*;
    Some(match (ctx, name) {
        (Context::Resource, "attributes") => ResourceAttributes,
        (Context::Resource, "dropped_attributes_count") => ResourceDropped,
        (Context::Scope, "name") => ScopeName,
        (Context::Scope, "version") => ScopeVersion,
        (Context::Scope, "attributes") => ScopeAttributes,
        (Context::Scope, "dropped_attributes_count") => ScopeDropped,
        (Context::Span | Context::SpanEvent | Context::Log | Context::DataPoint, "attributes") => Attributes,
        (Context::SpanEvent, "name") => SpanEventName,
        (Context::SpanEvent, "time_unix_nano") => EventTime,
        (Context::SpanEvent, "dropped_attributes_count") => EventDropped,
        (Context::SpanEvent, "span.name") => ParentName,
        (Context::SpanEvent, "span.kind") => ParentKind,
        (Context::SpanEvent, "span.attributes") => ParentAttributes,
        (Context::Span | Context::Log, "trace_id") => TraceId,
        (Context::Span | Context::Log, "trace_id.string") => TraceIdString,
        (Context::Span | Context::Log, "span_id") => SpanId,
        (Context::Span | Context::Log, "span_id.string") => SpanIdString,
        (Context::Span | Context::Log | Context::DataPoint, "flags") => Flags,
        (Context::Span | Context::Log, "dropped_attributes_count") => DroppedAttributes,
        (Context::Span, "parent_span_id") => ParentSpanId,
        (Context::Span, "parent_span_id.string") => ParentSpanIdString,
        (Context::Span, "trace_state") => TraceState,
        (Context::Span | Context::Metric, "name") => Name,
        (Context::Span, "kind") => Kind,
        (Context::Span | Context::DataPoint, "start_time_unix_nano") => StartTime,
        (Context::Span, "end_time_unix_nano") => EndTime,
        (Context::Span, "dropped_events_count") => DroppedEvents,
        (Context::Span, "dropped_links_count") => DroppedLinks,
        (Context::Span, "status.code") => StatusCode,
        (Context::Span, "status.message") => StatusMessage,
        (Context::Log | Context::DataPoint, "time_unix_nano") => Time,
        (Context::Log, "observed_time_unix_nano") => ObservedTime,
        (Context::Log, "severity_number") => SeverityNumber,
        (Context::Log, "severity_text") => SeverityText,
        (Context::Log, "body") => Body,
        (Context::Log, "event_name") => EventName,
        (Context::Metric, "description") => Description,
        (Context::Metric, "unit") => Unit,
        (Context::Metric, "type") => MetricType,
        (Context::Metric, "aggregation_temporality") => Temporality,
        (Context::Metric, "is_monotonic") => Monotonic,
        (Context::DataPoint, "value_double") => ValueDouble,
        (Context::DataPoint, "value_int") => ValueInt,
        (Context::DataPoint, "count") => Count,
        (Context::DataPoint, "sum") => Sum,
        (Context::DataPoint, "metric.name") => MetricName,
        (Context::DataPoint, "metric.description") => MetricDescription,
        (Context::DataPoint, "metric.unit") => MetricUnit,
        (Context::DataPoint, "metric.type") => MetricTypeOfPoint,
        _ => return None,
    })
}

/// A data point of any metric type, to read and write the fields they share.
pub enum Point<'a> {
    Number(&'a mut opentelemetry_proto::tonic::metrics::v1::NumberDataPoint),
    Histogram(&'a mut opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint),
    Exponential(&'a mut opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint),
    Summary(&'a mut opentelemetry_proto::tonic::metrics::v1::SummaryDataPoint),
}

/// What a data point's statements may read of its metric.
#[derive(Clone, Debug, Default)]
pub struct MetricInfo {
    pub name: String,
    pub description: String,
    pub unit: String,
    pub kind: i64,
}

/// What a span event's statements may read of its span (`span.name`, `span.kind`, `span.attributes`).
#[derive(Clone, Debug, Default)]
pub struct SpanInfo {
    pub name: String,
    pub kind: i32,
    pub attributes: Vec<KeyValue>,
}

/// The item a statement runs over, with its resource and scope.
pub struct Item<'a> {
    pub resource: &'a mut Resource,
    pub scope: &'a mut InstrumentationScope,
    pub own: Own<'a>,
    /// The `cache` map: scratch space for one item's statements.
    pub cache: Vec<KeyValue>,
}

pub enum Own<'a> {
    None,
    Span(&'a mut Span),
    /// A span event, with what its statements may read of its span.
    Event(&'a mut opentelemetry_proto::tonic::trace::v1::span::Event, SpanInfo),
    Log(&'a mut LogRecord),
    Metric(&'a mut Metric),
    Point(Point<'a>, MetricInfo),
}

/// The metric's type as OTTL numbers it (`METRIC_DATA_TYPE_GAUGE` = 1, …).
pub fn metric_type(m: &Metric) -> i64 {
    match &m.data {
        None => 0,
        Some(Data::Gauge(_)) => 1,
        Some(Data::Sum(_)) => 2,
        Some(Data::Histogram(_)) => 3,
        Some(Data::ExponentialHistogram(_)) => 4,
        Some(Data::Summary(_)) => 5,
    }
}

fn u64_val(v: u64) -> Val {
    Val::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn to_u64(v: &Val) -> Result<u64, String> {
    match v {
        Val::Int(i) => u64::try_from(*i).map_err(|_| format!("{i} is negative")),
        other => Err(format!("expected an int, got {}", other.kind())),
    }
}

fn to_u32(v: &Val) -> Result<u32, String> {
    to_u64(v).and_then(|x| u32::try_from(x).map_err(|_| format!("{x} does not fit 32 bits")))
}

fn to_i32(v: &Val) -> Result<i32, String> {
    match v {
        Val::Int(i) => i32::try_from(*i).map_err(|_| format!("{i} does not fit 32 bits")),
        other => Err(format!("expected an int, got {}", other.kind())),
    }
}

fn to_string(v: Val) -> Result<String, String> {
    match v {
        Val::Str(s) => Ok(s),
        other => Err(format!("expected a string, got {}", other.kind())),
    }
}

fn to_id(v: Val, len: usize) -> Result<Vec<u8>, String> {
    match v {
        Val::Bytes(b) if b.len() == len => Ok(b),
        Val::Bytes(b) => Err(format!("an id of {len} bytes, got {}", b.len())),
        other => Err(format!("expected {len} bytes, got {}", other.kind())),
    }
}

fn hex_id(b: &[u8]) -> Val {
    Val::Str(if b.iter().all(|x| *x == 0) { String::new() } else { b.iter().map(|x| format!("{x:02x}")).collect() })
}

fn from_hex_id(v: Val, len: usize) -> Result<Vec<u8>, String> {
    let s = to_string(v)?;
    if s.len() != len * 2 {
        return Err(format!("an id of {} hex digits, got {:?}", len * 2, s));
    }
    (0..len).map(|i| u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).map_err(|_| format!("{s:?} is not hex"))).collect()
}

impl Item<'_> {
    /// The attribute list a map field holds, to read or change.
    pub(crate) fn map_mut(&mut self, field: Field) -> Option<&mut Vec<KeyValue>> {
        Some(match (field, &mut self.own) {
            (Field::ResourceAttributes, _) => &mut self.resource.attributes,
            (Field::ScopeAttributes, _) => &mut self.scope.attributes,
            (Field::Cache, _) => &mut self.cache,
            (Field::Attributes, Own::Span(s)) => &mut s.attributes,
            (Field::Attributes, Own::Log(l)) => &mut l.attributes,
            (Field::Attributes, Own::Event(e, _)) => &mut e.attributes,
            (Field::Attributes, Own::Point(p, _)) => match p {
                Point::Number(p) => &mut p.attributes,
                Point::Histogram(p) => &mut p.attributes,
                Point::Exponential(p) => &mut p.attributes,
                Point::Summary(p) => &mut p.attributes,
            },
            _ => return None,
        })
    }

    /// Reads a bound path.
    pub fn get(&mut self, b: &Bound) -> Val {
        if let Some(map) = self.map_mut(b.field) {
            // Look the first key up in place: only the value read is copied, not the whole map.
            return match b.keys.split_first() {
                None => Val::Map(map.clone()),
                Some((Key::Str(k), rest)) => get_keys(Val::from_any(crate::value::get(map, k)), rest),
                Some((Key::Int(_), _)) => Val::Nil,
            };
        }
        if let (Field::ParentAttributes, Own::Event(_, info)) = (b.field, &self.own) {
            return get_keys(Val::Map(info.attributes.clone()), &b.keys);
        }
        if b.field == Field::Body {
            let Own::Log(l) = &self.own else { return Val::Nil };
            return get_keys(Val::from_any(l.body.as_ref()), &b.keys);
        }
        self.get_plain(b.field)
    }

    /// Reads a bound path for a test, borrowing strings where the item holds them (`leaf`): the same
    /// value `get` returns, without the copy.
    pub fn peek(&mut self, b: &Bound) -> Cell<'_> {
        if let [Key::Str(k)] = b.keys.as_slice()
            && self.map_mut(b.field).is_some()
        {
            let map = self.map_mut(b.field).expect("checked above");
            return Cell::of_any(crate::value::get(map, k));
        }
        if !b.keys.is_empty() {
            return Cell::Other(self.get(b));
        }
        // Asked twice so that the borrow returned is not held over the fallback (a borrow-checker limit).
        if self.borrowed(b.field).is_some() {
            return self.borrowed(b.field).expect("checked above");
        }
        Cell::Other(self.get(b))
    }

    /// The plain fields `peek` can lend as they are.
    fn borrowed(&self, field: Field) -> Option<Cell<'_>> {
        Some(match (field, &self.own) {
            (Field::Body, Own::Log(l)) => Cell::of_any(l.body.as_ref()),
            (Field::SeverityText, Own::Log(l)) => Cell::Str(&l.severity_text),
            (Field::EventName, Own::Log(l)) => Cell::Str(&l.event_name),
            (Field::Name, Own::Span(s)) => Cell::Str(&s.name),
            (Field::Name, Own::Metric(m)) => Cell::Str(&m.name),
            (Field::SpanEventName, Own::Event(e, _)) => Cell::Str(&e.name),
            (Field::MetricName, Own::Point(_, info)) => Cell::Str(&info.name),
            (Field::ScopeName, _) => Cell::Str(&self.scope.name),
            _ => return None,
        })
    }

    fn get_plain(&self, field: Field) -> Val {
        use Field::*;
        match (field, &self.own) {
            (ResourceDropped, _) => Val::Int(i64::from(self.resource.dropped_attributes_count)),
            (ScopeName, _) => Val::Str(self.scope.name.clone()),
            (ScopeVersion, _) => Val::Str(self.scope.version.clone()),
            (ScopeDropped, _) => Val::Int(i64::from(self.scope.dropped_attributes_count)),
            (TraceId, Own::Span(s)) => Val::Bytes(s.trace_id.clone()),
            (TraceId, Own::Log(l)) => Val::Bytes(l.trace_id.clone()),
            (TraceIdString, Own::Span(s)) => hex_id(&s.trace_id),
            (TraceIdString, Own::Log(l)) => hex_id(&l.trace_id),
            (SpanId, Own::Span(s)) => Val::Bytes(s.span_id.clone()),
            (SpanId, Own::Log(l)) => Val::Bytes(l.span_id.clone()),
            (SpanIdString, Own::Span(s)) => hex_id(&s.span_id),
            (SpanIdString, Own::Log(l)) => hex_id(&l.span_id),
            (ParentSpanId, Own::Span(s)) => Val::Bytes(s.parent_span_id.clone()),
            (ParentSpanIdString, Own::Span(s)) => hex_id(&s.parent_span_id),
            (TraceState, Own::Span(s)) => Val::Str(s.trace_state.clone()),
            (Name, Own::Span(s)) => Val::Str(s.name.clone()),
            (Name, Own::Metric(m)) => Val::Str(m.name.clone()),
            (Kind, Own::Span(s)) => Val::Int(i64::from(s.kind)),
            (StartTime, Own::Span(s)) => u64_val(s.start_time_unix_nano),
            (EndTime, Own::Span(s)) => u64_val(s.end_time_unix_nano),
            (DroppedAttributes, Own::Span(s)) => Val::Int(i64::from(s.dropped_attributes_count)),
            (DroppedAttributes, Own::Log(l)) => Val::Int(i64::from(l.dropped_attributes_count)),
            (DroppedEvents, Own::Span(s)) => Val::Int(i64::from(s.dropped_events_count)),
            (DroppedLinks, Own::Span(s)) => Val::Int(i64::from(s.dropped_links_count)),
            (StatusCode, Own::Span(s)) => Val::Int(i64::from(s.status.as_ref().map_or(0, |st| st.code))),
            (StatusMessage, Own::Span(s)) => {
                Val::Str(s.status.as_ref().map(|st| st.message.clone()).unwrap_or_default())
            }
            (Flags, Own::Span(s)) => Val::Int(i64::from(s.flags)),
            (Flags, Own::Log(l)) => Val::Int(i64::from(l.flags)),
            (Time, Own::Log(l)) => u64_val(l.time_unix_nano),
            (ObservedTime, Own::Log(l)) => u64_val(l.observed_time_unix_nano),
            (SeverityNumber, Own::Log(l)) => Val::Int(i64::from(l.severity_number)),
            (SeverityText, Own::Log(l)) => Val::Str(l.severity_text.clone()),
            (EventName, Own::Log(l)) => Val::Str(l.event_name.clone()),
            (Description, Own::Metric(m)) => Val::Str(m.description.clone()),
            (Unit, Own::Metric(m)) => Val::Str(m.unit.clone()),
            (MetricType, Own::Metric(m)) => Val::Int(metric_type(m)),
            (Temporality, Own::Metric(m)) => Val::Int(i64::from(match &m.data {
                Some(Data::Sum(s)) => s.aggregation_temporality,
                Some(Data::Histogram(h)) => h.aggregation_temporality,
                Some(Data::ExponentialHistogram(h)) => h.aggregation_temporality,
                _ => 0,
            })),
            (Monotonic, Own::Metric(m)) => Val::Bool(matches!(&m.data, Some(Data::Sum(s)) if s.is_monotonic)),
            (SpanEventName, Own::Event(e, _)) => Val::Str(e.name.clone()),
            (EventTime, Own::Event(e, _)) => u64_val(e.time_unix_nano),
            (EventDropped, Own::Event(e, _)) => Val::Int(i64::from(e.dropped_attributes_count)),
            (ParentName, Own::Event(_, info)) => Val::Str(info.name.clone()),
            (ParentKind, Own::Event(_, info)) => Val::Int(i64::from(info.kind)),
            (MetricName, Own::Point(_, info)) => Val::Str(info.name.clone()),
            (MetricDescription, Own::Point(_, info)) => Val::Str(info.description.clone()),
            (MetricUnit, Own::Point(_, info)) => Val::Str(info.unit.clone()),
            (MetricTypeOfPoint, Own::Point(_, info)) => Val::Int(info.kind),
            (StartTime, Own::Point(p, _)) => u64_val(match p {
                Point::Number(p) => p.start_time_unix_nano,
                Point::Histogram(p) => p.start_time_unix_nano,
                Point::Exponential(p) => p.start_time_unix_nano,
                Point::Summary(p) => p.start_time_unix_nano,
            }),
            (Time, Own::Point(p, _)) => u64_val(match p {
                Point::Number(p) => p.time_unix_nano,
                Point::Histogram(p) => p.time_unix_nano,
                Point::Exponential(p) => p.time_unix_nano,
                Point::Summary(p) => p.time_unix_nano,
            }),
            (Flags, Own::Point(p, _)) => Val::Int(i64::from(match p {
                Point::Number(p) => p.flags,
                Point::Histogram(p) => p.flags,
                Point::Exponential(p) => p.flags,
                Point::Summary(p) => p.flags,
            })),
            (ValueDouble, Own::Point(Point::Number(p), _)) => match p.value {
                Some(number_data_point::Value::AsDouble(d)) => Val::Float(d),
                _ => Val::Float(0.0),
            },
            (ValueInt, Own::Point(Point::Number(p), _)) => match p.value {
                Some(number_data_point::Value::AsInt(i)) => Val::Int(i),
                _ => Val::Int(0),
            },
            (Count, Own::Point(p, _)) => match p {
                Point::Histogram(p) => u64_val(p.count),
                Point::Exponential(p) => u64_val(p.count),
                Point::Summary(p) => u64_val(p.count),
                Point::Number(_) => Val::Nil,
            },
            (Sum, Own::Point(p, _)) => match p {
                Point::Histogram(p) => p.sum.map_or(Val::Nil, Val::Float),
                Point::Exponential(p) => p.sum.map_or(Val::Nil, Val::Float),
                Point::Summary(p) => Val::Float(p.sum),
                Point::Number(_) => Val::Nil,
            },
            _ => Val::Nil,
        }
    }

    /// Writes a bound path. Setting nil on a key removes it; on a plain field it does nothing (as
    /// in the Collector). A value of the wrong type is an error.
    pub fn set(&mut self, b: &Bound, v: Val) -> Result<(), String> {
        if let Some(map) = self.map_mut(b.field) {
            if b.keys.is_empty() {
                match v {
                    Val::Map(m) => *map = m,
                    Val::Nil => {}
                    other => return Err(format!("cannot set a map to a {}", other.kind())),
                }
                return Ok(());
            }
            return set_in_map(map, &b.keys, v);
        }
        use Field::*;
        match (b.field, &mut self.own) {
            (Body, Own::Log(l)) => {
                if b.keys.is_empty() {
                    l.body = v.into_any();
                    Ok(())
                } else {
                    let body = l.body.get_or_insert_with(AnyValue::default);
                    set_in_any(body, &b.keys, v)
                }
            }
            (_, _) if v == Val::Nil => Ok(()),
            (ResourceDropped, _) => to_u32(&v).map(|x| self.resource.dropped_attributes_count = x),
            (ScopeName, _) => to_string(v).map(|x| self.scope.name = x),
            (ScopeVersion, _) => to_string(v).map(|x| self.scope.version = x),
            (ScopeDropped, _) => to_u32(&v).map(|x| self.scope.dropped_attributes_count = x),
            (TraceId, Own::Span(s)) => to_id(v, 16).map(|x| s.trace_id = x),
            (TraceId, Own::Log(l)) => to_id(v, 16).map(|x| l.trace_id = x),
            (TraceIdString, Own::Span(s)) => from_hex_id(v, 16).map(|x| s.trace_id = x),
            (TraceIdString, Own::Log(l)) => from_hex_id(v, 16).map(|x| l.trace_id = x),
            (SpanId, Own::Span(s)) => to_id(v, 8).map(|x| s.span_id = x),
            (SpanId, Own::Log(l)) => to_id(v, 8).map(|x| l.span_id = x),
            (SpanIdString, Own::Span(s)) => from_hex_id(v, 8).map(|x| s.span_id = x),
            (SpanIdString, Own::Log(l)) => from_hex_id(v, 8).map(|x| l.span_id = x),
            (ParentSpanId, Own::Span(s)) => to_id(v, 8).map(|x| s.parent_span_id = x),
            (ParentSpanIdString, Own::Span(s)) => from_hex_id(v, 8).map(|x| s.parent_span_id = x),
            (TraceState, Own::Span(s)) => to_string(v).map(|x| s.trace_state = x),
            (Name, Own::Span(s)) => to_string(v).map(|x| s.name = x),
            (Name, Own::Metric(m)) => to_string(v).map(|x| m.name = x),
            (Kind, Own::Span(s)) => to_i32(&v).map(|x| s.kind = x),
            (StartTime, Own::Span(s)) => to_u64(&v).map(|x| s.start_time_unix_nano = x),
            (EndTime, Own::Span(s)) => to_u64(&v).map(|x| s.end_time_unix_nano = x),
            (DroppedAttributes, Own::Span(s)) => to_u32(&v).map(|x| s.dropped_attributes_count = x),
            (DroppedAttributes, Own::Log(l)) => to_u32(&v).map(|x| l.dropped_attributes_count = x),
            (DroppedEvents, Own::Span(s)) => to_u32(&v).map(|x| s.dropped_events_count = x),
            (DroppedLinks, Own::Span(s)) => to_u32(&v).map(|x| s.dropped_links_count = x),
            (StatusCode, Own::Span(s)) => to_i32(&v).map(|x| s.status.get_or_insert_with(Status::default).code = x),
            (StatusMessage, Own::Span(s)) => {
                to_string(v).map(|x| s.status.get_or_insert_with(Status::default).message = x)
            }
            (Flags, Own::Span(s)) => to_u32(&v).map(|x| s.flags = x),
            (Flags, Own::Log(l)) => to_u32(&v).map(|x| l.flags = x),
            (Time, Own::Log(l)) => to_u64(&v).map(|x| l.time_unix_nano = x),
            (ObservedTime, Own::Log(l)) => to_u64(&v).map(|x| l.observed_time_unix_nano = x),
            (SeverityNumber, Own::Log(l)) => to_i32(&v).map(|x| l.severity_number = x),
            (SeverityText, Own::Log(l)) => to_string(v).map(|x| l.severity_text = x),
            (EventName, Own::Log(l)) => to_string(v).map(|x| l.event_name = x),
            (SpanEventName, Own::Event(e, _)) => to_string(v).map(|x| e.name = x),
            (EventTime, Own::Event(e, _)) => to_u64(&v).map(|x| e.time_unix_nano = x),
            (EventDropped, Own::Event(e, _)) => to_u32(&v).map(|x| e.dropped_attributes_count = x),
            (Description, Own::Metric(m)) => to_string(v).map(|x| m.description = x),
            (Unit, Own::Metric(m)) => to_string(v).map(|x| m.unit = x),
            (ValueDouble, Own::Point(Point::Number(p), _)) => match v {
                Val::Float(d) => {
                    p.value = Some(number_data_point::Value::AsDouble(d));
                    Ok(())
                }
                other => Err(format!("value_double takes a double, got {}", other.kind())),
            },
            (ValueInt, Own::Point(Point::Number(p), _)) => match v {
                Val::Int(i) => {
                    p.value = Some(number_data_point::Value::AsInt(i));
                    Ok(())
                }
                other => Err(format!("value_int takes an int, got {}", other.kind())),
            },
            (field, _) => Err(format!("{field:?} cannot be set here")),
        }
    }
}

/// `value[k1][k2]…`: a missing key, or a key into something that is not a map or list, is nil.
pub fn get_keys(mut v: Val, keys: &[Key]) -> Val {
    for k in keys {
        v = match (v, k) {
            (Val::Map(m), Key::Str(s)) => Val::from_any(crate::value::get(&m, s)),
            (Val::List(l), Key::Int(i)) => {
                usize::try_from(*i).ok().and_then(|i| l.get(i)).map_or(Val::Nil, |x| Val::from_any(Some(x)))
            }
            _ => return Val::Nil,
        };
    }
    v
}

fn set_in_map(map: &mut Vec<KeyValue>, keys: &[Key], v: Val) -> Result<(), String> {
    let (first, rest) = keys.split_first().expect("at least one key");
    let Key::Str(k) = first else { return Err(format!("a map is indexed by a string, not {first:?}")) };
    if rest.is_empty() {
        match v.into_any() {
            Some(a) => crate::value::put(map, k, a),
            None => {
                crate::value::remove(map, k);
            }
        }
        return Ok(());
    }
    let slot = match crate::value::get_mut(map, k) {
        Some(s) => s,
        None => {
            crate::value::put(map, k, AnyValue { value: Some(Value::KvlistValue(Default::default())) });
            crate::value::get_mut(map, k).expect("just put")
        }
    };
    set_in_any(slot, rest, v)
}

fn set_in_any(slot: &mut AnyValue, keys: &[Key], v: Val) -> Result<(), String> {
    match (&mut slot.value, &keys[0]) {
        (Some(Value::KvlistValue(m)), Key::Str(_)) => set_in_map(&mut m.values, keys, v),
        (Some(Value::ArrayValue(a)), Key::Int(i)) => {
            let i = usize::try_from(*i)
                .ok()
                .filter(|i| *i < a.values.len())
                .ok_or_else(|| format!("index {i} out of range"))?;
            if keys.len() == 1 {
                a.values[i] = v.into_any().unwrap_or_default();
                Ok(())
            } else {
                set_in_any(&mut a.values[i], &keys[1..], v)
            }
        }
        (_, k) => Err(format!("cannot index a {} with {k:?}", Val::from_any(Some(slot)).kind())),
    }
}
