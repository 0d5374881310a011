//! The logs table's rows straight from `ExportLogsServiceRequest` bytes (see `wire`): the same rows
//! `logs::rows` makes from the decoded request. Resources and scopes are read in place (see `wire`;
//! one with entity refs is decoded by prost); a body that is an array or a key-value list leaves the request to prost.

use super::AttrSizes;
use super::logs::{Columns, Scalars};
use super::resource_scope;
use super::wire::{self, Attr, AttrValue, Fields, Sink, Stop, once};
use arrow::record_batch::RecordBatch;

/// Checks that the direct path reads every part of `buf` (else `Stop::Unusual`), and counts its log
/// records and their attributes into `sizes`, bodies' text into `body_bytes`.
pub(crate) fn skim(buf: &[u8], sizes: &mut AttrSizes, body_bytes: &mut usize) -> Result<(), Stop> {
    wire::walk(buf, &mut Skim { sizes, body_bytes, record: Record::default() }, None)
}

/// The rows of the requests `parts` (in order), whose skims added up to `sizes` and `body_bytes`.
pub(crate) fn rows<'a>(
    tenant: &str,
    parts: impl IntoIterator<Item = &'a [u8]>,
    sizes: &AttrSizes,
    body_bytes: usize,
    grouped: bool,
) -> Result<RecordBatch, Stop> {
    let mut build = Build { columns: Columns::new(sizes, body_bytes), record: Record::default() };
    let mut groups = resource_scope::Builders::new();
    for part in parts {
        wire::walk(part, &mut build, Some(&mut groups))?;
    }
    Ok(build.columns.finish(tenant, groups, grouped)?)
}

/// One log record, borrowed from the request's bytes; reused from record to record.
struct Record<'a> {
    scalars: Scalars<'a>,
    body: AttrValue<'a>,
    attrs: Vec<Attr<'a>>,
}

impl Default for Record<'_> {
    fn default() -> Self {
        Record { scalars: Scalars::default(), body: AttrValue::Absent, attrs: Vec::new() }
    }
}

fn read_record<'a>(buf: &'a [u8], r: &mut Record<'a>) -> Result<(), Stop> {
    r.attrs.clear();
    let mut s = Scalars::default();
    let mut body = None;
    for f in Fields(buf) {
        match f? {
            (1, v) => s.time = v.fixed64()?,
            (2, v) => s.severity_number = v.int32()?,
            (3, v) => s.severity_text = v.str()?,
            (5, v) => once(&mut body, v)?,
            (6, v) => r.attrs.push(wire::attr(v.bytes()?)?),
            (7, v) => s.dropped_attributes_count = v.uint32()?,
            (8, v) => s.flags = v.fixed32()?,
            (9, v) => s.trace_id = v.bytes()?,
            (10, v) => s.span_id = v.bytes()?,
            (11, v) => s.observed = v.fixed64()?,
            (12, v) => s.event_name = v.str()?,
            _ => return Err(Stop::Unusual),
        }
    }
    r.body = match body {
        None => AttrValue::Absent,
        Some(b) => wire::any_value(b)?,
    };
    r.scalars = s;
    Ok(())
}

struct Skim<'s, 'a> {
    sizes: &'s mut AttrSizes,
    body_bytes: &'s mut usize,
    record: Record<'a>,
}

impl<'a> Sink<'a> for Skim<'_, 'a> {
    fn item(&mut self, bytes: &'a [u8]) -> Result<usize, Stop> {
        read_record(bytes, &mut self.record)?;
        wire::count(self.sizes, &self.record.attrs);
        *self.body_bytes += wire::text_len(self.record.body);
        Ok(1)
    }
}

struct Build<'a> {
    columns: Columns,
    record: Record<'a>,
}

impl<'a> Sink<'a> for Build<'a> {
    fn item(&mut self, bytes: &'a [u8]) -> Result<usize, Stop> {
        let r = &mut self.record;
        read_record(bytes, r)?;
        let c = &mut self.columns;
        c.scalars(&r.scalars);
        let t = wire::append_value(&mut c.body, r.body)?;
        c.body_type.append_value(t as u8);
        wire::append_attrs(&mut c.attrs, &mut c.types, &r.attrs)?;
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::logs::tests::request;
    use super::super::skim;
    use super::super::wire::test_support::{
        added_field_read_as_prost_reads, edited, edits, every_field, flat, read_only_as_prost_reads,
        same_rows_as_decoded, wrap,
    };
    use crate::Signal;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use proptest::prelude::*;
    use prost::Message;

    const L: Signal = Signal::Logs;

    /// The request with every array or key-value list value (attributes and bodies) made a string.
    fn without_nesting(mut req: ExportLogsServiceRequest) -> ExportLogsServiceRequest {
        for rl in &mut req.resource_logs {
            rl.resource.iter_mut().for_each(|r| flat(&mut r.attributes));
            for sl in &mut rl.scope_logs {
                sl.scope.iter_mut().for_each(|s| flat(&mut s.attributes));
                for l in &mut sl.log_records {
                    flat(&mut l.attributes);
                    if let Some(b) = l.body.as_mut()
                        && matches!(b.value, Some(Kind::ArrayValue(_) | Kind::KvlistValue(_)))
                    {
                        b.value = Some(Kind::StringValue("nested".into()));
                    }
                }
            }
        }
        req
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// Rows straight from the bytes are the rows of the decoded request, in both forms, for one
        /// request or several appended; requests with nested values are left to prost.
        #[test]
        fn rows_from_the_bytes_are_the_rows_of_the_decoded_request(a in request(), b in request()) {
            if a.encode_to_vec() != without_nesting(a.clone()).encode_to_vec() {
                prop_assert_eq!(skim(L, &a.encode_to_vec()), None);
            }
            let (a, b) = (without_nesting(a).encode_to_vec(), without_nesting(b).encode_to_vec());
            let records: usize = ExportLogsServiceRequest::decode(a.as_slice()).unwrap()
                .resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
            prop_assert_eq!(skim(L, &a).map(|s| s.items()), Some(records));
            same_rows_as_decoded(L, &a, &b)?;
        }

        /// Whatever the bytes, a request the skim reads is one prost decodes, to the same rows.
        #[test]
        fn bytes_the_skim_reads_are_bytes_prost_decodes_to_the_same_rows(req in request(), edits in edits()) {
            let bytes = edited(without_nesting(req).encode_to_vec(), edits);
            read_only_as_prost_reads(L, bytes, true)?;
        }
    }

    /// A field of any number and wire type added to the request, a group, a record, an attribute,
    /// its value or the body: read directly only if prost reads it too, to the same rows. Every field
    /// at every level.
    #[test]
    fn an_added_field_is_read_as_prost_reads_it_or_left_to_prost() {
        for extra in every_field() {
            for level in 0..7u8 {
                let add = |bytes: Vec<u8>, at: u8| if level == at { [bytes, extra.clone()].concat() } else { bytes };
                let value = add(wrap(1, b"v"), 5);
                let kv = add([wrap(1, b"k"), wrap(2, &value)].concat(), 4);
                let body = add(wrap(1, b"hello"), 6);
                let record =
                    LogRecord { time_unix_nano: 7, severity_text: "INFO".into(), ..Default::default() }.encode_to_vec();
                let record = add([record, wrap(6, &kv), wrap(5, &body)].concat(), 3);
                let scope = add(wrap(2, &record), 2);
                let rl = add(wrap(2, &scope), 1);
                let req = add(wrap(1, &rl), 0);
                added_field_read_as_prost_reads(L, req, level, &extra);
            }
        }
    }
}
