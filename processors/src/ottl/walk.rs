//! Visits every item of a batch in one context, in item order, and records what a visitor decided for
//! it: the flags line up with the batch's items (spans, log records, metric data points), so a filter
//! can hand them to `Batch::drop_items`. A decision taken higher up (a resource, a scope, a metric)
//! counts for every item under it.

use super::paths::{Context, Item, MetricInfo, Own, Point, SpanInfo, metric_type};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use openwit_core::Payload;
use openwit_core::batch::metric_point_count;

/// Calls `f` on each item of `ctx` in `payload`; returns one flag per item of the payload.
pub fn visit(payload: &mut Payload, ctx: Context, mut f: impl FnMut(&mut Item) -> bool) -> Vec<bool> {
    let mut flags = Vec::new();
    let mut no_scope = InstrumentationScope::default();
    let mut decide = |item: &mut Item, n: usize, flags: &mut Vec<bool>| {
        let d = f(item);
        flags.extend(std::iter::repeat_n(d, n));
    };
    match payload {
        Payload::Traces(req) => {
            for rs in &mut req.resource_spans {
                let resource = rs.resource.get_or_insert_with(Default::default);
                if ctx == Context::Resource {
                    let n = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
                    decide(
                        &mut Item { resource, scope: &mut no_scope, own: Own::None, cache: Vec::new() },
                        n,
                        &mut flags,
                    );
                    continue;
                }
                for ss in &mut rs.scope_spans {
                    let scope = ss.scope.get_or_insert_with(Default::default);
                    if ctx == Context::Scope {
                        decide(
                            &mut Item { resource, scope, own: Own::None, cache: Vec::new() },
                            ss.spans.len(),
                            &mut flags,
                        );
                        continue;
                    }
                    for span in &mut ss.spans {
                        if ctx == Context::SpanEvent {
                            // Events are not items: a true decision removes the event (what a filter
                            // wants; transform's visitor always answers false).
                            let info = SpanInfo {
                                name: span.name.clone(),
                                kind: span.kind,
                                attributes: span.attributes.clone(),
                            };
                            let mut decision = Vec::with_capacity(1);
                            span.events.retain_mut(|ev| {
                                decision.clear();
                                let own = Own::Event(ev, info.clone());
                                decide(&mut Item { resource, scope, own, cache: Vec::new() }, 1, &mut decision);
                                !decision[0]
                            });
                            flags.push(false);
                        } else if ctx == Context::Span {
                            decide(
                                &mut Item { resource, scope, own: Own::Span(span), cache: Vec::new() },
                                1,
                                &mut flags,
                            );
                        } else {
                            flags.push(false);
                        }
                    }
                }
            }
        }
        Payload::Logs(req) => {
            for rl in &mut req.resource_logs {
                let resource = rl.resource.get_or_insert_with(Default::default);
                if ctx == Context::Resource {
                    let n = rl.scope_logs.iter().map(|s| s.log_records.len()).sum();
                    decide(
                        &mut Item { resource, scope: &mut no_scope, own: Own::None, cache: Vec::new() },
                        n,
                        &mut flags,
                    );
                    continue;
                }
                for sl in &mut rl.scope_logs {
                    let scope = sl.scope.get_or_insert_with(Default::default);
                    if ctx == Context::Scope {
                        let n = sl.log_records.len();
                        decide(&mut Item { resource, scope, own: Own::None, cache: Vec::new() }, n, &mut flags);
                        continue;
                    }
                    for log in &mut sl.log_records {
                        if ctx == Context::Log {
                            decide(&mut Item { resource, scope, own: Own::Log(log), cache: Vec::new() }, 1, &mut flags);
                        } else {
                            flags.push(false);
                        }
                    }
                }
            }
        }
        Payload::Metrics(req) => {
            for rm in &mut req.resource_metrics {
                let resource = rm.resource.get_or_insert_with(Default::default);
                if ctx == Context::Resource {
                    let n = rm
                        .scope_metrics
                        .iter()
                        .flat_map(|s| &s.metrics)
                        .map(|m| metric_point_count(m.data.as_ref()))
                        .sum();
                    decide(
                        &mut Item { resource, scope: &mut no_scope, own: Own::None, cache: Vec::new() },
                        n,
                        &mut flags,
                    );
                    continue;
                }
                for sm in &mut rm.scope_metrics {
                    let scope = sm.scope.get_or_insert_with(Default::default);
                    if ctx == Context::Scope {
                        let n = sm.metrics.iter().map(|m| metric_point_count(m.data.as_ref())).sum();
                        decide(&mut Item { resource, scope, own: Own::None, cache: Vec::new() }, n, &mut flags);
                        continue;
                    }
                    for metric in &mut sm.metrics {
                        let n = metric_point_count(metric.data.as_ref());
                        match ctx {
                            Context::Metric => {
                                decide(
                                    &mut Item { resource, scope, own: Own::Metric(metric), cache: Vec::new() },
                                    n,
                                    &mut flags,
                                );
                            }
                            Context::DataPoint => {
                                let info = MetricInfo {
                                    name: metric.name.clone(),
                                    description: metric.description.clone(),
                                    unit: metric.unit.clone(),
                                    kind: metric_type(metric),
                                };
                                let points: Vec<Point> = match &mut metric.data {
                                    Some(Data::Gauge(g)) => g.data_points.iter_mut().map(Point::Number).collect(),
                                    Some(Data::Sum(s)) => s.data_points.iter_mut().map(Point::Number).collect(),
                                    Some(Data::Histogram(h)) => {
                                        h.data_points.iter_mut().map(Point::Histogram).collect()
                                    }
                                    Some(Data::ExponentialHistogram(h)) => {
                                        h.data_points.iter_mut().map(Point::Exponential).collect()
                                    }
                                    Some(Data::Summary(s)) => s.data_points.iter_mut().map(Point::Summary).collect(),
                                    None => Vec::new(),
                                };
                                for p in points {
                                    let own = Own::Point(p, info.clone());
                                    decide(&mut Item { resource, scope, own, cache: Vec::new() }, 1, &mut flags);
                                }
                            }
                            _ => flags.extend(std::iter::repeat_n(false, n)),
                        }
                    }
                }
            }
        }
    }
    flags
}
