//! The daemon's own metrics as a Prometheus server reads them: every family has its help text and type
//! under the name of its samples, checked by Prometheus' own linter (`promtool check metrics`, from
//! Debian's `prometheus` package, which tests/run unpacks).

use crate::harness::{Daemon, client, free_port};
use crate::ingest::rich_traces;
use prost::Message;
use std::io::Write;
use std::process::{Command, Stdio};

/// Over the harness's `BASE`.
const CONFIG: &str = "
processors:
  batch:
    timeout: 10ms
exporters:
  parquet:
    endpoint: {dir}/bucket
    rotation:
      max_age: 100ms
  debug:
    verbosity: basic
extensions:
  query:
    endpoint: 127.0.0.1:QUERY
service:
  extensions: [health_check, query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet, debug]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_to_say_about_the_metrics() {
    let d = Daemon::start_on_base(&[&CONFIG.replace("QUERY", &free_port().to_string())]).await;
    let r = client()
        .post(d.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(rich_traces("m").encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Wait for the file to be stored, so that every family has samples.
    let files = "openwit_parquet_files_total{exporter=\"parquet\",table=\"spans\"}";
    for _ in 0..200 {
        if d.metric_sum(files).await >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let text = d.metrics_text().await;
    assert!(d.metric_sum(files).await >= 1.0, "{text}");
    for name in [
        "otelcol_receiver_accepted_spans_total",
        "otelcol_exporter_sent_spans_total",
        "otelcol_exporter_queue_size",
        "otelcol_processor_batch_batch_send_size_bucket",
        "openwit_wal_batches_total",
        "openwit_parquet_files_total",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n---\n{text}");
}

/// `promtool`: where tests/run unpacks it (`$OPENWIT_TEST_TOOLS/prometheus`), on PATH, or where Debian
/// installs it.
fn promtool() -> String {
    let unpacked = std::env::var("OPENWIT_TEST_TOOLS").map(|t| format!("{t}/prometheus/usr/bin/promtool"));
    for p in unpacked.into_iter().chain(["promtool".to_string(), "/usr/bin/promtool".to_string()]) {
        if Command::new(&p).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return p;
        }
    }
    panic!("promtool not found: run tests/run (it unpacks Debian's `prometheus` package) or install that package");
}
