//! The `parquet` exporter through the real binary: what is sent with an OTLP client comes back, row for
//! row, from the Parquet files (read with the `parquet` crate), laid out as documented and recorded in
//! the catalog.

use crate::harness::Daemon;
use arrow::array::{Array, RecordBatch};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use openwit_catalog::{Catalog, FileFilter, FileRow, STABLE};
use openwit_core::{Payload, Signal, columnar};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use prost::Message;
use std::time::Duration;

/// `{exporter}` is the exporter section; traces, metrics and logs all go to `parquet`.
pub const PIPELINES: &str = "
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    send_batch_size: 300
    timeout: 50ms
exporters:
{exporter}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
";

pub fn config(exporter: &str) -> String {
    PIPELINES.replace("{exporter}", exporter)
}

/// Every item of a payload as its own one-item request, encoded and sorted: equal for two payloads
/// that hold the same items, however grouped and ordered.
pub fn items_of(p: &Payload) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    match p {
        Payload::Traces(r) => {
            for rs in &r.resource_spans {
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        let one = ResourceSpans {
                            scope_spans: vec![ScopeSpans { spans: vec![s.clone()], ..ss.clone() }],
                            ..rs.clone()
                        };
                        out.push(ExportTraceServiceRequest { resource_spans: vec![one] }.encode_to_vec());
                    }
                }
            }
        }
        Payload::Logs(r) => {
            for rl in &r.resource_logs {
                for sl in &rl.scope_logs {
                    for l in &sl.log_records {
                        let one = ResourceLogs {
                            scope_logs: vec![ScopeLogs { log_records: vec![l.clone()], ..sl.clone() }],
                            ..rl.clone()
                        };
                        out.push(ExportLogsServiceRequest { resource_logs: vec![one] }.encode_to_vec());
                    }
                }
            }
        }
        Payload::Metrics(r) => {
            for rm in &r.resource_metrics {
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        for d in single_points(m.data.as_ref()) {
                            let metric = Metric { data: Some(d), ..m.clone() };
                            let one = ResourceMetrics {
                                scope_metrics: vec![ScopeMetrics { metrics: vec![metric], ..sm.clone() }],
                                ..rm.clone()
                            };
                            out.push(ExportMetricsServiceRequest { resource_metrics: vec![one] }.encode_to_vec());
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out
}

fn single_points(d: Option<&Data>) -> Vec<Data> {
    macro_rules! each {
        ($v:expr, $kind:ident) => {
            $v.data_points
                .iter()
                .map(|p| {
                    Data::$kind({
                        let mut one = $v.clone();
                        one.data_points = vec![p.clone()];
                        one
                    })
                })
                .collect()
        };
    }
    match d {
        Some(Data::Gauge(v)) => each!(v, Gauge),
        Some(Data::Sum(v)) => each!(v, Sum),
        Some(Data::Histogram(v)) => each!(v, Histogram),
        Some(Data::ExponentialHistogram(v)) => each!(v, ExponentialHistogram),
        Some(Data::Summary(v)) => each!(v, Summary),
        None => Vec::new(),
    }
}

/// The rows of a Parquet file, and its metadata.
pub fn read_parquet(bytes: bytes::Bytes) -> (Vec<RecordBatch>, std::sync::Arc<ParquetMetaData>) {
    let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options).unwrap();
    let meta = builder.metadata().clone();
    let batches = builder.build().unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    (batches, meta)
}

/// The items the files hold, per signal, as `items_of` gives them.
pub fn items_in(signal: Signal, files: &[RecordBatch]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> =
        files.iter().flat_map(|b| items_of(&columnar::from_record_batch(signal, b).unwrap())).collect();
    out.sort();
    out
}

pub async fn catalog(d: &Daemon) -> Catalog {
    Catalog::connect(&format!("sqlite://{}", d.path("data/catalog.db").display())).await.unwrap()
}

/// Waits until the stable files hold `rows` rows per table (spans, logs, metrics); returns them.
pub async fn stable_files(c: &Catalog, rows: [i64; 3], timeout: Duration) -> Vec<FileRow> {
    let list = || async { c.files(&FileFilter { state: Some(STABLE.into()), ..Default::default() }).await.unwrap() };
    let count =
        |files: &[FileRow], t: &str| files.iter().filter(|f| f.table_name == t).map(|f| f.row_count).sum::<i64>();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let files = list().await;
        let got = [count(&files, "spans"), count(&files, "logs"), count(&files, "metrics")];
        if got == rows {
            return files;
        }
        assert!(std::time::Instant::now() < deadline, "stable rows {got:?}, expected {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one test sends: traces, logs and metrics from the seeded generator, plus spans spread over
/// three hours (three partitions).
pub struct Sent {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub logs: Vec<ExportLogsServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
}

impl Sent {
    pub fn new(seed: u64) -> Sent {
        let mut g = openwit_bench::data::Generator::new(seed);
        let mut traces: Vec<_> = (0..4).map(|_| g.traces(250)).collect();
        let mut spread = g.traces(30);
        for (i, s) in
            spread.resource_spans.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans).enumerate()
        {
            let shift = (i as u64 % 3) * 3_600_000_000_000;
            s.start_time_unix_nano += shift;
            s.end_time_unix_nano += shift;
        }
        traces.push(spread);
        Sent { traces, logs: (0..4).map(|_| g.logs(200)).collect(), metrics: (0..4).map(|_| g.metrics(60)).collect() }
    }

    pub fn payloads(&self, signal: Signal) -> Vec<Payload> {
        match signal {
            Signal::Traces => self.traces.iter().cloned().map(Payload::Traces).collect(),
            Signal::Logs => self.logs.iter().cloned().map(Payload::Logs).collect(),
            Signal::Metrics => self.metrics.iter().cloned().map(Payload::Metrics).collect(),
        }
    }

    pub fn items(&self, signal: Signal) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self.payloads(signal).iter().flat_map(items_of).collect();
        out.sort();
        out
    }

    /// Rows expected per table: spans, logs, metrics.
    pub fn rows(&self) -> [i64; 3] {
        [Signal::Traces, Signal::Logs, Signal::Metrics]
            .map(|s| self.payloads(s).iter().map(|p| p.item_count() as i64).sum())
    }

    pub async fn send(&self, d: &Daemon) {
        let mut t = TraceServiceClient::connect(d.grpc_url()).await.unwrap();
        let mut l = LogsServiceClient::connect(d.grpc_url()).await.unwrap();
        let mut m = MetricsServiceClient::connect(d.grpc_url()).await.unwrap();
        for r in &self.traces {
            t.export(r.clone()).await.unwrap();
        }
        for r in &self.logs {
            l.export(r.clone()).await.unwrap();
        }
        for r in &self.metrics {
            m.export(r.clone()).await.unwrap();
        }
    }
}

/// Checks the files against what was sent and the catalog: rows equal what was sent (each item once),
/// paths follow the layout, the catalog's numbers are the files' numbers, and the files carry the
/// promised encoding, statistics, bloom filters and sort order. `fetch` reads a file by catalog row.
pub async fn check_files<F, Fut>(c: &Catalog, sent: &Sent, files: &[FileRow], node_id: &str, fetch: F)
where
    F: Fn(FileRow) -> Fut,
    Fut: std::future::Future<Output = bytes::Bytes>,
{
    let mut by_signal: std::collections::HashMap<&str, Vec<RecordBatch>> = Default::default();
    let mut batch_items = 0i64;
    for f in files {
        let bytes = fetch(f.clone()).await;
        assert_eq!(bytes.len() as i64, f.byte_size, "{}", f.path);
        let (rows, meta) = read_parquet(bytes);
        let n: usize = rows.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n as i64, f.row_count, "{}", f.path);

        // Layout: {table}/tenant={tenant}/date=YYYY-MM-DD/hour=HH/{node_id}-{ulid}.parquet, the hour of the rows.
        let hour = time::OffsetDateTime::from_unix_timestamp_nanos(f.min_time as i128).unwrap();
        let expected_dir = format!(
            "{}/tenant={}/date={:04}-{:02}-{:02}/hour={:02}/",
            f.table_name,
            f.tenant,
            hour.year(),
            u8::from(hour.month()),
            hour.day(),
            hour.hour()
        );
        assert!(f.path.starts_with(&expected_dir), "{} is not under {expected_dir}", f.path);
        let name = f.path.rsplit('/').next().unwrap();
        assert_eq!(name, format!("{node_id}-{}.parquet", f.file_id));
        assert_eq!(f.max_time / 3_600_000_000_000, f.min_time / 3_600_000_000_000, "one hour per file");

        // min/max time: the catalog's, the file's key-value metadata's and the rows' agree.
        let kv = meta.file_metadata().key_value_metadata().unwrap();
        let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone()).unwrap();
        assert_eq!(get("openwit.min_time"), f.min_time.to_string());
        assert_eq!(get("openwit.max_time"), f.max_time.to_string());
        assert_eq!(get("openwit.table"), f.table_name);
        let key = if f.table_name == "metrics" { "service_name,metric_name,time" } else { "service_name,time" };
        assert_eq!(get("openwit.sorted_by"), format!("{key} (per row group)"));
        let times: Vec<i64> = rows
            .iter()
            .flat_map(|b| {
                let t = b.column_by_name("time").unwrap();
                let t = arrow::array::AsArray::as_primitive::<arrow::datatypes::TimestampNanosecondType>(t);
                t.values().to_vec()
            })
            .collect();
        if f.table_name != "logs" {
            assert_eq!(*times.iter().min().unwrap(), f.min_time);
            assert_eq!(*times.iter().max().unwrap(), f.max_time);
        }

        // Encoding, statistics, page index, bloom filters, sort order.
        let schema = meta.file_metadata().schema_descr();
        let leaf = |name: &str| schema.columns().iter().position(|c| c.path().string() == name);
        for rg in meta.row_groups() {
            let svc = leaf("service_name").unwrap();
            let time = leaf("time").unwrap();
            let sorting = rg.sorting_columns().expect("sorting columns recorded");
            // Metric points also by metric name, so that a series' points sit together.
            let key =
                if f.table_name == "metrics" { vec![svc, leaf("metric_name").unwrap(), time] } else { vec![svc, time] };
            assert_eq!(sorting.iter().map(|s| s.column_idx as usize).collect::<Vec<_>>(), key);
            // zstd, but for small columns and the times of spans and logs (it saved nothing on them).
            let mut plain = vec!["service_name", "status_code", "kind", "severity_number"];
            if f.table_name != "metrics" {
                plain.extend(["time", "end_time", "duration_ns", "observed_time"]);
            }
            for col in rg.columns() {
                let path = col.column_path().string();
                if plain.contains(&path.as_str()) {
                    assert_eq!(col.compression(), parquet::basic::Compression::UNCOMPRESSED, "{path}");
                } else {
                    assert!(matches!(col.compression(), parquet::basic::Compression::ZSTD(_)), "{path}");
                }
            }
            assert!(rg.column(time).statistics().is_some());
            assert!(rg.column(svc).statistics().is_some());
            // No min/max where nothing prunes on them: map keys and values, random ids, schema URLs.
            for (i, col) in rg.columns().iter().enumerate() {
                let path = col.column_path().string();
                if path.starts_with("attributes.") || path == "span_id" || path == "resource_schema_url" {
                    assert!(col.statistics().is_none(), "statistics on {path}");
                    let index = meta.column_index().expect("page index read");
                    assert!(
                        index.iter().all(|rg| matches!(
                            rg[i],
                            parquet::file::page_index::column_index::ColumnIndexMetaData::NONE
                        )),
                        "page statistics on {path}"
                    );
                }
            }
            assert!(rg.column(svc).bloom_filter_offset().is_some(), "bloom filter on service_name");
            if let Some(t) = leaf("trace_id") {
                assert!(rg.column(t).bloom_filter_offset().is_some(), "bloom filter on trace_id");
            }
            assert!(rg.column(time).column_index_offset().is_some(), "page index");
        }
        // Rows sorted by service_name, (metrics: metric_name,) then time, within the row group.
        let sorted_ok = rows.iter().all(|b| {
            let text = |name: &str| {
                b.column_by_name(name).map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap())
            };
            let svc = text("service_name").unwrap();
            let svc = arrow::array::AsArray::as_string::<i32>(&svc);
            let metric = if f.table_name == "metrics" { text("metric_name") } else { None };
            let metric = metric.as_ref().map(arrow::array::AsArray::as_string::<i32>);
            let t = arrow::array::AsArray::as_primitive::<arrow::datatypes::TimestampNanosecondType>(
                b.column_by_name("time").unwrap(),
            );
            let key = |i: usize| (svc.is_valid(i).then(|| svc.value(i)), metric.map(|m| m.value(i)), t.value(i));
            (1..b.num_rows()).all(|i| key(i - 1) <= key(i))
        });
        assert!(sorted_ok, "{} is not sorted by its key", f.path);

        let held = c.file_batches(&f.file_id).await.unwrap();
        batch_items += held.iter().map(|h| h.item_count).sum::<i64>();
        assert_eq!(held.iter().map(|h| h.item_count).sum::<i64>(), f.row_count, "file_batches of {}", f.path);
        by_signal.entry(f.signal.as_str()).or_default().extend(rows);
    }
    assert_eq!(batch_items, sent.rows().iter().sum::<i64>());
    for signal in [Signal::Traces, Signal::Logs, Signal::Metrics] {
        let got = items_in(signal, by_signal.get(signal.as_str()).map(Vec::as_slice).unwrap_or(&[]));
        assert_eq!(got.len(), sent.items(signal).len(), "{signal} items");
        assert!(got == sent.items(signal), "{signal}: the stored items differ from those sent");
    }
}

fn node_id(d: &Daemon) -> String {
    std::fs::read_to_string(d.path("data/node_id")).unwrap().trim().to_string()
}

/// A daemon storing to `{dir}/bucket` on local disk (files rotated after 300 ms) what `Sent::new(seed)`
/// sends, once every row is in a stable file: the daemon, what was sent, its catalog and the files.
pub async fn stored_locally(seed: u64) -> (Daemon, Sent, Catalog, Vec<FileRow>) {
    let d = Daemon::start(&config(
        "  parquet:
    endpoint: {dir}/bucket
    rotation:
      max_age: 300ms
",
    ))
    .await;
    let sent = Sent::new(seed);
    sent.send(&d).await;
    let c = catalog(&d).await;
    let files = stable_files(&c, sent.rows(), Duration::from_secs(30)).await;
    (d, sent, c, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_sent_is_what_the_local_parquet_files_hold() {
    let (d, sent, c, files) = stored_locally(11).await;
    let root = d.path("bucket");
    assert!(files.iter().all(|f| f.root == format!("file://{}", root.canonicalize().unwrap().display())));
    assert!(files.iter().filter(|f| f.table_name == "spans").count() >= 3, "three hours, three span files at least");
    check_files(&c, &sent, &files, &node_id(&d), |f| {
        let p = root.join(&f.path);
        async move { bytes::Bytes::from(std::fs::read(p).unwrap()) }
    })
    .await;
    // Every batch is marked stored once its files are; nothing is left in staging.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let q = "SELECT COUNT(*) FROM batch_tracker WHERE storage_pip = FALSE OR storage_pip IS NULL";
        let (open, total) = (c.count(q).await.unwrap(), c.count("SELECT COUNT(*) FROM batch_tracker").await.unwrap());
        if open == 0 && total > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{open} of {total} batches not marked stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let staged: Vec<_> = std::fs::read_dir(d.path("data/parquet/parquet")).unwrap().flatten().collect();
    assert!(staged.is_empty(), "{staged:?}");
    // The exporter's own metrics say the same.
    assert_eq!(d.metric_sum("openwit_parquet_rows_total").await, sent.rows().iter().sum::<i64>() as f64);
    assert_eq!(d.metric_sum("openwit_parquet_files_total").await, files.len() as f64);
    assert_eq!(d.metric_sum("openwit_parquet_staging_bytes").await, 0.0);
}

async fn fetch_object(store: std::sync::Arc<dyn object_store::ObjectStore>, path: String) -> bytes::Bytes {
    use object_store::ObjectStoreExt;
    store.get(&object_store::path::Path::from(path)).await.unwrap().bytes().await.unwrap()
}

/// Paths under `prefix` in the store.
async fn listing(store: &std::sync::Arc<dyn object_store::ObjectStore>, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let mut out: Vec<String> = store
        .list(Some(&object_store::path::Path::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_through_a_real_s3_server_with_credentials_from_the_environment() {
    let s3 = crate::stores::moto("telemetry").await;
    let d = Daemon::start_env(
        &config(
            "  parquet:
    endpoint: s3://telemetry/edge/fleet-a
    rotation:
      max_age: 300ms
",
        ),
        &crate::stores::moto_env(&s3),
    )
    .await;
    let sent = Sent::new(12);
    sent.send(&d).await;
    let c = catalog(&d).await;
    let files = stable_files(&c, sent.rows(), Duration::from_secs(60)).await;
    assert!(files.iter().all(|f| f.root == "s3://telemetry/edge/fleet-a"), "{:?}", files[0].root);
    let store = crate::stores::moto_store(&s3, "telemetry");
    // Each logs file gets its full-text index beside it, once stored.
    let indexes = indexes_beside(&c, &files, &d, |p| fetch_object(store.clone(), format!("edge/fleet-a/{p}"))).await;
    let indexes: Vec<String> = indexes.into_iter().map(|p| format!("edge/fleet-a/{p}")).collect();
    assert!(!indexes.is_empty(), "logs were sent");
    let mut expected: Vec<String> = files.iter().map(|f| format!("edge/fleet-a/{}", f.path)).collect();
    expected.extend(indexes);
    expected.sort();
    assert_eq!(
        listing(&store, "edge/fleet-a").await,
        expected,
        "the bucket holds exactly the catalog's files and indexes"
    );
    check_files(&c, &sent, &files, &node_id(&d), |f| fetch_object(store.clone(), format!("edge/fleet-a/{}", f.path)))
        .await;
    let staged: Vec<_> = std::fs::read_dir(d.path("data/parquet/parquet")).unwrap().flatten().collect();
    assert!(staged.is_empty(), "local copies are removed once verified: {staged:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_through_azurite_with_credentials_from_the_config() {
    let data = tempfile::tempdir().unwrap();
    let az = crate::stores::azurite_in(data.path(), crate::harness::free_port()).await;
    crate::stores::azurite_container(&az, "telemetry");
    let exporter = format!(
        "  parquet:
    endpoint: az://telemetry/otel
{}    rotation:
      max_age: 300ms
",
        crate::stores::azurite_options(&az)
    );
    let d = Daemon::start(&config(&exporter)).await;
    let sent = Sent::new(13);
    sent.send(&d).await;
    let c = catalog(&d).await;
    let files = stable_files(&c, sent.rows(), Duration::from_secs(60)).await;
    assert!(files.iter().all(|f| f.root == "az://telemetry/otel"));
    let store = crate::stores::azurite_store(&az, "telemetry");
    let indexes = indexes_beside(&c, &files, &d, |p| fetch_object(store.clone(), format!("otel/{p}"))).await;
    let mut expected: Vec<String> = files.iter().map(|f| format!("otel/{}", f.path)).collect();
    expected.extend(indexes.iter().map(|p| format!("otel/{p}")));
    expected.sort();
    assert_eq!(listing(&store, "otel").await, expected, "the container holds the catalog's files and indexes");
    check_files(&c, &sent, &files, &node_id(&d), |f| fetch_object(store.clone(), format!("otel/{}", f.path))).await;
}

/// Every span in the store under `prefix` (catalogued or not), by span id.
async fn spans_in_store(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: &str,
) -> std::collections::HashMap<u64, usize> {
    let mut out = std::collections::HashMap::new();
    for path in listing(store, prefix).await.into_iter().filter(|p| p.ends_with(".parquet")) {
        for b in read_parquet(fetch_object(store.clone(), path).await).0 {
            let ids = arrow::array::AsArray::as_binary::<i32>(b.column_by_name("span_id").unwrap());
            for id in ids.iter().flatten() {
                *out.entry(u64::from_be_bytes(id[..8].try_into().unwrap())).or_default() += 1;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_mid_load_ingest_goes_on_then_pushes_back_and_nothing_is_lost_or_doubled() {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let data = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let mut az = crate::stores::azurite_in(data.path(), port).await;
    crate::stores::azurite_container(&az, "telemetry");
    let exporter = format!(
        "  parquet:
    endpoint: az://telemetry/otel
{}    rotation:
      max_age: 200ms
    staging:
      max_megabytes: 0.3
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
",
        crate::stores::azurite_options(&az)
    );
    let d = Daemon::start(&config(&exporter)).await;
    let (next, acked, stop) =
        (Arc::new(AtomicU64::new(1)), Arc::new(Mutex::new(HashSet::new())), Arc::new(AtomicBool::new(false)));
    let senders: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn(crate::crash::sender(
                d.http_url("/v1/traces"),
                d.grpc_url(),
                i % 2 == 0,
                100,
                next.clone(),
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let count = |a: &Arc<Mutex<HashSet<u64>>>| a.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(800)).await;

    az.stop();
    let before = count(&acked);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(count(&acked) > before, "ingest goes on while the store is down (files wait on local disk)");
    let staged = std::fs::read_dir(d.path("data/parquet/parquet")).unwrap().count();
    assert!(staged > 0, "finalized files wait in staging during the outage");
    // The staging budget fills: the exporter stops taking batches, the receivers refuse.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while d.metric_sum("otelcol_receiver_refused_spans").await == 0.0 {
        assert!(std::time::Instant::now() < deadline, "no backpressure once the staging budget was reached");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Pushing back is not falling over: the daemon is up and says so.
    let health = crate::harness::client().get(format!("http://127.0.0.1:{}/", d.health)).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let _az = crate::stores::azurite_in(data.path(), port).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.await;
    }
    let acked: HashSet<u64> = acked.lock().unwrap().clone();
    let store = crate::stores::azurite_store(&_az, "telemetry");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let s = spans_in_store(&store, "otel").await;
        if acked.iter().all(|id| s.contains_key(id)) || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let lost = acked.iter().filter(|id| !stored.contains_key(id)).count();
    assert_eq!(lost, 0, "acknowledged spans missing from the store; log:\n{}", d.logs());
    let twice = stored.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "spans stored more than once");
    assert!(d.logs().contains("retrying"), "uploads failed and were retried during the outage");
    assert!(d.metric_sum("openwit_parquet_failures_total{").await > 0.0, "failed attempts are counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_go_up_in_parts_and_are_verified() {
    use object_store::ObjectStoreExt;
    use openwit_storage::{Destination, Endpoint};
    let s3 = crate::stores::moto("big").await;
    let opts = crate::stores::moto_options(&s3);
    let dest = Destination::open(&Endpoint::parse("s3://big/pre", &opts).unwrap(), &opts).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("f.parquet");
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let body: Vec<u8> = (0..20 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&local, &body).unwrap();
    let tail: [u8; 8] = body[body.len() - 8..].try_into().unwrap();
    dest.upload(&local, "t/f.parquet").await.unwrap();
    assert!(dest.verify("t/f.parquet", body.len() as u64, Some(tail)).await.unwrap());
    assert!(!dest.verify("t/f.parquet", body.len() as u64 + 1, Some(tail)).await.unwrap());
    assert!(local.exists(), "an object store gets a copy; the exporter removes the local file after verifying");
    let store = crate::stores::moto_store(&s3, "big");
    let meta = store.head(&object_store::path::Path::from("pre/t/f.parquet")).await.unwrap();
    assert!(
        meta.e_tag.as_deref().is_some_and(|e| e.trim_matches('"').ends_with("-3")),
        "three 8 MiB parts: {:?}",
        meta.e_tag
    );
    assert!(fetch_object(store, "pre/t/f.parquet".into()).await == body, "the object is the file, byte for byte");
}

/// The bodies of every logs row in the Parquet files under `root` (catalogued or not).
pub fn logs_bodies(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for p in crate::harness::files_under(root, "parquet") {
        if p.to_string_lossy().contains("/logs/") {
            for b in read_parquet(bytes::Bytes::from(std::fs::read(&p).unwrap())).0 {
                let body = arrow::array::AsArray::as_string::<i32>(b.column_by_name("body").unwrap());
                out.extend(body.iter().flatten().map(str::to_string));
            }
        }
    }
    out
}

/// Waits for the index of every logs and spans file among `files`, checks each lies beside its file and
/// (logs) answers as a scan of it does (`fetch` reads an object by its path under the root); returns
/// their paths.
async fn indexes_beside<F, Fut>(
    c: &openwit_catalog::Catalog,
    files: &[openwit_catalog::FileRow],
    d: &Daemon,
    fetch: F,
) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = bytes::Bytes>,
{
    let mut out = Vec::new();
    for f in files.iter().filter(|f| f.table_name == "logs" || f.table_name == "spans") {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let index = loop {
            if let Some(i) = c.indexes_of(&f.file_id).await.unwrap().pop() {
                break i;
            }
            assert!(std::time::Instant::now() < deadline, "no index for {}: {}", f.path, d.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(index.path, format!("{}.tantivy", f.path), "beside its file");
        if f.table_name == "logs" {
            index_finds_what_a_scan_finds(fetch(index.path.clone()).await.to_vec(), fetch(f.path.clone()).await);
        }
        out.push(index.path);
    }
    out
}

/// For words taken from the file's bodies, the index answers exactly the rows whose body holds the word
/// (a reference tokenizer: alphanumeric runs, lower-cased).
fn index_finds_what_a_scan_finds(bundle: Vec<u8>, parquet: bytes::Bytes) {
    use arrow::array::AsArray;
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase).collect()
    };
    let rows = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(parquet)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let bodies: Vec<Vec<String>> = rows
        .iter()
        .flat_map(|b| {
            let body = b.column_by_name("body").unwrap().as_string::<i32>().clone();
            (0..body.len()).map(move |i| words(body.value(i))).collect::<Vec<_>>()
        })
        .collect();
    let (index, _) = openwit_index::bundle::open(bundle).unwrap();
    let mut probes: Vec<&String> = bodies.iter().step_by(37).filter_map(|w| w.first()).collect();
    probes.dedup();
    assert!(!probes.is_empty());
    for word in probes {
        let expected: Vec<u64> =
            bodies.iter().enumerate().filter(|(_, w)| w.contains(word)).map(|(i, _)| i as u64).collect();
        let got = openwit_index::search::rows(&index, &format!("\"{word}\""), Some(&["body"])).unwrap();
        assert_eq!(got, expected, "rows holding {word:?}");
    }
}
