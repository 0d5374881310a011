//! `openwit-loadgen`: sends realistic OTLP to a target and reports what it acknowledged.

use clap::{Parser, Subcommand};
use openwit_bench::load::{self, Plan, Signal, Transport};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "openwit-loadgen", about = "Realistic OTLP load, deterministic from a seed")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send load and report items acknowledged, errors, rate and latency.
    Run(RunArgs),
    /// Describe the generated data: distinct values, sizes, compressibility.
    Report {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 20_000)]
        spans: usize,
        /// Print JSON instead of a Markdown table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Target `host:port`.
    #[arg(long, default_value = "127.0.0.1:4317")]
    endpoint: String,
    #[arg(long, value_enum, default_value = "grpc")]
    transport: Transport,
    #[arg(long, value_enum, default_value = "traces")]
    signal: Signal,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 500)]
    items_per_request: usize,
    /// Stop after this many items.
    #[arg(long)]
    total_items: Option<u64>,
    /// Stop after this long (e.g. 30s).
    #[arg(long, value_parser = humantime_duration)]
    duration: Option<Duration>,
    /// Items per second to aim for; as fast as possible when left out.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Distinct requests to pre-encode and cycle through.
    #[arg(long, default_value_t = 64)]
    distinct_requests: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Report { seed, spans, json } => {
            let r = openwit_bench::realism::measure(seed, spans);
            if json { println!("{}", serde_json::to_string_pretty(&r)?) } else { print!("{}", r.markdown()) }
        }
        Command::Run(a) => {
            if a.total_items.is_none() && a.duration.is_none() {
                anyhow::bail!("give --total-items or --duration");
            }
            let requests = load::encode_requests(a.signal, a.seed, a.distinct_requests, a.items_per_request);
            let plan = Plan {
                signal: a.signal,
                transport: a.transport,
                endpoint: a.endpoint,
                requests: Arc::new(requests),
                items_per_request: a.items_per_request,
                concurrency: a.concurrency,
                total_items: a.total_items,
                duration: a.duration,
                rate: a.rate,
            };
            let report = load::run(&plan).await?;
            if a.json { println!("{}", serde_json::to_string_pretty(&report)?) } else { println!("{}", report.text()) }
        }
    }
    Ok(())
}
