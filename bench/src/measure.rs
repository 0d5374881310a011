//! Measurements the benchmark runner takes: a process's CPU time and peak memory from `/proc`, and
//! the raw ceilings every number is compared with (protobuf decode speed, disk write + fdatasync).

use crate::load::Signal;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// User + system CPU ticks from the text of `/proc/<pid>/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> anyhow::Result<u64> {
    let after = stat.rfind(')').map(|i| &stat[i + 1..]).ok_or_else(|| anyhow::anyhow!("no ')' in /proc stat line"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let get = |i: usize| -> anyhow::Result<u64> {
        fields.get(i).ok_or_else(|| anyhow::anyhow!("short /proc stat line"))?.parse::<u64>().map_err(Into::into)
    };
    Ok(get(11)? + get(12)?)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(parse_stat_ticks(&stat)? as f64 / ticks_per_second())
}

/// CPU nanoseconds the calling thread has used so far (`CLOCK_THREAD_CPUTIME_ID`): the cost of work
/// done on this thread alone, whatever else the machine runs.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A `kB` field (`VmHWM`, `VmRSS`) from the text of `/proc/<pid>/status`.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
}

/// Peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_kib(&status, "VmHWM").ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))
}

/// The value of an unlabelled sample in Prometheus text format.
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// CPU seconds per million items.
pub fn cpu_per_million(cpu_s: f64, items: u64) -> f64 {
    if items == 0 { f64::NAN } else { cpu_s * 1e6 / items as f64 }
}

/// Items per second one core decodes from the given requests (protobuf into the generated types).
pub fn decode_items_per_s(signal: Signal, requests: &[Bytes], items_per_request: usize, min_time: Duration) -> f64 {
    let start = Instant::now();
    let mut items = 0u64;
    while start.elapsed() < min_time {
        for r in requests {
            let ok = match signal {
                Signal::Traces => ExportTraceServiceRequest::decode(r.clone()).is_ok(),
                Signal::Logs => ExportLogsServiceRequest::decode(r.clone()).is_ok(),
                Signal::Metrics => ExportMetricsServiceRequest::decode(r.clone()).is_ok(),
            };
            if ok {
                items += items_per_request as u64;
            }
        }
    }
    items as f64 / start.elapsed().as_secs_f64()
}

/// Sequential write + fdatasync throughput.
#[derive(Clone, Debug, Serialize)]
pub struct SyncedWrites {
    pub block_bytes: usize,
    pub mib_per_s: f64,
    pub syncs_per_s: f64,
}

/// Writes `block` bytes then fdatasyncs, repeatedly for `time`, in a file under `dir`.
pub fn synced_write_throughput(dir: &Path, block: usize, time: Duration) -> anyhow::Result<SyncedWrites> {
    let path = dir.join(format!("openwit-bench-fsync-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)?;
    let buf: Vec<u8> = (0..block).map(|i| (i * 31 % 251) as u8).collect();
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < time {
        f.write_all(&buf)?;
        f.sync_data()?;
        syncs += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(SyncedWrites {
        block_bytes: block,
        mib_per_s: (syncs * block as u64) as f64 / secs / 1048576.0,
        syncs_per_s: syncs as f64 / secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 123 45 0 0 20 0 8 0 100 1000 50 18446744073709551615";
        assert_eq!(parse_stat_ticks(line).unwrap(), 168);
        assert!(parse_stat_ticks("4242 (x) S 1").is_err());
        assert!(parse_stat_ticks("garbage").is_err());
    }

    #[test]
    fn own_cpu_time_grows_when_burning_cpu() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).unwrap();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
        std::hint::black_box(x);
        let used = cpu_seconds(pid).unwrap() - before;
        assert!(used > 0.1, "burned 300 ms but measured {used}s");
    }

    #[test]
    fn parses_status_fields() {
        let status = "Name:\topenwit\nVmPeak:\t  500000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   70000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(81234));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(70000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert!(peak_rss_kib(std::process::id()).unwrap() > 1000);
    }

    #[test]
    fn reads_prometheus_samples() {
        let text = "# HELP x y\nopenwit_wal_commit_seconds_count 42\nopenwit_wal_commit_seconds_count_other 7\nother{a=\"b\"} 3\n";
        assert_eq!(prometheus_value(text, "openwit_wal_commit_seconds_count"), Some(42.0));
        assert_eq!(prometheus_value(text, "missing"), None);
    }

    #[test]
    fn cpu_per_million_is_a_ratio() {
        assert_eq!(cpu_per_million(2.0, 4_000_000), 0.5);
        assert!(cpu_per_million(1.0, 0).is_nan());
    }

    #[test]
    fn synced_writes_report_plausible_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let r = synced_write_throughput(dir.path(), 64 * 1024, Duration::from_millis(200)).unwrap();
        assert!(r.syncs_per_s > 0.0 && r.mib_per_s > 0.0);
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "the scratch file is removed");
    }

    #[test]
    fn decode_counts_items() {
        let reqs = crate::load::encode_requests(Signal::Logs, 1, 2, 50);
        assert!(decode_items_per_s(Signal::Logs, &reqs, 50, Duration::from_millis(50)) > 1000.0);
    }
}
