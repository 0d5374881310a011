//! Full-text search in SQL: `text_match(column, 'query')` and `match_all('query')`, evaluated by scanning
//! with the same analysis as the indexes (`openwit_index::scan`), and the predicates a scan of `logs` or
//! `spans` answers from the index beside each file instead (`Predicate`, `IndexCache`, `decide`).
//!
//! `match_all('q')` names no column: an analyzer rule (`MatchAllColumns`) rewrites it, under a filter of
//! one logs or spans table, to `match_all_rows('logs', 'q', body, severity_text, …)` over the columns the
//! table's index spec holds, which a scan can evaluate row by row and the table provider recognises.

use arrow::array::{ArrayRef, BooleanArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue, plan_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use openwit_core::attributes::only_a_string_reads_as;
use openwit_core::text_index::{IndexSpecs, Kind, Spec, Table, Tokenizer};
use openwit_index::search::{Hits, Searchable};
use openwit_index::tantivy;
use openwit_index::tantivy::schema::IndexRecordOption;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub const TEXT_MATCH: &str = "text_match";
pub const MATCH_ALL: &str = "match_all";
/// What `match_all` becomes under a filter of one table (internal; not meant to be written by hand).
pub const MATCH_ALL_ROWS: &str = "match_all_rows";
/// The attributes map, indexed as `key=value` terms (string attributes).
const ATTRIBUTES: &str = "attributes";

/// A file's index is not used to select rows when more than this share of its rows match: reading the
/// whole file costs about as much, and a dense selection decodes more slowly.
pub const SELECTIVE_SHARE: f64 = 0.25;

/// The daemon's index specs, compared by identity (a UDF must be `Eq` and `Hash`).
#[derive(Clone, Debug)]
pub struct Specs(pub Arc<IndexSpecs>);

impl PartialEq for Specs {
    fn eq(&self, other: &Specs) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Specs {}
impl Hash for Specs {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (Arc::as_ptr(&self.0) as usize).hash(h)
    }
}

impl Specs {
    /// The spec whose analysis a column's text gets: text columns belong to one table (`body` to logs;
    /// `name`, `status_message`, `events` to spans); exact columns are whole values in either.
    pub fn for_column(&self, column: &str) -> Spec {
        match column {
            "name" | "status_message" | "events" => self.0.get(Table::Spans),
            _ => self.0.get(Table::Logs),
        }
    }
}

/// The full-text functions, to register in a session.
pub fn functions(specs: &Specs) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(TextMatch { signature: Signature::any(2, Volatility::Immutable), specs: specs.clone() }),
        ScalarUDF::from(MatchAll { signature: Signature::any(1, Volatility::Immutable) }),
        ScalarUDF::from(MatchAllRows {
            signature: Signature::variadic_any(Volatility::Immutable),
            specs: specs.clone(),
        }),
    ]
}

fn literal_text(v: &ColumnarValue, what: &str) -> Result<String> {
    match v {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(q)) | ScalarValue::LargeUtf8(Some(q)) | ScalarValue::Utf8View(Some(q)),
        ) => Ok(q.clone()),
        _ => plan_err!("{what} must be a string literal"),
    }
}

fn literal_expr(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(q)) | ScalarValue::LargeUtf8(Some(q)) | ScalarValue::Utf8View(Some(q)),
            _,
        ) => Some(q),
        _ => None,
    }
}

/// `text_match(column, 'query')`: whether the column's text matches a full-text query in Tantivy's
/// syntax (`timeout AND "connection reset"`; words ANDed by default), analysed as the table's index
/// analyses that column (text columns by the configured tokenizer, exact columns as whole values).
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextMatch {
    signature: Signature,
    specs: Specs,
}

impl ScalarUDFImpl for TextMatch {
    fn name(&self) -> &str {
        TEXT_MATCH
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let query = literal_text(&args.args[1], "text_match: the query (e.g. text_match(body, 'timeout'))")?;
        let column = args.arg_fields[0].name().clone();
        if column == "attributes" {
            return plan_err!(
                "text_match cannot search attributes: use match_all('attributes:\"key=value\"') or attr(attributes, 'key') = 'value'"
            );
        }
        let values = args.args[0].to_array(args.number_rows)?;
        let flags = openwit_index::scan::matches(&self.specs.for_column(&column), &column, &values, &query)
            .map_err(|e| DataFusionError::Plan(format!("text_match: {e}")))?;
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(flags))))
    }
}

/// `match_all('query')` as written: replaced under a filter of logs or spans (see `MatchAllColumns`);
/// anywhere else it has no row to search.
#[derive(Debug, PartialEq, Eq, Hash)]
struct MatchAll {
    signature: Signature,
}

impl ScalarUDFImpl for MatchAll {
    fn name(&self) -> &str {
        MATCH_ALL
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        plan_err!(
            "match_all('query') filters the rows of logs or spans: use it in the WHERE clause of a query over one of them"
        )
    }
}

/// `match_all_rows('logs', 'query', column…)`: `match_all` over the given columns of one table.
#[derive(Debug, PartialEq, Eq, Hash)]
struct MatchAllRows {
    signature: Signature,
    specs: Specs,
}

impl ScalarUDFImpl for MatchAllRows {
    fn name(&self) -> &str {
        MATCH_ALL_ROWS
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() < 3 {
            return plan_err!("{MATCH_ALL_ROWS} takes a table, a query and columns");
        }
        let table = literal_text(&args.args[0], "match_all_rows: the table")?;
        let Some(table) = Table::by_name(&table) else {
            return plan_err!("match_all_rows: no index for table {table}");
        };
        let query = literal_text(&args.args[1], "match_all: the query (e.g. match_all('timeout'))")?;
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (f, v) in args.arg_fields.iter().zip(&args.args).skip(2) {
            fields.push(Field::new(f.name(), f.data_type().clone(), true));
            columns.push(v.to_array(args.number_rows)?);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let flags = openwit_index::scan::matches_all(&self.specs.0.get(table), &batch, &query)
            .map_err(|e| DataFusionError::Plan(format!("match_all: {e}")))?;
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(flags))))
    }
}

/// Rewrites `match_all('q')` in a filter over one logs or spans table into `match_all_rows` over the
/// columns that table's index spec holds.
#[derive(Debug)]
pub struct MatchAllColumns {
    pub specs: Specs,
    pub rows_udf: Arc<ScalarUDF>,
}

impl MatchAllColumns {
    pub fn new(specs: &Specs) -> MatchAllColumns {
        let rows_udf = Arc::new(ScalarUDF::from(MatchAllRows {
            signature: Signature::variadic_any(Volatility::Immutable),
            specs: specs.clone(),
        }));
        MatchAllColumns { specs: specs.clone(), rows_udf }
    }

    fn rewrite(&self, e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        let Expr::ScalarFunction(f) = &e else { return Ok(Transformed::no(e)) };
        if f.func.name() != MATCH_ALL {
            return Ok(Transformed::no(e));
        }
        let Some(query) = f.args.first().and_then(literal_expr) else {
            return plan_err!("match_all: the query must be a string literal, e.g. match_all('timeout')");
        };
        // The table under the filter: logs have `body`, spans `status_message`.
        let mut found = Vec::new();
        for (table, marker) in [(Table::Logs, "body"), (Table::Spans, "status_message")] {
            for (q, _) in schema.qualified_fields_with_unqualified_name(marker) {
                found.push((table, q.cloned()));
            }
        }
        let (table, qualifier) = match found.as_slice() {
            [one] => one.clone(),
            [] => return plan_err!("match_all searches logs or spans: use it in a query over one of them"),
            _ => return plan_err!("match_all is ambiguous over several tables: use text_match(table.column, '…')"),
        };
        let spec = self.specs.0.get(table);
        let mut args = vec![Expr::Literal(ScalarValue::Utf8(Some(table.name().into())), None), lit_text(query)];
        let mut names: Vec<&str> = spec.fields.iter().map(String::as_str).collect();
        if names.contains(&"attributes") {
            names.push("attribute_types");
        }
        for n in names {
            args.push(Expr::Column(Column::new(qualifier.clone(), n)));
        }
        Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(self.rows_udf.clone(), args))))
    }
}

fn lit_text(s: &str) -> Expr {
    Expr::Literal(ScalarValue::Utf8(Some(s.to_string())), None)
}

impl AnalyzerRule for MatchAllColumns {
    fn name(&self) -> &str {
        "openwit_match_all_columns"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::Filter(mut f) => {
                let schema = f.input.schema().clone();
                let t = f.predicate.transform_up(|e| self.rewrite(e, &schema))?;
                f.predicate = t.data;
                Ok(Transformed::new(LogicalPlan::Filter(f), t.transformed, t.tnr))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }
}

/// A text predicate of a scan that an index can answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Predicate {
    /// `text_match(column, 'query')`: the index's rows are the answer.
    Column { column: String, query: String },
    /// `match_all('query')`: the index's rows are the answer.
    All { query: String },
    /// `column LIKE/ILIKE '%word%'` (a word of ASCII letters and digits, lower-cased here): the index
    /// narrows where rows can be (a word containing it); the filter decides.
    Contains { column: String, needle: String },
    /// `attributes['key'] = 'value'`, with a value only a string attribute is written as
    /// (`attributes::only_a_string_reads_as`: not a number, `true`/`false`, hex or JSON): the index's
    /// `key=value` term narrows where rows can be; the filter decides (SQL reads a key's first entry).
    AttributeEquals { key: String, value: String },
}

impl Predicate {
    /// The predicate a filter of `table` is, if an index can answer it.
    pub fn of(e: &Expr, table: Table) -> Option<Predicate> {
        match e {
            Expr::ScalarFunction(f) if f.func.name() == TEXT_MATCH => match f.args.as_slice() {
                [Expr::Column(c), q] if table.kind_of(&c.name).is_some() && c.name != "attributes" => {
                    Some(Predicate::Column { column: c.name.clone(), query: literal_expr(q)?.to_string() })
                }
                _ => None,
            },
            Expr::ScalarFunction(f) if f.func.name() == MATCH_ALL_ROWS => match f.args.as_slice() {
                [t, q, ..] if literal_expr(t) == Some(table.name()) => {
                    Some(Predicate::All { query: literal_expr(q)?.to_string() })
                }
                _ => None,
            },
            Expr::Like(l) if !l.negated && l.escape_char.is_none() => {
                let Expr::Column(c) = l.expr.as_ref() else { return None };
                let pattern = literal_expr(&l.pattern)?;
                let needle = pattern.strip_prefix('%')?.strip_suffix('%')?;
                let plain = !needle.is_empty() && needle.bytes().all(|b| b.is_ascii_alphanumeric());
                (plain && table.kind_of(&c.name) == Some(Kind::Text))
                    .then(|| Predicate::Contains { column: c.name.clone(), needle: needle.to_ascii_lowercase() })
            }
            Expr::BinaryExpr(b) if b.op == Operator::Eq => {
                let (key, value) =
                    attribute_lookup(&b.left, &b.right).or_else(|| attribute_lookup(&b.right, &b.left))?;
                (table.kind_of(ATTRIBUTES) == Some(Kind::Exact) && only_a_string_reads_as(value))
                    .then(|| Predicate::AttributeEquals { key: key.to_string(), value: value.to_string() })
            }
            _ => None,
        }
    }

    /// Whether the index's rows are the predicate's answer (not only where it can hold).
    pub fn exact(&self) -> bool {
        !matches!(self, Predicate::Contains { .. } | Predicate::AttributeEquals { .. })
    }

    /// The query that finds this predicate's rows in an index, or `None` when this index cannot answer
    /// it (built with another analysis, without the field, without positions for a phrase, …).
    fn query_on(&self, s: &Searchable, specs: &Specs, table: Table) -> Option<Box<dyn tantivy::query::Query>> {
        let built = s.spec()?;
        match self {
            Predicate::Column { column, query } => {
                let want = specs.for_column(column);
                if built.kind_of(column).is_none() || built.tokenizer_of(column) != want.tokenizer_of(column) {
                    return None;
                }
                let q = s.parse(query, &[column]).ok()?;
                openwit_index::scan::check_fields(q.as_ref(), s, query, &[column]).ok()?;
                Some(q)
            }
            Predicate::All { query } => {
                let want = specs.0.get(table);
                let same = built.fields == want.fields
                    && built.tokenizer == want.tokenizer
                    && built.attribute_keys == want.attribute_keys;
                if !same {
                    return None;
                }
                let fields: Vec<&str> = want.fields.iter().map(String::as_str).collect();
                s.parse(query, &fields).ok()
            }
            Predicate::Contains { column, needle } => {
                // A word holding the needle is a term holding it only when terms are whole lower-cased
                // words (not stems, not whole values).
                if built.kind_of(column) != Some(Kind::Text) || built.tokenizer_of(column) != Tokenizer::Default {
                    return None;
                }
                let words =
                    tantivy::query::RegexQuery::from_pattern(&format!(".*{needle}.*"), s.field(column)?).ok()?;
                or_long(s, column, Box::new(words))
            }
            Predicate::AttributeEquals { key, value } => {
                let keys = &built.attribute_keys;
                if built.kind_of(ATTRIBUTES) != Some(Kind::Exact) || !(keys.is_empty() || keys.contains(key)) {
                    return None;
                }
                let term = tantivy::Term::from_field_text(s.field(ATTRIBUTES)?, &format!("{key}={value}"));
                or_long(s, ATTRIBUTES, Box::new(tantivy::query::TermQuery::new(term, IndexRecordOption::Basic)))
            }
        }
    }
}

/// `query`, or a value of `column` too long to have been indexed whole (such rows are always read).
fn or_long(
    s: &Searchable,
    column: &str,
    query: Box<dyn tantivy::query::Query>,
) -> Option<Box<dyn tantivy::query::Query>> {
    let flags = s.field(openwit_index::spec::FLAGS)?;
    let long = tantivy::query::TermQuery::new(
        tantivy::Term::from_field_text(flags, &format!("long:{column}")),
        IndexRecordOption::Basic,
    );
    Some(Box::new(tantivy::query::BooleanQuery::union(vec![query, Box::new(long)])))
}

/// (key, value) of `attributes['key']` = `'value'` (`get_field` on the map, then a string literal).
fn attribute_lookup<'a>(lookup: &'a Expr, literal: &'a Expr) -> Option<(&'a str, &'a str)> {
    let Expr::ScalarFunction(f) = lookup else { return None };
    match f.args.as_slice() {
        [Expr::Column(c), key] if f.func.name() == "get_field" && c.name == ATTRIBUTES => {
            Some((literal_expr(key)?, literal_expr(literal)?))
        }
        _ => None,
    }
}

/// What a scan does with one file, from its index.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// No row can match: the file is not opened.
    Skip,
    /// Only these rows can match; `exact` when they are the answer of every exact predicate.
    Rows { hits: Hits, exact: bool },
    /// The whole file is read (and the predicates evaluated on its rows).
    Whole(Why),
}

/// Why a file is read whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// No usable index is recorded for it (not built yet, or being rebuilt).
    NoIndex,
    /// The index could not be read or does not fit the file (it is marked for rebuilding).
    Unreadable,
    /// The index was built with another analysis or lacks a field the predicates need.
    CannotAnswer,
}

/// Decides for one file from its index (`None`: no index recorded).
pub fn decide(
    index: Option<&Searchable>,
    rows: u64,
    predicates: &[Predicate],
    specs: &Specs,
    table: Table,
) -> Decision {
    let Some(s) = index else { return Decision::Whole(Why::NoIndex) };
    if s.docs() != rows {
        return Decision::Whole(Why::Unreadable);
    }
    let mut queries: Vec<Box<dyn tantivy::query::Query>> = Vec::new();
    let mut exact = true;
    for p in predicates {
        match p.query_on(s, specs, table) {
            Some(q) => queries.push(q),
            None if p.exact() => exact = false,
            None => {}
        }
    }
    if queries.is_empty() {
        return Decision::Whole(Why::CannotAnswer);
    }
    let all = tantivy::query::BooleanQuery::intersection(queries);
    match s.hits(&all) {
        Ok(h) if h.rows.is_empty() => Decision::Skip,
        Ok(h) => Decision::Rows { hits: h, exact },
        Err(e) => {
            tracing::warn!("cannot search a file's index ({e}); scanning the file");
            Decision::Whole(Why::CannotAnswer)
        }
    }
}

/// Opened indexes, most recently used kept, within a byte budget (an index is read whole once, then
/// searched from memory by every query that needs it).
pub type IndexCache = super::byte_lru::ByteLru<String, Arc<Searchable>>;

/// The `time` values of hits as the table's `time` column (for answers taken from the index).
pub fn time_column(field: &Field, times: &[i64]) -> Result<ArrayRef> {
    let values: ArrayRef = Arc::new(arrow::array::Int64Array::from(times.to_vec()));
    Ok(arrow::compute::cast(&values, field.data_type())?)
}

/// A selection of `rows` (ascending) out of `total`, as Parquet reads it.
pub fn selection(rows: &[u64], total: usize) -> parquet::arrow::arrow_reader::RowSelection {
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    for &r in rows {
        let r = r as usize;
        match ranges.last_mut() {
            Some(last) if last.end == r => last.end = r + 1,
            _ => ranges.push(r..r + 1),
        }
    }
    parquet::arrow::arrow_reader::RowSelection::from_consecutive_ranges(ranges.into_iter(), total)
}
