//! The `kafka` receiver against librdkafka's mock cluster (the real Kafka wire protocol, in this
//! process): every signal and encoding, tenants from topic names, dead letters, commits only after
//! the WAL, crashes, a rebalance between two daemons, and backpressure.

use crate::harness::{Daemon, client, eventually, read_testing};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A mock Kafka cluster and a producer writing to it.
struct Kafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    producer: BaseProducer,
}

impl Kafka {
    fn new() -> Kafka {
        let cluster = MockCluster::new(1).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("linger.ms", "1")
            .create()
            .unwrap();
        Kafka { cluster, producer }
    }

    fn brokers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    fn topic(&self, name: &str, partitions: i32) {
        self.cluster.create_topic(name, partitions, 1).unwrap();
    }

    fn send(&self, topic: &str, partition: i32, payload: &[u8], headers: &[(&str, &str)]) {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header { key: k, value: Some(*v) });
        }
        let mut record = BaseRecord::<(), [u8]>::to(topic).partition(partition).payload(payload).headers(h);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    // Queue full: let deliveries drain.
                    self.producer.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
        self.producer.poll(Duration::ZERO);
    }

    fn flush(&self) {
        self.producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// The group's committed offset of each partition (`-1` where nothing is committed).
    fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let c: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", self.brokers()).set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        (0..partitions)
            .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            })
            .collect()
    }

    /// Every message of a topic, from the start.
    fn read_all(&self, topic: &str, expected: usize) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", "e2e-reader")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        c.subscribe(&[topic]).unwrap();
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while out.len() < expected && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        use rdkafka::message::Headers;
                        h.iter()
                            .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.payload().unwrap_or_default().to_vec(), headers));
            }
        }
        out
    }
}

fn spans(names: &[String]) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: names
                    .iter()
                    .map(|n| Span {
                        name: n.clone(),
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_100_000_000,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn logs(body: &str) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_000,
                    body: Some(AnyValue { value: Some(any_value::Value::StringValue(body.into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn metrics_json(name: &str) -> Vec<u8> {
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1_700_000_000_000_000_000,
                            value: Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(7)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    serde_json::to_vec(&req).unwrap()
}

/// Span names stored by a `testing` exporter, with how often each was stored.
fn stored_spans(path: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (_, r) in read_testing::<ExportTraceServiceRequest>(path) {
        for s in r.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
            *out.entry(s.name.clone()).or_default() += 1;
        }
    }
    out
}

fn total(m: &BTreeMap<String, usize>) -> usize {
    m.values().sum()
}

/// Fails with the names stored twice or missing.
fn assert_exactly_once(stored: &BTreeMap<String, usize>, expected: &[String]) {
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let missing: Vec<_> = expected.iter().filter(|n| !stored.contains_key(*n)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} never stored, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(stored.len(), expected.len(), "nothing else stored");
}

const ALL_SIGNALS: &str = r#"
receivers:
  kafka:
    brokers: [BROKERS]
    group_id: e2e
    initial_offset: earliest
    traces:
      topics: ['^v6\.qtw\.traces\..*']
    metrics:
      topics: [otlp_metrics]
      encoding: otlp_json
    logs:
      topic: otlp_logs
    tenant:
      topic_pattern: '^v6\.qtw\.traces\.(?P<tenant>[^.]+)\.[0-9]+$'
    header_extraction:
      extract_headers: true
      headers: [region]
    batching:
      max_items: 40
      timeout: 20ms
    dead_letter:
      directory: {dir}/dead
  kafka/swapped:
    brokers: [BROKERS]
    group_id: e2e-swapped
    initial_offset: earliest
    traces:
      topics: [json_spans]
      encoding: otlp_json
    metrics:
      topics: [proto_metrics]
    logs:
      topics: [json_logs]
      encoding: otlp_json
    header_extraction:
      extract_headers: true
      headers: [region]
exporters:
  testing/traces:
    path: {dir}/traces.bin
  testing/metrics:
    path: {dir}/metrics.bin
  testing/logs:
    path: {dir}/logs.bin
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  batch_monitor:
    endpoint: 127.0.0.1:{http}
service:
  extensions: [health_check, batch_monitor]
  pipelines:
    traces:
      receivers: [kafka, kafka/swapped]
      exporters: [testing/traces]
    metrics:
      receivers: [kafka, kafka/swapped]
      exporters: [testing/metrics]
    logs:
      receivers: [kafka, kafka/swapped]
      exporters: [testing/logs]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_in_both_encodings_from_several_topics_and_partitions_with_tenants_from_topic_names() {
    let k = Kafka::new();
    let (acme, globex) = ("v6.qtw.traces.acme.1", "v6.qtw.traces.globex.1");
    k.topic(acme, 3);
    k.topic(globex, 2);
    k.topic("otlp_metrics", 2);
    k.topic("otlp_logs", 1);
    let mut expected_spans = Vec::new();
    for i in 0..30 {
        let names: Vec<String> = (0..3).map(|j| format!("acme-{i}-{j}")).collect();
        k.send(acme, i % 3, &spans(&names), &[]);
        expected_spans.extend(names);
    }
    for i in 0..20 {
        if i == 5 {
            // Not OTLP: dead-lettered, and the partition goes on.
            k.send(globex, 0, b"\x0a\xff\xff\xff not protobuf", &[("why", "poison")]);
        }
        let names: Vec<String> = (0..2).map(|j| format!("globex-{i}-{j}")).collect();
        k.send(globex, i % 2, &spans(&names), &[]);
        expected_spans.extend(names);
    }
    for i in 0..10 {
        k.send("otlp_metrics", i % 2, &metrics_json(&format!("metric-{i}")), &[("X-Scope-OrgID", "initech")]);
    }
    // A tenant id that would escape its directory: refused, dead-lettered.
    k.send("otlp_metrics", 1, &metrics_json("bad-tenant"), &[("X-Scope-OrgID", "../etc")]);
    for i in 0..10 {
        k.send("otlp_logs", 0, &logs(&format!("log-{i}")), &[("region", "eu-west")]);
    }
    // The other encoding of each signal, through the second receiver.
    k.topic("json_spans", 2);
    k.topic("proto_metrics", 1);
    k.topic("json_logs", 1);
    for i in 0..4 {
        let names = vec![format!("json-{i}")];
        k.send(
            "json_spans",
            i % 2,
            &serde_json::to_vec(&ExportTraceServiceRequest::decode(&spans(&names)[..]).unwrap()).unwrap(),
            &[],
        );
        expected_spans.extend(names);
        let metric: ExportMetricsServiceRequest =
            serde_json::from_slice(&metrics_json(&format!("proto-metric-{i}"))).unwrap();
        k.send("proto_metrics", 0, &metric.encode_to_vec(), &[]);
        k.send(
            "json_logs",
            0,
            &serde_json::to_vec(&ExportLogsServiceRequest::decode(&logs(&format!("json-log-{i}"))[..]).unwrap())
                .unwrap(),
            &[("region", "eu-west")],
        );
    }
    k.flush();

    let d = Daemon::start(&ALL_SIGNALS.replace("BROKERS", &k.brokers())).await;
    let stored = eventually(Duration::from_secs(60), || stored_spans(&d.path("traces.bin")), |m| total(m) >= 134).await;
    assert_exactly_once(&stored, &expected_spans);

    let metrics: Vec<String> = eventually(
        Duration::from_secs(30),
        || {
            read_testing::<ExportMetricsServiceRequest>(&d.path("metrics.bin"))
                .into_iter()
                .flat_map(|(_, r)| r.resource_metrics)
                .flat_map(|r| r.scope_metrics)
                .flat_map(|s| s.metrics)
                .map(|m| m.name)
                .collect()
        },
        |v: &Vec<String>| v.len() >= 14,
    )
    .await;
    let mut sorted = metrics.clone();
    sorted.sort();
    let mut want: Vec<String> =
        (0..10).map(|i| format!("metric-{i}")).chain((0..4).map(|i| format!("proto-metric-{i}"))).collect();
    want.sort();
    assert_eq!(sorted, want, "JSON and protobuf metrics decoded, each once; the bad tenant's is not among them");

    let log_reqs = eventually(
        Duration::from_secs(30),
        || read_testing::<ExportLogsServiceRequest>(&d.path("logs.bin")),
        |v| v.iter().flat_map(|(i, _)| i).count() >= 14,
    )
    .await;
    let mut bodies = Vec::new();
    for (_, r) in &log_reqs {
        for rl in &r.resource_logs {
            let attrs = &rl.resource.as_ref().expect("a resource with the extracted header").attributes;
            let region = attrs.iter().find(|a| a.key == "kafka.header.region").expect("kafka.header.region");
            assert_eq!(region.value, Some(AnyValue { value: Some(any_value::Value::StringValue("eu-west".into())) }));
            for sl in &rl.scope_logs {
                for l in &sl.log_records {
                    if let Some(any_value::Value::StringValue(b)) = l.body.as_ref().and_then(|b| b.value.as_ref()) {
                        bodies.push(b.clone());
                    }
                }
            }
        }
    }
    bodies.sort();
    let mut want: Vec<String> =
        (0..10).map(|i| format!("log-{i}")).chain((0..4).map(|i| format!("json-log-{i}"))).collect();
    want.sort();
    assert_eq!(bodies, want);

    // Poison: written raw with the reason, and the partition kept flowing (globex-5.. are stored).
    let poison = d.path("dead").join(globex).join("0-3.bin");
    assert_eq!(std::fs::read(&poison).unwrap(), b"\x0a\xff\xff\xff not protobuf", "the payload, raw");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(poison.with_extension("json")).unwrap()).unwrap();
    assert!(meta["reason"].as_str().unwrap().contains("invalid OTLP protobuf"), "{meta}");
    assert_eq!(meta["headers"][0]["key"], "why");
    let tenant_dl = d.path("dead").join("otlp_metrics").join("1-5.json");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&tenant_dl).unwrap()).unwrap();
    assert!(meta["reason"].as_str().unwrap().contains("only letters, digits"), "{meta}");
    assert_eq!(d.metric_sum("openwit_kafka_messages_total{receiver=\"kafka\",outcome=\"dead_lettered\"}").await, 2.0);
    let log = d.logs();
    assert!(log.contains("message skipped") && log.contains("offset=3"), "poison logged with its position");

    // Offsets: committed to the end of every partition once everything is durable.
    let ends =
        [(acme, vec![10, 10, 10]), (globex, vec![11, 10]), ("otlp_metrics", vec![5, 6]), ("otlp_logs", vec![10])];
    for (topic, want) in ends {
        let n = want.len() as i32;
        let got = eventually(Duration::from_secs(20), || k.committed("e2e", topic, n), |c| *c == want).await;
        assert_eq!(got, want, "committed offsets of {topic}");
    }
    for (topic, want) in [("json_spans", vec![2, 2]), ("proto_metrics", vec![4]), ("json_logs", vec![4])] {
        let n = want.len() as i32;
        let got = eventually(Duration::from_secs(20), || k.committed("e2e-swapped", topic, n), |c| *c == want).await;
        assert_eq!(got, want, "committed offsets of {topic}");
    }

    // Commits are confirmed, and with them the WAL batches complete (each is held until its
    // offsets are committed).
    assert!(d.metric_sum("openwit_kafka_commits_total{receiver=\"kafka\",outcome=\"ok\"}").await > 0.0);
    let batches = |outcome: &str| format!("openwit_wal_batches_total{{outcome=\"{outcome}\"}}");
    let (mut written, mut completed) = (0.0, -1.0);
    for _ in 0..200 {
        written = d.metric_sum(&batches("written")).await;
        completed = d.metric_sum(&batches("completed")).await;
        if written == completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(completed, written, "every WAL batch completes once stored and committed");

    // The tracker knows each batch's tenant, topic partitions and offsets. It writes to the catalog in
    // the background, so its rows may trail the metrics: wait until every batch's kafka stage is done.
    let kafka_done = |r: &serde_json::Value| {
        r["stages"].as_array().is_some_and(|s| s.iter().any(|s| s["stage"] == "kafka" && s["done"] == true))
    };
    let mut body = serde_json::Value::Null;
    for _ in 0..200 {
        body = client()
            .get(d.http_url("/api/batch-monitor/batches?tenant=globex&limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = body["batches"].as_array().unwrap();
        let items: i64 = rows.iter().filter_map(|r| r["item_count"].as_i64()).sum();
        if items >= 40 && rows.iter().all(kafka_done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = body["batches"].as_array().unwrap();
    assert!(!rows.is_empty(), "{body}");
    let mut items = 0;
    for r in rows {
        assert_eq!(r["client_id"], "globex");
        assert_eq!(r["receiver"], "kafka");
        let topics = r["topics"].as_str().unwrap();
        assert!(topics.split(',').all(|t| t.starts_with("v6.qtw.traces.globex.1/")), "{topics}");
        assert!(r["first_offset"].as_i64().unwrap() <= r["last_offset"].as_i64().unwrap());
        let kafka = r["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "kafka").unwrap();
        assert_eq!(kafka["done"], true);
        items += r["item_count"].as_i64().unwrap();
    }
    assert_eq!(items, 40, "globex's 40 spans, in batches of its own");
    assert_eq!(d.metric_sum("otelcol_receiver_accepted_spans_total{receiver=\"kafka\"").await, 130.0);
}

/// One traces pipeline: the `kafka` receiver (its keys, indented under it, given in `receiver`) into the
/// `testing` exporter (`exporter`: further keys of it), with `processors` between them.
fn one_pipeline(brokers: &str, receiver: &str, processors: &str, exporter: &str) -> String {
    format!(
        r#"
receivers:
  kafka:
    brokers: [{brokers}]
    initial_offset: earliest
    traces:
      topics: [spans]
{receiver}
processors:
  batch:
    send_batch_size: 16
    send_batch_max_size: 16
    timeout: 1ms
exporters:
  testing:
    path: {{dir}}/stored.bin
{exporter}
extensions:
  health_check:
    endpoint: 127.0.0.1:{{health}}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [kafka]
      processors: [{processors}]
      exporters: [testing]
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
"#
    )
}

fn crash_config(k: &Kafka, max_items: usize, batch_timeout: &str, commit_interval: &str) -> String {
    let receiver = format!(
        "    group_id: crash\n    batching:\n      max_items: {max_items}\n      timeout: {batch_timeout}\n    commit:\n      interval: {commit_interval}"
    );
    one_pipeline(&k.brokers(), &receiver, "", "")
}

fn produce_spans(k: &Kafka, topic: &str, partitions: i32, range: std::ops::Range<usize>) -> Vec<String> {
    let mut names = Vec::new();
    for i in range {
        let n = vec![format!("m{i}")];
        k.send(topic, (i % partitions as usize) as i32, &spans(&n), &[]);
        names.extend(n);
    }
    k.flush();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_the_wal_and_the_commit_or_mid_batch_every_message_is_stored_once() {
    let k = Kafka::new();
    k.topic("spans", 2);
    let dir = tempfile::tempdir().unwrap();
    let stored = dir.path().join("stored.bin");

    // 1. Everything reaches the WAL and the exporter, nothing is committed (the commit interval is
    //    longer than the test), then kill -9: Kafka will deliver all of it again.
    let mut expected = produce_spans(&k, "spans", 2, 0..200);
    let mut d = Daemon::spawn_in(dir.path(), &crash_config(&k, 64, "5ms", "1h"), &[]);
    d.wait_ready().await;
    let got = eventually(Duration::from_secs(60), || total(&stored_spans(&stored)), |n| *n >= 200).await;
    assert_eq!(got, 200);
    assert_eq!(k.committed("crash", "spans", 2), vec![-1, -1], "nothing committed yet");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        d.metric_sum("openwit_wal_batches_total{outcome=\"completed\"}").await,
        0.0,
        "stored by the exporter but not committed: no batch is complete, all stay in the WAL"
    );
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(10));
    let inspect = std::process::Command::new(crate::harness::bin())
        .args(["wal", "inspect"])
        .arg(dir.path().join("data/wal"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(text.contains("receiver=kafka") && text.contains("      sources spans/"), "{text}");
    assert!(text.contains(" spans/0@0..=") && text.contains(" spans/1@0..="), "{text}");

    // 2. Restart: the redelivered messages are recognised as already in the WAL and skipped. Then
    //    kill -9 again while a batch is open (long batching timeout): those messages are in no WAL
    //    batch and not committed.
    let mut d = Daemon::spawn_in(dir.path(), &crash_config(&k, 100_000, "30s", "50ms"), &[]);
    d.wait_ready().await;
    let dup = {
        let mut n = 0.0;
        for _ in 0..400 {
            n = d.metric_sum("openwit_kafka_messages_total{receiver=\"kafka\",outcome=\"duplicate\"}").await;
            if n >= 200.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n
    };
    assert_eq!(dup, 200.0, "every redelivered message recognised as already stored");
    let committed =
        eventually(Duration::from_secs(20), || k.committed("crash", "spans", 2), |c| *c == vec![100, 100]).await;
    assert_eq!(committed, vec![100, 100], "the skipped messages are committed");
    expected.extend(produce_spans(&k, "spans", 2, 200..300));
    // Consumed (they are waiting in the open batch) but not in the WAL: wait until they are pulled in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(total(&stored_spans(&stored)), 200, "the open batch is not stored yet");
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(10));
    assert_eq!(k.committed("crash", "spans", 2), vec![100, 100], "nothing of the open batch was committed");

    // 3. Restart normally, with more produced while it runs: everything exactly once.
    let d = Daemon::spawn_in(dir.path(), &crash_config(&k, 64, "5ms", "50ms"), &[]);
    d.wait_ready().await;
    expected.extend(produce_spans(&k, "spans", 2, 300..400));
    let got = eventually(Duration::from_secs(60), || stored_spans(&stored), |m| total(m) >= 400).await;
    assert_exactly_once(&got, &expected);
    let committed =
        eventually(Duration::from_secs(20), || k.committed("crash", "spans", 2), |c| *c == vec![200, 200]).await;
    assert_eq!(committed, vec![200, 200]);
    // Nothing more arrives late.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_exactly_once(&stored_spans(&stored), &expected);
}

const GROUP: &str = "    group_id: pair
    session_timeout: 6s
    heartbeat_interval: 1s
    batching:
      max_items: 32
      timeout: 5ms
    dead_letter:
      topic: dead-letters";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_between_two_daemons_loses_nothing_and_stores_nothing_twice() {
    let k = Kafka::new();
    k.topic("spans", 4);
    k.topic("dead-letters", 1);
    let cfg = one_pipeline(&k.brokers(), GROUP, "", "");
    let mut expected = produce_spans(&k, "spans", 4, 0..400);
    let mut a = Daemon::start(&cfg).await;
    eventually(Duration::from_secs(60), || total(&stored_spans(&a.path("stored.bin"))), |n| *n >= 400).await;
    let committed =
        eventually(Duration::from_secs(20), || k.committed("pair", "spans", 4), |c| *c == vec![100; 4]).await;
    assert_eq!(committed, vec![100; 4]);

    // B joins: the partitions are split between the two. (librdkafka's mock broker refuses commits
    // while a group rebalances, where a real broker accepts them from current members, so messages
    // start flowing again once the split is done: what a member stored but could not commit would
    // be read again by the other.)
    let b = Daemon::start(&cfg).await;
    let assigned = |d: &Daemon| d.logs().matches("partitions assigned").count();
    eventually(Duration::from_secs(60), || (assigned(&a), assigned(&b)), |(x, y)| *x >= 2 && *y >= 1).await;
    assert!(b.logs().contains("partitions assigned receiver=kafka partitions=2"), "{}", b.logs());
    let producer = {
        let brokers = k.brokers();
        std::thread::spawn(move || {
            let p: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
            let mut names = Vec::new();
            for i in 400..1400 {
                let n = vec![format!("m{i}")];
                let mut rec = BaseRecord::<(), [u8]>::to("spans").partition(i % 4);
                let payload = spans(&n);
                rec = rec.payload(&payload);
                while let Err((_, r)) = p.send(rec) {
                    p.poll(Duration::from_millis(10));
                    rec = r;
                }
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(30));
                }
                p.poll(Duration::ZERO);
                names.extend(n);
            }
            p.flush(Duration::from_secs(30)).unwrap();
            names
        })
    };
    let b_got = eventually(Duration::from_secs(60), || total(&stored_spans(&b.path("stored.bin"))), |n| *n > 0).await;
    assert!(b_got > 0, "B was given partitions and stored from them\nA:\n{}\nB:\n{}", a.logs(), b.logs());
    // A leaves gracefully mid-stream: it commits what is durable before its partitions go to B.
    a.signal(libc::SIGTERM);
    assert!(a.wait_exit(Duration::from_secs(60)).success());
    expected.extend(producer.join().unwrap());
    k.send("spans", 1, b"garbage", &[]);
    k.flush();

    let both = || {
        let mut m = stored_spans(&a.path("stored.bin"));
        for (n, c) in stored_spans(&b.path("stored.bin")) {
            *m.entry(n).or_default() += c;
        }
        m
    };
    let got = eventually(Duration::from_secs(60), both, |m| total(m) >= 1400).await;
    assert_exactly_once(&got, &expected);
    assert!(b.logs().contains("partitions assigned"), "B took partitions");
    let committed =
        eventually(Duration::from_secs(20), || k.committed("pair", "spans", 4), |c| *c == vec![350, 351, 350, 350])
            .await;
    assert_eq!(committed, vec![350, 351, 350, 350], "B committed through the end, past the dead letter");
    let dead = k.read_all("dead-letters", 1);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, b"garbage");
    assert_eq!(dead[0].1["openwit.dead_letter.partition"], "1");
    assert_eq!(dead[0].1["openwit.dead_letter.offset"], "350");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_exactly_once(&both(), &expected);
}

const SLOW: &str = "    group_id: slow
    batching:
      max_items: 16
      timeout: 5ms
    backpressure_wait: 50ms";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_pauses_partitions_and_loses_nothing() {
    let k = Kafka::new();
    k.topic("spans", 2);
    let expected = produce_spans(&k, "spans", 2, 0..3000);
    let d = Daemon::start(&one_pipeline(&k.brokers(), SLOW, "batch", "    delay: 40ms")).await;
    let mut paused_seen = 0.0f64;
    let stored = d.path("stored.bin");
    for _ in 0..1200 {
        paused_seen = paused_seen.max(d.metric_sum("openwit_kafka_paused_partitions{receiver=\"kafka\"}").await);
        if total(&stored_spans(&stored)) >= 3000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(paused_seen, 2.0, "both partitions were paused while the exporter was behind");
    let got = eventually(Duration::from_secs(120), || stored_spans(&stored), |m| total(m) >= 3000).await;
    assert_exactly_once(&got, &expected);
    assert_eq!(d.metric_sum("openwit_kafka_paused_partitions{receiver=\"kafka\"}").await, 0.0, "resumed");
    assert_eq!(d.metric_sum("openwit_kafka_messages_total{receiver=\"kafka\",outcome=\"stored\"}").await, 3000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_within_its_waits_when_the_brokers_are_gone() {
    let k = Kafka::new();
    k.topic("spans", 2);
    let expected = produce_spans(&k, "spans", 2, 0..50);
    // Nothing is committed before the brokers go (the interval outlasts the test): stopping has a
    // commit to make that cannot succeed, and a group it cannot leave.
    let receiver = "    group_id: gone\n    commit:\n      interval: 1h";
    let mut d = Daemon::start(&one_pipeline(&k.brokers(), receiver, "", "")).await;
    let got = eventually(Duration::from_secs(30), || stored_spans(&d.path("stored.bin")), |m| total(m) >= 50).await;
    assert_exactly_once(&got, &expected);
    drop(k);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = std::time::Instant::now();
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", d.logs());
    assert!(asked.elapsed() < Duration::from_secs(30), "stopped in {:?}", asked.elapsed());
    assert!(d.logs().contains("could not confirm the last commit"), "{}", d.logs());
}

/// A Collector `kafka` receiver config validates as it is; OpenWit's refusals name the path.
#[test]
fn collector_kafka_configs_validate_and_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let validate = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(crate::harness::bin())
            .args(["validate", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let collector = r#"
receivers:
  kafka:
    brokers: ["kafka-1:9092", "kafka-2:9092"]
    client_id: otel-collector
    group_id: otel-collector
    initial_offset: earliest
    protocol_version: 2.1.0
    topic: otlp_spans
    encoding: otlp_proto
    logs:
      topic: otlp_logs
      encoding: otlp_json
    auth:
      sasl:
        username: user
        password: secret
        mechanism: SCRAM-SHA-512
    autocommit:
      enable: true
      interval: 1s
    message_marking:
      after: true
      on_error: false
    header_extraction:
      extract_headers: true
      headers: [tenant]
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [kafka]
      exporters: [debug]
    logs:
      receivers: [kafka]
      exporters: [debug]
"#;
    let (ok, err) = validate("collector.yaml", collector);
    assert!(ok, "{err}");
    let (ok, err) = validate("encoding.yaml", &collector.replace("encoding: otlp_json", "encoding: jaeger_proto"));
    assert!(!ok);
    assert!(
        err.contains("receivers.kafka.logs.encoding: encoding \"jaeger_proto\" is not supported by OpenWit"),
        "{err}"
    );
    let (ok, err) = validate("sasl.yaml", &collector.replace("SCRAM-SHA-512", "AWS_MSK_IAM_OAUTHBEARER"));
    assert!(!ok);
    assert!(err.contains("receivers.kafka.auth.sasl.mechanism: \"AWS_MSK_IAM_OAUTHBEARER\" is not supported"), "{err}");
}

/// The Kafka path under power loss: the daemon's directory on the lossy filesystem, the mock cluster (and
/// the group's committed offsets) in this process, safe from the cuts. Each round produces more spans,
/// lets the daemon consume, store and commit for a random while, then cuts the power. An offset committed
/// for a message whose data was not durable (in the WAL or a stable file) would lose that message: Kafka
/// never delivers it again. At the end every produced span is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_never_leave_a_committed_offset_over_data_that_is_not_durable() {
    let k = Kafka::new();
    k.topic("spans", 2);
    let backing = tempfile::tempdir().unwrap();
    let mut disk = openwit_lossyfs::LossyMount::mount(backing.path()).expect("needs /dev/fuse and root");
    let dir = disk.path().to_path_buf();
    let receiver = "    group_id: cuts
    group_instance_id: openwit-under-test
    session_timeout: 6s
    heartbeat_interval: 1s
    batching:
      max_items: 64
      timeout: 5ms
    commit:
      interval: 20ms";
    let exporter = "  parquet:
    endpoint: {dir}/bucket
    rotation:
      max_age: 100ms
      max_megabytes: 0.05";
    let config =
        one_pipeline(&k.brokers(), receiver, "", exporter).replace("exporters: [testing]", "exporters: [parquet]");
    let mut rand = crate::crash::xorshift(0x2545_F491_4F6C_DD1D);
    let (mut produced, per_message, rounds) = (0u64, 5u64, 10u32);
    let mut committed_before_cut = Vec::new();
    for _ in 0..rounds {
        for _ in 0..1500 {
            let req = crate::crash::request(produced + 1, per_message);
            k.send("spans", (produced / per_message % 2) as i32, &req.encode_to_vec(), &[]);
            produced += per_message;
        }
        k.flush();
        let mut d = Daemon::spawn_in(&dir, &config, &[]);
        d.wait_ready().await;
        // The group hands the partitions over once the killed member's session times out: cut only once
        // this one consumes, at a random moment of its work.
        for _ in 0..300 {
            if d.metric_sum("openwit_kafka_messages_total").await > 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand() % 400)).await;
        disk.power_cut(|| {
            d.signal(libc::SIGKILL);
            d.wait_exit(Duration::from_secs(10));
        })
        .unwrap();
        committed_before_cut.push(k.committed("cuts", "spans", 2));
    }
    let d = Daemon::spawn_in(&dir, &config, &[]);
    d.wait_ready().await;
    let all: Vec<u64> = (1..=produced).collect();
    let stored = eventually(
        Duration::from_secs(90),
        || crate::crash::stored_in_parquet(&d.path("bucket")),
        |s| all.iter().all(|id| s.contains_key(id)),
    )
    .await;
    let missing: Vec<&u64> = all.iter().filter(|id| !stored.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {produced} produced spans lost (committed offsets at each cut: {committed_before_cut:?}), e.g. {:?}; log:\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        d.logs()
    );
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    assert_eq!(stored.len() as u64, produced, "nothing else stored");
    let half = (produced / per_message / 2) as i64;
    let end = eventually(Duration::from_secs(30), || k.committed("cuts", "spans", 2), |c| *c == vec![half, half]).await;
    assert_eq!(end, vec![half, half], "everything is committed in the end");
    let progressed = committed_before_cut.iter().filter(|c| c.iter().any(|o| *o > 0)).count();
    assert!(progressed > 0, "offsets were committed before cuts: {committed_before_cut:?}");
    println!(
        "kafka power loss: {rounds} cuts, {produced} spans produced and stored once, offsets at cuts {committed_before_cut:?}"
    );
}
