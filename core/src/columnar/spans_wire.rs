//! The spans table's rows straight from `ExportTraceServiceRequest` bytes (see `wire`): the same rows
//! `spans::rows` makes from the decoded request, without decoding the spans into owned messages
//! first. Resources and scopes are read in place (see `wire`); events and links (rare) are still decoded
//! by prost and appended as `spans::rows` appends them.

use super::AttrSizes;
use super::resource_scope;
use super::spans::{Columns, Scalars};
use super::wire::{self, Attr, Fields, Sink, Stop, once, plain};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::trace::v1::span;
use prost::Message;

/// Checks that the direct path reads every part of `buf` (else `Stop::Unusual`), and counts its spans
/// and their attributes into `sizes` (what `rows` allocates by).
pub(crate) fn skim(buf: &[u8], sizes: &mut AttrSizes) -> Result<(), Stop> {
    wire::walk(buf, &mut Skim(sizes, SpanView::default()), None)
}

/// The rows of the requests `parts` (in order), whose skims added up to `sizes`.
pub(crate) fn rows<'a>(
    tenant: &str,
    parts: impl IntoIterator<Item = &'a [u8]>,
    sizes: &AttrSizes,
    grouped: bool,
) -> Result<RecordBatch, Stop> {
    let mut build = Build { columns: Columns::new(sizes), span: SpanView::default() };
    let mut groups = resource_scope::Builders::new();
    for part in parts {
        wire::walk(part, &mut build, Some(&mut groups))?;
    }
    Ok(build.columns.finish(tenant, groups, grouped)?)
}

/// One span, borrowed from the request's bytes; reused from span to span.
#[derive(Default)]
struct SpanView<'a> {
    scalars: Scalars<'a>,
    attrs: Vec<Attr<'a>>,
    events: Vec<&'a [u8]>,
    links: Vec<&'a [u8]>,
}

fn read_span<'a>(buf: &'a [u8], view: &mut SpanView<'a>) -> Result<(), Stop> {
    view.attrs.clear();
    view.events.clear();
    view.links.clear();
    let mut s = Scalars::default();
    let mut status = None;
    for f in Fields(buf) {
        match f? {
            (1, v) => s.trace_id = v.bytes()?,
            (2, v) => s.span_id = v.bytes()?,
            (3, v) => s.trace_state = v.str()?,
            (4, v) => s.parent_span_id = v.bytes()?,
            (5, v) => s.name = v.str()?,
            (6, v) => s.kind = v.int32()?,
            (7, v) => s.start = v.fixed64()?,
            (8, v) => s.end = v.fixed64()?,
            (9, v) => view.attrs.push(wire::attr(v.bytes()?)?),
            (10, v) => s.dropped_attributes_count = v.uint32()?,
            (11, v) => view.events.push(v.bytes()?),
            (12, v) => s.dropped_events_count = v.uint32()?,
            (13, v) => view.links.push(v.bytes()?),
            (14, v) => s.dropped_links_count = v.uint32()?,
            (15, v) => once(&mut status, v)?,
            (16, v) => s.flags = v.fixed32()?,
            _ => return Err(Stop::Unusual),
        }
    }
    if let Some(b) = status {
        let (mut code, mut message) = (0, "");
        for f in Fields(b) {
            match f? {
                (2, v) => message = v.str()?,
                (3, v) => code = v.int32()?,
                _ => return Err(Stop::Unusual),
            }
        }
        s.status = Some((code, message));
    }
    view.scalars = s;
    Ok(())
}

fn event(b: &[u8]) -> Result<span::Event, Stop> {
    let e = span::Event::decode(b).map_err(|_| Stop::Unusual)?;
    if plain(&e.attributes) { Ok(e) } else { Err(Stop::Unusual) }
}

fn link(b: &[u8]) -> Result<span::Link, Stop> {
    let l = span::Link::decode(b).map_err(|_| Stop::Unusual)?;
    if plain(&l.attributes) { Ok(l) } else { Err(Stop::Unusual) }
}

struct Skim<'s, 'a>(&'s mut AttrSizes, SpanView<'a>);

impl<'a> Sink<'a> for Skim<'_, 'a> {
    fn item(&mut self, bytes: &'a [u8]) -> Result<usize, Stop> {
        let s = &mut self.1;
        read_span(bytes, s)?;
        wire::count(self.0, &s.attrs);
        for e in &s.events {
            event(e)?;
        }
        for l in &s.links {
            link(l)?;
        }
        Ok(1)
    }
}

struct Build<'a> {
    columns: Columns,
    span: SpanView<'a>,
}

impl<'a> Sink<'a> for Build<'a> {
    fn item(&mut self, bytes: &'a [u8]) -> Result<usize, Stop> {
        let s = &mut self.span;
        read_span(bytes, s)?;
        let c = &mut self.columns;
        c.scalars(&s.scalars);
        wire::append_attrs(&mut c.attrs, &mut c.types, &s.attrs)?;
        for e in &s.events {
            c.event(&event(e)?)?;
        }
        c.events.append(true);
        for l in &s.links {
            c.link(&link(l)?)?;
        }
        c.links.append(true);
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::skim;
    use super::super::spans::tests::request;
    use super::super::wire::test_support::{
        added_field_read_as_prost_reads, edited, edits, every_field, flat, read_only_as_prost_reads,
        same_rows_as_decoded, wrap,
    };
    use crate::Signal;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
    use proptest::prelude::*;
    use prost::Message;

    /// The request with every array or key-value list value made a string: what the direct path reads.
    fn without_nesting(mut req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
        for rs in &mut req.resource_spans {
            rs.resource.iter_mut().for_each(|r| flat(&mut r.attributes));
            for ss in &mut rs.scope_spans {
                ss.scope.iter_mut().for_each(|s| flat(&mut s.attributes));
                for s in &mut ss.spans {
                    flat(&mut s.attributes);
                    s.events.iter_mut().for_each(|e| flat(&mut e.attributes));
                    s.links.iter_mut().for_each(|l| flat(&mut l.attributes));
                }
            }
        }
        req
    }

    const T: Signal = Signal::Traces;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// Rows straight from the bytes are the rows of the decoded request, in both forms, for one
        /// request or several appended; requests with nested values are left to prost.
        #[test]
        fn rows_from_the_bytes_are_the_rows_of_the_decoded_request(a in request(), b in request()) {
            if a.encode_to_vec() != without_nesting(a.clone()).encode_to_vec() {
                prop_assert_eq!(skim(Signal::Traces, &a.encode_to_vec()), None);
            }
            let (a, b) = (without_nesting(a.clone()).encode_to_vec(), without_nesting(b).encode_to_vec());
            let spans: usize = ExportTraceServiceRequest::decode(a.as_slice()).unwrap()
                .resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
            prop_assert_eq!(skim(Signal::Traces, &a).map(|s| s.items()), Some(spans));
            same_rows_as_decoded(T, &a, &b)?;
        }

        /// Whatever the bytes, a request the skim reads is one prost decodes, to the same rows: the
        /// direct path never accepts what prost would refuse, nor reads it otherwise.
        #[test]
        fn bytes_the_skim_reads_are_bytes_prost_decodes_to_the_same_rows(
            req in request(),
            edits in edits(),
        ) {
            let bytes = edited(without_nesting(req).encode_to_vec(), edits);
            read_only_as_prost_reads(T, bytes, true)?;
        }
    }

    /// A field of any number and wire type added to any message the direct path reads (the
    /// request, a resource or scope group, a span, an attribute, its value): read directly only if
    /// prost reads it too, to the same rows (an unknown field, a wrong wire type, a oneof set twice
    /// are prost's to read or refuse). Every field at every level.
    #[test]
    fn an_added_field_is_read_as_prost_reads_it_or_left_to_prost() {
        use opentelemetry_proto::tonic::trace::v1::Span;
        for extra in every_field() {
            for level in 0..6u8 {
                let add = |bytes: Vec<u8>, at: u8| if level == at { [bytes, extra.clone()].concat() } else { bytes };
                let value = add(wrap(1, b"v"), 5);
                let kv = add([wrap(1, b"k"), wrap(2, &value)].concat(), 4);
                let span = Span { name: "s".into(), start_time_unix_nano: 7, ..Default::default() }.encode_to_vec();
                let span = add([span, wrap(9, &kv)].concat(), 3);
                let scope = add(wrap(2, &span), 2);
                let rs = add(wrap(2, &scope), 1);
                let req = add(wrap(1, &rs), 0);
                added_field_read_as_prost_reads(T, req, level, &extra);
            }
        }
    }

    #[test]
    fn what_prost_would_merge_or_bound_is_left_to_it() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let span = |attributes| Span { name: "s".into(), attributes, ..Default::default() };
        let req = |s| ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![s], ..Default::default() }],
                ..Default::default()
            }],
        };
        let plain = req(span(vec![])).encode_to_vec();
        assert_eq!(skim(Signal::Traces, &plain).map(|s| s.items()), Some(1));
        let nested = KeyValue {
            key: "k".into(),
            value: Some(AnyValue { value: Some(Kind::ArrayValue(ArrayValue::default())) }),
            ..Default::default()
        };
        assert_eq!(skim(Signal::Traces, &req(span(vec![nested])).encode_to_vec()), None);
        // A status given twice, which prost merges: read by prost, not by the direct path.
        let mut s = Span { name: "s".into(), ..Default::default() }.encode_to_vec();
        s.extend(wrap(15, &[0x18, 0x02]));
        s.extend(wrap(15, &[0x12, 0x01, b'm']));
        let twice = wrap(1, &wrap(2, &wrap(2, &s)));
        let status = ExportTraceServiceRequest::decode(twice.as_slice()).unwrap().resource_spans[0].scope_spans[0]
            .spans[0]
            .status
            .clone()
            .unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "m"), "merged");
        assert_eq!(skim(Signal::Traces, &twice), None);
        // Once, it is read directly.
        let mut once = Span { name: "s".into(), ..Default::default() }.encode_to_vec();
        once.extend(wrap(15, &[0x18, 0x02]));
        assert_eq!(skim(Signal::Traces, &wrap(1, &wrap(2, &wrap(2, &once)))).map(|s| s.items()), Some(1));
    }
}
