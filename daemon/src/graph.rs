//! Turning a validated config into running tasks: the pipeline graph.
//!
//! Each used exporter gets one bounded input queue and one supervised task; each pipeline gets its own
//! instance of every processor it lists (built from the one parsed config), each supervised, chained by
//! bounded queues. The durable stage alone routes: per (receiver, signal), a fan-out over the entries of
//! the pipelines that list the receiver; receivers only learn which signals they serve. A pipeline's
//! entry is its first processor's queue, or its exporters' queues when it has no processors. Components
//! no pipeline uses are not built.
//!
//! A connector gets one queue and one supervised instance per signal it carries: the pipelines that
//! export to it feed the queue, and its output is the entries of the pipelines of that signal that list
//! it as a receiver. Batches pass through with their WAL obligations, so nothing is written twice. The
//! config check refuses cycles, so closing by ownership still reaches every task.
//!
//! Closing is by ownership: the graph keeps no senders, so when the receivers stop and drop their
//! ingest handles, the WAL writer stops, each queue closes in turn, every processor flushes, and every
//! exporter drains and shuts down.

use crate::durable::{self, Durable, Routes, WalHandle, WalOwner};
use crate::supervise::{self, Build};
use anyhow::Context;
use openwit_config::{Resolved, ResolvedConfig};
use openwit_core::telemetry::{Telemetry, labels};
use openwit_core::{Batch, BuildEnv, ComponentId, Fanout, ReceiverContext, Signal};
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
    /// Receiver tasks (and the redeliverer); they end when `receivers_stop` is cancelled.
    pub receivers: Vec<JoinHandle<()>>,
    pub receivers_stop: CancellationToken,
    /// The WAL writer; it ends once every receiver has dropped its handle.
    pub writer: JoinHandle<()>,
    /// Processor and exporter supervisors; they end once their inputs have drained.
    pub pipeline_tasks: Vec<(String, JoinHandle<()>)>,
    /// Acts on outcomes; ends once the pipelines have settled every batch.
    pub completions: JoinHandle<()>,
    /// The WAL's owner; it stops (after a last sync) once nothing uses the WAL.
    pub wal: WalOwner,
}

/// How the graph keeps its WAL.
pub struct Durability {
    pub wal: WalHandle,
    pub metrics: Arc<durable::WalMetrics>,
    pub owner: WalOwner,
    pub pending: Vec<openwit_wal::WalBatch>,
    /// Source offsets (Kafka) the WAL holds, per receiver id.
    pub durable_offsets: HashMap<String, openwit_core::DurableOffsets>,
    pub tracker: openwit_catalog::TrackerHandle,
    pub node_id: Arc<str>,
    pub export_retries: usize,
    pub max_redeliveries: u32,
    /// What batches between the WAL and storage may hold in memory, together.
    pub memory: Arc<openwit_core::memory::MemoryBudget>,
    /// Operator retry requests, served once the pipelines run.
    pub retries: mpsc::Receiver<durable::RetryRequest>,
}

/// Builds and starts everything the pipelines use, replays what the WAL holds, then starts the
/// receivers.
pub async fn start(cfg: &ResolvedConfig, env: &BuildEnv, durability: Durability) -> anyhow::Result<Graph> {
    let telemetry = env.telemetry.clone();
    let mut pipeline_tasks = Vec::new();

    // Exporters first, so that every queue has a consumer before anything can be sent.
    let mut exporter_inputs: HashMap<ComponentId, mpsc::Sender<Batch>> = HashMap::new();
    let mut columnar_exporters = std::collections::HashSet::new();
    let is_connector = |id: &ComponentId| cfg.connectors.iter().any(|c| &c.id == id);
    for spec in &cfg.pipelines {
        for id in &spec.exporters {
            if exporter_inputs.contains_key(id) || is_connector(id) {
                continue;
            }
            if cfg.exporters.iter().any(|r| &r.id == id && r.factory.reads_columnar()) {
                columnar_exporters.insert(id.clone());
            }
            let build = builder(&cfg.exporters, id, env)?;
            // Built here, so that a config that cannot build stops the start with its error.
            let first = build()?;
            // An exporter's `sending_queue.queue_size` sizes its queue; the WAL behind it is what persists.
            let configured = cfg.exporters.iter().find(|r| &r.id == id).map(|r| &r.config);
            let capacity = configured.and_then(|c| c.queue_size()).unwrap_or(EXPORTER_QUEUE);
            let consumers = configured.map_or(1, |c| c.consumers());
            let (tx, rx) = mpsc::channel(capacity);
            watch_queue(&telemetry, id, &tx);
            pipeline_tasks.push((
                format!("exporter {id}"),
                tokio::spawn(supervise::run_exporter(
                    id.clone(),
                    first,
                    build,
                    rx,
                    telemetry.clone(),
                    durability.export_retries,
                    consumers,
                )),
            ));
            exporter_inputs.insert(id.clone(), tx);
        }
    }

    // Connector queues, one per (connector, signal) that some pipeline exports to.
    let mut connector_inputs: HashMap<(ComponentId, Signal), (mpsc::Sender<Batch>, mpsc::Receiver<Batch>)> =
        HashMap::new();
    for spec in &cfg.pipelines {
        for id in spec.exporters.iter().filter(|id| is_connector(id)) {
            connector_inputs.entry((id.clone(), spec.id.signal)).or_insert_with(|| mpsc::channel(STAGE_QUEUE));
        }
    }
    // What each connector feeds: (pipeline id, its entry), per signal, in config order.
    let mut connector_outputs: HashMap<(ComponentId, Signal), Vec<(String, Fanout)>> = HashMap::new();

    // Pipelines: one processor instance per pipeline, chained back to front.
    let mut consumers: HashMap<ComponentId, HashMap<Signal, Vec<mpsc::Sender<Batch>>>> = HashMap::new();
    let mut gates: durable::Gates = HashMap::new();
    for spec in &cfg.pipelines {
        let mut next: Vec<mpsc::Sender<Batch>> = spec
            .exporters
            .iter()
            .map(|id| match exporter_inputs.get(id) {
                Some(tx) => tx.clone(),
                None => connector_inputs[&(id.clone(), spec.id.signal)].0.clone(),
            })
            .collect();
        // Only a processor followed by none but those that keep Arrow rows current (`filter`) converts:
        // rows made earlier would be remade after any processor that changes the items.
        let mut rows_survive = spec.exporters.iter().any(|e| columnar_exporters.contains(e));
        for id in spec.processors.iter().rev() {
            let penv = BuildEnv { columnar_downstream: rows_survive, signal: Some(spec.id.signal), ..env.clone() };
            // Each pipeline builds its own instance from the one parsed config (as in the Collector).
            let build = builder(&cfg.processors, id, &penv)
                .with_context(|| format!("cannot build processor {id} for pipeline {}", spec.id))?;
            rows_survive &= cfg.processors.iter().any(|r| &r.id == id && r.factory.keeps_columnar());
            let first = build().with_context(|| format!("processor {id} in pipeline {}", spec.id))?;
            if let Some(gate) = first.admission() {
                // Through connectors, the gate reaches the receivers that feed this pipeline.
                for r in origin_receivers(cfg, spec) {
                    gates.entry(Arc::from(r.to_string())).or_default().push(gate.clone());
                }
            }
            let (tx, rx) = mpsc::channel(STAGE_QUEUE);
            let name = format!("processor {id} in pipeline {}", spec.id);
            pipeline_tasks.push((
                name.clone(),
                tokio::spawn(supervise::run_processor(
                    name,
                    id.clone(),
                    first,
                    build,
                    rx,
                    Fanout::new(std::mem::take(&mut next)),
                    telemetry.clone(),
                )),
            ));
            next = vec![tx];
        }
        for r in &spec.receivers {
            if is_connector(r) {
                connector_outputs
                    .entry((r.clone(), spec.id.signal))
                    .or_default()
                    .push((spec.id.to_string(), Fanout::new(next.clone())));
            } else {
                consumers.entry(r.clone()).or_default().entry(spec.id.signal).or_default().extend(next.iter().cloned());
            }
        }
    }
    drop(exporter_inputs);

    // Connectors, once every pipeline they feed has its entry.
    for ((id, signal), (tx, rx)) in connector_inputs {
        drop(tx);
        let outputs = connector_outputs.remove(&(id.clone(), signal)).unwrap_or_default();
        let all = Fanout::union(outputs.iter().map(|(_, f)| f));
        let cenv = BuildEnv { signal: Some(signal), connector_outputs: Arc::new(outputs), ..env.clone() };
        let name = format!("connector {id} ({signal})");
        let build = builder(&cfg.connectors, &id, &cenv).with_context(|| format!("cannot build {name}"))?;
        let first = build().with_context(|| name.clone())?;
        pipeline_tasks.push((
            name.clone(),
            tokio::spawn(supervise::run_processor(name, id, first, build, rx, all, telemetry.clone())),
        ));
    }

    // The durable stage between receivers and pipelines (the one owner of routing), then replay, then
    // receivers.
    let receivers_signals: Vec<(ComponentId, Vec<Signal>)> =
        consumers.iter().map(|(id, by_signal)| (id.clone(), by_signal.keys().copied().collect())).collect();
    let routes: Routes = Arc::new(
        consumers
            .into_iter()
            .flat_map(|(id, by_signal)| {
                let id: Arc<str> = Arc::from(id.to_string());
                by_signal.into_iter().map(move |(sig, targets)| ((id.clone(), sig), Fanout::new(targets)))
            })
            .collect(),
    );
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (lost_tx, lost_rx) = mpsc::unbounded_channel();
    let track = durable::Tracking { tracker: durability.tracker, node_id: durability.node_id };
    let book = durable::Book::default();
    let completions = tokio::spawn(durable::run_completions(
        durability.wal.clone(),
        done_rx,
        durability.metrics.clone(),
        track.clone(),
        book.clone(),
        lost_tx,
    ));
    let receivers_stop = CancellationToken::new();
    let redeliverer = durable::Redeliverer {
        wal: durability.wal.clone(),
        routes: routes.clone(),
        completions: done_tx.clone(),
        metrics: durability.metrics.clone(),
        track: track.clone(),
        book,
        max_redeliveries: durability.max_redeliveries,
        memory: durability.memory.clone(),
    };
    let redeliveries =
        tokio::spawn(durable::redeliver::run(redeliverer, durability.retries, lost_rx, receivers_stop.clone()));
    let mut durable_offsets = durability.durable_offsets;
    durable::replay(
        durability.pending,
        &routes,
        &durability.memory,
        &done_tx,
        &durability.metrics,
        &track,
        Some(&mut durable_offsets),
    )
    .await;
    let (ingest, writer) =
        Durable::start(durability.wal, routes, durability.memory, done_tx, durability.metrics.clone(), track, gates);

    let mut receivers = vec![redeliveries];
    for (id, signals) in receivers_signals {
        let receiver = builder(&cfg.receivers, &id, env)?()?;
        let ctx = ReceiverContext {
            id: id.clone(),
            signals,
            ingest: ingest.clone(),
            telemetry: telemetry.clone(),
            shutdown: receivers_stop.clone(),
            // Moved, not copied: the holds in it are released by this receiver's commits.
            durable_offsets: durable_offsets.remove(&id.to_string()).unwrap_or_default(),
        };
        receivers.push(receiver.start(ctx).await?);
    }
    // From here only the receivers hold the durable handle: when they stop, the writer stops.
    drop(ingest);
    Ok(Graph { receivers, receivers_stop, writer, pipeline_tasks, completions, wal: durability.owner })
}

/// The receivers whose data reaches pipeline `spec`: its own, and through each connector it receives
/// from, those of the pipelines that export to that connector (the config has no cycles).
fn origin_receivers<'a>(cfg: &'a ResolvedConfig, spec: &'a openwit_config::PipelineSpec) -> Vec<&'a ComponentId> {
    let mut out = Vec::new();
    for r in &spec.receivers {
        if cfg.connectors.iter().any(|c| &c.id == r) {
            for up in cfg.pipelines.iter().filter(|p| p.id.signal == spec.id.signal && p.exporters.contains(r)) {
                out.extend(origin_receivers(cfg, up));
            }
        } else {
            out.push(r);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What builds instances of the component `id` from its parsed config (one per pipeline for
/// processors, and a fresh one after each panic).
pub fn builder<C: ?Sized + 'static>(
    list: &[Resolved<C>],
    id: &ComponentId,
    env: &BuildEnv,
) -> anyhow::Result<Build<C>> {
    let r = list.iter().find(|r| &r.id == id).with_context(|| format!("{id} is not configured"))?;
    let (config, id, env) = (r.config.clone(), id.clone(), env.clone());
    Ok(Box::new(move || config.build(&id, &env).with_context(|| format!("cannot build {id}"))))
}

/// `otelcol_exporter_queue_capacity` and `_size` for an exporter's queue, as the Collector names them.
fn watch_queue(telemetry: &Arc<Telemetry>, id: &ComponentId, tx: &mpsc::Sender<Batch>) {
    let l = labels(&[("exporter", &id.to_string())]);
    telemetry
        .gauges("otelcol_exporter_queue_capacity", "Capacity of an exporter's queue, in batches")
        .get_or_create(&l)
        .set(tx.max_capacity() as i64);
    let weak = tx.downgrade();
    let size = telemetry
        .gauges("otelcol_exporter_queue_size", "Batches waiting in an exporter's queue")
        .get_or_create(&l)
        .clone();
    telemetry.on_scrape(move || {
        let used = weak.upgrade().map(|s| s.max_capacity() - s.capacity()).unwrap_or(0);
        size.set(used as i64);
    });
}
