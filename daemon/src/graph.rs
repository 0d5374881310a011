//! Turning a validated config into running tasks: the pipeline graph.
//!
//! Each used exporter gets one bounded input queue and one task; each pipeline gets its own instance
//! of every processor it lists, chained by bounded queues; each receiver gets, per signal, a fan-out
//! over the entries of the pipelines that list it. A pipeline's entry is its first processor's queue,
//! or its exporters' queues when it has no processors. Components no pipeline uses are not built.
//!
//! Closing is by ownership: the graph keeps no senders, so when the receivers stop and drop theirs,
//! each queue closes in turn, every processor flushes, and every exporter drains and shuts down.

use crate::durable::{self, Durable, Routes};
use anyhow::Context;
use backon::BackoffBuilder;
use openwit_config::{Resolved, ResolvedConfig};
use openwit_core::telemetry::Telemetry;
use openwit_core::{Batch, BuildEnv, ComponentId, ExportError, Exporter, Fanout, ReceiverContext, SignalConsumers};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Batches an exporter's queue holds before its pipelines wait.
pub const EXPORTER_QUEUE: usize = 16;
/// Batches between two processors of a pipeline.
pub const STAGE_QUEUE: usize = 16;

/// The running pipelines, in the order they must stop.
pub struct Graph {
    /// Receiver tasks; they end when `receivers_stop` is cancelled.
    pub receivers: Vec<JoinHandle<()>>,
    pub receivers_stop: CancellationToken,
    /// The WAL writer; it ends once every receiver has dropped its handle.
    pub writer: JoinHandle<()>,
    /// Processor and exporter tasks; they end once their inputs have drained.
    pub pipeline_tasks: Vec<JoinHandle<()>>,
    /// Records completions; ends once the pipelines have dropped every batch.
    pub completions: JoinHandle<()>,
}

/// How the graph keeps its WAL.
pub struct Durability {
    pub wal: Arc<std::sync::Mutex<openwit_wal::Wal>>,
    pub pending: Vec<openwit_wal::WalBatch>,
    /// Source offsets (Kafka) the WAL holds, per receiver id.
    pub durable_offsets: HashMap<String, openwit_core::DurableOffsets>,
    pub janitor_every: std::time::Duration,
    pub tracker: openwit_catalog::TrackerHandle,
    pub node_id: Arc<str>,
    pub export_retries: usize,
    /// Operator retry requests, served once the pipelines run.
    pub retries: mpsc::Receiver<durable::RetryRequest>,
}

/// Builds and starts everything the pipelines use, replays what the WAL holds, then starts the
/// receivers.
pub async fn start(cfg: &mut ResolvedConfig, env: &BuildEnv, durability: Durability) -> anyhow::Result<Graph> {
    let telemetry = env.telemetry.clone();
    let mut pipeline_tasks = Vec::new();

    // Exporters first, so that every queue has a consumer before anything can be sent.
    let mut exporter_inputs: HashMap<ComponentId, mpsc::Sender<Batch>> = HashMap::new();
    let mut columnar_exporters = std::collections::HashSet::new();
    for spec in &cfg.pipelines {
        for id in &spec.exporters {
            if exporter_inputs.contains_key(id) {
                continue;
            }
            if cfg.exporters.iter().any(|r| &r.id == id && r.factory.reads_columnar()) {
                columnar_exporters.insert(id.clone());
            }
            let exporter = build(&mut cfg.exporters, id, env)?;
            let (tx, rx) = mpsc::channel(EXPORTER_QUEUE);
            watch_queue(&telemetry, id, &tx);
            pipeline_tasks.push(tokio::spawn(run_exporter(
                id.to_string(),
                exporter,
                rx,
                telemetry.clone(),
                durability.export_retries,
            )));
            exporter_inputs.insert(id.clone(), tx);
        }
    }

    // Pipelines: one processor instance per pipeline, chained back to front.
    let mut consumers: HashMap<ComponentId, HashMap<openwit_core::Signal, Vec<mpsc::Sender<Batch>>>> = HashMap::new();
    for spec in &cfg.pipelines {
        let mut next: Vec<mpsc::Sender<Batch>> = spec.exporters.iter().map(|id| exporter_inputs[id].clone()).collect();
        let penv = BuildEnv {
            columnar_downstream: spec.exporters.iter().any(|e| columnar_exporters.contains(e)),
            ..env.clone()
        };
        for id in spec.processors.iter().rev() {
            let resolved = cfg.processors.iter().find(|p| &p.id == id).context("processor vanished from the config")?;
            // Each pipeline parses its own copy: processors are not shared between pipelines.
            let raw = &cfg.tree["processors"][id.to_string().as_str()];
            let parsed = resolved.factory.parse(raw).map_err(|i| anyhow::anyhow!("processor {id}: {}", i.message))?;
            let processor = resolved
                .factory
                .build(id, parsed, &penv)
                .with_context(|| format!("cannot build processor {id} for pipeline {}", spec.id))?;
            let (tx, rx) = mpsc::channel(STAGE_QUEUE);
            pipeline_tasks.push(tokio::spawn(processor.run(rx, Fanout::new(std::mem::take(&mut next)))));
            next = vec![tx];
        }
        for r in &spec.receivers {
            consumers.entry(r.clone()).or_default().entry(spec.id.signal).or_default().extend(next.iter().cloned());
        }
    }
    drop(exporter_inputs);

    // The durable stage between receivers and pipelines, then replay, then receivers.
    let routes: Routes = Arc::new(
        consumers
            .iter()
            .flat_map(|(id, by_signal)| {
                by_signal
                    .iter()
                    .map(move |(sig, targets)| ((Arc::from(id.to_string()), *sig), Fanout::new(targets.clone())))
            })
            .collect(),
    );
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let track = durable::Tracking { tracker: durability.tracker, node_id: durability.node_id };
    let failed = durable::FailedSet::default();
    let completions = tokio::spawn(durable::run_completions(
        durability.wal.clone(),
        done_rx,
        telemetry.clone(),
        durability.janitor_every,
        track.clone(),
        failed.clone(),
    ));
    let receivers_stop = CancellationToken::new();
    let retrier = durable::Retrier {
        wal: durability.wal.clone(),
        routes: routes.clone(),
        completions: done_tx.clone(),
        telemetry: telemetry.clone(),
        track: track.clone(),
        failed,
    };
    let retries = tokio::spawn(durable::run_retries(durability.retries, retrier, receivers_stop.clone()));
    durable::replay(durability.pending, &routes, &done_tx, &telemetry, &track).await;
    let (ingest, writer) = Durable::start(durability.wal, routes, done_tx, telemetry.clone(), track);

    let mut receivers = vec![retries];
    for (id, by_signal) in consumers {
        let receiver = build(&mut cfg.receivers, &id, env)?;
        let mut sc = SignalConsumers::default();
        for (signal, targets) in by_signal {
            sc.set(signal, Fanout::new(targets));
        }
        let ctx = ReceiverContext {
            id: id.clone(),
            consumers: sc,
            ingest: ingest.clone(),
            telemetry: telemetry.clone(),
            shutdown: receivers_stop.clone(),
            durable_offsets: durability.durable_offsets.get(&id.to_string()).cloned().unwrap_or_default(),
        };
        receivers.push(receiver.start(ctx).await?);
    }
    // From here only the receivers hold the durable handle: when they stop, the writer stops.
    drop(ingest);
    Ok(Graph { receivers, receivers_stop, writer, pipeline_tasks, completions })
}

/// Builds the component `id`, taking its parsed config (each is built once).
pub fn build<C: ?Sized>(list: &mut Vec<Resolved<C>>, id: &ComponentId, env: &BuildEnv) -> anyhow::Result<Box<C>> {
    let pos = list.iter().position(|r| &r.id == id).with_context(|| format!("{id} is not configured"))?;
    let r = list.swap_remove(pos);
    r.factory.build(&r.id, r.config, env).with_context(|| format!("cannot build {id}"))
}

fn watch_queue(telemetry: &Arc<Telemetry>, id: &ComponentId, tx: &mpsc::Sender<Batch>) {
    let labels = vec![("exporter".to_string(), id.to_string())];
    telemetry.exporter_queue_capacity.get_or_create(&labels).set(tx.max_capacity() as i64);
    let weak = tx.downgrade();
    let size = telemetry.exporter_queue_size.get_or_create(&labels).clone();
    telemetry.on_scrape(move || {
        let used = weak.upgrade().map(|s| s.max_capacity() - s.capacity()).unwrap_or(0);
        size.set(used as i64);
    });
}

async fn run_exporter(
    id: String,
    mut exporter: Box<dyn Exporter>,
    mut rx: mpsc::Receiver<Batch>,
    telemetry: Arc<Telemetry>,
    retries: usize,
) {
    let labels = [("exporter", id.as_str())];
    let backoff = backon::ExponentialBuilder::new()
        .with_min_delay(std::time::Duration::from_millis(200))
        .with_max_delay(std::time::Duration::from_secs(5))
        .with_max_times(retries)
        .with_jitter();
    while let Some(batch) = rx.recv().await {
        let (signal, n) = (batch.signal(), batch.item_count());
        // The policy comes from backon; the loop is ours because each attempt borrows the exporter.
        let mut delays = backoff.build();
        let result = loop {
            match exporter.export(&batch).await {
                Ok(()) => break Ok(()),
                Err(e @ ExportError::Retryable(_)) => match delays.next() {
                    Some(d) => {
                        tracing::warn!(exporter = %id, "export failed ({e}); retrying in {d:?}");
                        tokio::time::sleep(d).await;
                    }
                    None => break Err(e),
                },
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => telemetry.exporter_sent.add(signal, &labels, n),
            Err(e) => {
                tracing::error!(exporter = %id, %signal, items = n, "export failed: {e}");
                telemetry.exporter_send_failed.add(signal, &labels, n);
                // The WAL keeps the batch; it is replayed at the next start.
                batch.lineage.fail_all(&format!("exporter {id}: {e}"));
            }
        }
    }
    if let Err(e) = exporter.shutdown().await {
        tracing::error!(exporter = %id, "shutdown failed: {e}");
    }
}
