//! The accept path shared by gRPC and HTTP: tenant, metadata, the durable hand-off, own metrics.

use openwit_core::auth::{AuthError, Identity, ServerAuth, bound_tenant};
use openwit_core::telemetry::ReceiverCounters;
use openwit_core::{
    BatchingConfig, ConsumeError, Ingest, IngestRequest, LazyPayload, Metadata, ReceiverContext, Signal, TenantConfig,
    TenantError, TenantId,
};
use std::sync::Arc;
use std::time::Duration;

/// Checks a request's credentials when the protocol has an authenticator: before its body is read,
/// so that nothing of a refused request is decoded or written.
pub fn authenticate(
    auth: Option<&Arc<dyn ServerAuth>>,
    headers: &http::HeaderMap,
) -> Result<Option<Identity>, AuthError> {
    auth.map(|a| a.authenticate(headers)).transpose()
}

/// Why a request was not accepted; each maps to an HTTP status and a gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("invalid tenant: {0}")]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Pipeline(#[from] ConsumeError),
}

/// How a request came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

pub struct Accept {
    receiver: Arc<str>,
    signals: Vec<Signal>,
    ingest: Arc<dyn Ingest>,
    grpc: ReceiverCounters,
    http: ReceiverCounters,
    tenant: TenantConfig,
    batching: BatchingConfig,
    wait: Duration,
}

impl Accept {
    pub fn new(ctx: &ReceiverContext, tenant: TenantConfig, batching: BatchingConfig, wait: Duration) -> Accept {
        Accept {
            receiver: Arc::from(ctx.id.to_string()),
            signals: ctx.signals.clone(),
            ingest: ctx.ingest.clone(),
            grpc: ReceiverCounters::register(&ctx.telemetry, &ctx.id.to_string(), Transport::Grpc.label()),
            http: ReceiverCounters::register(&ctx.telemetry, &ctx.id.to_string(), Transport::Http.label()),
            tenant,
            batching,
            wait,
        }
    }

    /// Whether a pipeline takes `signal` from this receiver (only those are served).
    pub fn serves(&self, signal: Signal) -> bool {
        self.signals.contains(&signal)
    }

    /// The tenant of a request: its identity's when an authenticator binds one (a header naming another
    /// is refused), otherwise the tenant header's.
    pub fn tenant_for(
        &self,
        identity: Option<&Identity>,
        header: Option<&[u8]>,
    ) -> Result<Result<TenantId, TenantError>, AuthError> {
        bound_tenant(identity, header, &self.tenant.header, |h| self.resolve_tenant(h))
    }

    /// The header / metadata key that names the tenant, lower-case.
    pub fn tenant_key(&self) -> String {
        self.tenant.header.to_ascii_lowercase()
    }

    pub fn resolve_tenant(&self, value: Option<&[u8]>) -> Result<TenantId, TenantError> {
        self.tenant.resolve(value)
    }

    /// Hands a request (decoded, or its bytes the conversion reads) to the WAL and, once it is durable, to the pipelines of its signal.
    /// `raw` is the request's protobuf encoding when the receiver has it.
    pub async fn accept(
        &self,
        transport: Transport,
        tenant: Result<TenantId, TenantError>,
        payload: LazyPayload,
        raw: Option<bytes::Bytes>,
        metadata: Metadata,
    ) -> Result<(), Refusal> {
        let signal = payload.signal();
        let items = payload.item_count();
        let counters = match transport {
            Transport::Grpc => &self.grpc,
            Transport::Http => &self.http,
        };
        let result = async {
            let tenant = tenant?;
            let req = IngestRequest {
                receiver: self.receiver.clone(),
                tenant,
                payload,
                raw,
                metadata,
                batching: self.batching,
                wait: self.wait,
                sources: Vec::new(),
            };
            // Nothing to hold: the client's answer is the end of the receiver's part.
            drop(self.ingest.ingest(req).await?);
            Ok(())
        }
        .await;
        match &result {
            Ok(()) => counters.accepted.add(signal, items),
            Err(e) => {
                tracing::debug!(receiver = %self.receiver, transport = transport.label(), %signal, items, "refused: {e}");
                counters.refused.add(signal, items);
            }
        }
        result
    }
}
