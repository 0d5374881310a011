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
//! A batch that already has its Arrow rows (after `batch`, in a pipeline storing Parquet) is evaluated
//! a column at a time when every condition of its context has a column form (`ottl::columns`), and
//! keeps its rows, filtered, so the exporter does not convert again; other batches are evaluated per
//! item. Both give the same answer. Counted in
//! `openwit_processor_filter_evaluated_items_total{processor,evaluation="columns"|"items"}`.
//!
//! `error_mode`: `propagate` (the Collector's default: a condition that fails on an item fails the
//! whole batch, which is then kept in the WAL and marked failed with the error), `ignore` (the condition
//! counts as false and the error is logged), `silent` (the same, not logged).

use crate::ottl::ErrorMode;
use crate::ottl::columns::ColumnCondition;
use crate::ottl::paths::Context;
use crate::ottl::program::{Condition, condition};
use crate::ottl::walk::visit;
use arrow::array::BooleanArray;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use openwit_core::batch::Columnar;
use openwit_core::factory::{ComponentConfig, keeping_columnar, typed};
use openwit_core::telemetry::{Counter, SignalCounters, dropped_items, labels};
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
    /// The log and span conditions for Arrow rows, when every one of them has a column form (and, for
    /// spans, no `spanevent` condition changes the events the rows hold).
    columns_log: Option<Vec<ColumnCondition>>,
    columns_span: Option<Vec<ColumnCondition>>,
}

fn for_columns(conds: &[Condition], ctx: Context) -> Option<Vec<ColumnCondition>> {
    conds.iter().map(|c| ColumnCondition::compile(c, ctx)).collect()
}

fn compile_all(list: &[String], ctx: Context, path: &str) -> Result<Vec<Condition>, ConfigIssue> {
    list.iter()
        .enumerate()
        .map(|(i, text)| condition(text, ctx).map_err(|e| ConfigIssue::new(format!("{path}[{i}]"), e)))
        .collect()
}

impl FilterConfig {
    fn compile(&self) -> Result<Conditions, ConfigIssue> {
        let span = compile_all(&self.traces.span, Context::Span, "traces.span")?;
        let spanevent = compile_all(&self.traces.spanevent, Context::SpanEvent, "traces.spanevent")?;
        let log = compile_all(&self.logs.log_record, Context::Log, "logs.log_record")?;
        Ok(Conditions {
            columns_log: for_columns(&log, Context::Log),
            columns_span: if spanevent.is_empty() { for_columns(&span, Context::Span) } else { None },
            span,
            spanevent,
            metric: compile_all(&self.metrics.metric, Context::Metric, "metrics.metric")?,
            datapoint: compile_all(&self.metrics.datapoint, Context::DataPoint, "metrics.datapoint")?,
            log,
        })
    }
}

impl ComponentConfig for FilterConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        self.compile().map(|_| ())
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Processor>> {
    keeping_columnar(typed::<FilterConfig, dyn Processor>(
        "filter",
        &[],
        &Signal::ALL,
        "drops spans, metrics, data points or log records that match OTTL conditions",
        |id: &ComponentId, cfg: &FilterConfig, env: &BuildEnv| {
            let conditions = cfg.compile().map_err(|e| anyhow::anyhow!("{}: {}", e.path, e.message))?;
            let evaluated = env.telemetry.counters(
                "openwit_processor_filter_evaluated_items",
                "Items a filter evaluated, a column at a time over Arrow rows or per item",
            );
            let by = |how: &str| {
                evaluated.get_or_create(&labels(&[("processor", &id.to_string()), ("evaluation", how)])).clone()
            };
            Ok(Box::new(FilterProcessor {
                id: id.to_string(),
                conditions,
                error_mode: cfg.error_mode,
                dropped: dropped_items(&env.telemetry, &id.to_string()),
                by_columns: by("columns"),
                by_items: by("items"),
            }))
        },
    ))
}

struct FilterProcessor {
    id: String,
    conditions: Conditions,
    error_mode: ErrorMode,
    dropped: SignalCounters,
    by_columns: Counter,
    by_items: Counter,
}

impl FilterProcessor {
    /// The drop flags and the rows that remain, evaluated over the batch's Arrow rows; `None` when the
    /// batch has none yet or a condition has no column form (then it is evaluated per item).
    fn by_columns(&self, batch: &Batch) -> Option<(Vec<bool>, RecordBatch)> {
        let conds = match batch.signal() {
            Signal::Logs => self.conditions.columns_log.as_ref()?,
            Signal::Traces => self.conditions.columns_span.as_ref()?,
            Signal::Metrics => return None,
        };
        if !batch.is_converted() {
            return None;
        }
        let rows = batch.columnar().ok()?;
        let mut drop = vec![false; rows.num_rows()];
        for c in conds {
            match c.eval(rows) {
                Ok(flags) => drop.iter_mut().zip(flags).for_each(|(d, f)| *d |= f),
                Err(e) => {
                    tracing::warn!(processor = %self.id, "evaluating per item: the Arrow rows do not fit: {e}");
                    return None;
                }
            }
        }
        let keep = BooleanArray::from(drop.iter().map(|d| !d).collect::<Vec<_>>());
        match arrow::compute::filter_record_batch(rows, &keep) {
            Ok(kept) => Some((drop, kept)),
            Err(e) => {
                tracing::warn!(processor = %self.id, "evaluating per item: cannot filter the Arrow rows: {e}");
                None
            }
        }
    }

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
            if let Some((drop, kept)) = self.by_columns(&batch) {
                self.by_columns.inc_by(drop.len() as u64);
                if drop.iter().any(|d| *d) {
                    let keep: Vec<bool> = drop.iter().map(|d| !d).collect();
                    batch.drop_items(&keep, &self.dropped);
                    // Row i of `kept` is item i of what remains: the exporter reads it as is.
                    batch.columnar = Columnar::ready(kept);
                }
                if !crate::pass_on(batch, output).await {
                    return;
                }
                continue;
            }
            self.by_items.inc_by(batch.item_count() as u64);
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
            by_columns: Counter::default(),
            by_items: Counter::default(),
        }
    }

    /// Runs `p` over `batches`; returns what came out and the processor (for its counters).
    async fn run(mut p: FilterProcessor, batches: Vec<Batch>) -> (Vec<Batch>, FilterProcessor) {
        let (in_tx, mut in_rx) = mpsc::channel(10);
        let (out_tx, mut out_rx) = mpsc::channel(10);
        for b in batches {
            in_tx.send(b).await.unwrap();
        }
        drop(in_tx);
        p.run(&mut in_rx, &Fanout::new(vec![out_tx])).await;
        let mut out = Vec::new();
        while let Ok(b) = out_rx.try_recv() {
            out.push(b);
        }
        (out, p)
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

    #[tokio::test]
    async fn batches_with_arrow_rows_are_filtered_a_column_at_a_time_and_keep_their_rows() {
        let p = processor(
            r#"{logs: {log_record: ['severity_number < SEVERITY_NUMBER_WARN', 'IsMatch(body, "^health")']}}"#,
        );
        let converted = logs(&[("a", 9), ("health ok", 17), ("b", 17), ("c", 13)]);
        converted.columnar().unwrap();
        let plain = logs(&[("a", 9), ("b", 17)]);
        let (out, p) = run(p, vec![converted, plain]).await;
        assert_eq!((p.by_columns.get(), p.by_items.get()), (4, 2), "the converted batch went by columns");
        assert!(out[0].is_converted(), "the kept rows go on with the batch: no second conversion");
        let rows = out[0].columnar().unwrap().clone();
        let fresh = openwit_core::columnar::to_record_batch("t", &out[0].payload).unwrap();
        assert_eq!(rows, fresh, "the rows are exactly the items that remain");
        let bodies = |b: &Batch| -> Vec<String> {
            let Payload::Logs(r) = &*b.payload else { unreachable!() };
            r.resource_logs[0].scope_logs[0]
                .log_records
                .iter()
                .map(|l| crate::value::as_string(l.body.as_ref().unwrap()))
                .collect()
        };
        assert_eq!(bodies(&out[0]), ["b", "c"]);
        assert_eq!(bodies(&out[1]), ["b"], "the other went per item, with the same answer");
    }

    #[tokio::test]
    async fn a_condition_without_a_column_form_sends_every_batch_per_item() {
        let p = processor(r#"{logs: {log_record: ['severity_number < 10', 'Len(body) > 5']}}"#);
        let b = logs(&[("a", 9), ("health ok", 17), ("b", 17)]);
        b.columnar().unwrap();
        let (out, p) = run(p, vec![b]).await;
        assert_eq!((p.by_columns.get(), p.by_items.get()), (0, 3));
        assert_eq!(out[0].item_count(), 1);
        assert!(!out[0].is_converted(), "rows made before the change are not passed on as if current");
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
        let Payload::Traces(r) = &*b.payload else { unreachable!() };
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
