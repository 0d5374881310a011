//! The `nop` exporter: accepts and discards everything, like the Collector's. Useful to measure a
//! pipeline without a destination's cost.

use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{Batch, BuildEnv, ComponentId, ExportError, Exporter, Factory, Signal};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NopConfig {}

impl ComponentConfig for NopConfig {}

pub fn factory() -> Arc<dyn Factory<dyn Exporter>> {
    typed::<NopConfig, dyn Exporter>(
        "nop",
        &[],
        &Signal::ALL,
        "discards everything it receives",
        |_id: &ComponentId, _cfg: &NopConfig, _env: &BuildEnv| Ok(Box::new(Nop)),
    )
}

struct Nop;

#[async_trait]
impl Exporter for Nop {
    async fn export(&mut self, _batch: &Batch) -> Result<(), ExportError> {
        Ok(())
    }
}
