//! SIGTERM: stop accepting, drain everything accepted through processors and exporters, exit 0.

use crate::harness::{Daemon, client, read_testing, span_count};
use crate::ingest::rich_traces;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::time::Duration;

const HELD: &str = "
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    timeout: 1h
    send_batch_size: 1000000
exporters:
  testing:
    path: {dir}/traces.bin
    delay: 50ms
  testing/direct:
    path: {dir}/direct.bin
    delay: 50ms
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [testing]
    traces/direct:
      receivers: [otlp]
      exporters: [testing/direct]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_everything_accepted_then_exits_zero() {
    let mut d = Daemon::start(HELD).await;
    let body = rich_traces("held").encode_to_vec();
    let n = 30;
    for _ in 0..n {
        let r = client()
            .post(d.http_url("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The batched pipeline holds its items (1h timeout); the direct one is still working through its queue.
    d.signal(libc::SIGTERM);
    // While draining, the health check says so.
    let health = format!("http://127.0.0.1:{}/", d.health);
    let mut saw_unavailable = false;
    for _ in 0..40 {
        match client().get(&health).send().await {
            Ok(r) if r.status() == 503 => {
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["status"], "Server not available");
                saw_unavailable = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => break,
        }
    }
    assert!(saw_unavailable, "health check should answer 503 while stopping");
    let status = d.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}; log:\n{}", d.logs());
    let mut got = read_testing::<ExportTraceServiceRequest>(&d.path("traces.bin"));
    got.extend(read_testing::<ExportTraceServiceRequest>(&d.path("direct.bin")));
    // Each request has 2 spans and reaches both pipelines.
    assert_eq!(
        span_count(got.iter().map(|(_, r)| r)),
        n * 2 * 2,
        "items accepted before SIGTERM were lost; log:\n{}",
        d.logs()
    );
    assert!(d.logs().contains("stopped cleanly"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_exceeded_exits_non_zero_with_a_message() {
    let cfg = HELD.replace("delay: 50ms", "delay: 2s");
    let mut d = Daemon::spawn(&cfg, &["--shutdown-timeout", "300ms"]);
    d.wait_ready().await;
    for _ in 0..3 {
        let r = client()
            .post(d.http_url("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(rich_traces("slow").encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    assert!(d.logs().contains("did not drain within the shutdown timeout"), "{}", d.logs());
}
