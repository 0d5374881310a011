//! Builds an index from log rows made by `openwit_core::columnar` and searches it.

use crate::{build, bundle, search};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use openwit_core::Payload;

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

/// Five log rows: (body, severity, route attribute).
fn rows() -> Vec<arrow::record_batch::RecordBatch> {
    let records = [
        ("GET /cart timeout after 30s", "WARN", "/cart"),
        ("connection reset by peer", "ERROR", "/pay"),
        ("Timeout: connection reset while reading", "ERROR", "/health"),
        ("all good", "INFO", "/health"),
        ("timeouts are configured", "INFO", "/cart"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (body, sev, route))| LogRecord {
        body: Some(AnyValue { value: Some(Value::StringValue(body.to_string())) }),
        severity_text: sev.to_string(),
        trace_id: vec![i as u8; 16],
        attributes: vec![kv("http.route", Value::StringValue(route.to_string())), kv("n", Value::IntValue(i as i64))],
        ..Default::default()
    })
    .collect::<Vec<_>>();
    let resource =
        Resource { attributes: vec![kv("service.name", Value::StringValue("shop".into()))], ..Default::default() };
    // Two batches: row numbers count across them.
    let (a, b) = records.split_at(2);
    [a, b]
        .iter()
        .map(|part| {
            let req = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(resource.clone()),
                    scope_logs: vec![ScopeLogs { log_records: part.to_vec(), ..Default::default() }],
                    ..Default::default()
                }],
            };
            openwit_core::columnar::to_record_batch("t", &Payload::Logs(req)).unwrap()
        })
        .collect()
}

fn index() -> tantivy::Index {
    let scratch = tempfile::tempdir().unwrap();
    let bytes = build::logs(&rows(), scratch.path()).unwrap();
    bundle::open(bytes).unwrap()
}

#[test]
fn words_phrases_booleans_prefixes_and_exact_terms_find_their_rows() {
    let index = index();
    let body = Some(&["body"][..]);
    let q = |text: &str, fields| search::rows(&index, text, fields).unwrap();
    assert_eq!(q("timeout", body), [0, 2], "words match whole, in any case");
    assert_eq!(q("\"connection reset\"", body), [1, 2], "a phrase");
    assert_eq!(q("timeout AND \"connection reset\"", body), [2]);
    assert_eq!(q("timeout reset", body), [2], "terms without an operator must all match");
    assert_eq!(q("timeout OR good", body), [0, 2, 3]);
    assert_eq!(q("\"connection re\"*", body), [1, 2], "a phrase whose last word is a prefix");
    assert_eq!(q("timeout NOT connection", body), [0], "NOT");
    assert_eq!(q("severity_text:ERROR", None), [1, 2], "exact terms");
    assert!(q("severity_text:error", None).is_empty(), "exact terms keep their case");
    assert_eq!(q("attributes:\"http.route=/health\"", None), [2, 3]);
    assert!(q("attributes:\"n=1\"", None).is_empty(), "only string attributes are terms");
    assert_eq!(q(&format!("trace_id:{}", "03".repeat(16)), None), [3]);
    assert_eq!(q("service_name:shop", None).len(), 5);
    assert_eq!(q("reset", None), [1, 2], "match_all reads the body too");
}

#[test]
fn a_bad_query_or_a_damaged_bundle_is_an_error_that_says_so() {
    let index = index();
    let e = search::rows(&index, "body:(", None).unwrap_err();
    assert!(e.to_string().contains("not valid"), "{e}");
    let scratch = tempfile::tempdir().unwrap();
    let mut bytes = build::logs(&rows(), scratch.path()).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    let Err(e) = bundle::open(bytes) else { panic!("a damaged bundle opened") };
    assert!(e.to_string().contains("damaged"), "{e}");
}

#[test]
fn a_scan_answers_as_the_index_does() {
    let index = index();
    let bodies: Vec<String> = rows()
        .iter()
        .flat_map(|b| {
            let a = arrow::array::AsArray::as_string::<i32>(b.column_by_name("body").unwrap()).clone();
            (0..arrow::array::Array::len(&a)).map(move |i| a.value(i).to_string()).collect::<Vec<_>>()
        })
        .collect();
    for q in [
        "timeout",
        "\"connection reset\"",
        "timeout OR good",
        "timeout NOT connection",
        "\"connection re\"*",
        "nothing",
    ] {
        let by_index = search::rows(&index, q, Some(&["body"])).unwrap();
        let by_scan: Vec<u64> = crate::scan::matches(bodies.iter().map(|b| Some(b.as_str())), q)
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| i as u64)
            .collect();
        assert_eq!(by_scan, by_index, "{q}");
    }
    assert_eq!(crate::scan::matches([None, Some("a timeout")], "timeout").unwrap(), [false, true]);
    assert!(crate::scan::matches([Some("x")], "body:(").is_err());
}
