//! The `wal` extension: settings of the write-ahead log. Durability is always on; declaring this
//! extension (listed in `service.extensions` or not) only changes where and how the WAL is kept.

use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{BuildEnv, ComponentId, ConfigIssue, Extension, ExtensionContext, Factory, Signal};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

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
    /// How often fully stored segments are deleted.
    #[serde(with = "humantime_serde")]
    pub janitor_interval: Duration,
    /// How often an exporter's retryable failure is tried again (with backoff) before the batch is
    /// marked failed and kept in the WAL.
    pub export_retries: usize,
}

impl Default for WalSettings {
    fn default() -> Self {
        WalSettings {
            directory: None,
            fsync: true,
            segment_megabytes: 64,
            max_disk_megabytes: 10 * 1024,
            janitor_interval: Duration::from_secs(5),
            export_retries: 3,
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
        if self.janitor_interval.is_zero() {
            return Err(ConfigIssue::new("janitor_interval", "must be longer than 0"));
        }
        Ok(())
    }
}

/// The `wal` factory.
pub fn factory() -> Arc<dyn Factory<dyn Extension>> {
    typed::<WalSettings, dyn Extension>(
        "wal",
        &[],
        &Signal::ALL,
        "write-ahead log settings (directory, fsync, segment size, disk budget)",
        |_id: &ComponentId, _cfg, _env: &BuildEnv| Ok(Box::new(WalExtension)),
    )
}

struct WalExtension;

#[async_trait]
impl Extension for WalExtension {
    async fn start(self: Box<Self>, _ctx: ExtensionContext) -> anyhow::Result<JoinHandle<()>> {
        // The daemon reads the settings itself at start; there is nothing to run.
        Ok(tokio::spawn(async {}))
    }
}
