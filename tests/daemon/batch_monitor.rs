//! The batch tracker seen through the batch monitor API, on SQLite and on PostgreSQL.

use crate::harness::{Daemon, client, free_port};
use crate::ingest::{rich_logs, rich_traces};
use prost::Message;
use serde_json::Value;
use std::time::{Duration, Instant};

const CONFIG: &str = "
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
    batching:
      max_items: 1
exporters:
  testing/ok:
    path: {dir}/ok.bin
  testing/bad:
    path: {dir}/bad.bin
    fail_first: 1000000
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  batch_monitor:
    endpoint: 127.0.0.1:API
    stuck_after: 1m
  catalog:
    CATALOG
    flush_interval: 50ms
service:
  extensions: [health_check, batch_monitor]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [testing/ok]
    logs:
      receivers: [otlp]
      exporters: [testing/bad]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
";

pub async fn get(api: u16, path: &str) -> (u16, Value) {
    let r = client().get(format!("http://127.0.0.1:{api}/api/batch-monitor{path}")).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// Polls the batch monitor on `api` until `done` holds (20 s at most).
pub async fn until(api: u16, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, v) = get(api, path).await;
        if code == 200 && done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{path} never satisfied the test; last answer {code}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stage<'a>(row: &'a Value, name: &str) -> &'a Value {
    row["stages"].as_array().unwrap().iter().find(|s| s["stage"] == name).unwrap()
}

async fn exercise(catalog: &str, tenant: &str) {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = CONFIG.replace("API", &api.to_string()).replace("CATALOG", catalog);
    let mut d = Daemon::spawn_in(dir.path(), &cfg, &[]);
    d.wait_ready().await;
    for _ in 0..3 {
        assert_eq!(d.post_protobuf_as(tenant, "/v1/traces", rich_traces("m").encode_to_vec()).await.status(), 200);
    }
    assert_eq!(d.post_protobuf_as(tenant, "/v1/logs", rich_logs("m").encode_to_vec()).await.status(), 200);

    // Completed batches, with their stages.
    let q = format!("/batches?status=completed&tenant={tenant}");
    let done = until(api, &q, |v| v["batches"].as_array().is_some_and(|b| b.len() == 3)).await;
    let row = &done["batches"][0];
    assert_eq!(
        (row["client_id"].as_str(), row["signal"].as_str(), row["item_count"].as_i64()),
        (Some(tenant), Some("traces"), Some(2))
    );
    for s in ["wal", "ingestion", "storage"] {
        assert_eq!(stage(row, s)["done"], true, "{s} in {row}");
        assert!(stage(row, s)["completed_at"].as_i64().is_some());
    }
    assert_eq!(stage(row, "kafka")["done"], false);
    let at = |s: &str| stage(row, s)["completed_at"].as_i64().unwrap();
    assert!(at("wal") <= at("ingestion") && at("ingestion") <= at("storage"), "stages in order: {row}");
    let id = row["batch_id"].as_str().unwrap().to_string();
    let (code, one) = get(api, &format!("/batches/{id}")).await;
    assert_eq!((code, one["batch_id"].as_str()), (200, Some(id.as_str())));

    // The failing exporter's batch: retried, then failed, then an alert with its stage and error.
    let alerts =
        until(api, "/alerts", |v| v["failed"].as_array().is_some_and(|f| f.iter().any(|r| r["client_id"] == tenant)))
            .await;
    let failed = alerts["failed"].as_array().unwrap().iter().find(|r| r["client_id"] == tenant).unwrap().clone();
    assert_eq!(failed["signal"], "logs");
    assert_eq!(failed["error_stage"], "storage");
    assert!(failed["error_message"].as_str().unwrap().contains("failing on purpose"), "{failed}");
    assert_eq!(alerts["stuck_after_minutes"], 1);

    let status = until(api, "/status", |v| v["batches_by_status"]["failed"].as_i64().unwrap_or(0) >= 1).await;
    assert!(status["batches_by_status"]["completed"].as_i64().unwrap() >= 3, "{status}");
    assert!(status["batches_by_stage"]["wal"].as_i64().unwrap() >= 4, "{status}");
    let t =
        status["tenants"].as_array().unwrap().iter().find(|t| t["tenant"] == tenant && t["window"] == "5m").unwrap();
    assert_eq!((t["batches"].as_i64(), t["items"].as_i64()), (Some(4), Some(8)));

    // Bad requests are clear errors.
    let (code, e) = get(api, "/batches?status=stuck").await;
    assert_eq!(code, 400);
    assert!(e["error"].as_str().unwrap().contains("pending, failed or completed"), "{e}");
    assert_eq!(get(api, "/batches?limit=0").await.0, 400);
    assert_eq!(get(api, "/batches?colour=red").await.0, 400);
    assert_eq!(get(api, "/batches/00000000-0000-0000-0000-000000000000").await.0, 404);

    // The failed batch stayed in the WAL: the next start replays it (and it fails again).
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(20)).success(), "{}", d.logs());
    let d2 = Daemon::spawn_in(dir.path(), &cfg, &[]);
    d2.wait_ready().await;
    let fid = failed["batch_id"].as_str().unwrap().to_string();
    until(api, &format!("/batches/{fid}"), |v| v["retry_count"].as_i64().unwrap_or(0) >= 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_monitor_on_the_default_sqlite_catalog() {
    exercise("url: null", "acme-sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_monitor_on_postgresql() {
    let url = crate::postgres::PgServer::url("postgres");
    exercise(&format!("url: {url}"), "acme-pg").await;
}

/// An operator retries a failed batch without a restart: the exporter has recovered, so the batch is
/// stored and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_retry_of_a_failed_batch() {
    let api = free_port();
    // 1 attempt + 2 retries fail (export_retries: 2); the exporter works from the 4th call on.
    let cfg = CONFIG
        .replace("API", &api.to_string())
        .replace("CATALOG", "url: null")
        .replace("fail_first: 1000000", "fail_first: 3")
        .replace("  catalog:\n", "  wal:\n    export_retries: 2\n  catalog:\n");
    let d = Daemon::start(&cfg).await;
    let r = client()
        .post(d.http_url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .header("x-scope-orgid", "ops")
        .body(rich_logs("retry").encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let alerts =
        until(api, "/alerts", |v| v["failed"].as_array().is_some_and(|f| f.iter().any(|r| r["client_id"] == "ops")))
            .await;
    let id = alerts["failed"].as_array().unwrap().iter().find(|r| r["client_id"] == "ops").unwrap()["batch_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        crate::harness::read_testing::<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest>(
            &d.path("bad.bin")
        )
        .is_empty()
    );

    // Unknown or non-failed ids are refused.
    let nope = client()
        .post(format!("http://127.0.0.1:{api}/api/batch-monitor/batches/00000000-0000-0000-0000-000000000000/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(nope.status(), 404);

    let r = client().post(format!("http://127.0.0.1:{api}/api/batch-monitor/batches/{id}/retry")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["retried"], 1);
    let row = until(api, &format!("/batches/{id}"), |v| v["status"] == "completed").await;
    assert_eq!(row["retry_count"], 1);
    let stored = crate::harness::read_testing::<
        opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
    >(&d.path("bad.bin"));
    assert_eq!(stored.iter().map(|(items, _)| items.len()).sum::<usize>(), 2, "the batch's two records stored once");
    // Nothing failed any more.
    let r = client().post(format!("http://127.0.0.1:{api}/api/batch-monitor/retry-failed")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["retried"], 0);
}
