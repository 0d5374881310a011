//! Fresh data: what was acknowledged is queryable at once, from memory, active files, staged files and
//! stable files, each row counted once.

use crate::harness::*;
use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use futures::StreamExt;
use opentelemetry::logs::Severity;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as AnyKind};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use openwit_core::fresh::FreshData;
use openwit_core::{AckToken, Batch, BatchId, BuildEnv, ComponentId, Lineage, Payload, TenantId, Verdict};
use openwit_extensions::query::engine::{Engine, Limits};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Polls `sql` until it answers `expected`; returns how long after `since` that was.
async fn visible_after(port: u16, sql: &str, expected: &Value, since: Instant, limit: Duration) -> Duration {
    loop {
        let got = sql_rows(port, sql).await;
        if got == *expected {
            return since.elapsed();
        }
        assert!(since.elapsed() < limit, "{sql}: {got}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The README's curl line, byte for byte (checked against README.md below).
const README_LOG: &str = r#"{
  "resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "demo"}}]},
  "scopeLogs": [{"logRecords": [{"severityText": "INFO", "body": {"stringValue": "hello, OpenWit"}}]}]}]}"#;
const README_QUERY: &str = "SELECT service_name, severity_text, body FROM logs ORDER BY time DESC LIMIT 10";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_default_an_acknowledged_record_is_queryable_within_a_second() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(readme.contains(README_LOG), "the README's curl example changed: update README_LOG");
    assert!(readme.contains(README_QUERY), "the README's query of fresh data changed: update README_QUERY");
    let (d, api) = Daemon::start_embedded_default().await;

    // The README's curl example: acknowledged, then found by the README's query within a second.
    let r = client()
        .post(d.http_url("/v1/logs"))
        .header("content-type", "application/json")
        .body(README_LOG)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let acked = Instant::now();
    let expected = json!([{"service_name": "demo", "severity_text": "INFO", "body": "hello, OpenWit"}]);
    let took = visible_after(api, README_QUERY, &expected, acked, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(1), "visible {took:?} after the acknowledgement");

    // Where it came from: rows in memory of an active file (10 minutes before its rotation).
    let plan = sql_rows(api, &format!("EXPLAIN ANALYZE {README_QUERY}")).await.to_string();
    assert_eq!(plan_counter(&plan, "memory_rows_scanned"), 1, "{plan}");
    assert_eq!(plan_counter(&plan, "active_files_scanned"), 1, "{plan}");
    assert_eq!(plan_counter(&plan, "stable_files_scanned"), 0, "{plan}");
    assert_eq!(
        sql_rows(api, "SELECT table_name, state, row_count FROM files").await,
        json!([{"table_name": "logs", "state": "active", "row_count": 1}])
    );
    // Text search over fresh rows: by scan (no index yet), same meaning.
    assert_eq!(
        sql_rows(api, "SELECT body FROM logs WHERE text_match(body, 'openwit') AND body LIKE '%hello%'").await,
        json!([{"body": "hello, OpenWit"}])
    );

    // A record through the OTel SDK: acknowledged when its flush returns.
    let endpoint = format!("http://127.0.0.1:{}", d.grpc);
    tokio::task::spawn_blocking(move || {
        crate::search::send_with_sdk(endpoint, &[("order 7 paid", Severity::Info, "/pay")])
    })
    .await
    .unwrap();
    let acked = Instant::now();
    let sql = "SELECT body FROM logs WHERE service_name = 'shop'";
    let took = visible_after(api, sql, &json!([{"body": "order 7 paid"}]), acked, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(1), "visible {took:?} after the SDK's flush returned");
    assert_eq!(sql_rows(api, "SELECT count(*) AS n FROM logs").await, json!([{"n": 2}]));
}

/// A parquet exporter whose store is unreachable: files stay staged (uploads retried), their rows are
/// still answered — by the daemon, and by `openwit query` offline once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_files_are_read_while_the_store_is_down_and_offline_after_a_crash() {
    let api = free_port();
    let config = format!(
        "
processors:
  batch:
    timeout: 50ms
exporters:
  parquet:
    endpoint: s3://nowhere/fleet
    storage_options:
      aws_access_key_id: x
      aws_secret_access_key: x
      aws_region: us-east-1
      aws_endpoint_url: http://127.0.0.1:9
      aws_allow_http: 'true'
    rotation:
      max_age: 200ms
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 200ms
extensions:
  query:
    endpoint: 127.0.0.1:{api}
service:
  extensions: [health_check, query]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
"
    );
    let mut d = Daemon::start_on_base(&[&config]).await;
    // One request, so one file: the uploader takes files one at a time, so with the store down a second
    // file (five requests spread over more than the 200 ms rotation on a loaded machine) would stay
    // staged and unrecorded behind the first.
    let mut request = log_request("line 0");
    for i in 1..5 {
        request.resource_logs.extend(log_request(&format!("line {i}")).resource_logs);
    }
    assert_eq!(d.post_protobuf("/v1/logs", prost::Message::encode_to_vec(&request)).await, 200);
    // Rotated after 200 ms: every row in staged files (recorded `uploading`), none stable.
    let sql = "SELECT state, sum(row_count) AS n FROM files GROUP BY state";
    let deadline = Instant::now() + Duration::from_secs(20);
    while sql_rows(api, sql).await != json!([{"state": "uploading", "n": 5}]) {
        assert!(Instant::now() < deadline, "{}", sql_rows(api, sql).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sql_rows(api, "SELECT count(*) AS n FROM logs").await, json!([{"n": 5}]));
    let plan = sql_rows(api, "EXPLAIN ANALYZE SELECT count(*) FROM logs").await.to_string();
    assert!(plan_counter(&plan, "staged_files_scanned") >= 1, "{plan}");
    assert_eq!(plan_counter(&plan, "stable_files_scanned"), 0, "{plan}");
    assert_eq!(plan_counter(&plan, "memory_rows_scanned"), 0, "{plan}");

    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(10));
    let out = std::process::Command::new(bin())
        .args(["query", "--format", "csv", "--data-dir"])
        .arg(d.path("data"))
        .arg("SELECT body FROM logs ORDER BY body")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "body\nline 0\nline 1\nline 2\nline 3\nline 4\n");
}

/// `n` log records of tenant `tenant`, each with a body unique to (`writer`, `seq`, item).
fn logs(tenant: &str, writer: usize, seq: u64, n: usize) -> Batch {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: now + i as u64,
            body: Some(AnyValue { value: Some(AnyKind::StringValue(format!("w{writer} b{seq} i{i}"))) }),
            ..Default::default()
        })
        .collect();
    let resource = Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue { value: Some(AnyKind::StringValue(format!("svc-{}", seq % 3))) }),
            ..Default::default()
        }],
        ..Default::default()
    };
    Batch::new(
        TenantId::new(tenant).unwrap(),
        Payload::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource),
                scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                ..Default::default()
            }],
        }),
    )
}

async fn counts(engine: &Engine, tenant: &str) -> (i64, i64) {
    let mut running = engine.start(tenant, "SELECT count(*) AS n, count(DISTINCT body) AS d FROM logs").await.unwrap();
    let mut out = (0, 0);
    while let Some(b) = running.stream.next().await {
        let b = b.unwrap();
        if b.num_rows() > 0 {
            let col = |i: usize| b.column(i).as_primitive::<Int64Type>().value(0);
            assert!(!b.column(0).is_null(0));
            out = (col(0), col(1));
        }
    }
    out
}

/// Many writers into one parquet exporter that rotates every 100 ms (and by size) and uploads as it
/// goes, while a reader counts rows over and over: each count lies between what was acknowledged
/// before the query and what was handed to the exporter by its end, and no row is counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_every_answer_counts_each_acknowledged_row_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = openwit_catalog::Catalog::open(&format!("sqlite://{}/catalog.db", tmp.path().display())).unwrap();
    let fresh = Arc::new(FreshData::default());
    let storage = Arc::new(openwit_storage::Storage::default());
    let env = BuildEnv {
        data_dir: tmp.path().to_path_buf(),
        telemetry: Arc::default(),
        catalog: catalog.clone(),
        node_id: "n1".into(),
        columnar_downstream: false,
        signal: None,
        storage: storage.clone(),
        index_specs: Arc::default(),
        fresh: fresh.clone(),
        connector_outputs: Arc::default(),
        auth: Arc::default(),
        memory: openwit_core::memory::MemoryBudget::new(128 << 20),
    };
    let cfg: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        "rotation: {max_age: 100ms, max_megabytes: 0.03}\nrow_group_size: 40\nindex: {enabled: false}",
    )
    .unwrap();
    let parsed = openwit_exporters::parquet::factory().parse(&cfg).unwrap();
    let exporter = parsed.build(&ComponentId::parse("parquet").unwrap(), &env).unwrap();
    let exporter = Arc::new(tokio::sync::Mutex::new(exporter));
    let limits = Limits {
        max_rows: 1000,
        timeout: Duration::from_secs(60),
        memory_bytes: 256 << 20,
        index_cache_bytes: 1 << 20,
        bloom_filter_cache_bytes: 1 << 20,
    };
    let engine = Engine::new(catalog.clone(), storage, BTreeMap::new(), limits, Arc::default(), fresh).unwrap();

    let (tx, mut completions) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while completions.recv().await.is_some() {} });
    // Per tenant: rows acknowledged (counted once `export` returned) and rows handed to the exporter
    // (counted before `export` is called). A query may see a batch's rows while its `export` is still
    // returning: rows are visible once the exporter holds them, acknowledged a moment later.
    let acked: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let handed: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (exporter, acked, handed, stop, tx) =
            (exporter.clone(), acked.clone(), handed.clone(), stop.clone(), tx.clone());
        writers.push(tokio::spawn(async move {
            let mut seq = 0u64;
            // Writer 3 writes for another tenant, whose rows acme must never see.
            let (tenant, slot) = if w == 3 { ("globex", 1) } else { ("acme", 0) };
            while !stop.load(Ordering::Acquire) {
                seq += 1;
                let n = 1 + (seq as usize * 7 + w) % 60;
                let mut b = logs(tenant, w, seq, n);
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&(w as u64).to_be_bytes());
                id[8..].copy_from_slice(&seq.to_be_bytes());
                b.lineage = Lineage::whole(AckToken::new(BatchId(id), tx.clone()), n as u32);
                handed[slot].fetch_add(n as u64, Ordering::AcqRel);
                exporter.lock().await.export(&b).await.unwrap();
                // What the runtime does once the exporter accepted the batch.
                b.settle(&Verdict::Stored);
                acked[slot].fetch_add(n as u64, Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }

    let started = Instant::now();
    let mut answers = 0;
    while started.elapsed() < Duration::from_secs(12) {
        for (tenant, slot) in [("acme", 0), ("globex", 1)] {
            let before = acked[slot].load(Ordering::Acquire) as i64;
            let (n, distinct) = counts(&engine, tenant).await;
            let after = handed[slot].load(Ordering::Acquire) as i64;
            assert!(
                before <= n && n <= after,
                "{tenant}: counted {n}, acknowledged {before} before, handed to the exporter {after} after"
            );
            assert_eq!(n, distinct, "{tenant}: a row was counted twice");
            answers += 1;
        }
    }
    stop.store(true, Ordering::Release);
    for w in writers {
        w.await.unwrap();
    }
    let total = [acked[0].load(Ordering::Acquire) as i64, acked[1].load(Ordering::Acquire) as i64];
    assert_eq!(counts(&engine, "acme").await, (total[0], total[0]));
    exporter.lock().await.shutdown().await.unwrap();
    let files = catalog.files(&Default::default()).await.unwrap();
    assert!(files.iter().all(|f| f.state == openwit_catalog::STABLE));
    assert!(files.len() >= 20, "rotations and uploads happened meanwhile: {} files", files.len());
    assert_eq!(counts(&engine, "acme").await, (total[0], total[0]));
    assert_eq!(counts(&engine, "globex").await, (total[1], total[1]));
    assert!(answers >= 10, "{answers} answers");
}
