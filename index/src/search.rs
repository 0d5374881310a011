//! Which rows of a file a query matches, from its index, with their times.

use crate::IndexError;
use crate::spec::{FLAGS, ROW, SPEC_FILE, Spec};
use crate::time::{TIME_FILE, TimeColumn};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::directory::Directory;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser};
use tantivy::schema::{Field, FieldType};
use tantivy::{DocId, Index, IndexReader, ReloadPolicy, Score, SegmentReader};

/// The rows a query matched, ascending, with each row's `time` (none for an index that holds no
/// times: one built over rows in memory for a scan).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hits {
    pub rows: Vec<u64>,
    pub times: Vec<i64>,
}

/// Where an index keeps its rows' times.
#[derive(Clone, Debug)]
enum Times {
    /// The bundle's time file.
    Column(TimeColumn),
    None,
}

/// An opened index, ready to be searched many times.
#[derive(Clone)]
pub struct Searchable {
    index: Index,
    reader: IndexReader,
    /// The spec it was built with (`None` for an index without one: it answers no SQL predicate).
    spec: Option<Spec>,
    times: Times,
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
        // Read as it is (Tantivy's `get_file_handle` expects its own footer).
        let times = match index.directory().atomic_read(std::path::Path::new(TIME_FILE)) {
            Ok(b) => Times::Column(TimeColumn::open(tantivy::directory::OwnedBytes::new(b))?),
            Err(_) => Times::None,
        };
        Ok(Searchable { index, reader, spec, times })
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
        let docs = self.matching(query)?;
        let mut columns: Vec<Option<Column<u64>>> = vec![None; searcher.segment_readers().len()];
        let mut rows = Vec::with_capacity(docs.len());
        for key in docs {
            let (segment, doc) = ((key >> 32) as usize, key as u32);
            if columns[segment].is_none() {
                columns[segment] = Some(searcher.segment_reader(segment as u32).fast_fields().u64(ROW)?);
            }
            if let Some(r) = columns[segment].as_ref().expect("just set").first(doc) {
                rows.push(r);
            }
        }
        rows.sort_unstable();
        let times = match &self.times {
            Times::Column(c) => c.times(&rows)?,
            Times::None => Vec::new(),
        };
        Ok(Hits { rows, times })
    }

    /// How many rows `query` matches (no row is listed).
    pub fn count(&self, query: &dyn Query) -> Result<u64, IndexError> {
        Ok(self.matching(query)?.len() as u64)
    }

    /// The documents `query` matches, as ascending `segment << 32 | doc` keys. Boolean queries are
    /// evaluated here as set operations over their clauses' documents, and only leaves (terms, phrases,
    /// regular expressions, …) by Tantivy: its boolean scorers can skip past a phrase's documents in
    /// some combinations (`a AND NOT (b AND NOT "c d")` panicked in a debug build and is not trusted in
    /// a release one), and every hit is collected anyway, so nothing is lost by not using them.
    pub fn matching(&self, query: &dyn Query) -> Result<Vec<u64>, IndexError> {
        let Some(b) = query.downcast_ref::<BooleanQuery>() else {
            let mut out = self.reader.searcher().search(query, &DocKeys)?;
            out.sort_unstable();
            return Ok(out);
        };
        let (mut must, mut should, mut not) = (Vec::new(), Vec::new(), Vec::new());
        for (occur, clause) in b.clauses() {
            let docs = self.matching(clause.as_ref())?;
            match occur {
                Occur::Must => must.push(docs),
                Occur::Should => should.push(docs),
                Occur::MustNot => not.push(docs),
            }
        }
        // Tantivy's meaning: with required clauses the optional ones only score; without, at least one
        // optional clause (or the set minimum) must match; exclusions alone match nothing.
        let base = if !must.is_empty() {
            must.into_iter().reduce(|a, b| intersect(&a, &b)).unwrap_or_default()
        } else if b.get_minimum_number_should_match() > 1 {
            at_least(&should, b.get_minimum_number_should_match())
        } else {
            should.into_iter().reduce(|a, b| union(&a, &b)).unwrap_or_default()
        };
        Ok(not.iter().fold(base, |acc, n| subtract(&acc, n)))
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

/// Collects the documents a (leaf) query matches as `segment << 32 | doc` keys.
struct DocKeys;

struct SegmentDocs {
    segment: u64,
    out: Vec<u64>,
}

impl Collector for DocKeys {
    type Fruit = Vec<u64>;
    type Child = SegmentDocs;

    fn for_segment(&self, segment: u32, _: &SegmentReader) -> tantivy::Result<SegmentDocs> {
        Ok(SegmentDocs { segment: (segment as u64) << 32, out: Vec::new() })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, parts: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        Ok(parts.concat())
    }
}

impl SegmentCollector for SegmentDocs {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        self.out.push(self.segment | doc as u64);
    }

    fn harvest(self) -> Vec<u64> {
        self.out
    }
}

/// Set operations over ascending keys.
fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn union(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j == b.len() || (i < a.len() && a[i] < b[j]) {
            out.push(a[i]);
            i += 1;
        } else if i == a.len() || b[j] < a[i] {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
            j += 1;
        }
    }
    out
}

fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|x| {
            while j < b.len() && b[j] < *x {
                j += 1;
            }
            j == b.len() || b[j] != *x
        })
        .collect()
}

/// The keys present in at least `n` of `sets`.
fn at_least(sets: &[Vec<u64>], n: usize) -> Vec<u64> {
    let mut all: Vec<u64> = sets.iter().flatten().copied().collect();
    all.sort_unstable();
    let mut out = Vec::new();
    for run in all.chunk_by(|a, b| a == b) {
        if run.len() >= n {
            out.push(run[0]);
        }
    }
    out
}
