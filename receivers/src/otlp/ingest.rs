//! The accept path shared by gRPC and HTTP: tenant, metadata, hand-off to the pipelines, own metrics.

use openwit_core::telemetry::Telemetry;
use openwit_core::{
    Batch, ConsumeError, Metadata, Payload, ReceiverContext, SignalConsumers, TenantConfig,
    TenantError, TenantId,
};
use std::sync::Arc;
use std::time::Duration;

/// Why a request was not accepted; each maps to an HTTP status and a gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("invalid tenant: {0}")]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Pipeline(#[from] ConsumeError),
}

pub struct Ingest {
    receiver: String,
    consumers: SignalConsumers,
    telemetry: Arc<Telemetry>,
    tenant: TenantConfig,
    wait: Duration,
}

impl Ingest {
    pub fn new(ctx: &ReceiverContext, tenant: TenantConfig, wait: Duration) -> Ingest {
        Ingest {
            receiver: ctx.id.to_string(),
            consumers: ctx.consumers.clone(),
            telemetry: ctx.telemetry.clone(),
            tenant,
            wait,
        }
    }

    pub fn consumers(&self) -> &SignalConsumers {
        &self.consumers
    }

    /// The header / metadata key that names the tenant, lower-case.
    pub fn tenant_key(&self) -> String {
        self.tenant.header.to_ascii_lowercase()
    }

    pub fn resolve_tenant(&self, value: Option<&str>) -> Result<TenantId, TenantError> {
        self.tenant.resolve(value)
    }

    /// Hands a decoded request to every pipeline of its signal.
    pub async fn accept(
        &self,
        transport: &str,
        tenant: Result<TenantId, TenantError>,
        payload: Payload,
        metadata: Metadata,
    ) -> Result<(), Refusal> {
        let signal = payload.signal();
        let items = payload.item_count();
        let labels = [
            ("receiver", self.receiver.as_str()),
            ("transport", transport),
        ];
        let result = async {
            let tenant = tenant?;
            let Some(fanout) = self.consumers.get(signal) else {
                // Servers only route signals that have pipelines; nothing to do otherwise.
                return Ok(());
            };
            if items == 0 {
                return Ok(());
            }
            let batch = Batch {
                tenant,
                payload,
                metadata: Arc::new(metadata),
            };
            fanout.send_within(batch, self.wait).await?;
            Ok(())
        }
        .await;
        match &result {
            Ok(()) => self.telemetry.receiver_accepted.add(signal, &labels, items),
            Err(e) => {
                tracing::debug!(receiver = %self.receiver, %transport, %signal, items, "refused: {e}");
                self.telemetry.receiver_refused.add(signal, &labels, items);
            }
        }
        result
    }
}
