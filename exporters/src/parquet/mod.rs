//! The `parquet` exporter: stores every item as a row of a Parquet file, on local disk or in an object
//! store, and records each file in the catalog.
//!
//! A batch is accepted once its rows are in an active file; its WAL batch completes only when every file
//! holding its items is stored, verified and recorded `stable` (see `uploader`). Redelivered batches
//! (WAL replay, operator retry) are checked against the catalog's `file_batches` first, so items a file
//! already holds are not written again.

pub mod addressable;
pub mod config;
mod dictionary_chunk;
pub mod fresh;
mod indexer;
pub mod janitor;
mod metrics;
mod runs;
mod sort_key;
mod uploader;
pub mod writer;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use async_trait::async_trait;
use config::ParquetConfig;
use openwit_core::factory::{reading_columnar, typed};
use openwit_core::{
    AckToken, Batch, BatchId, BuildEnv, ComponentId, ExportError, Exporter, Factory, Lineage, Signal, Verdict,
};
use openwit_storage::Endpoint;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uploader::Shared;
use writer::{Finalized, Rows, Writer, WriterSettings};

/// Redelivered batches whose held items are remembered (beyond this, lookups of finished deliveries are
/// dropped).
const HELD_CACHE_BATCHES: usize = 100_000;

pub fn factory() -> Arc<dyn Factory<dyn Exporter>> {
    reading_columnar(typed::<ParquetConfig, dyn Exporter>(
        "parquet",
        &[],
        &Signal::ALL,
        "stores telemetry as Parquet files (local disk, S3, GCS, Azure) recorded in the catalog",
        |id: &ComponentId, cfg: &ParquetConfig, env: &BuildEnv| Ok(Box::new(ParquetExporter::start(id, cfg, env)?)),
    ))
}

/// Where the exporter `id` stores its files (opened through `storage`, the daemon's resolver).
pub fn destination(
    id: &ComponentId,
    cfg: &ParquetConfig,
    storage: &openwit_storage::Storage,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<openwit_storage::Destination>> {
    let endpoint = match &cfg.endpoint {
        Some(e) => Endpoint::parse(e, &cfg.storage_options).map_err(|e| anyhow::anyhow!("exporter {id}: {e}"))?,
        None => Endpoint::Local(data_dir.join("storage")),
    };
    storage.open(&endpoint, &cfg.storage_options).map_err(|e| {
        anyhow::anyhow!("exporter {id}: cannot open {}: {e}", cfg.endpoint.as_deref().unwrap_or("DATA_DIR/storage"))
    })
}

/// What this exporter indexes; its specs are registered for the query engine.
fn index_settings(id: &ComponentId, cfg: &ParquetConfig, env: &BuildEnv) -> indexer::Settings {
    let mut specs = std::collections::BTreeMap::new();
    for spec in cfg.index.specs() {
        if let Err(used) = env.index_specs.register(&spec) {
            tracing::warn!(exporter = %id, table = spec.table.name(),
                "this exporter indexes the table differently from another ({spec:?} here, {used:?} there); \
                 queries analyse text as the other does, so they scan this exporter's files instead of using their indexes");
        }
        specs.insert(spec.table, spec);
    }
    indexer::Settings {
        specs,
        repair_interval: cfg.index.repair_interval,
        arena_bytes: (cfg.index.memory_megabytes << 20) as usize,
        memory: Some(env.memory.clone()),
    }
}

/// What the catalog said one delivery of a redelivered WAL batch already has in files. Kept while that
/// delivery's token lives (its pieces arrive in several batches after the batch processor splits);
/// a later delivery of the same WAL batch has a new token and asks again.
struct Lookup {
    delivery: Weak<AckToken>,
    runs: Vec<HeldRun>,
}

/// Items of a WAL batch that a file already holds.
struct HeldRun {
    start: u32,
    len: u32,
    file_id: String,
    stable: bool,
}

struct ParquetExporter {
    id: String,
    writer: Arc<Mutex<Writer>>,
    shared: Arc<Shared>,
    files: Option<mpsc::UnboundedSender<Finalized>>,
    uploader: Option<JoinHandle<()>>,
    ticker: Option<JoinHandle<()>>,
    stop_ticker: CancellationToken,
    held: HashMap<BatchId, Lookup>,
    /// Registered (weakly) with the daemon for queries while the exporter lives.
    _fresh: Arc<dyn openwit_core::fresh::FreshSource>,
}

impl ParquetExporter {
    fn start(id: &ComponentId, cfg: &ParquetConfig, env: &BuildEnv) -> anyhow::Result<ParquetExporter> {
        let destination = destination(id, cfg, &env.storage, &env.data_dir)?;
        let staging = cfg
            .staging
            .directory
            .clone()
            .unwrap_or_else(|| env.data_dir.join("parquet").join(id.to_string().replace('/', "_")));
        openwit_storage::create_dir_all_durably(&staging).map_err(|e| {
            anyhow::anyhow!("exporter {id}: cannot create the staging directory {}: {e}", staging.display())
        })?;
        tracing::info!(exporter = %id, destination = %destination.root, staging = %staging.display(), "Parquet storage");
        let settings = WriterSettings {
            exporter: id.to_string(),
            staging: staging.clone(),
            node_id: env.node_id.clone(),
            compression_level: cfg.compression_level,
            row_group_rows: cfg.row_group_size,
            max_bytes: (cfg.rotation.max_megabytes * 1024.0 * 1024.0) as u64,
            max_age: cfg.rotation.max_age,
            sort_by: None,
            memory: Some(env.memory.clone()),
        };
        let fresh_files = Arc::new(Mutex::new(fresh::FreshFiles::default()));
        let shared = Arc::new(Shared::new(
            id.to_string(),
            env.node_id.clone(),
            env.catalog.clone(),
            destination,
            staging,
            cfg.retry_on_failure.clone(),
            (cfg.staging.max_megabytes * 1024.0 * 1024.0) as u64,
            metrics::ParquetMetrics::register(&env.telemetry, &id.to_string()),
            index_settings(id, cfg, env),
            fresh_files.clone(),
        ));
        let janitor = janitor::Settings {
            compaction: cfg.compaction.clone(),
            retention: cfg.retention.clone(),
            writer: settings.clone(),
        };
        let writer = Arc::new(Mutex::new(Writer::new(settings, fresh_files.clone())));
        // Queries read what the writer and staging hold until it is stable.
        let fresh: Arc<dyn openwit_core::fresh::FreshSource> =
            Arc::new(fresh::ExporterFresh { writer: writer.clone(), files: fresh_files });
        env.fresh.register(&fresh);
        let (tx, rx) = mpsc::unbounded_channel();
        let uploader = tokio::spawn(uploader::run(shared.clone(), rx));
        let stop_ticker = CancellationToken::new();
        let every = (cfg.rotation.max_age / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let ticker = tokio::spawn(rotate_aged(
            writer.clone(),
            shared.clone(),
            tx.clone(),
            every,
            env.memory.refusals(),
            stop_ticker.clone(),
        ));
        tokio::spawn(janitor::run(shared.clone(), janitor, stop_ticker.clone()));
        Ok(ParquetExporter {
            id: id.to_string(),
            writer,
            shared,
            files: Some(tx),
            uploader: Some(uploader),
            ticker: Some(ticker),
            stop_ticker,
            held: HashMap::new(),
            _fresh: fresh,
        })
    }

    /// Per row: keep it or not, and (batch index, item index) for the kept rows; the batch ids.
    /// Items of redelivered batches that a file already holds are dropped; those held by a file a
    /// previous run left unfinished are pledged to that file (stored when it is).
    async fn select(&mut self, batch: &Batch) -> Result<(Vec<bool>, Vec<(u32, u32)>, Vec<BatchId>), ExportError> {
        let mut tokens: Vec<&Arc<AckToken>> = Vec::new();
        for s in batch.lineage.segments() {
            if !tokens.iter().any(|t| Arc::ptr_eq(t, s.token())) {
                tokens.push(s.token());
            }
        }
        let current = |held: &HashMap<BatchId, Lookup>, t: &Arc<AckToken>| {
            held.get(t.id()).and_then(|l| l.delivery.upgrade()).is_some_and(|d| Arc::ptr_eq(&d, t))
        };
        let unknown: Vec<&Arc<AckToken>> =
            tokens.iter().copied().filter(|t| t.is_redelivery() && !current(&self.held, t)).collect();
        if !unknown.is_empty() {
            let texts: Vec<String> = unknown.iter().map(|t| t.id().to_string()).collect();
            let catalog = self.shared.wait_ready().await;
            let found = catalog
                .held_items(&self.id, &texts)
                .await
                .map_err(|e| ExportError::Retryable(format!("cannot check what was already stored: {e}")))?;
            if self.held.len() > HELD_CACHE_BATCHES {
                self.held.retain(|_, l| l.delivery.strong_count() > 0);
            }
            for t in &unknown {
                self.held.insert(*t.id(), Lookup { delivery: Arc::downgrade(t), runs: Vec::new() });
            }
            for h in found {
                if let Some(l) = h.items.batch_id.parse::<BatchId>().ok().and_then(|id| self.held.get_mut(&id)) {
                    l.runs.push(HeldRun {
                        start: h.items.item_start as u32,
                        len: h.items.item_count as u32,
                        stable: h.state == openwit_catalog::STABLE,
                        file_id: h.file_id,
                    });
                }
            }
        }
        let mut keep = Vec::with_capacity(batch.item_count());
        let mut items = Vec::with_capacity(batch.item_count());
        for s in batch.lineage.segments() {
            let ti = tokens.iter().position(|t| Arc::ptr_eq(t, s.token())).expect("collected above") as u32;
            let runs = if s.token().is_redelivery() { self.held.get(s.token().id()).map(|l| &l.runs) } else { None };
            let mut pledged: Vec<&str> = Vec::new();
            for item in s.start()..s.start() + s.len() {
                let holder = runs.and_then(|r| r.iter().find(|h| item >= h.start && item < h.start + h.len));
                match holder {
                    Some(h) => {
                        if !h.stable && !pledged.contains(&h.file_id.as_str()) {
                            pledged.push(&h.file_id);
                            let pledge = Lineage::range(s.token().clone(), s.start(), s.len());
                            // Stored already (between the lookup and now): nothing left to wait for.
                            if let Some(p) = self.shared.hold_for_recovered(&h.file_id, pledge) {
                                p.settle(&Verdict::Stored);
                            }
                        }
                        keep.push(false);
                    }
                    None => {
                        keep.push(true);
                        items.push((ti, item));
                    }
                }
            }
        }
        Ok((keep, items, tokens.iter().map(|t| *t.id()).collect()))
    }

    fn send(&self, files: Vec<Finalized>) {
        if let Some(tx) = &self.files {
            for f in files {
                self.shared.staged(f.bytes as i64);
                let _ = tx.send(f);
            }
        }
    }
}

#[async_trait]
impl Exporter for ParquetExporter {
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        self.shared.wait_ready().await;
        self.shared.wait_for_room().await;
        // As the conversion holds them: a resource's and scope's columns once per scope group.
        let rows = batch.columnar_grouped().map_err(|e| ExportError::Permanent(e.to_string()))?.clone();
        let (keep, items, batch_ids) =
            if batch.lineage.is_empty() { (Vec::new(), Vec::new(), Vec::new()) } else { self.select(batch).await? };
        if !keep.is_empty() && keep.len() != rows.num_rows() {
            return Err(ExportError::Permanent(format!(
                "the batch has {} rows but its lineage {} items",
                rows.num_rows(),
                keep.len()
            )));
        }
        let rows = if keep.iter().all(|k| *k) {
            rows
        } else {
            filter_record_batch(&rows, &BooleanArray::from(keep)).map_err(|e| ExportError::Permanent(e.to_string()))?
        };
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let (writer, signal, tenant) = (self.writer.clone(), batch.signal(), batch.tenant.to_string());
        // The files keep their own obligation for the batch: it completes only once they are stored.
        let pledge = batch.lineage.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
            w.write(Rows { signal, tenant: &tenant, batch: rows, items, batch_ids, pledge })
        })
        .await
        .map_err(|e| ExportError::Retryable(e.to_string()))?
        .map_err(|e| {
            let message = format!("cannot write Parquet: {e}");
            if e.is_permanent() { ExportError::Permanent(message) } else { ExportError::Retryable(message) }
        })?;
        self.send(done);
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), ExportError> {
        self.stop_ticker.cancel();
        if let Some(t) = self.ticker.take() {
            let _ = t.await;
        }
        let writer = self.writer.clone();
        let done = tokio::task::spawn_blocking(move || writer.lock().unwrap_or_else(|p| p.into_inner()).finalize_all())
            .await
            .map_err(|e| ExportError::Permanent(e.to_string()))?;
        let result = done.map(|files| self.send(files)).map_err(|e| ExportError::Permanent(e.to_string()));
        // Closing the channel lets the uploader end once every file is stored.
        self.files = None;
        if let Some(u) = self.uploader.take() {
            let _ = u.await;
        }
        result
    }
}

impl Drop for ParquetExporter {
    /// Also when the exporter panicked: the ticker stops, the uploader stores what it has queued and
    /// ends, and the open files go with the writer (their items are lost without a verdict, so their
    /// WAL batches are delivered again; the `.part` files are removed by the next uploader's recovery).
    fn drop(&mut self) {
        self.stop_ticker.cancel();
    }
}

/// Finalizes files older than `max_age`, checking every `every`; and writes buffered rows out when the
/// memory budget refuses a charge (`Writer::relieve_memory`).
async fn rotate_aged(
    writer: Arc<Mutex<Writer>>,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Finalized>,
    every: Duration,
    mut refusals: tokio::sync::watch::Receiver<()>,
    stop: CancellationToken,
) {
    let mut next = tokio::time::Instant::now() + every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => next = tokio::time::Instant::now() + every,
            _ = refused(&mut refusals) => {}
        }
        let w = writer.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            // Buffered rows that keep the memory budget spent are written out as soon as a batch waits.
            w.relieve_memory()?;
            w.rotate_aged()
        })
        .await;
        match done {
            Ok(Ok(files)) => {
                for f in files {
                    shared.staged(f.bytes as i64);
                    let _ = tx.send(f);
                }
            }
            Ok(Err(e)) => tracing::error!(exporter = %shared.exporter, "cannot finalize a Parquet file: {e}"),
            Err(e) => tracing::error!(exporter = %shared.exporter, "Parquet rotation task failed: {e}"),
        }
    }
}

/// Returns at the budget's next refused charge; never, once the budget is gone (shutdown).
async fn refused(refusals: &mut tokio::sync::watch::Receiver<()>) {
    if refusals.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use openwit_core::{Outcome, Payload, TenantId};

    fn logs(token: Arc<AckToken>, n: usize) -> Batch {
        let records = (0..n)
            .map(|i| LogRecord { time_unix_nano: 1_767_225_600_000_000_000 + i as u64, ..Default::default() })
            .collect();
        let mut b = Batch::new(
            TenantId::new("acme").unwrap(),
            Payload::Logs(ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                    ..Default::default()
                }],
            }),
        );
        b.lineage = Lineage::whole(token, n as u32);
        b
    }

    /// A build environment over a SQLite catalog in `dir`; returns it and the catalog's URL.
    fn env_in(dir: &std::path::Path) -> (BuildEnv, String) {
        let url = format!("sqlite://{}/catalog.db", dir.display());
        let env = BuildEnv {
            data_dir: dir.to_path_buf(),
            telemetry: Arc::default(),
            catalog: openwit_catalog::Catalog::open(&url).unwrap(),
            node_id: "n1".into(),
            columnar_downstream: false,
            signal: None,
            storage: Arc::default(),
            index_specs: Arc::default(),
            fresh: Arc::default(),
            connector_outputs: Arc::default(),
            auth: Arc::default(),
            memory: openwit_core::memory::MemoryBudget::new(128 << 20),
        };
        (env, url)
    }

    #[tokio::test]
    async fn the_index_arena_is_the_one_configured() {
        let tmp = tempfile::tempdir().unwrap();
        let (env, _) = env_in(tmp.path());
        let id = ComponentId::parse("parquet").unwrap();
        let mut cfg = ParquetConfig::default();
        assert_eq!(index_settings(&id, &cfg, &env).arena_bytes, openwit_index::build::WRITER_HEAP);
        cfg.index.memory_megabytes = 16;
        assert_eq!(index_settings(&id, &cfg, &env).arena_bytes, 16 << 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_delivered_again_in_the_same_process_is_stored_once() {
        let tmp = tempfile::tempdir().unwrap();
        let (env, url) = env_in(tmp.path());
        let mut cfg = ParquetConfig::default();
        cfg.rotation.max_age = Duration::from_millis(100);
        let mut e = ParquetExporter::start(&ComponentId::parse("parquet").unwrap(), &cfg, &env).unwrap();
        let (tx, mut done) = mpsc::unbounded_channel();
        let id = BatchId([9u8; 16]);
        // What the runtime does: export, then settle the batch by the answer.
        let mut deliver = async |b: Batch| {
            e.export(&b).await.unwrap();
            b.settle(&Verdict::Stored);
        };
        // Replayed at start: nothing holds it yet, so all of it is written.
        deliver(logs(AckToken::redelivered(id, tx.clone()), 10)).await;
        let first = tokio::time::timeout(Duration::from_secs(20), done.recv()).await.unwrap().unwrap();
        assert_eq!(first.outcome, Outcome::Stored, "{first:?}");
        // Retried by an operator (another exporter had failed it): a new delivery, already all stored.
        deliver(logs(AckToken::redelivered(id, tx.clone()), 10)).await;
        let second = tokio::time::timeout(Duration::from_secs(20), done.recv()).await.unwrap().unwrap();
        assert_eq!(second.outcome, Outcome::Stored);
        e.shutdown().await.unwrap();
        let catalog = openwit_catalog::Catalog::connect(&url).await.unwrap();
        let files = catalog.files(&Default::default()).await.unwrap();
        assert_eq!(files.iter().map(|f| f.row_count).sum::<i64>(), 10, "{files:?}");
    }
}
