//! What every catalog engine must do. Each function gets a fresh, migrated catalog.

use openwit_catalog::{BatchFilter, Catalog, NewBatch, Stage, Update};

const T0: i64 = 1_767_225_600_000; // 2026-01-01

fn batch(id: &str, tenant: &str, created_at: i64) -> NewBatch {
    NewBatch {
        batch_id: id.into(),
        client_id: tenant.into(),
        signal: "traces".into(),
        receiver: "otlp".into(),
        node_id: "node-a".into(),
        item_count: 100,
        byte_size: 4096,
        topics: None,
        first_offset: None,
        last_offset: None,
        created_at,
    }
}

fn stage(row: &openwit_catalog::BatchRow, s: Stage) -> (bool, Option<i64>) {
    let st = row.stages.iter().find(|x| x.stage == s).unwrap();
    (st.done, st.completed_at)
}

pub async fn migrations_apply_once_and_reconnect(c: Catalog) {
    c.apply(&[Update::Written { batch: batch("b1", "acme", T0), at: T0 + 1 }]).await.unwrap();
    // Connecting again re-runs the migrator: nothing changes, nothing is lost.
    let again = c.reconnect().await.unwrap();
    assert!(again.batch("b1").await.unwrap().is_some());
    assert_eq!(again.count("SELECT COUNT(*) FROM batch_tracker").await.unwrap(), 1);
}

pub async fn lifecycle_written_stored_cleaned(c: Catalog) {
    c.apply(&[Update::Written { batch: batch("b1", "acme", T0), at: T0 + 5 }]).await.unwrap();
    let r = c.batch("b1").await.unwrap().unwrap();
    assert_eq!(r.status, "pending");
    assert_eq!(stage(&r, Stage::Wal), (true, Some(T0 + 5)));
    assert_eq!(stage(&r, Stage::Ingestion), (false, None), "durable, not yet handed to its pipelines");
    c.apply(&[Update::Ingested { batch_id: "b1".into(), at: T0 + 6 }]).await.unwrap();
    let r = c.batch("b1").await.unwrap().unwrap();
    assert_eq!(stage(&r, Stage::Ingestion), (true, Some(T0 + 6)));
    assert_eq!(stage(&r, Stage::Storage), (false, None));
    assert_eq!(stage(&r, Stage::Kafka), (false, None));
    assert_eq!((r.batch.item_count, r.batch.byte_size, r.batch.client_id.as_str()), (100, 4096, "acme"));
    c.apply(&[
        Update::Stored { batch_id: "b1".into(), at: T0 + 9 },
        Update::Cleaned { batch_id: "b1".into(), at: T0 + 20 },
    ])
    .await
    .unwrap();
    let r = c.batch("b1").await.unwrap().unwrap();
    assert_eq!(r.status, "completed");
    assert_eq!(stage(&r, Stage::Storage), (true, Some(T0 + 9)));
    assert_eq!(stage(&r, Stage::Janitor), (true, Some(T0 + 20)));
    assert_eq!(r.updated_at, T0 + 20);
    assert!(c.batch("missing").await.unwrap().is_none());
}

pub async fn failure_keeps_stage_and_error(c: Catalog) {
    c.apply(&[
        Update::Written { batch: batch("b1", "acme", T0), at: T0 },
        Update::Failed {
            batch_id: "b1".into(),
            stage: Stage::Storage,
            error: "exporter file: disk full".into(),
            at: T0 + 3,
        },
    ])
    .await
    .unwrap();
    let r = c.batch("b1").await.unwrap().unwrap();
    assert_eq!(r.status, "failed");
    assert_eq!(r.error_stage.as_deref(), Some("storage"));
    assert_eq!(r.error_message.as_deref(), Some("exporter file: disk full"));
    assert_eq!(stage(&r, Stage::Storage), (false, None));
}

pub async fn replay_counts_retries_and_creates_missing_rows(c: Catalog) {
    c.apply(&[
        Update::Written { batch: batch("b1", "acme", T0), at: T0 },
        Update::Failed { batch_id: "b1".into(), stage: Stage::Storage, error: "x".into(), at: T0 + 1 },
        Update::Replayed { batch: batch("b1", "acme", T0), at: T0 + 100 },
        Update::Replayed { batch: batch("b1", "acme", T0), at: T0 + 200 },
        Update::Ingested { batch_id: "b1".into(), at: T0 + 201 },
        // A batch the catalog never heard of (it was unreachable before the crash).
        Update::Replayed { batch: batch("b2", "beta", T0 + 50), at: T0 + 300 },
    ])
    .await
    .unwrap();
    let r = c.batch("b1").await.unwrap().unwrap();
    assert_eq!((r.status.as_str(), r.retry_count), ("pending", 2));
    assert_eq!(stage(&r, Stage::Ingestion), (true, Some(T0 + 201)));
    let r2 = c.batch("b2").await.unwrap().unwrap();
    assert_eq!((r2.status.as_str(), r2.retry_count, r2.batch.client_id.as_str()), ("pending", 1, "beta"));
}

pub async fn listing_filters_by_status_tenant_age_and_limit(c: Catalog) {
    let mut u = Vec::new();
    for i in 0..10 {
        let tenant = if i % 2 == 0 { "acme" } else { "beta" };
        u.push(Update::Written { batch: batch(&format!("b{i}"), tenant, T0 + i * 60_000), at: T0 + i * 60_000 });
    }
    u.push(Update::Stored { batch_id: "b0".into(), at: T0 + 1 });
    u.push(Update::Failed { batch_id: "b1".into(), stage: Stage::Storage, error: "e".into(), at: T0 + 2 });
    c.apply(&u).await.unwrap();
    let now = T0 + 10 * 60_000;
    let ids = |rows: Vec<openwit_catalog::BatchRow>| rows.into_iter().map(|r| r.batch.batch_id).collect::<Vec<_>>();
    let all = c.batches(&BatchFilter { limit: 100, ..Default::default() }, now).await.unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[0].batch.batch_id, "b9", "newest first");
    let pending = c
        .batches(&BatchFilter { status: Some("pending".into()), limit: 100, ..Default::default() }, now)
        .await
        .unwrap();
    assert_eq!(pending.len(), 8);
    let failed =
        c.batches(&BatchFilter { status: Some("failed".into()), limit: 100, ..Default::default() }, now).await.unwrap();
    assert_eq!(ids(failed), vec!["b1"]);
    let acme =
        c.batches(&BatchFilter { tenant: Some("acme".into()), limit: 100, ..Default::default() }, now).await.unwrap();
    assert!(acme.iter().all(|r| r.batch.client_id == "acme") && acme.len() == 5);
    // At least 5 minutes old: created at or before now - 5 min (b0..b5).
    let old =
        c.batches(&BatchFilter { min_age_ms: Some(300_000), limit: 100, ..Default::default() }, now).await.unwrap();
    assert_eq!(ids(old), vec!["b5", "b4", "b3", "b2", "b1", "b0"]);
    let two = c.batches(&BatchFilter { limit: 2, ..Default::default() }, now).await.unwrap();
    assert_eq!(ids(two), vec!["b9", "b8"]);
}

pub async fn alerts_show_stuck_and_failed(c: Catalog) {
    c.apply(&[
        Update::Written { batch: batch("old", "acme", T0), at: T0 },
        Update::Written { batch: batch("new", "acme", T0 + 3_500_000), at: T0 + 3_500_000 },
        Update::Written { batch: batch("done", "acme", T0), at: T0 },
        Update::Stored { batch_id: "done".into(), at: T0 + 10 },
        Update::Written { batch: batch("bad", "beta", T0 + 3_590_000), at: T0 + 3_590_000 },
        Update::Failed { batch_id: "bad".into(), stage: Stage::Storage, error: "e".into(), at: T0 + 3_590_001 },
    ])
    .await
    .unwrap();
    let alerts = c.alerts(3_600_000, T0 + 3_600_000, 100).await.unwrap();
    let ids: Vec<_> = alerts.iter().map(|r| r.batch.batch_id.as_str()).collect();
    assert_eq!(ids, vec!["old", "bad"], "stuck for an hour, and failed; oldest first");
}

pub async fn status_counts_by_status_stage_and_tenant(c: Catalog) {
    c.apply(&[
        Update::Written { batch: batch("a", "acme", T0), at: T0 },
        Update::Written { batch: batch("b", "acme", T0 + 1000), at: T0 + 1000 },
        Update::Written { batch: batch("c", "beta", T0 - 7_200_000), at: T0 },
        Update::Stored { batch_id: "a".into(), at: T0 + 5 },
    ])
    .await
    .unwrap();
    let s = c.status(T0 + 2000).await.unwrap();
    assert_eq!(s.by_status, vec![("completed".to_string(), 1), ("pending".to_string(), 2)]);
    assert!(s.by_stage.contains(&("wal".to_string(), 3)) && s.by_stage.contains(&("storage".to_string(), 1)));
    let w = |t: &str, win: &str| {
        s.by_tenant.iter().find(|x| x.tenant == t && x.window == win).map(|x| (x.batches, x.items))
    };
    assert_eq!(w("acme", "5m"), Some((2, 200)));
    assert_eq!(w("beta", "5m"), None, "beta's batch is two hours old");
    assert_eq!(w("beta", "24h"), Some((1, 100)));
}

pub async fn many_updates_in_one_group(c: Catalog) {
    let mut u: Vec<Update> =
        (0..3000).map(|i| Update::Written { batch: batch(&format!("b{i:05}"), "acme", T0 + i), at: T0 + i }).collect();
    u.extend((0..3000).map(|i| Update::Stored { batch_id: format!("b{i:05}"), at: T0 + 10_000 + i }));
    c.apply(&u).await.unwrap();
    assert_eq!(c.count("SELECT COUNT(*) FROM batch_tracker WHERE status = 'completed'").await.unwrap(), 3000);
}

pub async fn kafka_batches_record_offsets(c: Catalog) {
    let mut b = batch("k1", "acme", T0);
    b.topics = Some("v6.qtw.traces.acme.0".into());
    b.first_offset = Some(1000);
    b.last_offset = Some(1499);
    c.apply(&[Update::Written { batch: b, at: T0 + 1 }]).await.unwrap();
    let r = c.batch("k1").await.unwrap().unwrap();
    assert_eq!(
        (r.batch.first_offset, r.batch.last_offset, r.batch.topics.as_deref()),
        (Some(1000), Some(1499), Some("v6.qtw.traces.acme.0"))
    );
    assert_eq!(stage(&r, Stage::Kafka), (true, Some(T0 + 1)));
}

pub async fn nodes_heartbeat(c: Catalog) {
    let node = |id: &str, host: &str, every_ms: u64| openwit_catalog::NodeInfo {
        node_id: id.into(),
        hostname: host.into(),
        version: "0.1.0".into(),
        address: format!("{host}:8083"),
        started_at: T0,
        heartbeat_every: std::time::Duration::from_millis(every_ms),
    };
    c.heartbeat(&node("node-a", "host-1", 1000), T0).await.unwrap();
    c.heartbeat(&node("node-a", "host-1", 1000), T0 + 5000).await.unwrap();
    c.heartbeat(&node("node-b", "host-2", 1000), T0).await.unwrap();
    assert_eq!(c.count("SELECT COUNT(*) FROM nodes").await.unwrap(), 2);
    assert_eq!(c.count("SELECT MAX(heartbeat_at) FROM nodes").await.unwrap(), T0 + 5000);
    let nodes = c.nodes(T0 + 5500).await.unwrap();
    let brief: Vec<_> = nodes.iter().map(|n| (n.node_id.as_str(), n.address.as_str(), n.state.as_str())).collect();
    assert_eq!(brief, [("node-a", "host-1:8083", "live"), ("node-b", "host-2:8083", "stale")], "b missed 3 beats");
    // Restarted: a new start time, live again.
    let mut again = node("node-b", "host-2", 1000);
    again.started_at = T0 + 6000;
    c.heartbeat(&again, T0 + 6000).await.unwrap();
    let b = c.nodes(T0 + 6000).await.unwrap().pop().unwrap();
    assert_eq!((b.started_at, b.heartbeat_at, b.state.as_str()), (T0 + 6000, T0 + 6000, "live"));
}

fn file(id: &str, exporter: &str, tenant: &str, table: &str) -> openwit_catalog::FileRow {
    openwit_catalog::FileRow {
        file_id: id.into(),
        exporter: exporter.into(),
        node_id: "node-a".into(),
        tenant: tenant.into(),
        signal: "traces".into(),
        table_name: table.into(),
        root: "s3://bucket/prefix".into(),
        path: format!("{table}/tenant={tenant}/date=2026-01-01/hour=00/node-a-{id}.parquet"),
        min_time: 1_767_225_600_000_000_000,
        max_time: 1_767_225_600_000_000_000 + 5_000_000_000,
        row_count: 1500,
        byte_size: 65_536,
        state: openwit_catalog::UPLOADING.into(),
        created_at: T0,
        uploaded_at: None,
    }
}

fn held(batch: &str, start: i64, count: i64) -> openwit_catalog::FileBatch {
    openwit_catalog::FileBatch { batch_id: batch.into(), item_start: start, item_count: count }
}

pub async fn files_are_recorded_with_their_batches_then_made_stable(c: Catalog) {
    use openwit_catalog::{FileFilter, STABLE, UPLOADING};
    // More batches than one INSERT carries, to cover the chunking.
    let many: Vec<_> = (0..1203).map(|i| held(&format!("b{i:05}"), 0, 1)).collect();
    c.add_file(&file("f1", "parquet", "acme", "spans"), &many).await.unwrap();
    c.add_file(&file("f2", "parquet", "acme", "logs"), &[held("b00001", 1, 9)]).await.unwrap();
    c.add_file(&file("f3", "parquet/archive", "beta", "spans"), &[held("b00001", 0, 10)]).await.unwrap();
    // Recording a file twice changes nothing.
    c.add_file(&file("f1", "parquet", "acme", "spans"), &many).await.unwrap();
    assert_eq!(c.file_batches("f1").await.unwrap().len(), 1203);
    assert_eq!(c.file_batches("f2").await.unwrap(), vec![held("b00001", 1, 9)]);

    let all = c.files(&FileFilter::default()).await.unwrap();
    assert_eq!(all.iter().map(|f| f.file_id.as_str()).collect::<Vec<_>>(), ["f1", "f2", "f3"]);
    assert_eq!(all[0], file("f1", "parquet", "acme", "spans"));
    let by = |f: FileFilter| {
        let c = &c;
        async move { c.files(&f).await.unwrap().into_iter().map(|f| f.file_id).collect::<Vec<_>>() }
    };
    assert_eq!(by(FileFilter { exporter: Some("parquet".into()), ..Default::default() }).await, ["f1", "f2"]);
    assert_eq!(by(FileFilter { tenant: Some("beta".into()), ..Default::default() }).await, ["f3"]);
    assert_eq!(by(FileFilter { table_name: Some("logs".into()), ..Default::default() }).await, ["f2"]);

    c.file_stable("f1", T0 + 7).await.unwrap();
    let stable = c.files(&FileFilter { state: Some(STABLE.into()), ..Default::default() }).await.unwrap();
    assert_eq!(stable.len(), 1);
    assert_eq!((stable[0].file_id.as_str(), stable[0].uploaded_at), ("f1", Some(T0 + 7)));
    assert_eq!(by(FileFilter { state: Some(UPLOADING.into()), ..Default::default() }).await, ["f2", "f3"]);
}

pub async fn held_items_are_per_exporter_and_removal_forgets_them(c: Catalog) {
    c.add_file(&file("f1", "parquet", "acme", "spans"), &[held("b1", 0, 4), held("b2", 0, 10)]).await.unwrap();
    c.add_file(&file("f2", "parquet", "acme", "spans"), &[held("b1", 4, 6)]).await.unwrap();
    c.add_file(&file("f3", "parquet/other", "acme", "spans"), &[held("b1", 0, 10)]).await.unwrap();
    c.file_stable("f1", T0).await.unwrap();
    let mut got = c.held_items("parquet", &["b1".into(), "b9".into()]).await.unwrap();
    got.sort_by(|a, b| a.file_id.cmp(&b.file_id));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((got[0].file_id.as_str(), got[0].state.as_str(), &got[0].items), ("f1", "stable", &held("b1", 0, 4)));
    assert_eq!((got[1].file_id.as_str(), got[1].state.as_str(), &got[1].items), ("f2", "uploading", &held("b1", 4, 6)));
    c.remove_file("f2").await.unwrap();
    assert!(c.file_batches("f2").await.unwrap().is_empty());
    let got = c.held_items("parquet", &["b1".into()]).await.unwrap();
    assert_eq!(got.iter().map(|h| h.file_id.as_str()).collect::<Vec<_>>(), ["f1"]);
    assert!(c.held_items("parquet", &[]).await.unwrap().is_empty());
}

pub async fn indexes_are_recorded_per_file_and_replaced_when_rebuilt(c: Catalog) {
    use openwit_catalog::{IndexRow, TANTIVY};
    c.add_file(&file("f1", "parquet", "acme", "logs"), &[held("b1", 0, 4)]).await.unwrap();
    assert!(c.indexes_of("f1").await.unwrap().is_empty());
    let mut row = IndexRow {
        file_id: "f1".into(),
        kind: TANTIVY.into(),
        path: "logs/tenant=acme/f1.parquet.tantivy".into(),
        byte_size: 1234,
        state: "stable".into(),
        created_at: T0,
    };
    c.record_index(&row).await.unwrap();
    assert_eq!(c.indexes_of("f1").await.unwrap(), vec![row.clone()]);
    row.byte_size = 999;
    row.created_at = T0 + 5;
    c.record_index(&row).await.unwrap();
    assert_eq!(c.indexes_of("f1").await.unwrap(), vec![row], "a rebuilt index replaces the row");
    assert!(c.indexes_of("f2").await.unwrap().is_empty());
}

const LOGS_SPANS: &[&str] = &["logs", "spans"];

/// The files of `exporter` on `node` under the root the suite's files have, in `tables`.
fn which<'a>(exporter: &'a str, node: &'a str, tables: &'a [&'a str]) -> openwit_catalog::Unindexed<'a> {
    openwit_catalog::Unindexed { exporter, node_id: node, root: "s3://bucket/prefix", tables }
}

pub async fn index_pip_is_set_once_every_file_of_a_stored_batch_is_indexed(c: Catalog) {
    use openwit_catalog::{IndexRow, TANTIVY};
    let index = |f: &str| IndexRow {
        file_id: f.into(),
        kind: TANTIVY.into(),
        path: format!("{f}.parquet.tantivy"),
        byte_size: 10,
        state: "stable".into(),
        created_at: T0 + 20,
    };
    let index_pip = |r: openwit_catalog::BatchRow| stage(&r, Stage::Index);
    // b1's items are in two logs files, b2's in one, b3 (metrics) in a file that is never indexed.
    for b in ["b1", "b2", "b3"] {
        c.apply(&[Update::Written { batch: batch(b, "acme", T0), at: T0 }]).await.unwrap();
    }
    c.add_file(&file("f1", "parquet", "acme", "logs"), &[held("b1", 0, 50), held("b2", 0, 100)]).await.unwrap();
    c.add_file(&file("f2", "parquet", "acme", "logs"), &[held("b1", 50, 50)]).await.unwrap();
    c.add_file(&file("f3", "parquet", "acme", "metrics"), &[held("b3", 0, 100)]).await.unwrap();
    for f in ["f1", "f2", "f3"] {
        c.file_stable(f, T0 + 10).await.unwrap();
    }
    let ids: Vec<String> = ["f1", "f2", "f3"].map(String::from).to_vec();
    let unindexed: Vec<String> = c
        .unindexed_files(TANTIVY, &which("parquet", "node-a", LOGS_SPANS), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.file_id)
        .collect();
    assert_eq!(unindexed, ["f1", "f2"], "metrics files are not indexed");
    assert!(
        c.unindexed_files(TANTIVY, &which("parquet/other", "node-a", LOGS_SPANS), 10).await.unwrap().is_empty(),
        "per exporter"
    );
    assert!(
        c.unindexed_files(TANTIVY, &which("parquet", "node-b", LOGS_SPANS), 10).await.unwrap().is_empty(),
        "per node"
    );
    assert!(
        c.unindexed_files(TANTIVY, &which("parquet", "node-a", &["spans"]), 10).await.unwrap().is_empty(),
        "per table"
    );
    let elsewhere = openwit_catalog::Unindexed { root: "s3://other/prefix", ..which("parquet", "node-a", LOGS_SPANS) };
    assert!(c.unindexed_files(TANTIVY, &elsewhere, 10).await.unwrap().is_empty(), "per root");

    // Indexed before b2 is stored: index_pip waits for the store.
    c.record_index(&index("f1")).await.unwrap();
    assert_eq!(index_pip(c.batch("b2").await.unwrap().unwrap()), (false, None));
    c.apply(&[Update::Stored { batch_id: "b2".into(), at: T0 + 30 }]).await.unwrap();
    assert_eq!(index_pip(c.batch("b2").await.unwrap().unwrap()), (true, Some(T0 + 30)), "set at store");
    // b1 is stored, but f2 is not indexed yet.
    c.apply(&[Update::Stored { batch_id: "b1".into(), at: T0 + 30 }]).await.unwrap();
    assert_eq!(index_pip(c.batch("b1").await.unwrap().unwrap()), (false, None));
    c.record_index(&index("f2")).await.unwrap();
    assert_eq!(index_pip(c.batch("b1").await.unwrap().unwrap()), (true, Some(T0 + 20)), "set by the last index");
    c.apply(&[Update::Stored { batch_id: "b3".into(), at: T0 + 40 }]).await.unwrap();
    assert_eq!(index_pip(c.batch("b3").await.unwrap().unwrap()), (true, Some(T0 + 40)), "nothing to index");

    assert!(c.unindexed_files(TANTIVY, &which("parquet", "node-a", LOGS_SPANS), 10).await.unwrap().is_empty());
    let found = c.indexes_for(&ids, TANTIVY).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found["f2"], index("f2"));
    // An index a query could not read is marked; it is no longer used and is listed for rebuilding.
    c.set_index_state("f2", TANTIVY, "missing").await.unwrap();
    assert!(!c.indexes_for(&ids, TANTIVY).await.unwrap().contains_key("f2"));
    let unindexed: Vec<String> = c
        .unindexed_files(TANTIVY, &which("parquet", "node-a", LOGS_SPANS), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.file_id)
        .collect();
    assert_eq!(unindexed, ["f2"]);
    let many: Vec<String> = (0..1200).map(|i| format!("x{i}")).chain(["f1".to_string()]).collect();
    assert_eq!(c.indexes_for(&many, TANTIVY).await.unwrap().len(), 1, "looked up in chunks");
}

pub async fn leases_are_held_by_one_holder_until_they_expire(c: Catalog) {
    assert!(c.acquire_lease("compaction/p1", "node-a", T0, T0 + 100).await.unwrap());
    assert!(!c.acquire_lease("compaction/p1", "node-b", T0 + 50, T0 + 150).await.unwrap(), "held by node-a");
    assert!(c.acquire_lease("compaction/p1", "node-a", T0 + 60, T0 + 160).await.unwrap(), "renewed by its holder");
    assert!(c.acquire_lease("compaction/p2", "node-b", T0, T0 + 100).await.unwrap(), "another partition");
    assert!(!c.acquire_lease("compaction/p1", "node-b", T0 + 150, T0 + 250).await.unwrap(), "renewal moved expiry");
    assert!(c.acquire_lease("compaction/p1", "node-b", T0 + 161, T0 + 261).await.unwrap(), "expired: taken over");
    c.release_lease("compaction/p1", "node-a").await.unwrap();
    assert!(!c.acquire_lease("compaction/p1", "node-c", T0 + 200, T0 + 300).await.unwrap(), "not node-a's to release");
    c.release_lease("compaction/p1", "node-b").await.unwrap();
    assert!(c.acquire_lease("compaction/p1", "node-c", T0 + 200, T0 + 300).await.unwrap(), "released");
}

pub async fn a_compaction_swap_moves_lineage_and_happens_only_with_the_lease_and_stable_inputs(c: Catalog) {
    use openwit_catalog::{COMPACTING, FileFilter, RETIRED, STABLE, SwapError};
    for (id, b) in [("f1", "b1"), ("f2", "b2"), ("f3", "b3")] {
        c.add_file(&file(id, "parquet", "acme", "logs"), &[held(b, 0, 10)]).await.unwrap();
        c.file_stable(id, T0).await.unwrap();
    }
    // Candidates: this exporter's stable files in this store, small enough, settled.
    let cand = |exporter: &str, below: i64, before: i64| {
        let (c, exporter) = (c.clone(), exporter.to_string());
        async move {
            c.compaction_candidates(&exporter, "s3://bucket/prefix", below, before)
                .await
                .unwrap()
                .into_iter()
                .map(|f| f.file_id)
                .collect::<Vec<_>>()
        }
    };
    let end = 1_767_225_600_000_000_000 + 5_000_000_000; // the files' newest row
    assert_eq!(cand("parquet", 65_537, end + 1).await, ["f1", "f2", "f3"]);
    assert!(cand("parquet", 65_536, end + 1).await.is_empty(), "not smaller than the bound");
    assert!(cand("parquet", 65_537, end).await.is_empty(), "not settled");
    assert!(cand("parquet/archive", 65_537, end + 1).await.is_empty(), "another exporter's");
    let mut out = file("c1", "parquet", "acme", "logs");
    out.state = COMPACTING.into();
    c.add_file(&out, &[]).await.unwrap();
    assert_eq!(c.compacting_files("s3://bucket/prefix", "logs", "acme").await.unwrap().len(), 1);
    let inputs: Vec<String> = ["f1", "f2", "f3"].map(String::from).to_vec();

    // Without the lease: nothing changes.
    let e = c.swap_compacted("c1", &inputs, "compaction/p", "node-a", T0 + 1).await.unwrap_err();
    assert!(matches!(e, SwapError::LeaseLost(_)), "{e}");
    assert!(c.acquire_lease("compaction/p", "node-a", T0, T0 + 1000).await.unwrap());
    // An input retired meanwhile (retention): nothing changes either.
    assert_eq!(c.retire(&["f3".into()], openwit_catalog::BY_RETENTION, T0).await.unwrap(), 1);
    let e = c.swap_compacted("c1", &inputs, "compaction/p", "node-a", T0 + 1).await.unwrap_err();
    assert!(matches!(e, SwapError::InputsChanged(1)), "{e}");
    let state = |c: &Catalog| {
        let c = c.clone();
        async move {
            c.files(&FileFilter::default()).await.unwrap().into_iter().map(|f| (f.file_id, f.state)).collect::<Vec<_>>()
        }
    };
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        state(&c).await,
        [s("c1", COMPACTING), s("f1", STABLE), s("f2", STABLE), s("f3", RETIRED)],
        "rolled back whole"
    );
    assert_eq!(c.file_batches("f1").await.unwrap(), [held("b1", 0, 10)]);

    let two = &inputs[..2];
    c.swap_compacted("c1", two, "compaction/p", "node-a", T0 + 2).await.unwrap();
    assert_eq!(state(&c).await, [s("c1", STABLE), s("f1", RETIRED), s("f2", RETIRED), s("f3", RETIRED)]);
    assert_eq!(c.file_batches("c1").await.unwrap(), [held("b1", 0, 10), held("b2", 0, 10)], "lineage moved");
    let held_now = c.held_items("parquet", &["b1".into()]).await.unwrap();
    assert_eq!((held_now[0].file_id.as_str(), held_now[0].state.as_str()), ("c1", STABLE), "replay finds the output");

    // Retired files come due after the grace period, with their indexes; then they are forgotten.
    c.record_index(&openwit_catalog::IndexRow {
        file_id: "f1".into(),
        kind: openwit_catalog::TANTIVY.into(),
        path: "logs/x/f1.tantivy".into(),
        byte_size: 10,
        state: STABLE.into(),
        created_at: T0,
    })
    .await
    .unwrap();
    assert!(
        c.retired_before("parquet", "s3://bucket/prefix", T0, 10).await.unwrap().is_empty(),
        "f3 retired at T0: not before"
    );
    assert!(
        c.retired_before("parquet/other", "s3://bucket/prefix", T0 + 3, 10).await.unwrap().is_empty(),
        "another exporter's grace"
    );
    let due = c.retired_before("parquet", "s3://bucket/prefix", T0 + 3, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|r| (r.file.file_id.as_str(), r.reason.as_str())).collect::<Vec<_>>(),
        [("f3", "retention"), ("f1", "compaction"), ("f2", "compaction")]
    );
    assert_eq!(due[1].index_paths, ["logs/x/f1.tantivy"]);
    assert!(c.retired_before("parquet", "s3://elsewhere", T0 + 3, 10).await.unwrap().is_empty());
    for r in &due {
        c.forget_file(&r.file.file_id).await.unwrap();
    }
    assert_eq!(state(&c).await, [s("c1", STABLE)]);
    assert!(c.indexes_for(&["f1".into()], openwit_catalog::TANTIVY).await.unwrap().is_empty());
}

pub async fn expired_files_are_listed_per_table_and_tenant_and_batches_pruned(c: Catalog) {
    let f = |id: &str, exporter: &str, tenant: &str, table: &str, max: i64| {
        let mut r = file(id, exporter, tenant, table);
        r.max_time = max;
        r
    };
    for (id, exporter, tenant, table, max) in [
        ("a", "parquet", "acme", "logs", 10),
        ("b", "parquet", "acme", "logs", 30),
        ("c", "parquet", "beta", "logs", 10),
        ("d", "parquet", "acme", "spans", 10),
        ("e", "parquet/archive", "beta", "logs", 10),
    ] {
        c.add_file(&f(id, exporter, tenant, table, max), &[]).await.unwrap();
        c.file_stable(id, T0).await.unwrap();
    }
    let mut other_root = f("g", "parquet", "beta", "logs", 10);
    other_root.root = "s3://elsewhere".into();
    c.add_file(&other_root, &[]).await.unwrap();
    c.file_stable("g", T0).await.unwrap();
    let ids = |v: Vec<openwit_catalog::FileRow>| v.into_iter().map(|f| f.file_id).collect::<Vec<_>>();
    let except = ["acme".to_string()];
    let logs = openwit_catalog::Expired {
        exporter: "parquet",
        root: "s3://bucket/prefix",
        table: "logs",
        tenant: None,
        except: &[],
    };
    let acme = openwit_catalog::Expired { tenant: Some("acme"), ..logs };
    let not_acme = openwit_catalog::Expired { except: &except, ..logs };
    assert_eq!(ids(c.expired_files(&logs, 20, 100).await.unwrap()), ["a", "c"], "this exporter's, in this store");
    assert_eq!(ids(c.expired_files(&acme, 31, 100).await.unwrap()), ["a", "b"]);
    assert_eq!(ids(c.expired_files(&not_acme, 31, 100).await.unwrap()), ["c"]);
    assert_eq!(ids(c.expired_files(&logs, 31, 1).await.unwrap()).len(), 1);
    // The tenant left out is left out by the query: a page is never filled with its files.
    assert_eq!(ids(c.expired_files(&not_acme, 31, 1).await.unwrap()), ["c"]);
    assert_eq!(c.retire(&["a".into(), "a".into()], openwit_catalog::BY_RETENTION, T0).await.unwrap(), 1);
    assert_eq!(ids(c.expired_files(&logs, 20, 100).await.unwrap()), ["c"], "retired ones are not listed");

    c.apply(&[
        Update::Written { batch: batch("old", "acme", T0), at: T0 },
        Update::Stored { batch_id: "old".into(), at: T0 + 10 },
        Update::Written { batch: batch("pending", "acme", T0), at: T0 },
        Update::Written { batch: batch("new", "acme", T0), at: T0 },
        Update::Stored { batch_id: "new".into(), at: T0 + 100 },
    ])
    .await
    .unwrap();
    assert_eq!(c.prune_batches(T0 + 50).await.unwrap(), 1);
    assert!(c.batch("old").await.unwrap().is_none());
    assert!(c.batch("pending").await.unwrap().is_some() && c.batch("new").await.unwrap().is_some());
}
