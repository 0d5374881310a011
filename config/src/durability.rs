//! Durability settings: where and how the write-ahead log and the catalog are kept. Durability needs no
//! config (both default to the data directory); these are typed settings of the resolved config,
//! written in the Collector's format as the `wal` and `catalog` extensions (declared under
//! `extensions:`, listed in `service.extensions` or not): nothing runs for them.

use openwit_core::ConfigIssue;
use openwit_core::factory::ComponentConfig;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The extension types that are settings, with a line each for `openwit components`.
pub const SETTINGS: [(&str, &str); 3] = [
    (
        "wal",
        "write-ahead log settings (directory, fsync, segment size, disk and memory budgets, retries): read at start",
    ),
    ("catalog", "catalog database (SQLite file by default, PostgreSQL to share): read at start"),
    ("plugins", "plugin libraries (paths) whose processors and exporters join the built-in types: loaded at start"),
];

/// `extensions: wal: {…}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalSettings {
    /// Where segments live; default `DATA_DIR/wal`.
    pub directory: Option<PathBuf>,
    /// fdatasync every group of batches before acknowledging (default). `false` acknowledges data
    /// that a power loss can still take away; for benchmarks and tests only.
    pub fsync: bool,
    pub segment_megabytes: u64,
    /// Past this, receivers refuse data with a retryable error until exporters catch up.
    pub max_disk_megabytes: u64,
    /// Telemetry held in memory between the WAL and storage (decoded batches in queues, processors
    /// and exporters, estimated from their protobuf size): past this, new batches wait and receivers
    /// refuse with a retryable error, as for a full queue. The Parquet exporter's rows buffered for a
    /// row group count too: it writes them early at half the budget, or while the budget is spent.
    pub max_memory_megabytes: u64,
    /// How often fully stored segments are deleted.
    #[serde(with = "humantime_serde")]
    pub janitor_interval: Duration,
    /// How often an exporter's retryable failure is tried again (with backoff) before the batch is
    /// marked failed and kept in the WAL.
    pub export_retries: usize,
    /// How often a batch lost without a verdict (a component panicked on it) is delivered again, in a
    /// row, before it is marked failed as poison and kept in the WAL.
    pub max_redeliveries: u32,
}

impl Default for WalSettings {
    fn default() -> Self {
        WalSettings {
            directory: None,
            fsync: true,
            segment_megabytes: 64,
            max_disk_megabytes: 10 * 1024,
            max_memory_megabytes: 128,
            janitor_interval: Duration::from_secs(5),
            export_retries: 3,
            max_redeliveries: 5,
        }
    }
}

impl ComponentConfig for WalSettings {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.segment_megabytes == 0 {
            return Err(ConfigIssue::new("segment_megabytes", "must be at least 1"));
        }
        if self.max_disk_megabytes < self.segment_megabytes {
            return Err(ConfigIssue::new(
                "max_disk_megabytes",
                format!("must be at least segment_megabytes ({})", self.segment_megabytes),
            ));
        }
        if self.max_memory_megabytes == 0 {
            return Err(ConfigIssue::new("max_memory_megabytes", "must be at least 1"));
        }
        if self.janitor_interval.is_zero() {
            return Err(ConfigIssue::new("janitor_interval", "must be longer than 0"));
        }
        Ok(())
    }
}

/// `extensions: catalog: {…}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSettings {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB` (use `${env:…}` for the password);
    /// default `sqlite://DATA_DIR/catalog.db`.
    pub url: Option<String>,
    /// How often tracking updates are written, grouped in one transaction.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// How often this daemon records that it is alive in the `nodes` table; after three missed beats
    /// it shows as `stale`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            url: None,
            flush_interval: Duration::from_millis(200),
            heartbeat_interval: Duration::from_secs(10),
        }
    }
}

impl ComponentConfig for CatalogSettings {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if let Some(u) = &self.url
            && !(u.starts_with("sqlite://") || u.starts_with("postgres://") || u.starts_with("postgresql://"))
        {
            // The URL may hold a password: only its scheme is shown.
            let scheme = u.split_once("://").map_or("(none)", |(s, _)| s);
            return Err(ConfigIssue::new(
                "url",
                format!("unsupported scheme {scheme:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DB"),
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(ConfigIssue::new("flush_interval", "must be longer than 0"));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigIssue::new("heartbeat_interval", "must be longer than 0"));
        }
        Ok(())
    }
}
