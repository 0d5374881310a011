//! The Collector's processors through the real binary: what the OpenTelemetry SDK sends is reshaped by
//! `resource` and `attributes` as the Collector would, stored as Parquet and read back with SQL;
//! `memory_limiter` refuses before the WAL while the process is over its limit; a processor whose
//! settings do not fit its pipeline stops the start with the path of the setting.

use crate::harness::{Daemon, client, free_port, sql_rows};
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
service:
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

/// What the tests here share, merged under each one's processors and pipelines: a quick `batch`, Parquet
/// with quick rotation, and the query API on `api`.
fn store_and_query(api: u16) -> String {
    format!(
        "
processors:
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
"
    )
}

/// Waits until `query` returns at least one row, and returns the rows.
async fn rows(port: u16, query: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = sql_rows(port, query).await;
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
    let d = Daemon::start_on_base(&[&store_and_query(api), CONFIG]).await;
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
        // DISTINCT: the SDK's periodic reader exports its cumulative points again at shutdown.
        "SELECT DISTINCT metric_name, attributes['region'] AS region, resource_attributes['cloud.region'] AS cloud
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
    // Still up (its health check answers), only refusing.
    d.wait_ready().await;
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

/// Spans named `GET /health` (route `/health`) and `checkout`, and log lines at INFO and ERROR, through
/// the OpenTelemetry SDK over OTLP/HTTP.
fn send_mixed_with_sdk(endpoint: String, health: usize, checkout: usize) {
    use opentelemetry::KeyValue;
    use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_otlp::{LogExporter, Protocol, SpanExporter, WithExportConfig};
    let spans = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .build()
        .unwrap();
    let logs = LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/logs"))
        .build()
        .unwrap();
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("shop").build();
    let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let tracer = tp.tracer("shop");
    for (name, route, n) in [("GET /health", "/health", health), ("checkout", "/cart", checkout)] {
        for _ in 0..n {
            let mut s = tracer.start(name);
            s.set_attribute(KeyValue::new("http.route", route));
            s.end();
        }
    }
    let lp =
        opentelemetry_sdk::logs::SdkLoggerProvider::builder().with_batch_exporter(logs).with_resource(resource).build();
    let logger = lp.logger("shop");
    for (sev, text, body) in
        [(Severity::Info, "INFO", "cache warm"), (Severity::Error, "ERROR", "payment failed user=alice@example.com")]
    {
        let mut rec = logger.create_log_record();
        rec.set_body(AnyValue::from(body));
        rec.set_severity_number(sev);
        rec.set_severity_text(text);
        logger.emit(rec);
    }
    tp.force_flush().unwrap();
    lp.force_flush().unwrap();
    tp.shutdown().unwrap();
    lp.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_drops_and_transform_rewrites_what_the_sdk_sends() {
    let api = free_port();
    let config = r#"
processors:
  filter:
    error_mode: ignore
    traces:
      span: ['attributes["http.route"] == "/health"']
    logs:
      log_record: ['severity_number < SEVERITY_NUMBER_WARN']
  transform:
    trace_statements:
      - 'set(span.attributes["route.length"], Len(span.attributes["http.route"]))'
    log_statements:
      - context: log
        conditions: ['IsMatch(body, "user=")']
        statements:
          - 'replace_pattern(body, "user=[^ ]+", "user=REDACTED")'
          - 'set(attributes["redacted"], true)'
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [filter, transform, batch]
      exporters: [parquet]
    logs:
      receivers: [otlp]
      processors: [filter, transform, batch]
      exporters: [parquet]
"#;
    let d = Daemon::start_on_base(&[&store_and_query(api), config]).await;
    let url = d.http_url("");
    tokio::task::spawn_blocking(move || send_mixed_with_sdk(url, 3, 2)).await.unwrap();

    let spans = rows(api, "SELECT name, attr_int(attributes, 'route.length') AS len FROM spans ORDER BY name").await;
    assert_eq!(spans, json!([{"name": "checkout", "len": 5}, {"name": "checkout", "len": 5}]), "{}", d.logs());
    let logs = rows(api, "SELECT body, severity_text, attr_bool(attributes, 'redacted') AS redacted FROM logs").await;
    assert_eq!(logs, json!([{"body": "payment failed user=REDACTED", "severity_text": "ERROR", "redacted": true}]));

    // The dropped items were settled as dropped: counted, and their batches completed, not failed.
    assert_eq!(d.metric_sum("openwit_processor_dropped_spans_total{processor=\"filter\"}").await, 3.0);
    assert_eq!(d.metric_sum("openwit_processor_dropped_log_records_total{processor=\"filter\"}").await, 1.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = sql_rows(api, "SELECT status, count(*) AS n FROM batches GROUP BY status").await;
        if st.as_array().unwrap().iter().all(|r| r["status"] == "completed") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "batches not all completed: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// After `batch` in a pipeline storing Parquet, batches carry their Arrow rows: `filter` evaluates them a
/// column at a time and stores what the per-item evaluation stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_after_batch_evaluates_arrow_rows_a_column_at_a_time() {
    let api = free_port();
    let config = r#"
processors:
  filter:
    traces:
      span: ['attributes["http.route"] == "/health"']
    logs:
      log_record: ['severity_number < SEVERITY_NUMBER_WARN or IsMatch(body, "^cache")']
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch, filter]
      exporters: [parquet]
    logs:
      receivers: [otlp]
      processors: [batch, filter]
      exporters: [parquet]
"#;
    let d = Daemon::start_on_base(&[&store_and_query(api), config]).await;
    let url = d.http_url("");
    tokio::task::spawn_blocking(move || send_mixed_with_sdk(url, 3, 2)).await.unwrap();

    let spans = rows(api, "SELECT name, attr(attributes, 'http.route') AS route FROM spans").await;
    assert_eq!(spans, json!([{"name": "checkout", "route": "/cart"}, {"name": "checkout", "route": "/cart"}]));
    let logs = rows(api, "SELECT body FROM logs").await;
    assert_eq!(logs, json!([{"body": "payment failed user=alice@example.com"}]), "{}", d.logs());
    assert_eq!(d.metric_sum("openwit_processor_dropped_spans_total{processor=\"filter\"}").await, 3.0);
    assert_eq!(d.metric_sum("openwit_processor_dropped_log_records_total{processor=\"filter\"}").await, 1.0);
    let by = |how: &str| {
        format!("openwit_processor_filter_evaluated_items_total{{processor=\"filter\",evaluation=\"{how}\"}}")
    };
    assert_eq!(d.metric_sum(&by("columns")).await, 7.0, "every item went by columns");
    assert_eq!(d.metric_sum(&by("items")).await, 0.0);
}
