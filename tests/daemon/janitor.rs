//! The janitor through the real binary: compaction merges many small files into few with every answer
//! unchanged, through crashes at each step; retention retires exactly the expired files.

use crate::harness::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as AnyKind};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// 2026-03-01T10:00:00Z in nanoseconds: an hour long closed.
pub const T0: u64 = 1_772_359_200_000_000_000;
const MS: u64 = 1_000_000;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(AnyKind::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn resource(i: u64) -> Option<Resource> {
    Some(Resource { attributes: vec![kv("service.name", &format!("svc-{}", i % 3))], ..Default::default() })
}

/// Request `i` of a dataset, `n` items per signal, at `base` + a few ms each.
pub fn requests(
    base: u64,
    i: u64,
    n: u64,
) -> (ExportTraceServiceRequest, ExportLogsServiceRequest, ExportMetricsServiceRequest) {
    let at = |j: u64| base + (i * n + j) * MS;
    let spans = (0..n)
        .map(|j| Span {
            trace_id: (i * 1000 + j / 4).to_be_bytes().repeat(2),
            span_id: (i * 1000 + j).to_be_bytes().to_vec(),
            name: format!("GET /item/{}", j % 5),
            start_time_unix_nano: at(j),
            end_time_unix_nano: at(j) + 3 * MS,
            attributes: vec![kv("http.route", &format!("/item/{}", j % 5))],
            ..Default::default()
        })
        .collect();
    let records = (0..n)
        .map(|j| LogRecord {
            time_unix_nano: at(j),
            severity_text: if j % 7 == 0 { "ERROR" } else { "INFO" }.into(),
            body: Some(AnyValue { value: Some(AnyKind::StringValue(format!("request {i}-{j} took {} ms", j * 3))) }),
            ..Default::default()
        })
        .collect();
    let points = (0..n)
        .map(|j| NumberDataPoint {
            time_unix_nano: at(j),
            attributes: vec![kv("host", &format!("h{}", j % 4))],
            value: Some(number_data_point::Value::AsDouble((i * n + j) as f64 / 8.0)),
            ..Default::default()
        })
        .collect();
    (
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(i),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        },
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(i),
                scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                ..Default::default()
            }],
        },
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(i),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "queue.depth".into(),
                        data: Some(Data::Gauge(Gauge { data_points: points })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        },
    )
}

async fn post_as(d: &Daemon, tenant: &str, path: &str, body: Vec<u8>) {
    assert_eq!(d.post_protobuf_as(tenant, path, body).await.status(), 200, "{path}");
}

/// Sends `count` requests of each signal, `pause` apart (each rotation makes a file of them).
async fn send(d: &Daemon, tenant: &str, base: u64, count: u64, pause: Duration) {
    for i in 0..count {
        let (t, l, m) = requests(base, i, 20);
        post_as(d, tenant, "/v1/traces", t.encode_to_vec()).await;
        post_as(d, tenant, "/v1/logs", l.encode_to_vec()).await;
        post_as(d, tenant, "/v1/metrics", m.encode_to_vec()).await;
        tokio::time::sleep(pause).await;
    }
}

fn config(api: u16, extra: &str) -> String {
    format!(
        "
processors:
  batch:
    timeout: 10ms
exporters:
  parquet:
    rotation:
      max_age: 100ms
    index:
      repair_interval: 200ms
{extra}
extensions:
  query:
    endpoint: 127.0.0.1:{api}
service:
  extensions: [health_check, query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
"
    )
}

/// Every row of every table, in a fixed order: what must not change.
async fn answers(api: u16) -> Value {
    json!({
        "spans": sql_rows(api, "SELECT * FROM spans ORDER BY time, span_id").await,
        "logs": sql_rows(api, "SELECT * FROM logs ORDER BY time, body").await,
        "metrics": sql_rows(api, "SELECT * FROM metrics ORDER BY time, attributes['host']").await,
        "search": sql_rows(api, "SELECT count(*) AS n FROM logs WHERE text_match(body, 'took AND \"0 ms\"')").await,
    })
}

/// Files per state (`stable`, `retired`, …).
async fn states(api: u16) -> Value {
    sql_rows(api, "SELECT state, count(*) AS n FROM files GROUP BY state ORDER BY state").await
}

async fn until(api: u16, what: &str, sql: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = sql_rows(api, sql).await;
        if done(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}: {got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count(v: &Value) -> i64 {
    v[0]["n"].as_i64().unwrap_or(0)
}

/// Objects under the store (Parquet files and their indexes), by extension.
fn objects(dir: &Path) -> (usize, usize) {
    let storage = dir.join("data/storage");
    (files_under(&storage, "parquet").len(), files_under(&storage, "tantivy").len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_small_files_with_every_answer_unchanged_through_crashes() {
    let api = free_port();
    let off = config(api, "    compaction:\n      enabled: false");
    let mut d = Daemon::start_on_base(&[&off]).await;
    send(&d, "default", T0, 12, Duration::from_millis(150)).await;
    let all = 12 * 20;
    let stable = "SELECT count(*) AS n FROM files WHERE state = 'stable'";
    let rows =
        "SELECT (SELECT count(*) FROM spans) + (SELECT count(*) FROM logs) + (SELECT count(*) FROM metrics) AS n";
    until(api, "every row stored", rows, |v| count(v) == 3 * all).await;
    until(api, "every file stable", "SELECT count(*) AS n FROM files WHERE state != 'stable'", |v| count(v) == 0).await;
    let before_files = count(&sql_rows(api, stable).await);
    assert!(before_files >= 30, "{before_files} small files");
    until(api, "indexed", "SELECT count(*) AS n FROM batches WHERE NOT index_pip AND signal != 'metrics'", |v| {
        count(v) == 0
    })
    .await;
    let before = answers(api).await;
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(30));
    let dir = d.dir.clone();

    // Compaction on, crashing (as kill -9 would) after the first output is uploaded, then after the first
    // swap; then left to finish.
    let on = config(
        api,
        "    compaction:\n      interval: 300ms\n      min_age: 0s\n      grace_period: 1s\n      target_megabytes: 64",
    );
    for step in ["compaction-uploaded", "compaction-swapped"] {
        let env = [
            ("OPENWIT_TEST_COMPONENTS".to_string(), "1".to_string()),
            ("OPENWIT_TEST_CRASH_AT".to_string(), step.to_string()),
        ];
        let mut d = Daemon::spawn_sources_env(&dir, &[BASE, &on], &env);
        let status = d.wait_exit(Duration::from_secs(60));
        assert!(!status.success(), "aborted at {step}: {status:?}");
        assert!(d.logs().contains(&format!("aborting at {step}")), "{}", d.logs());
    }
    let d = Daemon::spawn_sources_env(&dir, &[BASE, &on], &[]);
    d.wait_ready().await;
    // Few files, nothing half-done, every replaced object deleted, every output indexed.
    let done = until(api, "compacted", "SELECT state, count(*) AS n FROM files GROUP BY state", |v| {
        v.as_array().is_some_and(|a| a.len() == 1 && a[0]["state"] == "stable" && a[0]["n"].as_i64() == Some(3))
    })
    .await;
    assert_eq!(done, json!([{"state": "stable", "n": 3}]), "one file per table");
    assert!(before_files >= 10 * 3, "the file count fell {before_files} → 3");
    let deadline = Instant::now() + Duration::from_secs(30);
    while objects(&dir) != (3, 2) {
        assert!(Instant::now() < deadline, "objects left in the store: {:?}", objects(&dir));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answers(api).await, before, "every answer is the same");
    let plan = sql_rows(api, "EXPLAIN ANALYZE SELECT count(*) FROM logs WHERE text_match(body, 'took')").await;
    assert_eq!(plan_counter(&plan.to_string(), "index_files_without_usable_index"), 0, "{plan}");
    // Logs were compacted by the run that crashed after its swap; spans and metrics by this one.
    let done = "openwit_parquet_compactions_total{exporter=\"parquet\",outcome=\"done\"}";
    assert_eq!(d.metric_sum(done).await, 2.0, "{}", d.metrics_text().await);
    assert_eq!(states(api).await, json!([{"state": "stable", "n": 3}]));
}

fn paths(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_retires_exactly_the_expired_files_after_planning_them() {
    let api = free_port();
    let keep = config(api, "    compaction:\n      enabled: false");
    let mut d = Daemon::start_on_base(&[&keep]).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let young = now - 3_600_000 * MS;
    send(&d, "default", T0, 2, Duration::from_millis(150)).await;
    send(&d, "default", young, 2, Duration::from_millis(150)).await;
    send(&d, "acme", T0, 2, Duration::from_millis(150)).await;
    let rows =
        "SELECT (SELECT count(*) FROM spans) + (SELECT count(*) FROM logs) + (SELECT count(*) FROM metrics) AS n";
    until(api, "stored", rows, |v| count(v) == 3 * 80).await;
    until(api, "stable", "SELECT count(*) AS n FROM files WHERE state != 'stable'", |v| count(v) == 0).await;
    let expired_sql = format!(
        "SELECT path FROM files WHERE table_name IN ('logs', 'metrics') AND max_time < to_timestamp_nanos({}) ORDER BY path",
        now - 30 * 86_400_000 * MS
    );
    let expired = paths(&sql_rows(api, &expired_sql).await);
    let kept = paths(&sql_rows(api, &format!("SELECT path FROM files EXCEPT {expired_sql}")).await);
    let acme = paths(&sql_as(api, "acme", "SELECT path FROM files").await);
    assert!(!expired.is_empty() && !kept.is_empty() && !acme.is_empty());
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(30));
    let dir = d.dir.clone();

    // logs and metrics 30 days (spans kept for ever), tenant acme 10 years, finished batches 1 s.
    let retention = config(
        api,
        "    compaction:\n      enabled: false\n      interval: 200ms\n      grace_period: 3s
    retention:\n      logs: 30d\n      metrics: 30d\n      tenants:\n        acme: 3650d\n      batches: 1s",
    );
    let (base, cfg) = (dir.join("plan-base.yaml"), dir.join("plan.yaml"));
    let ports = |s: &str| {
        s.replace("{grpc}", &free_port().to_string())
            .replace("{http}", &free_port().to_string())
            .replace("{health}", &free_port().to_string())
            .replace("{metrics}", &free_port().to_string())
    };
    std::fs::write(&base, ports(BASE)).unwrap();
    std::fs::write(&cfg, ports(&retention)).unwrap();
    let out = std::process::Command::new(bin())
        .args(["retention", "plan", "--config"])
        .arg(&base)
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(plan.contains(&format!("{} files", expired.len())), "{plan}");
    for p in &expired {
        assert!(plan.contains(p.as_str()), "{p} is planned: {plan}");
    }
    for p in kept.iter().chain(&acme) {
        assert!(!plan.contains(p.as_str()), "{p} is kept: {plan}");
    }
    assert!(plan.contains("finished batch records older than 1s"), "{plan}");

    let d = Daemon::spawn_sources_env(&dir, &[BASE, &retention], &[]);
    d.wait_ready().await;
    // Retired first: out of every query at once, their objects kept for the grace period.
    let retired = "SELECT count(*) AS n FROM files WHERE state = 'retired'";
    until(api, "expired files retired", retired, |v| count(v) == expired.len() as i64).await;
    assert_eq!(sql_rows(api, "SELECT count(*) AS n FROM logs").await, json!([{"n": 40}]), "retired rows are gone");
    let storage = dir.join("data/storage");
    assert!(expired.iter().all(|p| storage.join(p).exists()), "objects stay during the grace period");
    until(api, "expired files deleted", "SELECT count(*) AS n FROM files", |v| count(v) == kept.len() as i64).await;
    assert_eq!(paths(&sql_rows(api, "SELECT path FROM files ORDER BY path").await), {
        let mut k = kept.clone();
        k.sort();
        k
    });
    assert_eq!(sql_rows(api, "SELECT count(*) AS n FROM logs").await, json!([{"n": 40}]), "the young logs stay");
    assert_eq!(sql_rows(api, "SELECT count(*) AS n FROM metrics").await, json!([{"n": 40}]));
    assert_eq!(sql_rows(api, "SELECT count(*) AS n FROM spans").await, json!([{"n": 80}]), "spans are kept");
    assert_eq!(sql_as(api, "acme", "SELECT count(*) AS n FROM logs").await, json!([{"n": 40}]), "acme keeps 10 years");
    let deadline = Instant::now() + Duration::from_secs(20);
    while expired.iter().any(|p| storage.join(p).exists()) {
        assert!(Instant::now() < deadline, "expired objects still in the store");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(kept.iter().chain(&acme).all(|p| storage.join(p).exists()), "younger files stay in the store");
    until(api, "finished batches pruned", "SELECT count(*) AS n FROM batches", |v| count(v) == 0).await;
    let retired = "openwit_parquet_deleted_files_total{exporter=\"parquet\",reason=\"retention\"}";
    assert_eq!(d.metric_sum(retired).await, expired.len() as f64);
}
