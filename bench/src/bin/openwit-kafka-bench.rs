//! Kafka → WAL throughput: messages/s and CPU-seconds per million spans for the `kafka` receiver,
//! beside OTLP/gRPC into the same daemon config (the baseline, measured in the same run).
//!
//! The brokers are librdkafka's mock cluster inside this process (the real wire protocol over
//! loopback), filled before the daemon starts, so the figure is how fast OpenWit drains a backlog:
//! consume, decode, write and fdatasync the WAL, commit. Exporter: `nop`.

use clap::Parser;
use openwit_bench::daemon::spawn_openwit;
use openwit_bench::load::{self, Plan, Signal, Transport, encode_requests};
use openwit_bench::measure::{cpu_per_million, cpu_seconds, prometheus_value};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    /// The release build of the daemon.
    #[arg(long)]
    openwit: PathBuf,
    /// Kafka messages (each one OTLP export request).
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    #[arg(long, default_value_t = 50)]
    spans_per_message: usize,
    /// Partitions of the topic; by default enough that each holds under 4 MiB (the mock broker
    /// drops the oldest messages of a partition past 5 MiB).
    #[arg(long)]
    partitions: Option<i32>,
    /// Distinct generated requests, sent in turn (generation is not what is measured).
    #[arg(long, default_value_t = 200)]
    distinct: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

const CONFIG: &str = "
receivers:
  RECEIVER
processors:
  batch:
exporters:
  nop:
extensions:
  health_check:
    endpoint: 127.0.0.1:HEALTH
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [RECEIVER_ID]
      processors: [batch]
      exporters: [nop]
  telemetry:
    metrics:
      address: 127.0.0.1:METRICS
";

struct Daemon {
    child: Child,
    metrics: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start(bin: &std::path::Path, receiver: &str, receiver_id: &str) -> anyhow::Result<Daemon> {
    let dir = tempfile::tempdir()?;
    let (health, metrics) = (free_port()?, free_port()?);
    let text = CONFIG
        .replace("RECEIVER_ID", receiver_id)
        .replace("RECEIVER", receiver)
        .replace("HEALTH", &health.to_string())
        .replace("METRICS", &metrics.to_string());
    let child = spawn_openwit(bin, dir.path(), &text)?;
    let mut d = Daemon { child, metrics, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{health}/");
    loop {
        if reqwest::get(&url).await.map(|r| r.status().is_success()).unwrap_or(false) {
            return Ok(d);
        }
        if let Some(st) = d.child.try_wait()? {
            anyhow::bail!("openwit exited before it was ready: {st}");
        }
        anyhow::ensure!(Instant::now() < deadline, "openwit not ready within 30s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric(d: &Daemon, name: &str) -> f64 {
    let url = format!("http://127.0.0.1:{}/metrics", d.metrics);
    match reqwest::get(&url).await {
        Ok(r) => prometheus_value(&r.text().await.unwrap_or_default(), name).unwrap_or(0.0),
        Err(_) => 0.0,
    }
}

#[derive(serde::Serialize)]
struct Result {
    scenario: &'static str,
    messages: usize,
    spans: usize,
    seconds: f64,
    messages_per_s: f64,
    spans_per_s: f64,
    cpu_seconds: f64,
    cpu_s_per_million_spans: f64,
}

impl Result {
    fn new(scenario: &'static str, messages: usize, spans: usize, seconds: f64, cpu: f64) -> Result {
        Result {
            scenario,
            messages,
            spans,
            seconds,
            messages_per_s: messages as f64 / seconds,
            spans_per_s: spans as f64 / seconds,
            cpu_seconds: cpu,
            cpu_s_per_million_spans: cpu_per_million(cpu, spans as u64),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let requests = Arc::new(encode_requests(Signal::Traces, 1, cli.distinct, cli.spans_per_message));
    let spans = cli.messages * cli.spans_per_message;
    let mut results = Vec::new();
    let avg_bytes = requests.iter().map(|r| r.len()).sum::<usize>() / requests.len().max(1);
    let partitions = cli.partitions.unwrap_or(((cli.messages * avg_bytes) / (4 << 20) + 1) as i32);
    eprintln!(
        "{} messages of {} spans, {} bytes on average, over {partitions} partitions",
        cli.messages, cli.spans_per_message, avg_bytes
    );

    // Kafka: fill the topic, then let the daemon drain it.
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("otlp_spans", partitions, 1)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", "5")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    for i in 0..cli.messages {
        let body = &requests[i % requests.len()];
        let mut rec = BaseRecord::<(), [u8]>::to("otlp_spans").partition(i as i32 % partitions).payload(&body[..]);
        while let Err((_, r)) = producer.send(rec) {
            producer.poll(Duration::from_millis(5));
            rec = r;
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120))?;
    eprintln!("topic filled: {} messages of {} spans", cli.messages, cli.spans_per_message);
    let receiver = format!(
        "kafka:\n    brokers: [{}]\n    group_id: bench\n    initial_offset: earliest\n",
        cluster.bootstrap_servers()
    );
    let d = start(&cli.openwit, &receiver, "kafka").await?;
    let stored_name = "openwit_kafka_messages_total{receiver=\"kafka\",outcome=\"stored\"}";
    // The clock starts at the first stored message: joining the group (seconds, the broker's
    // rebalance delay) is not what is measured.
    let started = Instant::now();
    let first = loop {
        let n = metric(&d, stored_name).await as usize;
        if n > 0 {
            break n;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the daemon stored nothing in a minute");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let cpu0 = cpu_seconds(d.child.id())?;
    let t0 = Instant::now();
    while (metric(&d, stored_name).await as usize) < cli.messages {
        if t0.elapsed() > Duration::from_secs(600) {
            let log = std::fs::read_to_string(d._dir.path().join("openwit.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            anyhow::bail!(
                "the daemon stored {} of {} messages in 10 minutes; its log ends:\n{}",
                metric(&d, stored_name).await,
                cli.messages,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds(d.child.id())? - cpu0);
    let measured = cli.messages - first;
    results.push(Result::new("kafka → WAL", measured, measured * cli.spans_per_message, secs, cpu));
    // Sanity: everything consumed is committed.
    let c: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).set("group.id", "bench").create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition("otlp_spans", p);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed: i64 = c
        .committed_offsets(tpl, Duration::from_secs(10))?
        .elements()
        .iter()
        .map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 })
        .sum();
    anyhow::ensure!(committed as usize == cli.messages, "committed {committed} of {} messages", cli.messages);
    drop(d);

    // Baseline: the same requests over OTLP/gRPC into the same pipeline.
    let grpc = free_port()?;
    let receiver = format!("otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n");
    let d = start(&cli.openwit, &receiver, "otlp").await?;
    let cpu0 = cpu_seconds(d.child.id())?;
    let plan = Plan {
        signal: Signal::Traces,
        transport: Transport::Grpc,
        endpoint: format!("127.0.0.1:{grpc}"),
        requests: requests.clone(),
        items_per_request: cli.spans_per_message,
        concurrency: 16,
        total_items: Some(spans as u64),
        duration: None,
        rate: None,
    };
    let report = load::run(&plan).await?;
    let cpu = cpu_seconds(d.child.id())? - cpu0;
    anyhow::ensure!(report.errors.is_empty(), "gRPC baseline had errors: {:?}", report.errors);
    results.push(Result::new(
        "OTLP/gRPC → WAL (baseline)",
        report.requests_acked as usize,
        report.items_acked as usize,
        report.elapsed_s,
        cpu,
    ));
    drop(d);

    println!("| scenario | messages/s | spans/s | CPU-s per million spans |");
    println!("|---|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} |",
            r.scenario, r.messages_per_s, r.spans_per_s, r.cpu_s_per_million_spans
        );
    }
    let (k, g) = (&results[0], &results[1]);
    println!(
        "\nkafka / gRPC: {:.2}× the spans/s, {:.2}× the CPU per span",
        k.spans_per_s / g.spans_per_s,
        k.cpu_s_per_million_spans / g.cpu_s_per_million_spans
    );
    if let Some(path) = cli.json {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)?;
    }
    Ok(())
}
