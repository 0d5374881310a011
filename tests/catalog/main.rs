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
);
