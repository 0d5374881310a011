//! The `forward` connector: hands every batch to all the pipelines that list it as a receiver (of the
//! same signal), unchanged — the Collector's way to join pipelines, for example to run shared processors
//! once and then fan out.

use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{Batch, BuildEnv, ComponentId, Factory, Fanout, Processor, Signal};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// `connectors: forward:` takes no settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

impl ComponentConfig for ForwardConfig {}

pub fn factory() -> Arc<dyn Factory<dyn Processor>> {
    typed::<ForwardConfig, dyn Processor>(
        "forward",
        &[],
        &Signal::ALL,
        "passes every batch on to the pipelines that read from it",
        |_id: &ComponentId, _cfg: &ForwardConfig, _env: &BuildEnv| Ok(Box::new(Forward)),
    )
}

struct Forward;

#[async_trait]
impl Processor for Forward {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, output: &Fanout) {
        while let Some(batch) = input.recv().await {
            if output.send(batch).await.is_err() {
                return;
            }
        }
    }
}
