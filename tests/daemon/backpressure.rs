//! A slow exporter turns into retryable answers for clients, and memory stays bounded.

use crate::harness::{Daemon, client, eventually, read_testing, span_count};
use crate::ingest::rich_traces;
use futures::future::join_all;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use std::time::Duration;

/// Over the harness's `BASE`.
const SLOW: &str = "
receivers:
  otlp:
    backpressure_wait: 20ms
    # One WAL batch per request (2 spans): a wave of 40 requests is 40 batches for a pipeline that
    # drains 10 a second, however the group commit happens to time them.
    batching:
      max_items: 2
exporters:
  testing:
    path: {dir}/traces.bin
    delay: 100ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [testing]
";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_exporter_yields_retryable_answers_and_bounded_memory() {
    let d = Daemon::start_on_base(&[SLOW]).await;
    let body = rich_traces("bp").encode_to_vec(); // 2 spans per request
    let c = client();
    let mut accepted = 0usize;
    let mut refused = 0usize;
    let mut peak_queue = 0i64;
    let mut peak_rss = 0u64;
    // Waves of concurrent requests, far faster than 10 batches/s can drain.
    for _ in 0..10 {
        let wave = (0..40).map(|_| {
            c.post(d.http_url("/v1/traces")).header("content-type", "application/x-protobuf").body(body.clone()).send()
        });
        for r in join_all(wave).await {
            let r = r.unwrap();
            match r.status().as_u16() {
                200 => accepted += 1,
                429 => {
                    assert_eq!(r.headers()["retry-after"], "1", "a refusal must say when to retry");
                    refused += 1;
                }
                other => panic!("unexpected status {other}: {}", r.text().await.unwrap()),
            }
        }
        let m = d.metrics_text().await;
        let q: i64 = m
            .lines()
            .find(|l| l.starts_with("otelcol_exporter_queue_size{exporter=\"testing\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        peak_queue = peak_queue.max(q);
        peak_rss = peak_rss.max(rss_kib(d.pid()));
    }
    assert!(refused > 0, "a full pipeline must refuse");
    assert!(accepted > 0);
    assert!(peak_queue <= 16, "queue grew past its capacity: {peak_queue}");
    assert!(peak_rss < 256 * 1024, "memory not bounded: {peak_rss} KiB");

    // gRPC clients get UNAVAILABLE (retryable) while the pipeline is full.
    let mut g = TraceServiceClient::connect(d.grpc_url()).await.unwrap();
    let req = rich_traces("grpc-bp");
    let results = join_all((0..40).map(|_| {
        let mut g = g.clone();
        let r = req.clone();
        async move { g.export(r).await }
    }))
    .await;
    let mut grpc_accepted = 0;
    for r in results {
        match r {
            Ok(_) => grpc_accepted += 1,
            Err(s) => assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}"),
        }
    }
    assert!(grpc_accepted < 40, "gRPC should also be refused while full");
    accepted += grpc_accepted;

    // Everything accepted is stored, nothing refused is (2 spans per request).
    let path = d.path("traces.bin");
    let stored = || span_count(read_testing::<ExportTraceServiceRequest>(&path).iter().map(|(_, r)| r));
    let got = eventually(Duration::from_secs(60), stored, |n| *n >= accepted * 2).await;
    assert_eq!(got, accepted * 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored(), accepted * 2, "refused data was stored");
    g.export(rich_traces("after")).await.expect("accepts again once drained");
}

/// Over the harness's `BASE`: a budget of 1 MiB, and WAL batches of one request each.
const BUDGETED: &str = "
receivers:
  otlp:
    backpressure_wait: 20ms
    batching:
      max_items: 200
exporters:
  testing:
    path: {dir}/traces.bin
    delay: 50ms
extensions:
  wal:
    max_memory_megabytes: 1
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [testing]
";

/// 200 spans (100 copies of `rich_traces`' two): about 90 KB of protobuf, so that a few batches
/// fill the 1 MiB budget long before they fill the exporter's queue of 16.
fn big_request(tag: &str) -> ExportTraceServiceRequest {
    let mut r = rich_traces(tag);
    let spans = r.resource_spans[0].scope_spans[0].spans.clone();
    for _ in 1..100 {
        r.resource_spans[0].scope_spans[0].spans.extend(spans.iter().cloned());
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_holds_back_batches_before_the_queues_are_full() {
    let d = Daemon::start_on_base(&[BUDGETED]).await;
    let body = big_request("mem").encode_to_vec();
    let charged = async || d.metric_sum("openwit_memory_charged_bytes").await;
    assert_eq!(d.metric_sum("openwit_memory_budget_bytes").await, 1048576.0);
    let c = client();
    let (mut accepted, mut refused, mut peak_queue, mut peak_charged) = (0usize, 0usize, 0f64, 0f64);
    for _ in 0..6 {
        let wave = (0..30).map(|_| {
            c.post(d.http_url("/v1/traces")).header("content-type", "application/x-protobuf").body(body.clone()).send()
        });
        for r in join_all(wave).await {
            match r.unwrap().status().as_u16() {
                200 => accepted += 1,
                429 => refused += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        peak_charged = peak_charged.max(charged().await);
        peak_queue = peak_queue.max(d.metric_sum("otelcol_exporter_queue_size{exporter=\"testing\"}").await);
    }
    assert!(refused > 0 && accepted > 0, "accepted {accepted}, refused {refused}");
    assert!(peak_charged > 0.0 && peak_charged <= 1048576.0, "charged {peak_charged} bytes of a 1 MiB budget");
    // The budget, not the queue (16 batches), is what refused: at most 1 MiB ÷ a batch's charge wait.
    let per_batch = (body.len() as u64 * openwit_core::memory::HELD_PER_PROTOBUF_BYTE) as f64;
    assert!(peak_queue <= (1048576.0 / per_batch).ceil(), "{peak_queue} batches queued at {per_batch} bytes each");

    // Everything accepted is stored, and every charge is given back once it is.
    let path = d.path("traces.bin");
    let stored = || span_count(read_testing::<ExportTraceServiceRequest>(&path).iter().map(|(_, r)| r));
    let got = eventually(Duration::from_secs(60), stored, |n| *n >= accepted * 200).await;
    assert_eq!(got, accepted * 200);
    let mut left = charged().await;
    for _ in 0..100 {
        if left == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = charged().await;
    }
    assert_eq!(left, 0.0, "charges not given back once stored");
}

/// Over the harness's `BASE`: a budget of 1 MiB; a Parquet exporter whose row groups would hold a
/// million rows and whose files rotate only after 10 minutes, so that only the budget has its buffered
/// rows written; requests that may wait 3 s for room.
const BUFFERED: &str = "
receivers:
  otlp:
    backpressure_wait: 3s
    batching:
      max_items: 200
exporters:
  parquet:
    endpoint: {dir}/bucket
    row_group_size: 1000000
    index:
      enabled: false
extensions:
  wal:
    max_memory_megabytes: 1
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [parquet]
";

/// A request of 200 spans (~90 KB of protobuf) is charged ~800 KB on its way and leaves ~300 KB of Arrow
/// rows in its tenant's open file, charged until they are written. So the second request finds the
/// budget spent by the first one's buffered rows: it waits, the exporter writes its buffered rows out,
/// and it goes in — for four tenants (four open files) in turn. Without the charge the budget would not
/// see those rows; without the release, every second request would wait until the files rotated and be
/// refused after its 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_rows_buffered_for_a_row_group_hold_the_budget_until_a_batch_needs_it() {
    let mut d = Daemon::start_on_base(&[BUFFERED]).await;
    let send = async |tenant: &str, tag: &str| {
        let body = big_request(tag).encode_to_vec();
        d.post_protobuf_as(tenant, "/v1/traces", body).await.status().as_u16()
    };
    assert_eq!(send("t0", "first").await, 200);
    // The request's own charge is given back once the exporter took its batch; the rows stay charged.
    let sent = "otelcol_exporter_sent_spans_total{exporter=\"parquet\"}";
    assert_eq!(d.metric_until(sent, Duration::from_secs(5), |n| n >= 200.0).await, 200.0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let held = d.metric_sum("openwit_memory_charged_bytes").await;
    let request = (big_request("first").encoded_len() as u64 * openwit_core::memory::HELD_PER_PROTOBUF_BYTE) as f64;
    assert!(held > 0.0 && held < request, "buffered rows hold {held} bytes (a request is charged {request})");

    let mut statuses = Vec::new();
    for round in 0..3 {
        for t in ["t0", "t1", "t2", "t3"] {
            statuses.push(send(t, &format!("{t}-{round}")).await);
        }
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}; log:\n{}", d.logs());

    // Every accepted span is in the files once (shutdown writes what is buffered).
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(30)).success());
    let mut rows = 0;
    for p in crate::harness::files_under(&d.path("bucket"), "parquet") {
        let f = std::fs::File::open(&p).unwrap();
        rows += parquet::file::reader::FileReader::metadata(
            &parquet::file::serialized_reader::SerializedFileReader::new(f).unwrap(),
        )
        .file_metadata()
        .num_rows();
    }
    assert_eq!(rows, 13 * 200);
}

/// Spans into a Parquet file that is finalized at once and indexed (the default index).
const INDEXED: &str = "
exporters:
  parquet:
    endpoint: {dir}/bucket
    rotation:
      max_age: 200ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [parquet]
";

/// Tantivy's indexing arena (`openwit_index::build::WRITER_HEAP`, 64 MiB) is charged to the memory
/// budget while a file is indexed, and given back when the build ends: under overload an index build
/// takes the place of batches in memory instead of adding to them. The build is held for a few seconds
/// by a test pause point so that the charge can be read from the daemon's own metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_build_holds_its_arena_in_the_memory_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        (openwit_core::testing::PAUSE_ENV.to_string(), "index-build".to_string()),
        ("OPENWIT_TEST_PAUSE_MS".to_string(), "3000".to_string()),
    ];
    let mut d = Daemon::spawn_sources_env(tmp.path(), &[crate::harness::BASE, INDEXED], &env);
    d.wait_ready().await;
    let body = big_request("indexed").encode_to_vec();
    assert_eq!(d.post_protobuf("/v1/traces", body).await, 200);
    eventually(Duration::from_secs(20), || d.logs(), |l| l.contains("pausing 3000 ms at index-build")).await;
    let arena = openwit_index::build::WRITER_HEAP as f64;
    let held = d.metric_sum("openwit_memory_charged_bytes").await;
    assert!(held >= arena, "while a file is indexed the budget holds {held} bytes (the arena is {arena})");
    // Once the build is done, the charge is given back (the 200 spans' rows are written and stored).
    let after = d.metric_until("openwit_memory_charged_bytes", Duration::from_secs(10), |b| b < arena).await;
    assert!(after < arena, "the arena's charge is still held after the build: {after} bytes");
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(30)).success());
}
