//! The durability promise under power loss: the daemon's whole directory (WAL, catalog, Parquet staging
//! and the local bucket) lives on the lossy test filesystem, which forgets everything not fsynced when
//! the power is cut. A SIGKILL cannot show a missing fsync (the page cache survives it); this can.

use crate::crash::{Ended, check_exactly_once, load_and_end_rounds, parquet_config, stored_in_parquet};
use crate::harness::Daemon;
use openwit_lossyfs::{Fault, LossyMount, Op};
use std::time::Duration;

/// Rounds in the test suite; `tests/soak/power-loss` runs more through `OPENWIT_POWER_CUT_ROUNDS`.
fn rounds() -> u32 {
    std::env::var("OPENWIT_POWER_CUT_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

/// Spans stored once through the catalog (what a query sees), by an offline query after the last stop.
fn through_the_catalog(dir: &std::path::Path) -> (u64, u64) {
    let out = std::process::Command::new(crate::harness::bin())
        .args(["query", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--format", "csv", "SELECT count(*) AS n, count(DISTINCT span_id) AS d FROM spans"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "offline query failed: {}", String::from_utf8_lossy(&out.stderr));
    let row = text.lines().nth(1).unwrap_or_default();
    let mut it = row.split(',').map(|v| v.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_at_random_moments_lose_nothing_acknowledged_and_store_nothing_twice() {
    let config = parquet_config();
    let backing = tempfile::tempdir().unwrap();
    let mut disk = LossyMount::mount(backing.path()).expect("the power-loss tests need /dev/fuse and root");
    let dir = disk.path().to_path_buf();
    let rounds = rounds();
    let mut cuts = 0u32;
    let ended: Ended = load_and_end_rounds(&dir, None, &config, rounds, &mut |d: &mut Daemon| {
        disk.power_cut(|| {
            d.signal(libc::SIGKILL);
            d.wait_exit(Duration::from_secs(10));
        })
        .unwrap();
        cuts += 1;
    })
    .await;
    let stored = check_exactly_once(&dir, None, &config, &ended, |d| stored_in_parquet(&d.path("bucket"))).await;
    let (rows, distinct) = through_the_catalog(&dir);
    assert_eq!(rows, distinct, "a span is recorded twice in the catalog's files");
    assert_eq!(rows, stored.len() as u64, "every file in the bucket is recorded in the catalog, and only those");
    println!(
        "power loss: {cuts} cuts, {} spans acknowledged, {} stored ({} sent and refused or unanswered, stored anyway)",
        ended.acked.len(),
        stored.len(),
        stored.len() - ended.acked.len()
    );
}

/// The disk faults each round meets before its power cut: the Parquet staging directory, the catalog and
/// the bucket fail their fsyncs or run out of space for a while.
fn faults_for(round: u32) -> Vec<Fault> {
    let round = std::env::var("PROBE_KIND").ok().and_then(|v| v.parse().ok()).unwrap_or(round);
    match if round >= 4 { round } else { round % 4 } {
        0 => vec![Fault::times(Op::Fsync, "/data/parquet/", libc::EIO, 3)],
        1 => vec![Fault::times(Op::Fsync, "catalog.db", libc::EIO, 2)],
        2 => vec![Fault::times(Op::Write, "/data/parquet/", libc::ENOSPC, 20)],
        _ => {
            vec![Fault::times(Op::Fsync, "/bucket/", libc::EIO, 3), Fault::times(Op::Write, "catalog.db", libc::EIO, 2)]
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_faults_in_staging_catalog_and_bucket_then_power_cuts_lose_nothing_and_store_nothing_twice() {
    let config = parquet_config();
    // The daemon's log on a good disk, outside the faults and cuts.
    let good = tempfile::tempdir().unwrap();
    std::fs::create_dir(good.path().join("disk")).unwrap();
    let mut disk = LossyMount::mount(&good.path().join("disk")).expect("the power-loss tests need /dev/fuse and root");
    let log = good.path().join("daemon.log");
    let dir = disk.path().to_path_buf();
    let mut round = 0u32;
    disk.disk().inject_all(faults_for(round));
    let ended = load_and_end_rounds(&dir, Some(&log), &config, rounds(), &mut |d: &mut Daemon| {
        disk.power_cut(|| {
            d.signal(libc::SIGKILL);
            d.wait_exit(Duration::from_secs(10));
        })
        .unwrap();
        round += 1;
        disk.disk().clear_faults();
        disk.disk().inject_all(faults_for(round));
    })
    .await;
    let injected = disk.disk().injected();
    disk.disk().clear_faults();
    let stored = check_exactly_once(&dir, Some(&log), &config, &ended, |d| stored_in_parquet(&d.path("bucket"))).await;
    let (rows, distinct) = through_the_catalog(&dir);
    assert_eq!(rows, distinct, "a span is recorded twice in the catalog's files");
    assert_eq!(rows, stored.len() as u64, "every file in the bucket is recorded in the catalog, and only those");
    assert!(injected > 0, "the faults were met");
    println!(
        "faults + power loss: {round} cuts, {injected} operations failed, {} spans acknowledged, {} stored",
        ended.acked.len(),
        stored.len()
    );
}
