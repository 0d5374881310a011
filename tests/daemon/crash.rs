//! The durability promise, tested the hard way: the real binary is killed with SIGKILL at random
//! moments under continuous load; after every restart, every acknowledged item is stored exactly once.

use crate::harness::{Daemon, client, read_testing};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Batching that splits and merges WAL batches (lineage is exercised), a slowish exporter (items are
/// in flight when the kill comes), small segments (rotation and the janitor run during the test); over
/// the harness's `BASE`.
const CONFIG: &str = "
receivers:
  otlp:
    backpressure_wait: 2s
processors:
  batch:
    send_batch_size: 150
    send_batch_max_size: 150
    timeout: 20ms
exporters:
  testing:
    path: {dir}/stored.bin
    delay: 3ms
extensions:
  wal:
    segment_megabytes: 1
    janitor_interval: 100ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [testing]
";

/// A request of `n` spans whose span ids are the numbers `first..first + n`.
pub fn request(first: u64, n: u64) -> ExportTraceServiceRequest {
    let spans = (first..first + n)
        .map(|i| Span {
            trace_id: [&[7u8; 8][..], &i.to_be_bytes()].concat(),
            span_id: i.to_be_bytes().to_vec(),
            name: format!("op-{}", i % 17),
            start_time_unix_nano: 1_700_000_000_000_000_000 + i,
            end_time_unix_nano: 1_700_000_000_000_000_000 + i + 1000,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// Sends until `stop`, recording the ids of acknowledged spans.
pub async fn sender(
    d_http: String,
    d_grpc: String,
    grpc: bool,
    per_request: u64,
    next: Arc<AtomicU64>,
    acked: Arc<Mutex<HashSet<u64>>>,
    stop: Arc<AtomicBool>,
) {
    let http = client();
    let mut g = if grpc { TraceServiceClient::connect(d_grpc).await.ok() } else { None };
    while !stop.load(Ordering::Relaxed) {
        let first = next.fetch_add(per_request, Ordering::Relaxed);
        let req = request(first, per_request);
        let ok = match g.as_mut() {
            Some(g) => g.export(req).await.is_ok(),
            None => http
                .post(&d_http)
                .header("content-type", "application/x-protobuf")
                .body(req.encode_to_vec())
                .send()
                .await
                .is_ok_and(|r| r.status() == 200),
        };
        if ok {
            acked.lock().unwrap().extend(first..first + per_request);
        } else if g.is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Every span id the `testing` exporter stored (in `stored.bin`), with how many times.
pub fn stored(d: &Daemon) -> HashMap<u64, usize> {
    let mut out = HashMap::new();
    for (_, req) in read_testing::<ExportTraceServiceRequest>(&d.path("stored.bin")) {
        for s in req.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
            *out.entry(u64::from_be_bytes(s.span_id[..8].try_into().unwrap())).or_default() += 1;
        }
    }
    out
}

/// Spans stored in the Parquet files under `root` (every file there, catalogued or not), by span id.
pub fn stored_in_parquet(root: &std::path::Path) -> HashMap<u64, usize> {
    let mut out = HashMap::new();
    for p in crate::harness::files_under(root, "parquet") {
        let bytes = bytes::Bytes::from(std::fs::read(&p).unwrap());
        for b in crate::parquet::read_parquet(bytes).0 {
            let ids = arrow::array::AsArray::as_binary::<i32>(b.column_by_name("span_id").unwrap());
            for id in ids.iter().flatten() {
                *out.entry(u64::from_be_bytes(id[..8].try_into().unwrap())).or_default() += 1;
            }
        }
    }
    out
}

/// Rounds of load and SIGKILL over the same data directory, then a last start and a clean stop:
/// every acknowledged span is stored exactly once (`stored` reads what the exporter wrote).
async fn kill_rounds(config: &str, rounds: u32, stored: impl Fn(&Daemon) -> HashMap<u64, usize>) {
    let dir = tempfile::tempdir().unwrap();
    let ended = load_and_end_rounds(dir.path(), None, config, rounds, &mut |d: &mut Daemon| {
        d.signal(libc::SIGKILL);
        d.wait_exit(Duration::from_secs(10));
    })
    .await;
    check_exactly_once(dir.path(), None, config, &ended, stored).await;
}

/// What rounds of load left: the spans acknowledged, and the first id never sent.
pub struct Ended {
    pub acked: HashSet<u64>,
    pub sent_below: u64,
}

/// Starts the daemon on `dir`, its log in `dir` or in `log`.
fn spawn(dir: &std::path::Path, log: Option<&std::path::Path>, config: &str) -> Daemon {
    match log {
        Some(log) => Daemon::spawn_in_on_base_logging_to(dir, config, log),
        None => Daemon::spawn_in_on_base(dir, config),
    }
}

/// A small deterministic random source (xorshift64): the same moments in every run of a test.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// `CONFIG` with the Parquet exporter in place of `testing`: small files, often, so that kills and cuts
/// land between writing, finalizing, recording and storing files.
pub fn parquet_config() -> String {
    let config = CONFIG
        .replace(
            "  testing:
    path: {dir}/stored.bin
    delay: 3ms
",
            "  parquet:
    endpoint: {dir}/bucket
    rotation:
      max_age: 150ms
      max_megabytes: 0.05
",
        )
        .replace("exporters: [testing]", "exporters: [parquet]");
    assert!(config.contains("exporters: [parquet]") && config.contains("max_age: 150ms"));
    config
}

/// Rounds over `dir`: the daemon starts, concurrent senders load it over gRPC and HTTP, and after a
/// random while `end` ends it (a SIGKILL, a power cut).
pub async fn load_and_end_rounds(
    dir: &std::path::Path,
    log: Option<&std::path::Path>,
    config: &str,
    rounds: u32,
    end: &mut dyn FnMut(&mut Daemon),
) -> Ended {
    let next = Arc::new(AtomicU64::new(1));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut rand = xorshift(0x9E37_79B9_7F4A_7C15);
    for round in 0..rounds {
        let mut d = spawn(dir, log, config);
        d.wait_ready().await;
        let stop = Arc::new(AtomicBool::new(false));
        // Even rounds: many small requests from many senders (fsync-heavy); odd rounds: fewer, larger.
        let (senders, per_request) = if round % 2 == 0 { (8, 5) } else { (3, 200) };
        let tasks: Vec<_> = (0..senders)
            .map(|i| {
                tokio::spawn(sender(
                    d.http_url("/v1/traces"),
                    d.grpc_url(),
                    i % 2 == 1,
                    per_request,
                    next.clone(),
                    acked.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(150 + rand() % 600)).await;
        end(&mut d);
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
    }
    let acked = acked.lock().unwrap().clone();
    Ended { acked, sent_below: next.load(Ordering::Relaxed) }
}

/// A last start replays whatever is left, then a clean stop: every acknowledged span is stored exactly
/// once, and nothing stored was never sent.
pub async fn check_exactly_once(
    dir: &std::path::Path,
    log: Option<&std::path::Path>,
    config: &str,
    ended: &Ended,
    stored: impl Fn(&Daemon) -> HashMap<u64, usize>,
) -> HashMap<u64, usize> {
    let mut d = spawn(dir, log, config);
    d.wait_ready().await;
    let acked = &ended.acked;
    assert!(acked.len() > 1000, "the load should have been acknowledged in volume: {}", acked.len());
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let s = stored(&d);
        if acked.iter().all(|id| s.contains_key(id)) || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("last start: everything acknowledged stored after {:?}", started.elapsed());
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(30)).success(), "{}", d.logs());
    let s = stored(&d);
    let missing: Vec<&u64> = acked.iter().filter(|id| !s.contains_key(id)).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged spans lost, e.g. {missing:?}; log:\n{}",
        acked.iter().filter(|id| !s.contains_key(id)).count(),
        d.logs()
    );
    let twice: Vec<(&u64, &usize)> = s.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(twice.is_empty(), "spans stored more than once: {twice:?}");
    let never_sent: Vec<&u64> = s.keys().filter(|id| **id == 0 || **id >= ended.sent_below).take(10).collect();
    assert!(never_sent.is_empty(), "spans stored that were never sent: {never_sent:?}");
    let logs = d.logs();
    assert!(logs.contains("replaying WAL batches"), "at least one restart should have replayed: {logs}");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_acknowledged_and_stores_nothing_twice() {
    kill_rounds(CONFIG, 10, stored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_parquet_storage_stores_every_acknowledged_span_exactly_once() {
    kill_rounds(&parquet_config(), 10, |d| stored_in_parquet(&d.path("bucket"))).await;
}
