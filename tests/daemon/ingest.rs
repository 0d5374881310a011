//! Data sent by real clients arrives with every field intact.

use crate::harness::{Daemon, FILE_PIPELINES, client, eventually, read_records};
use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue as SdkAny, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, Status as SdkStatus, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{self as pm, metric::Data};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use opentelemetry_sdk::Resource as SdkResource;
use prost::Message;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn kv(k: &str, v: Value) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    opentelemetry_proto::tonic::common::v1::KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// Every AnyValue kind, including nesting and the empty value.
fn all_value_kinds() -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    vec![
        kv("str", Value::StringValue("héllo wörld ✓".into())),
        kv("bool", Value::BoolValue(true)),
        kv("int", Value::IntValue(i64::MIN)),
        kv("double", Value::DoubleValue(-1.5e300)),
        kv("bytes", Value::BytesValue(vec![0, 1, 254, 255])),
        kv(
            "array",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(Value::IntValue(1)) }, AnyValue { value: None }],
            }),
        ),
        kv("kvlist", Value::KvlistValue(KeyValueList { values: vec![kv("nested", Value::StringValue("x".into()))] })),
        opentelemetry_proto::tonic::common::v1::KeyValue {
            key: "empty".into(),
            value: Some(AnyValue { value: None }),
            ..Default::default()
        },
    ]
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", Value::StringValue(service.into()))],
        dropped_attributes_count: 1,
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "lib".into(),
        version: "1.2.3".into(),
        attributes: all_value_kinds(),
        dropped_attributes_count: 0,
    })
}

pub fn rich_traces(tag: &str) -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: (1..=16).collect(),
        span_id: (1..=8).collect(),
        trace_state: "k=v".into(),
        parent_span_id: (9..=16).collect(),
        flags: 257,
        name: format!("GET /api/{tag}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_123_456_789,
        attributes: all_value_kinds(),
        dropped_attributes_count: 2,
        events: vec![span::Event {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "exception".into(),
            attributes: all_value_kinds(),
            dropped_attributes_count: 1,
        }],
        dropped_events_count: 3,
        links: vec![span::Link {
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            trace_state: "a=b".into(),
            attributes: all_value_kinds(),
            dropped_attributes_count: 0,
            flags: 1,
        }],
        dropped_links_count: 4,
        status: Some(Status { message: "boom".into(), code: 2 }),
    };
    let span2 = Span { name: "child".into(), span_id: vec![2; 8], ..Default::default() };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("checkout"),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![span, span2],
                schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
            }],
            schema_url: "s".into(),
        }],
    }
}

pub fn rich_logs(tag: &str) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("api"),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_001,
                        observed_time_unix_nano: 1_700_000_000_000_000_002,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue {
                            value: Some(Value::KvlistValue(KeyValueList { values: all_value_kinds() })),
                        }),
                        attributes: all_value_kinds(),
                        dropped_attributes_count: 1,
                        flags: 1,
                        trace_id: vec![3; 16],
                        span_id: vec![4; 8],
                        event_name: format!("event.{tag}"),
                    },
                    LogRecord {
                        body: Some(AnyValue { value: Some(Value::StringValue(tag.into())) }),
                        ..Default::default()
                    },
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

pub fn rich_metrics(tag: &str) -> ExportMetricsServiceRequest {
    let exemplar = pm::Exemplar {
        filtered_attributes: all_value_kinds(),
        time_unix_nano: 5,
        span_id: vec![1; 8],
        trace_id: vec![2; 16],
        value: Some(pm::exemplar::Value::AsDouble(0.25)),
    };
    let number = |v: pm::number_data_point::Value| pm::NumberDataPoint {
        attributes: all_value_kinds(),
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        exemplars: vec![exemplar.clone()],
        flags: 1,
        value: Some(v),
    };
    let metric = |name: &str, data: Data| pm::Metric {
        name: format!("{name}.{tag}"),
        description: "d".into(),
        unit: "ms".into(),
        metadata: all_value_kinds(),
        data: Some(data),
    };
    let metrics = vec![
        metric(
            "gauge",
            Data::Gauge(pm::Gauge { data_points: vec![number(pm::number_data_point::Value::AsDouble(f64::MAX))] }),
        ),
        metric(
            "sum",
            Data::Sum(pm::Sum {
                data_points: vec![number(pm::number_data_point::Value::AsInt(-7))],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "histogram",
            Data::Histogram(pm::Histogram {
                data_points: vec![pm::HistogramDataPoint {
                    attributes: all_value_kinds(),
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    count: 10,
                    sum: Some(12.5),
                    bucket_counts: vec![1, 2, 7],
                    explicit_bounds: vec![0.5, 1.0],
                    exemplars: vec![exemplar.clone()],
                    flags: 0,
                    min: Some(0.1),
                    max: Some(3.0),
                }],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "exphist",
            Data::ExponentialHistogram(pm::ExponentialHistogram {
                data_points: vec![pm::ExponentialHistogramDataPoint {
                    attributes: all_value_kinds(),
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    count: 6,
                    sum: Some(3.0),
                    scale: -3,
                    zero_count: 1,
                    positive: Some(pm::exponential_histogram_data_point::Buckets {
                        offset: -2,
                        bucket_counts: vec![1, 2],
                    }),
                    negative: Some(pm::exponential_histogram_data_point::Buckets { offset: 1, bucket_counts: vec![2] }),
                    flags: 0,
                    exemplars: vec![exemplar],
                    min: Some(-1.0),
                    max: Some(2.0),
                    zero_threshold: 1e-9,
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "summary",
            Data::Summary(pm::Summary {
                data_points: vec![pm::SummaryDataPoint {
                    attributes: all_value_kinds(),
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    count: 4,
                    sum: 10.0,
                    quantile_values: vec![pm::summary_data_point::ValueAtQuantile { quantile: 0.99, value: 9.5 }],
                    flags: 0,
                }],
            }),
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![pm::ResourceMetrics {
            resource: resource("db"),
            scope_metrics: vec![pm::ScopeMetrics { scope: scope(), metrics, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
}

async fn post(d: &Daemon, path: &str, ctype: &str, encoding: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut r = client().post(d.http_url(path)).header("content-type", ctype);
    if let Some(e) = encoding {
        r = r.header("content-encoding", e);
    }
    r.body(body).send().await.unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// Waits for `n` records in a proto file and returns them.
pub async fn records<M: Message + Default>(d: &Daemon, file: &str, n: usize) -> Vec<M> {
    let path = d.path(file);
    let got = eventually(WAIT, || read_records::<M>(&path), |r| r.len() >= n).await;
    assert_eq!(got.len(), n, "expected {n} records in {file}; log:\n{}", d.logs());
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_requests_arrive_exactly_over_every_transport_and_encoding() {
    let d = Daemon::start(FILE_PIPELINES).await;
    // HTTP protobuf, HTTP gzip, HTTP zstd, HTTP deflate: traces.
    let traces: Vec<_> = ["plain", "gzip", "zstd", "deflate"].iter().map(|t| rich_traces(t)).collect();
    assert_eq!(post(&d, "/v1/traces", "application/x-protobuf", None, traces[0].encode_to_vec()).await.status(), 200);
    assert_eq!(
        post(&d, "/v1/traces", "application/x-protobuf", Some("gzip"), gzip(&traces[1].encode_to_vec())).await.status(),
        200
    );
    let z = zstd::encode_all(&traces[2].encode_to_vec()[..], 3).unwrap();
    assert_eq!(post(&d, "/v1/traces", "application/x-protobuf", Some("zstd"), z).await.status(), 200);
    let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut zl, &traces[3].encode_to_vec()).unwrap();
    assert_eq!(
        post(&d, "/v1/traces", "application/x-protobuf", Some("deflate"), zl.finish().unwrap()).await.status(),
        200
    );
    let got: Vec<ExportTraceServiceRequest> = records(&d, "traces.bin", 4).await;
    assert_eq!(got, traces, "traces changed on the way");

    // gRPC (with gzip), every signal.
    use opentelemetry_proto::tonic::collector::{
        logs::v1::logs_service_client::LogsServiceClient, metrics::v1::metrics_service_client::MetricsServiceClient,
        trace::v1::trace_service_client::TraceServiceClient,
    };
    use tonic::codec::CompressionEncoding::Gzip;
    let t = rich_traces("grpc");
    TraceServiceClient::connect(d.grpc_url()).await.unwrap().send_compressed(Gzip).export(t.clone()).await.unwrap();
    let got: Vec<ExportTraceServiceRequest> = records(&d, "traces.bin", 5).await;
    assert_eq!(got[4], t);
    let m = rich_metrics("grpc");
    MetricsServiceClient::connect(d.grpc_url()).await.unwrap().export(m.clone()).await.unwrap();
    let l = rich_logs("grpc");
    LogsServiceClient::connect(d.grpc_url()).await.unwrap().export(l.clone()).await.unwrap();

    // HTTP protobuf: metrics and logs.
    let m2 = rich_metrics("http");
    assert_eq!(post(&d, "/v1/metrics", "application/x-protobuf", None, m2.encode_to_vec()).await.status(), 200);
    let l2 = rich_logs("http");
    assert_eq!(post(&d, "/v1/logs", "application/x-protobuf", None, l2.encode_to_vec()).await.status(), 200);

    let got: Vec<ExportMetricsServiceRequest> = records(&d, "metrics.bin", 2).await;
    assert!(got.contains(&m) && got.contains(&m2), "metrics changed on the way");
    let got: Vec<ExportLogsServiceRequest> = records(&d, "logs.bin", 2).await;
    assert!(got.contains(&l) && got.contains(&l2), "logs changed on the way");

    let metrics = d.metrics_text().await;
    assert!(
        metrics.contains("otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"http\"} 8"),
        "{metrics}"
    );
    assert!(
        metrics.contains("otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("otelcol_exporter_sent_spans_total{exporter=\"file/traces\"} 10"), "{metrics}");
    assert!(
        metrics.contains("otelcol_receiver_accepted_metric_points_total{receiver=\"otlp\",transport=\"grpc\"} 5"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_is_decoded_as_the_spec_and_the_collector_do() {
    let d = Daemon::start(FILE_PIPELINES).await;
    // Canonical OTLP/JSON: hex ids, int64 as strings, enums as integers, an unknown field.
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
      "scopeSpans":[{"scope":{"name":"lib"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174",
      "parentSpanId":"eee19b7ec3c1b173","name":"GET /","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
      "attributes":[{"key":"http.status_code","value":{"intValue":"200"}},{"key":"ok","value":{"boolValue":true}},
      {"key":"ratio","value":{"doubleValue":0.5}},{"key":"raw","value":{"bytesValue":"AAH/"}}],
      "status":{"code":1},"someFutureField":[1,2,3]}]}]}]}"#;
    let r = post(&d, "/v1/traces", "application/json", None, body.into()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), "{}");
    // The Collector's leniency: snake_case keys and enum names; charset parameter on the content type.
    let lenient = r#"{"resource_logs":[{"scope_logs":[{"log_records":[{"severity_number":"SEVERITY_NUMBER_WARN",
      "time_unix_nano":"7","body":{"string_value":"disk almost full"},"trace_id":"0102030405060708090a0b0c0d0e0f10"}]}]}]}"#;
    assert_eq!(post(&d, "/v1/logs", "application/json; charset=utf-8", None, lenient.into()).await.status(), 200);

    let got: Vec<ExportTraceServiceRequest> = records(&d, "traces.bin", 1).await;
    let span = &got[0].resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(
        (span.start_time_unix_nano, span.end_time_unix_nano),
        (1_544_712_660_000_000_000, 1_544_712_661_000_000_000)
    );
    assert_eq!(span.kind, 2);
    assert_eq!(span.status.as_ref().unwrap().code, 1);
    let attr =
        |k: &str| span.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone()).and_then(|v| v.value);
    assert_eq!(attr("http.status_code"), Some(Value::IntValue(200)));
    assert_eq!(attr("ok"), Some(Value::BoolValue(true)));
    assert_eq!(attr("ratio"), Some(Value::DoubleValue(0.5)));
    assert_eq!(attr("raw"), Some(Value::BytesValue(vec![0, 1, 255])));

    let got: Vec<ExportLogsServiceRequest> = records(&d, "logs.bin", 1).await;
    let log = &got[0].resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(log.severity_number, 13);
    assert_eq!(log.time_unix_nano, 7);
    assert_eq!(log.body.as_ref().unwrap().value, Some(Value::StringValue("disk almost full".into())));
    assert_eq!(log.trace_id, (1..=16).collect::<Vec<u8>>());

    // JSON of every rich message survives the trip as well.
    let m = rich_metrics("json");
    let json = serde_json::to_vec(&m).unwrap();
    assert_eq!(post(&d, "/v1/metrics", "application/json", None, json).await.status(), 200);
    let got: Vec<ExportMetricsServiceRequest> = records(&d, "metrics.bin", 1).await;
    assert_eq!(got[0], m);
}

fn sdk_resource() -> SdkResource {
    SdkResource::builder()
        .with_service_name("e2e-sdk")
        .with_attribute(KeyValue::new("deployment.environment", "test"))
        .build()
}

/// Sends one span, one log record and two metrics through the real SDK; returns the trace id.
pub fn send_with_sdk(grpc: bool, endpoint: String) -> [u8; 16] {
    use opentelemetry_otlp::{LogExporter, MetricExporter, SpanExporter};
    let ep = |path: &str| {
        if grpc { endpoint.clone() } else { format!("{endpoint}{path}") }
    };
    let (spans, logs, metrics) = if grpc {
        (
            SpanExporter::builder().with_tonic().with_endpoint(ep("")).build().unwrap(),
            LogExporter::builder().with_tonic().with_endpoint(ep("")).build().unwrap(),
            MetricExporter::builder().with_tonic().with_endpoint(ep("")).build().unwrap(),
        )
    } else {
        (
            SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(ep("/v1/traces"))
                .build()
                .unwrap(),
            LogExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(ep("/v1/logs"))
                .build()
                .unwrap(),
            MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(ep("/v1/metrics"))
                .build()
                .unwrap(),
        )
    };
    let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(sdk_resource())
        .build();
    let tracer = tp.tracer("e2e-tracer");
    let mut span = tracer.start("checkout");
    span.set_attribute(KeyValue::new("http.route", "/cart"));
    span.set_attribute(KeyValue::new("http.status_code", 503_i64));
    span.add_event("retry", vec![KeyValue::new("attempt", 2_i64)]);
    span.set_status(SdkStatus::error("upstream down"));
    let trace_id = span.span_context().trace_id().to_bytes();
    span.end();

    let lp = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(logs)
        .with_resource(sdk_resource())
        .build();
    let logger = lp.logger("e2e-logger");
    let mut rec = logger.create_log_record();
    rec.set_body(SdkAny::from("payment failed"));
    rec.set_severity_number(Severity::Error);
    rec.set_severity_text("ERROR");
    rec.add_attribute("user.id", 42_i64);
    logger.emit(rec);

    let mp = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_periodic_exporter(metrics)
        .with_resource(sdk_resource())
        .build();
    let meter = mp.meter("e2e-meter");
    meter.u64_counter("orders").build().add(3, &[KeyValue::new("region", "eu")]);
    meter.f64_histogram("latency").build().record(1.5, &[]);

    tp.force_flush().unwrap();
    lp.force_flush().unwrap();
    mp.force_flush().unwrap();
    tp.shutdown().unwrap();
    lp.shutdown().unwrap();
    mp.shutdown().unwrap();
    trace_id
}

async fn check_sdk_data(d: &Daemon, trace_id: [u8; 16]) {
    let str_attr = |attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], k: &str| {
        attrs.iter().find(|a| a.key == k).and_then(|a| a.value.clone()).and_then(|v| v.value)
    };
    let traces: Vec<ExportTraceServiceRequest> =
        eventually(WAIT, || read_records(&d.path("traces.bin")), |r: &Vec<_>| !r.is_empty()).await;
    let rs = &traces.first().unwrap_or_else(|| panic!("no traces; log:\n{}", d.logs())).resource_spans[0];
    let res = rs.resource.as_ref().unwrap();
    assert_eq!(str_attr(&res.attributes, "service.name"), Some(Value::StringValue("e2e-sdk".into())));
    assert_eq!(str_attr(&res.attributes, "deployment.environment"), Some(Value::StringValue("test".into())));
    assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "e2e-tracer");
    let s = &rs.scope_spans[0].spans[0];
    assert_eq!(s.name, "checkout");
    assert_eq!(s.trace_id, trace_id.to_vec());
    assert_eq!(str_attr(&s.attributes, "http.route"), Some(Value::StringValue("/cart".into())));
    assert_eq!(str_attr(&s.attributes, "http.status_code"), Some(Value::IntValue(503)));
    assert_eq!(s.events[0].name, "retry");
    assert_eq!(s.status.as_ref().map(|st| (st.code, st.message.as_str())), Some((2, "upstream down")));
    assert!(s.end_time_unix_nano >= s.start_time_unix_nano && s.start_time_unix_nano > 0);

    let logs: Vec<ExportLogsServiceRequest> =
        eventually(WAIT, || read_records(&d.path("logs.bin")), |r: &Vec<_>| !r.is_empty()).await;
    let l = &logs.first().unwrap_or_else(|| panic!("no logs; log:\n{}", d.logs())).resource_logs[0].scope_logs[0]
        .log_records[0];
    assert_eq!(l.body.as_ref().unwrap().value, Some(Value::StringValue("payment failed".into())));
    assert_eq!((l.severity_number, l.severity_text.as_str()), (17, "ERROR"));
    assert_eq!(str_attr(&l.attributes, "user.id"), Some(Value::IntValue(42)));

    let metrics: Vec<ExportMetricsServiceRequest> =
        eventually(WAIT, || read_records(&d.path("metrics.bin")), |r: &Vec<_>| !r.is_empty()).await;
    let all: Vec<&pm::Metric> = metrics
        .iter()
        .flat_map(|m| &m.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect();
    let orders = all.iter().find(|m| m.name == "orders").unwrap_or_else(|| panic!("no orders metric in {all:?}"));
    let Some(Data::Sum(sum)) = &orders.data else { panic!("orders is not a sum: {orders:?}") };
    assert!(sum.is_monotonic);
    assert_eq!(sum.data_points[0].value, Some(pm::number_data_point::Value::AsInt(3)));
    assert_eq!(str_attr(&sum.data_points[0].attributes, "region"), Some(Value::StringValue("eu".into())));
    let latency = all.iter().find(|m| m.name == "latency").expect("latency histogram");
    let Some(Data::Histogram(h)) = &latency.data else { panic!("latency is not a histogram") };
    assert_eq!((h.data_points[0].count, h.data_points[0].sum), (1, Some(1.5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_sdk_over_grpc() {
    let d = Daemon::start(FILE_PIPELINES).await;
    let url = d.grpc_url();
    let trace_id = tokio::task::spawn_blocking(move || send_with_sdk(true, url)).await.unwrap();
    check_sdk_data(&d, trace_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_sdk_over_http_protobuf() {
    let d = Daemon::start(FILE_PIPELINES).await;
    let url = d.http_url("");
    let trace_id = tokio::task::spawn_blocking(move || send_with_sdk(false, url)).await.unwrap();
    check_sdk_data(&d, trace_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_comes_from_the_configured_header() {
    let cfg = FILE_PIPELINES
        .replace(
            "        endpoint: 127.0.0.1:{http}\n",
            "        endpoint: 127.0.0.1:{http}\n    tenant:\n      header: X-Tenant\n",
        )
        .replace("verbosity: basic", "verbosity: normal");
    let d = Daemon::start(&cfg).await;
    let r = client()
        .post(d.http_url("/v1/logs"))
        .header("content-type", "application/json")
        .header("x-tenant", "acme-prod")
        .body(r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"tenant-http"}}]}]}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut req = tonic::Request::new(rich_logs("tenant-grpc"));
    req.metadata_mut().insert("x-tenant", "team_b".parse().unwrap());
    opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(d.grpc_url())
        .await
        .unwrap()
        .export(req)
        .await
        .unwrap();
    // Without the header: the default tenant.
    d.assert_serving().await;
    let logs = eventually(WAIT, || d.logs(), |l| l.contains("tenant=team_b") && l.contains("tenant=default")).await;
    assert!(logs.contains("tenant=acme-prod"), "{logs}");
    assert!(logs.contains("tenant=team_b"), "{logs}");
    assert!(logs.contains("tenant=default"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_processor_groups_by_tenant_and_metadata_keys() {
    let cfg = FILE_PIPELINES
        .replace(
            "        endpoint: 127.0.0.1:{http}\n",
            "        endpoint: 127.0.0.1:{http}\n        include_metadata: true\n",
        )
        .replace(
            "        endpoint: 127.0.0.1:{grpc}\n",
            "        endpoint: 127.0.0.1:{grpc}\n        include_metadata: true\n",
        )
        .replace(
            "extensions:\n  health_check",
            "processors:\n  batch:\n    timeout: 300ms\n    metadata_keys: [x-team]\nextensions:\n  health_check",
        )
        .replace(
            "      exporters: [file/logs, debug]",
            "      processors: [batch]\n      exporters: [file/logs, debug]",
        );
    let d = Daemon::start(&cfg).await;
    for team in ["red", "blue", "red", "blue", "red"] {
        let r = client()
            .post(d.http_url("/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .header("x-team", team)
            .header("authorization", "Bearer s3cr3t-token")
            .header("cookie", "session=s3cr3t-cookie")
            .body(rich_logs(team).encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // gRPC metadata groups the same way.
    let mut req = tonic::Request::new(rich_logs("red"));
    req.metadata_mut().insert("x-team", "red".parse().unwrap());
    req.metadata_mut().insert("authorization", "Bearer s3cr3t-token".parse().unwrap());
    opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(d.grpc_url())
        .await
        .unwrap()
        .export(req)
        .await
        .unwrap();
    let got: Vec<ExportLogsServiceRequest> = records(&d, "logs.bin", 2).await;
    let mut sizes: Vec<(String, usize)> = got
        .iter()
        .map(|r| {
            let bodies: Vec<_> = r
                .resource_logs
                .iter()
                .flat_map(|x| &x.scope_logs)
                .flat_map(|s| &s.log_records)
                .filter_map(|l| match l.body.as_ref().and_then(|b| b.value.clone()) {
                    Some(Value::StringValue(s)) => Some(s),
                    _ => None,
                })
                .collect();
            assert!(bodies.windows(2).all(|w| w[0] == w[1]), "a batch mixed teams: {bodies:?}");
            (bodies[0].clone(), r.resource_logs.iter().flat_map(|x| &x.scope_logs).map(|s| s.log_records.len()).sum())
        })
        .collect();
    sizes.sort();
    assert_eq!(sizes, vec![("blue".to_string(), 4), ("red".to_string(), 8)]);
    // The metadata went into the WAL with each batch; the credentials did not.
    let wal: Vec<u8> = std::fs::read_dir(d.path("data/wal"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
        .flat_map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    let has = |needle: &[u8]| wal.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"x-team"), "metadata is kept in the WAL");
    assert!(!has(b"s3cr3t"), "credentials must never be stored at rest");
    let m = d.metrics_text().await;
    assert!(m.contains("otelcol_processor_batch_batch_send_size_count{processor=\"batch\"} 2"), "{m}");
    assert!(m.contains("otelcol_processor_batch_batch_send_size_sum{processor=\"batch\"} 12.0"), "{m}");
}
