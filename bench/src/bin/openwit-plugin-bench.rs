//! `openwit-plugin-bench`: what the plugin boundary costs. The same processor (the `redact` example)
//! runs in the daemon's processor stage twice over the same realistic log batches, in one run:
//! linked into this binary (`host::Native`, no ABI), and loaded from its shared library across the C
//! ABI (the Arrow C Data Interface both ways, the returned rows validated). Rounds alternate between
//! the two so that drift on the machine falls on both. CPU time is the thread's own
//! (`CLOCK_THREAD_CPUTIME_ID`), around the stage's call only.

use clap::Parser;
use openwit_bench::data::Generator;
use openwit_bench::measure::thread_cpu_ns;
use openwit_core::telemetry::SignalCounters;
use openwit_core::{Batch, Payload, TenantId};
use openwit_plugin::host::{self, Native, RowProcessor};
use openwit_plugin_redact::Redact;
use openwit_processors::plugin::PluginProcessor;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "openwit-plugin-bench", about = "a processor linked in vs the same processor as a plugin")]
struct Cli {
    /// The `redact` example built as a shared library (`libopenwit_plugin_redact.so`).
    #[arg(long)]
    plugin: PathBuf,
    /// Log records per round and mode.
    #[arg(long, default_value_t = 500_000)]
    records: usize,
    /// Records per batch (the batch processor's default send size).
    #[arg(long, default_value_t = 8192)]
    batch: usize,
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Every generated record has a `thread.name` with digits (`worker-12`): each row is rewritten.
const CONFIG: &str = r#"{"attributes": ["thread.name"], "patterns": ["[0-9]+"], "replacement": "N"}"#;

/// Nanoseconds of CPU per record: the whole stage, and the processor call alone.
struct Round {
    stage: f64,
    call: f64,
}

fn round(rows: Box<dyn RowProcessor>, batches: &[Batch], records: usize) -> Round {
    let mut direct = rows;
    // The call alone: the processor on each batch's rows.
    let start = thread_cpu_ns();
    for b in batches {
        let out = direct.process(b.columnar().expect("converted")).expect("processed");
        std::hint::black_box(out);
    }
    let call = thread_cpu_ns() - start;
    // The stage: the call, then the rows put on the batch (payload rebuilt from them).
    let mut stage = PluginProcessor::new(
        "redact".into(),
        direct,
        Box::new(|| Err("not rebuilt in the benchmark".into())),
        SignalCounters::default(),
    );
    let mut ns = 0;
    for b in batches {
        let b = b.clone();
        let start = thread_cpu_ns();
        let out = stage.process(b);
        ns += thread_cpu_ns() - start;
        assert!(out.is_some(), "the stage kept the batch");
        drop(out);
    }
    Round { stage: ns as f64 / records as f64, call: call as f64 / records as f64 }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let components = host::open(&cli.plugin)?;
    let component = components
        .into_iter()
        .find(|c| c.type_name == "redact")
        .ok_or_else(|| anyhow::anyhow!("{} has no redact processor", cli.plugin.display()))?;
    let mut generator = Generator::new(cli.seed);
    let tenant = TenantId::new("bench").unwrap();
    let batches: Vec<Batch> = (0..cli.records.div_ceil(cli.batch))
        .map(|i| {
            let n = cli.batch.min(cli.records - i * cli.batch);
            let b = Batch::new(tenant.clone(), Payload::Logs(generator.logs(n)));
            b.columnar().expect("the generated logs convert");
            b
        })
        .collect();
    let records = batches.iter().map(Batch::item_count).sum::<usize>();

    let (mut native, mut plugin) = (Vec::new(), Vec::new());
    for r in 0..cli.rounds + 1 {
        let n = round(
            Box::new(Native::<Redact>::new(CONFIG, openwit_plugin::Signal::Logs).map_err(anyhow::Error::msg)?),
            &batches,
            records,
        );
        let p = round(Box::new(component.create(CONFIG, openwit_plugin::Signal::Logs)?), &batches, records);
        // The first round warms caches and the allocator: not counted.
        if r > 0 {
            native.push(n);
            plugin.push(p);
        }
    }
    let m = |v: &[Round], f: fn(&Round) -> f64| median(v.iter().map(f).collect());
    let (ns, ps) = (m(&native, |r| r.stage), m(&plugin, |r| r.stage));
    let (nc, pc) = (m(&native, |r| r.call), m(&plugin, |r| r.call));
    println!(
        "{records} log records in batches of {}, {} rounds (medians), CPU ns per record:\n",
        cli.batch, cli.rounds
    );
    println!("| measure | linked in | plugin (C ABI) | plugin ÷ linked in |");
    println!("|---|---:|---:|---:|");
    println!("| processor stage (call + rows put on the batch) | {ns:.0} | {ps:.0} | {:.3} |", ps / ns);
    println!("| the processor call alone | {nc:.0} | {pc:.0} | {:.3} |", pc / nc);
    println!("\nboundary per batch: {:.1} µs ({:.1} ns per record)", (pc - nc) * cli.batch as f64 / 1000.0, pc - nc);
    Ok(())
}
