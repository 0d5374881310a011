//! Builds an index from log rows made by `openwit_core::columnar` and searches it.

use crate::search::Searchable;
use crate::spec::{Spec, Table, Tokenizer};
use crate::{build, bundle, scan, search};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use openwit_core::Payload;
use std::sync::Arc;

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
        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
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

/// The default logs spec, with `trace_id` added.
fn spec() -> Spec {
    let mut s = Spec::default_for(Table::Logs);
    s.fields.push("trace_id".into());
    s
}

fn index() -> tantivy::Index {
    let scratch = tempfile::tempdir().unwrap();
    let bytes = build::build(&spec(), &rows(), scratch.path()).unwrap();
    bundle::open(bytes).unwrap().0
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
    assert_eq!(q("(timeout OR good) AND NOT reset", body), [0, 3], "AND NOT as in Lucene");
    assert_eq!(q("\"reset AND NOT\" OR good", body), [3], "not inside a phrase");
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
    let mut bytes = build::build(&spec(), &rows(), scratch.path()).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    let Err(e) = bundle::open(bytes) else { panic!("a damaged bundle opened") };
    assert!(e.to_string().contains("damaged"), "{e}");
}

#[test]
fn a_scan_answers_as_the_index_does() {
    let index = index();
    let spec = spec();
    let batch = arrow::compute::concat_batches(&rows()[0].schema(), &rows()).unwrap();
    let body = batch.column_by_name("body").unwrap().clone();
    for q in [
        "timeout",
        "\"connection reset\"",
        "timeout OR good",
        "timeout NOT connection",
        "\"connection re\"*",
        "nothing",
    ] {
        let by_index = search::rows(&index, q, Some(&["body"])).unwrap();
        let flags = scan::matches(&spec, "body", &body, q).unwrap();
        assert_eq!(set(&flags), by_index, "{q}");
    }
    for q in ["severity_text:ERROR reset", "attributes:\"http.route=/cart\"", "shop"] {
        let by_index = search::rows(&index, q, None).unwrap();
        assert_eq!(set(&scan::matches_all(&spec, &batch, q).unwrap()), by_index, "{q}");
    }
    let texts: arrow::array::ArrayRef = Arc::new(arrow::array::StringArray::from(vec![None, Some("a timeout")]));
    assert_eq!(scan::matches(&spec, "body", &texts, "timeout").unwrap(), [false, true]);
    assert!(scan::matches(&spec, "body", &texts, "body:(").is_err());
    let e = scan::matches(&spec, "body", &texts, "severity_text:ERROR").unwrap_err();
    assert!(e.to_string().to_lowercase().contains("field"), "a query naming another field is refused: {e}");
}

fn set(flags: &[bool]) -> Vec<u64> {
    flags.iter().enumerate().filter(|(_, m)| **m).map(|(i, _)| i as u64).collect()
}

fn texts(v: &[&str]) -> arrow::array::ArrayRef {
    Arc::new(arrow::array::StringArray::from(v.to_vec()))
}

#[test]
fn long_words_are_found_and_values_too_long_to_index_are_flagged() {
    let spec = Spec::default_for(Table::Logs);
    let word = "a".repeat(300);
    let flags = scan::matches(&spec, "body", &texts(&[&format!("x {word} y"), "x"]), &word).unwrap();
    assert_eq!(flags, [true, false], "words over Tantivy's default 40 bytes are indexed");
    let huge = "b".repeat(crate::spec::LONG_TEXT + 10);
    let body = texts(&[&huge, "short"]);
    let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
        "body",
        arrow::datatypes::DataType::Utf8,
        true,
    )]);
    let batch = arrow::record_batch::RecordBatch::try_new(Arc::new(schema), vec![body]).unwrap();
    let narrowed = Spec { fields: vec!["body".into()], ..spec };
    let s = Searchable::new(build::in_ram(&narrowed, &batch).unwrap()).unwrap();
    let q = s.parse("openwit_flags:\"long:body\"", &["body"]).unwrap();
    assert_eq!(s.hits(q.as_ref()).unwrap().rows, [0], "the row whose value may hold an unindexed word is marked");
}

#[test]
fn tokenizers_and_positions_follow_the_spec() {
    let body = texts(&["Connection timeouts observed", "GET /Cart"]);
    let with = |tokenizer, positions| Spec { tokenizer, positions, ..Spec::default_for(Table::Logs) };
    let m = |spec: &Spec, q: &str| scan::matches(spec, "body", &body, q).map(|f| set(&f));
    assert_eq!(m(&with(Tokenizer::Stemming, true), "timeout").unwrap(), [0], "stems");
    assert!(m(&with(Tokenizer::Default, true), "timeout").unwrap().is_empty(), "no stems by default");
    assert_eq!(m(&with(Tokenizer::Raw, true), "\"GET /Cart\"").unwrap(), [1], "raw: the whole value");
    assert!(m(&with(Tokenizer::Raw, true), "cart").unwrap().is_empty());
    assert_eq!(m(&with(Tokenizer::Lowercase, true), "\"get /cart\"").unwrap(), [1]);
    // A scan answers a phrase whatever the spec; an index built without positions cannot.
    let no_positions = with(Tokenizer::Default, false);
    assert_eq!(m(&no_positions, "\"connection timeouts\"").unwrap(), [0]);
    let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
        "body",
        arrow::datatypes::DataType::Utf8,
        true,
    )]);
    let batch = arrow::record_batch::RecordBatch::try_new(Arc::new(schema), vec![body.clone()]).unwrap();
    let narrowed = Spec { fields: vec!["body".into()], ..no_positions };
    let s = Searchable::new(build::in_ram(&narrowed, &batch).unwrap()).unwrap();
    let e = s.parse("\"connection timeouts\"", &["body"]).map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("position"), "a phrase needs positions: {e}");
    assert_eq!(s.analysis("body").map(|a| a.1), Some(false));
}

#[test]
fn spans_are_indexed_by_name_status_message_events_and_attributes() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Event};
    let spans = [("GET /cart", "", "exception"), ("db query", "deadlock detected", "retry")]
        .iter()
        .map(|(name, msg, event)| Span {
            name: name.to_string(),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            status: Some(Status { message: msg.to_string(), code: 2 }),
            events: vec![Event { name: event.to_string(), ..Default::default() }],
            attributes: vec![kv("db.system", Value::StringValue("postgresql".into()))],
            ..Default::default()
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    let batch = openwit_core::columnar::to_record_batch("t", &Payload::Traces(req)).unwrap();
    let spec = Spec::default_for(Table::Spans);
    let scratch = tempfile::tempdir().unwrap();
    let index = bundle::open(build::build(&spec, std::slice::from_ref(&batch), scratch.path()).unwrap()).unwrap().0;
    let q = |text: &str| search::rows(&index, text, None).unwrap();
    assert_eq!(q("cart"), [0]);
    assert_eq!(q("deadlock"), [1]);
    assert_eq!(q("events:exception"), [0]);
    assert_eq!(q("attributes:\"db.system=postgresql\""), [0, 1]);
    assert_eq!(set(&scan::matches_all(&spec, &batch, "retry OR cart").unwrap()), [0, 1]);
}

#[test]
fn hits_carry_each_rows_time() {
    let s = Searchable::new(index()).unwrap();
    let q = s.parse("timeout", &["body"]).unwrap();
    let hits = s.hits(q.as_ref()).unwrap();
    let batch = arrow::compute::concat_batches(&rows()[0].schema(), &rows()).unwrap();
    let time = batch.column_by_name("time").unwrap();
    let time = arrow::array::AsArray::as_primitive::<arrow::datatypes::TimestampNanosecondType>(time);
    assert_eq!(hits.rows, [0, 2]);
    assert_eq!(hits.times, [time.value(0), time.value(2)]);
    assert_eq!(s.count(q.as_ref()).unwrap(), 2);
    assert_eq!(s.docs(), 5);
}

#[test]
fn a_bundle_leaves_out_the_document_stores_and_still_opens() {
    let scratch = tempfile::tempdir().unwrap();
    let bytes = build::build(&spec(), &rows(), scratch.path()).unwrap();
    let dir = bundle::BundleDirectory::new(tantivy::directory::OwnedBytes::new(bytes.clone())).unwrap();
    let names: Vec<&str> = dir.names().collect();
    assert!(names.iter().any(|n| n.ends_with(".idx")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".store")), "no document store is kept: {names:?}");
    assert_eq!(search::rows(&bundle::open(bytes).unwrap().0, "timeout", Some(&["body"])).unwrap(), [0, 2]);
}

#[test]
fn a_bundle_tells_the_spec_it_was_built_with() {
    let s = Searchable::new(index()).unwrap();
    assert_eq!(s.spec(), Some(&spec()));
    let texts = texts(&["x"]);
    let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
        "body",
        arrow::datatypes::DataType::Utf8,
        true,
    )]);
    let batch = arrow::record_batch::RecordBatch::try_new(Arc::new(schema), vec![texts]).unwrap();
    let ram = Searchable::new(
        build::in_ram(&Spec { fields: vec!["body".into()], ..Spec::default_for(Table::Logs) }, &batch).unwrap(),
    )
    .unwrap();
    assert_eq!(ram.spec(), None);
}

#[test]
fn words_and_phrases_are_matched_row_by_row_as_an_index_of_the_rows_would() {
    let spec = spec();
    let batch = arrow::compute::concat_batches(&rows()[0].schema(), &rows()).unwrap();
    let body = batch.column_by_name("body").unwrap().clone();
    let narrowed = Spec { fields: vec!["body".into()], ..spec.clone() };
    for q in [
        "timeout",
        "TIMEOUT reset",
        "\"connection reset\"",
        "\"reset connection\"",
        "timeout OR good",
        "(timeout OR good) AND NOT reset",
        "timeout NOT \"connection reset\"",
        "timeout -reset",
        "nothing",
    ] {
        let direct = scan::direct::matches(&narrowed, "body", &body, q).unwrap().expect("evaluated row by row");
        let index = search::rows(&index(), q, Some(&["body"])).unwrap();
        assert_eq!(set(&direct), index, "{q}");
    }
    for q in ["\"connection re\"*", "\"timeout reset\"~2", "body:[a TO b]"] {
        assert!(scan::direct::matches(&narrowed, "body", &body, q).unwrap().is_none(), "{q} goes the general way");
        assert!(scan::matches(&spec, "body", &body, q).is_ok(), "{q}");
    }
}

/// Times as a file's rows hold them: runs (one per service) of rising times, or anything at all.
fn times() -> impl proptest::strategy::Strategy<Value = Vec<i64>> {
    use proptest::prelude::*;
    let runs =
        prop::collection::vec((any::<i64>(), prop::collection::vec(0i64..5_000_000, 0..300)), 0..4).prop_map(|runs| {
            runs.into_iter()
                .flat_map(|(start, steps)| {
                    steps.into_iter().scan(start, |t, d| {
                        *t = t.wrapping_add(d);
                        Some(*t)
                    })
                })
                .collect()
        });
    prop_oneof![runs, prop::collection::vec(any::<i64>(), 0..400)]
}

proptest::proptest! {
    #[test]
    fn the_time_column_gives_back_the_time_of_every_row_asked_for(
        times in times(),
        every in 1usize..20,
        piece in 1usize..700,
    ) {
        // Written as a build writes them: a batch's times at a time, batches of any size.
        let mut w = crate::time::TimeWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
        for batch in times.chunks(piece) {
            w.push(batch).unwrap();
        }
        let bytes = w.finish().unwrap().into_inner();
        proptest::prop_assert_eq!(&bytes, &crate::time::encode(&times), "pieces or whole, the same column");
        let column = crate::time::TimeColumn::open(tantivy::directory::OwnedBytes::new(bytes)).unwrap();
        proptest::prop_assert_eq!(column.rows(), times.len() as u64);
        let all: Vec<u64> = (0..times.len() as u64).collect();
        proptest::prop_assert_eq!(&column.times(&all).unwrap(), &times);
        let some: Vec<u64> = all.iter().copied().step_by(every).collect();
        let want: Vec<i64> = some.iter().map(|r| times[*r as usize]).collect();
        proptest::prop_assert_eq!(column.times(&some).unwrap(), want);
        proptest::prop_assert!(column.times(&[times.len() as u64]).is_err(), "a row past the end is an error");
    }
}

#[test]
fn a_cut_time_column_is_an_error_not_a_wrong_answer() {
    let bytes = crate::time::encode(&(0..1000).map(|i| i * 1_000_003).collect::<Vec<i64>>());
    for cut in [0, 11, 30, bytes.len() - 1] {
        let e = crate::time::TimeColumn::open(tantivy::directory::OwnedBytes::new(bytes[..cut].to_vec())).unwrap_err();
        assert!(e.to_string().contains("openwit_time"), "{e}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(crate::time::TimeColumn::open(tantivy::directory::OwnedBytes::new(longer)).is_err());
}

#[test]
fn a_damaged_file_in_a_bundle_fails_to_open_or_holds_what_was_written() {
    use tantivy::Directory;
    let scratch = tempfile::tempdir().unwrap();
    let bytes = build::build(&spec(), &rows(), scratch.path()).unwrap();
    let open = |b: Vec<u8>| bundle::BundleDirectory::new(tantivy::directory::OwnedBytes::new(b));
    let written = open(bytes.clone()).unwrap();
    let files = |d: &bundle::BundleDirectory| -> Vec<(String, Vec<u8>)> {
        let names: Vec<String> = d.names().map(String::from).collect();
        names.into_iter().map(|n| (n.clone(), d.atomic_read(std::path::Path::new(&n)).unwrap())).collect()
    };
    // Every byte of the files (not the table) changed in turn: zstd's checksum (or its own checks)
    // refuses the file, unless the byte was one decompression does not use (a few in zstd's tables).
    let table_len = u64::from_le_bytes(bytes[bytes.len() - 16..bytes.len() - 8].try_into().unwrap()) as usize;
    let files_end = bytes.len() - 16 - table_len;
    let mut refused = 0;
    for at in 0..files_end {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x5a;
        match open(damaged) {
            Ok(d) => assert!(files(&d) == files(&written), "byte {at} changed opened as other files"),
            Err(e) => {
                assert!(e.to_string().contains("damaged"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused * 10 > files_end * 9, "only {refused} of {files_end} changed bytes were noticed");
}

#[test]
fn a_bundle_of_an_older_format_is_refused_as_such() {
    // Formats 1 and 2 held FST term dictionaries, which this Tantivy (sstable dictionaries) cannot read:
    // they must be refused by name (so they are scanned and rebuilt), not opened and misread.
    let scratch = tempfile::tempdir().unwrap();
    let current = build::build(&spec(), &rows(), scratch.path()).unwrap();
    assert!(bundle::open(current.clone()).is_ok());
    for magic in bundle::OLDER {
        let mut older = current.clone();
        let n = older.len();
        older[n - 8..].copy_from_slice(magic);
        let Err(e) = bundle::open(older) else { panic!("an older bundle must not open") };
        assert!(e.to_string().contains("older format"), "{e}");
    }
}

#[test]
fn a_bundle_is_compressed_and_counts_what_it_holds_open() {
    let scratch = tempfile::tempdir().unwrap();
    let bytes = build::build(&spec(), &rows(), scratch.path()).unwrap();
    let packed = bytes.len() as u64;
    let (_, resident) = bundle::open(bytes).unwrap();
    let files: u64 = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            !n.ends_with(".lock") && !n.ends_with(".store")
        })
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(resident, files, "open, the bundle holds its files as they were written");
    assert!(packed < files, "{packed} bytes packed from {files}");
}

#[test]
fn a_build_from_batches_read_one_by_one_holds_one_at_a_time() {
    // A file's rows are indexed as they are decoded: a compacted file's columns do not fit in memory.
    let copies = 20;
    let mut yielded: Vec<std::sync::Weak<dyn arrow::array::Array>> = Vec::new();
    let mut most_alive = 0;
    let batches = (0..copies).flat_map(|_| rows()).map(|b| {
        most_alive = most_alive.max(yielded.iter().filter(|w| w.strong_count() > 0).count());
        yielded.push(Arc::downgrade(b.column(0)));
        Ok(b)
    });
    let scratch = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    let len = build::build_from(&spec(), batches, build::WRITER_HEAP, scratch.path(), &mut bytes).unwrap();
    assert_eq!(len, bytes.len() as u64, "the length returned is the bundle's");
    assert_eq!(most_alive, 0, "earlier batches were still held when the next was read");
    let index = bundle::open(bytes).unwrap().0;
    let hits = search::rows(&index, "timeout", Some(&["body"][..])).unwrap();
    let expected: Vec<u64> = (0..copies as u64).flat_map(|c| [c * 5, c * 5 + 2]).collect();
    assert_eq!(hits, expected, "every batch indexed, rows numbered across them");
}

#[test]
fn the_arena_given_is_the_one_tantivy_indexes_in() {
    // `index.memory_megabytes` reaches Tantivy: one under its least (15 MB) is refused by it, the least
    // builds the same index as the default.
    let build = |heap: usize| {
        let scratch = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        build::build_from(&spec(), rows().into_iter().map(Ok), heap, scratch.path(), &mut bytes).map(|_| bytes)
    };
    let refused = build(14 << 20).unwrap_err().to_string();
    assert!(refused.contains("memory"), "{refused}");
    let least = bundle::open(build(15 << 20).unwrap()).unwrap().0;
    let default = bundle::open(build(build::WRITER_HEAP).unwrap()).unwrap().0;
    for word in ["timeout", "connection"] {
        let hits = search::rows(&least, word, Some(&["body"][..])).unwrap();
        assert!(!hits.is_empty(), "{word}");
        assert_eq!(hits, search::rows(&default, word, Some(&["body"][..])).unwrap(), "{word}");
    }
}
