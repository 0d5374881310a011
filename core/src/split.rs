//! Splitting and joining OTLP payloads at item boundaries, for batching.
//!
//! All three signals share one shape — resources hold scopes, scopes hold items — so one routine
//! takes the first `n` items of any of them. Metrics count data points, so a metric whose points
//! straddle the cut is itself split.

use crate::Payload;
use crate::batch::metric_point_count;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

impl Payload {
    /// Appends `other` (of the same signal) to this payload. Resources are not de-duplicated, as in
    /// the Collector's batch processor.
    pub fn append(&mut self, other: Payload) {
        match (self, other) {
            (Payload::Traces(a), Payload::Traces(b)) => a.resource_spans.extend(b.resource_spans),
            (Payload::Metrics(a), Payload::Metrics(b)) => a.resource_metrics.extend(b.resource_metrics),
            (Payload::Logs(a), Payload::Logs(b)) => a.resource_logs.extend(b.resource_logs),
            (a, b) => debug_assert!(false, "append of {} to {}", b.signal(), a.signal()),
        }
    }

    /// Keeps only the items whose index (in item order) `keep` accepts.
    pub fn retain_items(&mut self, keep: impl Fn(usize) -> bool) {
        let total = self.item_count();
        let mut rest = std::mem::replace(self, Payload::empty(self.signal()));
        let mut i = 0;
        while i < total {
            let k = keep(i);
            let run = (i..total).take_while(|j| keep(*j) == k).count();
            let piece = rest.split_front(run);
            if k {
                self.append(piece);
            }
            i += run;
        }
    }

    /// Removes and returns the first `n` items (all of them if there are fewer).
    pub fn split_front(&mut self, n: usize) -> Payload {
        match self {
            Payload::Traces(r) => {
                Payload::Traces(opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
                    resource_spans: take_front(&mut r.resource_spans, n, &TRACES),
                })
            }
            Payload::Metrics(r) => {
                Payload::Metrics(opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
                    resource_metrics: take_front(&mut r.resource_metrics, n, &METRICS),
                })
            }
            Payload::Logs(r) => {
                Payload::Logs(opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
                    resource_logs: take_front(&mut r.resource_logs, n, &LOGS),
                })
            }
        }
    }
}

/// How to reach into one signal's nesting.
struct Shape<R, S, I> {
    scopes: fn(&mut R) -> &mut Vec<S>,
    items: fn(&mut S) -> &mut Vec<I>,
    count: fn(&I) -> usize,
    /// Removes and returns the first `n` units of an item whose count exceeds `n`.
    split: fn(&mut I, usize) -> I,
}

const TRACES: Shape<ResourceSpans, ScopeSpans, Span> =
    Shape { scopes: |r| &mut r.scope_spans, items: |s| &mut s.spans, count: |_| 1, split: |_, _| unreachable_split() };
const LOGS: Shape<ResourceLogs, ScopeLogs, LogRecord> = Shape {
    scopes: |r| &mut r.scope_logs,
    items: |s| &mut s.log_records,
    count: |_| 1,
    split: |_, _| unreachable_split(),
};
const METRICS: Shape<ResourceMetrics, ScopeMetrics, Metric> = Shape {
    scopes: |r| &mut r.scope_metrics,
    items: |s| &mut s.metrics,
    count: |m| metric_point_count(m.data.as_ref()),
    split: split_metric,
};

// Items that count 1 always fit whole once n > 0, so they are never split.
fn unreachable_split<I: Default>() -> I {
    I::default()
}

/// Takes whole elements from the front of `v` while their counts fit in `left`.
fn take_whole<T>(v: &mut Vec<T>, left: &mut usize, count: impl Fn(&mut T) -> usize) -> Vec<T> {
    let mut whole = 0;
    for x in v.iter_mut() {
        let c = count(x);
        if c > *left {
            break;
        }
        *left -= c;
        whole += 1;
    }
    v.drain(..whole).collect()
}

/// A copy of `x` without its children (cheap: the children are moved out during the clone).
fn shell<X: Clone, C>(x: &mut X, children: fn(&mut X) -> &mut Vec<C>) -> X {
    let kids = std::mem::take(children(x));
    let copy = x.clone();
    *children(x) = kids;
    copy
}

fn take_front<R: Clone, S: Clone, I>(src: &mut Vec<R>, n: usize, sh: &Shape<R, S, I>) -> Vec<R> {
    let scope_count = |s: &mut S| (sh.items)(s).iter().map(sh.count).sum::<usize>();
    let mut left = n;
    let mut out = take_whole(src, &mut left, |r| (sh.scopes)(r).iter_mut().map(scope_count).sum());
    if left == 0 || src.is_empty() {
        return out;
    }
    let r = &mut src[0];
    let mut r_out = shell(r, sh.scopes);
    let scopes = (sh.scopes)(r);
    let mut out_scopes = take_whole(scopes, &mut left, scope_count);
    if left > 0 && !scopes.is_empty() {
        let s = &mut scopes[0];
        let mut s_out = shell(s, sh.items);
        let items = (sh.items)(s);
        let mut out_items = take_whole(items, &mut left, |i| (sh.count)(i));
        if left > 0 && !items.is_empty() {
            out_items.push((sh.split)(&mut items[0], left));
        }
        *(sh.items)(&mut s_out) = out_items;
        out_scopes.push(s_out);
    }
    *(sh.scopes)(&mut r_out) = out_scopes;
    out.push(r_out);
    out
}

fn split_metric(m: &mut Metric, n: usize) -> Metric {
    use opentelemetry_proto::tonic::metrics::v1::{ExponentialHistogram, Gauge, Histogram, Sum, Summary};
    fn front<T>(v: &mut Vec<T>, n: usize) -> Vec<T> {
        let rest = v.split_off(n.min(v.len()));
        std::mem::replace(v, rest)
    }
    let taken = match m.data.as_mut() {
        Some(Data::Gauge(g)) => Data::Gauge(Gauge { data_points: front(&mut g.data_points, n) }),
        Some(Data::Sum(s)) => Data::Sum(Sum {
            data_points: front(&mut s.data_points, n),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        }),
        Some(Data::Histogram(h)) => Data::Histogram(Histogram {
            data_points: front(&mut h.data_points, n),
            aggregation_temporality: h.aggregation_temporality,
        }),
        Some(Data::ExponentialHistogram(h)) => Data::ExponentialHistogram(ExponentialHistogram {
            data_points: front(&mut h.data_points, n),
            aggregation_temporality: h.aggregation_temporality,
        }),
        Some(Data::Summary(s)) => Data::Summary(Summary { data_points: front(&mut s.data_points, n) }),
        None => return m.clone(),
    };
    let data = m.data.take();
    let mut out = m.clone();
    m.data = data;
    out.data = Some(taken);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint};
    use proptest::prelude::*;

    fn traces(shape: &[Vec<usize>]) -> Payload {
        let mut id = 0u8;
        Payload::Traces(ExportTraceServiceRequest {
            resource_spans: shape
                .iter()
                .map(|scopes| ResourceSpans {
                    scope_spans: scopes
                        .iter()
                        .map(|&n| ScopeSpans {
                            spans: (0..n)
                                .map(|_| {
                                    id = id.wrapping_add(1);
                                    Span { span_id: vec![id], ..Default::default() }
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        })
    }

    fn span_ids(p: &Payload) -> Vec<u8> {
        let Payload::Traces(r) = p else { return vec![] };
        r.resource_spans.iter().flat_map(|rs| &rs.scope_spans).flat_map(|s| &s.spans).map(|s| s.span_id[0]).collect()
    }

    proptest! {
        #[test]
        fn split_then_append_preserves_items_and_order(
            shape in prop::collection::vec(prop::collection::vec(0usize..5, 0..4), 0..5),
            n in 0usize..30,
        ) {
            let original = traces(&shape);
            let mut rest = original.clone();
            let head = rest.split_front(n);
            let total = original.item_count();
            prop_assert_eq!(head.item_count(), n.min(total));
            prop_assert_eq!(rest.item_count(), total - n.min(total));
            let mut joined = head;
            joined.append(rest);
            prop_assert_eq!(span_ids(&joined), span_ids(&original));
        }
    }

    #[test]
    fn retain_items_keeps_exactly_the_chosen_items_in_order() {
        let mut p = traces(&[vec![3, 2], vec![4]]);
        let ids = span_ids(&p);
        p.retain_items(|i| i % 3 != 1);
        let expect: Vec<u8> = ids.iter().enumerate().filter(|(i, _)| i % 3 != 1).map(|(_, v)| *v).collect();
        assert_eq!(span_ids(&p), expect);
        p.retain_items(|_| false);
        assert_eq!(p.item_count(), 0);
    }

    #[test]
    fn splits_inside_a_metric_by_data_points() {
        let points =
            |k: usize| (0..k).map(|i| NumberDataPoint { time_unix_nano: i as u64, ..Default::default() }).collect();
        let mut p = Payload::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(Data::Gauge(Gauge { data_points: points(5) })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let head = p.split_front(3);
        assert_eq!(head.item_count(), 3);
        assert_eq!(p.item_count(), 2);
        let Payload::Metrics(h) = &head else { panic!() };
        let m = &h.resource_metrics[0].scope_metrics[0].metrics[0];
        assert_eq!(m.name, "m");
        let Some(Data::Gauge(g)) = &m.data else { panic!() };
        assert_eq!(g.data_points.iter().map(|d| d.time_unix_nano).collect::<Vec<_>>(), vec![0, 1, 2]);
    }
}
