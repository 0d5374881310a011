//! The fuzz targets: each takes arbitrary bytes, runs one decoder that OpenWit exposes to the outside world,
//! and checks what must hold for any input. Panicking is the failure; refusing the input is fine.
//!
//! `fuzz/` (a cargo-fuzz project, nightly) runs them coverage-guided; `tests/fuzz/run` starts it. The test
//! suite replays every corpus file in `fuzz/corpus/<target>/` through the same functions (see the tests
//! below), so a crash found once stays fixed.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use openwit_core::columnar::{from_record_batch, to_record_batch};
use openwit_core::{Payload, Signal, otlp_json};
use prost::Message;

/// A fuzz target: any bytes in, a panic only for a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name of its fuzz binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("otlp_protobuf", otlp_protobuf),
    ("otlp_json", otlp_json),
    #[cfg(feature = "kafka")]
    ("kafka_message", kafka_message),
    ("wal_segment", wal_segment),
    ("config", config),
    #[cfg(feature = "query")]
    ("query_request", query_request),
];

fn signal(b: u8) -> Signal {
    match b % 3 {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
    }
}

/// Whatever decoded goes to Arrow and back with the same number of items (what the Parquet exporter and
/// the query engine rely on).
fn through_arrow(payload: &Payload) {
    let Ok(batch) = to_record_batch("fuzz", payload) else { return };
    let back = from_record_batch(payload.signal(), &batch).expect("a batch made by to_record_batch converts back");
    assert_eq!(back.item_count(), payload.item_count(), "items lost or made up on the way through Arrow");
}

/// OTLP protobuf, as both OTLP receivers and the WAL's replay decode it. First byte: the signal.
pub fn otlp_protobuf(data: &[u8]) {
    let Some((&s, body)) = data.split_first() else { return };
    let payload = match signal(s) {
        Signal::Traces => ExportTraceServiceRequest::decode(body).map(Payload::Traces),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body).map(Payload::Metrics),
        Signal::Logs => ExportLogsServiceRequest::decode(body).map(Payload::Logs),
    };
    if let Ok(p) = payload {
        through_arrow(&p);
    }
}

/// OTLP/JSON, as the HTTP receiver and the Kafka receiver decode it. First byte: the signal.
pub fn otlp_json(data: &[u8]) {
    let Some((&s, body)) = data.split_first() else { return };
    let payload = match signal(s) {
        Signal::Traces => otlp_json::decode::<ExportTraceServiceRequest>(body).map(Payload::Traces),
        Signal::Metrics => otlp_json::decode::<ExportMetricsServiceRequest>(body).map(Payload::Metrics),
        Signal::Logs => otlp_json::decode::<ExportLogsServiceRequest>(body).map(Payload::Logs),
    };
    if let Ok(p) = payload {
        through_arrow(&p);
        // What decodes encodes, and decodes again to the same items.
        let again = match &p {
            Payload::Traces(r) => {
                otlp_json::decode::<ExportTraceServiceRequest>(&otlp_json::encode(r)).map(Payload::Traces)
            }
            Payload::Metrics(r) => {
                otlp_json::decode::<ExportMetricsServiceRequest>(&otlp_json::encode(r)).map(Payload::Metrics)
            }
            Payload::Logs(r) => otlp_json::decode::<ExportLogsServiceRequest>(&otlp_json::encode(r)).map(Payload::Logs),
        };
        let again = again.expect("OTLP/JSON that OpenWit wrote decodes");
        assert_eq!(again.item_count(), p.item_count());
    }
}

#[cfg(feature = "kafka")]
/// A Kafka message: byte 0 the signal and encoding, byte 1 the topic's length, then the topic, one header
/// value (`X-Scope-OrgID`, up to byte 2's length), and the payload.
pub fn kafka_message(data: &[u8]) {
    let [s, topic_len, header_len, rest @ ..] = data else { return };
    let (topic, rest) = rest.split_at((*topic_len as usize).min(rest.len()));
    let (header, payload) = rest.split_at((*header_len as usize).min(rest.len()));
    let topic = String::from_utf8_lossy(topic);
    let headers = [("X-Scope-OrgID", Some(header)), ("trace-route", None)];
    if let Some(p) = openwit_receivers::kafka::fuzzing::message(signal(*s), s & 0x80 != 0, &topic, &headers, payload) {
        through_arrow(&p);
    }
}

/// A WAL segment, as recovery reads it after a crash or from a damaged disk.
pub fn wal_segment(data: &[u8]) {
    let Ok(scan) = openwit_wal::scan_segment(data) else { return };
    assert!(scan.valid_len + scan.torn_bytes <= data.len() as u64, "the scan covers more than the segment");
    let mut last_end = 0u64;
    for (start, end) in &scan.corrupt {
        assert!(start < end && *start >= last_end && *end <= data.len() as u64, "corrupt ranges in order, inside");
        last_end = *end;
    }
    for (offset, _) in &scan.records {
        assert!(*offset < data.len() as u64);
    }
}

/// A config source with `${env:…}` expansion and merging: the text up to the first newline is a `--set`,
/// the rest a YAML source, merged over a fixed base.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (set, yaml) = text.split_once('\n').unwrap_or(("", text));
    let base =
        openwit_config::ConfigSource::Yaml("receivers: {otlp: {protocols: {grpc: {endpoint: '${env:HOME}'}}}}".into());
    let sets: Vec<String> = if set.contains('=') { vec![set.to_string()] } else { Vec::new() };
    let _ = openwit_config::load(&[base, openwit_config::ConfigSource::Yaml(yaml.to_string())], &sets);
}

#[cfg(feature = "query")]
/// A query API request: the text up to the first newline is the tenant header's value (none when the
/// line is absent), then one byte for how the rest arrives (`POST` JSON body, `GET` query string, or the
/// SQL alone), then the request. A request that parses is planned as the daemon plans it (parse, the
/// statement guard, analysis with OpenWit's rules, optimisation) over an engine whose catalog is never
/// reached.
pub fn query_request(data: &[u8]) {
    use openwit_extensions::query::request::{QueryRequest, tenant};
    use std::sync::LazyLock;
    static ENGINE: LazyLock<(tokio::runtime::Runtime, openwit_extensions::query::engine::Engine)> =
        LazyLock::new(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            // The catalog's pool is made inside a runtime, even when it never connects.
            let _inside = rt.enter();
            let dir = std::env::temp_dir().join("openwit-fuzz-query");
            // Opened lazily and never connected: planning does not read the catalog.
            let catalog = openwit_catalog::Catalog::open(&format!("sqlite://{}/catalog.db", dir.display()))
                .expect("a SQLite URL");
            let limits = openwit_extensions::query::engine::Limits {
                max_rows: 1000,
                timeout: std::time::Duration::from_secs(5),
                memory_bytes: 64 << 20,
                index_cache_bytes: 1 << 20,
                bloom_filter_cache_bytes: 1 << 20,
            };
            let engine = openwit_extensions::query::engine::Engine::new(
                catalog,
                Default::default(),
                Default::default(),
                limits,
                Default::default(),
                Default::default(),
            )
            .expect("the engine builds");
            drop(_inside);
            (rt, engine)
        });
    let (header, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (Some(&data[..at]), &data[at + 1..]),
        None => (None, data),
    };
    let tenants = openwit_core::TenantConfig::default();
    let Ok(tenant) = tenant(&tenants, header) else { return };
    let Some((&how, body)) = rest.split_first() else { return };
    let request = match how % 3 {
        0 => QueryRequest::from_json(body),
        1 => match std::str::from_utf8(body) {
            Ok(q) => QueryRequest::from_query_string(q),
            Err(_) => return,
        },
        _ => match std::str::from_utf8(body) {
            Ok(sql) => {
                Ok(QueryRequest { sql: sql.to_string(), format: openwit_extensions::query::output::Format::Json })
            }
            Err(_) => return,
        },
    };
    let Ok(request) = request else { return };
    let (rt, engine) = &*ENGINE;
    // Errors are answers (400 and the like); only a panic is a finding.
    let _ = rt.block_on(engine.plan(tenant.as_str(), &request.sql));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn corpus(target: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
    }

    /// Every corpus file of every target, through its target: what the fuzzers found stays fixed.
    #[test]
    fn every_corpus_input_runs_without_a_panic() {
        for &(name, target) in TARGETS {
            let files: Vec<PathBuf> = std::fs::read_dir(corpus(name))
                .unwrap_or_else(|e| panic!("fuzz/corpus/{name}: {e}"))
                .map(|e| e.unwrap().path())
                .collect();
            assert!(!files.is_empty(), "fuzz/corpus/{name} is empty");
            for f in files {
                // A fuzzer running on the same corpus replaces files as it shrinks them.
                let data = match std::fs::read(&f) {
                    Ok(d) => d,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => panic!("{}: {e}", f.display()),
                };
                let run = std::panic::catch_unwind(|| target(&data));
                assert!(run.is_ok(), "{name} panics on {}", f.display());
            }
        }
    }

    /// A short random walk from each corpus file (bit flips, truncations, splices): a cheap stand-in for
    /// the fuzzer on the stable toolchain, the same every run.
    #[test]
    fn mutations_of_the_corpus_run_without_a_panic() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for &(name, target) in TARGETS {
            let inputs: Vec<Vec<u8>> = std::fs::read_dir(corpus(name))
                .unwrap()
                .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
                .collect();
            for _ in 0..2_000 {
                let mut data = inputs[rand() as usize % inputs.len()].clone();
                for _ in 0..1 + rand() % 4 {
                    if data.is_empty() {
                        break;
                    }
                    let at = rand() as usize % data.len();
                    match rand() % 4 {
                        0 => data[at] ^= 1 << (rand() % 8),
                        1 => data.truncate(at),
                        2 => data[at] = rand() as u8,
                        _ => {
                            let other = &inputs[rand() as usize % inputs.len()];
                            let from = rand() as usize % other.len().max(1);
                            data.splice(at..at, other[from.min(other.len())..].iter().copied().take(64));
                        }
                    }
                }
                let run = std::panic::catch_unwind(|| target(&data));
                assert!(run.is_ok(), "{name} panics on {data:?}");
            }
        }
    }
}

/// Writes the seed corpus (`cargo test -p openwit-fuzz-targets -- --ignored write_seed_corpus`): a few
/// valid inputs per target for the fuzzers to start from. The files are committed; the fuzzers add theirs.
#[cfg(test)]
mod seeds {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
        number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn attrs() -> Vec<KeyValue> {
        vec![
            kv("s", Value::StringValue("v".into())),
            kv("i", Value::IntValue(-7)),
            kv("d", Value::DoubleValue(1.5)),
            kv("b", Value::BoolValue(true)),
            kv("y", Value::BytesValue(vec![0, 1, 255])),
            kv("a", Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::IntValue(1)) }] })),
            kv("m", Value::KvlistValue(KeyValueList { values: vec![kv("n", Value::StringValue("x".into()))] })),
        ]
    }

    fn resource() -> Option<Resource> {
        Some(Resource { attributes: vec![kv("service.name", Value::StringValue("svc".into()))], ..Default::default() })
    }

    fn traces() -> ExportTraceServiceRequest {
        let span = Span {
            trace_id: (1..=16).collect(),
            span_id: (1..=8).collect(),
            parent_span_id: (9..=16).collect(),
            name: "GET /".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_100_000_000,
            attributes: attrs(),
            events: vec![span::Event { name: "e".into(), attributes: attrs(), ..Default::default() }],
            links: vec![span::Link { trace_id: vec![7; 16], span_id: vec![8; 8], ..Default::default() }],
            status: Some(Status { message: "ok".into(), code: 1 }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: "lib".into(), version: "1".into(), ..Default::default() }),
                    spans: vec![span.clone(), Span { name: "second".into(), ..span }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn metrics() -> ExportMetricsServiceRequest {
        let point = NumberDataPoint {
            attributes: attrs(),
            time_unix_nano: 1_700_000_000_000_000_000,
            value: Some(number_data_point::Value::AsDouble(2.5)),
            ..Default::default()
        };
        let gauge = Metric {
            name: "g".into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: vec![point.clone()] })),
            ..Default::default()
        };
        let sum = Metric {
            name: "s".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let hist = Metric {
            name: "h".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 3,
                    sum: Some(6.0),
                    bucket_counts: vec![1, 2],
                    explicit_bounds: vec![1.0],
                    time_unix_nano: 1_700_000_000_000_000_000,
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            })),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(),
                scope_metrics: vec![ScopeMetrics { metrics: vec![gauge, sum, hist], ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    fn logs() -> ExportLogsServiceRequest {
        let record = LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue { value: Some(Value::KvlistValue(KeyValueList { values: attrs() })) }),
            attributes: attrs(),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    fn write(target: &str, name: &str, data: &[u8]) {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    }

    #[test]
    #[ignore = "writes the seed corpus into fuzz/corpus"]
    fn write_seed_corpus() {
        let proto: [(u8, Vec<u8>, Vec<u8>); 3] = [
            (0, traces().encode_to_vec(), otlp_json::encode(&traces())),
            (1, metrics().encode_to_vec(), otlp_json::encode(&metrics())),
            (2, logs().encode_to_vec(), otlp_json::encode(&logs())),
        ];
        for (s, pb, json) in &proto {
            write("otlp_protobuf", &format!("seed-{s}"), &[&[*s][..], pb].concat());
            write("otlp_json", &format!("seed-{s}"), &[&[*s][..], json].concat());
            let (topic, header) = (b"t.acme", b"team-1");
            for (enc, body) in [(0u8, pb), (0x80, json)] {
                let head = [*s | enc, topic.len() as u8, header.len() as u8];
                write("kafka_message", &format!("seed-{s}-{enc}"), &[&head[..], topic, header, body].concat());
            }
        }
        write("otlp_json", "snake-case", b"\x00{\"resource_spans\":[{\"scope_spans\":[{\"spans\":[{\"kind\":\"SPAN_KIND_CLIENT\",\"trace_id\":\"0102030405060708090a0b0c0d0e0f10\"}]}]}]}");
        // A WAL segment with two batches and a completion, as the WAL writes it.
        let dir = std::env::temp_dir().join(format!("openwit-fuzz-seed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg =
            openwit_wal::WalConfig { dir: dir.clone(), fsync: false, segment_bytes: 1 << 20, max_disk_bytes: 1 << 30 };
        {
            let (mut w, _) = openwit_wal::Wal::open(cfg).unwrap();
            let batch = |n: u8, payload: Vec<u8>| openwit_wal::WalBatch {
                id: vec![n; 16],
                signal: 1,
                tenant: "t".into(),
                receiver: "kafka".into(),
                items: 2,
                payload,
                sources: vec![openwit_wal::SourceRange {
                    topic: "spans".into(),
                    partition: 0,
                    first_offset: 1,
                    last_offset: 2,
                }],
                ..Default::default()
            };
            w.append_batches(&[batch(1, traces().encode_to_vec()), batch(2, vec![1, 2, 3])]).unwrap();
            w.complete(&[vec![1; 16]]).unwrap();
        }
        let seg = std::fs::read(dir.join("00000000000000000001.wal")).unwrap();
        write("wal_segment", "seed-two-batches", &seg);
        write("wal_segment", "seed-header-only", &seg[..16]);
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in [
            (
                "collector",
                "processors.batch.timeout=2s\nreceivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: ${env:OTLP_HTTP:-localhost:4318}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n",
            ),
            ("anchors", "\nx: &a {k: [1, 2, {y: ${HOME}}]}\nz: *a\nw: ${env:UNSET_VAR}\n"),
            ("shorthand", "exporters::debug::verbosity=detailed\nprocessors::batch::send_batch_size: 10\n"),
        ] {
            write("config", name, text.as_bytes());
        }
        // The query examples of docs/query.md as raw SQL, and requests in each form the API takes.
        let docs = include_str!("../../../docs/query.md");
        let examples = docs.split("```sql").nth(1).expect("docs/query.md has a SQL example block");
        let examples = examples.split("```").next().unwrap();
        let mut sql = String::new();
        for (i, line) in examples.lines().filter(|l| !l.starts_with("--") && !l.trim().is_empty()).enumerate() {
            sql.push_str(line);
            sql.push('\n');
            if line.trim_end().ends_with(';') {
                write(
                    "query_request",
                    &format!("docs-{i}"),
                    format!("\x02{}", sql.trim_end_matches([';', '\n'])).as_bytes(),
                );
                sql.clear();
            }
        }
        for (name, data) in [
            ("post", &b"acme\n\x00{\"sql\": \"SELECT count(*) FROM logs WHERE severity_number >= 17\", \"format\": \"csv\"}"[..]),
            ("get", b"\x01sql=SELECT+*+FROM+spans+WHERE+trace_id+%3D+%275b8efff798038103d269b633813fc60c%27+LIMIT+5&format=ndjson"),
            ("ddl", b"\x02CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'"),
            ("set", b"\x02SET datafusion.execution.target_partitions = 1"),
            ("information-schema", b"team-1\n\x02SELECT table_name, column_name FROM information_schema.columns"),
        ] {
            write("query_request", name, data);
        }
    }
}
