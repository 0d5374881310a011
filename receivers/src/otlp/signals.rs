//! What differs between the three OTLP signals, gathered in one trait so that gRPC and HTTP handling
//! is written once.

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use openwit_core::{Payload, Signal};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub trait OtlpSignal: Send + Sync + 'static {
    type Req: prost::Message + Default + DeserializeOwned + Send + 'static;
    type Resp: prost::Message + Default + Serialize + Send + 'static;
    /// The gRPC service name.
    const SERVICE: &'static str;
    const SIGNAL: Signal;
    fn payload(req: Self::Req) -> Payload;
}

pub struct Traces;
pub struct Metrics;
pub struct Logs;

impl OtlpSignal for Traces {
    type Req = ExportTraceServiceRequest;
    type Resp = ExportTraceServiceResponse;
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const SIGNAL: Signal = Signal::Traces;
    fn payload(req: Self::Req) -> Payload {
        Payload::Traces(req)
    }
}

impl OtlpSignal for Metrics {
    type Req = ExportMetricsServiceRequest;
    type Resp = ExportMetricsServiceResponse;
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const SIGNAL: Signal = Signal::Metrics;
    fn payload(req: Self::Req) -> Payload {
        Payload::Metrics(req)
    }
}

impl OtlpSignal for Logs {
    type Req = ExportLogsServiceRequest;
    type Resp = ExportLogsServiceResponse;
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const SIGNAL: Signal = Signal::Logs;
    fn payload(req: Self::Req) -> Payload {
        Payload::Logs(req)
    }
}
