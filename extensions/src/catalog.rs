//! The `catalog` extension: where the catalog lives. Tracking is always on; declaring this
//! extension only chooses the database (SQLite by default, PostgreSQL to share one between daemons).

use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{BuildEnv, ComponentId, ConfigIssue, Extension, ExtensionContext, Factory, Signal};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

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
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings { url: None, flush_interval: Duration::from_millis(200) }
    }
}

impl ComponentConfig for CatalogSettings {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if let Some(u) = &self.url
            && !(u.starts_with("sqlite://") || u.starts_with("postgres://") || u.starts_with("postgresql://"))
        {
            return Err(ConfigIssue::new(
                "url",
                format!("{:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DB", openwit_catalog::redact(u)),
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(ConfigIssue::new("flush_interval", "must be longer than 0"));
        }
        Ok(())
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Extension>> {
    typed::<CatalogSettings, dyn Extension>(
        "catalog",
        &[],
        &Signal::ALL,
        "catalog database (SQLite file by default, PostgreSQL to share)",
        |_id: &ComponentId, _cfg, _env: &BuildEnv| Ok(Box::new(CatalogExtension)),
    )
}

struct CatalogExtension;

#[async_trait]
impl Extension for CatalogExtension {
    async fn start(self: Box<Self>, _ctx: ExtensionContext) -> anyhow::Result<JoinHandle<()>> {
        // The daemon reads the settings itself at start; there is nothing to run.
        Ok(tokio::spawn(async {}))
    }
}
