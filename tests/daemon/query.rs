//! The `query` extension through the real binary: a known dataset sent over OTLP is asked for over
//! HTTP and the answers compared exactly; pruning shown by counts; tenants kept apart whatever the SQL;
//! bad SQL and limits answered with clear errors; the `openwit query` command offline and online.

use crate::harness::{Daemon, bin, client, free_port, plan_counter};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as AnyKind};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::{Value, json};
use std::time::Duration;

/// `{api}` is the query API's port; `{row_group_size}` the exporter's.
const CONFIG: &str = "
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    timeout: 50ms
exporters:
  parquet:
    row_group_size: {row_group_size}
    rotation:
      max_age: 300ms
    index:
      logs:
        fields: [body, severity_text, service_name, trace_id, attributes]
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  batch_monitor:
    endpoint: 127.0.0.1:{api}
  query:
    endpoint: 127.0.0.1:{api}
    max_rows: 40
    timeout: 3s
    max_memory_megabytes: 16
    datafusion:
      datafusion.execution.batch_size: 4096
service:
  extensions: [health_check, batch_monitor, query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
";

/// 2026-03-01T10:00:00Z in nanoseconds.
const T0: u64 = 1_772_359_200_000_000_000;
const MS: u64 = 1_000_000;
const TRACE_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TRACE_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

struct Api {
    port: u16,
    daemon: Daemon,
}

async fn start(row_group_size: usize) -> Api {
    let port = free_port();
    let cfg = CONFIG.replace("{api}", &port.to_string()).replace("{row_group_size}", &row_group_size.to_string());
    let daemon = Daemon::start(&cfg).await;
    Api { port, daemon }
}

impl Api {
    /// Runs `sql` as `tenant`, returning the status and the body.
    async fn text(&self, tenant: &str, sql: &str, format: &str) -> (u16, String) {
        let r = client()
            .post(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .header("x-scope-orgid", tenant)
            .json(&json!({ "sql": sql, "format": format }))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Runs `sql` as `tenant` and returns the rows; panics on an error.
    async fn rows(&self, tenant: &str, sql: &str) -> Value {
        let (code, body) = self.text(tenant, sql, "json").await;
        assert_eq!(code, 200, "{sql}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Runs `sql` and expects an error with this status; returns the message.
    async fn error(&self, tenant: &str, sql: &str, status: u16) -> String {
        let (code, body) = self.text(tenant, sql, "json").await;
        assert_eq!(code, status, "{sql}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{sql}: not JSON: {body}"));
        v["error"].as_str().unwrap().to_string()
    }

    /// Waits until `sql` answers `expected`.
    async fn until(&self, tenant: &str, sql: &str, expected: Value) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.rows(tenant, sql).await;
            if got == expected {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{sql}: {got}, expected {expected}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the tenant's stable files hold these rows per table (spans, logs, metrics).
    async fn wait_stored(&self, tenant: &str, rows: [i64; 3]) {
        let sql = "SELECT table_name, sum(row_count) AS n FROM files WHERE state = 'stable' GROUP BY table_name";
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.rows(tenant, sql).await;
            let n = |t: &str| {
                got.as_array().unwrap().iter().find(|r| r["table_name"] == t).map_or(0, |r| r["n"].as_i64().unwrap())
            };
            if [n("spans"), n("logs"), n("metrics")] == rows {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{tenant}: stored {got}, expected {rows:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn kv(key: &str, v: AnyKind) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn text(s: &str) -> AnyKind {
    AnyKind::StringValue(s.into())
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource { attributes: vec![kv("service.name", text(service))], ..Default::default() })
}

fn id(hex: &str) -> Vec<u8> {
    hex::decode(hex).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: &str,
    span: &str,
    parent: &str,
    name: &str,
    start_ms: u64,
    dur_ms: u64,
    attrs: Vec<KeyValue>,
    error: bool,
) -> Span {
    Span {
        trace_id: id(trace),
        span_id: id(span),
        parent_span_id: if parent.is_empty() { vec![] } else { id(parent) },
        name: name.into(),
        start_time_unix_nano: T0 + start_ms * MS,
        end_time_unix_nano: T0 + (start_ms + dur_ms) * MS,
        attributes: attrs,
        status: Some(Status { code: if error { 2 } else { 1 }, message: String::new() }),
        ..Default::default()
    }
}

fn traces(service_spans: Vec<(&str, Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: service_spans
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: resource(service),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    }
}

fn log(trace: &str, span: &str, at_ms: u64, severity: &str, body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: T0 + at_ms * MS,
        severity_text: severity.into(),
        severity_number: if severity == "ERROR" { 17 } else { 9 },
        body: Some(AnyValue { value: Some(text(body)) }),
        trace_id: if trace.is_empty() { vec![] } else { id(trace) },
        span_id: if span.is_empty() { vec![] } else { id(span) },
        ..Default::default()
    }
}

fn logs(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn point(host: &str, at_ms: u64, v: number_data_point::Value) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![kv("host", text(host))],
        time_unix_nano: T0 + at_ms * MS,
        value: Some(v),
        ..Default::default()
    }
}

fn metrics(service: &str, list: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service),
            scope_metrics: vec![ScopeMetrics { metrics: list, ..Default::default() }],
            ..Default::default()
        }],
    }
}

async fn send(
    d: &Daemon,
    tenant: &str,
    t: ExportTraceServiceRequest,
    l: ExportLogsServiceRequest,
    m: ExportMetricsServiceRequest,
) {
    fn with_tenant<T>(tenant: &str, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert("x-scope-orgid", tenant.parse().unwrap());
        r
    }
    TraceServiceClient::connect(d.grpc_url()).await.unwrap().export(with_tenant(tenant, t)).await.unwrap();
    LogsServiceClient::connect(d.grpc_url()).await.unwrap().export(with_tenant(tenant, l)).await.unwrap();
    MetricsServiceClient::connect(d.grpc_url()).await.unwrap().export(with_tenant(tenant, m)).await.unwrap();
}

/// Tenant `acme`: two traces over three services, four log lines, five metric points; tenant `globex`:
/// one span, one log line, one point.
async fn send_known_dataset(api: &Api) {
    let route = |r: &str| kv("http.route", text(r));
    let code = |c: i64| kv("http.response.status_code", AnyKind::IntValue(c));
    let t = traces(vec![
        (
            "checkout",
            vec![
                span(
                    TRACE_A,
                    "a100000000000001",
                    "",
                    "POST /checkout",
                    0,
                    120,
                    vec![route("/checkout"), code(200)],
                    false,
                ),
                span(
                    TRACE_B,
                    "b100000000000001",
                    "",
                    "POST /checkout",
                    60_000,
                    300,
                    vec![route("/checkout"), code(500)],
                    true,
                ),
            ],
        ),
        (
            "cart",
            vec![
                span(
                    TRACE_A,
                    "a200000000000002",
                    "a100000000000001",
                    "GET /cart",
                    10,
                    30,
                    vec![route("/cart"), code(200)],
                    false,
                ),
                span(
                    TRACE_B,
                    "b200000000000002",
                    "b100000000000001",
                    "GET /cart",
                    60_005,
                    20,
                    vec![route("/cart"), code(200)],
                    false,
                ),
            ],
        ),
        (
            "payment",
            vec![span(
                TRACE_A,
                "a300000000000003",
                "a100000000000001",
                "charge",
                50,
                60,
                vec![kv("payment.amount", AnyKind::DoubleValue(12.5))],
                true,
            )],
        ),
    ]);
    let l = logs(
        "checkout",
        vec![
            log(TRACE_A, "a100000000000001", 5, "INFO", "order placed"),
            log(TRACE_A, "a300000000000003", 100, "ERROR", "card declined"),
            log(TRACE_B, "b100000000000001", 60_200, "ERROR", "checkout failed"),
            log("", "", 1, "INFO", "startup"),
        ],
    );
    let gauge = |points| Metric {
        name: "cpu.utilization".into(),
        data: Some(Data::Gauge(Gauge { data_points: points })),
        ..Default::default()
    };
    let m = metrics(
        "checkout",
        vec![
            gauge(vec![
                point("h1", 0, number_data_point::Value::AsDouble(0.5)),
                point("h1", 60_000, number_data_point::Value::AsDouble(0.7)),
                point("h2", 0, number_data_point::Value::AsDouble(0.2)),
            ]),
            Metric {
                name: "requests".into(),
                data: Some(Data::Sum(Sum {
                    data_points: vec![
                        point("h1", 0, number_data_point::Value::AsInt(10)),
                        point("h1", 60_000, number_data_point::Value::AsInt(25)),
                    ],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
        ],
    );
    send(&api.daemon, "acme", t, l, m).await;

    let t = traces(vec![("globex-api", vec![span(TRACE_A, "c100000000000001", "", "GET /", 0, 5, vec![], false)])]);
    let l = logs("globex-api", vec![log(TRACE_A, "c100000000000001", 1, "INFO", "globex hello")]);
    let m = metrics("globex-api", vec![gauge(vec![point("g1", 0, number_data_point::Value::AsDouble(9.0))])]);
    send(&api.daemon, "globex", t, l, m).await;
    api.wait_stored("acme", [5, 4, 5]).await;
    api.wait_stored("globex", [1, 1, 1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_dataset_gives_exact_answers_over_every_table() {
    let api = start(1000).await;
    send_known_dataset(&api).await;
    let q = |sql: &'static str| api.rows("acme", sql);

    // Aggregation per service.
    assert_eq!(
        q("SELECT service_name, count(*) AS spans, max(duration_ns) AS max_ns FROM spans GROUP BY service_name ORDER BY service_name").await,
        json!([
            {"service_name": "cart", "spans": 2, "max_ns": 30_000_000},
            {"service_name": "checkout", "spans": 2, "max_ns": 300_000_000},
            {"service_name": "payment", "spans": 1, "max_ns": 60_000_000},
        ])
    );
    // A trace by id, written as users write it; ids come back as lowercase hex.
    let trace = format!("SELECT span_id, parent_span_id, name FROM spans WHERE trace_id = '{TRACE_A}' ORDER BY time");
    assert_eq!(
        api.rows("acme", &trace).await,
        json!([
            {"span_id": "a100000000000001", "parent_span_id": "", "name": "POST /checkout"},
            {"span_id": "a200000000000002", "parent_span_id": "a100000000000001", "name": "GET /cart"},
            {"span_id": "a300000000000003", "parent_span_id": "a100000000000001", "name": "charge"},
        ])
    );
    // Attribute filters: by text, and by typed value.
    assert_eq!(
        q("SELECT span_id FROM spans WHERE attributes['http.route'] = '/cart' ORDER BY span_id").await,
        json!([{"span_id": "a200000000000002"}, {"span_id": "b200000000000002"}])
    );
    assert_eq!(
        q("SELECT id_to_hex(trace_id) AS t, name FROM spans WHERE attr_int(attributes, 'http.response.status_code') >= 500").await,
        json!([{"t": TRACE_B, "name": "POST /checkout"}])
    );
    assert_eq!(
        q("SELECT attr_float(attributes, 'payment.amount') * 2 AS twice, attr(attributes, 'nope') AS missing FROM spans WHERE name = 'charge'").await,
        json!([{"twice": 25.0, "missing": null}])
    );
    // Error rate per service.
    assert_eq!(
        q("SELECT service_name, avg(CASE WHEN status_code = 2 THEN 1.0 ELSE 0.0 END) AS error_rate FROM spans GROUP BY 1 ORDER BY 1").await,
        json!([
            {"service_name": "cart", "error_rate": 0.0},
            {"service_name": "checkout", "error_rate": 0.5},
            {"service_name": "payment", "error_rate": 1.0},
        ])
    );
    // Log lines of a trace, joined to their spans.
    let join = format!(
        "SELECT l.body, l.severity_text, s.name FROM logs l JOIN spans s ON l.trace_id = s.trace_id AND l.span_id = s.span_id \
         WHERE s.trace_id = '{TRACE_A}' ORDER BY l.time"
    );
    assert_eq!(
        api.rows("acme", &join).await,
        json!([
            {"body": "order placed", "severity_text": "INFO", "name": "POST /checkout"},
            {"body": "card declined", "severity_text": "ERROR", "name": "charge"},
        ])
    );
    assert_eq!(
        q("SELECT severity_text, count(*) AS n FROM logs GROUP BY 1 ORDER BY 1").await,
        json!([{"severity_text": "ERROR", "n": 2}, {"severity_text": "INFO", "n": 2}])
    );
    // Metrics: a gauge per host, a counter's last value.
    assert_eq!(
        q("SELECT attributes['host'] AS host, avg(value_double) AS avg FROM metrics WHERE metric_name = 'cpu.utilization' GROUP BY 1 ORDER BY 1").await,
        json!([{"host": "h1", "avg": 0.6}, {"host": "h2", "avg": 0.2}])
    );
    assert_eq!(
        q("SELECT metric_type, max(value_int) AS last, bool_and(is_monotonic) AS mono FROM metrics WHERE metric_name = 'requests' GROUP BY 1").await,
        json!([{"metric_type": "sum", "last": 25, "mono": true}])
    );
    // Histograms over time.
    assert_eq!(
        q("SELECT time_bucket(INTERVAL '1 minute', time) AS minute, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1")
            .await,
        json!([{"minute": "2026-03-01T10:00:00Z", "n": 3}, {"minute": "2026-03-01T10:01:00Z", "n": 2}])
    );
    assert_eq!(
        q("SELECT date_bin(INTERVAL '1 hour', time) AS hour, count(*) AS n FROM metrics GROUP BY 1").await,
        json!([{"hour": "2026-03-01T10:00:00Z", "n": 5}])
    );
    // The catalog's views.
    assert_eq!(
        q("SELECT table_name, sum(row_count) AS n FROM files GROUP BY 1 ORDER BY 1").await,
        json!([{"table_name": "logs", "n": 4}, {"table_name": "metrics", "n": 5}, {"table_name": "spans", "n": 5}])
    );
    // A WAL batch is marked stored once its files are (the tracker writes in groups, a moment later).
    api.until(
        "acme",
        "SELECT signal, sum(item_count) AS items, bool_and(storage_pip) AS stored FROM batches GROUP BY 1 ORDER BY 1",
        json!([
            {"signal": "logs", "items": 4, "stored": true},
            {"signal": "metrics", "items": 5, "stored": true},
            {"signal": "traces", "items": 5, "stored": true},
        ]),
    )
    .await;

    // Other formats of the same answer.
    let (code, nd) = api.text("acme", &trace, "ndjson").await;
    assert_eq!((code, nd.lines().count()), (200, 3), "{nd}");
    assert_eq!(serde_json::from_str::<Value>(nd.lines().nth(2).unwrap()).unwrap()["span_id"], "a300000000000003");
    let (code, csv) = api.text("acme", &trace, "csv").await;
    assert_eq!(
        (code, csv.as_str()),
        (
            200,
            "span_id,parent_span_id,name\na100000000000001,,POST /checkout\na200000000000002,a100000000000001,GET /cart\na300000000000003,a100000000000001,charge\n"
        )
    );
    let r = client()
        .get(format!("http://127.0.0.1:{}/api/v1/query", api.port))
        .header("x-scope-orgid", "acme")
        .query(&[("sql", "SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1"), ("format", "arrow")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/vnd.apache.arrow.stream");
    let bytes = r.bytes().await.unwrap();
    let batches: Vec<arrow::array::RecordBatch> =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
    let counts: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(1).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().values().to_vec())
        .collect();
    assert_eq!(counts, vec![2, 2, 1]);

    // SHOW TABLES, DESCRIBE, EXPLAIN.
    let tables = q("SHOW TABLES").await;
    let mut names: Vec<&str> = tables
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["table_schema"] == "public")
        .map(|t| t["table_name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["batches", "files", "logs", "metrics", "nodes", "spans"]);
    let cols = q("DESCRIBE spans").await;
    let col = |n: &str| cols.as_array().unwrap().iter().find(|c| c["column_name"] == n).unwrap()["data_type"].clone();
    assert_eq!(col("trace_id"), "Binary");
    assert_eq!(col("time"), "Timestamp(ns, \"UTC\")");
    let plan = q("EXPLAIN SELECT count(*) FROM spans").await;
    assert!(plan.to_string().contains("DataSourceExec"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_only_its_own_rows_whatever_the_sql() {
    let api = start(1000).await;
    send_known_dataset(&api).await;
    let g = |sql: &str| {
        let sql = sql.to_string();
        let api = &api;
        async move { api.rows("globex", &sql).await }
    };
    for table in ["spans", "logs", "metrics", "files", "batches"] {
        assert_eq!(g(&format!("SELECT DISTINCT tenant FROM {table}")).await, json!([{"tenant": "globex"}]), "{table}");
    }
    assert_eq!(g("SELECT count(*) AS n FROM spans").await, json!([{"n": 1}]));
    // acme's trace id, acme's tenant value, a fully qualified name: nothing of acme's.
    assert_eq!(g(&format!("SELECT count(*) AS n FROM spans WHERE trace_id = '{TRACE_B}'")).await, json!([{"n": 0}]));
    assert_eq!(g("SELECT count(*) AS n FROM openwit.public.spans WHERE tenant = 'acme'").await, json!([{"n": 0}]));
    assert_eq!(g("SELECT count(*) AS n FROM logs WHERE body LIKE '%order%'").await, json!([{"n": 0}]));
    assert_eq!(g("SELECT count(*) AS n FROM files WHERE path LIKE '%tenant=acme%'").await, json!([{"n": 0}]));

    // Paths to acme's files, whatever the form, are not tables.
    let acme = api.rows("acme", "SELECT root, path FROM files WHERE table_name = 'spans'").await;
    let file = format!("{}/{}", acme[0]["root"].as_str().unwrap(), acme[0]["path"].as_str().unwrap());
    let local = file.trim_start_matches("file://").to_string();
    for sql in [
        format!("SELECT * FROM '{local}'"),
        format!("SELECT * FROM '{file}'"),
        format!("SELECT * FROM read_parquet('{local}')"),
        format!("CREATE EXTERNAL TABLE stolen STORED AS PARQUET LOCATION '{local}'"),
        format!("COPY (SELECT 1) TO '{local}.csv'"),
        "SET datafusion.catalog.information_schema = false".to_string(),
        "INSERT INTO spans SELECT * FROM spans".to_string(),
        "CREATE VIEW v AS SELECT 1".to_string(),
    ] {
        let msg = api.error("globex", &sql, 400).await;
        assert!(!msg.is_empty(), "{sql}");
    }
    // An invalid tenant is refused as at ingest.
    let r = client()
        .post(format!("http://127.0.0.1:{}/api/v1/query", api.port))
        .header("x-scope-orgid", "../acme")
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("only letters, digits"));
    // No tenant header: the default tenant, which stored nothing.
    let r = client()
        .post(format!("http://127.0.0.1:{}/api/v1/query", api.port))
        .json(&json!({"sql": "SELECT count(*) AS n FROM spans"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!([{"n": 0}]));
}

/// The numbers `EXPLAIN ANALYZE` prints for a pruning metric: `name=T total → M matched`.
fn pruning(plan: &str, name: &str) -> (usize, usize) {
    let start = plan.find(&format!("{name}=")).unwrap_or_else(|| panic!("no {name} in {plan}")) + name.len() + 1;
    let rest = &plan[start..];
    let total: usize = rest.split(' ').next().unwrap().parse().unwrap();
    let matched_at = rest.find("→ ").unwrap() + "→ ".len();
    let matched: usize = rest[matched_at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    (total, matched)
}

/// splitmix64: well-spread ids from a counter.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .map_or(0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_opens_only_the_hour_asked_for_and_skips_row_groups_by_bloom_filter() {
    let api = start(50).await;
    // Three days, one span per hour (72 files, one per hour), and 500 spans in the hour 10:00 of the
    // second day (ten row groups of 50), each with its own trace id.
    let day = 24 * 3_600_000;
    let hour_ms = 3_600_000;
    let mut spans: Vec<Span> = (0..72u64)
        .map(|h| {
            span(&format!("{:032x}", h + 1), &format!("{:016x}", h + 1), "", "tick", h * hour_ms, 1, vec![], false)
        })
        .collect();
    let busy = day + 10 * hour_ms;
    let ids: Vec<String> = (0..500u64).map(|i| format!("{:016x}{:016x}", mix(2 * i), mix(2 * i + 1))).collect();
    for (i, t) in ids.iter().enumerate() {
        spans.push(span(t, &format!("{:016x}", 1000 + i), "", "busy", busy + 1 + i as u64, 1, vec![], false));
    }
    // A log record without a time: placed (and its file's time range set) by its observed time.
    let timeless = LogRecord {
        observed_time_unix_nano: T0 + busy * MS,
        body: Some(AnyValue { value: Some(text("no time")) }),
        ..Default::default()
    };
    send(&api.daemon, "acme", traces(vec![("clock", spans)]), logs("clock", vec![timeless]), metrics("clock", vec![]))
        .await;
    api.wait_stored("acme", [572, 1, 0]).await;
    let files = api.rows("acme", "SELECT count(*) AS n FROM files WHERE table_name = 'spans'").await;
    assert_eq!(files, json!([{"n": 72}]));

    // One hour of three days: one file opened of 72.
    let before = api.daemon.metrics_text().await;
    let t0 = T0 / 1_000_000_000;
    let busy_s = t0 + busy / 1000;
    let hour = format!("time >= to_timestamp({busy_s}) AND time < to_timestamp({})", busy_s + 3600);
    let count = format!("SELECT count(*) AS n FROM spans WHERE {hour}");
    assert_eq!(api.rows("acme", &count).await, json!([{"n": 501}]));
    let plan = api.rows("acme", &format!("EXPLAIN ANALYZE {count}")).await.to_string();
    assert_eq!(pruning(&plan, "catalog_files_pruned"), (72, 1), "{plan}");
    let after = api.daemon.metrics_text().await;
    assert_eq!(
        counter(&after, "openwit_query_files_considered_total")
            - counter(&before, "openwit_query_files_considered_total"),
        144
    );
    assert_eq!(
        counter(&after, "openwit_query_files_scanned_total") - counter(&before, "openwit_query_files_scanned_total"),
        2
    );
    // Open-ended ranges prune too.
    let plan = api
        .rows(
            "acme",
            &format!("EXPLAIN ANALYZE SELECT count(*) FROM spans WHERE time >= to_timestamp({})", t0 + 2 * 86_400),
        )
        .await
        .to_string();
    assert_eq!(pruning(&plan, "catalog_files_pruned"), (72, 24), "{plan}");

    // The time-less record is found by its time (0) though its file's range starts later, and ranges
    // that exclude 0 still prune by the file's range.
    assert_eq!(
        api.rows("acme", "SELECT body FROM logs WHERE time < to_timestamp(1)").await,
        json!([{"body": "no time"}])
    );
    let plan = api
        .rows(
            "acme",
            &format!("EXPLAIN ANALYZE SELECT count(*) FROM logs WHERE time >= to_timestamp({})", busy_s + 3600),
        )
        .await
        .to_string();
    assert_eq!(pruning(&plan, "catalog_files_pruned"), (1, 0), "{plan}");

    // A trace by id: no time given, so every file is opened, but in the busy hour's file only the row
    // group holding the id is read; the others are skipped by statistics or by the bloom filter.
    let target = &ids[321];
    let lookup = format!("SELECT span_id FROM spans WHERE trace_id = '{target}'");
    assert_eq!(api.rows("acme", &lookup).await, json!([{"span_id": format!("{:016x}", 1000 + 321)}]));
    let plan = api.rows("acme", &format!("EXPLAIN ANALYZE {lookup}")).await.to_string();
    let (groups, kept_by_stats) = pruning(&plan, "row_groups_pruned_statistics");
    let (checked_by_bloom, kept_by_bloom) = pruning(&plan, "row_groups_pruned_bloom_filter");
    // 71 one-row files, and the busy hour's 501 rows in 11 row groups.
    assert_eq!(groups, 71 + 11, "{plan}");
    assert_eq!(checked_by_bloom, kept_by_stats);
    assert_eq!(kept_by_bloom, 1, "{plan}");
    assert!(
        checked_by_bloom - kept_by_bloom >= 5,
        "the bloom filter skipped only {} row groups: {plan}",
        checked_by_bloom - kept_by_bloom
    );
    let m = api.daemon.metrics_text().await;
    assert!(m.contains("openwit_query_row_groups_pruned_total{by=\"bloom_filter\"}"), "{m}");
}

/// `text_match` finds words (any case), phrases and boolean combinations in log bodies, per tenant; a
/// query that is not valid is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_match_finds_words_phrases_and_booleans_in_log_bodies() {
    let api = start(1000).await;
    send_known_dataset(&api).await;
    let api = &api;
    let bodies = |q: &str| {
        let sql = format!("SELECT body FROM logs WHERE text_match(body, '{q}') ORDER BY body");
        async move {
            let rows = api.rows("acme", &sql).await;
            rows.as_array().unwrap().iter().map(|r| r["body"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        }
    };
    assert_eq!(bodies("DECLINED").await, ["card declined"], "words match in any case");
    assert_eq!(bodies("\"checkout failed\"").await, ["checkout failed"]);
    assert!(bodies("\"failed checkout\"").await.is_empty(), "a phrase keeps its order");
    assert_eq!(bodies("card OR startup").await, ["card declined", "startup"]);
    assert_eq!(bodies("order placed").await, ["order placed"], "words are ANDed");
    assert!(bodies("order declined").await.is_empty());
    assert!(bodies("globex").await.is_empty(), "another tenant's rows are not searched");
    // Once each logs file's index is stored, a file without a hit is not opened (EXPLAIN ANALYZE
    // shows it), and the answers stay the same.
    let explain = |q: &'static str| async move {
        api.rows("acme", &format!("EXPLAIN ANALYZE SELECT count(*) FROM logs WHERE text_match(body, '{q}')"))
            .await
            .to_string()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (total, _) = loop {
        let plan = explain("nowhere").await;
        let (total, matched) = pruning(&plan, "index_files_pruned");
        if total > 0 && matched == 0 {
            break (total, matched);
        }
        assert!(std::time::Instant::now() < deadline, "the index never pruned: {plan}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(pruning(&explain("declined").await, "index_files_pruned"), (total, total), "a hit: the file is read");
    assert_eq!(bodies("DECLINED").await, ["card declined"]);
    assert!(bodies("nowhere").await.is_empty());
    let e = api.error("acme", "SELECT count(*) FROM logs WHERE text_match(body, 'body:(')", 400).await;
    assert!(e.contains("text_match") && e.contains("not valid"), "{e}");
    let e = api.error("acme", "SELECT count(*) FROM logs WHERE text_match(body, body)", 400).await;
    assert!(e.contains("string literal"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_answer_counts_select_rows_and_serve_match_all_and_like() {
    let api = start(1000).await;
    send_known_dataset(&api).await;
    let api = &api;
    let explain = |sql: String| async move { api.rows("acme", &format!("EXPLAIN ANALYZE {sql}")).await.to_string() };
    let column = |sql: String, name: &'static str| async move {
        let rows = api.rows("acme", &sql).await;
        rows.as_array().unwrap().iter().map(|r| r[name].to_string().trim_matches('"').to_string()).collect::<Vec<_>>()
    };
    // Wait for the logs and spans files' indexes.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for sql in [
        "SELECT count(*) FROM logs WHERE text_match(body, 'declined')",
        "SELECT count(*) FROM spans WHERE text_match(name, 'cart')",
    ] {
        while plan_counter(&explain(sql.to_string()).await, "index_files_answered") == 0 {
            assert!(std::time::Instant::now() < deadline, "no index answered {sql}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // A count is answered by the index alone (no Parquet row read), and is right.
    let count = "SELECT count(*) AS n FROM logs WHERE text_match(body, 'declined OR failed')".to_string();
    assert_eq!(api.rows("acme", &count).await, json!([{"n": 2}]));
    let plan = explain(count).await;
    assert_eq!(plan_counter(&plan, "index_files_answered"), 1, "{plan}");
    // So is a time histogram (the index holds each row's time).
    let histogram = "SELECT time_bucket(INTERVAL '1 minute', time) AS m, count(*) AS n FROM logs \
                     WHERE text_match(body, 'checkout OR card') GROUP BY 1 ORDER BY 1"
        .to_string();
    assert_eq!(column(histogram.clone(), "n").await, ["1", "1"]);
    assert_eq!(plan_counter(&explain(histogram).await, "index_files_answered"), 1);
    // A rare word: only its rows are read (1 of 4).
    let rare = "SELECT body FROM logs WHERE text_match(body, 'declined')".to_string();
    assert_eq!(column(rare.clone(), "body").await, ["card declined"]);
    let plan = explain(rare).await;
    assert_eq!(
        (plan_counter(&plan, "index_files_rows_selected"), plan_counter(&plan, "index_rows_selected")),
        (1, 1),
        "{plan}"
    );
    // A word in every row: the index is not worth it, the file is read whole and filtered.
    let common = "SELECT body FROM logs WHERE text_match(body, 'card OR order OR checkout OR startup') ORDER BY body";
    assert_eq!(
        column(common.to_string(), "body").await,
        ["card declined", "checkout failed", "order placed", "startup"]
    );
    let plan = explain(common.to_string()).await;
    assert_eq!(plan_counter(&plan, "index_files_not_worth_it"), 1, "{plan}");

    // match_all: every indexed field (exact terms by name), from the index and by scan alike.
    let errors = "SELECT body FROM logs WHERE match_all('severity_text:ERROR') ORDER BY body".to_string();
    assert_eq!(column(errors, "body").await, ["card declined", "checkout failed"]);
    let by_trace = format!("SELECT body FROM logs WHERE match_all('trace_id:{TRACE_B}')");
    assert_eq!(column(by_trace, "body").await, ["checkout failed"]);
    let service = "SELECT count(*) AS n FROM logs WHERE match_all('service_name:checkout')".to_string();
    assert_eq!(api.rows("acme", &service).await, json!([{"n": 4}]));
    // Under OR the scan evaluates it row by row.
    let either = "SELECT body FROM logs WHERE match_all('declined') OR severity_text = 'INFO' ORDER BY body";
    assert_eq!(column(either.to_string(), "body").await, ["card declined", "order placed", "startup"]);
    let spans = "SELECT span_id FROM spans WHERE match_all('attributes:\"http.route=/checkout\"') ORDER BY span_id";
    assert_eq!(column(spans.to_string(), "span_id").await, ["a100000000000001", "b100000000000001"]);
    // attributes['k'] = 'v': string attributes are indexed as `k=v`, so a file without the term is skipped;
    // a value an int is written as too (`500`) is not narrowed by the index, and is still found.
    let route = |r: &str| format!("SELECT span_id FROM spans WHERE attributes['http.route'] = '{r}' ORDER BY span_id");
    assert_eq!(column(route("/checkout"), "span_id").await, ["a100000000000001", "b100000000000001"]);
    assert_eq!(pruning(&explain(route("/nowhere")).await, "index_files_pruned"), (1, 0));
    assert!(column(route("/nowhere"), "span_id").await.is_empty());
    let code = "SELECT span_id FROM spans WHERE attributes['http.response.status_code'] = '500'".to_string();
    assert_eq!(column(code.clone(), "span_id").await, ["b100000000000001"]);
    let plan = explain(code).await;
    assert_eq!(plan_counter(&plan, "index_files_pruned"), 0, "{plan}");
    let names = "SELECT DISTINCT name FROM spans WHERE text_match(name, 'cart')".to_string();
    assert_eq!(column(names, "name").await, ["GET /cart"]);
    let e = api.error("acme", "SELECT match_all('x') AS m FROM logs", 400).await;
    assert!(e.contains("WHERE"), "{e}");
    let e = api.error("acme", "SELECT count(*) FROM logs, spans WHERE match_all('x')", 400).await;
    assert!(e.contains("ambiguous"), "{e}");
    let e = api.error("acme", "SELECT count(*) FROM logs WHERE text_match(body, 'severity_text:ERROR')", 400).await;
    assert!(e.contains("severity_text") && e.contains("match_all"), "{e}");

    // LIKE and ILIKE keep their meaning; the index only skips files where no word holds the text.
    let like = |p: &'static str| format!("SELECT body FROM logs WHERE body ILIKE '{p}' ORDER BY body");
    assert_eq!(column(like("%DECLIN%"), "body").await, ["card declined"]);
    assert_eq!(column(like("%ed%"), "body").await, ["card declined", "checkout failed", "order placed"]);
    let case = "SELECT count(*) AS n FROM logs WHERE body LIKE '%Declined%'".to_string();
    assert_eq!(api.rows("acme", &case).await, json!([{"n": 0}]), "LIKE stays case-sensitive");
    let plan = explain(like("%nowhere%")).await;
    assert_eq!(pruning(&plan, "index_files_pruned"), (1, 0), "{plan}");
    let plan = explain(like("%d c%")).await;
    assert_eq!(plan_counter(&plan, "index_files_pruned"), 0, "a pattern across words is not narrowed: {plan}");
    assert_eq!(column(like("%d c%"), "body").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sql_and_limits_get_clear_errors_and_the_daemon_stays_up() {
    let api = start(1000).await;
    send_known_dataset(&api).await;
    let e = |sql: &'static str, status: u16| api.error("acme", sql, status);

    assert!(e("SELEC count(*) FROM spans", 400).await.contains("Line: 1, Column: 1"));
    let m = e("SELECT count(*) FROM spans WHERE", 400).await;
    assert!(m.contains("Expected: an expression"), "{m}");
    assert!(e("SELECT * FROM traces", 400).await.contains("table 'openwit.public.traces' not found"));
    let m = e("SELECT nope FROM spans", 400).await;
    assert!(m.contains("No field named nope") && m.contains("spans.name"), "{m}");
    assert!(e("SELECT count(*) FROM spans WHERE trace_id = 'xyz'", 400).await.contains("not a hex id"));
    assert!(e("SELECT attr(name, 'k') FROM spans", 400).await.contains("must be an attributes map"));
    let (code, body) = api.text("acme", "SELECT 1", "yaml").await;
    assert_eq!(code, 400);
    assert!(body.contains("not one of json, ndjson, csv, arrow"));
    let r = client()
        .post(format!("http://127.0.0.1:{}/api/v1/query", api.port))
        .body("{\"query\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("\\\"sql\\\""));
    let r = client().get(format!("http://127.0.0.1:{}/api/v1/query", api.port)).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // Limits: rows (40 in this config), memory (16 MiB), time (3 s).
    let m = e("SELECT * FROM spans CROSS JOIN logs CROSS JOIN metrics", 413).await;
    assert!(m.contains("more than 40 rows") && m.contains("max_rows"), "{m}");
    let m = e("SELECT array_agg(value) FROM range(5000000)", 413).await;
    assert!(m.contains("Resources exhausted") && m.contains("max_memory_megabytes"), "{m}");
    let started = std::time::Instant::now();
    let m = e("SELECT count(*) FROM range(1000000000000)", 408).await;
    assert!(m.contains("longer than 3s"), "{m}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // The operator's DataFusion option (`extensions.query.datafusion`) is the session's.
    let set = "SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.batch_size'";
    assert_eq!(api.rows("acme", set).await, json!([{"value": "4096"}]));

    // Still up: queries answer, the batch monitor on the same port answers, ingest is accepted.
    assert_eq!(api.rows("acme", "SELECT count(*) AS n FROM spans").await, json!([{"n": 5}]));
    let status = client().get(format!("http://127.0.0.1:{}/api/batch-monitor/status", api.port)).send().await.unwrap();
    assert_eq!(status.status(), 200);
    api.daemon.assert_serving().await;
    let m = api.daemon.metrics_text().await;
    for outcome in ["ok", "invalid", "limit", "timeout"] {
        assert!(m.contains(&format!("openwit_query_requests_total{{outcome=\"{outcome}\"}}")), "{outcome}: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_command_runs_offline_and_against_a_daemon() {
    let api = start(1000).await;
    send_known_dataset(&api).await;
    let run = |args: Vec<String>| {
        let out = std::process::Command::new(bin()).args(&args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let data = api.daemon.path("data").display().to_string();
    let sql = "SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1";
    let offline = |format: &str, tenant: &str| {
        run(vec![
            "query".into(),
            "--data-dir".into(),
            data.clone(),
            "--tenant".into(),
            tenant.into(),
            "--format".into(),
            format.into(),
            sql.into(),
        ])
    };
    let (ok, out, err) = offline("csv", "acme");
    assert!(ok, "{err}");
    assert_eq!(out, "service_name,n\ncart,2\ncheckout,2\npayment,1\n");
    let (ok, out, _) = offline("csv", "globex");
    assert!(ok);
    assert_eq!(out, "service_name,n\nglobex-api,1\n");
    let (ok, out, err) = offline("table", "acme");
    assert!(ok, "{err}");
    assert!(out.contains("| checkout     | 2 |") && out.contains("(3 rows)"), "{out}");

    let endpoint = format!("http://127.0.0.1:{}", api.port);
    let online = |format: &str| {
        run(vec![
            "query".into(),
            "--endpoint".into(),
            endpoint.clone(),
            "--tenant".into(),
            "acme".into(),
            "--format".into(),
            format.into(),
            sql.into(),
        ])
    };
    let (ok, out, err) = online("ndjson");
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "{\"service_name\":\"cart\",\"n\":2}\n{\"service_name\":\"checkout\",\"n\":2}\n{\"service_name\":\"payment\",\"n\":1}\n"
    );
    let (ok, out, err) = online("table");
    assert!(ok, "{err}");
    assert!(out.contains("| payment      | 1 |"), "{out}");
    // Errors: the daemon's message; a missing catalog named.
    let (ok, _, err) =
        run(vec!["query".into(), "--endpoint".into(), endpoint.clone(), "SELECT nope FROM spans".into()]);
    assert!(!ok && err.contains("No field named nope") && err.contains("400"), "{err}");
    let (ok, _, err) = run(vec!["query".into(), "--data-dir".into(), "/nonexistent".into(), "SELECT 1".into()]);
    assert!(!ok && err.contains("no catalog at /nonexistent/catalog.db"), "{err}");
}
