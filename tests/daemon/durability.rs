//! The WAL seen from outside: `openwit wal inspect`, quarantine at start, and the disk budget.

use crate::harness::{Daemon, bin, eventually, read_testing, span_count};
use crate::ingest::rich_traces;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::process::Command;
use std::time::Duration;

const WAL_CONFIG: &str = "
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
    batching:
      max_items: 1
exporters:
  testing:
    path: {dir}/stored.bin
    delay: DELAY
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  wal:
    segment_megabytes: 1
    max_disk_megabytes: 1
    janitor_interval: 50ms
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [testing]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
";

async fn post(d: &Daemon, tenant: &str, body: Vec<u8>) -> reqwest::Response {
    d.post_protobuf_as(tenant, "/v1/traces", body).await
}

fn inspect(d: &Daemon) -> String {
    let out = Command::new(bin()).args(["wal", "inspect"]).arg(d.path("data/wal")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_inspect_reports_batches_and_corruption_is_quarantined_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WAL_CONFIG.replace("DELAY", "1ms");
    let mut d = Daemon::spawn_in(dir.path(), &cfg, &[]);
    d.wait_ready().await;
    for _ in 0..3 {
        assert_eq!(post(&d, "acme", rich_traces("inspect").encode_to_vec()).await.status(), 200);
    }
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(20)).success());
    let text = inspect(&d);
    assert!(text.contains("tenant=acme signal=traces receiver=otlp items=2"), "{text}");
    assert!(text.contains("complete"), "{text}");
    assert!(text.contains("3 batches, 0 pending"), "{text}");
    assert!(text.contains("CRC ok"), "{text}");

    // Flip a byte inside the first batch record: inspect sees it, the daemon quarantines it.
    let seg = std::fs::read_dir(d.path("data/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 200)
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[60] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let text = inspect(&d);
    assert!(text.contains("CRC FAILED for 1 range(s)") && text.contains("CRC mismatch"), "{text}");
    let d2 = Daemon::spawn_in(dir.path(), &cfg, &[]);
    d2.wait_ready().await;
    assert!(d2.logs().contains("corrupt WAL record quarantined"), "{}", d2.logs());
    assert!(d2.metrics_text().await.contains("openwit_wal_quarantined_records_total 1"));
    assert_eq!(std::fs::read_dir(d2.path("data/wal/quarantine")).unwrap().count(), 1);
    assert_eq!(post(&d2, "acme", rich_traces("after").encode_to_vec()).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_disk_budget_requests_are_refused_retryably_and_nothing_is_lost() {
    let d = Daemon::start(&WAL_CONFIG.replace("DELAY", "150ms")).await;
    // ~100 KiB requests: the 1 MiB budget fills long before the slow exporter drains it.
    let mut req = rich_traces("budget");
    req.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(100 << 10);
    let body = req.encode_to_vec();
    let (mut accepted, mut refused) = (0usize, 0usize);
    for _ in 0..60 {
        let r = post(&d, "default", body.clone()).await;
        match r.status().as_u16() {
            200 => accepted += 1,
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                let st: String = String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned();
                assert!(st.contains("disk budget"), "{st}");
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "the budget should have been hit");
    assert!(accepted > 5);
    // Once the exporter catches up and the janitor removes stored segments, data is accepted again.
    let again =
        eventually(Duration::from_secs(30), || std::fs::read_dir(d.path("data/wal")).unwrap().count(), |n| *n <= 2)
            .await;
    assert!(again <= 2, "segments were not collected: {again}");
    let mut ok_again = false;
    for _ in 0..50 {
        if post(&d, "default", body.clone()).await.status() == 200 {
            ok_again = true;
            accepted += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok_again, "data should be accepted again once space returns");
    let path = d.path("stored.bin");
    let stored = eventually(
        Duration::from_secs(60),
        || span_count(read_testing::<ExportTraceServiceRequest>(&path).iter().map(|(_, r)| r)),
        |n| *n >= accepted * 2,
    )
    .await;
    assert_eq!(stored, accepted * 2, "every accepted item stored once, no refused one");
}
