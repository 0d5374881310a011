//! Component ids and the traits every receiver, processor, exporter and extension implements.

use crate::{Batch, Fanout, Ingest, Operator, Signal, health::Health, telemetry::Telemetry};
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The kinds of component a config declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    Receiver,
    Processor,
    Exporter,
    Extension,
    Connector,
}

impl ComponentKind {
    /// The top-level config section of this kind (`receivers`, …).
    pub fn section(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receivers",
            ComponentKind::Processor => "processors",
            ComponentKind::Exporter => "exporters",
            ComponentKind::Extension => "extensions",
            ComponentKind::Connector => "connectors",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receiver",
            ComponentKind::Processor => "processor",
            ComponentKind::Exporter => "exporter",
            ComponentKind::Extension => "extension",
            ComponentKind::Connector => "connector",
        }
    }
}

/// A component id, `type[/name]`, as written in the config.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    pub type_name: String,
    pub name: Option<String>,
}

impl ComponentId {
    /// Parses `type[/name]`. The type must be non-empty and made of `[A-Za-z0-9_]`, as in the Collector.
    pub fn parse(s: &str) -> Result<ComponentId, String> {
        let s = s.trim();
        let (t, n) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        if t.is_empty() {
            return Err(format!("{s:?} has an empty type; ids are written type[/name]"));
        }
        if let Some(c) = t.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
            return Err(format!("{s:?}: the type contains {c:?}; a type uses letters, digits and '_'"));
        }
        if n.is_some_and(str::is_empty) {
            return Err(format!("{s:?} has an empty name after '/'"));
        }
        Ok(ComponentId { type_name: t.to_string(), name: n.map(str::to_string) })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.type_name, n),
            None => f.write_str(&self.type_name),
        }
    }
}

/// What a running receiver is given.
pub struct ReceiverContext {
    pub id: ComponentId,
    /// The signals that pipelines take from this receiver: serve only those.
    pub signals: Vec<Signal>,
    /// Where requests go: durably into the WAL, then into the pipelines (the durable stage routes them).
    pub ingest: Arc<dyn Ingest>,
    pub telemetry: Arc<Telemetry>,
    /// Cancelled when the receiver must stop accepting.
    pub shutdown: CancellationToken,
    /// Source offsets (Kafka) of this receiver's batches that the WAL held at start.
    pub durable_offsets: crate::DurableOffsets,
}

/// A source of telemetry. `start` binds (so that a port in use fails start-up with a clear error) and
/// returns the task that serves until `ctx.shutdown` is cancelled; the task must drop its `ingest`
/// handle when it ends, which is what lets the pipelines behind it drain.
#[async_trait]
pub trait Receiver: Send {
    async fn start(self: Box<Self>, ctx: ReceiverContext) -> anyhow::Result<JoinHandle<()>>;
}

/// A pipeline stage. It owns its loop: it reads `input` until it is closed, hands results to `output`,
/// flushes what it holds, and returns.
///
/// Every item it receives must leave settled: handed on (`output`), or settled by the processor itself
/// (`Batch::retain_items` + `Verdict::Dropped` for what it removes on purpose). What it drops without a
/// verdict — including everything it holds when it panics — counts as lost and is delivered again from
/// the WAL. The runtime owns `input` and `output`, so after a panic a fresh instance (built from the
/// same config) carries on with the same queues.
#[async_trait]
pub trait Processor: Send {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, output: &Fanout);

    /// A check the receivers of this processor's pipeline make before they accept a request (before
    /// the WAL): how `memory_limiter` refuses data while memory is short. Asked once, at start.
    fn admission(&self) -> Option<Arc<dyn Admission>> {
        None
    }
}

/// Whether a receiver may accept data now. A refusal is retryable: the client is told to come back.
pub trait Admission: Send + Sync {
    fn admit(&self) -> Result<(), crate::ConsumeError>;
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Worth retrying (a timeout, an unavailable destination).
    #[error("{0}")]
    Retryable(String),
    /// Retrying will not help (the data cannot be written in this form).
    #[error("{0}")]
    Permanent(String),
}

/// A destination. The runtime calls `export` for each batch, in order (again, with the same batch,
/// after a retryable failure), and `shutdown` once its input has drained. The batch is borrowed so
/// that retries need no copy; an exporter that must change it clones what it changes.
///
/// The runtime settles the batch from the answer: `Ok` is `Verdict::Stored`, so return it only once the
/// data is durable where it is sent. An exporter that makes data durable later (the Parquet exporter,
/// once its file is stable) keeps its own obligation — `batch.lineage.clone()` — and settles it then;
/// the WAL batch completes only when that is settled too, and counts as lost if it is dropped unsettled.
/// A retryable error is retried by the runtime (`wal.export_retries`, with backoff), then settled as
/// `Verdict::Retryable`; a permanent error is settled as `Verdict::Permanent` at once.
#[async_trait]
pub trait Exporter: Send {
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError>;

    /// Flushes and closes whatever the exporter holds.
    async fn shutdown(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
}

/// What a running extension is given.
pub struct ExtensionContext {
    pub id: ComponentId,
    /// The catalog (one pool for the daemon).
    pub catalog: openwit_catalog::Catalog,
    /// Operator actions on the running pipelines.
    pub operator: Arc<dyn Operator>,
    pub health: Arc<Health>,
    pub telemetry: Arc<Telemetry>,
    /// Where files are kept (the query extension reads through the clients exporters opened).
    pub storage: Arc<openwit_storage::Storage>,
    /// How each table's full-text index analyses text (what `text_match` and `match_all` use).
    pub index_specs: Arc<crate::text_index::IndexSpecs>,
    /// Rows the daemon's exporters hold that are not in stable files yet (what queries see fresh).
    pub fresh: Arc<crate::fresh::FreshData>,
    /// Where an extension adds HTTP routes; the daemon serves each endpoint once, so extensions can
    /// share a port.
    pub apis: Arc<crate::shared::HttpApis>,
    /// The running authenticators, for extensions with `auth: {authenticator: …}`.
    pub auth: Arc<crate::auth::Authenticators>,
    pub shutdown: CancellationToken,
}

/// Something that runs beside the pipelines (health check, APIs).
#[async_trait]
pub trait Extension: Send {
    async fn start(self: Box<Self>, ctx: ExtensionContext) -> anyhow::Result<JoinHandle<()>>;
    /// What an authenticator extension offers receivers, exporters and APIs (`None` for the others).
    fn authenticator(&self) -> Option<crate::auth::Authenticator> {
        None
    }
}
