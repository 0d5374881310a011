//! Hostile input through the real binary: each request gets its answer, the daemon keeps serving, and its
//! memory stays bounded. What the fuzzers find in the decoders alone, these show end to end.

use crate::harness::{Daemon, client};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use std::time::Duration;

/// Logs into Parquet (so that what is accepted goes all the way to Arrow and a file), with room for 32 MiB
/// HTTP bodies; over the harness's `BASE`.
const CONFIG: &str = "
receivers:
  otlp:
    protocols:
      http:
        max_request_body_size: 33554432
exporters:
  parquet:
    endpoint: {dir}/bucket
    rotation:
      max_age: 200ms
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [parquet]
";

fn logs_with(record: LogRecord) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// An `AnyValue` nested `depth` deep, alternating arrays and key-value lists.
fn nested(depth: usize) -> AnyValue {
    let mut v = AnyValue { value: Some(Value::StringValue("bottom".into())) };
    for i in 0..depth {
        v = if i % 2 == 0 {
            AnyValue { value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })) }
        } else {
            AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue { key: "k".into(), value: Some(v), ..Default::default() }],
                })),
            }
        };
    }
    v
}

/// A protobuf length-delimited field.
fn field(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// An Export logs request whose one record's body is an array nested `depth` deep, built as bytes: the
/// message types would recurse (and overflow this test's stack) to encode or drop it.
fn deep_request(depth: usize) -> Vec<u8> {
    // AnyValue.string_value = 1, AnyValue.array_value = 5, ArrayValue.values = 1.
    let mut v = field(1, b"bottom");
    for _ in 0..depth {
        v = field(5, &field(1, &v));
    }
    // LogRecord.body = 5, ScopeLogs.log_records = 2, ResourceLogs.scope_logs = 2, request.resource_logs = 1.
    field(1, &field(2, &field(2, &field(5, &v))))
}

/// The daemon's resident memory, in MiB.
fn rss_mib(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

async fn post(d: &Daemon, ctype: &str, body: Vec<u8>) -> u16 {
    client()
        .post(d.http_url("/v1/logs"))
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn serving(d: &Daemon) {
    let ok = logs_with(LogRecord {
        body: Some(AnyValue { value: Some(Value::StringValue("fine".into())) }),
        ..Default::default()
    });
    assert_eq!(d.post_protobuf("/v1/logs", ok.encode_to_vec()).await, 200, "still serving; log:\n{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_huge_attribute_counts_and_invalid_utf8_are_answered_and_the_daemon_stays_up() {
    let d = Daemon::start_on_base(&[CONFIG]).await;

    // Nested values: a depth the decoders accept is stored; thousands deep is refused, over protobuf and
    // JSON alike, without exhausting the stack.
    let ok = logs_with(LogRecord { body: Some(nested(30)), ..Default::default() });
    assert_eq!(d.post_protobuf("/v1/logs", ok.encode_to_vec()).await, 200);
    assert_eq!(d.post_protobuf("/v1/logs", deep_request(5_000)).await, 400);
    let json_deep = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{}"stringValue":"x"{}}}]}}]}}]}}"#,
        r#"{"arrayValue":{"values":["#.repeat(5_000),
        "}]}}".repeat(5_000)
    );
    assert_eq!(post(&d, "application/json", json_deep.into_bytes()).await, 400);
    let logs_export = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    assert_eq!(
        crate::bad_input::raw_grpc_to(&d, logs_export, &deep_request(5_000)).await,
        tonic::Code::InvalidArgument
    );
    assert_eq!(crate::bad_input::raw_grpc_to(&d, logs_export, &deep_request(20)).await, tonic::Code::Ok);

    // A million attributes on one record (17 MB): stored; over gRPC (4 MiB by default): refused as too
    // large; five million over HTTP (over 32 MiB): refused as too large.
    let many = |n: usize| {
        let attributes = (0..n)
            .map(|i| KeyValue {
                key: format!("a{i}"),
                value: Some(AnyValue { value: Some(Value::IntValue(i as i64)) }),
                ..Default::default()
            })
            .collect();
        logs_with(LogRecord { attributes, ..Default::default() })
    };
    let million = many(1_000_000);
    assert_eq!(d.post_protobuf("/v1/logs", million.encode_to_vec()).await, 200);
    let e = LogsServiceClient::connect(d.grpc_url()).await.unwrap().export(million).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    // The daemon answers 413 as soon as the declared length is over its limit and closes the connection;
    // a client still sending may see that as a broken pipe instead.
    let r = client()
        .post(d.http_url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(many(5_000_000).encode_to_vec())
        .send()
        .await;
    assert!(r.as_ref().map_or(true, |r| r.status() == 413), "{r:?}");

    // Invalid UTF-8 in a string field: protobuf refuses it (strings must be UTF-8), so does JSON.
    let mut bad = logs_with(LogRecord {
        body: Some(AnyValue { value: Some(Value::StringValue("PLACEHOLDER".into())) }),
        ..Default::default()
    })
    .encode_to_vec();
    let at = bad.windows(11).position(|w| w == b"PLACEHOLDER").unwrap();
    bad[at..at + 3].copy_from_slice(&[0xff, 0xfe, 0xc3]);
    assert_eq!(d.post_protobuf("/v1/logs", bad).await, 400);
    let mut json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"AB"}}]}]}]}"#.to_vec();
    let at = json.windows(2).position(|w| w == b"AB").unwrap();
    json[at] = 0xff;
    assert_eq!(post(&d, "application/json", json).await, 400);

    // JSON: numbers past every integer type, and duplicate keys.
    for body in [
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"99999999999999999999999999"}]}]}]}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":1e400}]}]}]}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"intValue":"-99999999999999999999"}}]}]}]}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"doubleValue":1e999}}]}]}]}"#,
        r#"{"resourceLogs":[],"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}]}]}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityText":"a","severityText":"b"}]}]}]}"#,
    ] {
        let status = post(&d, "application/json", body.as_bytes().to_vec()).await;
        assert_eq!(status, 400, "{body}");
    }

    serving(&d).await;
    let rss = rss_mib(&d);
    assert!(rss < 512, "resident memory {rss} MiB after hostile input");
    // What was accepted reaches a stable file (nested value and 300,000 attributes included).
    let files = crate::harness::eventually(
        Duration::from_secs(20),
        || std::fs::read_dir(d.path("bucket/logs")).map(|r| r.count()).unwrap_or(0),
        |n| *n > 0,
    )
    .await;
    assert!(files > 0, "log:\n{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_holding_many_http2_streams_open_does_not_stop_others() {
    let d = Daemon::start_on_base(&[CONFIG]).await;
    let before = rss_mib(&d);
    // One HTTP/2 connection, 150 requests whose bodies start and never finish.
    let slow = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let mut held = Vec::new();
    for _ in 0..150 {
        let first =
            futures::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"resourceLogs\":[")) });
        let body = reqwest::Body::wrap_stream(futures::StreamExt::chain(first, futures::stream::pending()));
        let req = slow.post(d.http_url("/v1/logs")).header("content-type", "application/json").body(body);
        held.push(tokio::spawn(async move { req.send().await }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Others are served meanwhile, over HTTP and gRPC.
    serving(&d).await;
    let mut c = LogsServiceClient::connect(d.grpc_url()).await.unwrap();
    c.export(logs_with(LogRecord::default())).await.unwrap();
    let grown = rss_mib(&d).saturating_sub(before);
    assert!(grown < 128, "150 stalled streams cost {grown} MiB");
    for h in held {
        h.abort();
    }
    serving(&d).await;
}
