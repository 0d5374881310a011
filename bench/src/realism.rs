//! How realistic the generated data is: distinct values, request sizes, and how well it compresses
//! next to a uniform-random and an all-identical batch of the same shape.

use crate::data::Generator;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Serialize)]
pub struct Realism {
    pub spans: usize,
    pub services: usize,
    pub span_names: usize,
    pub traces: usize,
    /// Distinct values of the most telling attribute keys.
    pub distinct_values: BTreeMap<String, usize>,
    pub error_span_share: f64,
    pub span_duration_ms_p50: f64,
    pub span_duration_ms_p99: f64,
    pub request_bytes: usize,
    pub bytes_per_span: f64,
    /// zstd level 3, compressed / raw.
    pub zstd_ratio_realistic: f64,
    pub zstd_ratio_uniform_random: f64,
    pub zstd_ratio_all_identical: f64,
    pub log_bodies_distinct_share: f64,
}

fn spans(r: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    r.resource_spans.iter().flat_map(|x| &x.scope_spans).flat_map(|s| &s.spans)
}

fn ratio(bytes: &[u8]) -> f64 {
    zstd::encode_all(bytes, 3).map(|c| c.len() as f64 / bytes.len() as f64).unwrap_or(f64::NAN)
}

/// The same structure with every string, id, number and time replaced by random values.
fn randomized(mut r: ExportTraceServiceRequest, seed: u64) -> ExportTraceServiceRequest {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s =
        |len: usize, rng: &mut ChaCha8Rng| (0..len).map(|_| rng.random_range(b'!'..=b'~') as char).collect::<String>();
    for rs in &mut r.resource_spans {
        for kv in rs.resource.iter_mut().flat_map(|x| &mut x.attributes) {
            if let Some(Value::StringValue(v)) = kv.value.as_mut().and_then(|v| v.value.as_mut()) {
                *v = s(v.len(), &mut rng);
            }
        }
        for span in rs.scope_spans.iter_mut().flat_map(|x| &mut x.spans) {
            span.name = s(span.name.len(), &mut rng);
            span.trace_id = (0..16).map(|_| rng.random()).collect();
            span.span_id = (0..8).map(|_| rng.random()).collect();
            span.start_time_unix_nano = rng.random();
            span.end_time_unix_nano = rng.random();
            for kv in &mut span.attributes {
                match kv.value.as_mut().and_then(|v| v.value.as_mut()) {
                    Some(Value::StringValue(v)) => *v = s(v.len(), &mut rng),
                    Some(Value::IntValue(i)) => *i = rng.random(),
                    _ => {}
                }
            }
        }
    }
    r
}

/// The first span repeated.
fn identical(r: &ExportTraceServiceRequest, n: usize) -> ExportTraceServiceRequest {
    let mut rs = r.resource_spans[0].clone();
    let span = rs.scope_spans[0].spans[0].clone();
    rs.scope_spans.truncate(1);
    rs.scope_spans[0].spans = vec![span; n];
    ExportTraceServiceRequest { resource_spans: vec![rs] }
}

/// Measures a batch of `n` spans (and as many log records) from `seed`.
pub fn measure(seed: u64, n: usize) -> Realism {
    let mut g = Generator::new(seed);
    let req = g.traces(n);
    let logs = g.logs(n);
    let all: Vec<&Span> = spans(&req).collect();
    let mut distinct: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for span in &all {
        for kv in &span.attributes {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                _ => continue,
            };
            distinct.entry(kv.key.clone()).or_default().insert(v);
        }
    }
    let keys = [
        "http.route",
        "url.path",
        "http.response.status_code",
        "enduser.id",
        "client.address",
        "db.query.text",
        "user_agent.original",
    ];
    let distinct_values = keys.iter().map(|k| (k.to_string(), distinct.get(*k).map_or(0, HashSet::len))).collect();
    let mut durations: Vec<f64> =
        all.iter().map(|s| (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6).collect();
    durations.sort_by(f64::total_cmp);
    let pct = |p: f64| durations[((durations.len() - 1) as f64 * p) as usize];
    let services: HashSet<String> = req
        .resource_spans
        .iter()
        .filter_map(|r| r.resource.as_ref())
        .flat_map(|r| &r.attributes)
        .filter(|kv| kv.key == "service.name")
        .filter_map(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let bodies: HashSet<String> = logs
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .filter_map(|l| match l.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let raw = req.encode_to_vec();
    Realism {
        spans: all.len(),
        services: services.len(),
        span_names: all.iter().map(|s| &s.name).collect::<HashSet<_>>().len(),
        traces: all.iter().map(|s| &s.trace_id).collect::<HashSet<_>>().len(),
        distinct_values,
        error_span_share: all.iter().filter(|s| s.status.as_ref().is_some_and(|st| st.code == 2)).count() as f64
            / all.len() as f64,
        span_duration_ms_p50: pct(0.5),
        span_duration_ms_p99: pct(0.99),
        request_bytes: raw.len(),
        bytes_per_span: raw.len() as f64 / all.len() as f64,
        zstd_ratio_realistic: ratio(&raw),
        zstd_ratio_uniform_random: ratio(&randomized(req.clone(), seed).encode_to_vec()),
        zstd_ratio_all_identical: ratio(&identical(&req, all.len()).encode_to_vec()),
        log_bodies_distinct_share: bodies.len() as f64 / n as f64,
    }
}

impl Realism {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("| measure | value |\n|---|---|\n");
        let row = |s: &mut String, k: &str, v: String| s.push_str(&format!("| {k} | {v} |\n"));
        row(&mut s, "spans in the batch", self.spans.to_string());
        row(&mut s, "traces", self.traces.to_string());
        row(&mut s, "services", self.services.to_string());
        row(&mut s, "distinct span names", self.span_names.to_string());
        for (k, v) in &self.distinct_values {
            row(&mut s, &format!("distinct `{k}`"), v.to_string());
        }
        row(&mut s, "spans with error status", format!("{:.1}%", self.error_span_share * 100.0));
        row(
            &mut s,
            "span duration p50 / p99",
            format!("{:.1} ms / {:.1} ms", self.span_duration_ms_p50, self.span_duration_ms_p99),
        );
        row(
            &mut s,
            "request size (protobuf)",
            format!("{} bytes ({:.0} bytes/span)", self.request_bytes, self.bytes_per_span),
        );
        row(&mut s, "distinct log bodies", format!("{:.1}% of records", self.log_bodies_distinct_share * 100.0));
        row(&mut s, "zstd-3 size ratio: realistic", format!("{:.3}", self.zstd_ratio_realistic));
        row(&mut s, "zstd-3 size ratio: uniform random, same shape", format!("{:.3}", self.zstd_ratio_uniform_random));
        row(&mut s, "zstd-3 size ratio: one span repeated", format!("{:.4}", self.zstd_ratio_all_identical));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_data_sits_between_random_and_identical() {
        let r = measure(42, 5000);
        assert_eq!(r.spans, 5000);
        assert!(r.services >= 10, "{r:?}");
        assert!(r.distinct_values["enduser.id"] > 500, "{r:?}");
        assert!(r.distinct_values["http.route"] >= 20, "{r:?}");
        assert!(r.error_span_share > 0.003 && r.error_span_share < 0.05, "{r:?}");
        assert!(r.span_duration_ms_p99 > 5.0 * r.span_duration_ms_p50, "durations should be long-tailed: {r:?}");
        assert!(r.zstd_ratio_all_identical < r.zstd_ratio_realistic, "{r:?}");
        assert!(r.zstd_ratio_realistic < r.zstd_ratio_uniform_random, "{r:?}");
        assert!(r.log_bodies_distinct_share > 0.5, "{r:?}");
    }
}
