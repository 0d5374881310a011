//! Acknowledgement by explicit verdict, through the real binary: a component that panics or stops early
//! mid-load loses nothing acknowledged and stores nothing twice (what it held is delivered again from
//! the WAL); a batch that kills its component every time is failed as poison, not looped on forever;
//! a permanently failing exporter leaves its batches failed and listed until an operator retries them.

use crate::batch_monitor::{get, until};
use crate::crash::{sender, stored};
use crate::harness::{Daemon, client, free_port, read_testing};
use crate::ingest::rich_logs;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Traces through a batch processor (merging and splitting WAL batches) and PROCESSORS to a `testing`
/// exporter with EXPORTER settings (over the harness's `BASE`).
const PIPELINE: &str = "
receivers:
  otlp:
    backpressure_wait: 2s
processors:
  batch:
    send_batch_size: 100
    send_batch_max_size: 100
    timeout: 10ms
  testing:
    TESTING_PROCESSOR
exporters:
  testing:
    path: {dir}/stored.bin
    delay: 1ms
    EXPORTER
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [PROCESSORS]
      exporters: [testing]
";

fn config(processors: &str, testing_processor: &str, exporter: &str) -> String {
    PIPELINE
        .replace("PROCESSORS", processors)
        .replace("TESTING_PROCESSOR", testing_processor)
        .replace("EXPORTER", exporter)
}

/// Four senders (two over gRPC, two over HTTP) for a while; the ids of the acknowledged spans.
async fn load(d: &Daemon, for_how_long: Duration) -> HashSet<u64> {
    let next = Arc::new(AtomicU64::new(1));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(sender(
                d.http_url("/v1/traces"),
                d.grpc_url(),
                i % 2 == 1,
                20,
                next.clone(),
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(for_how_long).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    acked.lock().unwrap().clone()
}

/// Waits until every acknowledged span is stored, then checks each is stored exactly once.
async fn assert_stored_exactly_once(d: &Daemon, acked: &HashSet<u64>) {
    assert!(acked.len() >= 500, "the load should have been acknowledged in volume: {}", acked.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut s = stored(d);
    while !acked.iter().all(|id| s.contains_key(id)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = stored(d);
    }
    let missing = acked.iter().filter(|id| !s.contains_key(id)).count();
    assert_eq!(missing, 0, "acknowledged spans lost; log:\n{}", d.logs());
    let twice: Vec<_> = s.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(twice.is_empty(), "spans stored more than once: {twice:?}");
    // Every request was answered before the load ended: a refused one was never written.
    let unacked: Vec<_> = s.keys().filter(|id| !acked.contains(id)).take(10).collect();
    assert!(unacked.is_empty(), "spans stored that were not acknowledged: {unacked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_that_panics_mid_load_loses_nothing_and_stores_nothing_twice() {
    let d = Daemon::start_on_base(&[&config("batch", "", "panic_on_export: 8")]).await;
    let acked = load(&d, Duration::from_millis(1500)).await;
    assert_stored_exactly_once(&d, &acked).await;
    assert_eq!(d.metric_sum("openwit_component_panics_total{component=\"testing\"}").await, 1.0);
    let logs = d.logs();
    assert!(logs.contains("panicked: exporter testing: panicking in export call 8"), "{logs}");
    assert!(logs.contains("exporter testing, which panicked, dropped them"), "{logs}");
    assert!(logs.contains("delivering lost batches again"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_that_panics_mid_load_loses_nothing_and_stores_nothing_twice() {
    // The testing processor sits after the batch processor: it panics holding a merged batch made of
    // pieces of many WAL batches.
    let d = Daemon::start_on_base(&[&config("batch, testing", "panic_on_batch: 8", "")]).await;
    let acked = load(&d, Duration::from_millis(1500)).await;
    assert_stored_exactly_once(&d, &acked).await;
    assert_eq!(d.metric_sum("openwit_component_panics_total{component=\"testing\"}").await, 1.0);
    assert!(d.logs().contains("processor testing in pipeline traces panicked"), "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_that_stops_early_loses_nothing_and_stores_nothing_twice() {
    // It returns from its loop with a batch in hand and batches still queued behind it.
    let d = Daemon::start_on_base(&[&config("batch, testing", "return_on_batch: 8", "")]).await;
    let acked = load(&d, Duration::from_millis(1500)).await;
    assert_stored_exactly_once(&d, &acked).await;
    assert!(d.logs().contains("returned while its input is still open"), "{}", d.logs());
}

/// A trace request of one span named `name`, with span id `id`.
fn named_span(name: &str, id: u64) -> Vec<u8> {
    let mut r: ExportTraceServiceRequest = crate::crash::request(id, 1);
    r.resource_spans[0].scope_spans[0].spans[0].name = name.to_string();
    r.encode_to_vec()
}

/// One WAL batch per request, the batch monitor on API, over the harness's `BASE`; EXPORTERS and
/// PIPELINES follow.
const MONITORED: &str = "
receivers:
  otlp:
    batching:
      max_items: 1
extensions:
  batch_monitor:
    endpoint: 127.0.0.1:API
  catalog:
    flush_interval: 50ms
service:
  extensions: [health_check, batch_monitor]
";

const POISON: &str = "
exporters:
  testing:
    path: {dir}/stored.bin
    panic_on_text: poison
  testing/logs:
    path: {dir}/logs.bin
extensions:
  wal:
    max_redeliveries: 2
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [testing]
    logs:
      receivers: [otlp]
      exporters: [testing/logs]
";

/// The harness's `BASE`, then `MONITORED` with the batch monitor on `api`, then `config`.
async fn start_monitored(api: u16, config: &str) -> Daemon {
    Daemon::start_on_base(&[&MONITORED.replace("API", &api.to_string()), config]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_panics_its_exporter_every_time_is_failed_as_poison() {
    let api = free_port();
    let d = start_monitored(api, POISON).await;
    for i in 1..=3 {
        assert_eq!(d.post_protobuf("/v1/traces", named_span("fine", i)).await, 200);
    }
    assert_eq!(d.post_protobuf("/v1/traces", named_span("poison", 100)).await, 200);
    for i in 4..=6 {
        assert_eq!(d.post_protobuf("/v1/traces", named_span("fine", i)).await, 200);
    }
    // The first delivery and two redeliveries panic; then the batch is failed, kept, and alerted on.
    let alerts = until(api, "/alerts", |v| v["failed"].as_array().is_some_and(|f| !f.is_empty())).await;
    let failed = &alerts["failed"][0];
    let error = failed["error_message"].as_str().unwrap();
    assert!(error.contains("poison batch") && error.contains("3 deliveries"), "{failed}");
    assert!(error.contains("exporter testing, which panicked"), "{failed}");
    assert_eq!(failed["status"], "failed");
    assert_eq!(d.metric_sum("openwit_component_panics_total{component=\"testing\"}").await, 3.0);
    // Everything else is stored once; the poison span never.
    let s = stored(&d);
    assert_eq!(s.keys().copied().collect::<HashSet<u64>>(), (1..=6).collect(), "{s:?}");
    assert!(s.values().all(|n| *n == 1));
    // No more panics: the batch is not delivered again on its own.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(d.metric_sum("openwit_component_panics_total{component=\"testing\"}").await, 3.0);
    // The daemon and its other pipelines kept serving throughout.
    assert_eq!(d.post_protobuf("/v1/traces", named_span("fine", 7)).await, 200);
    assert_eq!(d.post_protobuf("/v1/logs", rich_logs("after").encode_to_vec()).await, 200);
    let logs_path = d.path("logs.bin");
    let n = crate::harness::eventually(
        Duration::from_secs(10),
        || read_testing::<ExportLogsServiceRequest>(&logs_path).len(),
        |n| *n == 1,
    )
    .await;
    assert_eq!(n, 1);
}

const PERMANENT: &str = "
exporters:
  testing:
    path: {dir}/stored.bin
    fail_permanently_while: {dir}/broken
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [testing]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_failing_exporter_leaves_its_batches_failed_until_an_operator_retries_them() {
    let api = free_port();
    let d = start_monitored(api, PERMANENT).await;
    std::fs::write(d.path("broken"), b"").unwrap();
    for i in 0..3 {
        assert_eq!(d.post_protobuf("/v1/logs", rich_logs(&format!("p{i}")).encode_to_vec()).await, 200);
    }
    let failed = until(api, "/batches?status=failed", |v| v["batches"].as_array().is_some_and(|b| b.len() == 3)).await;
    for b in failed["batches"].as_array().unwrap() {
        let e = b["error_message"].as_str().unwrap();
        assert!(e.starts_with("permanent failure: exporter testing") && e.contains("fail_permanently_while"), "{b}");
        assert_eq!(b["error_stage"], "storage");
    }
    let (_, alerts) = get(api, "/alerts").await;
    assert_eq!(alerts["failed"].as_array().unwrap().len(), 3, "{alerts}");
    // Not retried in place, and kept: nothing stored, nothing completes on its own.
    assert!(!d.logs().contains("retrying in"), "{}", d.logs());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(read_testing::<ExportLogsServiceRequest>(&d.path("stored.bin")).is_empty());
    assert_eq!(get(api, "/batches?status=completed").await.1["batches"].as_array().map(Vec::len), Some(0));

    // Fixed: the operator retries, and every failed batch is stored once.
    std::fs::remove_file(d.path("broken")).unwrap();
    let r = client().post(format!("http://127.0.0.1:{api}/api/batch-monitor/retry-failed")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["retried"], 3);
    let done = until(api, "/batches?status=completed", |v| v["batches"].as_array().is_some_and(|b| b.len() == 3)).await;
    assert!(done["batches"].as_array().unwrap().iter().all(|b| b["retry_count"] == 1), "{done}");
    let stored = read_testing::<ExportLogsServiceRequest>(&d.path("stored.bin"));
    let items: Vec<_> = stored.iter().flat_map(|(items, _)| items.iter().copied()).collect();
    let unique: HashSet<_> = items.iter().copied().collect();
    assert_eq!((items.len(), unique.len()), (6, 6), "three batches of two records, each once");
}
