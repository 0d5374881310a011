//! A query evaluated over rows held in memory, without a stored index: what `text_match` and `match_all`
//! do for rows no index covers. The rows are indexed on the spot with the same spec (analysis) as a
//! file's index and searched with the same parser, so a scan and an index give the same answer by
//! construction.

use crate::IndexError;
use crate::build::in_ram;
use crate::search::Searchable;
use crate::spec::Spec;
use arrow::array::ArrayRef;
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

/// Words, phrases and their boolean combinations matched row by row (most queries).
pub(crate) mod direct;

/// One flag per value of `column`: whether `query` matches it, analysed as `spec` indexes that column.
/// A missing value matches nothing. The query may name no other field (see `check_fields`).
pub fn matches(spec: &Spec, column: &str, values: &ArrayRef, query: &str) -> Result<Vec<bool>, IndexError> {
    // Any text column can be searched; one the spec does not index is analysed as its text columns are.
    // Positions are always kept here: a phrase is answered by a scan even where indexes have none.
    let narrowed = Spec { fields: vec![column.to_string()], positions: true, ..spec.clone() };
    let answer = || -> Result<Vec<bool>, IndexError> {
        if let Some(flags) = direct::matches(&narrowed, column, values, query)? {
            return Ok(flags);
        }
        let schema = Schema::new(vec![Field::new(column, values.data_type().clone(), true)]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![values.clone()])
            .map_err(|e| IndexError::Rows(e.to_string()))?;
        search(&narrowed, &batch, query, &[column])
    };
    answer().map_err(|e| match e {
        // The on-the-spot index holds only this column: say what the index would about another field.
        IndexError::Query { message, .. } if message.contains("Field does not exist") => IndexError::Query {
            query: query.into(),
            message: format!("{message}: text_match searches only {column} (match_all searches every field)"),
        },
        e => e,
    })
}

/// One flag per row of `batch` (holding every column `spec` indexes): whether `query` matches it over
/// all the indexed fields, as `match_all` does.
pub fn matches_all(spec: &Spec, batch: &RecordBatch, query: &str) -> Result<Vec<bool>, IndexError> {
    let fields: Vec<&str> = spec.fields.iter().map(String::as_str).collect();
    search(&Spec { positions: true, ..spec.clone() }, batch, query, &fields)
}

fn search(spec: &Spec, batch: &RecordBatch, query: &str, fields: &[&str]) -> Result<Vec<bool>, IndexError> {
    let s = Searchable::new(in_ram(spec, batch)?)?;
    let q = s.parse(query, fields)?;
    check_fields(q.as_ref(), &s, query, fields)?;
    let mut out = vec![false; batch.num_rows()];
    for r in s.hits(q.as_ref())?.rows {
        out[r as usize] = true;
    }
    Ok(out)
}

/// Refuses a query that names a field outside `allowed` (`text_match(body, 'severity_text:ERROR')`):
/// its answer would depend on what else the index holds.
pub fn check_fields(
    q: &dyn tantivy::query::Query,
    s: &Searchable,
    query: &str,
    allowed: &[&str],
) -> Result<(), IndexError> {
    let allowed: Vec<_> = allowed.iter().filter_map(|n| s.field(n)).collect();
    let mut stray = None;
    q.query_terms(&mut |term, _| {
        if !allowed.contains(&term.field()) {
            stray = Some(term.field());
        }
    });
    match stray {
        None => Ok(()),
        Some(f) => Err(IndexError::Query {
            query: query.into(),
            message: format!(
                "it names {}, a field this function does not search (match_all searches every field)",
                s.field_name(f)
            ),
        }),
    }
}
