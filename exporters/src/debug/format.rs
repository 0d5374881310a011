//! Text renderings of OTLP data, modelled on the Collector's debug exporter.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{Exemplar, number_data_point};
use openwit_core::{Batch, Payload};
use std::fmt::Write;

/// The one-line summary every verbosity prints.
pub fn summary(batch: &Batch) -> String {
    match &*batch.payload {
        Payload::Traces(r) => {
            format!("Traces: resource spans {}, spans {}", r.resource_spans.len(), batch.item_count())
        }
        Payload::Metrics(r) => {
            let metrics: usize =
                r.resource_metrics.iter().flat_map(|x| &x.scope_metrics).map(|s| s.metrics.len()).sum();
            format!(
                "Metrics: resource metrics {}, metrics {metrics}, data points {}",
                r.resource_metrics.len(),
                batch.item_count()
            )
        }
        Payload::Logs(r) => {
            format!("Logs: resource logs {}, log records {}", r.resource_logs.len(), batch.item_count())
        }
    }
}

/// One line per item.
pub fn normal(p: &Payload) -> String {
    let mut out = String::new();
    match p {
        Payload::Traces(r) => {
            for s in r.resource_spans.iter().flat_map(|x| &x.scope_spans).flat_map(|x| &x.spans) {
                let _ = writeln!(
                    out,
                    "{} {} {} {}",
                    s.name,
                    hex::encode(&s.trace_id),
                    hex::encode(&s.span_id),
                    attrs_inline(&s.attributes)
                );
            }
        }
        Payload::Logs(r) => {
            for l in r.resource_logs.iter().flat_map(|x| &x.scope_logs).flat_map(|x| &x.log_records) {
                let _ = writeln!(out, "{} {}", any(l.body.as_ref()), attrs_inline(&l.attributes));
            }
        }
        Payload::Metrics(r) => {
            for m in r.resource_metrics.iter().flat_map(|x| &x.scope_metrics).flat_map(|x| &x.metrics) {
                let _ = writeln!(
                    out,
                    "{}{} {}",
                    m.name,
                    if m.unit.is_empty() { String::new() } else { format!(" {{{}}}", m.unit) },
                    kind(m.data.as_ref())
                );
            }
        }
    }
    out
}

/// Everything, resource by resource.
pub fn detailed(p: &Payload) -> String {
    let mut o = String::new();
    match p {
        Payload::Traces(r) => {
            for (i, rs) in r.resource_spans.iter().enumerate() {
                let _ = writeln!(o, "ResourceSpans #{i}\nResource SchemaURL: {}", rs.schema_url);
                resource(&mut o, rs.resource.as_ref().map(|r| r.attributes.as_slice()));
                for (j, ss) in rs.scope_spans.iter().enumerate() {
                    scope(&mut o, "ScopeSpans", j, &ss.schema_url, ss.scope.as_ref());
                    for (k, s) in ss.spans.iter().enumerate() {
                        let _ = writeln!(o, "Span #{k}");
                        field(&mut o, "Trace ID", &hex::encode(&s.trace_id));
                        field(&mut o, "Parent ID", &hex::encode(&s.parent_span_id));
                        field(&mut o, "ID", &hex::encode(&s.span_id));
                        field(&mut o, "Name", &s.name);
                        field(&mut o, "Kind", span_kind(s.kind));
                        field(&mut o, "Start time", &s.start_time_unix_nano.to_string());
                        field(&mut o, "End time", &s.end_time_unix_nano.to_string());
                        let (code, msg) = s.status.as_ref().map(|st| (st.code, st.message.as_str())).unwrap_or((0, ""));
                        field(&mut o, "Status code", ["Unset", "Ok", "Error"].get(code as usize).unwrap_or(&"Unknown"));
                        field(&mut o, "Status message", msg);
                        attributes(&mut o, "Attributes", &s.attributes);
                        for (e, ev) in s.events.iter().enumerate() {
                            let _ = writeln!(
                                o,
                                "SpanEvent #{e}\n     -> Name: {}\n     -> Timestamp: {}",
                                ev.name, ev.time_unix_nano
                            );
                            attributes(&mut o, "     -> Attributes", &ev.attributes);
                        }
                        for (l, link) in s.links.iter().enumerate() {
                            let _ = writeln!(
                                o,
                                "SpanLink #{l}\n     -> Trace ID: {}\n     -> ID: {}",
                                hex::encode(&link.trace_id),
                                hex::encode(&link.span_id)
                            );
                            attributes(&mut o, "     -> Attributes", &link.attributes);
                        }
                    }
                }
            }
        }
        Payload::Logs(r) => {
            for (i, rl) in r.resource_logs.iter().enumerate() {
                let _ = writeln!(o, "ResourceLog #{i}\nResource SchemaURL: {}", rl.schema_url);
                resource(&mut o, rl.resource.as_ref().map(|r| r.attributes.as_slice()));
                for (j, sl) in rl.scope_logs.iter().enumerate() {
                    scope(&mut o, "ScopeLogs", j, &sl.schema_url, sl.scope.as_ref());
                    for (k, l) in sl.log_records.iter().enumerate() {
                        let _ = writeln!(o, "LogRecord #{k}");
                        let _ = writeln!(
                            o,
                            "ObservedTimestamp: {}\nTimestamp: {}",
                            l.observed_time_unix_nano, l.time_unix_nano
                        );
                        let _ = writeln!(o, "SeverityText: {}\nSeverityNumber: {}", l.severity_text, l.severity_number);
                        let _ = writeln!(o, "Body: {}", any(l.body.as_ref()));
                        attributes(&mut o, "Attributes", &l.attributes);
                        let _ = writeln!(
                            o,
                            "Trace ID: {}\nSpan ID: {}\nFlags: {}",
                            hex::encode(&l.trace_id),
                            hex::encode(&l.span_id),
                            l.flags
                        );
                    }
                }
            }
        }
        Payload::Metrics(r) => {
            for (i, rm) in r.resource_metrics.iter().enumerate() {
                let _ = writeln!(o, "ResourceMetrics #{i}\nResource SchemaURL: {}", rm.schema_url);
                resource(&mut o, rm.resource.as_ref().map(|r| r.attributes.as_slice()));
                for (j, sm) in rm.scope_metrics.iter().enumerate() {
                    scope(&mut o, "ScopeMetrics", j, &sm.schema_url, sm.scope.as_ref());
                    for (k, m) in sm.metrics.iter().enumerate() {
                        let _ = writeln!(
                            o,
                            "Metric #{k}\nDescriptor:\n     -> Name: {}\n     -> Description: {}\n     -> Unit: {}\n     -> DataType: {}",
                            m.name,
                            m.description,
                            m.unit,
                            kind(m.data.as_ref())
                        );
                        points(&mut o, m.data.as_ref());
                    }
                }
            }
        }
    }
    o
}

fn points(o: &mut String, data: Option<&Data>) {
    let num = |v: &Option<number_data_point::Value>| match v {
        Some(number_data_point::Value::AsDouble(d)) => format!("{d}"),
        Some(number_data_point::Value::AsInt(i)) => format!("{i}"),
        None => String::new(),
    };
    match data {
        Some(Data::Gauge(g)) => g.data_points.iter().enumerate().for_each(|(i, p)| {
            let _ = writeln!(o, "NumberDataPoints #{i}\nStartTimestamp: {}\nTimestamp: {}\nValue: {}", p.start_time_unix_nano, p.time_unix_nano, num(&p.value));
            attributes(o, "Data point attributes", &p.attributes);
            exemplars(o, &p.exemplars);
        }),
        Some(Data::Sum(s)) => s.data_points.iter().enumerate().for_each(|(i, p)| {
            let _ = writeln!(o, "NumberDataPoints #{i}\nStartTimestamp: {}\nTimestamp: {}\nValue: {}", p.start_time_unix_nano, p.time_unix_nano, num(&p.value));
            attributes(o, "Data point attributes", &p.attributes);
            exemplars(o, &p.exemplars);
        }),
        Some(Data::Histogram(h)) => h.data_points.iter().enumerate().for_each(|(i, p)| {
            let _ = writeln!(o, "HistogramDataPoints #{i}\nStartTimestamp: {}\nTimestamp: {}\nCount: {}\nSum: {:?}\nMin: {:?}\nMax: {:?}\nExplicitBounds: {:?}\nBuckets: {:?}",
                p.start_time_unix_nano, p.time_unix_nano, p.count, p.sum, p.min, p.max, p.explicit_bounds, p.bucket_counts);
            attributes(o, "Data point attributes", &p.attributes);
            exemplars(o, &p.exemplars);
        }),
        Some(Data::ExponentialHistogram(h)) => h.data_points.iter().enumerate().for_each(|(i, p)| {
            let _ = writeln!(o, "ExponentialHistogramDataPoints #{i}\nStartTimestamp: {}\nTimestamp: {}\nCount: {}\nSum: {:?}\nScale: {}\nZeroCount: {}\nPositive: {:?}\nNegative: {:?}",
                p.start_time_unix_nano, p.time_unix_nano, p.count, p.sum, p.scale, p.zero_count, p.positive, p.negative);
            attributes(o, "Data point attributes", &p.attributes);
            exemplars(o, &p.exemplars);
        }),
        Some(Data::Summary(s)) => s.data_points.iter().enumerate().for_each(|(i, p)| {
            let _ = writeln!(o, "SummaryDataPoints #{i}\nStartTimestamp: {}\nTimestamp: {}\nCount: {}\nSum: {}", p.start_time_unix_nano, p.time_unix_nano, p.count, p.sum);
            for q in &p.quantile_values {
                let _ = writeln!(o, "QuantileValue: {} -> {}", q.quantile, q.value);
            }
            attributes(o, "Data point attributes", &p.attributes);
        }),
        None => {}
    }
}

fn exemplars(o: &mut String, ex: &[Exemplar]) {
    for (i, e) in ex.iter().enumerate() {
        let _ = writeln!(
            o,
            "Exemplar #{i}\n     -> Trace ID: {}\n     -> Span ID: {}\n     -> Timestamp: {}",
            hex::encode(&e.trace_id),
            hex::encode(&e.span_id),
            e.time_unix_nano
        );
    }
}

fn kind(d: Option<&Data>) -> &'static str {
    match d {
        Some(Data::Gauge(_)) => "Gauge",
        Some(Data::Sum(_)) => "Sum",
        Some(Data::Histogram(_)) => "Histogram",
        Some(Data::ExponentialHistogram(_)) => "ExponentialHistogram",
        Some(Data::Summary(_)) => "Summary",
        None => "Empty",
    }
}

fn span_kind(k: i32) -> &'static str {
    ["Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"]
        .get(k as usize)
        .copied()
        .unwrap_or("Unknown")
}

fn field(o: &mut String, name: &str, value: &str) {
    let _ = writeln!(o, "    {name:<15}: {value}");
}

fn resource(o: &mut String, attrs: Option<&[KeyValue]>) {
    attributes(o, "Resource attributes", attrs.unwrap_or_default());
}

fn scope(
    o: &mut String,
    what: &str,
    i: usize,
    schema: &str,
    s: Option<&opentelemetry_proto::tonic::common::v1::InstrumentationScope>,
) {
    let (name, version) = s.map(|s| (s.name.as_str(), s.version.as_str())).unwrap_or(("", ""));
    let _ = writeln!(o, "{what} #{i}\n{what} SchemaURL: {schema}\nInstrumentationScope {name} {version}");
}

fn attributes(o: &mut String, title: &str, attrs: &[KeyValue]) {
    if attrs.is_empty() {
        return;
    }
    let _ = writeln!(o, "{title}:");
    for kv in attrs {
        let _ = writeln!(o, "     -> {}: {}", kv.key, any(kv.value.as_ref()));
    }
}

fn attrs_inline(attrs: &[KeyValue]) -> String {
    attrs.iter().map(|kv| format!("{}={}", kv.key, any(kv.value.as_ref()))).collect::<Vec<_>>().join(" ")
}

/// An AnyValue as the Collector prints it: `Str(x)`, `Int(1)`, `Map({…})`, …
pub fn any(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => format!("Str({s})"),
        Some(Value::BoolValue(b)) => format!("Bool({b})"),
        Some(Value::IntValue(i)) => format!("Int({i})"),
        Some(Value::DoubleValue(d)) => format!("Double({d})"),
        Some(Value::BytesValue(b)) => format!("Bytes({})", hex::encode(b)),
        Some(Value::ArrayValue(a)) => {
            format!("Slice([{}])", a.values.iter().map(|x| any(Some(x))).collect::<Vec<_>>().join(", "))
        }
        Some(Value::KvlistValue(m)) => format!(
            "Map({{{}}})",
            m.values.iter().map(|kv| format!("{}: {}", kv.key, any(kv.value.as_ref()))).collect::<Vec<_>>().join(", ")
        ),
        Some(Value::StringValueStrindex(i)) => format!("StrIndex({i})"),
        None => "Empty()".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::KeyValueList;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use openwit_core::TenantId;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn traces() -> Payload {
        Payload::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: vec![kv("service.name", Value::StringValue("cart".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0xcd; 8],
                        name: "checkout".into(),
                        kind: 2,
                        status: Some(Status { code: 2, message: "boom".into() }),
                        attributes: vec![
                            kv("n", Value::IntValue(7)),
                            kv("m", Value::KvlistValue(KeyValueList { values: vec![kv("x", Value::BoolValue(true))] })),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[test]
    fn detailed_shows_every_field_like_the_collector() {
        let text = detailed(&traces());
        for expected in [
            "ResourceSpans #0",
            "     -> service.name: Str(cart)",
            "Span #0",
            "    Trace ID       : abababababababababababababababab",
            "    ID             : cdcdcdcdcdcdcdcd",
            "    Name           : checkout",
            "    Kind           : Server",
            "    Status code    : Error",
            "    Status message : boom",
            "     -> n: Int(7)",
            "     -> m: Map({x: Bool(true)})",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn summary_and_normal() {
        let b = Batch::new(TenantId::default_tenant(), traces());
        assert_eq!(summary(&b), "Traces: resource spans 1, spans 1");
        assert_eq!(
            normal(&b.payload).trim(),
            "checkout abababababababababababababababab cdcdcdcdcdcdcdcd n=Int(7) m=Map({x: Bool(true)})"
        );
    }
}
