//! The catalog: where OpenWit records every batch's journey and every file it stores.
//!
//! One schema on two engines through sqlx's `Any` driver: SQLite by default (a file, nothing to run)
//! and PostgreSQL when several daemons share one catalog. The queries use `$1`-style parameters, which
//! both engines accept, and store times as Unix milliseconds, so one set of SQL serves both.

mod files;
mod indexes;
mod janitor;
mod tracker;

pub use files::{FileBatch, FileFilter, FileRow, HeldItems, STABLE, UPLOADING};
pub use indexes::{IndexRow, TANTIVY, Unindexed};
pub use janitor::{BY_COMPACTION, BY_RETENTION, COMPACTING, Expired, RETIRED, Retired, SwapError};
pub use tracker::{NodeInfo, Tracker, TrackerHandle};

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
// `AssertSqlSafe` marks SQL assembled only from constants and this crate's own enums.
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::sync::Arc;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("unsupported catalog URL {0:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DB")]
    Url(String),
    #[error("catalog {url}: {source}")]
    Db { url: String, source: sqlx::Error },
    #[error("catalog {url}: migrations failed: {source}")]
    Migrate { url: String, source: sqlx::migrate::MigrateError },
}

/// Which engine a catalog runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A pipeline stage of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Kafka,
    Wal,
    Ingestion,
    Storage,
    Index,
    Janitor,
}

impl Stage {
    pub const ALL: [Stage; 6] =
        [Stage::Kafka, Stage::Wal, Stage::Ingestion, Stage::Storage, Stage::Index, Stage::Janitor];

    /// The column prefix (`wal` → `wal_pip`, `wal_pip_completed_at`).
    pub fn column(self) -> &'static str {
        match self {
            Stage::Kafka => "kafka",
            Stage::Wal => "wal",
            Stage::Ingestion => "ingestion",
            Stage::Storage => "storage",
            Stage::Index => "index",
            Stage::Janitor => "janitor",
        }
    }
}

/// A new batch, as the WAL wrote it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewBatch {
    pub batch_id: String,
    pub client_id: String,
    pub signal: String,
    pub receiver: String,
    pub node_id: String,
    pub item_count: i64,
    pub byte_size: i64,
    pub topics: Option<String>,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub created_at: i64,
}

/// Something that happened to a batch. Applied in order, in groups.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Fsynced in the WAL (`at`: when the fdatasync returned).
    Written { batch: NewBatch, at: i64 },
    /// Read back from the WAL to go through its pipelines again (the row is created if the catalog never
    /// saw it).
    Replayed { batch: NewBatch, at: i64 },
    /// Handed to its pipelines (after `Written`, and again after each `Replayed`).
    Ingested { batch_id: String, at: i64 },
    /// Every exporter stored it.
    Stored { batch_id: String, at: i64 },
    /// An exporter gave up on it; it stays in the WAL.
    Failed { batch_id: String, stage: Stage, error: String, at: i64 },
    /// Its WAL segment was deleted.
    Cleaned { batch_id: String, at: i64 },
}

/// A batch as the catalog holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchRow {
    /// What the WAL wrote (its fields appear at the top level in JSON).
    #[serde(flatten)]
    pub batch: NewBatch,
    pub status: String,
    /// Each stage with whether it is done and when.
    pub stages: Vec<StageState>,
    pub error_stage: Option<String>,
    pub error_message: Option<String>,
    pub retry_count: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageState {
    pub stage: Stage,
    pub done: bool,
    pub completed_at: Option<i64>,
}

/// A daemon sharing the catalog.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeRow {
    pub node_id: String,
    pub hostname: String,
    pub version: String,
    pub address: String,
    /// Unix ms.
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// `live`, or `stale` once three heartbeats are missed.
    pub state: String,
}

/// Filters for listing batches.
#[derive(Clone, Debug, Default)]
pub struct BatchFilter {
    /// `pending`, `completed` or `failed`.
    pub status: Option<String>,
    pub tenant: Option<String>,
    /// Only batches created at least this long ago.
    pub min_age_ms: Option<i64>,
    /// Only batches written by this node (a daemon sharing the catalog).
    pub node_id: Option<String>,
    pub limit: i64,
}

/// Counts for the status page.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatusCounts {
    pub by_status: Vec<(String, i64)>,
    /// Batches that have reached each stage.
    pub by_stage: Vec<(String, i64)>,
    /// Per tenant over the window: batches and items.
    pub by_tenant: Vec<TenantWindow>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TenantWindow {
    pub tenant: String,
    pub window: String,
    pub batches: i64,
    pub items: i64,
}

/// The catalog: one pool per daemon, shared by every component through this handle (cheap to clone).
/// It connects lazily and applies the migrations once, on first use, so a catalog that is down at start
/// delays tracking and storage (which wait and retry) but not the daemon.
#[derive(Clone)]
pub struct Catalog {
    pool: AnyPool,
    engine: Engine,
    /// For messages: without the password.
    url: String,
    original_url: String,
    /// Set once the migrations have run on this pool.
    migrated: Arc<tokio::sync::OnceCell<()>>,
}

/// The batch columns. Stage flags are read as integers: the `Any` driver cannot decode SQLite's
/// BOOLEAN, and a `CASE` reads the same on both engines.
const COLUMNS: &str = "batch_id, client_id, signal, receiver, node_id, item_count, byte_size, topics, first_offset, \
    last_offset, created_at, status, error_stage, error_message, retry_count, updated_at, \
    CASE WHEN kafka_pip THEN 1 ELSE 0 END AS kafka_pip, kafka_pip_completed_at, CASE WHEN wal_pip THEN 1 ELSE 0 END AS wal_pip, wal_pip_completed_at, \
    CASE WHEN ingestion_pip THEN 1 ELSE 0 END AS ingestion_pip, ingestion_pip_completed_at, \
    CASE WHEN storage_pip THEN 1 ELSE 0 END AS storage_pip, storage_pip_completed_at, CASE WHEN index_pip THEN 1 ELSE 0 END AS index_pip, \
    index_pip_completed_at, CASE WHEN janitor_pip THEN 1 ELSE 0 END AS janitor_pip, janitor_pip_completed_at";

impl Catalog {
    /// The catalog at `url`, connected on first use (nothing is contacted here: only the URL is checked).
    /// SQLite files are created when missing.
    pub fn open(url: &str) -> Result<Catalog, CatalogError> {
        sqlx::any::install_default_drivers();
        let (engine, conn_url) = if let Some(rest) = url.strip_prefix("sqlite://") {
            let sep = if rest.contains('?') { '&' } else { '?' };
            (Engine::Sqlite, if rest.contains("mode=") { url.to_string() } else { format!("{url}{sep}mode=rwc") })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Engine::Postgres, url.to_string())
        } else {
            return Err(CatalogError::Url(url.to_string()));
        };
        if engine == Engine::Sqlite
            && let Some(dir) =
                std::path::Path::new(url.trim_start_matches("sqlite://").split('?').next().unwrap_or("")).parent()
            && !dir.as_os_str().is_empty()
        {
            // Its name must survive a power cut with the database in it.
            let _ = openwit_storage::create_dir_all_durably(dir);
        }
        // SQLite allows one writer at a time; a single connection avoids "database is locked".
        let max = if engine == Engine::Sqlite { 1 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            // An unreachable catalog is reported within this, and the caller backs off and retries.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        sqlx::query("PRAGMA journal_mode=WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous=FULL").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy(&conn_url)
            .map_err(|source| CatalogError::Db { url: redact(url), source })?;
        Ok(Catalog { pool, engine, url: redact(url), original_url: url.to_string(), migrated: Arc::default() })
    }

    /// Opens the catalog and connects now (applying the migrations): for tools and tests that want an
    /// unreachable catalog to be an error at once.
    pub async fn connect(url: &str) -> Result<Catalog, CatalogError> {
        let c = Catalog::open(url)?;
        c.pool().await?;
        Ok(c)
    }

    /// The pool, once the migrations have run on it (run now if they have not; an error leaves them to
    /// the next call).
    async fn pool(&self) -> Result<&AnyPool, CatalogError> {
        self.migrated
            .get_or_try_init(|| async {
                let migrator = if self.engine == Engine::Sqlite { &SQLITE_MIGRATIONS } else { &POSTGRES_MIGRATIONS };
                let mut attempt = 0;
                loop {
                    match migrator.run(&self.pool).await {
                        // SQLite has no lock for migrations: a second process migrating the same file at
                        // once (the daemon and `openwit query`, or a test) fails applying or recording a
                        // version the other just applied (each migration is a transaction: the failed one
                        // is rolled back). Run again: applied versions are then skipped.
                        Err(
                            sqlx::migrate::MigrateError::Execute(_) | sqlx::migrate::MigrateError::ExecuteMigration(..),
                        ) if self.engine == Engine::Sqlite && attempt < 5 => {
                            attempt += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                        }
                        done => {
                            break done.map_err(|source| CatalogError::Migrate { url: self.url.clone(), source });
                        }
                    }
                }
            })
            .await?;
        Ok(&self.pool)
    }

    /// The catalog's URL without its password, for messages.
    pub fn display_url(&self) -> &str {
        &self.url
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    fn err(&self, source: sqlx::Error) -> CatalogError {
        CatalogError::Db { url: self.url.clone(), source }
    }

    /// Applies updates in order, in one transaction.
    pub async fn apply(&self, updates: &[Update]) -> Result<(), CatalogError> {
        let mut tx = self.pool().await?.begin().await.map_err(|e| self.err(e))?;
        for u in updates {
            let q = match u {
                Update::Written { batch: b, at } | Update::Replayed { batch: b, at } => {
                    let replay = matches!(u, Update::Replayed { .. });
                    let sql = if replay {
                        "INSERT INTO batch_tracker (batch_id, client_id, signal, receiver, node_id, item_count, byte_size, topics, \
                         first_offset, last_offset, created_at, wal_pip, wal_pip_completed_at, \
                         kafka_pip, kafka_pip_completed_at, status, retry_count, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, TRUE, $12, $13, $14, 'pending', 1, $12) \
                         ON CONFLICT (batch_id) DO UPDATE SET retry_count = batch_tracker.retry_count + 1, status = 'pending', \
                         node_id = $5, updated_at = $12"
                    } else {
                        "INSERT INTO batch_tracker (batch_id, client_id, signal, receiver, node_id, item_count, byte_size, topics, \
                         first_offset, last_offset, created_at, wal_pip, wal_pip_completed_at, \
                         kafka_pip, kafka_pip_completed_at, status, retry_count, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, TRUE, $12, $13, $14, 'pending', 0, $12) \
                         ON CONFLICT (batch_id) DO NOTHING"
                    };
                    let kafka = b.topics.is_some();
                    sqlx::query(sql)
                        .bind(b.batch_id.clone())
                        .bind(b.client_id.clone())
                        .bind(b.signal.clone())
                        .bind(b.receiver.clone())
                        .bind(b.node_id.clone())
                        .bind(b.item_count)
                        .bind(b.byte_size)
                        .bind(b.topics.clone())
                        .bind(b.first_offset)
                        .bind(b.last_offset)
                        .bind(b.created_at)
                        .bind(*at)
                        .bind(kafka)
                        .bind(kafka.then_some(*at))
                }
                Update::Ingested { batch_id, at } => sqlx::query(
                    "UPDATE batch_tracker SET ingestion_pip = TRUE, ingestion_pip_completed_at = $2, updated_at = $2 \
                     WHERE batch_id = $1",
                )
                .bind(batch_id.clone())
                .bind(*at),
                Update::Stored { batch_id, at } => sqlx::query(
                    "UPDATE batch_tracker SET storage_pip = TRUE, storage_pip_completed_at = $2, status = 'completed', updated_at = $2 \
                     WHERE batch_id = $1",
                )
                .bind(batch_id.clone())
                .bind(*at),
                Update::Failed { batch_id, stage, error, at } => sqlx::query(
                    "UPDATE batch_tracker SET status = 'failed', error_stage = $2, error_message = $3, updated_at = $4 WHERE batch_id = $1",
                )
                .bind(batch_id.clone())
                .bind(stage.column().to_string())
                .bind(error.clone())
                .bind(*at),
                Update::Cleaned { batch_id, at } => sqlx::query(
                    "UPDATE batch_tracker SET janitor_pip = TRUE, janitor_pip_completed_at = $2, updated_at = $2 WHERE batch_id = $1",
                )
                .bind(batch_id.clone())
                .bind(*at),
            };
            q.execute(&mut *tx).await.map_err(|e| self.err(e))?;
            if let Update::Stored { batch_id, at } = u {
                // Its files may all be indexed already.
                sqlx::query(AssertSqlSafe(indexes::index_pip_of_batch()))
                    .bind(batch_id.clone())
                    .bind(*at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// One batch with every stage.
    pub async fn batch(&self, batch_id: &str) -> Result<Option<BatchRow>, CatalogError> {
        let sql = format!("SELECT {COLUMNS} FROM batch_tracker WHERE batch_id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(batch_id.to_string())
            .fetch_optional(self.pool().await?)
            .await
            .map_err(|e| self.err(e))?;
        row.map(|r| to_row(&r)).transpose().map_err(|e| self.err(e))
    }

    /// Batches matching a filter, newest first.
    pub async fn batches(&self, f: &BatchFilter, now_ms: i64) -> Result<Vec<BatchRow>, CatalogError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM batch_tracker WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR client_id = $2) \
             AND created_at <= $3 AND ($5 IS NULL OR node_id = $5) ORDER BY created_at DESC, batch_id DESC LIMIT $4"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(f.status.clone())
            .bind(f.tenant.clone())
            .bind(now_ms - f.min_age_ms.unwrap_or(0))
            .bind(f.limit)
            .bind(f.node_id.clone())
            .fetch_all(self.pool().await?)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(to_row).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Pending batches older than `stuck_ms`, and failed batches, oldest first.
    pub async fn alerts(&self, stuck_ms: i64, now_ms: i64, limit: i64) -> Result<Vec<BatchRow>, CatalogError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM batch_tracker WHERE status = 'failed' OR (status = 'pending' AND created_at <= $1) \
             ORDER BY created_at ASC LIMIT $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now_ms - stuck_ms)
            .bind(limit)
            .fetch_all(self.pool().await?)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(to_row).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Counts per status and stage, and per tenant over the last 5 minutes, hour and day.
    pub async fn status(&self, now_ms: i64) -> Result<StatusCounts, CatalogError> {
        let mut out = StatusCounts::default();
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM batch_tracker GROUP BY status ORDER BY status")
            .fetch_all(self.pool().await?)
            .await
            .map_err(|e| self.err(e))?;
        for r in rows {
            out.by_status
                .push((r.try_get("status").map_err(|e| self.err(e))?, r.try_get("n").map_err(|e| self.err(e))?));
        }
        for s in Stage::ALL {
            let sql = format!("SELECT COUNT(*) AS n FROM batch_tracker WHERE {}_pip = TRUE", s.column());
            let n: i64 = sqlx::query(AssertSqlSafe(sql))
                .fetch_one(self.pool().await?)
                .await
                .and_then(|r| r.try_get("n"))
                .map_err(|e| self.err(e))?;
            out.by_stage.push((s.column().to_string(), n));
        }
        for (window, ms) in [("5m", 300_000i64), ("1h", 3_600_000), ("24h", 86_400_000)] {
            let rows = sqlx::query(
                "SELECT client_id, COUNT(*) AS batches, CAST(SUM(item_count) AS BIGINT) AS items FROM batch_tracker WHERE created_at >= $1 \
                 GROUP BY client_id ORDER BY client_id",
            )
            .bind(now_ms - ms)
            .fetch_all(self.pool().await?)
            .await
            .map_err(|e| self.err(e))?;
            for r in rows {
                out.by_tenant.push(TenantWindow {
                    tenant: r.try_get("client_id").map_err(|e| self.err(e))?,
                    window: window.to_string(),
                    batches: r.try_get("batches").map_err(|e| self.err(e))?,
                    items: r.try_get::<Option<i64>, _>("items").map_err(|e| self.err(e))?.unwrap_or(0),
                });
            }
        }
        Ok(out)
    }

    /// Registers this daemon (or refreshes its heartbeat).
    pub async fn heartbeat(&self, node: &NodeInfo, now_ms: i64) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO nodes (node_id, hostname, version, started_at, heartbeat_at, address, heartbeat_every_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = $5, hostname = $2, version = $3, started_at = $4, \
             address = $6, heartbeat_every_ms = $7",
        )
        .bind(node.node_id.clone())
        .bind(node.hostname.clone())
        .bind(node.version.clone())
        .bind(node.started_at)
        .bind(now_ms)
        .bind(node.address.clone())
        .bind(node.heartbeat_every.as_millis() as i64)
        .execute(self.pool().await?)
        .await
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    /// Every node that ever used this catalog, with its state at `now_ms`: `live`, or `stale` once it
    /// missed three heartbeats.
    pub async fn nodes(&self, now_ms: i64) -> Result<Vec<NodeRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT node_id, hostname, version, address, started_at, heartbeat_at, heartbeat_every_ms FROM nodes \
             ORDER BY node_id",
        )
        .fetch_all(self.pool().await?)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let heartbeat_at: i64 = r.try_get("heartbeat_at")?;
                let every: i64 = r.try_get("heartbeat_every_ms")?;
                Ok(NodeRow {
                    node_id: r.try_get("node_id")?,
                    hostname: r.try_get("hostname")?,
                    version: r.try_get("version")?,
                    address: r.try_get("address")?,
                    started_at: r.try_get("started_at")?,
                    heartbeat_at,
                    state: if now_ms - heartbeat_at > 3 * every { "stale" } else { "live" }.to_string(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }

    /// Opens another pool on the same catalog (migrations run again, and change nothing): for tests.
    pub async fn reconnect(&self) -> Result<Catalog, CatalogError> {
        Catalog::connect(&self.original_url).await
    }

    /// Runs a counting query written by OpenWit's own tests and tools (never user input); returns the
    /// first column of the first row.
    pub async fn count(&self, sql: &str) -> Result<i64, CatalogError> {
        sqlx::query(AssertSqlSafe(sql.to_string()))
            .fetch_one(self.pool().await?)
            .await
            .and_then(|r| r.try_get::<i64, _>(0))
            .map_err(|e| self.err(e))
    }
}

fn flag(r: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    r.try_get::<i64, _>(col).or_else(|_| r.try_get::<i32, _>(col).map(i64::from)).map(|v| v != 0)
}

fn to_row(r: &AnyRow) -> Result<BatchRow, sqlx::Error> {
    let mut stages = Vec::new();
    for s in Stage::ALL {
        stages.push(StageState {
            stage: s,
            done: flag(r, &format!("{}_pip", s.column()))?,
            completed_at: r.try_get(format!("{}_pip_completed_at", s.column()).as_str())?,
        });
    }
    Ok(BatchRow {
        batch: NewBatch {
            batch_id: r.try_get("batch_id")?,
            client_id: r.try_get("client_id")?,
            signal: r.try_get("signal")?,
            receiver: r.try_get("receiver")?,
            node_id: r.try_get("node_id")?,
            item_count: r.try_get("item_count")?,
            byte_size: r.try_get("byte_size")?,
            topics: r.try_get("topics")?,
            first_offset: r.try_get("first_offset")?,
            last_offset: r.try_get("last_offset")?,
            created_at: r.try_get("created_at")?,
        },
        status: r.try_get("status")?,
        stages,
        error_stage: r.try_get("error_stage")?,
        error_message: r.try_get("error_message")?,
        retry_count: r
            .try_get::<i64, _>("retry_count")
            .or_else(|_| r.try_get::<i32, _>("retry_count").map(i64::from))?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
