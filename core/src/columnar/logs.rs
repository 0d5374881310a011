//! The `logs` table: one row per log record.

use super::ColumnarError;
use super::resource_scope::{self, Dict, Grouping, ResourceRow, ScopeRow, Start, dict_str};
use super::{
    AttrMapBuilder, AttrSizes, TypesBuilder, append_attrs, column, decode_encoded, finish, read_encoded, string_len,
    tenant_column, timestamp_type, ts, unts,
};
use crate::attributes::{AttrType, decode_value, write_value};
use arrow::array::{
    ArrayBuilder, AsArray, BinaryBuilder, Int32Builder, StringBuilder, TimestampNanosecondBuilder, UInt8Builder,
    UInt32Builder,
};
use arrow::datatypes::{Int32Type, TimestampNanosecondType, UInt8Type, UInt32Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

/// One row per log record of a log request, all for `tenant`, held as [`super::to_grouped_record_batch`] says.
pub fn to_grouped_record_batch(tenant: &str, req: &ExportLogsServiceRequest) -> Result<RecordBatch, ArrowError> {
    rows(tenant, req, true)
}

/// One row per item of `req`; `grouped`: held as [`super::to_grouped_record_batch`] says, else the
/// table's rows.
pub(super) fn rows(tenant: &str, req: &ExportLogsServiceRequest, grouped: bool) -> Result<RecordBatch, ArrowError> {
    // The builders are allocated at their size (see `AttrSizes`); string bodies are counted too.
    let mut sizes = AttrSizes::default();
    let mut body_bytes = 0;
    for l in req.resource_logs.iter().flat_map(|rl| &rl.scope_logs).flat_map(|sl| &sl.log_records) {
        sizes.add(&l.attributes);
        body_bytes += string_len(l.body.as_ref());
    }
    let mut c = Columns::new(&sizes, body_bytes);
    let mut rs_cols = resource_scope::Builders::new();
    for rl in &req.resource_logs {
        let res = ResourceRow::new(rl.resource.as_ref(), &rl.schema_url);
        for sl in &rl.scope_logs {
            rs_cols.append_rows(&res, &ScopeRow::new(sl.scope.as_ref(), &sl.schema_url), sl.log_records.len())?;
            for l in &sl.log_records {
                c.scalars(&Scalars {
                    time: l.time_unix_nano,
                    observed: l.observed_time_unix_nano,
                    severity_number: l.severity_number,
                    severity_text: &l.severity_text,
                    trace_id: &l.trace_id,
                    span_id: &l.span_id,
                    flags: l.flags,
                    event_name: &l.event_name,
                    dropped_attributes_count: l.dropped_attributes_count,
                });
                let t = write_value(l.body.as_ref(), &mut c.body);
                c.body.append_value("");
                c.body_type.append_value(t as u8);
                append_attrs(&mut c.attrs, &mut c.types, Some(&l.attributes))?;
            }
        }
    }
    c.finish(tenant, rs_cols, grouped)
}

/// A log record's values but its body and attributes, borrowed from where they are held (a decoded
/// `LogRecord`, or the request's bytes).
#[derive(Default)]
pub(super) struct Scalars<'a> {
    pub(super) time: u64,
    pub(super) observed: u64,
    pub(super) severity_number: i32,
    pub(super) severity_text: &'a str,
    pub(super) trace_id: &'a [u8],
    pub(super) span_id: &'a [u8],
    pub(super) flags: u32,
    pub(super) event_name: &'a str,
    pub(super) dropped_attributes_count: u32,
}

/// The builders of the logs table's own columns (the resource and scope ones are
/// `resource_scope::Builders`); each record appends its row to every one of them.
pub(super) struct Columns {
    n: usize,
    time: TimestampNanosecondBuilder,
    observed: TimestampNanosecondBuilder,
    severity_number: Int32Builder,
    severity_text: Dict,
    /// The body's text and type are appended by the caller, like attributes.
    pub(super) body: StringBuilder,
    pub(super) body_type: UInt8Builder,
    trace_id: BinaryBuilder,
    span_id: BinaryBuilder,
    flags: UInt32Builder,
    event_name: Dict,
    pub(super) attrs: AttrMapBuilder,
    pub(super) types: TypesBuilder,
    dropped: UInt32Builder,
}

impl Columns {
    /// Builders with room for the rows and attributes `sizes` counted and `body_bytes` of string bodies.
    pub(super) fn new(sizes: &AttrSizes, body_bytes: usize) -> Columns {
        let n = sizes.rows();
        let (attrs, types) = sizes.builders();
        Columns {
            n,
            time: TimestampNanosecondBuilder::with_capacity(n).with_data_type(timestamp_type()),
            observed: TimestampNanosecondBuilder::with_capacity(n).with_data_type(timestamp_type()),
            severity_number: Int32Builder::with_capacity(n),
            severity_text: Dict::new(),
            body: StringBuilder::with_capacity(n, body_bytes),
            body_type: UInt8Builder::with_capacity(n),
            trace_id: BinaryBuilder::with_capacity(n, 16 * n),
            span_id: BinaryBuilder::with_capacity(n, 8 * n),
            flags: UInt32Builder::with_capacity(n),
            event_name: Dict::new(),
            attrs,
            types,
            dropped: UInt32Builder::with_capacity(n),
        }
    }

    pub(super) fn scalars(&mut self, l: &Scalars<'_>) {
        self.time.append_value(ts(l.time));
        self.observed.append_value(ts(l.observed));
        self.severity_number.append_value(l.severity_number);
        self.severity_text.append_value(l.severity_text);
        self.trace_id.append_value(l.trace_id);
        self.span_id.append_value(l.span_id);
        self.flags.append_value(l.flags);
        self.event_name.append_value(l.event_name);
        self.dropped.append_value(l.dropped_attributes_count);
    }

    pub(super) fn finish(
        self,
        tenant: &str,
        rs_cols: resource_scope::Builders,
        grouped: bool,
    ) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<(&str, Box<dyn ArrayBuilder>, bool)> = vec![
            ("tenant", Box::new(tenant_column(tenant, self.n)), false),
            ("time", Box::new(self.time), false),
            ("observed_time", Box::new(self.observed), false),
            ("severity_number", Box::new(self.severity_number), false),
            ("severity_text", Box::new(self.severity_text), false),
            ("body", Box::new(self.body), false),
            ("body_type", Box::new(self.body_type), false),
            ("trace_id", Box::new(self.trace_id), false),
            ("span_id", Box::new(self.span_id), false),
            ("flags", Box::new(self.flags), false),
            ("event_name", Box::new(self.event_name), false),
            ("attributes", Box::new(self.attrs), false),
            ("attribute_types", Box::new(self.types), false),
            ("dropped_attributes_count", Box::new(self.dropped), false),
        ];
        finish(columns, rs_cols.columns(grouped)?)
    }
}

/// Rebuilds the log request from rows (adjacent rows with the same resource and scope share them).
pub fn from_record_batch(batch: &RecordBatch) -> Result<ExportLogsServiceRequest, ColumnarError> {
    let c = |n: &str| column(batch, n);
    let time = c("time")?.as_primitive::<TimestampNanosecondType>();
    let observed = c("observed_time")?.as_primitive::<TimestampNanosecondType>();
    let severity_number = c("severity_number")?.as_primitive::<Int32Type>();
    let severity_text = c("severity_text")?;
    let body = c("body")?.as_string::<i32>();
    let body_type = c("body_type")?.as_primitive::<UInt8Type>();
    let trace_id = c("trace_id")?.as_binary::<i32>();
    let span_id = c("span_id")?.as_binary::<i32>();
    let flags = c("flags")?.as_primitive::<UInt32Type>();
    let event_name = c("event_name")?;
    let attrs = c("attributes")?.as_map();
    let types = c("attribute_types")?.as_list::<i32>();
    let dropped = c("dropped_attributes_count")?.as_primitive::<UInt32Type>();
    let rs_read = resource_scope::Reader::new(batch)?;
    let mut out = ExportLogsServiceRequest::default();
    let mut grouping = Grouping::new();
    for row in 0..batch.num_rows() {
        let (rk, sk) = rs_read.keys(row)?;
        match grouping.next(rk, sk) {
            Start::Nothing => {}
            Start::Resource(rk, sk) => out.resource_logs.push(ResourceLogs {
                resource: rk.resource()?,
                scope_logs: vec![ScopeLogs {
                    scope: sk.scope()?,
                    log_records: Vec::new(),
                    schema_url: sk.schema_url(),
                }],
                schema_url: rk.schema_url(),
            }),
            Start::Scope(sk) => {
                let rl = out.resource_logs.last_mut().ok_or("internal: no resource group")?;
                rl.scope_logs.push(ScopeLogs {
                    scope: sk.scope()?,
                    log_records: Vec::new(),
                    schema_url: sk.schema_url(),
                });
            }
        }
        let t = AttrType::from_code(body_type.value(row))
            .ok_or_else(|| format!("unknown body type {}", body_type.value(row)))?;
        let record = LogRecord {
            time_unix_nano: unts(time.value(row)),
            observed_time_unix_nano: unts(observed.value(row)),
            severity_number: severity_number.value(row),
            severity_text: dict_str(severity_text, row)?.unwrap_or_default(),
            body: decode_value(body.value(row), t)?,
            attributes: decode_encoded(&read_encoded(attrs, types, row).unwrap_or_default())?,
            dropped_attributes_count: dropped.value(row),
            flags: flags.value(row),
            trace_id: trace_id.value(row).to_vec(),
            span_id: span_id.value(row).to_vec(),
            event_name: dict_str(event_name, row)?.unwrap_or_default(),
        };
        let rl = out.resource_logs.last_mut().ok_or("internal: no resource group")?;
        rl.scope_logs.last_mut().ok_or("internal: no scope group")?.log_records.push(record);
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::attributes::strategies::{any_value, attributes};
    use crate::columnar::test_support::{normalize, resource, scope};
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use proptest::prelude::*;
    use prost::Message;

    fn record() -> impl Strategy<Value = LogRecord> {
        (
            (any::<u64>(), any::<u64>(), any::<i32>(), "[A-Z]{0,5}", prop::option::of(any_value())),
            (
                attributes(),
                any::<u32>(),
                any::<u32>(),
                prop::collection::vec(any::<u8>(), 0..17),
                prop::collection::vec(any::<u8>(), 0..9),
                ".{0,6}",
            ),
        )
            .prop_map(|(a, b)| {
                let (time_unix_nano, observed_time_unix_nano, severity_number, severity_text, body) = a;
                let (attributes, dropped_attributes_count, flags, trace_id, span_id, event_name) = b;
                LogRecord {
                    time_unix_nano,
                    observed_time_unix_nano,
                    severity_number,
                    severity_text,
                    body: body.map(|value| AnyValue { value }),
                    attributes,
                    dropped_attributes_count,
                    flags,
                    trace_id,
                    span_id,
                    event_name,
                }
            })
    }

    pub(in crate::columnar) fn request() -> impl Strategy<Value = ExportLogsServiceRequest> {
        let scope_logs = (scope(), prop::collection::vec(record(), 0..4), "[a-z:/]{0,6}")
            .prop_map(|(scope, log_records, schema_url)| ScopeLogs { scope, log_records, schema_url });
        let resource_logs = (resource(), prop::collection::vec(scope_logs, 0..3), "[a-z:/]{0,6}")
            .prop_map(|(resource, scope_logs, schema_url)| ResourceLogs { resource, scope_logs, schema_url });
        prop::collection::vec(resource_logs, 0..3).prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn otlp_to_arrow_to_otlp_is_lossless(req in request()) {
            let batch = rows("t1", &req, false).unwrap();
            // Held once per scope group, the rows are the same once expanded.
            prop_assert_eq!(&super::super::expand_groups(&to_grouped_record_batch("t1", &req).unwrap()).unwrap(), &batch);
            let back = from_record_batch(&batch).unwrap();
            let expected = normalize(
                req.resource_logs.clone(),
                |r| (r.resource.as_ref().map(|x| x.encode_to_vec()), r.schema_url.clone()),
                |r| &mut r.scope_logs,
                |s| (s.scope.as_ref().map(|x| x.encode_to_vec()), s.schema_url.clone()),
                |s| &mut s.log_records,
            );
            prop_assert_eq!(back.encode_to_vec(), ExportLogsServiceRequest { resource_logs: expected }.encode_to_vec());
        }
    }
}
