//! The vocabulary every OpenWit crate shares: signals, tenants, batches, the component traits and their
//! factories, the channels that connect components, the OTLP/JSON codec and the daemon's own telemetry.

pub mod ack;
pub mod attributes;
pub mod auth;
pub mod batch;
pub mod columnar;
pub mod component;
pub mod config_types;
pub mod factory;
pub mod fanout;
pub mod fresh;
pub mod health;
pub mod http_server;
pub mod ingest;
mod lazy_payload;
pub mod memory;
pub mod net;
pub mod operator;
pub mod otlp_json;
pub mod shared;
pub mod signal;
pub mod source;
mod split;
pub mod telemetry;
pub mod tenant;
pub mod testing;
pub mod text_index;
pub mod tls;

pub use ack::{AckToken, BadBatchId, BatchId, Completion, HOLDER, Lineage, Outcome, Segment, Verdict};
pub use batch::{Batch, Columnar, ConversionError, Metadata, Payload};
pub use component::{
    Admission, ComponentId, ComponentKind, ExportError, Exporter, Extension, ExtensionContext, Processor, Receiver,
    ReceiverContext,
};
pub use factory::{BuildEnv, ConfigIssue, Configured, Factory, FactorySet, ParsedConfig, Registry};
pub use fanout::{ConsumeError, Fanout};
pub use ingest::{BatchingConfig, Ingest, IngestRequest, Receipt};
pub use lazy_payload::{Encoded, LazyPayload};
pub use operator::{Operator, OperatorError};
pub use signal::Signal;
pub use source::{DurableOffsets, OffsetSet, SourceOffsets};
pub use tenant::{TenantConfig, TenantError, TenantId};
