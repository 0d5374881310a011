//! The `testing` processor: passes batches through unchanged, and panics once on demand. It exists for
//! OpenWit's own end-to-end tests (supervision: a panicking processor loses nothing acknowledged) and is
//! registered only when `OPENWIT_TEST_COMPONENTS=1`.

use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{Batch, BuildEnv, ComponentId, Factory, Fanout, Processor, Signal};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// `processors: testing: {…}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestingConfig {
    /// Panic once, on the Nth batch this processor id receives in the process (0: never). The batch it
    /// holds then, and everything else the task holds, is lost without a verdict.
    pub panic_on_batch: u64,
    /// Return from its loop once, on the Nth batch (0: never), dropping that batch without a verdict:
    /// a processor that stops early.
    pub return_on_batch: u64,
}

impl ComponentConfig for TestingConfig {}

/// The factory, or `None` unless test components are enabled.
pub fn factory_if_enabled() -> Option<Arc<dyn Factory<dyn Processor>>> {
    openwit_core::testing::enabled().then(|| {
        typed::<TestingConfig, dyn Processor>(
            "testing",
            &[],
            &Signal::ALL,
            "test only: passes batches through, panics or stops once on demand",
            |id: &ComponentId, cfg: &TestingConfig, _env: &BuildEnv| {
                let key = format!("processor {id}");
                Ok(Box::new(TestingProcessor {
                    panics: format!("{key} panic"),
                    returns: format!("{key} return"),
                    key,
                    cfg: cfg.clone(),
                }))
            },
        )
    })
}

struct TestingProcessor {
    key: String,
    /// Where batches are counted for `panic_on_batch` and `return_on_batch` (each once per process).
    panics: String,
    returns: String,
    cfg: TestingConfig,
}

#[async_trait]
impl Processor for TestingProcessor {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, output: &Fanout) {
        while let Some(batch) = input.recv().await {
            if openwit_core::testing::nth_call(&self.panics, self.cfg.panic_on_batch) {
                let _held = batch;
                panic!("{}: panicking on batch {} on purpose (panic_on_batch)", self.key, self.cfg.panic_on_batch);
            }
            if openwit_core::testing::nth_call(&self.returns, self.cfg.return_on_batch) {
                tracing::warn!(
                    "{}: returning on batch {} on purpose (return_on_batch)",
                    self.key,
                    self.cfg.return_on_batch
                );
                return;
            }
            if output.send(batch).await.is_err() {
                return;
            }
        }
    }
}
