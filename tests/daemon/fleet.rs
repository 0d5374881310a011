//! A fleet: three daemons, each with its own WAL and node id, on one PostgreSQL catalog and one S3
//! bucket (moto). Loaded at once with the OTel SDK, one killed with -9 mid-load; every daemon answers
//! the union for a tenant; the node registry sees them, then one stale; their janitors compact the
//! shared bucket at the same time without touching the same files twice.

use crate::harness::*;
use opentelemetry::logs::{AnyValue as SdkAny, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use prost::Message;
use serde_json::{Value, json};
use std::path::PathBuf;

use std::time::{Duration, Instant};

fn config(pg: &str, api: u16, compaction: bool) -> String {
    format!(
        "
processors:
  batch:
    timeout: 20ms
exporters:
  parquet:
    endpoint: s3://fleet/edge
    rotation:
      max_age: 300ms
    index:
      repair_interval: 300ms
    compaction:
      enabled: {compaction}
      interval: 300ms
      min_age: 0s
      grace_period: 2s
extensions:
  catalog:
    url: {pg}
    heartbeat_interval: 200ms
  query:
    endpoint: 127.0.0.1:{api}
  batch_monitor:
    endpoint: 127.0.0.1:{api}
service:
  extensions: [health_check, query, batch_monitor]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
"
    )
}

struct Node {
    daemon: Daemon,
    api: u16,
}

impl Node {
    fn start(dir: PathBuf, pg: &str, api: u16, compaction: bool, env: &[(String, String)]) -> Node {
        std::fs::create_dir_all(&dir).unwrap();
        let daemon = Daemon::spawn_sources_env(&dir, &[BASE, &config(pg, api, compaction)], env);
        Node { daemon, api }
    }
}

/// `n` log records for `tenant` through the SDK's batch processor over gRPC, each body unique; returns
/// once the SDK's flush returned (every record acknowledged).
fn sdk_logs(endpoint: String, tenant: &str, node: usize, records: std::ops::Range<usize>) {
    use opentelemetry_otlp::{LogExporter, WithExportConfig, WithTonicConfig};
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("x-scope-orgid", tenant.parse().unwrap());
    let exporter = LogExporter::builder().with_tonic().with_endpoint(endpoint).with_metadata(metadata).build().unwrap();
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(format!("edge-{node}")).build();
    let lp = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let logger = lp.logger("fleet");
    for i in records {
        let mut rec = logger.create_log_record();
        rec.set_body(SdkAny::from(format!("{tenant} node {node} record {i}")));
        rec.set_severity_number(Severity::Info);
        logger.emit(rec);
        if i % 50 == 49 {
            lp.force_flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    lp.force_flush().unwrap();
    lp.shutdown().unwrap();
}

async fn until(api: u16, tenant: &str, what: &str, sql: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = sql_as(api, tenant, sql).await;
        if done(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}: {got}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn n(v: &Value) -> i64 {
    v[0]["n"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_one_catalog_and_bucket() {
    let s3 = crate::stores::moto("fleet").await;
    let env = crate::stores::moto_env(&s3);
    let pg = crate::postgres::PgServer::new_database(&format!("fleet_{}", std::process::id()));
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("node{i}"))).collect();
    let apis: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes: Vec<Node> = (0..3).map(|i| Node::start(dirs[i].clone(), &pg, apis[i], false, &env)).collect();
    for node in &nodes {
        node.daemon.wait_ready().await;
    }

    // Load: every node gets 300 records of tenant `acme` and 100 of `globex` from the SDK, at once; node 1
    // is killed with -9 halfway through its own load and started again, and its load resent after.
    let mut loads = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let endpoint = format!("http://127.0.0.1:{}", node.daemon.grpc);
        loads.push(tokio::task::spawn_blocking(move || {
            sdk_logs(endpoint.clone(), "acme", i, if i == 1 { 0..150 } else { 0..300 });
            sdk_logs(endpoint, "globex", i, 0..100);
        }));
    }
    for l in loads {
        l.await.unwrap();
    }
    nodes[1].daemon.signal(libc::SIGKILL);
    nodes[1].daemon.wait_exit(Duration::from_secs(10));
    let restarted = Node::start(dirs[1].clone(), &pg, apis[1], false, &env);
    restarted.daemon.wait_ready().await;
    let endpoint = format!("http://127.0.0.1:{}", restarted.daemon.grpc);
    // The rest of node 1's load (bodies 150..300 differ from the first half).
    tokio::task::spawn_blocking(move || sdk_logs(endpoint, "acme", 1, 150..300)).await.unwrap();
    nodes[1] = restarted;

    // Every daemon answers the union for each tenant, each record once, nothing of the other tenant.
    let count = "SELECT count(*) AS n, count(DISTINCT body) AS d FROM logs";
    for node in &nodes {
        let acme = until(node.api, "acme", "acme's 900 records", count, |v| n(v) == 900).await;
        assert_eq!(acme, json!([{"n": 900, "d": 900}]), "stored once");
        let globex = until(node.api, "globex", "globex's 300 records", count, |v| n(v) == 300).await;
        assert_eq!(globex, json!([{"n": 300, "d": 300}]));
        let leak = sql_as(node.api, "acme", "SELECT count(*) AS n FROM logs WHERE body LIKE 'globex%'").await;
        assert_eq!(n(&leak), 0);
        let by_node =
            sql_as(node.api, "acme", "SELECT service_name, count(*) AS n FROM logs GROUP BY 1 ORDER BY 1").await;
        assert_eq!(
            by_node,
            json!([{"service_name": "edge-0", "n": 300}, {"service_name": "edge-1", "n": 300}, {"service_name": "edge-2", "n": 300}])
        );
    }

    // The registry: three live nodes, with their API addresses; one stops and goes stale.
    let registry = |api: u16| async move {
        client()
            .get(format!("http://127.0.0.1:{api}/api/v1/nodes"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let live = registry(apis[0]).await;
    let listed = live["nodes"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{live}");
    assert!(listed.iter().all(|x| x["state"] == "live"), "{live}");
    let mut addresses: Vec<String> = listed.iter().map(|x| x["address"].as_str().unwrap().to_string()).collect();
    addresses.sort();
    let mut expected: Vec<String> = apis.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    expected.sort();
    assert_eq!(addresses, expected);
    // One node's batches, from any node's batch monitor.
    let node2 = std::fs::read_to_string(dirs[2].join("data/node_id")).unwrap();
    let b = client()
        .get(format!("http://127.0.0.1:{}/api/batch-monitor/batches?node={node2}&limit=1000", apis[0]))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let rows = b["batches"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.iter().all(|r| r["node_id"] == node2.as_str()), "{b}");
    nodes[2].daemon.signal(libc::SIGTERM);
    nodes[2].daemon.wait_exit(Duration::from_secs(30));
    let sql = "SELECT state, count(*) AS n FROM nodes GROUP BY state ORDER BY state";
    let states = until(apis[0], "acme", "one node stale", sql, |v| v.as_array().is_some_and(|a| a.len() == 2)).await;
    assert_eq!(states, json!([{"state": "live", "n": 2}, {"state": "stale", "n": 1}]));
    // Its stored data is still answered by the others.
    assert_eq!(n(&sql_as(apis[0], "acme", count).await), 900);

    // Compaction across the fleet: an hour long closed gets small files from all three nodes; then all
    // three janitors start at once on the same bucket.
    nodes[2] = Node::start(dirs[2].clone(), &pg, apis[2], false, &env);
    nodes[2].daemon.wait_ready().await;
    for (i, node) in nodes.iter().enumerate() {
        for r in 0..4 {
            let (t, l, _) = crate::janitor::requests(crate::janitor::T0, (i * 10 + r) as u64, 20);
            for (path, body) in [("/v1/traces", t.encode_to_vec()), ("/v1/logs", l.encode_to_vec())] {
                let code = client()
                    .post(node.daemon.http_url(path))
                    .header("content-type", "application/x-protobuf")
                    .header("x-scope-orgid", "acme")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(code, 200);
            }
            tokio::time::sleep(Duration::from_millis(350)).await;
        }
    }
    // (The SDK's records carry no time of their own, so their `time` is 0.)
    let old = format!(
        "time >= to_timestamp_nanos({}) AND time < to_timestamp_nanos({})",
        crate::janitor::T0,
        crate::janitor::T0 + 3_600_000_000_000
    );
    let rows =
        format!("SELECT (SELECT count(*) FROM logs WHERE {old}) + (SELECT count(*) FROM spans WHERE {old}) AS n");
    until(apis[0], "acme", "the old hour stored", &rows, |v| n(v) == 2 * 3 * 4 * 20).await;
    let files = "SELECT count(*) AS n FROM files WHERE state = 'stable' AND path LIKE '%date=2026-03-01/hour=10/%'";
    let before_files = n(&until(apis[0], "acme", "stable", files, |v| n(v) >= 12).await);
    let (logs_sql, spans_sql) = (
        format!("SELECT * FROM logs WHERE {old} ORDER BY time, body"),
        format!("SELECT * FROM spans WHERE {old} ORDER BY time, span_id"),
    );
    let snapshot = |api: u16| {
        let (l, s) = (logs_sql.clone(), spans_sql.clone());
        async move { json!({ "logs": sql_as(api, "acme", &l).await, "spans": sql_as(api, "acme", &s).await }) }
    };
    let before = snapshot(apis[0]).await;
    for node in &mut nodes {
        node.daemon.signal(libc::SIGTERM);
        node.daemon.wait_exit(Duration::from_secs(30));
    }
    let nodes: Vec<Node> = (0..3).map(|i| Node::start(dirs[i].clone(), &pg, apis[i], true, &env)).collect();
    for node in &nodes {
        node.daemon.wait_ready().await;
    }
    let done = until(apis[1], "acme", "compacted", files, |v| n(v) == 2).await;
    assert_eq!(n(&done), 2, "{before_files} files of the hour became one per table");
    until(apis[1], "acme", "nothing retired left", "SELECT count(*) AS n FROM files WHERE state != 'stable'", |v| {
        n(v) == 0
    })
    .await;
    for node in &nodes {
        assert_eq!(snapshot(node.api).await, before, "the same rows, once");
    }
    // The bucket holds exactly the stable files and their indexes: nothing compacted twice, no orphan.
    let opts = crate::stores::moto_options(&s3);
    let dest =
        openwit_storage::Destination::open(&openwit_storage::Endpoint::parse("s3://fleet/edge", &opts).unwrap(), &opts)
            .unwrap();
    let objects = dest.list("").await.unwrap();
    let stable = sql_as(apis[0], "acme", "SELECT path FROM files").await;
    let mut expected: Vec<String> =
        stable.as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap().to_string()).collect();
    let globex = sql_as(apis[0], "globex", "SELECT path FROM files").await;
    expected.extend(globex.as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap().to_string()));
    let parquet: Vec<&String> = objects.iter().filter(|o| o.ends_with(".parquet")).collect();
    assert_eq!(parquet.len(), expected.len(), "{objects:?}");
    assert!(expected.iter().all(|p| objects.contains(p)), "{objects:?}");
}

/// A bucket is read through the query's local cache: the second run of a query takes footers, page
/// indexes and bloom filters from local disk, and fetches fewer bytes from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_footers_are_read_once_then_from_the_local_cache() {
    let s3 = crate::stores::moto("cached").await;
    let env = crate::stores::moto_env(&s3);
    let api = free_port();
    let cfg = format!(
        "
processors:
  batch:
    timeout: 20ms
exporters:
  parquet:
    endpoint: s3://cached/x
    rotation:
      max_age: 200ms
extensions:
  query:
    endpoint: 127.0.0.1:{api}
    cache:
      max_megabytes: 64
service:
  extensions: [health_check, query]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
"
    );
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::spawn_sources_env(tmp.path(), &[BASE, &cfg], &env);
    d.wait_ready().await;
    for i in 0..4 {
        let (_, logs, _) = crate::janitor::requests(crate::janitor::T0, i, 50);
        assert_eq!(d.post_protobuf("/v1/logs", logs.encode_to_vec()).await, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    until(api, "default", "stored", "SELECT count(*) AS n FROM files WHERE state = 'stable'", |v| n(v) >= 3).await;
    let sql = "SELECT count(*) AS n FROM logs WHERE severity_text = 'ERROR' AND service_name = 'svc-1'";
    let metric = |name: &'static str| {
        let d = &d;
        async move { d.metric_sum(name).await }
    };
    let first = sql_as(api, "default", sql).await;
    let (hits1, misses1, fetched1) = (
        metric("openwit_query_cache_hits_total").await,
        metric("openwit_query_cache_misses_total").await,
        metric("openwit_query_store_bytes_fetched_total").await,
    );
    assert!(misses1 > 0.0 && fetched1 > 0.0, "the first run fetches: {misses1} misses, {fetched1} bytes");
    let second = sql_as(api, "default", sql).await;
    assert_eq!(first, second);
    let (hits2, misses2, fetched2) = (
        metric("openwit_query_cache_hits_total").await,
        metric("openwit_query_cache_misses_total").await,
        metric("openwit_query_store_bytes_fetched_total").await,
    );
    assert!(hits2 > hits1, "the second run reads the cache: {hits1} → {hits2}");
    assert!(
        fetched2 - fetched1 < fetched1,
        "fewer bytes from the store the second time: {fetched1} then {}",
        fetched2 - fetched1
    );
    assert_eq!(misses2, misses1, "every cacheable range was cached");
    let on_disk: u64 = std::fs::read_dir(tmp.path().join("data/cache/query"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(on_disk > 0 && on_disk <= 64 << 20, "{on_disk} bytes cached");
    assert!(metric("openwit_query_cache_bytes").await > 0.0);

    // Full-text indexes too: read whole once, then (after a restart empties the in-memory index cache)
    // from local disk; the footers cached before the restart are still there.
    let search = "SELECT count(*) AS n FROM logs WHERE text_match(body, 'took')";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let plan = sql_as(api, "default", &format!("EXPLAIN ANALYZE {search}")).await.to_string();
        if plan_counter(&plan, "index_files_without_usable_index") == 0
            && plan_counter(&plan, "index_files_answered") > 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "indexes built: {plan}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let found = sql_as(api, "default", search).await;
    let mut d = d;
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(30));
    let d = Daemon::spawn_sources_env(tmp.path(), &[BASE, &cfg], &env);
    d.wait_ready().await;
    assert_eq!(sql_as(api, "default", search).await, found);
    assert_eq!(sql_as(api, "default", sql).await, first);
    assert!(d.metric_sum("openwit_query_cache_hits_total").await > 0.0);
    assert_eq!(d.metric_sum("openwit_query_cache_misses_total").await, 0.0, "footers from the disk cache");
    assert_eq!(d.metric_sum("openwit_query_store_bytes_fetched_total").await, 0.0, "indexes from the disk cache too");
}

/// PostgreSQL goes away under a loaded daemon: every request is still acknowledged (the WAL and staging
/// hold the data), queries answer 503, and once the catalog is back every record is stored and tracked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_outage_stops_no_ingest_and_everything_catches_up() {
    let mut pg = crate::postgres::PgServer::own();
    let api = free_port();
    let cfg = format!(
        "
processors:
  batch:
    timeout: 20ms
exporters:
  parquet:
    rotation:
      max_age: 200ms
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
extensions:
  catalog:
    url: {}
    flush_interval: 50ms
  query:
    endpoint: 127.0.0.1:{api}
service:
  extensions: [health_check, query]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
",
        pg.url_of("postgres")
    );
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::spawn_sources_env(tmp.path(), &[BASE, &cfg], &[]);
    d.wait_ready().await;
    let send = |from: u64| {
        let d = &d;
        async move {
            for i in from..from + 5 {
                let (_, logs, _) = crate::janitor::requests(crate::janitor::T0, i, 20);
                assert_eq!(d.post_protobuf("/v1/logs", logs.encode_to_vec()).await, 200, "request {i}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    send(0).await;
    let count = "SELECT count(*) AS n, count(DISTINCT body) AS d FROM logs";
    until(api, "default", "before the outage", count, |v| n(v) == 100).await;

    pg.stop();
    send(5).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = client()
        .post(format!("http://127.0.0.1:{api}/api/v1/query"))
        .json(&json!({ "sql": count }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "queries need the catalog: {}", r.text().await.unwrap());

    pg.start_again();
    let all = until(api, "default", "after the outage", count, |v| n(v) == 200).await;
    assert_eq!(all, json!([{"n": 200, "d": 200}]));
    until(api, "default", "every file stable", "SELECT count(*) AS n FROM files WHERE state != 'stable'", |v| {
        n(v) == 0
    })
    .await;
    until(api, "default", "every batch tracked", "SELECT count(*) AS n FROM batches WHERE status = 'completed'", |v| {
        n(v) == 10
    })
    .await;
}
