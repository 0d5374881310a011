//! The catalog test suite, run on SQLite and on a real PostgreSQL.

mod postgres;
mod suite;

use openwit_catalog::Catalog;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh SQLite catalog in a temporary directory.
pub async fn sqlite() -> (Catalog, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/catalog.db", dir.path().display());
    (Catalog::connect(&url).await.unwrap(), dir)
}

/// A fresh database on the shared PostgreSQL server.
pub async fn postgres() -> Catalog {
    static N: AtomicU32 = AtomicU32::new(0);
    let db = format!("t{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    // A plain connection: the catalog's own connect would also migrate the admin database.
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&postgres::PgServer::url("postgres")).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&mut admin).await.unwrap();
    Catalog::connect(&postgres::PgServer::url(&db)).await.unwrap()
}

/// One test per engine for each suite function.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (c, _dir) = crate::sqlite().await;
                    crate::suite::$name(c).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let c = crate::postgres().await;
                    crate::suite::$name(c).await;
                }
            )*
        }
    };
}

both!(
    migrations_apply_once_and_reconnect,
    lifecycle_written_stored_cleaned,
    failure_keeps_stage_and_error,
    replay_counts_retries_and_creates_missing_rows,
    listing_filters_by_status_tenant_age_and_limit,
    alerts_show_stuck_and_failed,
    status_counts_by_status_stage_and_tenant,
    many_updates_in_one_group,
    kafka_batches_record_offsets,
    nodes_heartbeat,
    files_are_recorded_with_their_batches_then_made_stable,
    held_items_are_per_exporter_and_removal_forgets_them,
    indexes_are_recorded_per_file_and_replaced_when_rebuilt,
    index_pip_is_set_once_every_file_of_a_stored_batch_is_indexed,
    leases_are_held_by_one_holder_until_they_expire,
    a_compaction_swap_moves_lineage_and_happens_only_with_the_lease_and_stable_inputs,
    expired_files_are_listed_per_table_and_tenant_and_batches_pruned,
);

/// Tracking survives a catalog outage: updates wait in memory, then land once the catalog is back.
#[tokio::test]
async fn tracker_catches_up_after_an_outage() {
    use openwit_catalog::{NewBatch, NodeInfo, Tracker, Update};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    // The catalog's directory cannot exist while a plain file sits where it should be.
    let blocker = dir.path().join("catalogs");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let url = format!("sqlite://{}/catalog.db", blocker.display());
    let node = NodeInfo {
        node_id: "n1".into(),
        hostname: "h".into(),
        version: "v".into(),
        address: String::new(),
        started_at: 0,
        heartbeat_every: Duration::from_secs(10),
    };
    let (handle, task) = Tracker::start(Catalog::open(&url).unwrap(), Duration::from_millis(20), node);
    for i in 0..100 {
        let batch = NewBatch {
            batch_id: format!("b{i}"),
            client_id: "acme".into(),
            signal: "logs".into(),
            receiver: "otlp".into(),
            node_id: "n1".into(),
            item_count: 1,
            byte_size: 10,
            topics: None,
            first_offset: None,
            last_offset: None,
            created_at: i,
        };
        handle.send(Update::Written { batch, at: i });
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(Catalog::connect(&url).await.is_err(), "the catalog should still be unreachable");
    // The outage ends.
    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir(&blocker).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = Catalog::connect(&url).await
            && c.count("SELECT COUNT(*) FROM batch_tracker").await.unwrap_or(0) == 100
        {
            assert_eq!(c.count("SELECT COUNT(*) FROM nodes").await.unwrap(), 1, "heartbeat recorded too");
            break;
        }
        assert!(Instant::now() < deadline, "tracking did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(handle);
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("tracker ends once its handles are gone").unwrap();
}

/// Processes that open one new SQLite catalog at the same moment (a starting daemon and `openwit
/// query`) all end up connected: SQLite has no migration lock, so the catalog runs the migrations again
/// when another connection applied a version first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogs_opened_at_once_on_one_new_sqlite_file_all_connect() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/catalog.db", dir.path().display());
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let url = url.clone();
            opening.spawn(async move { Catalog::connect(&url).await.map(|_| ()).map_err(|e| e.to_string()) });
        }
        while let Some(opened) = opening.join_next().await {
            opened.unwrap().unwrap();
        }
    }
}
