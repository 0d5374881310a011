//! Which rows of a file a query matches, from its index.

use crate::IndexError;
use crate::fields::{ALL_TEXT, ROW};
use tantivy::collector::DocSetCollector;
use tantivy::query::QueryParser;
use tantivy::{Index, ReloadPolicy};

/// The rows (ascending) matching `query` in Tantivy's query syntax: words (all must match unless `OR`
/// joins them), `"phrases"`, `AND`/`OR`/`NOT`, a phrase whose last word is a prefix (`"connection re"*`),
/// `field:term`; searching `default_fields` where a term names none (`None`: every indexed field, as
/// `match_all`). A single word with `*` is not a prefix query in Tantivy's parser (it matches the word).
pub fn rows(index: &Index, query: &str, default_fields: Option<&[&str]>) -> Result<Vec<u64>, IndexError> {
    let schema = index.schema();
    let names = default_fields.unwrap_or(&ALL_TEXT);
    let fields = names
        .iter()
        .map(|n| {
            schema.get_field(n).map_err(|_| IndexError::Query { query: query.into(), message: format!("no field {n}") })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut parser = QueryParser::for_index(index, fields);
    parser.set_conjunction_by_default();
    let q = parser.parse_query(query).map_err(|e| IndexError::Query { query: query.into(), message: e.to_string() })?;
    let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
    let searcher = reader.searcher();
    let hits = searcher.search(&q, &DocSetCollector)?;
    let mut out = Vec::with_capacity(hits.len());
    for segment in 0..searcher.segment_readers().len() {
        let column = searcher.segment_reader(segment as u32).fast_fields().u64(ROW)?;
        out.extend(hits.iter().filter(|a| a.segment_ord as usize == segment).filter_map(|a| column.first(a.doc_id)));
    }
    out.sort_unstable();
    Ok(out)
}
