//! A batch's payload as it came: the requests' protobuf bytes, decoded only when a component asks
//! for the messages.
//!
//! Storing needs no decoded messages: the conversion reads spans, log records and metric points
//! straight from the request bytes (`columnar::from_encoded`). Decoding a request into owned messages and freeing them was ~27 % of
//! the daemon's CPU while storing (docs/BENCHMARKS.md, "What bounds the storing CPU"), so a request
//! whose bytes the conversion reads ([`columnar::skim`]: checked at receipt, before it is
//! acknowledged) travels as those bytes. Any component that reads or changes the messages (a
//! processor, an OTLP exporter) gets them decoded on first use, exactly as prost decodes them: the
//! skim accepts only requests prost decodes (property-tested in `columnar::spans_wire`, `logs_wire`
//! and `metrics_wire`).

use crate::columnar::{self, Skimmed};
use crate::{Payload, Signal};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

/// A payload held as its requests' protobuf bytes, or decoded (see the module's doc). Reads through
/// `Deref` decode the bytes once and keep both; changes through `DerefMut` drop the bytes.
#[derive(Clone, Debug)]
pub struct LazyPayload {
    signal: Signal,
    /// The requests' bytes, in order, while they still say what the payload holds.
    encoded: Option<Encoded>,
    decoded: OnceLock<Payload>,
}

/// Requests' protobuf bytes that [`columnar::skim`] read, and what it counted in them.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    pub parts: Vec<Bytes>,
    pub skimmed: Skimmed,
}

impl LazyPayload {
    /// No items, held as no requests' bytes (what requests' bytes are appended to).
    pub fn nothing(signal: Signal) -> LazyPayload {
        LazyPayload { signal, encoded: Some(Encoded::default()), decoded: OnceLock::new() }
    }

    /// A request's protobuf bytes (an `Export*ServiceRequest` of `signal`): kept as they are when
    /// the conversion reads them directly, else decoded now. An error says the bytes are not a valid
    /// request (prost's error).
    pub fn from_protobuf(signal: Signal, bytes: Bytes) -> Result<LazyPayload, prost::DecodeError> {
        match columnar::skim(signal, &bytes) {
            Some(skimmed) => Ok(LazyPayload {
                signal,
                encoded: Some(Encoded { parts: vec![bytes], skimmed }),
                decoded: OnceLock::new(),
            }),
            None => Ok(Payload::decode(signal, &bytes)?.into()),
        }
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Items as the Collector counts them, without decoding.
    pub fn item_count(&self) -> usize {
        match (&self.encoded, self.decoded.get()) {
            (Some(e), _) => e.skimmed.items(),
            (None, Some(p)) => p.item_count(),
            (None, None) => 0,
        }
    }

    /// The requests' bytes, while they say what the payload holds (not once it was changed).
    pub fn encoded(&self) -> Option<&Encoded> {
        self.encoded.as_ref()
    }

    /// Whether the messages were decoded (or the payload never was bytes).
    pub fn is_decoded(&self) -> bool {
        self.decoded.get().is_some()
    }

    /// Appends another payload's items: bytes to bytes without decoding; otherwise both decoded.
    pub fn append(&mut self, other: LazyPayload) {
        if let (Some(mine), Some(theirs)) = (self.encoded.as_mut(), other.encoded.as_ref()) {
            mine.parts.extend(theirs.parts.iter().cloned());
            mine.skimmed.add(&theirs.skimmed);
            // Messages decoded before no longer hold every item.
            self.decoded = OnceLock::new();
            return;
        }
        let other = other.into_payload();
        self.deref_mut().append(other);
    }

    /// Removes and returns the first `n` items: all of them without decoding (what a batch processor
    /// without `send_batch_max_size` does), else split decoded.
    pub fn split_front(&mut self, n: usize) -> LazyPayload {
        if n >= self.item_count() {
            return std::mem::replace(self, LazyPayload::nothing(self.signal));
        }
        self.deref_mut().split_front(n).into()
    }

    /// The decoded messages, owned.
    pub fn into_payload(mut self) -> Payload {
        self.messages();
        self.decoded.take().unwrap_or_else(|| Payload::empty(self.signal))
    }
}

impl Deref for LazyPayload {
    type Target = Payload;

    fn deref(&self) -> &Payload {
        self.messages()
    }
}

impl LazyPayload {
    /// The messages, decoded on first use.
    fn messages(&self) -> &Payload {
        self.decoded.get_or_init(|| {
            let mut payload = Payload::empty(self.signal);
            for part in self.encoded.iter().flat_map(|e| &e.parts) {
                // The skim read these bytes at receipt and accepts only what prost decodes
                // (property-tested), so failing here is a bug in the skim, not bad input.
                match Payload::decode(self.signal, part) {
                    Ok(p) => payload.append(p),
                    Err(e) => panic!("request bytes the skim read do not decode (a bug in columnar::skim): {e}"),
                }
            }
            payload
        })
    }
}

impl DerefMut for LazyPayload {
    fn deref_mut(&mut self) -> &mut Payload {
        self.messages();
        // Whatever the caller changes, the bytes no longer say it.
        self.encoded = None;
        self.decoded.get_mut().expect("decoded just above")
    }
}

impl From<Payload> for LazyPayload {
    fn from(p: Payload) -> LazyPayload {
        LazyPayload { signal: p.signal(), encoded: None, decoded: OnceLock::from(p) }
    }
}

impl Payload {
    /// Decodes an `Export*ServiceRequest` of `signal`.
    pub fn decode(signal: Signal, bytes: &[u8]) -> Result<Payload, prost::DecodeError> {
        Ok(match signal {
            Signal::Traces => Payload::Traces(ExportTraceServiceRequest::decode(bytes)?),
            Signal::Metrics => Payload::Metrics(ExportMetricsServiceRequest::decode(bytes)?),
            Signal::Logs => Payload::Logs(ExportLogsServiceRequest::decode(bytes)?),
        })
    }

    /// The protobuf bytes of the request.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        match self {
            Payload::Traces(r) => r.encode_to_vec(),
            Payload::Metrics(r) => r.encode_to_vec(),
            Payload::Logs(r) => r.encode_to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, TenantId};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn request(names: &[&str], attribute: Option<Value>) -> ExportTraceServiceRequest {
        let spans = names
            .iter()
            .map(|n| Span {
                name: n.to_string(),
                attributes: vec![KeyValue {
                    key: "k".into(),
                    value: Some(AnyValue { value: attribute.clone() }),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    fn bytes(r: &ExportTraceServiceRequest) -> Bytes {
        Bytes::from(r.encode_to_vec())
    }

    fn names(p: &Payload) -> Vec<String> {
        let Payload::Traces(r) = p else { unreachable!() };
        r.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).map(|s| s.name.clone()).collect()
    }

    #[test]
    fn storing_a_batch_of_request_bytes_decodes_nothing_and_makes_the_decoded_rows() {
        let (a, b) = (request(&["a", "b"], Some(Value::IntValue(7))), request(&["c"], None));
        let mut p = LazyPayload::from_protobuf(Signal::Traces, bytes(&a)).unwrap();
        p.append(LazyPayload::from_protobuf(Signal::Traces, bytes(&b)).unwrap());
        let mut held = LazyPayload::nothing(Signal::Traces);
        held.append(p);
        assert_eq!((held.item_count(), held.encoded().map(|e| e.parts.len())), (3, Some(2)));
        // A batch processor without a size limit takes it whole.
        let whole = held.split_front(3);
        assert_eq!(held.item_count(), 0);
        let batch = Batch::new(TenantId::new("t").unwrap(), whole);
        let rows = batch.columnar_grouped().unwrap().clone();
        assert!(!batch.payload.is_decoded(), "converted from the bytes, nothing decoded");
        let mut decoded = Payload::Traces(a.clone());
        decoded.append(Payload::Traces(b));
        assert_eq!(rows, crate::columnar::to_grouped_record_batch("t", &decoded).unwrap());
        // A reader of the messages gets them decoded, as prost decodes them; the bytes stay.
        assert_eq!(*batch.payload, decoded);
        assert!(batch.payload.encoded().is_some());
    }

    #[test]
    fn a_change_drops_the_bytes_and_the_rows_follow_it() {
        let mut p = LazyPayload::from_protobuf(Signal::Traces, bytes(&request(&["a", "b", "c"], None))).unwrap();
        let front = p.split_front(1);
        assert!(p.encoded().is_none() && front.encoded().is_none(), "split decoded");
        assert_eq!((names(&front), names(&p)), (vec!["a".to_string()], vec!["b".to_string(), "c".to_string()]));
        let mut batch = Batch::new(TenantId::new("t").unwrap(), p);
        let Payload::Traces(r) = &mut *batch.payload else { unreachable!() };
        r.resource_spans[0].scope_spans[0].spans[0].name = "x".into();
        let rows = batch.columnar().unwrap();
        assert_eq!(rows, &crate::columnar::to_record_batch("t", &batch.payload).unwrap());
        // Bytes appended to a changed payload are decoded into it.
        let mut changed: LazyPayload = Payload::Traces(request(&["x"], None)).into();
        changed.append(LazyPayload::from_protobuf(Signal::Traces, bytes(&request(&["y"], None))).unwrap());
        assert_eq!((names(&changed), changed.encoded().is_none()), (vec!["x".to_string(), "y".to_string()], true));
    }

    #[test]
    fn requests_the_conversion_does_not_read_are_decoded_at_receipt_and_bad_ones_refused() {
        let nested = request(&["a"], Some(Value::ArrayValue(ArrayValue::default())));
        let p = LazyPayload::from_protobuf(Signal::Traces, bytes(&nested)).unwrap();
        assert!(p.is_decoded() && p.encoded().is_none());
        assert_eq!(*p, Payload::Traces(nested));
        assert!(LazyPayload::from_protobuf(Signal::Traces, Bytes::from_static(&[0x0a, 0x05, 0x01])).is_err());
        // Every signal is read from its bytes: an empty metrics request stays bytes.
        let metrics = LazyPayload::from_protobuf(Signal::Metrics, Bytes::new()).unwrap();
        assert!(!metrics.is_decoded() && metrics.encoded().is_some() && metrics.item_count() == 0);
        assert!(LazyPayload::from_protobuf(Signal::Metrics, Bytes::from_static(&[0x0a, 0x05, 0x01])).is_err());
    }
}
