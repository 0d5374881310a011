//! The daemon turns transparent huge pages off for itself at start (mimalloc would otherwise ask for
//! them, and every page fault on memory it handed back would zero 2 MiB), unless the operator's
//! `MIMALLOC_ALLOW_THP` says otherwise.

use crate::harness::{BASE, Daemon};

const PIPELINE: &str = "
exporters:
  nop:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [nop]
";

/// The `THP_enabled` flag the kernel reports for a process (1: huge pages allowed).
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("kernel reports THP_enabled");
    line["THP_enabled:".len()..].trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_huge_pages_are_off_unless_the_operator_allows_them() {
    let d = Daemon::start_on_base(&[PIPELINE]).await;
    assert_eq!(thp_enabled(d.pid()), "0", "the daemon runs with transparent huge pages off");
    drop(d);

    let tmp = tempfile::tempdir().unwrap();
    let allowed = [("MIMALLOC_ALLOW_THP".to_string(), "1".to_string())];
    let d = Daemon::spawn_sources_env(tmp.path(), &[BASE, PIPELINE], &allowed);
    d.wait_ready().await;
    // As this test runs (a flag set on a parent is inherited).
    let inherited = thp_enabled(std::process::id());
    assert_eq!(thp_enabled(d.pid()), inherited, "MIMALLOC_ALLOW_THP leaves them to mimalloc");
}
