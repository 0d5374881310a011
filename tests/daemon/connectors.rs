//! Connectors through the real binary, fed by the OpenTelemetry SDK: `routing` sends each tenant (and
//! each error) to its own pipeline and exporter; `forward` joins a sampling pipeline to a storing one,
//! and `probabilistic_sampler` keeps exactly the traces the Collector's hash-seed algorithm keeps.

use crate::harness::{Daemon, eventually, read_records};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Log records `bodies` at `severity` from tenant `tenant`, through the SDK over OTLP/HTTP.
fn send_logs(endpoint: String, tenant: &str, records: &[(&str, opentelemetry::logs::Severity)]) {
    use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
    use opentelemetry_otlp::{LogExporter, Protocol, WithExportConfig, WithHttpConfig};
    let exporter = LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/logs"))
        .with_headers([("X-Scope-OrgID".to_string(), tenant.to_string())].into_iter().collect())
        .build()
        .unwrap();
    let lp = opentelemetry_sdk::logs::SdkLoggerProvider::builder().with_batch_exporter(exporter).build();
    let logger = lp.logger("shop");
    for (body, sev) in records {
        let mut rec = logger.create_log_record();
        rec.set_body(AnyValue::from(body.to_string()));
        rec.set_severity_number(*sev);
        logger.emit(rec);
    }
    lp.force_flush().unwrap();
    lp.shutdown().unwrap();
}

fn log_bodies(reqs: &[ExportLogsServiceRequest]) -> BTreeSet<String> {
    reqs.iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .filter_map(|l| match l.body.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_sends_each_tenant_and_each_error_to_its_own_pipeline() {
    let config = r#"
connectors:
  routing:
    default_pipelines: [logs/other]
    table:
      - context: request
        condition: request["X-Scope-OrgID"] == "acme"
        pipelines: [logs/acme]
      - context: log
        condition: severity_number >= SEVERITY_NUMBER_ERROR
        pipelines: [logs/errors, logs/audit]
processors:
  batch:
    timeout: 50ms
exporters:
  file/acme: {path: "{dir}/acme.bin", format: proto}
  file/errors: {path: "{dir}/errors.bin", format: proto}
  file/audit: {path: "{dir}/audit.bin", format: proto}
  file/other: {path: "{dir}/other.bin", format: proto}
service:
  pipelines:
    logs/in:
      receivers: [otlp]
      processors: [batch]
      exporters: [routing]
    logs/acme: {receivers: [routing], exporters: [file/acme]}
    logs/errors: {receivers: [routing], exporters: [file/errors]}
    logs/audit: {receivers: [routing], exporters: [file/audit]}
    logs/other: {receivers: [routing], exporters: [file/other]}
"#;
    use opentelemetry::logs::Severity::{Error, Info};
    let d = Daemon::start_on_base(&[config]).await;
    let url = d.http_url("");
    tokio::task::spawn_blocking(move || {
        send_logs(url.clone(), "acme", &[("acme info", Info), ("acme error", Error)]);
        send_logs(url, "globex", &[("globex info", Info), ("globex error", Error)]);
    })
    .await
    .unwrap();

    let read = |f: &str| log_bodies(&read_records::<ExportLogsServiceRequest>(&d.path(f)));
    let acme = eventually(WAIT, || read("acme.bin"), |b| b.len() >= 2).await;
    assert_eq!(acme, set(&["acme info", "acme error"]), "the tenant route comes first; {}", d.logs());
    let errors = eventually(WAIT, || read("errors.bin"), |b| !b.is_empty()).await;
    assert_eq!(errors, set(&["globex error"]));
    assert_eq!(eventually(WAIT, || read("audit.bin"), |b| !b.is_empty()).await, set(&["globex error"]));
    assert_eq!(eventually(WAIT, || read("other.bin"), |b| !b.is_empty()).await, set(&["globex info"]));
    // Each item went one way: nothing else arrived anywhere, nothing was dropped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total: usize = ["acme.bin", "errors.bin", "other.bin"].iter().map(|f| read(f).len()).sum();
    assert_eq!(total, 4);
    assert_eq!(d.metric_sum("openwit_processor_dropped_log_records_total").await, 0.0);
    // Every WAL batch completed once all its routes stored their parts, and none failed.
    let deadline = std::time::Instant::now() + WAIT;
    while d.metric_sum("openwit_wal_pending_batches").await > 0.0 {
        assert!(std::time::Instant::now() < deadline, "batches still pending: {}", d.metrics_text().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let written = d.metric_sum("openwit_wal_batches_total{outcome=\"written\"}").await;
    assert!(written >= 2.0);
    assert_eq!(d.metric_sum("openwit_wal_batches_total{outcome=\"completed\"}").await, written);
    assert_eq!(d.metric_sum("openwit_wal_batches_total{outcome=\"failed\"}").await, 0.0);
}

/// FNV-1a over the seed's little-endian bytes then the trace id, as the Collector's `hash_seed` mode.
fn collector_keeps(trace_id: &[u8; 16], seed: u32, percent: f32) -> bool {
    let mut h: u32 = 0x811c_9dc5;
    for b in seed.to_le_bytes().iter().chain(trace_id) {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    h & 0x3fff < (percent * (16384.0f32 / 100.0)) as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_joins_a_sampling_pipeline_that_keeps_the_collectors_traces() {
    let config = "
connectors:
  forward:
processors:
  probabilistic_sampler:
    sampling_percentage: 30
    hash_seed: 22
  batch:
    timeout: 50ms
exporters:
  file/traces: {path: '{dir}/traces.bin', format: proto}
service:
  pipelines:
    traces/sample:
      receivers: [otlp]
      processors: [probabilistic_sampler]
      exporters: [forward]
    traces/store:
      receivers: [forward]
      processors: [batch]
      exporters: [file/traces]
";
    let d = Daemon::start_on_base(&[config]).await;
    let url = d.grpc_url();
    let sent: Vec<[u8; 16]> = tokio::task::spawn_blocking(move || {
        use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
        use opentelemetry_otlp::{SpanExporter, WithExportConfig};
        let exporter = SpanExporter::builder().with_tonic().with_endpoint(url).build().unwrap();
        let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder().with_batch_exporter(exporter).build();
        let tracer = tp.tracer("sampler");
        let ids = (0..300)
            .map(|_| {
                let mut s = tracer.start("op");
                let id = s.span_context().trace_id().to_bytes();
                s.end();
                id
            })
            .collect();
        tp.force_flush().unwrap();
        tp.shutdown().unwrap();
        ids
    })
    .await
    .unwrap();
    let expected: BTreeSet<[u8; 16]> = sent.iter().copied().filter(|id| collector_keeps(id, 22, 30.0)).collect();
    assert!((50..=130).contains(&expected.len()), "30 % of 300 traces: {}", expected.len());

    let read = || {
        read_records::<ExportTraceServiceRequest>(&d.path("traces.bin"))
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect::<Vec<_>>()
    };
    let spans = eventually(WAIT, read, |s| s.len() >= expected.len()).await;
    let kept: BTreeSet<[u8; 16]> = spans.iter().map(|s| s.trace_id.clone().try_into().unwrap()).collect();
    assert_eq!(kept, expected, "{}", d.logs());
    assert_eq!(spans.len(), expected.len(), "each kept span stored once");
    // Kept spans carry the decision in their tracestate, as the Collector writes it (30 % → th:b334).
    for s in &spans {
        assert!(s.trace_state.starts_with("ot=rv:") && s.trace_state.ends_with(";th:b334"), "{}", s.trace_state);
    }
    let dropped = d.metric_sum("openwit_processor_dropped_spans_total{processor=\"probabilistic_sampler\"}").await;
    assert_eq!(dropped as usize, sent.len() - expected.len());
}

#[test]
fn a_cycle_through_connectors_stops_the_start_with_the_cycle_named() {
    let config = "
connectors:
  forward/a:
  forward/b:
exporters:
  debug: {}
service:
  pipelines:
    logs/one:
      receivers: [otlp, forward/b]
      exporters: [forward/a]
    logs/two:
      receivers: [forward/a]
      exporters: [debug, forward/b]
";
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::spawn_in_on_base(dir.path(), config);
    let st = d.wait_exit(Duration::from_secs(20));
    assert!(!st.success());
    let logs = d.logs();
    assert!(logs.contains("cycle detected: logs/one → forward/a → logs/two → forward/b → logs/one"), "{logs}");
}
