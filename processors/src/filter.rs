//! The `filter` processor, with the Collector's OTTL form: an item is dropped when any of its context's
//! conditions is true (a span event matching a `spanevent` condition is removed from its span). Dropped
//! items are settled `Verdict::Dropped` and counted
//! (`openwit_processor_dropped_*_total{processor}`); the rest go on.
//!
//! ```yaml
//! filter:
//!   error_mode: ignore
//!   traces:  {span: ['attributes["http.route"] == "/health"']}
//!   metrics: {metric: ['name == "x"'], datapoint: ['value_double < 0']}
//!   logs:    {log_record: ['severity_number < SEVERITY_NUMBER_WARN']}
//! ```
//!
//! `error_mode`: `propagate` (the Collector's default: a condition that fails on an item fails the
//! whole batch, which is then kept in the WAL and marked failed with the error), `ignore` (the condition
//! counts as false and the error is logged), `silent` (the same, not logged).

use crate::ottl::ErrorMode;
use crate::ottl::paths::Context;
use crate::ottl::program::{Condition, condition};
use crate::ottl::walk::visit;
use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::telemetry::{SignalCounters, dropped_items};
use openwit_core::{Batch, BuildEnv, ComponentId, ConfigIssue, Factory, Fanout, Processor, Signal, Verdict};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    pub error_mode: ErrorMode,
    pub traces: TraceConditions,
    pub metrics: MetricConditions,
    pub logs: LogConditions,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConditions {
    pub span: Vec<String>,
    pub spanevent: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricConditions {
    pub metric: Vec<String>,
    pub datapoint: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConditions {
    pub log_record: Vec<String>,
}

/// The compiled conditions, per context.
#[derive(Clone, Debug, Default)]
struct Conditions {
    span: Vec<Condition>,
    /// Matching events are removed from their span (events are not items: nothing to settle).
    spanevent: Vec<Condition>,
    metric: Vec<Condition>,
    datapoint: Vec<Condition>,
    log: Vec<Condition>,
}

fn compile_all(list: &[String], ctx: Context, path: &str) -> Result<Vec<Condition>, ConfigIssue> {
    list.iter()
        .enumerate()
        .map(|(i, text)| condition(text, ctx).map_err(|e| ConfigIssue::new(format!("{path}[{i}]"), e)))
        .collect()
}

impl FilterConfig {
    fn compile(&self) -> Result<Conditions, ConfigIssue> {
        Ok(Conditions {
            span: compile_all(&self.traces.span, Context::Span, "traces.span")?,
            spanevent: compile_all(&self.traces.spanevent, Context::SpanEvent, "traces.spanevent")?,
            metric: compile_all(&self.metrics.metric, Context::Metric, "metrics.metric")?,
            datapoint: compile_all(&self.metrics.datapoint, Context::DataPoint, "metrics.datapoint")?,
            log: compile_all(&self.logs.log_record, Context::Log, "logs.log_record")?,
        })
    }
}

impl ComponentConfig for FilterConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        self.compile().map(|_| ())
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Processor>> {
    typed::<FilterConfig, dyn Processor>(
        "filter",
        &[],
        &Signal::ALL,
        "drops spans, metrics, data points or log records that match OTTL conditions",
        |id: &ComponentId, cfg: &FilterConfig, env: &BuildEnv| {
            let conditions = cfg.compile().map_err(|e| anyhow::anyhow!("{}: {}", e.path, e.message))?;
            Ok(Box::new(FilterProcessor {
                id: id.to_string(),
                conditions,
                error_mode: cfg.error_mode,
                dropped: dropped_items(&env.telemetry, &id.to_string()),
            }))
        },
    )
}

struct FilterProcessor {
    id: String,
    conditions: Conditions,
    error_mode: ErrorMode,
    dropped: SignalCounters,
}

impl FilterProcessor {
    /// Which items of `batch` match (to drop); `Err` with the first error under `propagate`.
    fn matches(&self, batch: &mut Batch) -> Result<Vec<bool>, String> {
        let mut first_error = None;
        let mut any = |payload: &mut openwit_core::Payload, ctx: Context, conds: &[Condition]| -> Vec<bool> {
            if conds.is_empty() {
                return Vec::new();
            }
            visit(payload, ctx, |item| {
                conds.iter().any(|c| match c.eval(item) {
                    Ok(b) => b,
                    Err(e) => {
                        if first_error.is_none() {
                            first_error = Some(e);
                        }
                        false
                    }
                })
            })
        };
        let c = &self.conditions;
        let flags = match batch.signal() {
            Signal::Traces => {
                any(&mut batch.payload, Context::SpanEvent, &c.spanevent);
                any(&mut batch.payload, Context::Span, &c.span)
            }
            Signal::Logs => any(&mut batch.payload, Context::Log, &c.log),
            Signal::Metrics => {
                let by_metric = any(&mut batch.payload, Context::Metric, &c.metric);
                let by_point = any(&mut batch.payload, Context::DataPoint, &c.datapoint);
                if by_metric.is_empty() {
                    by_point
                } else if by_point.is_empty() {
                    by_metric
                } else {
                    by_metric.iter().zip(&by_point).map(|(a, b)| *a || *b).collect()
                }
            }
        };
        match (first_error, self.error_mode) {
            (Some(e), ErrorMode::Propagate) => Err(e),
            (Some(e), ErrorMode::Ignore) => {
                tracing::warn!(processor = %self.id, "a condition failed (error_mode: ignore, counted as false): {e}");
                Ok(flags)
            }
            _ => Ok(flags),
        }
    }
}

#[async_trait]
impl Processor for FilterProcessor {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, output: &Fanout) {
        while let Some(mut batch) = input.recv().await {
            match self.matches(&mut batch) {
                Ok(drop) if drop.iter().any(|d| *d) => {
                    let keep: Vec<bool> = drop.iter().map(|d| !d).collect();
                    batch.drop_items(&keep, &self.dropped);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(processor = %self.id, "a condition failed (error_mode: propagate); the batch is marked failed: {e}");
                    batch.settle(&Verdict::Permanent(format!("processor {}: {e}", self.id)));
                    continue;
                }
            }
            if !crate::pass_on(batch, output).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use openwit_core::{Payload, TenantId};

    fn cfg(yaml: &str) -> FilterConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn processor(yaml: &str) -> FilterProcessor {
        let c = cfg(yaml);
        FilterProcessor {
            id: "filter".into(),
            conditions: c.compile().unwrap(),
            error_mode: c.error_mode,
            dropped: dropped_items(&Default::default(), "filter"),
        }
    }

    fn logs(records: &[(&str, i32)]) -> Batch {
        let log_records = records
            .iter()
            .map(|(body, sev)| LogRecord {
                body: Some(AnyValue { value: Some(Value::StringValue(body.to_string())) }),
                severity_number: *sev,
                attributes: vec![KeyValue {
                    key: "n".into(),
                    value: Some(AnyValue { value: Some(Value::IntValue(i64::from(*sev))) }),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        Batch::new(
            TenantId::new("t").unwrap(),
            Payload::Logs(ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
                    ..Default::default()
                }],
            }),
        )
    }

    #[test]
    fn any_condition_true_drops_the_item() {
        let p = processor(
            r#"{logs: {log_record: ['severity_number < SEVERITY_NUMBER_WARN', 'IsMatch(body, "^health")']}}"#,
        );
        let mut b = logs(&[("a", 9), ("health ok", 17), ("b", 17), ("c", 13)]);
        assert_eq!(p.matches(&mut b).unwrap(), [true, true, false, false]);
    }

    #[test]
    fn span_events_matching_are_removed_and_spans_stay() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};
        let p = processor(r#"{traces: {spanevent: ['name == "cache.miss" and span.name == "GET"']}}"#);
        let ev = |n: &str| Event { name: n.into(), ..Default::default() };
        let span = |n: &str| Span { name: n.into(), events: vec![ev("cache.miss"), ev("retry")], ..Default::default() };
        let mut b = Batch::new(
            TenantId::new("t").unwrap(),
            Payload::Traces(ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans { spans: vec![span("GET"), span("POST")], ..Default::default() }],
                    ..Default::default()
                }],
            }),
        );
        assert!(!p.matches(&mut b).unwrap().contains(&true), "no span is dropped");
        let Payload::Traces(r) = &b.payload else { unreachable!() };
        let events: Vec<Vec<&str>> = r.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.events.iter().map(|e| e.name.as_str()).collect())
            .collect();
        assert_eq!(events, [vec!["retry"], vec!["cache.miss", "retry"]]);
    }

    #[test]
    fn metrics_by_metric_and_by_point() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
        };
        let gauge = |name: &str, values: &[f64]| Metric {
            name: name.into(),
            unit: "s".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: values
                    .iter()
                    .map(|v| NumberDataPoint {
                        value: Some(number_data_point::Value::AsDouble(*v)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        };
        let p = processor(
            r#"{metrics: {metric: ['name == "debug.queue"'], datapoint: ['value_double < 0.0 and metric.unit == "s"']}}"#,
        );
        let mut b = Batch::new(
            TenantId::new("t").unwrap(),
            Payload::Metrics(ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![gauge("latency", &[1.0, -1.0, 2.0]), gauge("debug.queue", &[5.0, 6.0])],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }),
        );
        assert_eq!(p.matches(&mut b).unwrap(), [false, true, false, true, true]);
    }

    #[test]
    fn error_modes() {
        // A math error on every item: `1 / 0`.
        let mut b = logs(&[("a", 9)]);
        let p = processor("{logs: {log_record: ['attributes[\"n\"] / 0 > 1']}}");
        assert!(p.matches(&mut b).unwrap_err().contains("division by zero"));
        let p = processor("{error_mode: ignore, logs: {log_record: ['attributes[\"n\"] / 0 > 1', 'body == \"a\"']}}");
        assert_eq!(
            p.matches(&mut b).unwrap(),
            [true],
            "the failing condition counts as false, the next one still runs"
        );
    }

    #[test]
    fn bad_conditions_are_refused_at_start_with_their_place() {
        for (yaml, path, msg) in [
            ("{traces: {span: ['name == \"x\"', 'Frob(name)']}}", "traces.span[1]", "unknown converter Frob"),
            ("{logs: {log_record: ['kind == 1']}}", "logs.log_record[0]", "kind is not a path of the log context"),
            ("{metrics: {datapoint: ['value_double <']}}", "metrics.datapoint[0]", "expected"),
            ("{traces: {spanevent: ['kind == 1']}}", "traces.spanevent[0]", "not a path of the spanevent context"),
            ("{traces: {span: ['IsMatch(name, \"(\")']}}", "traces.span[0]", "not a valid regular expression"),
        ] {
            let e = cfg(yaml).validate().unwrap_err();
            assert_eq!(e.path, path, "{yaml}: {e:?}");
            assert!(e.message.contains(msg), "{yaml}: {e:?}");
        }
        assert!(
            serde_yaml_ng::from_str::<FilterConfig>("{spans: {include: {}}}").is_err(),
            "the legacy form is refused"
        );
    }
}
