//! The load generator counts what the daemon acknowledged, and classifies what it refused.

use crate::harness::Daemon;
use openwit_bench::load::{self, Plan, Signal, Transport};
use std::sync::Arc;

/// Over the harness's `BASE`.
const NOP: &str = "
receivers:
  otlp:
    backpressure_wait: 5ms
processors:
  batch:
exporters:
  nop:
  testing:
    path: {dir}/slow.bin
    delay: 200ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [nop]
    logs:
      receivers: [otlp]
      exporters: [testing]
";

fn plan(d: &Daemon, signal: Signal, transport: Transport, total: u64) -> Plan {
    let port = if transport == Transport::Grpc { d.grpc } else { d.http };
    Plan {
        signal,
        transport,
        endpoint: format!("127.0.0.1:{port}"),
        requests: Arc::new(load::encode_requests(signal, 9, 4, 250)),
        items_per_request: 250,
        concurrency: 4,
        total_items: Some(total),
        duration: None,
        rate: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_items_match_what_the_daemon_accepted() {
    let d = Daemon::start_on_base(&[NOP]).await;
    let grpc = load::run(&plan(&d, Signal::Traces, Transport::Grpc, 20_000)).await.unwrap();
    let http = load::run(&plan(&d, Signal::Traces, Transport::Http, 10_000)).await.unwrap();
    assert_eq!((grpc.items_acked, http.items_acked), (20_000, 10_000), "{grpc:?} {http:?}");
    assert!(grpc.errors.is_empty() && http.errors.is_empty());
    assert!(
        grpc.latency_p50_ms > 0.0
            && grpc.latency_p99_ms >= grpc.latency_p50_ms
            && grpc.latency_max_ms >= grpc.latency_p99_ms
    );
    let m = d.metrics_text().await;
    assert!(m.contains("otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 20000"), "{m}");
    assert!(m.contains("otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"http\"} 10000"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_kind() {
    let d = Daemon::start_on_base(&[NOP]).await;
    let mut p = plan(&d, Signal::Logs, Transport::Http, 40_000);
    p.concurrency = 16;
    let r = load::run(&p).await.unwrap();
    assert!(r.errors.get("http 429").copied().unwrap_or(0) > 0, "{r:?}");
    assert_eq!(r.items_sent, 40_000);
    assert_eq!(r.items_acked + 250 * r.errors.values().sum::<u64>(), r.items_sent);
    let g = load::run(&plan(&d, Signal::Logs, Transport::Grpc, 40_000)).await.unwrap();
    assert!(g.errors.get("grpc Unavailable").copied().unwrap_or(0) > 0, "{g:?}");
}
