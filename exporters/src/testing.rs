//! The `testing` exporter: a `file` exporter that can be made slow. It exists for OpenWit's own
//! end-to-end tests (backpressure, shutdown draining) and is registered only when the environment
//! variable `OPENWIT_TEST_COMPONENTS=1` is set, so it never appears in a production config.

use crate::file::{FileExporter, FileFormat};
use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{
    Batch, BuildEnv, ComponentId, ConfigIssue, ExportError, Exporter, Factory, Signal,
};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable that enables test-only components.
pub const ENABLE_ENV: &str = "OPENWIT_TEST_COMPONENTS";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestingConfig {
    pub path: PathBuf,
    pub format: FileFormat,
    /// Sleep this long before writing each batch.
    #[serde(with = "humantime_serde")]
    pub delay: Option<Duration>,
}

impl ComponentConfig for TestingConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigIssue::new("path", "is required"));
        }
        Ok(())
    }
}

/// The factory, or `None` unless test components are enabled.
pub fn factory_if_enabled() -> Option<Arc<dyn Factory<dyn Exporter>>> {
    (std::env::var(ENABLE_ENV).as_deref() == Ok("1")).then(|| {
        typed::<TestingConfig, dyn Exporter>(
            "testing",
            &[],
            &Signal::ALL,
            "test only: a file exporter with an optional delay per batch",
            |_id: &ComponentId, cfg, _env: &BuildEnv| {
                Ok(Box::new(TestingExporter {
                    delay: cfg.delay.unwrap_or_default(),
                    inner: FileExporter::new(cfg.path, cfg.format, true),
                }))
            },
        )
    })
}

struct TestingExporter {
    delay: Duration,
    inner: FileExporter,
}

#[async_trait]
impl Exporter for TestingExporter {
    async fn export(&mut self, batch: Batch) -> Result<(), ExportError> {
        tokio::time::sleep(self.delay).await;
        self.inner.export(batch).await
    }

    async fn shutdown(&mut self) -> Result<(), ExportError> {
        self.inner.shutdown().await
    }
}
