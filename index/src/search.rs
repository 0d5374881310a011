//! Which rows of a file a query matches, from its index, with their times.

use crate::IndexError;
use crate::spec::{FLAGS, ROW, SPEC_FILE, Spec, TIME};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::directory::Directory;
use tantivy::query::{Query, QueryParser};
use tantivy::schema::{Field, FieldType};
use tantivy::{DocId, Index, IndexReader, ReloadPolicy, Score, SegmentReader};

/// The rows a query matched, ascending, with each row's `time`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hits {
    pub rows: Vec<u64>,
    pub times: Vec<i64>,
}

/// An opened index, ready to be searched many times.
#[derive(Clone)]
pub struct Searchable {
    index: Index,
    reader: IndexReader,
    /// The spec it was built with (`None` for an index without one: it answers no SQL predicate).
    spec: Option<Spec>,
}

impl std::fmt::Debug for Searchable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Searchable({} documents)", self.docs())
    }
}

impl Searchable {
    pub fn new(index: Index) -> Result<Searchable, IndexError> {
        crate::spec::register(index.tokenizers());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let spec = index
            .directory()
            .atomic_read(std::path::Path::new(SPEC_FILE))
            .ok()
            .and_then(|b: Vec<u8>| serde_json::from_slice(&b).ok());
        Ok(Searchable { index, reader, spec })
    }

    /// The spec the index was built with.
    pub fn spec(&self) -> Option<&Spec> {
        self.spec.as_ref()
    }

    /// How many documents (rows) the index holds.
    pub fn docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The analysis a field was indexed with (its tokenizer's name and whether it has positions), or
    /// `None` when the index has no such text field.
    pub fn analysis(&self, field: &str) -> Option<(String, bool)> {
        let schema = self.index.schema();
        let entry = schema.get_field_entry(schema.get_field(field).ok()?);
        match entry.field_type() {
            FieldType::Str(o) => {
                o.get_indexing_options().map(|i| (i.tokenizer().to_string(), i.index_option().has_positions()))
            }
            _ => None,
        }
    }

    /// The text fields a query may name (every indexed field but OpenWit's own).
    pub fn text_fields(&self) -> Vec<String> {
        let schema = self.index.schema();
        schema
            .fields()
            .filter(|(_, e)| matches!(e.field_type(), FieldType::Str(_)) && e.name() != FLAGS)
            .map(|(_, e)| e.name().to_string())
            .collect()
    }

    /// Parses `query` (Tantivy's syntax, words ANDed by default) against `default_fields`: where a term
    /// names no field it searches these.
    pub fn parse(&self, query: &str, default_fields: &[&str]) -> Result<Box<dyn Query>, IndexError> {
        let fields = self.fields(query, default_fields)?;
        let mut parser = QueryParser::for_index(&self.index, fields);
        parser.set_conjunction_by_default();
        parser
            .parse_query(&and_not(query))
            .map_err(|e| IndexError::Query { query: query.into(), message: e.to_string() })
    }

    pub fn field_name(&self, f: Field) -> String {
        self.index.schema().get_field_name(f).to_string()
    }

    pub fn field(&self, name: &str) -> Option<Field> {
        self.index.schema().get_field(name).ok()
    }

    fn fields(&self, query: &str, names: &[&str]) -> Result<Vec<Field>, IndexError> {
        names
            .iter()
            .map(|n| {
                self.field(n).ok_or_else(|| IndexError::Query {
                    query: query.into(),
                    message: format!("the index has no field {n}"),
                })
            })
            .collect()
    }

    /// The rows (and times) `query` matches.
    pub fn hits(&self, query: &dyn Query) -> Result<Hits, IndexError> {
        let searcher = self.reader.searcher();
        let mut parts = searcher.search(query, &RowsAndTimes)?;
        parts.sort_unstable_by_key(|(r, _)| *r);
        Ok(Hits { rows: parts.iter().map(|p| p.0).collect(), times: parts.iter().map(|p| p.1).collect() })
    }

    /// How many rows `query` matches (no row is listed).
    pub fn count(&self, query: &dyn Query) -> Result<u64, IndexError> {
        Ok(self.reader.searcher().search(query, &tantivy::collector::Count)? as u64)
    }
}

/// `a AND NOT b` as `a NOT b`: Tantivy's parser reads the first as `a` and a group holding only an
/// exclusion (which matches nothing), where Lucene and Elasticsearch users mean `a` without `b`.
/// Quoted phrases are left as they are.
fn and_not(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut quoted = false;
    let mut rest = query;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            quoted = !quoted;
        }
        let at_word = out.is_empty() || out.ends_with(|p: char| p.is_whitespace() || p == '(');
        if !quoted && at_word && rest.starts_with("AND") {
            let after = rest[3..].trim_start();
            if after.starts_with("NOT") && after[3..].starts_with(|n: char| n.is_whitespace() || n == '(') {
                out.push_str("NOT");
                rest = &after[3..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The rows (ascending) matching `query` in Tantivy's query syntax: words (all must match unless `OR`
/// joins them), `"phrases"`, `AND`/`OR`/`NOT`, a phrase whose last word is a prefix (`"connection re"*`),
/// `field:term`; searching `default_fields` where a term names none (`None`: every indexed field, as
/// `match_all`). A single word with `*` is not a prefix query in Tantivy's parser (it matches the word).
pub fn rows(index: &Index, query: &str, default_fields: Option<&[&str]>) -> Result<Vec<u64>, IndexError> {
    let s = Searchable::new(index.clone())?;
    let all = s.text_fields();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let q = s.parse(query, default_fields.unwrap_or(&all))?;
    Ok(s.hits(q.as_ref())?.rows)
}

/// Collects each hit's row and time from the fast fields, segment by segment.
struct RowsAndTimes;

struct SegmentRows {
    row: Column<u64>,
    time: Column<i64>,
    out: Vec<(u64, i64)>,
}

impl Collector for RowsAndTimes {
    type Fruit = Vec<(u64, i64)>;
    type Child = SegmentRows;

    fn for_segment(&self, _: u32, segment: &SegmentReader) -> tantivy::Result<SegmentRows> {
        let ff = segment.fast_fields();
        Ok(SegmentRows { row: ff.u64(ROW)?, time: ff.i64(TIME)?, out: Vec::new() })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, parts: Vec<Vec<(u64, i64)>>) -> tantivy::Result<Vec<(u64, i64)>> {
        Ok(parts.concat())
    }
}

impl SegmentCollector for SegmentRows {
    type Fruit = Vec<(u64, i64)>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(r) = self.row.first(doc) {
            self.out.push((r, self.time.first(doc).unwrap_or(0)));
        }
    }

    fn harvest(self) -> Vec<(u64, i64)> {
        self.out
    }
}
