//! Takes finalized files to their destination, one at a time, in order:
//! record in the catalog (`uploading`, with the items held) → upload → verify → mark `stable` →
//! remove the local copy → release the WAL batches (their completion is written only now).
//! Every step is retried with backoff for as long as it takes; meanwhile the files wait on local disk
//! and their batches in the WAL.
//!
//! Once a logs or spans file is stored it goes to the indexer (`indexer`), which puts its full-text index
//! beside it.
//!
//! At start, before the first batch is taken, what a previous run left is put right: unfinished files
//! (`*.part`) are deleted (their batches are still in the WAL), files recorded as `uploading` are
//! uploaded again (or, when the local copy is gone, checked in the store), and finalized files the
//! catalog never heard of are deleted.

use super::config::Retry;
use super::fresh::FreshFiles;
use super::indexer;
use super::metrics::ParquetMetrics;
use super::writer::Finalized;
use openwit_catalog::{Catalog, FileBatch, FileFilter, FileRow, UPLOADING};
use openwit_core::{Lineage, Verdict, columnar};
use openwit_storage::{Destination, size_and_tail};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// What the exporter and its uploader share.
pub struct Shared {
    pub exporter: String,
    pub node_id: String,
    pub destination: Arc<Destination>,
    pub staging: PathBuf,
    pub retry: Retry,
    /// Bytes of finalized files not yet stored, and the most allowed.
    pub backlog: AtomicU64,
    pub budget: u64,
    pub freed: Notify,
    /// The daemon's catalog.
    pub catalog: Catalog,
    /// Files a previous run left `uploading`, being uploaded again: the obligations for redelivered
    /// items they hold wait here, settled as stored once the file is.
    pub recovered: Mutex<HashMap<String, Lineage>>,
    pub metrics: ParquetMetrics,
    /// What the indexer builds.
    pub index: indexer::Settings,
    /// Staged files, read by queries until they are stable.
    pub fresh: Arc<Mutex<FreshFiles>>,
    ready: AtomicBool,
    ready_notify: Notify,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        exporter: String,
        node_id: String,
        catalog: Catalog,
        destination: Arc<Destination>,
        staging: PathBuf,
        retry: Retry,
        budget: u64,
        metrics: ParquetMetrics,
        index: indexer::Settings,
        fresh: Arc<Mutex<FreshFiles>>,
    ) -> Shared {
        Shared {
            exporter,
            node_id,
            destination,
            staging,
            retry,
            backlog: AtomicU64::new(0),
            budget,
            freed: Notify::new(),
            catalog,
            recovered: Mutex::new(HashMap::new()),
            metrics,
            index,
            fresh,
            ready: AtomicBool::new(false),
            ready_notify: Notify::new(),
        }
    }

    /// Waits until the start-up recovery is done (the catalog was reached then).
    pub async fn wait_ready(&self) -> &Catalog {
        loop {
            let notified = self.ready_notify.notified();
            if self.ready.load(Ordering::Acquire) {
                return &self.catalog;
            }
            notified.await;
        }
    }

    /// Keeps `pledge` until the recovered file `file_id` is stored, then settles it as stored. Returns
    /// the pledge when that file is not waiting (it is stored already).
    pub fn hold_for_recovered(&self, file_id: &str, pledge: Lineage) -> Option<Lineage> {
        let mut r = self.recovered.lock().unwrap_or_else(|p| p.into_inner());
        match r.get_mut(file_id) {
            Some(held) => {
                held.append(pledge);
                None
            }
            None => Some(pledge),
        }
    }

    /// Waits while finalized files waiting for the store take more than the budget.
    pub async fn wait_for_room(&self) {
        let mut warned = false;
        loop {
            let notified = self.freed.notified();
            let used = self.backlog.load(Ordering::Acquire);
            if used < self.budget {
                return;
            }
            if !warned {
                tracing::warn!(exporter = %self.exporter, used, budget = self.budget,
                    "Parquet staging budget reached (is the store reachable?); holding new batches until uploads catch up");
                warned = true;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::new()
            .with_min_delay(self.retry.initial_interval)
            .with_max_delay(self.retry.max_interval)
            .without_max_times()
            .with_jitter()
            .build()
    }

    /// Adds (or with a negative `delta`, removes) bytes waiting in staging.
    pub fn staged(&self, delta: i64) {
        let now = if delta >= 0 {
            self.backlog.fetch_add(delta as u64, Ordering::AcqRel) + delta as u64
        } else {
            let d = delta.unsigned_abs();
            let mut cur = self.backlog.load(Ordering::Acquire);
            loop {
                let next = cur.saturating_sub(d);
                match self.backlog.compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break next,
                    Err(c) => cur = c,
                }
            }
        };
        self.metrics.staging_bytes.set(now as i64);
        if delta < 0 {
            self.freed.notify_waiters();
        }
    }

    /// Runs `op` until it succeeds, waiting more between attempts each time; failures are counted
    /// under `step`.
    pub(super) async fn until_ok<T, F, Fut>(&self, step: Step, what: &str, mut op: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let mut delays = self.backoff();
        loop {
            match op().await {
                Ok(v) => return v,
                Err(e) => {
                    match step {
                        Step::Catalog => self.metrics.catalog_failures.inc(),
                        Step::Upload => self.metrics.upload_failures.inc(),
                    };
                    let d = delays.next().unwrap_or(self.retry.max_interval);
                    tracing::warn!(exporter = %self.exporter, "{what} failed ({e}); retrying in {d:?}");
                    tokio::time::sleep(d).await;
                }
            }
        }
    }
}

/// The steps whose failures are counted (`openwit_parquet_failures_total{step}`).
#[derive(Clone, Copy)]
pub(super) enum Step {
    Catalog,
    Upload,
}

/// A file on its way: what the catalog row says, the local copy, and the batches it releases.
struct Job {
    row: FileRow,
    batches: Vec<FileBatch>,
    local: PathBuf,
    tail: Option<[u8; 8]>,
    /// The obligations for the items the file holds: settled as stored once it is stable.
    pledge: Lineage,
    /// A file recovered at start: already in the catalog.
    recorded: bool,
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One uploader at a time per staging directory, for the life of the process: an exporter rebuilt after a
/// panic starts its recovery only once its predecessor's uploader has stored what it had queued.
static STAGING_OWNERS: std::sync::LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    std::sync::LazyLock::new(Mutex::default);

/// The uploader task: recovery, then every finalized file in order until the exporter closes the channel.
pub async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Finalized>) {
    let owner =
        STAGING_OWNERS.lock().unwrap_or_else(|p| p.into_inner()).entry(shared.staging.clone()).or_default().clone();
    let _staging = owner.lock_owned().await;
    indexer::clear(&shared.staging);
    let (index_tx, index_rx) = mpsc::channel(indexer::QUEUE);
    let indexing = tokio::spawn(indexer::run(shared.clone(), index_rx));
    let recovered = recover(&shared).await;
    shared.ready.store(true, Ordering::Release);
    shared.ready_notify.notify_waiters();
    for job in recovered {
        store(&shared, job, &index_tx).await;
    }
    while let Some(f) = rx.recv().await {
        let job = job_for(&shared, f);
        store(&shared, job, &index_tx).await;
    }
    // The exporter is closing: the files already stored are indexed before it ends.
    drop(index_tx);
    if let Err(e) = indexing.await {
        tracing::error!(exporter = %shared.exporter, "the indexer ended abnormally: {e}");
    }
}

fn job_for(shared: &Shared, f: Finalized) -> Job {
    let row = FileRow {
        file_id: f.file_id,
        exporter: shared.exporter.clone(),
        node_id: shared.node_id.clone(),
        tenant: f.tenant,
        signal: f.signal.as_str().to_string(),
        table_name: columnar::table_name(f.signal).to_string(),
        root: shared.destination.root.clone(),
        path: f.rel_path,
        min_time: f.min_time,
        max_time: f.max_time,
        row_count: f.rows as i64,
        byte_size: f.bytes as i64,
        state: UPLOADING.to_string(),
        created_at: now_ms(),
        uploaded_at: None,
    };
    let batches = f
        .held
        .iter()
        .map(|(b, s, l)| FileBatch { batch_id: b.to_string(), item_start: *s as i64, item_count: *l as i64 })
        .collect();
    Job { row, batches, local: f.local, tail: Some(f.tail), pledge: f.pledge, recorded: false }
}

async fn store(shared: &Shared, job: Job, index_tx: &mpsc::Sender<indexer::IndexJob>) {
    let catalog = &shared.catalog;
    let (id, rel, size) = (job.row.file_id.clone(), job.row.path.clone(), job.row.byte_size as u64);
    // Logs are indexed once stored; their rows are kept for it before the upload takes the local copy.
    let index_job = indexer::prepare(shared, &job.row, &job.local);
    if !job.recorded {
        shared
            .until_ok(Step::Catalog, "recording a Parquet file in the catalog", || async {
                catalog.add_file(&job.row, &job.batches).await.map_err(|e| e.to_string())
            })
            .await;
    }
    let dest = &shared.destination;
    let mut first = true;
    shared
        .until_ok(Step::Upload, &format!("uploading {rel} to {}", dest.root), || {
            let again = !std::mem::replace(&mut first, false);
            let (local, rel) = (job.local.clone(), rel.clone());
            async move {
                // After a failed attempt the object may be there already (a lost reply): look first.
                let verify = || async { dest.verify(&rel, size, job.tail).await.map_err(|e| e.to_string()) };
                if again && verify().await? {
                    return Ok(());
                }
                dest.upload(&local, &rel).await.map_err(|e| e.to_string())?;
                if verify().await? {
                    Ok(())
                } else {
                    Err(format!("{rel} does not match the local file after the upload"))
                }
            }
        })
        .await;
    shared
        .until_ok(Step::Catalog, "marking a Parquet file stable in the catalog", || async {
            catalog.file_stable(&id, now_ms()).await.map_err(|e| e.to_string())
        })
        .await;
    // Stable in the catalog: queries find it there from now on, no longer in staging.
    shared.fresh.lock().unwrap_or_else(|p| p.into_inner()).left(&id);
    if let Err(e) = std::fs::remove_file(&job.local)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %job.local.display(), "cannot remove the local copy of a stored file: {e}");
    }
    shared.staged(-(size as i64));
    if let Some(signal) = openwit_core::Signal::parse(&job.row.signal) {
        shared.metrics.stored(signal, job.row.row_count as u64, size);
    }
    let waiting = shared.recovered.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    tracing::debug!(exporter = %shared.exporter, file = %rel, rows = job.row.row_count, bytes = size, "Parquet file stored");
    // The file is durable where it was sent: its WAL batches may complete.
    job.pledge.settle(&Verdict::Stored);
    if let Some(w) = waiting {
        w.settle(&Verdict::Stored);
    }
    if let Some(j) = index_job
        && index_tx.send(j).await.is_err()
    {
        tracing::error!(exporter = %shared.exporter, file = %rel, "the indexer is gone; the file will be searched by scanning");
    }
}

/// Puts right what a previous run left in the staging directory and the catalog; returns the files to
/// upload again.
async fn recover(shared: &Shared) -> Vec<Job> {
    let catalog = &shared.catalog;
    if let Ok(entries) = std::fs::read_dir(&shared.staging) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "part") {
                tracing::info!(file = %e.path().display(), "removing an unfinished Parquet file (its batches are replayed from the WAL)");
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let filter = FileFilter {
        exporter: Some(shared.exporter.clone()),
        node_id: Some(shared.node_id.clone()),
        state: Some(UPLOADING.to_string()),
        ..Default::default()
    };
    let rows = shared
        .until_ok(Step::Catalog, "reading unfinished uploads from the catalog", || async {
            catalog.files(&filter).await.map_err(|e| e.to_string())
        })
        .await;
    let mut jobs = Vec::new();
    let mut known = std::collections::HashSet::new();
    for row in rows {
        let local = shared.staging.join(format!("{}.parquet", row.file_id));
        match size_and_tail(&local) {
            Ok((size, tail)) if size == row.byte_size as u64 => {
                known.insert(local.clone());
                stage_recovered(shared, &row, &local);
                tracing::info!(file = %row.path, "uploading a Parquet file a previous run left unfinished");
                shared.staged(size as i64);
                shared
                    .recovered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(row.file_id.clone(), Lineage::default());
                jobs.push(Job {
                    row,
                    batches: Vec::new(),
                    local,
                    tail: Some(tail),
                    pledge: Lineage::default(),
                    recorded: true,
                });
            }
            _ => {
                // No usable local copy (a damaged one is deleted below): either the upload finished before
                // the catalog heard of it, or the file never reached the store (its batches are then
                // written again from the WAL).
                let dest = &shared.destination;
                let there = shared
                    .until_ok(Step::Upload, &format!("checking {} in {}", row.path, dest.root), || async {
                        dest.verify(&row.path, row.byte_size as u64, None).await.map_err(|e| e.to_string())
                    })
                    .await;
                let id = row.file_id.clone();
                if there {
                    shared
                        .until_ok(Step::Catalog, "marking a Parquet file stable in the catalog", || async {
                            catalog.file_stable(&id, now_ms()).await.map_err(|e| e.to_string())
                        })
                        .await;
                } else {
                    tracing::info!(file = %row.path, "forgetting a Parquet file that never reached the store");
                    shared
                        .until_ok(Step::Catalog, "removing a Parquet file from the catalog", || async {
                            catalog.remove_file(&id).await.map_err(|e| e.to_string())
                        })
                        .await;
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(&shared.staging) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "parquet") && !known.contains(&p) {
                tracing::info!(file = %p.display(), "removing a finalized Parquet file the catalog never recorded (its batches are replayed from the WAL)");
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    jobs
}

/// Makes a recovered file readable by queries until it is stored.
fn stage_recovered(shared: &Shared, row: &FileRow, local: &std::path::Path) {
    let (Some(signal), Ok(file)) = (openwit_core::Signal::parse(&row.signal), std::fs::File::open(local)) else {
        return;
    };
    shared.fresh.lock().unwrap_or_else(|p| p.into_inner()).staged(openwit_core::fresh::FreshFile {
        file_id: row.file_id.clone(),
        exporter: row.exporter.clone(),
        node_id: row.node_id.clone(),
        state: openwit_core::fresh::FreshState::Staged,
        signal,
        tenant: row.tenant.clone(),
        min_time: row.min_time,
        max_time: row.max_time,
        rows: row.row_count as u64,
        path: local.to_path_buf(),
        file: Arc::new(file),
        len: row.byte_size as u64,
        metadata: None,
        buffered: Vec::new(),
    });
}
