//! The Collector's processors through the real binary: what the OpenTelemetry SDK sends is reshaped by
//! `resource` and `attributes` as the Collector would, stored as Parquet and read back with SQL;
//! `memory_limiter` refuses before the WAL while the process is over its limit; a processor whose
//! settings do not fit its pipeline stops the start with the path of the setting.

use crate::harness::{Daemon, client, free_port};
use crate::ingest::send_with_sdk;
use serde_json::{Value, json};
use std::time::Duration;

const CONFIG: &str = "
processors:
  memory_limiter:
    check_interval: 100ms
    limit_mib: 100000
  resource:
    attributes:
      - {key: deployment.environment, value: prod, action: upsert}
      - {key: cloud.region, value: eu-west-1, action: insert}
  attributes/spans:
    include:
      match_type: strict
      span_names: [checkout]
    actions:
      - {key: http.route, action: hash}
      - {key: http.status_code, converted_type: string, action: convert}
      - {key: team, value: payments, action: insert}
  attributes/logs:
    exclude:
      match_type: regexp
      log_bodies: ['^health']
    actions:
      - {key: user.id, action: delete}
      - {key: redacted, value: true, action: upsert}
  attributes/metrics:
    include:
      match_type: regexp
      metric_names: ['^ord']
    actions:
      - {key: region, value: EU, action: update}
  batch:
    timeout: 50ms
exporters:
  parquet:
    rotation:
      max_age: 300ms
extensions:
  query:
    endpoint: 127.0.0.1:{api}
service:
  extensions: [health_check, query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, resource, attributes/spans, batch]
      exporters: [parquet]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, resource, attributes/logs, batch]
      exporters: [parquet]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, resource, attributes/metrics, batch]
      exporters: [parquet]
";

async fn sql(port: u16, sql: &str) -> Value {
    let r = client()
        .post(format!("http://127.0.0.1:{port}/api/v1/query"))
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status.is_success(), "{sql}: {status} {body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until `query` returns at least one row, and returns the rows.
async fn rows(port: u16, query: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = sql(port, query).await;
        if got.as_array().is_some_and(|a| !a.is_empty()) {
            return got;
        }
        assert!(std::time::Instant::now() < deadline, "{query}: nothing stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_and_attributes_reshape_what_the_sdk_sends_as_the_collector_would() {
    let api = free_port();
    let d = Daemon::start_on_base(&[&CONFIG.replace("{api}", &api.to_string())]).await;
    let url = d.grpc_url();
    tokio::task::spawn_blocking(move || send_with_sdk(true, url)).await.unwrap();

    let spans = rows(
        api,
        "SELECT name, resource_attributes['deployment.environment'] AS env, resource_attributes['cloud.region'] AS region,
                attributes['http.route'] AS route, attributes['http.status_code'] AS code,
                attributes['team'] AS team FROM spans",
    )
    .await;
    assert_eq!(
        spans,
        json!([{
            "name": "checkout", "env": "prod", "region": "eu-west-1", "route": sha256_hex("/cart"),
            "code": "503", "team": "payments"
        }]),
        "{}",
        d.logs()
    );

    let logs = rows(
        api,
        "SELECT body, resource_attributes['deployment.environment'] AS env, attributes['user.id'] AS user_id,
                attr_bool(attributes, 'redacted') AS redacted FROM logs",
    )
    .await;
    assert_eq!(logs, json!([{"body": "payment failed", "env": "prod", "user_id": null, "redacted": true}]));

    // `update` changes the key only where it exists, and only in the metrics included.
    let metrics = rows(
        api,
        "SELECT metric_name, attributes['region'] AS region, resource_attributes['cloud.region'] AS cloud
         FROM metrics ORDER BY metric_name",
    )
    .await;
    assert_eq!(
        metrics,
        json!([
            {"metric_name": "latency", "region": null, "cloud": "eu-west-1"},
            {"metric_name": "orders", "region": "EU", "cloud": "eu-west-1"},
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limiter_refuses_before_the_wal_while_over_its_limit() {
    // One MiB: the daemon is always over it, so every request is refused, retryably.
    let config = "
processors:
  memory_limiter:
    check_interval: 50ms
    limit_mib: 1
exporters:
  file:
    path: {dir}/logs.bin
    format: proto
service:
  pipelines:
    logs:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [file]
";
    let d = Daemon::start_on_base(&[config]).await;
    let body = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}"#.to_vec();
    let r = client()
        .post(d.http_url("/v1/logs"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let text = r.text().await.unwrap();
    assert!(text.contains("memory_limiter") && text.contains("soft limit"), "{text}");

    let mut grpc =
        opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(d.grpc_url())
            .await
            .unwrap();
    let req = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
        resource_logs: vec![opentelemetry_proto::tonic::logs::v1::ResourceLogs {
            scope_logs: vec![opentelemetry_proto::tonic::logs::v1::ScopeLogs {
                log_records: vec![Default::default()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let e = grpc.export(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");

    // Nothing reached the WAL, and the refusal is visible.
    assert_eq!(d.metric_sum("openwit_wal_batches_total").await, 0.0, "{}", d.metrics_text().await);
    assert_eq!(d.metric_sum("openwit_memory_limiter_refusing").await, 1.0);
    assert!(!d.path("logs.bin").exists() || std::fs::metadata(d.path("logs.bin")).unwrap().len() == 0);
    d.assert_serving().await;
}

#[test]
fn a_processor_setting_that_does_not_fit_its_pipeline_stops_the_start() {
    let config = "
processors:
  attributes:
    include:
      match_type: strict
      log_bodies: [x]
    actions:
      - {key: a, action: delete}
exporters:
  debug: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [attributes]
      exporters: [debug]
";
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::spawn_in_on_base(dir.path(), config);
    let st = d.wait_exit(Duration::from_secs(20));
    assert!(!st.success());
    let logs = d.logs();
    assert!(logs.contains("processor attributes in pipeline traces") && logs.contains("include.log_bodies"), "{logs}");
}
