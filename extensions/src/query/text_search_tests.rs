//! Property tests through SQL: for random log bodies and random full-text queries, `text_match` answers
//! exactly what a reference evaluation gives (its own tokenizer: runs of letters and digits,
//! lower-cased), whether a file is searched by its index or scanned; `LIKE`/`ILIKE '%word%'` keep their
//! SQL meaning where indexes narrow them.

use super::engine::{Engine, Limits};
use arrow::array::{Array, AsArray};
use futures::StreamExt;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use openwit_catalog::{Catalog, FileBatch, FileRow, IndexRow, STABLE, TANTIVY};
use openwit_core::text_index::{Spec, Table};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const VOCABULARY: [&str; 10] = [
    "timeout",
    "connection",
    "reset",
    "peer",
    "error",
    "ünïcode",
    "x1",
    "a",
    "retry",
    "averyveryverylongwordthatisdefinitelylongerthanfortybytes",
];
const SEPARATORS: [&str; 6] = [" ", ", ", ": ", "/", "-", "_"];

/// A full-text query, rendered in Tantivy's syntax and evaluated by the reference.
#[derive(Clone, Debug)]
enum Q {
    Word(String),
    Phrase(Vec<String>),
    And(Box<Q>, Box<Q>),
    Or(Box<Q>, Box<Q>),
    AndNot(Box<Q>, Box<Q>),
}

impl Q {
    fn render(&self) -> String {
        match self {
            Q::Word(w) => w.clone(),
            Q::Phrase(ws) => format!("\"{}\"", ws.join(" ")),
            Q::And(a, b) => format!("({} AND {})", a.render(), b.render()),
            Q::Or(a, b) => format!("({} OR {})", a.render(), b.render()),
            Q::AndNot(a, b) => format!("({} AND NOT {})", a.render(), b.render()),
        }
    }

    fn matches(&self, words: &[String]) -> bool {
        match self {
            Q::Word(w) => words.contains(&w.to_lowercase()),
            Q::Phrase(ws) => {
                let ws: Vec<String> = ws.iter().map(|w| w.to_lowercase()).collect();
                words.windows(ws.len()).any(|win| win == ws.as_slice())
            }
            Q::And(a, b) => a.matches(words) && b.matches(words),
            Q::Or(a, b) => a.matches(words) || b.matches(words),
            Q::AndNot(a, b) => a.matches(words) && !b.matches(words),
        }
    }
}

/// The reference tokenizer.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase).collect()
}

fn word() -> impl Strategy<Value = String> {
    (0..VOCABULARY.len(), any::<bool>())
        .prop_map(|(i, upper)| if upper { VOCABULARY[i].to_uppercase() } else { VOCABULARY[i].to_string() })
}

fn query() -> impl Strategy<Value = Q> {
    let leaf = prop_oneof![
        3 => word().prop_map(Q::Word),
        1 => prop::collection::vec(word(), 2..4).prop_map(Q::Phrase),
    ];
    leaf.prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Q::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Q::Or(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Q::AndNot(Box::new(a), Box::new(b))),
        ]
    })
}

fn body() -> impl Strategy<Value = String> {
    prop::collection::vec((word(), 0..SEPARATORS.len()), 0..8).prop_map(|parts| {
        parts.iter().map(|(w, s)| format!("{w}{}", SEPARATORS[*s])).collect::<String>().trim_end().to_string()
    })
}

/// A needle for `LIKE '%…%'`: part of a word, in some case.
fn needle() -> impl Strategy<Value = String> {
    (0..VOCABULARY.len(), 0usize..4, 1usize..5, any::<bool>()).prop_map(|(i, start, len, upper)| {
        let w: Vec<char> = VOCABULARY[i].chars().filter(char::is_ascii_alphanumeric).collect();
        let s = start.min(w.len() - 1);
        let n: String = w[s..(s + len).min(w.len())].iter().collect();
        if upper { n.to_uppercase() } else { n }
    })
}

/// Stores `bodies` as logs files of tenant `t` under `dir`: the first file with its index, the second
/// without (scanned).
async fn store(
    dir: &std::path::Path,
    catalog: &Catalog,
    parts: [&[String]; 2],
    props: Option<parquet::file::properties::WriterProperties>,
) {
    let records = |bodies: &[String]| -> Vec<LogRecord> { bodies.iter().map(|b| record(b, Vec::new())).collect() };
    store_records(dir, catalog, [&records(parts[0]), &records(parts[1])], props).await
}

fn record(body: &str, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        body: Some(AnyValue { value: Some(Value::StringValue(body.to_string())) }),
        attributes,
        ..Default::default()
    }
}

/// [`store`] for whole records (their times set here).
async fn store_records(
    dir: &std::path::Path,
    catalog: &Catalog,
    parts: [&[LogRecord]; 2],
    props: Option<parquet::file::properties::WriterProperties>,
) {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    for (n, part) in parts.iter().enumerate() {
        let records = part
            .iter()
            .enumerate()
            .map(|(i, r)| LogRecord { time_unix_nano: 1_767_225_600_000_000_000 + i as u64, ..r.clone() })
            .collect();
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                ..Default::default()
            }],
        };
        let batch = openwit_core::columnar::to_record_batch("t", &openwit_core::Payload::Logs(req)).unwrap();
        let rel = format!("logs/f{n}.parquet");
        let path = dir.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), props.clone())
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let row = FileRow {
            file_id: format!("f{n}"),
            exporter: "parquet".into(),
            node_id: "n".into(),
            tenant: "t".into(),
            signal: "logs".into(),
            table_name: "logs".into(),
            root: format!("file://{}", dir.display()),
            path: rel.clone(),
            min_time: 0,
            max_time: i64::MAX,
            row_count: part.len() as i64,
            byte_size: std::fs::metadata(&path).unwrap().len() as i64,
            state: STABLE.into(),
            created_at: 1,
            uploaded_at: Some(1),
        };
        catalog.add_file(&row, &[FileBatch { batch_id: "b".into(), item_start: 0, item_count: 1 }]).await.unwrap();
        catalog.file_stable(&row.file_id, 1).await.unwrap();
        if n == 0 {
            let scratch = tempfile::tempdir().unwrap();
            let spec = Spec::default_for(Table::Logs);
            let bundle = openwit_index::build::build(&spec, std::slice::from_ref(&batch), scratch.path()).unwrap();
            std::fs::write(dir.join(format!("{rel}.tantivy")), &bundle).unwrap();
            let index = IndexRow {
                file_id: row.file_id.clone(),
                kind: TANTIVY.into(),
                path: format!("{rel}.tantivy"),
                byte_size: bundle.len() as i64,
                state: STABLE.into(),
                created_at: 1,
            };
            catalog.record_index(&index).await.unwrap();
        }
    }
}

/// A query engine over `catalog` with the tests' limits.
fn engine(catalog: Catalog, max_rows: usize) -> Engine {
    let limits = Limits {
        max_rows,
        timeout: Duration::from_secs(30),
        memory_bytes: 64 << 20,
        index_cache_bytes: 1 << 20,
        bloom_filter_cache_bytes: 1 << 20,
    };
    Engine::new(catalog, Arc::default(), BTreeMap::new(), limits, Arc::default(), Arc::default()).unwrap()
}

async fn bodies_of(engine: &Engine, sql: &str) -> Result<Vec<String>, String> {
    let mut running = engine.start("t", sql).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(b) = running.stream.next().await {
        let b = b.map_err(|e| e.to_string())?;
        let col = arrow::compute::cast(b.column(b.num_columns() - 1), &arrow::datatypes::DataType::Utf8).unwrap();
        let s = col.as_string::<i32>();
        out.extend((0..s.len()).map(|i| s.value(i).to_string()));
    }
    out.sort();
    Ok(out)
}

fn expected(bodies: &[String], keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = bodies.iter().filter(|b| keep(b)).cloned().collect();
    out.sort();
    out
}

/// A file's metadata is cached with its page index on the first query that reads the file, whatever
/// its predicates: DataFusion's opener would otherwise cache the footer alone and decode the page
/// index again on every query that prunes pages (`page_index::WithPageIndexes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_metadata_is_cached_with_its_page_index() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::connect(&format!("sqlite://{}/catalog.db", dir.path().display())).await.unwrap();
    let store_dir = dir.path().join("store");
    let bodies: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    store(&store_dir, &catalog, [&bodies, &bodies], None).await;
    let engine = engine(catalog, 100_000);
    let location = format!("{}/logs/f1.parquet", store_dir.display()).trim_start_matches('/').to_string();
    assert_eq!(engine.cached_with_page_index(&location), None, "nothing read yet");
    let rows = bodies_of(&engine, "SELECT body FROM logs WHERE time >= to_timestamp(0)").await.unwrap();
    assert_eq!(rows.len(), 100);
    assert_eq!(engine.cached_with_page_index(&location), Some(true), "{location}");
}

/// A file's bloom filters are read on the first query that checks them and answered from memory on
/// the next (`bloom_filters`); the answers do not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bloom_filters_are_read_once_and_kept_between_queries() {
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::connect(&format!("sqlite://{}/catalog.db", dir.path().display())).await.unwrap();
    let store_dir = dir.path().join("store");
    let bodies: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    // Five row groups per file, without statistics: every row group's filter is checked.
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(10))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_bloom_filter_enabled("body".into(), true)
        .build();
    store(&store_dir, &catalog, [&bodies, &bodies], Some(props)).await;
    let engine = engine(catalog, 100_000);
    let blooms = engine.bloom_filters().clone();
    let sql = "SELECT body FROM logs WHERE body = 'line 7'";
    let first = bodies_of(&engine, sql).await.unwrap();
    assert_eq!(first, ["line 7", "line 7"]);
    let held = blooms.bytes();
    assert!(held > 0, "the filters read are kept");
    assert_eq!(blooms.hits(), 0);
    assert_eq!(bodies_of(&engine, sql).await.unwrap(), first);
    assert_eq!(blooms.hits(), 10, "two files of five row groups: every filter from memory");
    assert_eq!(blooms.bytes(), held, "and none read again");
    let other = bodies_of(&engine, "SELECT body FROM logs WHERE body = 'line 42'").await.unwrap();
    assert_eq!(other, ["line 42", "line 42"]);
    assert_eq!(blooms.hits(), 20);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sql_text_match_and_like_answer_as_a_reference_scan_does(
        indexed in prop::collection::vec(body(), 1..40),
        scanned in prop::collection::vec(body(), 1..40),
        queries in prop::collection::vec(query(), 6),
        needles in prop::collection::vec(needle(), 3),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let catalog = Catalog::connect(&format!("sqlite://{}/catalog.db", dir.path().display())).await.unwrap();
            let store_dir = dir.path().join("store");
            store(&store_dir, &catalog, [&indexed, &scanned], None).await;
            let engine = engine(catalog, 100_000);
            let all: Vec<String> = indexed.iter().chain(&scanned).cloned().collect();
            for q in &queries {
                let sql = format!("SELECT body FROM logs WHERE text_match(body, '{}')", q.render());
                let got = bodies_of(&engine, &sql).await.unwrap();
                assert_eq!(got, expected(&all, |b| q.matches(&words(b))), "{sql}");
                let counted = bodies_of(&engine, &format!("SELECT CAST(count(*) AS VARCHAR) FROM logs WHERE text_match(body, '{}')", q.render())).await.unwrap();
                assert_eq!(counted, [got.len().to_string()], "count of {sql}");
            }
            for n in &needles {
                let sql = format!("SELECT body FROM logs WHERE body ILIKE '%{n}%'");
                let lower = n.to_ascii_lowercase();
                assert_eq!(bodies_of(&engine, &sql).await.unwrap(), expected(&all, |b| b.to_ascii_lowercase().contains(&lower)), "{sql}");
                let sql = format!("SELECT body FROM logs WHERE body LIKE '%{n}%'");
                assert_eq!(bodies_of(&engine, &sql).await.unwrap(), expected(&all, |b| b.contains(n.as_str())), "{sql}");
            }
        });
    }
}

/// Attribute keys and texts for `attributes['k'] = 'v'`: strings that only a string attribute is written
/// as, and texts other types are written as too (`200` an int, `true` a bool, `ab` bytes).
const KEYS: [&str; 3] = ["http.route", "code", "host"];
const TEXTS: [&str; 7] = ["/cart", "/api", "200", "true", "ab", "node-1", "7"];

/// An attribute: a key of `KEYS` and a value whose text is one of `TEXTS` or another, as a string or
/// as the type that is written so.
fn attribute() -> impl Strategy<Value = KeyValue> {
    let value = prop_oneof![
        prop::sample::select(TEXTS.to_vec()).prop_map(|t| Value::StringValue(t.to_string())),
        Just(Value::IntValue(200)),
        Just(Value::IntValue(7)),
        Just(Value::BoolValue(true)),
        Just(Value::BytesValue(vec![0xab])),
        Just(Value::StringValue("".to_string())),
    ];
    (prop::sample::select(KEYS.to_vec()), value).prop_map(|(k, v)| KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    })
}

/// `attributes['key']` as SQL reads it: the text of the key's first entry.
fn text_of(r: &LogRecord, key: &str) -> Option<String> {
    let kv = r.attributes.iter().find(|kv| kv.key == key)?;
    Some(openwit_core::attributes::encode_value(kv.value.as_ref()).0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The index narrows `attributes['k'] = 'v'` to rows holding the string attribute `k=v`: rows whose
    /// attribute of another type reads as `v`, and rows where `k` comes twice, must still be found.
    #[test]
    fn attribute_equality_answers_as_a_reference_scan_does(
        indexed in prop::collection::vec(prop::collection::vec(attribute(), 0..4), 1..40),
        scanned in prop::collection::vec(prop::collection::vec(attribute(), 0..4), 1..40),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let catalog = Catalog::connect(&format!("sqlite://{}/catalog.db", dir.path().display())).await.unwrap();
            let records = |part: &[Vec<KeyValue>], tag: &str| -> Vec<LogRecord> {
                part.iter().enumerate().map(|(i, a)| record(&format!("{tag}{i}"), a.clone())).collect()
            };
            let (indexed, scanned) = (records(&indexed, "i"), records(&scanned, "s"));
            store_records(&dir.path().join("store"), &catalog, [&indexed, &scanned], None).await;
            let engine = engine(catalog, 100_000);
            for key in KEYS {
                for text in TEXTS {
                    let sql = format!("SELECT body FROM logs WHERE attributes['{key}'] = '{text}'");
                    let body = |r: &LogRecord| match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                        Some(Value::StringValue(b)) => b.clone(),
                        other => panic!("body {other:?}"),
                    };
                    let mut want: Vec<String> =
                        indexed.iter().chain(&scanned).filter(|r| text_of(r, key).as_deref() == Some(text)).map(body).collect();
                    want.sort();
                    // Bodies are distinct: a row read twice or missed shows.
                    let got = bodies_of(&engine, &sql).await.unwrap();
                    assert_eq!(got, want, "{sql}");
                }
            }
        });
    }
}

#[test]
fn attribute_equality_reads_only_the_rows_the_index_holds() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::connect(&format!("sqlite://{}/catalog.db", dir.path().display())).await.unwrap();
        let attr = |k: &str, v: Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let indexed: Vec<LogRecord> = (0..40)
            .map(|i| {
                let route = if i == 7 { "/cart" } else { "/api" };
                record(
                    &format!("r{i}"),
                    vec![attr("http.route", Value::StringValue(route.into())), attr("code", Value::IntValue(200))],
                )
            })
            .collect();
        let scanned = vec![record("other", vec![])];
        store_records(&dir.path().join("store"), &catalog, [&indexed, &scanned], None).await;
        let engine = engine(catalog, 1000);
        let explain = |sql: &str| format!("EXPLAIN ANALYZE {sql}");
        let route = "SELECT body FROM logs WHERE attributes['http.route'] = '/cart'";
        let plan = bodies_of(&engine, &explain(route)).await.unwrap().join("\n");
        assert!(plan.contains("index_files_rows_selected=1"), "{plan}");
        assert!(plan.contains("index_rows_selected=1"), "{plan}");
        assert_eq!(bodies_of(&engine, route).await.unwrap(), ["r7"]);
        // An int is written as `200` too, and the index holds string attributes only: not narrowed.
        let code = "SELECT body FROM logs WHERE attributes['code'] = '200'";
        let plan = bodies_of(&engine, &explain(code)).await.unwrap().join("\n");
        assert!(!plan.contains("index_rows_selected"), "{plan}");
        assert_eq!(bodies_of(&engine, code).await.unwrap().len(), 40);
    });
}

#[test]
fn a_query_reads_the_indexed_file_by_its_index() {
    // The property above holds for both paths only if the index path is taken: check it once.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::connect(&format!("sqlite://{}/catalog.db", dir.path().display())).await.unwrap();
        let indexed: Vec<String> = (0..40).map(|i| format!("line {i} timeout")).collect();
        let scanned = vec!["no match here".to_string()];
        store(&dir.path().join("store"), &catalog, [&indexed, &scanned], None).await;
        let engine = engine(catalog, 1000);
        let plan = bodies_of(&engine, "EXPLAIN ANALYZE SELECT body FROM logs WHERE text_match(body, '\"line 7\"')")
            .await
            .unwrap()
            .join("\n");
        assert!(plan.contains("index_files_rows_selected=1"), "{plan}");
        assert!(plan.contains("index_files_without_usable_index=1"), "{plan}");
        assert!(plan.contains("index_rows_selected=1"), "{plan}");
        assert_eq!(
            bodies_of(&engine, "SELECT body FROM logs WHERE text_match(body, '\"line 7\"')").await.unwrap(),
            ["line 7 timeout"]
        );
    });
}

#[test]
fn rows_selected_by_the_index_are_read_page_by_page() {
    // Without the page index the reader fetches each projected column chunk whole for one selected row.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::connect(&format!("sqlite://{}/catalog.db", dir.path().display())).await.unwrap();
        let indexed: Vec<String> =
            (0..4000).map(|i| format!("request {i} served by backend {} in {} ms", i % 7, i * 13 % 997)).collect();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(100)
            .set_dictionary_enabled(false)
            .build();
        let store_dir = dir.path().join("store");
        store(&store_dir, &catalog, [&indexed, &["unrelated".to_string()]], Some(props)).await;
        let file_bytes = std::fs::metadata(store_dir.join("logs/f0.parquet")).unwrap().len() as usize;
        let engine = engine(catalog, 1000);
        let sql = "SELECT body FROM logs WHERE text_match(body, '\"request 2345\"')";
        let mut running = engine.start("t", sql).await.unwrap();
        let mut rows = 0;
        while let Some(b) = running.stream.next().await {
            rows += b.unwrap().num_rows();
        }
        assert_eq!(rows, 1);
        let scanned = scanned_bytes(running.plan.as_ref());
        assert!(scanned > 0, "the selected page is read");
        assert!(scanned * 10 < file_bytes, "{scanned} bytes read of a {file_bytes}-byte file for one row");
    });
}

/// `bytes_scanned` summed over every Parquet scan of a plan.
fn scanned_bytes(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> usize {
    plan.metrics().and_then(|m| m.sum_by_name("bytes_scanned")).map(|v| v.as_usize()).unwrap_or(0)
        + plan.children().into_iter().map(|c| scanned_bytes(c.as_ref())).sum::<usize>()
}
