//! Full-text search through the real binary: logs sent with the OpenTelemetry SDK are found by word,
//! phrase, boolean query and attribute term from the index beside each file; an index deleted by hand
//! is rebuilt while answers stay the same; a SIGKILL while files are being indexed loses nothing and
//! leaves no orphaned index.

use crate::harness::{Daemon, free_port, plan_counter, sql_rows};
use opentelemetry::logs::{AnyValue as SdkAny, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use openwit_catalog::{Catalog, FileFilter, STABLE, TANTIVY};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `{api}`: the query port; `{repair}`: the exporter's `index.repair_interval`.
const CONFIG: &str = "
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    timeout: 50ms
exporters:
  parquet:
    rotation:
      max_age: 200ms
    index:
      repair_interval: {repair}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  query:
    endpoint: 127.0.0.1:{api}
    index_cache_megabytes: 0
service:
  extensions: [health_check, query]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
";

fn config(repair: &str) -> (String, u16) {
    let port = free_port();
    (CONFIG.replace("{api}", &port.to_string()).replace("{repair}", repair), port)
}

async fn bodies(port: u16, filter: &str) -> Vec<String> {
    let out = sql_rows(port, &format!("SELECT body FROM logs WHERE {filter} ORDER BY body")).await;
    out.as_array().unwrap().iter().map(|r| r["body"].as_str().unwrap().to_string()).collect()
}

/// Log records through the SDK's batch processor over gRPC: (body, severity, `http.route`).
pub fn send_with_sdk(endpoint: String, records: &[(&str, Severity, &str)]) {
    use opentelemetry_otlp::{LogExporter, WithExportConfig};
    let exporter = LogExporter::builder().with_tonic().with_endpoint(endpoint).build().unwrap();
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("shop").build();
    let lp = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let logger = lp.logger("search");
    for (body, severity, route) in records {
        let mut rec = logger.create_log_record();
        rec.set_body(SdkAny::from(body.to_string()));
        rec.set_severity_number(*severity);
        rec.set_severity_text(severity.name());
        rec.add_attribute("http.route", route.to_string());
        logger.emit(rec);
    }
    lp.force_flush().unwrap();
    lp.shutdown().unwrap();
}

const RECORDS: [(&str, Severity, &str); 8] = [
    ("GET /cart timed out after 30s", Severity::Warn, "/cart"),
    ("connection reset by peer", Severity::Error, "/pay"),
    ("Timeout: connection reset while reading the response", Severity::Error, "/pay"),
    ("user signed in", Severity::Info, "/login"),
    ("payment accepted", Severity::Info, "/pay"),
    ("cart emptied", Severity::Info, "/cart"),
    ("retrying the payment after a timeout", Severity::Warn, "/pay"),
    ("shutting down", Severity::Info, "/"),
];

async fn explain(port: u16, sql: &str) -> String {
    sql_rows(port, &format!("EXPLAIN ANALYZE {sql}")).await.to_string()
}

async fn catalog(d: &Daemon) -> Catalog {
    Catalog::connect(&format!("sqlite://{}", d.path("data/catalog.db").display())).await.unwrap()
}

/// What each search must return (the same with the index, without it, and while it is rebuilt).
async fn check_answers(port: u16) {
    assert_eq!(
        bodies(port, "text_match(body, 'timeout')").await,
        ["Timeout: connection reset while reading the response", "retrying the payment after a timeout"],
        "a word, in any case; `timed` is another word"
    );
    assert_eq!(
        bodies(port, "text_match(body, '\"connection reset\"')").await,
        ["Timeout: connection reset while reading the response", "connection reset by peer"]
    );
    assert_eq!(
        bodies(port, "text_match(body, '(cart OR payment) AND NOT timeout')").await,
        ["GET /cart timed out after 30s", "cart emptied", "payment accepted"]
    );
    assert_eq!(
        bodies(port, "match_all('attributes:\"http.route=/cart\"')").await,
        ["GET /cart timed out after 30s", "cart emptied"]
    );
    assert_eq!(
        bodies(port, "match_all('severity_text:ERROR AND reset')").await,
        ["Timeout: connection reset while reading the response", "connection reset by peer"]
    );
    assert_eq!(
        sql_rows(port, "SELECT count(*) AS n FROM logs WHERE match_all('service_name:shop')").await,
        json!([{"n": 8}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_logs_are_found_by_the_index_and_an_index_deleted_by_hand_is_rebuilt_meanwhile_answers_stay() {
    let (cfg, port) = config("300ms");
    let d = Daemon::start(&cfg).await;
    let endpoint = d.grpc_url();
    tokio::task::spawn_blocking(move || send_with_sdk(endpoint, &RECORDS)).await.unwrap();
    let c = catalog(&d).await;
    let index = wait_indexed(&c, 8, &d).await;
    assert_eq!(index.len(), 1, "one logs file, one index: {index:?}");
    let (file, first) = index.into_iter().next().unwrap();
    let plan = explain(port, "SELECT body FROM logs WHERE text_match(body, 'timeout')").await;
    assert_eq!(plan_counter(&plan, "index_files_rows_selected"), 1, "the index selects the rows: {plan}");
    check_answers(port).await;

    // Deleted by hand: the next query cannot read it, scans the file (same answers) and marks it; the
    // repair pass builds it again from the stored file.
    let object = d.path("data/storage").join(&first.path);
    std::fs::remove_file(&object).unwrap();
    check_answers(port).await;
    let plan = explain(port, "SELECT body FROM logs WHERE text_match(body, 'timeout')").await;
    assert_eq!(
        plan_counter(&plan, "index_files_rows_selected") + plan_counter(&plan, "index_files_without_usable_index"),
        1,
        "{plan}"
    );
    let rebuilt = wait_rebuilt(&c, &file, &first, &object, port, &d).await;
    assert_eq!(rebuilt.path, first.path, "rebuilt in the same place");
    assert_eq!(std::fs::metadata(&object).unwrap().len() as i64, rebuilt.byte_size);
    check_answers(port).await;
    let plan = explain(port, "SELECT body FROM logs WHERE text_match(body, 'timeout')").await;
    assert_eq!(plan_counter(&plan, "index_files_rows_selected"), 1, "used again: {plan}");
    let m = d.metrics_text().await;
    assert!(
        m.contains("openwit_parquet_indexes_total{exporter=\"parquet\",table=\"logs\",outcome=\"rebuilt\"} 1"),
        "{m}"
    );
    // Every batch is indexed.
    let pending = c.count("SELECT COUNT(*) FROM batch_tracker WHERE index_pip = FALSE").await.unwrap();
    assert_eq!(pending, 0);
}

/// Waits until `file`'s index is built again after `before` (answers checked meanwhile); returns it.
async fn wait_rebuilt(
    c: &Catalog,
    file: &str,
    before: &openwit_catalog::IndexRow,
    object: &std::path::Path,
    port: u16,
    d: &Daemon,
) -> openwit_catalog::IndexRow {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = c.indexes_for(&[file.to_string()], TANTIVY).await.unwrap();
        match now.get(file) {
            Some(i) if i.created_at > before.created_at && object.exists() => return i.clone(),
            _ => {}
        }
        check_answers(port).await;
        assert!(Instant::now() < deadline, "the index was not rebuilt: {}", d.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_an_older_bundle_format_is_scanned_around_and_rebuilt() {
    // What a daemon upgraded over bundles of format 2 (FST term dictionaries) meets: the bundle is
    // refused, its file scanned with the same answers, and the index built again in the current format.
    let (cfg, port) = config("300ms");
    let d = Daemon::start(&cfg).await;
    let endpoint = d.grpc_url();
    tokio::task::spawn_blocking(move || send_with_sdk(endpoint, &RECORDS)).await.unwrap();
    let c = catalog(&d).await;
    let (file, first) = wait_indexed(&c, 8, &d).await.into_iter().next().unwrap();
    let object = d.path("data/storage").join(&first.path);
    let mut bytes = std::fs::read(&object).unwrap();
    let n = bytes.len();
    bytes[n - 8..].copy_from_slice(b"OWIDX\x00\x00\x02");
    std::fs::write(&object, bytes).unwrap();

    // The first query after the change is the one that meets the refused bundle: it also marks the index
    // missing, and the repair pass (every 300 ms) may rebuild it before any later query.
    let plan = explain(port, "SELECT body FROM logs WHERE text_match(body, 'timeout')").await;
    assert_eq!(plan_counter(&plan, "index_files_without_usable_index"), 1, "not used: {plan}");
    check_answers(port).await;
    assert!(d.logs().contains("older format"), "the log says why: {}", d.logs());
    let rebuilt = wait_rebuilt(&c, &file, &first, &object, port, &d).await;
    assert_eq!(std::fs::metadata(&object).unwrap().len() as i64, rebuilt.byte_size);
    let plan = explain(port, "SELECT body FROM logs WHERE text_match(body, 'timeout')").await;
    assert_eq!(plan_counter(&plan, "index_files_rows_selected"), 1, "used again: {plan}");
    check_answers(port).await;
}

/// Waits until the stable logs files hold `rows` rows and each has a stable index; returns the index
/// of each file, by file id.
async fn wait_indexed(c: &Catalog, rows: i64, d: &Daemon) -> HashMap<String, openwit_catalog::IndexRow> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let files = c
            .files(&FileFilter { state: Some(STABLE.into()), table_name: Some("logs".into()), ..Default::default() })
            .await
            .unwrap();
        let ids: Vec<String> = files.iter().map(|f| f.file_id.clone()).collect();
        let indexes = c.indexes_for(&ids, TANTIVY).await.unwrap();
        if files.iter().map(|f| f.row_count).sum::<i64>() >= rows && indexes.len() == files.len() {
            return indexes;
        }
        assert!(Instant::now() < deadline, "{} of {} files indexed: {}", indexes.len(), files.len(), d.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_indexing_loses_nothing_and_leaves_no_orphan_index() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = config("200ms");
    let d = Daemon::spawn_in(dir.path(), &cfg, &[]);
    d.wait_ready().await;
    let c = catalog(&d).await;

    // Senders add numbered records until the kill; the kill comes when a stored file has no index yet.
    let next = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (next, acked, stop, url) = (next.clone(), acked.clone(), stop.clone(), d.grpc_url());
        tokio::spawn(async move {
            let mut client = LogsServiceClient::connect(url).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let first = next.fetch_add(200, Ordering::Relaxed);
                let bodies: Vec<String> = (first..first + 200).map(|i| format!("record {i} of the load")).collect();
                let mut req = crate::harness::log_request("");
                req.resource_logs[0].scope_logs[0].log_records = bodies
                    .iter()
                    .map(|b| crate::harness::log_request(b).resource_logs[0].scope_logs[0].log_records[0].clone())
                    .collect();
                if client.export(req).await.is_err() {
                    break;
                }
                acked.store(first + 200, Ordering::Relaxed);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut d = d;
    // The files' root is the storage directory, canonical (made here if the exporter has not yet).
    std::fs::create_dir_all(d.path("data/storage")).unwrap();
    let (node, root) = (node_id(&d), format!("file://{}", d.path("data/storage").canonicalize().unwrap().display()));
    let which = openwit_catalog::Unindexed { exporter: "parquet", node_id: &node, root: &root, tables: &["logs"] };
    loop {
        let unindexed = c.unindexed_files(TANTIVY, &which, 10).await.unwrap();
        if !unindexed.is_empty() && acked.load(Ordering::Relaxed) >= 2000 {
            break;
        }
        assert!(Instant::now() < deadline, "never caught a file before its index: {}", d.logs());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let _ = sender.await;
    let acked = acked.load(Ordering::Relaxed);

    // Restarted: the WAL replays what was not stored, the repair pass indexes the files left without one.
    let (cfg, _) = config("200ms");
    let d = Daemon::spawn_in(dir.path(), &cfg, &[]);
    d.wait_ready().await;
    let c = catalog(&d).await;
    let indexes = wait_indexed(&c, acked as i64, &d).await;
    // Nothing acknowledged is lost, nothing is stored twice.
    let mut seen = HashMap::new();
    for b in crate::parquet::logs_bodies(&d.path("data/storage")) {
        let n: u64 = b.split(' ').nth(1).unwrap().parse().unwrap();
        *seen.entry(n).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "a record stored twice");
    assert!((0..acked).all(|i| seen.contains_key(&i)), "an acknowledged record is missing");
    // Every index object belongs to a stable file's recorded index, and every such file has one.
    let recorded: Vec<PathBuf> = indexes.values().map(|i| d.path("data/storage").join(&i.path)).collect();
    let mut objects = crate::harness::files_under(&d.path("data/storage"), "tantivy");
    objects.sort();
    let mut recorded_sorted = recorded.clone();
    recorded_sorted.sort();
    assert_eq!(objects, recorded_sorted, "no orphaned index");
    let work = std::fs::read_dir(d.path("data/parquet")).unwrap().flatten().filter(|e| {
        e.file_name().to_string_lossy().ends_with(".index")
            && std::fs::read_dir(e.path()).map(|mut r| r.next().is_some()).unwrap_or(false)
    });
    assert_eq!(work.count(), 0, "no indexing leftovers once idle");
}

fn node_id(d: &Daemon) -> String {
    std::fs::read_to_string(d.path("data/node_id")).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_tokenizer_is_used_by_the_index_and_by_text_match_alike() {
    let (cfg, port) = config("1m");
    let cfg = cfg.replace(
        "    index:\n      repair_interval: 1m\n",
        "    index:\n      repair_interval: 1m\n      logs:\n        tokenizer: stemming\n        positions: false\n",
    );
    assert!(cfg.contains("tokenizer: stemming"));
    let d = Daemon::start(&cfg).await;
    let endpoint = d.grpc_url();
    tokio::task::spawn_blocking(move || send_with_sdk(endpoint, &RECORDS)).await.unwrap();
    let c = catalog(&d).await;
    wait_indexed(&c, 8, &d).await;
    // Stems: `timeouts` finds `Timeout:` and `timeout`, from the index.
    let stems = "text_match(body, 'timeouts')";
    assert_eq!(
        bodies(port, stems).await,
        ["Timeout: connection reset while reading the response", "retrying the payment after a timeout"]
    );
    let plan = explain(port, &format!("SELECT body FROM logs WHERE {stems}")).await;
    assert_eq!(plan_counter(&plan, "index_files_rows_selected"), 1, "{plan}");
    // Without positions the index cannot answer a phrase: the file is scanned, same analysis.
    let phrase = "text_match(body, '\"connections reset\"')";
    assert_eq!(
        bodies(port, phrase).await,
        ["Timeout: connection reset while reading the response", "connection reset by peer"]
    );
    let plan = explain(port, &format!("SELECT body FROM logs WHERE {phrase}")).await;
    assert_eq!(plan_counter(&plan, "index_files_without_usable_index"), 1, "{plan}");
}
