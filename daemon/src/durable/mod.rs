//! Durable ingest: requests become WAL batches, fsynced before anyone hears "accepted".
//!
//! - `writer`: gathers requests into batches per (receiver, signal, tenant, metadata), reserves room in
//!   the batch's pipelines, writes every ready batch and fdatasyncs once (group commit), then hands
//!   the batches on and answers the requests;
//! - `completions`: records in the WAL the batches every exporter has stored, and runs the janitor
//!   that deletes fully stored segments;
//! - `replay`: at start, sends the batches the WAL holds without a completion through their pipelines
//!   again, before receivers accept anything new.

mod completions;
mod replay;
mod writer;

pub use completions::run_completions;
pub use replay::replay;
pub use writer::{Durable, Routes};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use openwit_core::{Payload, Signal};
use prost::Message;

/// The signal number used in WAL records.
pub fn signal_code(s: Signal) -> i32 {
    match s {
        Signal::Traces => 1,
        Signal::Metrics => 2,
        Signal::Logs => 3,
    }
}

pub fn signal_of(code: i32) -> Option<Signal> {
    match code {
        1 => Some(Signal::Traces),
        2 => Some(Signal::Metrics),
        3 => Some(Signal::Logs),
        _ => None,
    }
}

/// The protobuf bytes of a payload.
pub fn encode(p: &Payload) -> Vec<u8> {
    match p {
        Payload::Traces(r) => r.encode_to_vec(),
        Payload::Metrics(r) => r.encode_to_vec(),
        Payload::Logs(r) => r.encode_to_vec(),
    }
}

/// Decodes a WAL payload.
pub fn decode(signal: Signal, bytes: &[u8]) -> Result<Payload, prost::DecodeError> {
    Ok(match signal {
        Signal::Traces => Payload::Traces(ExportTraceServiceRequest::decode(bytes)?),
        Signal::Metrics => Payload::Metrics(ExportMetricsServiceRequest::decode(bytes)?),
        Signal::Logs => Payload::Logs(ExportLogsServiceRequest::decode(bytes)?),
    })
}
