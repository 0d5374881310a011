//! The daemon's own metrics, named as the Collector names them (`otelcol_receiver_accepted_spans`, …)
//! so that existing Collector dashboards and alerts keep working.

use crate::Signal;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Mutex;

type Labels = Vec<(String, String)>;
type CounterFamily = Family<Labels, Counter>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// The Collector's buckets for batch sizes, so that the same dashboards read the same shape.
fn batch_size_histogram() -> Histogram {
    Histogram::new([
        10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0,
        8000.0, 9000.0, 10000.0, 20000.0, 30000.0, 50000.0, 100000.0,
    ])
}

/// One counter family per signal, e.g. `accepted_spans`, `accepted_metric_points`, `accepted_log_records`.
#[derive(Default, Clone)]
pub struct PerSignal {
    spans: CounterFamily,
    metric_points: CounterFamily,
    log_records: CounterFamily,
}

impl PerSignal {
    fn register(&self, reg: &mut Registry, prefix: &str, help: &str) {
        for (sig, fam) in
            [(Signal::Traces, &self.spans), (Signal::Metrics, &self.metric_points), (Signal::Logs, &self.log_records)]
        {
            reg.register(format!("{prefix}_{}", sig.item_unit()), format!("{help} ({})", sig.item_unit()), fam.clone());
        }
    }

    /// Adds `n` items of `signal` under `labels`.
    pub fn add(&self, signal: Signal, labels: &[(&str, &str)], n: usize) {
        let fam = match signal {
            Signal::Traces => &self.spans,
            Signal::Metrics => &self.metric_points,
            Signal::Logs => &self.log_records,
        };
        let labels: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        fam.get_or_create(&labels).inc_by(n as u64);
    }
}

type Refresher = Box<dyn Fn() + Send + Sync>;

/// All of the daemon's own metrics.
pub struct Telemetry {
    registry: Registry,
    refreshers: Mutex<Vec<Refresher>>,
    pub receiver_accepted: PerSignal,
    pub receiver_refused: PerSignal,
    pub exporter_sent: PerSignal,
    pub exporter_send_failed: PerSignal,
    pub exporter_queue_size: Family<Labels, Gauge>,
    pub exporter_queue_capacity: Family<Labels, Gauge>,
    /// Items per batch a batch processor sent.
    pub processor_batch_send_size: HistogramFamily,
    /// OpenWit's own: bytes the WAL holds on disk.
    pub wal_disk_bytes: Gauge,
    /// Segments in the WAL directory.
    pub wal_segments: Gauge,
    /// WAL batches written but not yet stored by every exporter.
    pub wal_pending_batches: Gauge,
    /// Seconds each group commit (write + fdatasync) took.
    pub wal_commit_seconds: Histogram,
    /// WAL batches by outcome: `written`, `completed`, `failed`, `replayed`.
    pub wal_batches: Family<Labels, Counter>,
    /// Corrupt records found (and quarantined) when the WAL was opened.
    pub wal_quarantined_records: Counter,
    /// Parquet files stored (verified and recorded stable), by exporter and table.
    pub parquet_files: Family<Labels, Counter>,
    /// Rows and bytes in those files.
    pub parquet_rows: Family<Labels, Counter>,
    pub parquet_bytes: Family<Labels, Counter>,
    /// Failed attempts of a step (`catalog`, `upload`), by exporter: each is retried.
    pub parquet_failures: Family<Labels, Counter>,
    /// Bytes of finalized files waiting for their store, by exporter.
    pub parquet_staging_bytes: Family<Labels, Gauge>,
    /// Queries by outcome (`ok`, `invalid`, `limit`, `timeout`, `error`).
    pub query_requests: Family<Labels, Counter>,
    pub query_seconds: Histogram,
    /// Files of the queried tenant and tables in the catalog, and those left after pruning by time.
    pub query_files_considered: Counter,
    pub query_files_scanned: Counter,
    /// Row groups the Parquet reader checked against the predicate, pruned (`by` = `statistics`,
    /// `bloom_filter`), and read.
    pub query_row_groups_considered: Counter,
    pub query_row_groups_pruned: Family<Labels, Counter>,
    pub query_row_groups_scanned: Counter,
    /// Panics of a pipeline component, by component id (each restarts it).
    pub component_panics: Family<Labels, Counter>,
    /// Kafka messages by receiver and outcome (`stored`, `duplicate`, `empty`, `dead_lettered`,
    /// `dead_letter_failed`, `abandoned`).
    pub kafka_messages: Family<Labels, Counter>,
    /// Offset commits by receiver and outcome (`ok`, `failed`).
    pub kafka_commits: Family<Labels, Counter>,
    /// Partitions a Kafka receiver holds paused for backpressure.
    pub kafka_paused_partitions: Family<Labels, Gauge>,
}

impl Default for Telemetry {
    fn default() -> Self {
        // Collector-named metrics under `otelcol_`, OpenWit's own under `openwit_`.
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("otelcol");
        let t = Telemetry {
            registry: Registry::default(),
            refreshers: Mutex::default(),
            receiver_accepted: PerSignal::default(),
            receiver_refused: PerSignal::default(),
            exporter_sent: PerSignal::default(),
            exporter_send_failed: PerSignal::default(),
            exporter_queue_size: Family::default(),
            exporter_queue_capacity: Family::default(),
            processor_batch_send_size: Family::new_with_constructor(batch_size_histogram),
            wal_disk_bytes: Gauge::default(),
            wal_segments: Gauge::default(),
            wal_pending_batches: Gauge::default(),
            wal_commit_seconds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0001, 2.0, 16,
            )),
            wal_batches: Family::default(),
            wal_quarantined_records: Counter::default(),
            parquet_files: Family::default(),
            parquet_rows: Family::default(),
            parquet_bytes: Family::default(),
            parquet_failures: Family::default(),
            parquet_staging_bytes: Family::default(),
            query_requests: Family::default(),
            query_seconds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16)),
            query_files_considered: Counter::default(),
            query_files_scanned: Counter::default(),
            query_row_groups_considered: Counter::default(),
            query_row_groups_pruned: Family::default(),
            query_row_groups_scanned: Counter::default(),
            component_panics: Family::default(),
            kafka_messages: Family::default(),
            kafka_commits: Family::default(),
            kafka_paused_partitions: Family::default(),
        };
        t.receiver_accepted.register(registry, "receiver_accepted", "Items accepted by a receiver");
        t.receiver_refused.register(registry, "receiver_refused", "Items a receiver refused");
        t.exporter_sent.register(registry, "exporter_sent", "Items an exporter delivered");
        t.exporter_send_failed.register(registry, "exporter_send_failed", "Items an exporter failed to deliver");
        registry.register(
            "exporter_queue_size",
            "Batches waiting in an exporter's queue",
            t.exporter_queue_size.clone(),
        );
        registry.register(
            "exporter_queue_capacity",
            "Capacity of an exporter's queue, in batches",
            t.exporter_queue_capacity.clone(),
        );
        registry.register(
            "processor_batch_batch_send_size",
            "Number of items in each batch a batch processor sent",
            t.processor_batch_send_size.clone(),
        );
        let own = root.sub_registry_with_prefix("openwit");
        own.register("wal_disk_bytes", "Bytes the write-ahead log holds on disk", t.wal_disk_bytes.clone());
        own.register("wal_segments", "Segment files in the write-ahead log", t.wal_segments.clone());
        own.register(
            "wal_pending_batches",
            "WAL batches not yet stored by every exporter",
            t.wal_pending_batches.clone(),
        );
        own.register(
            "wal_commit_seconds",
            "Duration of each WAL group commit (write + fdatasync)",
            t.wal_commit_seconds.clone(),
        );
        own.register(
            "wal_batches",
            "WAL batches by outcome (written, completed, failed, replayed)",
            t.wal_batches.clone(),
        );
        own.register(
            "wal_quarantined_records",
            "Corrupt WAL records quarantined at start",
            t.wal_quarantined_records.clone(),
        );
        own.register("parquet_files", "Parquet files stored (verified, recorded stable)", t.parquet_files.clone());
        own.register("parquet_rows", "Rows in stored Parquet files", t.parquet_rows.clone());
        own.register("parquet_bytes", "Bytes of stored Parquet files", t.parquet_bytes.clone());
        own.register(
            "parquet_failures",
            "Failed attempts to record or upload a Parquet file (each is retried)",
            t.parquet_failures.clone(),
        );
        own.register(
            "parquet_staging_bytes",
            "Bytes of finalized Parquet files waiting for their store",
            t.parquet_staging_bytes.clone(),
        );
        own.register(
            "component_panics",
            "Panics of a pipeline component (each one restarts it; what it held is delivered again)",
            t.component_panics.clone(),
        );
        own.register("kafka_messages", "Kafka messages by outcome", t.kafka_messages.clone());
        own.register("kafka_commits", "Kafka offset commits by outcome", t.kafka_commits.clone());
        own.register(
            "kafka_paused_partitions",
            "Kafka partitions paused for backpressure",
            t.kafka_paused_partitions.clone(),
        );
        own.register("query_requests", "SQL queries by outcome", t.query_requests.clone());
        own.register("query_seconds", "Duration of SQL queries, to the last row", t.query_seconds.clone());
        own.register(
            "query_files_considered",
            "Parquet files of the queried tenant and tables in the catalog",
            t.query_files_considered.clone(),
        );
        own.register(
            "query_files_scanned",
            "Parquet files opened by queries after pruning by time in the catalog",
            t.query_files_scanned.clone(),
        );
        own.register(
            "query_row_groups_considered",
            "Row groups checked against a query's predicate",
            t.query_row_groups_considered.clone(),
        );
        own.register(
            "query_row_groups_pruned",
            "Row groups skipped, by what excluded them (statistics, bloom_filter)",
            t.query_row_groups_pruned.clone(),
        );
        own.register(
            "query_row_groups_scanned",
            "Row groups read after pruning (of those checked against a predicate)",
            t.query_row_groups_scanned.clone(),
        );
        Telemetry { registry: root, ..t }
    }
}

impl Telemetry {
    /// Registers a function that updates gauges just before each scrape (queue depths, for example).
    pub fn on_scrape(&self, f: impl Fn() + Send + Sync + 'static) {
        self.refreshers.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(f));
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        for f in self.refreshers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            f();
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_appear_under_collector_names() {
        let t = Telemetry::default();
        t.receiver_accepted.add(Signal::Traces, &[("receiver", "otlp"), ("transport", "grpc")], 3);
        t.exporter_queue_capacity.get_or_create(&vec![("exporter".into(), "debug".into())]).set(100);
        let text = t.encode();
        assert!(
            text.contains("otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 3"),
            "{text}"
        );
        assert!(text.contains("otelcol_exporter_queue_capacity{exporter=\"debug\"} 100"), "{text}");
    }
}
