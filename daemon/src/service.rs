//! The daemon's life: start in order, run until a signal, stop in reverse order within the grace period.

use crate::graph;
use openwit_catalog::{Catalog, NodeInfo, Tracker};
use openwit_config::{ResolvedConfig, TelemetryConfig};
use openwit_core::health::{Health, HealthStatus};
use openwit_core::telemetry::Telemetry;
use openwit_core::{BuildEnv, ExtensionContext};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Sets up logging at `service.telemetry.logs.level` (`RUST_LOG`, when set, wins).
pub fn init_logging(t: &TelemetryConfig) {
    let level = match t.logs.level.to_ascii_lowercase().as_str() {
        "dpanic" | "panic" | "fatal" => "error".to_string(),
        l => l.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (a full disk under a redirected stderr) is dropped. With the
        // default, tracing reports it with eprintln!, which panics when stderr fails too: the WAL writer
        // died that way in the disk-fault tests, and ingest stopped for good.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if t.logs.encoding == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    for k in t.ignored_keys() {
        tracing::warn!("service.telemetry.{k} is accepted for Collector compatibility but has no effect in OpenWit");
    }
}

/// Runs the config until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(cfg: ResolvedConfig, data_dir: PathBuf, grace: Duration) -> anyhow::Result<()> {
    let telemetry = Arc::new(Telemetry::default());
    let health = Arc::new(Health::default());
    openwit_storage::create_dir_all_durably(&data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create the data directory {}: {e}", data_dir.display()))?;
    let catalog_url =
        cfg.catalog.url.clone().unwrap_or_else(|| format!("sqlite://{}", data_dir.join("catalog.db").display()));
    // The daemon's services, opened once and handed to every component that uses them.
    let catalog = Catalog::open(&catalog_url).map_err(|e| anyhow::anyhow!("extensions.catalog.url: {e}"))?;
    let storage = Arc::new(openwit_storage::Storage::default());
    let index_specs = Arc::new(openwit_core::text_index::IndexSpecs::default());
    let fresh = Arc::new(openwit_core::fresh::FreshData::default());
    let node = NodeInfo {
        node_id: node_id(&data_dir)?,
        hostname: hostname(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        address: api_address(&cfg),
        started_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        heartbeat_every: cfg.catalog.heartbeat_interval,
    };
    tracing::info!(catalog = %catalog.display_url(), node = %node.node_id, "batch tracking");
    let node_id: Arc<str> = Arc::from(node.node_id.as_str());
    let (tracker, tracker_task) = Tracker::start(catalog.clone(), cfg.catalog.flush_interval, node);
    // One budget for the process: the WAL writer charges the batches it hands on, exporters what they
    // buffer beyond a batch's life.
    let memory = openwit_core::memory::MemoryBudget::registered(cfg.wal.max_memory_megabytes << 20, &telemetry);
    let env = BuildEnv {
        data_dir,
        telemetry: telemetry.clone(),
        catalog: catalog.clone(),
        node_id: node_id.to_string(),
        columnar_downstream: false,
        signal: None,
        storage: storage.clone(),
        index_specs: index_specs.clone(),
        fresh: fresh.clone(),
        connector_outputs: Arc::default(),
        auth: Arc::default(),
        memory: memory.clone(),
    };
    let (operator, retries) = crate::durable::operator();
    let side_stop = CancellationToken::new();
    let mut side_tasks = Vec::new();
    let apis = Arc::new(openwit_core::shared::HttpApis::default());

    if let Some(endpoint) = cfg.telemetry.metrics_endpoint() {
        side_tasks
            .push(openwit_extensions::metrics_endpoint::start(&endpoint, telemetry.clone(), side_stop.clone()).await?);
    }
    // Extensions are built first so that the authenticators among them are known to everything that
    // references one (receivers, exporters, the API port), then started.
    let mut built = Vec::new();
    let mut auth = openwit_core::auth::Authenticators::default();
    for id in cfg.service_extensions.clone() {
        let ext = graph::builder(&cfg.extensions, &id, &env)?()?;
        if let Some(a) = ext.authenticator() {
            auth.insert(&id.to_string(), a);
        }
        built.push((id, ext));
    }
    let auth = Arc::new(auth);
    let env = BuildEnv { auth: auth.clone(), ..env };
    for (id, ext) in built {
        let ctx = ExtensionContext {
            id: id.clone(),
            catalog: catalog.clone(),
            operator: operator.clone(),
            health: health.clone(),
            telemetry: telemetry.clone(),
            storage: storage.clone(),
            index_specs: index_specs.clone(),
            fresh: fresh.clone(),
            apis: apis.clone(),
            auth: auth.clone(),
            shutdown: side_stop.clone(),
        };
        side_tasks.push(ext.start(ctx).await?);
    }
    side_tasks.extend(openwit_extensions::serve_apis(&apis, &side_stop).await?);

    let purge_delay = telemetry.float_gauge(
        "openwit_allocator_purge_delay_seconds",
        "How long the allocator keeps freed memory before giving it back to the OS (longer under load)",
    );
    side_tasks.push(tokio::spawn(crate::allocator::follow_load(memory.clone(), purge_delay, side_stop.clone())));
    let durability = open_wal(&cfg, &env.data_dir, &telemetry, tracker, node_id, retries, memory)?;
    let graph = graph::start(&cfg, &env, durability).await?;
    health.set(HealthStatus::Ready);
    tracing::info!(pipelines = cfg.pipelines.len(), "OpenWit is ready");
    side_tasks.push(tokio::spawn(crate::code_pages::keep_released(side_stop.clone())));

    let mut writer = graph.writer;
    tokio::select! {
        () = wait_for_signal() => {}
        r = &mut writer => {
            // Only a bug ends it while receivers run. Nothing acknowledged is lost (it is in the WAL); a
            // daemon that refuses everything while looking healthy is worse than one that exits and is
            // restarted.
            health.set(HealthStatus::Stopping);
            let why = r.err().map_or_else(|| "it returned".to_string(), |e| e.to_string());
            anyhow::bail!("the WAL writer stopped ({why}); exiting so that a restart replays the WAL");
        }
    }
    health.set(HealthStatus::Stopping);
    tracing::info!(grace = ?grace, "shutting down: no longer accepting data, draining pipelines");

    let drain = async {
        graph.receivers_stop.cancel();
        for t in graph.receivers {
            joined("a receiver", t.await);
        }
        joined("the WAL writer", writer.await);
        for (name, t) in graph.pipeline_tasks {
            joined(&name, t.await);
        }
        joined("the completion task", graph.completions.await);
        graph.wal.stopped().await;
        // Every tracker handle is gone with the pipelines: the tracker writes what it holds and ends.
        joined("the batch tracker", tracker_task.await);
    };
    let drained = tokio::time::timeout(grace, drain).await.is_ok();
    side_stop.cancel();
    for t in side_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    if drained {
        tracing::info!("stopped cleanly");
        Ok(())
    } else {
        anyhow::bail!(
            "pipelines did not drain within the shutdown timeout of {grace:?}; data still in flight was not exported (raise --shutdown-timeout)"
        )
    }
}

/// Logs a task that ended by panicking (components are supervised, so this is a bug in OpenWit itself;
/// what the task held stays in the WAL and is replayed at the next start).
fn joined(what: &str, r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r {
        tracing::error!("{what} ended abnormally: {e}");
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("received SIGTERM"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only SIGINT will stop the daemon");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Opens the WAL where the `wal` settings (or the defaults) say, recovering what it holds, and hands it
/// to its owner thread.
fn open_wal(
    cfg: &ResolvedConfig,
    data_dir: &std::path::Path,
    telemetry: &Arc<Telemetry>,
    tracker: openwit_catalog::TrackerHandle,
    node_id: Arc<str>,
    retries: tokio::sync::mpsc::Receiver<crate::durable::RetryRequest>,
    memory: Arc<openwit_core::memory::MemoryBudget>,
) -> anyhow::Result<graph::Durability> {
    let settings = &cfg.wal;
    let dir = settings.directory.clone().unwrap_or_else(|| data_dir.join("wal"));
    let wal_cfg = openwit_wal::WalConfig {
        dir: dir.clone(),
        fsync: settings.fsync,
        segment_bytes: settings.segment_megabytes << 20,
        max_disk_bytes: settings.max_disk_megabytes << 20,
    };
    if !settings.fsync {
        tracing::warn!("wal.fsync is off: acknowledged data can be lost on power failure");
    }
    openwit_storage::create_dir_all_durably(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create the write-ahead log directory {}: {e}", dir.display()))?;
    let (wal, recovered) = openwit_wal::Wal::open(wal_cfg)
        .map_err(|e| anyhow::anyhow!("cannot open the write-ahead log in {}: {e}", dir.display()))?;
    let metrics = Arc::new(crate::durable::WalMetrics::register(telemetry));
    metrics.quarantined_records.inc_by(recovered.quarantined_records as u64);
    for q in &recovered.quarantined_segments {
        metrics.quarantined_segments.get_or_create(&openwit_core::telemetry::labels(&[("segment", &q.name)])).inc();
    }
    tracing::info!(
        dir = %dir.display(),
        segments = recovered.segments,
        pending = recovered.pending.len(),
        completed = recovered.completed,
        quarantined = recovered.quarantined_records,
        quarantined_segments = recovered.quarantined_segments.len(),
        voided = recovered.voided,
        truncated_bytes = recovered.truncated_bytes,
        "write-ahead log opened"
    );
    let cleaned_tracker = tracker.clone();
    let cleaned = move |ids: Vec<openwit_core::BatchId>| {
        let at = crate::durable::now_ms();
        for id in ids {
            cleaned_tracker.send(openwit_catalog::Update::Cleaned { batch_id: id.to_string(), at });
        }
    };
    let (handle, owner) = crate::durable::WalHandle::start(wal, settings.janitor_interval, metrics.clone(), cleaned)
        .map_err(|e| anyhow::anyhow!("cannot start the WAL thread: {e}"))?;
    Ok(graph::Durability {
        wal: handle,
        metrics,
        owner,
        pending: recovered.pending,
        durable_offsets: durable_offsets(recovered.sources),
        tracker,
        node_id,
        export_retries: settings.export_retries,
        max_redeliveries: settings.max_redeliveries,
        memory,
        retries,
    })
}

/// The WAL's source offsets, grouped by the receiver they belong to.
fn durable_offsets(
    sources: Vec<(String, openwit_wal::SourceRange)>,
) -> std::collections::HashMap<String, openwit_core::DurableOffsets> {
    let mut by_receiver: std::collections::HashMap<String, openwit_core::DurableOffsets> = Default::default();
    for (receiver, r) in sources {
        by_receiver.entry(receiver).or_default().add(&openwit_core::SourceOffsets {
            topic: Arc::from(r.topic.as_str()),
            partition: r.partition,
            first: r.first_offset,
            last: r.last_offset,
        });
    }
    by_receiver
}

/// This daemon's id in a shared catalog: made once, kept in `DATA_DIR/node_id`.
fn node_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("node_id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let id = format!("{}-{}", hostname(), &uuid::Uuid::now_v7().simple().to_string()[20..]);
    openwit_storage::write_durably(&path, id.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "openwit".to_string())
}

/// Where this daemon serves its query API (else its batch monitor), for the `nodes` registry.
fn api_address(cfg: &ResolvedConfig) -> String {
    let endpoint = |kind: &str| {
        cfg.service_extensions.iter().filter(|id| id.type_name == kind).find_map(|id| {
            let section = cfg.tree.get("extensions")?.get(id.to_string())?;
            Some(section.get("endpoint")?.as_str()?.to_string())
        })
    };
    endpoint("query").or_else(|| endpoint("batch_monitor")).unwrap_or_default()
}
