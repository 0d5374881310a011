//! `openwit-bench`: runs each scenario against OpenWit and the peer collector (rotel) in the same run,
//! and prints the table for `docs/BENCHMARKS.md`.

use clap::Parser;
use openwit_bench::daemon::spawn_openwit;
use openwit_bench::load::{self, Plan, Report, Signal, Transport};
use openwit_bench::measure::{self, SyncedWrites};
use openwit_bench::storage;
use serde::Serialize;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "openwit-bench", about = "OpenWit vs a peer collector, same load, same run")]
struct Cli {
    /// The OpenWit binary to measure (a release build).
    #[arg(long, default_value = "target/release/openwit")]
    openwit: PathBuf,
    /// The rotel binary (`rotel-agent`); the peer is skipped when left out.
    #[arg(long)]
    rotel: Option<PathBuf>,
    /// Items sent per scenario and target (after a warm-up).
    #[arg(long, default_value_t = 2_000_000)]
    items: u64,
    #[arg(long, default_value_t = 500)]
    items_per_request: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the fdatasync ceiling is measured (the disk the WAL will use).
    #[arg(long, default_value = "data")]
    scratch_dir: PathBuf,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only the storage measurements (conversion throughput, bytes on disk): no daemons, no peer.
    #[arg(long)]
    storage_only: bool,
    /// Items per signal for the bytes-on-disk measurement (distinct, generated).
    #[arg(long, default_value_t = 400_000)]
    storage_items: usize,
    /// zstd level for the bytes-on-disk measurement (the exporter's default is 3).
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,
    /// Another sort key for one table's rows in the bytes-on-disk measurement, as
    /// `TABLE=COLUMN,COLUMN,…` (e.g. `spans=service_name,trace_id,time`); repeatable.
    #[arg(long = "sort-by", value_name = "TABLE=COLUMNS")]
    sort_by: Vec<String>,
    /// Rows per row group in the bytes-on-disk measurement (the exporter's `row_group_size`).
    #[arg(long, default_value_t = 128 * 1024)]
    row_group_rows: usize,
    /// Keep the bytes-on-disk measurement's Parquet files: copied into `DIR/<table>/` (to try other
    /// encodings on the same rows with another tool).
    #[arg(long, value_name = "DIR")]
    keep_files: Option<PathBuf>,
    /// Only the processor cost: logs over gRPC through `batch` alone, with a `filter` dropping ~97 %
    /// of them, and with a `transform` setting and deleting attributes (all to `nop`, WAL fsyncing);
    /// then storing Parquet: `batch` alone, `filter` before `batch` (per item) and after it (over the
    /// batch's Arrow rows).
    #[arg(long)]
    processors: bool,
    /// `wal.max_memory_megabytes` of every OpenWit target (the daemon's default when left out); a
    /// value far over what the load needs measures OpenWit as if it had no memory budget.
    #[arg(long)]
    memory_megabytes: Option<u64>,
}

#[derive(Serialize)]
struct Row {
    target: String,
    scenario: String,
    cpu_s: f64,
    cpu_s_per_million: f64,
    peak_rss_mib: f64,
    /// WAL group commits (write + fdatasync) per second, for OpenWit.
    wal_commits_per_s: Option<f64>,
    items_per_commit: Option<f64>,
    load: Report,
}

#[derive(Serialize)]
struct Results {
    date: String,
    commit: String,
    machine: String,
    items_per_scenario: u64,
    items_per_request: usize,
    concurrency: usize,
    rows: Vec<Row>,
    decode_items_per_s: Vec<(String, f64)>,
    synced_writes: Vec<SyncedWrites>,
    conversion: Vec<storage::Conversion>,
    footprint: Vec<storage::Footprint>,
    /// With `--processors`: the filter condition's evaluation cost, in-process.
    evaluation: Option<openwit_bench::evaluation::Evaluation>,
}

struct Target {
    name: &'static str,
    child: Child,
    grpc: u16,
    http: u16,
    /// OpenWit's own metrics endpoint (for WAL commit counts).
    metrics: Option<u16>,
    _dir: tempfile::TempDir,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SCENARIOS: [(Transport, Signal); 4] = [
    (Transport::Grpc, Signal::Traces),
    (Transport::Http, Signal::Traces),
    (Transport::Grpc, Signal::Logs),
    (Transport::Grpc, Signal::Metrics),
];

/// Conversion throughput and bytes on disk, per signal, on generated data.
fn storage_measures(cli: &Cli) -> anyhow::Result<(Vec<storage::Conversion>, Vec<storage::Footprint>)> {
    let (mut conversion, mut footprint) = (Vec::new(), Vec::new());
    for signal in [Signal::Traces, Signal::Logs, Signal::Metrics] {
        let small = storage::payloads(signal, cli.seed, 64, cli.items_per_request);
        conversion.push(storage::conversion(signal, &small, Duration::from_secs(2))?);
        let requests = cli.storage_items.div_ceil(cli.items_per_request);
        let all = storage::payloads(signal, cli.seed, requests, cli.items_per_request);
        let table = match signal {
            Signal::Traces => "spans",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        };
        let sort_by = cli
            .sort_by
            .iter()
            .filter_map(|s| s.split_once('='))
            .find(|(t, _)| *t == table)
            .map(|(_, cols)| cols.split(',').map(str::to_string).collect::<Vec<_>>());
        if let Some(key) = &sort_by {
            eprintln!("storage {signal:?}: rows sorted by {}", key.join(", "));
        }
        let keep = cli.keep_files.as_ref().map(|d| d.join(table));
        let f = storage::footprint(signal, &all, cli.zstd_level, sort_by, cli.row_group_rows, keep.as_deref())?;
        eprintln!(
            "storage {signal:?}: {:.1} bytes/item in Parquet, {:.2} of zstd'd protobuf; writer {:.2} CPU-s per M items",
            f.parquet_per_item(),
            f.ratio(),
            f.write_cpu_s_per_million
        );
        for (c, b) in f.columns.iter().take(12) {
            eprintln!("  {c:24} {:6.2} B/item", *b as f64 / f.items as f64);
        }
        footprint.push(f);
    }
    Ok((conversion, footprint))
}

/// Waits until the Parquet exporter has stored everything: no file left in its staging directory.
async fn settle_storage(data: &std::path::Path) {
    // Files wait in staging until stored, then (with indexes) in the indexer's work directory until
    // indexed: both empty means all the work of the run is done and counted.
    let empty = |d: std::path::PathBuf| std::fs::read_dir(d).map(|d| d.count() == 0).unwrap_or(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if empty(data.join("parquet/parquet")) && empty(data.join("parquet/parquet.index")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("warning: Parquet staging or indexing in {} did not finish within 60 s", data.display());
}

fn free_port() -> anyhow::Result<u16> {
    Ok(openwit_core::net::free_loopback_port())
}

const OPENWIT_CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:GRPC
      http:
        endpoint: 127.0.0.1:HTTP
processors:
  batch:
  # ~97 % of the generated logs: thread numbers run 1..31 and only those ending in -1 are kept.
  filter:
    logs:
      log_record: ['not IsMatch(attributes["thread.name"], "-1$")']
  transform:
    log_statements:
      - context: log
        statements:
          - set(attributes["deployment.environment"], "prod")
          - set(attributes["logger"], attributes["log.logger"])
          - delete_key(attributes, "code.function")
exporters:
  nop:
  parquet:
    rotation: {max_age: 1s}
    index: {enabled: INDEX}
extensions:
  wal:
    fsync: FSYNC
    MEMORY
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [EXPORTER]}
    metrics: {receivers: [otlp], processors: [batch], exporters: [EXPORTER]}
    logs: {receivers: [otlp], processors: [PROCESSORS], exporters: [EXPORTER]}
  telemetry:
    logs: {level: warn}
    metrics: {address: 127.0.0.1:METRICS}
"#;

/// What a target stores.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    /// Nothing (the `nop` exporter).
    Nothing,
    /// Parquet files, without full-text indexes.
    Parquet,
    /// Parquet files and the full-text index beside each logs and spans file.
    Indexed,
}

/// Starts OpenWit; `processors` is the logs pipeline's list.
fn start_openwit(
    bin: &std::path::Path,
    memory_megabytes: Option<u64>,
    name: &'static str,
    fsync: bool,
    store: Store,
    processors: &str,
) -> anyhow::Result<Target> {
    let dir = tempfile::tempdir()?;
    let (grpc, http, metrics) = (free_port()?, free_port()?, free_port()?);
    let text = OPENWIT_CONFIG
        .replace("GRPC", &grpc.to_string())
        .replace("HTTP", &http.to_string())
        .replace("METRICS", &metrics.to_string())
        .replace("FSYNC", if fsync { "true" } else { "false" })
        .replace("MEMORY", &memory_megabytes.map_or(String::new(), |m| format!("max_memory_megabytes: {m}")))
        .replace("EXPORTER", if store == Store::Nothing { "nop" } else { "parquet" })
        .replace("INDEX", if store == Store::Indexed { "true" } else { "false" })
        .replace("PROCESSORS", processors);
    let child = spawn_openwit(bin, dir.path(), &text)?;
    Ok(Target { name, child, grpc, http, metrics: Some(metrics), _dir: dir })
}

fn start_rotel(bin: &PathBuf) -> anyhow::Result<Target> {
    let dir = tempfile::tempdir()?;
    let (grpc, http) = (free_port()?, free_port()?);
    let child = Command::new(bin)
        .args(["start", "--exporter", "blackhole"])
        .arg("--otlp-grpc-endpoint")
        .arg(format!("127.0.0.1:{grpc}"))
        .arg("--otlp-http-endpoint")
        .arg(format!("127.0.0.1:{http}"))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", bin.display()))?;
    Ok(Target { name: "rotel", child, grpc, http, metrics: None, _dir: dir })
}

async fn wait_listening(t: &mut Target) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    for port in [t.grpc, t.http] {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            if let Some(st) = t.child.try_wait()? {
                anyhow::bail!("{} exited before listening: {st}", t.name);
            }
            anyhow::ensure!(Instant::now() < deadline, "{} did not listen on {port} within 20s", t.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// The WAL's commit counter from OpenWit's metrics endpoint.
async fn wal_commits(port: Option<u16>) -> Option<f64> {
    metric(port?, "openwit_wal_commit_seconds_count").await
}

/// A sample of OpenWit's own metrics, by name.
async fn metric(port: u16, name: &str) -> Option<f64> {
    let text =
        reqwest::Client::new().get(format!("http://127.0.0.1:{port}/metrics")).send().await.ok()?.text().await.ok()?;
    openwit_bench::measure::prometheus_value(&text, name)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| measure::parse_status_kib(&m, "MemTotal"))
        .map(|k| k as f64 / 1048576.0)
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores, {mem_gib:.0} GiB, {cpu}")
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn today() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (conversion, footprint) = storage_measures(&cli)?;
    let evaluation = if cli.processors {
        let logs = storage::payloads(Signal::Logs, cli.seed, 64, cli.items_per_request);
        Some(openwit_bench::evaluation::evaluate(&logs, Duration::from_secs(2))?)
    } else {
        None
    };
    let scenarios = match (cli.storage_only, cli.processors) {
        (true, _) => &[][..],
        (false, true) => &[(Transport::Grpc, Signal::Logs)][..],
        (false, false) => &SCENARIOS[..],
    };
    let mut rows = Vec::new();
    for &(transport, signal) in scenarios {
        let requests = Arc::new(load::encode_requests(signal, cli.seed, 64, cli.items_per_request));
        let scenario = format!("{signal:?} over {transport:?}").to_lowercase();
        let mut targets: Vec<&str> = if cli.processors {
            vec![
                "openwit",
                "openwit + filter",
                "openwit + transform",
                "openwit + parquet",
                "parquet, filter → batch",
                "parquet, batch → filter",
            ]
        } else {
            vec!["openwit", "openwit (fsync off)", "openwit + parquet", "openwit + parquet + index"]
        };
        if cli.rotel.is_some() {
            targets.push("rotel");
        }
        for name in targets {
            let mut t = match (name, &cli.rotel) {
                ("rotel", Some(bin)) => start_rotel(bin)?,
                ("openwit (fsync off)", _) => start_openwit(
                    &cli.openwit,
                    cli.memory_megabytes,
                    "openwit (fsync off)",
                    false,
                    Store::Nothing,
                    "batch",
                )?,
                ("openwit + parquet", _) => start_openwit(
                    &cli.openwit,
                    cli.memory_megabytes,
                    "openwit + parquet",
                    true,
                    Store::Parquet,
                    "batch",
                )?,
                ("openwit + parquet + index", _) => start_openwit(
                    &cli.openwit,
                    cli.memory_megabytes,
                    "openwit + parquet + index",
                    true,
                    Store::Indexed,
                    "batch",
                )?,
                ("openwit + filter", _) => start_openwit(
                    &cli.openwit,
                    cli.memory_megabytes,
                    "openwit + filter",
                    true,
                    Store::Nothing,
                    "filter, batch",
                )?,
                ("openwit + transform", _) => start_openwit(
                    &cli.openwit,
                    cli.memory_megabytes,
                    "openwit + transform",
                    true,
                    Store::Nothing,
                    "transform, batch",
                )?,
                ("parquet, filter → batch", _) => start_openwit(
                    &cli.openwit,
                    cli.memory_megabytes,
                    "parquet, filter → batch",
                    true,
                    Store::Parquet,
                    "filter, batch",
                )?,
                ("parquet, batch → filter", _) => start_openwit(
                    &cli.openwit,
                    cli.memory_megabytes,
                    "parquet, batch → filter",
                    true,
                    Store::Parquet,
                    "batch, filter",
                )?,
                _ => start_openwit(&cli.openwit, cli.memory_megabytes, "openwit", true, Store::Nothing, "batch")?,
            };
            wait_listening(&mut t).await?;
            let port = if transport == Transport::Grpc { t.grpc } else { t.http };
            let mut plan = Plan {
                signal,
                transport,
                endpoint: format!("127.0.0.1:{port}"),
                requests: requests.clone(),
                items_per_request: cli.items_per_request,
                concurrency: cli.concurrency,
                total_items: Some((cli.items / 20).max(cli.items_per_request as u64)),
                duration: None,
                rate: None,
            };
            load::run(&plan).await?; // warm-up, not measured
            tokio::time::sleep(Duration::from_millis(300)).await;
            plan.total_items = Some(cli.items);
            let pid = t.child.id();
            let cpu0 = measure::cpu_seconds(pid)?;
            let commits0 = wal_commits(t.metrics).await;
            let report = load::run(&plan).await?;
            // Let batches still held by the target be handled, on both targets alike; with Parquet,
            // until every file is finalized and stored (rotation after 1 s).
            tokio::time::sleep(Duration::from_millis(300)).await;
            if name.contains("parquet") {
                settle_storage(&t._dir.path().join("data")).await;
            }
            let cpu = measure::cpu_seconds(pid)? - cpu0;
            let rss = measure::peak_rss_kib(pid)? as f64 / 1024.0;
            let commits = match (commits0, wal_commits(t.metrics).await) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            };
            eprintln!("{name:8} {scenario:18} {}", report.text());
            if let Some(port) = t.metrics
                && name.contains("filter")
            {
                let dropped = metric(port, "openwit_processor_dropped_log_records_total{processor=\"filter\"}")
                    .await
                    .unwrap_or(0.0);
                let sent = (plan.total_items.unwrap_or(0) + (cli.items / 20).max(cli.items_per_request as u64)) as f64;
                let by_columns = metric(
                    port,
                    "openwit_processor_filter_evaluated_items_total{processor=\"filter\",evaluation=\"columns\"}",
                )
                .await
                .unwrap_or(0.0);
                eprintln!(
                    "         filter dropped {:.1} % of the log records sent; {:.0} % evaluated over Arrow rows",
                    100.0 * dropped / sent,
                    100.0 * by_columns / sent
                );
            }
            rows.push(Row {
                target: name.to_string(),
                scenario: scenario.clone(),
                cpu_s: cpu,
                cpu_s_per_million: measure::cpu_per_million(cpu, report.items_acked),
                peak_rss_mib: rss,
                wal_commits_per_s: commits.map(|c| c / report.elapsed_s),
                items_per_commit: commits.filter(|c| *c > 0.0).map(|c| report.items_acked as f64 / c),
                load: report,
            });
        }
    }
    let mut decode = Vec::new();
    for signal in [Signal::Traces, Signal::Logs, Signal::Metrics] {
        let reqs = load::encode_requests(signal, cli.seed, 64, cli.items_per_request);
        decode.push((
            format!("{signal:?}").to_lowercase(),
            measure::decode_items_per_s(signal, &reqs, cli.items_per_request, Duration::from_secs(2)),
        ));
    }
    std::fs::create_dir_all(&cli.scratch_dir)?;
    let synced = vec![
        measure::synced_write_throughput(&cli.scratch_dir, 4096, Duration::from_secs(2))?,
        measure::synced_write_throughput(&cli.scratch_dir, 1 << 20, Duration::from_secs(2))?,
    ];
    let results = Results {
        date: today(),
        commit: git_commit(),
        machine: machine(),
        items_per_scenario: cli.items,
        items_per_request: cli.items_per_request,
        concurrency: cli.concurrency,
        rows,
        decode_items_per_s: decode,
        synced_writes: synced,
        conversion,
        footprint,
        evaluation,
    };
    print!("{}", markdown(&results));
    if let Some(p) = &cli.json {
        std::fs::write(p, serde_json::to_string_pretty(&results)?)?;
    }
    Ok(())
}

fn markdown(r: &Results) -> String {
    let mut s = format!(
        "Run {} at commit {} on {}; {} items per scenario in requests of {}, {} in flight.\n\n",
        r.date, r.commit, r.machine, r.items_per_scenario, r.items_per_request, r.concurrency
    );
    s.push_str("| scenario | target | CPU-s per M items | items/s | peak RSS MiB | ack p50 ms | ack p99 ms | ack max ms | WAL commits/s | items/commit | refused/failed |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in &r.rows {
        let l = &row.load;
        let errors: u64 = l.errors.values().sum();
        s.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |\n",
            row.scenario,
            row.target,
            row.cpu_s_per_million,
            l.acked_items_per_s,
            row.peak_rss_mib,
            l.latency_p50_ms,
            l.latency_p99_ms,
            l.latency_max_ms,
            row.wal_commits_per_s.map_or("—".to_string(), |v| format!("{v:.0}")),
            row.items_per_commit.map_or("—".to_string(), |v| format!("{v:.0}")),
            errors
        ));
    }
    s.push_str(&ratio_table(
        r,
        "openwit",
        "rotel",
        "OpenWit CPU per item ÷ rotel CPU per item (below 1.0: OpenWit is cheaper)",
    ));
    for p in ["openwit + filter", "openwit + transform"] {
        s.push_str(&ratio_table(
            r,
            p,
            "openwit",
            &format!("{p}, CPU per item ÷ the same pipeline without it (batch only)"),
        ));
    }
    for p in ["parquet, filter → batch", "parquet, batch → filter"] {
        s.push_str(&ratio_table(
            r,
            p,
            "openwit + parquet",
            &format!("storing Parquet, {p}: CPU per item ÷ the same pipeline without the filter"),
        ));
    }
    if let Some(e) = &r.evaluation {
        s.push_str(&format!(
            "\nThe filter's condition `{}` (matches {:.1} % of the generated logs), one core, in-process, items/s:\n\n\
             | per item (decoded OTLP) | a column at a time (Arrow rows) | making the Arrow rows |\n|---:|---:|---:|\n\
             | {:.0} | {:.0} | {:.0} |\n",
            e.condition,
            100.0 * e.matched,
            e.per_item_items_per_s,
            e.by_columns_items_per_s,
            e.to_arrow_items_per_s
        ));
    }
    if !r.footprint.is_empty() {
        s.push_str("\nConversion on one core (items/s) and bytes on disk per item, Parquet (the exporter's writer) against the same\nrequests' protobuf compressed with zstd at the same level:\n\n");
        s.push_str("| signal | OTLP→Arrow items/s | Arrow→OTLP items/s | protobuf→rows, decoded items/s | protobuf→rows, direct items/s | items | Parquet B/item | zstd stream B/item | zstd per request B/item | protobuf B/item | Parquet ÷ zstd stream | Parquet ÷ zstd per request | writer CPU-s per M items |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (c, f) in r.conversion.iter().zip(&r.footprint) {
            let per = |b: u64| b as f64 / f.items as f64;
            s.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} |\n",
                f.signal,
                c.to_arrow_items_per_s,
                c.from_arrow_items_per_s,
                c.from_protobuf_decoded_items_per_s,
                c.from_protobuf_direct_items_per_s.map_or("—".to_string(), |r| format!("{r:.0}")),
                f.items,
                f.parquet_per_item(),
                per(f.zstd_stream_bytes),
                per(f.zstd_per_request_bytes),
                per(f.protobuf_bytes),
                f.ratio(),
                f.parquet_bytes as f64 / f.zstd_per_request_bytes as f64,
                f.write_cpu_s_per_million
            ));
        }
    }
    s.push_str(&ratio_table(
        r,
        "openwit + parquet + index",
        "openwit + parquet",
        "full-text indexing (logs and spans files): CPU per item storing with the index ÷ storing without it",
    ));
    s.push_str(&ratio_table(
        r,
        "openwit + parquet",
        "rotel",
        "OpenWit storing to Parquet (WAL + conversion + files + catalog), CPU per item ÷ rotel discarding (blackhole)",
    ));
    s.push_str("\nCeilings on this machine:\n\n| measure | value |\n|---|---:|\n");
    for (sig, v) in &r.decode_items_per_s {
        s.push_str(&format!("| protobuf decode, {sig} (one core, in-process) | {v:.0} items/s |\n"));
    }
    for w in &r.synced_writes {
        s.push_str(&format!(
            "| sequential write + fdatasync, {} KiB blocks | {:.1} MiB/s, {:.0} syncs/s |\n",
            w.block_bytes / 1024,
            w.mib_per_s,
            w.syncs_per_s
        ));
    }
    s
}

/// `target`'s CPU per item ÷ `baseline`'s, per scenario, as a markdown table under `heading` (empty
/// when either was not measured).
fn ratio_table(r: &Results, target: &str, baseline: &str, heading: &str) -> String {
    let rows: Vec<String> = r
        .rows
        .iter()
        .filter(|x| x.target == target)
        .filter_map(|o| {
            let p = r.rows.iter().find(|x| x.target == baseline && x.scenario == o.scenario)?;
            Some(format!("| {} | {:.2} |\n", o.scenario, o.cpu_s_per_million / p.cpu_s_per_million))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!("\n{heading}:\n\n| scenario | ratio |\n|---|---:|\n{}", rows.concat())
}
