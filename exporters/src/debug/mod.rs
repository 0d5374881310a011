//! The `debug` exporter: writes what passes through to the log, as the Collector's does.

mod format;

use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{Batch, BuildEnv, ComponentId, ExportError, Exporter, Factory, Signal};
use serde::Deserialize;
use std::sync::Arc;

/// How much the debug exporter prints.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One summary line per batch.
    #[default]
    Basic,
    /// One line per item.
    Normal,
    /// Every field of every item.
    Detailed,
}

/// The `debug` exporter's config (the Collector's keys).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    pub verbosity: Verbosity,
    /// Accepted for compatibility; OpenWit does not sample its debug output.
    pub sampling_initial: u64,
    /// Accepted for compatibility; OpenWit does not sample its debug output.
    pub sampling_thereafter: u64,
    /// Write through the daemon's log (true) or straight to standard output (false).
    pub use_internal_logger: bool,
}

impl Default for DebugConfig {
    fn default() -> Self {
        DebugConfig {
            verbosity: Verbosity::Basic,
            sampling_initial: 2,
            sampling_thereafter: 1,
            use_internal_logger: true,
        }
    }
}

impl ComponentConfig for DebugConfig {}

/// The `debug` exporter factory.
pub fn factory() -> Arc<dyn Factory<dyn Exporter>> {
    typed::<DebugConfig, dyn Exporter>(
        "debug",
        &[],
        &Signal::ALL,
        "prints telemetry to the log (verbosity basic, normal or detailed)",
        |id: &ComponentId, cfg: &DebugConfig, _env: &BuildEnv| {
            Ok(Box::new(DebugExporter { id: id.to_string(), cfg: cfg.clone() }))
        },
    )
}

struct DebugExporter {
    id: String,
    cfg: DebugConfig,
}

#[async_trait]
impl Exporter for DebugExporter {
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let summary = format::summary(batch);
        let text = match self.cfg.verbosity {
            Verbosity::Basic => summary,
            Verbosity::Normal => format!("{summary}\n{}", format::normal(&batch.payload)),
            Verbosity::Detailed => format!("{summary}\n{}", format::detailed(&batch.payload)),
        };
        if self.cfg.use_internal_logger {
            tracing::info!(exporter = %self.id, tenant = %batch.tenant, "{}", text.trim_end());
        } else {
            println!("{}", text.trim_end());
        }
        Ok(())
    }
}
