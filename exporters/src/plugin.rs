//! Exporters from plugin libraries (`extensions: plugins`): each batch's Arrow rows go to the plugin,
//! whose answer is the batch's verdict; see `docs/plugins.md`.
//!
//! `Ok` from the plugin is `stored` (the plugin promises the rows are durable where it sends them);
//! a retryable error is retried by the runtime with backoff (`wal.export_retries`), then marked
//! failed; a permanent one fails the batch at once; a panic (caught by the Rust SDK) counts as
//! retryable and the instance is rebuilt. An instance is built per signal, on its first batch.
//! Plugin calls may block (files, network): they run on Tokio's blocking threads.

use async_trait::async_trait;
use openwit_core::factory::{plugin_factory, reading_columnar};
use openwit_core::{Batch, BuildEnv, ComponentId, ExportError, Exporter, Factory, Signal};
use openwit_plugin::host::{CallError, Component, Instance};
use std::collections::HashMap;
use std::sync::Arc;

/// The factory of a plugin's exporter type.
pub fn factory(component: Arc<Component>) -> Arc<dyn Factory<dyn Exporter>> {
    reading_columnar(plugin_factory(component, build))
}

fn build(
    component: &Arc<Component>,
    json: &str,
    id: &ComponentId,
    _env: &BuildEnv,
) -> anyhow::Result<Box<dyn Exporter>> {
    Ok(Box::new(PluginExporter {
        id: id.to_string(),
        json: json.to_string(),
        component: component.clone(),
        instances: HashMap::new(),
    }))
}

struct PluginExporter {
    id: String,
    json: String,
    component: Arc<Component>,
    /// One per signal, built on its first batch; taken out while a call runs on a blocking thread.
    instances: HashMap<Signal, Instance>,
}

/// The runtime names the exporter in what it logs and records.
fn export_error(e: CallError) -> ExportError {
    match e {
        CallError::Permanent(t) => ExportError::Permanent(t),
        CallError::Retryable(t) => ExportError::Retryable(t),
        CallError::Panicked(t) => ExportError::Retryable(format!("the plugin {t}")),
    }
}

impl PluginExporter {
    /// Runs `call` on the signal's instance on a blocking thread; the instance comes back unless the
    /// plugin panicked (then the next batch builds a fresh one).
    async fn call<T: Send + 'static>(
        &mut self,
        signal: Signal,
        call: impl FnOnce(&mut Instance) -> Result<T, CallError> + Send + 'static,
    ) -> Result<T, ExportError> {
        let mut instance = match self.instances.remove(&signal) {
            Some(i) => i,
            None => {
                let (component, json) = (self.component.clone(), self.json.clone());
                tokio::task::spawn_blocking(move || component.create(&json, signal.into()))
                    .await
                    .map_err(|e| ExportError::Retryable(e.to_string()))?
                    .map_err(export_error)?
            }
        };
        let (instance, result) = tokio::task::spawn_blocking(move || {
            let r = call(&mut instance);
            (instance, r)
        })
        .await
        .map_err(|e| ExportError::Retryable(e.to_string()))?;
        match &result {
            Err(CallError::Panicked(e)) => {
                tracing::error!(exporter = %self.id, "the plugin {e}; its instance is rebuilt for the next batch");
            }
            _ => {
                self.instances.insert(signal, instance);
            }
        }
        result.map_err(export_error)
    }
}

#[async_trait]
impl Exporter for PluginExporter {
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let rows = batch.columnar().map_err(|e| ExportError::Permanent(e.to_string()))?.clone();
        self.call(batch.signal(), move |i| i.export(&rows)).await
    }

    async fn shutdown(&mut self) -> Result<(), ExportError> {
        let signals: Vec<Signal> = self.instances.keys().copied().collect();
        let mut first = Ok(());
        for s in signals {
            let r = self.call(s, |i| i.flush()).await;
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}
