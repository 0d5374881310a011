//! The `otlp` and `otlphttp` exporters forward to another daemon unchanged, and retry while it is down.

use crate::harness::{Daemon, FILE_PIPELINES, free_port};
use crate::ingest::{records, rich_logs, rich_metrics, rich_traces};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::time::Duration;

/// A daemon that forwards: traces over gRPC (the `otlp_grpc` alias), metrics over HTTP/JSON, logs over
/// HTTP/protobuf with zstd (the `otlp_http` alias).
fn forwarder(grpc_target: u16, http_target: u16) -> String {
    format!(
        "
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{{http}}
exporters:
  otlp_grpc:
    endpoint: 127.0.0.1:{grpc_target}
    tls:
      insecure: true
    keepalive: {{time: 10s, timeout: 2s, permit_without_stream: true}}
    balancer_name: pick_first
    wait_for_ready: true
    headers:
      x-scope-orgid: forwarded
    retry_on_failure:
      initial_interval: 100ms
  otlphttp/json:
    endpoint: http://127.0.0.1:{http_target}
    encoding: json
    compression: none
  otlp_http:
    endpoint: http://127.0.0.1:{http_target}
    compression: zstd
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 200ms
extensions:
  health_check:
    endpoint: 127.0.0.1:{{health}}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp_grpc]
    metrics:
      receivers: [otlp]
      exporters: [otlphttp/json]
    logs:
      receivers: [otlp]
      exporters: [otlp_http]
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_every_signal_unchanged() {
    let sink = Daemon::start(&FILE_PIPELINES.replace("verbosity: basic", "verbosity: normal")).await;
    let fwd = Daemon::start(&forwarder(sink.grpc, sink.http)).await;
    let (t, m, l) = (rich_traces("fwd"), rich_metrics("fwd"), rich_logs("fwd"));
    assert_eq!(fwd.post_protobuf("/v1/traces", t.encode_to_vec()).await, 200);
    assert_eq!(fwd.post_protobuf("/v1/metrics", m.encode_to_vec()).await, 200);
    assert_eq!(fwd.post_protobuf("/v1/logs", l.encode_to_vec()).await, 200);
    let got: Vec<ExportTraceServiceRequest> = records(&sink, "traces.bin", 1).await;
    assert_eq!(got, vec![t], "log:\n{}", fwd.logs());
    let got: Vec<ExportMetricsServiceRequest> = records(&sink, "metrics.bin", 1).await;
    assert_eq!(got, vec![m]);
    let got: Vec<ExportLogsServiceRequest> = records(&sink, "logs.bin", 1).await;
    assert_eq!(got, vec![l]);
    // Configured headers travel with the data: the sink saw the tenant they name.
    assert!(sink.logs().contains("tenant=forwarded"), "{}", sink.logs());
    let metrics = fwd.metrics_text().await;
    assert!(metrics.contains("otelcol_exporter_sent_spans_total{exporter=\"otlp_grpc\"} 2"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_the_destination_comes_up() {
    let (grpc_port, http_port) = (free_port(), free_port());
    let fwd = Daemon::start(&forwarder(grpc_port, http_port)).await;
    let (t, l) = (rich_traces("late"), rich_logs("late"));
    assert_eq!(fwd.post_protobuf("/v1/traces", t.encode_to_vec()).await, 200);
    assert_eq!(fwd.post_protobuf("/v1/logs", l.encode_to_vec()).await, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(fwd.logs().contains("retrying in"), "the exporter should be retrying:\n{}", fwd.logs());
    // Now the destination starts on the ports the forwarder was told about.
    let cfg = FILE_PIPELINES.replace("{grpc}", &grpc_port.to_string()).replace("{http}", &http_port.to_string());
    let sink = Daemon::start(&cfg).await;
    let got: Vec<ExportTraceServiceRequest> = records(&sink, "traces.bin", 1).await;
    assert_eq!(got, vec![t], "forwarder log:\n{}", fwd.logs());
    let got: Vec<ExportLogsServiceRequest> = records(&sink, "logs.bin", 1).await;
    assert_eq!(got, vec![l]);
}
