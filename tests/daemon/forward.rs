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

/// An OTLP/HTTP destination that answers each request after `delay`; returns its port and the most
/// requests it held at once.
async fn slow_destination(delay: Duration) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let held = most.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (running, most) = (running.clone(), most.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, held)
}

/// `sending_queue.num_consumers` exports that many batches at once (one at a time without a queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn num_consumers_exports_batches_at_once() {
    for (queue, expect) in [("\n    sending_queue: {num_consumers: 4}", 4), ("", 1)] {
        let (port, most) = slow_destination(Duration::from_millis(400)).await;
        let config = format!(
            "
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{port}
    compression: none{queue}
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [otlphttp]
"
        );
        let d = Daemon::start_on_base(&[&config]).await;
        for i in 0..8 {
            let body = crate::harness::log_request(&format!("line {i}")).encode_to_vec();
            assert_eq!(d.post_protobuf("/v1/logs", body).await, 200);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while d.metric_sum("otelcol_exporter_sent_log_records_total").await < 8.0 {
            assert!(std::time::Instant::now() < deadline, "not all exported: {}", d.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), expect, "{queue:?}");
    }
}
