//! The janitor of one `parquet` exporter: compaction, retention, and deletion of what they retired.
//! Every daemon running the exporter does this work for the store it writes (all daemons of a fleet on
//! one bucket share it); leases in the catalog keep two daemons off the same partition.
//!
//! Compaction, per partition (exporter, store, table, tenant, hour), under its lease:
//! 1. leftovers of a compactor that died holding the lease before (`compacting` rows) are deleted,
//!    object first;
//! 2. the small stable files are read one at a time from the store and written into one new file
//!    (the exporter's own writer: row groups sorted, statistics, bloom filters);
//! 3. the new file is recorded `compacting`, uploaded and verified;
//! 4. one catalog transaction makes it `stable`, retires the inputs and moves their lineage to it —
//!    only if the lease is still held and every input still stable (otherwise step 1 of a later pass
//!    deletes it);
//! 5. the indexer's repair pass indexes it (queries scan it meanwhile).
//!
//! Retired files (by compaction or retention) are deleted after `grace_period`: objects and indexes
//! first, then their catalog rows. Killed at any step, nothing is lost (the inputs stay stable until the
//! swap) or duplicated (the swap is one transaction), and the next pass cleans what is left.

use super::config::{Compaction, Retention};
use super::uploader::{Shared, now_ms};
use super::writer::{Finalized, Rows, Writer, WriterSettings};
use openwit_catalog::{BY_COMPACTION, BY_RETENTION, COMPACTING, Catalog, Expired, FileRow, SwapError};
use openwit_core::{Lineage, Signal, columnar};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a compactor may hold a partition: far longer than merging `target_megabytes` takes.
const LEASE: Duration = Duration::from_secs(600);
/// Files retired or deleted per catalog round trip.
const PAGE: i64 = 500;

/// What the janitor does, from the exporter's config.
#[derive(Clone, Debug)]
pub struct Settings {
    pub compaction: Compaction,
    pub retention: Retention,
    /// For compaction outputs: the exporter's writer settings (compression, row groups).
    pub writer: WriterSettings,
}

/// Runs the janitor every `compaction.interval` until `stop`.
pub async fn run(shared: Arc<Shared>, settings: Settings, stop: CancellationToken) {
    let scratch = scratch_root(&shared);
    // Outputs of compactions a previous run left half-written.
    let _ = std::fs::remove_dir_all(&scratch);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(settings.compaction.interval) => {}
        }
        shared.wait_ready().await;
        if settings.compaction.enabled
            && let Err(e) = compact_all(&shared, &settings, &stop).await
        {
            tracing::warn!(exporter = %shared.exporter, "compaction pass failed ({e}); retrying at the next pass");
        }
        if let Err(e) = retire_expired(&shared, &settings.retention).await {
            tracing::warn!(exporter = %shared.exporter, "retention pass failed ({e}); retrying at the next pass");
        }
        if let Err(e) = delete_retired(&shared, settings.compaction.grace_period).await {
            tracing::warn!(exporter = %shared.exporter, "deleting retired files failed ({e}); retrying at the next pass");
        }
    }
}

fn scratch_root(shared: &Shared) -> PathBuf {
    let mut name = shared.staging.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".compact");
    shared.staging.with_file_name(name)
}

/// A partition: the files of one exporter, store, table, tenant and hour.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Partition {
    table: String,
    tenant: String,
    /// `logs/tenant=acme/date=2026-03-01/hour=10/`
    prefix: String,
}

impl Partition {
    fn of(f: &FileRow) -> Option<Partition> {
        let prefix = f.path.rsplit_once('/').map(|(p, _)| format!("{p}/"))?;
        Some(Partition { table: f.table_name.clone(), tenant: f.tenant.clone(), prefix })
    }

    /// The end of the partition's hour (Unix ms), from `date=…/hour=…` in its prefix.
    fn hour_end_ms(&self) -> Option<i64> {
        let date = self.prefix.split("date=").nth(1)?.get(..10)?;
        let hour: i64 = self.prefix.split("hour=").nth(1)?.get(..2)?.parse().ok()?;
        let mut ymd = date.split('-').map(|x| x.parse::<i32>().ok());
        let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
        let d = time::Date::from_calendar_date(y, time::Month::try_from(m as u8).ok()?, d as u8).ok()?;
        Some((d.midnight().assume_utc().unix_timestamp() + (hour + 1) * 3600) * 1000)
    }

    fn lease(&self, exporter: &str, root: &str) -> String {
        format!("compaction {exporter} {root}/{}", self.prefix)
    }
}

/// Groups of small stable files to merge, per partition: each at most `target` bytes, at least
/// `min_files` files, oldest rows first.
fn plan_compactions(files: Vec<FileRow>, c: &Compaction, now: i64) -> Vec<(Partition, Vec<FileRow>)> {
    let target = (c.target_megabytes * 1024.0 * 1024.0) as i64;
    let mut by_partition: BTreeMap<Partition, Vec<FileRow>> = BTreeMap::new();
    for f in files.into_iter().filter(|f| f.byte_size < target / 2) {
        if let Some(p) = Partition::of(&f) {
            by_partition.entry(p).or_default().push(f);
        }
    }
    let mut out = Vec::new();
    for (p, mut files) in by_partition {
        if p.hour_end_ms().is_none_or(|end| end + c.min_age.as_millis() as i64 > now) {
            continue;
        }
        files.sort_by(|a, b| (a.min_time, &a.file_id).cmp(&(b.min_time, &b.file_id)));
        let mut group: Vec<FileRow> = Vec::new();
        let mut bytes = 0;
        for f in files {
            if !group.is_empty() && bytes + f.byte_size > target {
                if group.len() >= c.min_files {
                    out.push((p.clone(), std::mem::take(&mut group)));
                }
                group.clear();
                bytes = 0;
            }
            bytes += f.byte_size;
            group.push(f);
        }
        if group.len() >= c.min_files {
            out.push((p, group));
        }
    }
    out
}

async fn compact_all(shared: &Arc<Shared>, settings: &Settings, stop: &CancellationToken) -> Result<(), String> {
    let c = &settings.compaction;
    let root = &shared.destination.root;
    // A file's rows lie in its hour, so a file of an hour that ended `min_age` ago has its newest row
    // before then: the query leaves out the rest (plan_compactions checks the hour itself).
    let now = now_ms();
    let settled = (now - c.min_age.as_millis() as i64).saturating_mul(1_000_000);
    let target = (c.target_megabytes * 1024.0 * 1024.0) as i64;
    let files = shared
        .catalog
        .compaction_candidates(&shared.exporter, root, target / 2, settled)
        .await
        .map_err(|e| e.to_string())?;
    for (partition, inputs) in plan_compactions(files, c, now) {
        if stop.is_cancelled() {
            break;
        }
        let lease = partition.lease(&shared.exporter, root);
        let now = now_ms();
        match shared.catalog.acquire_lease(&lease, &shared.node_id, now, now + LEASE.as_millis() as i64).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => return Err(e.to_string()),
        }
        let outcome = compact(shared, settings, &partition, &inputs, &lease).await;
        let _ = shared.catalog.release_lease(&lease, &shared.node_id).await;
        match outcome {
            Ok(()) => {
                shared.metrics.compacted("done", inputs.len() as u64);
            }
            Err(e) => {
                shared.metrics.compacted("failed", 0);
                tracing::warn!(exporter = %shared.exporter, partition = %partition.prefix, "compaction failed: {e}");
            }
        }
    }
    Ok(())
}

/// Deletes what a compactor of this partition left (its lease is ours now, so it is gone).
async fn clean_leftovers(shared: &Shared, partition: &Partition) -> Result<(), String> {
    let root = &shared.destination.root;
    let left =
        shared.catalog.compacting_files(root, &partition.table, &partition.tenant).await.map_err(|e| e.to_string())?;
    for f in left.into_iter().filter(|f| f.path.starts_with(&partition.prefix) && f.exporter == shared.exporter) {
        tracing::info!(exporter = %shared.exporter, file = %f.path, "deleting an unfinished compaction output");
        shared.destination.delete(&f.path).await.map_err(|e| e.to_string())?;
        shared.catalog.forget_file(&f.file_id).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn compact(
    shared: &Shared,
    settings: &Settings,
    partition: &Partition,
    inputs: &[FileRow],
    lease: &str,
) -> Result<(), String> {
    clean_leftovers(shared, partition).await?;
    let signal = Signal::parse(&inputs[0].signal).ok_or_else(|| format!("unknown signal {}", inputs[0].signal))?;
    let output = merge(shared, settings, signal, inputs).await?;
    let rows: i64 = inputs.iter().map(|f| f.row_count).sum();
    if output.rows as i64 != rows {
        let _ = std::fs::remove_file(&output.local);
        return Err(format!("merged {} rows from files holding {rows}; leaving the files as they are", output.rows));
    }
    let row = FileRow {
        file_id: output.file_id.clone(),
        exporter: shared.exporter.clone(),
        node_id: shared.node_id.clone(),
        tenant: output.tenant.clone(),
        signal: signal.as_str().to_string(),
        table_name: columnar::table_name(signal).to_string(),
        root: shared.destination.root.clone(),
        path: output.rel_path.clone(),
        min_time: output.min_time,
        max_time: output.max_time,
        row_count: output.rows as i64,
        byte_size: output.bytes as i64,
        state: COMPACTING.to_string(),
        created_at: now_ms(),
        uploaded_at: None,
    };
    let result = async {
        shared.catalog.add_file(&row, &[]).await.map_err(|e| e.to_string())?;
        shared.destination.upload(&output.local, &row.path).await.map_err(|e| e.to_string())?;
        if !shared.destination.verify(&row.path, output.bytes, Some(output.tail)).await.map_err(|e| e.to_string())? {
            return Err(format!("{} does not match the compacted file after the upload", row.path));
        }
        openwit_core::testing::crash_point("compaction-uploaded");
        let ids: Vec<String> = inputs.iter().map(|f| f.file_id.clone()).collect();
        match shared.catalog.swap_compacted(&row.file_id, &ids, lease, &shared.node_id, now_ms()).await {
            Ok(()) => Ok(()),
            Err(SwapError::Catalog(e)) => Err(e.to_string()),
            Err(e) => {
                // Someone else changed the inputs: this output goes.
                shared.destination.delete(&row.path).await.map_err(|e| e.to_string())?;
                shared.catalog.forget_file(&row.file_id).await.map_err(|e| e.to_string())?;
                Err(e.to_string())
            }
        }
    }
    .await;
    let _ = std::fs::remove_file(&output.local);
    result?;
    openwit_core::testing::crash_point("compaction-swapped");
    tracing::info!(exporter = %shared.exporter, partition = %partition.prefix, files = inputs.len(), rows,
        bytes = output.bytes, file = %row.path, "compacted");
    Ok(())
}

/// Reads `inputs` one at a time from the store, a row group at a time, into one new local file.
async fn merge(shared: &Shared, settings: &Settings, signal: Signal, inputs: &[FileRow]) -> Result<Finalized, String> {
    let scratch = scratch_root(shared);
    std::fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let ws = WriterSettings {
        staging: scratch,
        max_bytes: u64::MAX,
        max_age: Duration::from_secs(u64::MAX / 4),
        ..settings.writer.clone()
    };
    let writer = Arc::new(std::sync::Mutex::new(Writer::new(ws, Arc::default())));
    let schema =
        columnar::to_record_batch("t", &openwit_core::Payload::empty(signal)).map_err(|e| e.to_string())?.schema();
    for f in inputs {
        // Read from a file a row group at a time: an input held whole would cost up to half the
        // compaction target (128 MiB by default) of memory.
        let file = shared
            .destination
            .open_stored(&f.path, &scratch_root(shared))
            .await
            .map_err(|e| format!("cannot read {}: {e}", f.path))?;
        let (w, schema, tenant, path) = (writer.clone(), schema.clone(), f.tenant.clone(), f.path.clone());
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(8192).build())
                .map_err(|e| format!("cannot read {path}: {e}"))?;
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            for batch in reader {
                let batch = batch.map_err(|e| format!("cannot read {path}: {e}"))?;
                let batch = columnar::conform(&batch, &schema).map_err(|e| format!("{path}: {e}"))?;
                let rows = Rows {
                    signal,
                    tenant: &tenant,
                    batch,
                    items: Vec::new(),
                    batch_ids: Vec::new(),
                    pledge: Lineage::default(),
                };
                let done = w.write(rows).map_err(|e| format!("cannot write the compacted file: {e}"))?;
                if !done.is_empty() {
                    return Err("the rows of one partition went to several files".to_string());
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())??;
    }
    let mut done = tokio::task::spawn_blocking(move || writer.lock().unwrap_or_else(|p| p.into_inner()).finalize_all())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot finalize the compacted file: {e}"))?;
    match (done.pop(), done.is_empty()) {
        (Some(f), true) => Ok(f),
        (Some(f), false) => {
            for other in done.into_iter().chain([f]) {
                let _ = std::fs::remove_file(&other.local);
            }
            Err("the rows of one partition went to several files".to_string())
        }
        (None, _) => Err("the files held no rows".to_string()),
    }
}

/// The files of this exporter's store the retention rules retire now, oldest first per rule, at most
/// `limit` per table and rule.
pub async fn expired(
    catalog: &Catalog,
    exporter: &str,
    root: &str,
    retention: &Retention,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<FileRow>, openwit_catalog::CatalogError> {
    let now_ns = now_ms.saturating_mul(1_000_000);
    let before = |d: Duration| now_ns.saturating_sub(d.as_nanos().min(i64::MAX as u128) as i64);
    let mut out = Vec::new();
    let own: Vec<String> = retention.tenants.keys().cloned().collect();
    for table in ["spans", "logs", "metrics"] {
        let which = Expired { exporter, root, table, tenant: None, except: &own };
        for (tenant, d) in &retention.tenants {
            if !d.0.is_zero() {
                let one = Expired { tenant: Some(tenant), except: &[], ..which };
                out.extend(catalog.expired_files(&one, before(d.0), limit).await?);
            }
        }
        if let Some(d) = retention.of_table(table) {
            out.extend(catalog.expired_files(&which, before(d), limit).await?);
        }
    }
    Ok(out)
}

async fn retire_expired(shared: &Shared, retention: &Retention) -> Result<(), String> {
    if !retention.any() {
        return Ok(());
    }
    let now = now_ms();
    loop {
        let files = expired(&shared.catalog, &shared.exporter, &shared.destination.root, retention, now, PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let ids: Vec<String> = files.iter().map(|f| f.file_id.clone()).collect();
        let n = if ids.is_empty() {
            0
        } else {
            shared.catalog.retire(&ids, BY_RETENTION, now).await.map_err(|e| e.to_string())?
        };
        // Retired files leave the next page; none retired (none left, or all taken by another) ends it.
        if n == 0 {
            break;
        }
        shared.metrics.retired(BY_RETENTION, n);
        tracing::info!(exporter = %shared.exporter, files = n, "retired files past their retention");
    }
    if !retention.batches.is_zero() {
        let before = now - retention.batches.as_millis() as i64;
        let n = shared.catalog.prune_batches(before).await.map_err(|e| e.to_string())?;
        shared.metrics.batches_pruned(n);
    }
    Ok(())
}

/// Deletes retired files of this store whose grace period is over: objects first, then rows.
async fn delete_retired(shared: &Shared, grace: Duration) -> Result<(), String> {
    loop {
        let before = now_ms() - grace.as_millis() as i64;
        let due = shared
            .catalog
            .retired_before(&shared.exporter, &shared.destination.root, before, PAGE)
            .await
            .map_err(|e| e.to_string())?;
        for r in &due {
            for path in r.index_paths.iter().chain([&r.file.path]) {
                shared.destination.delete(path).await.map_err(|e| format!("cannot delete {path}: {e}"))?;
            }
            shared.catalog.forget_file(&r.file.file_id).await.map_err(|e| e.to_string())?;
            let reason = if r.reason == BY_COMPACTION { BY_COMPACTION } else { BY_RETENTION };
            shared.metrics.deleted(reason, r.file.byte_size as u64);
        }
        if (due.len() as i64) < PAGE {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str, hour: &str, bytes: i64, min_time: i64) -> FileRow {
        FileRow {
            file_id: id.into(),
            exporter: "parquet".into(),
            node_id: "n".into(),
            tenant: "acme".into(),
            signal: "logs".into(),
            table_name: "logs".into(),
            root: "file:///x".into(),
            path: format!("logs/tenant=acme/date=2026-03-01/hour={hour}/n-{id}.parquet"),
            min_time,
            max_time: min_time,
            row_count: 1,
            byte_size: bytes,
            state: openwit_catalog::STABLE.into(),
            created_at: 0,
            uploaded_at: None,
        }
    }

    #[test]
    fn small_files_of_closed_hours_are_grouped_up_to_the_target() {
        let mb = 1 << 20;
        let c = Compaction {
            target_megabytes: 10.0,
            min_files: 2,
            min_age: Duration::from_secs(600),
            ..Default::default()
        };
        // 2026-03-01T10:00Z; hour 10 ends at 11:00.
        let hour_10_end = 1_772_359_200_000 + 3_600_000;
        let files = vec![
            file("a", "10", 4 * mb, 3),
            file("b", "10", 4 * mb, 1),
            file("c", "10", 4 * mb, 2),
            file("big", "10", 6 * mb, 0),
            file("d", "11", mb, 0),
            file("e", "11", mb, 0),
        ];
        let ids = |plan: &[(Partition, Vec<FileRow>)]| -> Vec<Vec<String>> {
            plan.iter().map(|(_, g)| g.iter().map(|f| f.file_id.clone()).collect()).collect()
        };
        assert!(plan_compactions(files.clone(), &c, hour_10_end).is_empty(), "hour 10 just ended");
        let plan = plan_compactions(files.clone(), &c, hour_10_end + 600_000);
        // By time: b, c (8 MB), then a alone (not merged); `big` is half the target or more.
        assert_eq!(ids(&plan), [vec!["b", "c"]]);
        let plan = plan_compactions(files, &c, hour_10_end + 3_600_000 + 600_000);
        assert_eq!(ids(&plan), [vec!["b", "c"], vec!["d", "e"]]);
        assert_eq!(plan[1].0.prefix, "logs/tenant=acme/date=2026-03-01/hour=11/");
        assert_eq!(
            plan[1].0.lease("parquet", "s3://b"),
            "compaction parquet s3://b/logs/tenant=acme/date=2026-03-01/hour=11/"
        );
    }
}
