//! The real binary on the lossy test filesystem while its disk fails: fdatasync returning EIO on the WAL,
//! a full disk, a WAL segment that cannot be read at start. A client told "refused" retries, as OTLP
//! clients do; whatever it was told, each span ends up stored exactly as often as it was acknowledged.

use crate::crash::{request, stored};
use crate::harness::{Daemon, eventually};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use openwit_lossyfs::{Fault, LossyMount, Op};
use prost::Message;
use std::time::Duration;

/// Every batch fsynced into `stored.bin` by the `testing` exporter; over the harness's `BASE`.
const CONFIG: &str = "
exporters:
  testing:
    path: {dir}/stored.bin
extensions:
  wal:
    # Segments stay until the next start: the refused frames are still on disk when the WAL is read.
    janitor_interval: 1h
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [testing]
";

/// The lossy disk (mounted on `disk/` of a temporary directory on a good one, whose `daemon.log` the faults
/// cannot eat).
fn disk() -> (tempfile::TempDir, LossyMount) {
    let good = tempfile::tempdir().unwrap();
    std::fs::create_dir(good.path().join("disk")).unwrap();
    let m = LossyMount::mount(&good.path().join("disk")).expect("the disk-fault tests need /dev/fuse and root");
    (good, m)
}

/// Starts the daemon on the lossy disk, and waits until it is ready.
async fn start(good: &tempfile::TempDir, m: &LossyMount, config: &str) -> Daemon {
    let d = Daemon::spawn_in_on_base_logging_to(m.path(), config, &good.path().join("daemon.log"));
    d.wait_ready().await;
    d
}

/// Sends spans `first..first + 5` over HTTP; whether they were acknowledged, and the status.
async fn send_http(d: &Daemon, first: u64) -> (bool, u16) {
    let status = d.post_protobuf("/v1/traces", request(first, 5).encode_to_vec()).await;
    (status == 200, status)
}

async fn send_grpc(d: &Daemon, first: u64) -> Result<(), tonic::Code> {
    let mut c = TraceServiceClient::connect(d.grpc_url()).await.unwrap();
    c.export(request(first, 5)).await.map(|_| ()).map_err(|s| s.code())
}

/// Kills the daemon (SIGKILL: a clean stop would let the janitor delete the segments the test wants read
/// back), starts it again on the same directory, and returns what is stored once everything pending was
/// replayed.
async fn restart_and_read(
    mut d: Daemon,
    good: &tempfile::TempDir,
    m: &LossyMount,
    expect: usize,
) -> (Daemon, Vec<u64>) {
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(30));
    let d = start(good, m, CONFIG).await;
    let got = eventually(Duration::from_secs(10), || stored(&d), |s| s.len() >= expect).await;
    let mut ids: Vec<u64> = got.iter().flat_map(|(id, n)| std::iter::repeat_n(*id, *n)).collect();
    ids.sort_unstable();
    (d, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wal_fsync_refuses_retryably_and_the_refused_data_never_comes_back() {
    let (good, m) = disk();
    let d = start(&good, &m, CONFIG).await;
    assert!(send_http(&d, 1).await.0);
    // Three times, the WAL's next fdatasync fails: the request is refused and told to retry (HTTP 503,
    // gRPC UNAVAILABLE); the client retries the same spans, and they are accepted.
    for (round, first) in [100u64, 200, 300].into_iter().enumerate() {
        m.disk().inject(Fault::times(Op::Fsync, "/wal/", libc::EIO, 1));
        if round == 1 {
            assert_eq!(send_grpc(&d, first).await, Err(tonic::Code::Unavailable));
            assert_eq!(send_grpc(&d, first).await, Ok(()));
        } else {
            let r = send_http(&d, first).await;
            assert_eq!(r, (false, 503), "log:\n{}", d.logs());
            assert!(send_http(&d, first).await.0);
        }
        assert_eq!(m.disk().injected(), round as u64 + 1);
    }
    let expect: Vec<u64> = [1, 100, 200, 300].iter().flat_map(|f| *f..f + 5).collect();
    // After a restart (replay of whatever the WAL holds), each span is there once: the refused attempts'
    // frames, still in the page cache, were voided and are not replayed.
    let (d, ids) = restart_and_read(d, &good, &m, expect.len()).await;
    assert_eq!(ids, expect, "log:\n{}", d.logs());
    assert!(send_http(&d, 400).await.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_retryably_and_ingest_resumes_by_itself_when_space_returns() {
    let (good, m) = disk();
    // The daemon's own log is on the full disk too (it once killed the WAL writer: a log line that could
    // not be written made tracing's eprintln! panic).
    let d = Daemon::spawn_in_on_base(m.path(), CONFIG);
    d.wait_ready().await;
    assert!(send_http(&d, 1).await.0);
    m.disk().set_full(true);
    assert_eq!(send_http(&d, 100).await, (false, 503));
    assert_eq!(send_grpc(&d, 200).await, Err(tonic::Code::Unavailable));
    m.disk().set_full(false);
    // No restart, no operator: the next requests are accepted.
    let r = send_http(&d, 100).await;
    assert!(r.0, "{r:?} log:\n{}", d.logs());
    assert!(send_grpc(&d, 200).await.is_ok());
    let expect: Vec<u64> = [1, 100, 200].iter().flat_map(|f| *f..f + 5).collect();
    let got = eventually(Duration::from_secs(10), || stored(&d), |s| s.len() >= expect.len()).await;
    assert_eq!(got.len(), expect.len(), "log:\n{}", d.logs());
    let (d, ids) = restart_and_read(d, &good, &m, expect.len()).await;
    assert_eq!(ids, expect, "log:\n{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_segment_that_cannot_be_read_at_start_is_quarantined_and_the_rest_replays() {
    let (good, m) = disk();
    let dir = m.path();
    // The exporter refuses everything while this file exists: batches stay pending in the WAL.
    let broken = dir.join("broken");
    std::fs::write(&broken, b"").unwrap();
    let config =
        CONFIG.replace("path: {dir}/stored.bin", "path: {dir}/stored.bin\n    fail_permanently_while: {dir}/broken");
    // Two runs, two segments: spans 1..6 in the first, 100..105 in the second.
    for first in [1u64, 100] {
        let mut d = start(&good, &m, &config).await;
        assert!(send_http(&d, first).await.0);
        d.signal(libc::SIGTERM);
        assert!(d.wait_exit(Duration::from_secs(30)).success(), "{}", d.logs());
    }
    let mut segments: Vec<String> = std::fs::read_dir(dir.join("data/wal"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.ends_with(".wal"))
        .collect();
    segments.sort();
    let first_segment = segments[0].clone();
    std::fs::remove_file(&broken).unwrap();
    m.disk().inject(Fault::always(Op::Read, &first_segment, libc::EIO));
    let d = start(&good, &m, CONFIG).await;
    let got = eventually(Duration::from_secs(10), || stored(&d), |s| s.len() >= 5).await;
    let mut ids: Vec<u64> = got.keys().copied().collect();
    ids.sort_unstable();
    assert_eq!(ids, (100..105).collect::<Vec<_>>(), "the readable segment replays; log:\n{}", d.logs());
    let logs = d.logs();
    assert!(logs.contains("cannot be read") && logs.contains(&first_segment), "{logs}");
    let metric = format!("openwit_wal_quarantined_segments_total{{segment=\"{first_segment}\"}} 1");
    assert!(d.metrics_text().await.contains(&metric), "{metric}");
    assert!(dir.join("data/wal/quarantine").read_dir().unwrap().count() == 1, "kept for inspection");
    assert!(send_http(&d, 200).await.0);
}
