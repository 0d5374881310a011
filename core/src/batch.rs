//! `Batch`: what flows between components.

use crate::LazyPayload;
use crate::memory::Charge;
use crate::{Lineage, Signal, TenantId, Verdict};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Request metadata (HTTP headers / gRPC metadata) kept when a receiver has `include_metadata: true`.
/// Keys are lower-case.
pub type Metadata = BTreeMap<String, Vec<String>>;

/// The OTLP data a batch carries, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Payload {
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Traces(_) => Signal::Traces,
            Payload::Metrics(_) => Signal::Metrics,
            Payload::Logs(_) => Signal::Logs,
        }
    }

    /// Items as the Collector counts them: spans, metric data points, log records.
    pub fn item_count(&self) -> usize {
        match self {
            Payload::Traces(r) => r.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum(),
            Payload::Logs(r) => {
                r.resource_logs.iter().flat_map(|rl| &rl.scope_logs).map(|sl| sl.log_records.len()).sum()
            }
            Payload::Metrics(r) => (r.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics))
                .flat_map(|sm| &sm.metrics)
                .map(|m| metric_point_count(m.data.as_ref()))
                .sum(),
        }
    }

    /// An empty payload of the given signal.
    pub fn empty(signal: Signal) -> Payload {
        match signal {
            Signal::Traces => Payload::Traces(Default::default()),
            Signal::Metrics => Payload::Metrics(Default::default()),
            Signal::Logs => Payload::Logs(Default::default()),
        }
    }
}

/// Number of data points in one metric.
pub fn metric_point_count(data: Option<&Data>) -> usize {
    match data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// A unit of telemetry moving through a pipeline: one tenant, one signal.
#[derive(Clone, Debug)]
pub struct Batch {
    pub tenant: TenantId,
    /// The items: as their requests' protobuf bytes until a component reads or changes the messages
    /// (see `crate::lazy_payload`).
    pub payload: LazyPayload,
    /// Request metadata, shared between the copies a fan-out makes.
    pub metadata: Arc<Metadata>,
    /// The WAL batches whose items this batch carries (empty when no WAL backs it).
    pub lineage: Lineage,
    /// The items as Arrow rows, made at most once however many exporters read them (the copies a
    /// fan-out makes share it). Code that changes `payload` in place must reset it (`Default`).
    pub columnar: Columnar,
    /// What the items hold of the process's memory budget (`crate::memory`), given back when the last
    /// batch holding it is dropped. Copies, merges and splits keep it.
    pub memory: Charge,
}

/// A batch's rows in Arrow (see `crate::columnar`), converted on first use and then shared: as the
/// conversion makes them (`grouped`, some columns held once per scope group) and, when a reader asks,
/// a value per row (`rows`).
#[derive(Clone, Debug, Default)]
pub struct Columnar(Arc<Forms>);

#[derive(Debug, Default)]
struct Forms {
    grouped: OnceLock<Result<RecordBatch, ConversionError>>,
    rows: OnceLock<Result<RecordBatch, ConversionError>>,
}

impl Columnar {
    /// Rows already made, e.g. a filter's selection of the rows it was given (row `i` must be item `i`
    /// of the batch it is put on).
    pub fn ready(rows: RecordBatch) -> Columnar {
        let grouped = OnceLock::from(Ok(rows.clone()));
        Columnar(Arc::new(Forms { grouped, rows: OnceLock::from(Ok(rows)) }))
    }
}

/// The items could not be made into Arrow rows (shared by the copies of the batch that asked).
#[derive(Clone, Debug, thiserror::Error)]
#[error("cannot convert the batch to Arrow: {0}")]
pub struct ConversionError(Arc<arrow::error::ArrowError>);

impl Batch {
    pub fn new(tenant: TenantId, payload: impl Into<LazyPayload>) -> Batch {
        Batch {
            tenant,
            payload: payload.into(),
            metadata: Arc::default(),
            lineage: Lineage::default(),
            columnar: Columnar::default(),
            memory: Charge::default(),
        }
    }

    /// Appends another batch's items (and where they came from).
    pub fn append(&mut self, other: Batch) {
        self.payload.append(other.payload);
        self.lineage.append(other.lineage);
        self.memory.append(other.memory);
        self.columnar = Columnar::default();
    }

    /// Removes and returns the first `n` items, as a batch with the same tenant and metadata.
    pub fn split_front(&mut self, n: usize) -> Batch {
        // Both halves change: neither keeps rows made for the whole.
        self.columnar = Columnar::default();
        Batch {
            tenant: self.tenant.clone(),
            payload: self.payload.split_front(n),
            metadata: self.metadata.clone(),
            lineage: self.lineage.split_front(n),
            columnar: Columnar::default(),
            // Both parts hold the whole charge: it comes back once neither is left.
            memory: self.memory.clone(),
        }
    }

    /// Moves the items whose flag is true (one per item, in order) into a new batch with the same tenant
    /// and metadata, obligations included: what a router does before sending each part its own way.
    pub fn take_items(&mut self, take: &[bool]) -> Batch {
        let mut payload = self.payload.clone();
        payload.retain_items(|i| take.get(i).copied().unwrap_or(false));
        let keep: Vec<bool> = (0..self.item_count()).map(|i| !take.get(i).copied().unwrap_or(false)).collect();
        let lineage = self.retain_items(&keep);
        Batch {
            tenant: self.tenant.clone(),
            payload,
            metadata: self.metadata.clone(),
            lineage,
            columnar: Columnar::default(),
            memory: self.memory.clone(),
        }
    }

    /// Keeps the items whose flag is true (one per item, in order) and returns the lineage of the
    /// others, which the caller settles (a filter: `Verdict::Dropped`).
    pub fn retain_items(&mut self, keep: &[bool]) -> Lineage {
        self.columnar = Columnar::default();
        self.payload.retain_items(|i| keep.get(i).copied().unwrap_or(true));
        self.lineage.retain(keep)
    }

    /// What a filter or sampler does: keeps the items whose flag is true, settles the others as
    /// `Verdict::Dropped` on this path, and counts them (`telemetry::dropped_items`). Returns how many
    /// were dropped.
    pub fn drop_items(&mut self, keep: &[bool], dropped: &crate::telemetry::SignalCounters) -> usize {
        let signal = self.signal();
        let before = self.item_count();
        let removed = self.retain_items(keep);
        let n = before - self.item_count();
        dropped.add(signal, n);
        removed.settle(&Verdict::Dropped);
        n
    }

    /// What a processor that works on Arrow rows does with its result: `rows` become the batch's
    /// items, one per item it keeps, in order (`keep` has one flag per item before). The items not
    /// kept are settled `Verdict::Dropped` and counted; the payload is rebuilt from `rows`, so that
    /// every later component — Arrow or OTLP — sees the change. Nothing changes when the rows cannot
    /// be read back as this batch's signal. Returns how many items were dropped.
    pub fn replace_rows(
        &mut self,
        keep: &[bool],
        rows: RecordBatch,
        dropped: &crate::telemetry::SignalCounters,
    ) -> Result<usize, crate::columnar::ColumnarError> {
        let kept = keep.iter().filter(|k| **k).count();
        if keep.len() != self.item_count() || rows.num_rows() != kept {
            return Err(format!(
                "{} rows for {kept} kept items of {} ({} flags)",
                rows.num_rows(),
                self.item_count(),
                keep.len()
            )
            .into());
        }
        let payload = crate::columnar::from_record_batch(self.signal(), &rows)?;
        let removed = self.lineage.retain(keep);
        let n = keep.len() - kept;
        dropped.add(self.signal(), n);
        removed.settle(&Verdict::Dropped);
        self.payload = payload.into();
        self.columnar = Columnar::ready(rows);
        Ok(n)
    }

    /// Settles every item this batch carries, on this path.
    pub fn settle(self, v: &Verdict) {
        self.lineage.settle(v);
    }

    /// Whether the Arrow rows were already made (by the batch processor, or an earlier reader).
    pub fn is_converted(&self) -> bool {
        self.columnar.0.grouped.get().is_some()
    }

    /// The items as Arrow rows, one per item in item order (row `i` is item `i` of the lineage), in
    /// the table's schema. Made on the first call; later calls, and copies of this batch, share them.
    pub fn columnar(&self) -> Result<&RecordBatch, ConversionError> {
        let forms = &self.columnar.0;
        let error = |e| ConversionError(Arc::new(e));
        let rows = forms.rows.get_or_init(|| match forms.grouped.get() {
            Some(grouped) => crate::columnar::expand_groups(grouped.as_ref().map_err(Clone::clone)?).map_err(error),
            None => {
                let rows = self.convert(false).map_err(error);
                // A reader of the grouped form shares them (a table's rows are one): not made twice.
                let _ = forms.grouped.set(rows.clone());
                rows
            }
        });
        rows.as_ref().map_err(Clone::clone)
    }

    /// The items' rows as the conversion makes them ([`crate::columnar::to_grouped_record_batch`]:
    /// the resource and scope columns that cost memory per row held once per scope group), for
    /// readers that keep them that way (the Parquet exporter buffers them so). Made on the first call
    /// and shared, like [`Batch::columnar`].
    pub fn columnar_grouped(&self) -> Result<&RecordBatch, ConversionError> {
        let grouped =
            self.columnar.0.grouped.get_or_init(|| self.convert(true).map_err(|e| ConversionError(Arc::new(e))));
        grouped.as_ref().map_err(Clone::clone)
    }

    /// The items' rows, `grouped` or not: straight from the requests' bytes while the batch holds them,
    /// else from the decoded messages.
    fn convert(&self, grouped: bool) -> Result<RecordBatch, arrow::error::ArrowError> {
        let tenant = self.tenant.as_str();
        if let Some(e) = self.payload.encoded() {
            let parts = e.parts.iter().map(|b| b.as_ref());
            if let Some(rows) = crate::columnar::from_encoded(tenant, self.signal(), parts, &e.skimmed, grouped) {
                return rows;
            }
        }
        if grouped {
            crate::columnar::to_grouped_record_batch(tenant, &self.payload)
        } else {
            crate::columnar::to_record_batch(tenant, &self.payload)
        }
    }

    pub fn signal(&self) -> Signal {
        self.payload.signal()
    }

    pub fn item_count(&self) -> usize {
        self.payload.item_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn logs(n: usize) -> Batch {
        let records = (0..n).map(|i| LogRecord { time_unix_nano: i as u64, ..Default::default() }).collect();
        Batch::new(
            TenantId::new("t").unwrap(),
            Payload::Logs(ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                    ..Default::default()
                }],
            }),
        )
    }

    #[test]
    fn dropped_items_are_settled_and_counted_and_the_rest_still_held() {
        let t = crate::telemetry::Telemetry::default();
        let dropped = crate::telemetry::dropped_items(&t, "filter/x");
        let (tx, mut done) = tokio::sync::mpsc::unbounded_channel();
        let mut b = logs(5);
        b.lineage = crate::Lineage::whole(crate::AckToken::new(crate::BatchId([1; 16]), tx), 5);
        assert_eq!(b.drop_items(&[true, false, false, true, false], &dropped), 3);
        assert_eq!(b.item_count(), 2);
        assert_eq!(b.lineage.items().map(|(_, i)| i).collect::<Vec<_>>(), vec![0, 3]);
        let kept: Vec<u64> = match &*b.payload {
            Payload::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .flat_map(|sl| &sl.log_records)
                .map(|l| l.time_unix_nano)
                .collect(),
            _ => unreachable!(),
        };
        assert_eq!(kept, vec![0, 3], "the payload and its lineage stay aligned");
        assert!(done.try_recv().is_err(), "the kept items are still held");
        b.settle(&Verdict::Stored);
        assert_eq!(done.try_recv().unwrap().outcome, crate::Outcome::Stored);
        assert!(t.encode().contains("openwit_processor_dropped_log_records_total{processor=\"filter/x\"} 3"));
    }

    #[test]
    fn arrow_rows_follow_every_change_of_the_items() {
        let mut b = logs(6);
        assert_eq!(b.columnar().unwrap().num_rows(), 6);
        // Rows made for a reader of the table's rows serve a reader of the grouped form: made once.
        // (Converted afresh, these six records of one scope would be held once per group.)
        assert_eq!(b.columnar_grouped().unwrap(), b.columnar().unwrap());
        let head = b.split_front(4);
        assert!(!b.is_converted() && !head.is_converted(), "rows made for the whole are dropped by a split");
        assert_eq!((head.columnar().unwrap().num_rows(), b.columnar().unwrap().num_rows()), (4, 2));
        let mut joined = head;
        joined.append(b);
        assert!(!joined.is_converted());
        assert_eq!(joined.columnar().unwrap().num_rows(), 6);
    }

    #[test]
    fn grouped_rows_hold_resource_and_scope_columns_once_per_scope_and_expand_to_the_table_rows() {
        use crate::columnar::{BY_SCOPE_GROUP, table_schema};
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::Int32Type;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data,
        };
        use opentelemetry_proto::tonic::resource::v1::Resource;
        let points = |n: usize| vec![NumberDataPoint::default(); n];
        let scope = |metrics: Vec<Data>| ScopeMetrics {
            metrics: metrics.into_iter().map(|d| Metric { data: Some(d), ..Default::default() }).collect(),
            ..Default::default()
        };
        let payload =
            Payload::Metrics(opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
                resource_metrics: vec![
                    ResourceMetrics {
                        scope_metrics: vec![
                            scope(vec![
                                Data::Gauge(Gauge { data_points: points(2) }),
                                Data::Sum(Sum { data_points: points(3), ..Default::default() }),
                            ]),
                            scope(vec![]),
                        ],
                        ..Default::default()
                    },
                    ResourceMetrics {
                        resource: Some(Resource {
                            attributes: vec![KeyValue {
                                key: "host.name".into(),
                                value: Some(AnyValue { value: Some(Value::StringValue("b".into())) }),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }),
                        scope_metrics: vec![scope(vec![Data::Gauge(Gauge { data_points: points(1) })])],
                        ..Default::default()
                    },
                ],
            });
        assert_eq!(payload.item_count(), 6);
        let b = Batch::new(TenantId::new("t").unwrap(), payload);
        let grouped = b.columnar_grouped().unwrap();
        let schema = grouped.schema();
        let field = schema.field_with_name("resource_attributes").unwrap();
        assert!(field.metadata().contains_key(BY_SCOPE_GROUP), "{field:?}");
        let held = grouped.column_by_name("resource_attributes").unwrap().as_dictionary::<Int32Type>();
        // The empty scope is no group: five points of the first, one of the second.
        assert_eq!(held.keys().values().as_ref(), [0, 0, 0, 0, 0, 1]);
        assert_eq!(held.values().len(), 2);
        let rows = b.columnar().unwrap();
        assert_eq!(rows.schema(), table_schema(&schema));
        assert!(rows.schema().fields().iter().all(|f| f.metadata().is_empty()));
        let attrs = rows.column_by_name("resource_attributes").unwrap().as_map();
        assert_eq!((attrs.len(), attrs.is_null(4), attrs.value_length(5)), (6, true, 1));
        assert_eq!(attrs.value(5).column(1).as_string::<i32>().value(0), "b");
        // Groups of fewer than two items on average: every column a value per row.
        let scope = |n: usize| ScopeLogs { log_records: vec![LogRecord::default(); n], ..Default::default() };
        let few = Batch::new(
            TenantId::new("t").unwrap(),
            Payload::Logs(ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![scope(1), scope(1), scope(3)],
                    ..Default::default()
                }],
            }),
        );
        assert_eq!(few.columnar_grouped().unwrap(), few.columnar().unwrap());
        assert_eq!(few.columnar().unwrap().num_rows(), 5);
    }
}
