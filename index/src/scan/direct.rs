//! `text_match` over a text column without building an index: the query is parsed exactly as for an
//! index (same parser, same analyser), and when it is made only of words, plain phrases and AND/OR/NOT,
//! each row's text is cut into words by the same analyser and the query is evaluated on them. Anything
//! else (phrase prefixes, slop, ranges, regular expressions, boosts) returns `None`, and the caller
//! indexes the rows on the spot instead (about 2 µs per row: the "no index" column of
//! `bench/run-search`, measured before this module existed).

use crate::IndexError;
use crate::search::Searchable;
use crate::spec::{LONG_TEXT, Spec, analyzer, schema};
use arrow::array::{Array, ArrayRef, AsArray};
use std::collections::HashMap;
use tantivy::query::{BooleanQuery, EmptyQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::tokenizer::TokenStream;

/// A query as this module evaluates it.
enum Plan {
    Word(String),
    /// Words at consecutive positions.
    Phrase(Vec<String>),
    /// Every `all`, or (without `all`) at least one `any`; and none of `none`.
    Bool {
        all: Vec<Plan>,
        any: Vec<Plan>,
        none: Vec<Plan>,
    },
    Nothing,
}

/// One flag per value, or `None` when the query or the column is not one this module evaluates.
pub fn matches(spec: &Spec, column: &str, values: &ArrayRef, query: &str) -> Result<Option<Vec<bool>>, IndexError> {
    // Syntax whose meaning the parsed query does not fully show (slop, prefixes, boosts, ranges, sets,
    // regular expressions), and queries long enough to hold an unindexable word: the general path.
    if query.len() > LONG_TEXT || query.contains(['~', '*', '^', '[', '{', '/']) || query.contains(" IN ") {
        return Ok(None);
    }
    let Some(texts) = values.as_string_opt::<i32>() else { return Ok(None) };
    let parser = Searchable::new(tantivy::Index::create_in_ram(schema(spec)))?;
    let q = parser.parse(query, &[column])?;
    super::check_fields(q.as_ref(), &parser, query, &[column])?;
    let Some(plan) = plan(q.as_ref()) else { return Ok(None) };
    let mut analyzer = analyzer(spec.tokenizer_of(column));
    let mut words: HashMap<String, Vec<usize>> = HashMap::new();
    let mut out = Vec::with_capacity(texts.len());
    for i in 0..texts.len() {
        if texts.is_null(i) {
            out.push(false);
            continue;
        }
        words.clear();
        let mut stream = analyzer.token_stream(texts.value(i));
        while stream.advance() {
            let t = stream.token();
            words.entry(t.text.clone()).or_default().push(t.position);
        }
        out.push(eval(&plan, &words));
    }
    Ok(Some(out))
}

fn plan(q: &dyn Query) -> Option<Plan> {
    if let Some(t) = q.downcast_ref::<TermQuery>() {
        return Some(Plan::Word(t.term().value().as_str()?.to_string()));
    }
    if let Some(p) = q.downcast_ref::<PhraseQuery>() {
        let words = p.phrase_terms().iter().map(|t| t.value().as_str().map(str::to_string)).collect::<Option<_>>()?;
        return Some(Plan::Phrase(words));
    }
    if q.downcast_ref::<EmptyQuery>().is_some() {
        return Some(Plan::Nothing);
    }
    let b = q.downcast_ref::<BooleanQuery>()?;
    if b.get_minimum_number_should_match() > 1 {
        return None;
    }
    let (mut all, mut any, mut none) = (Vec::new(), Vec::new(), Vec::new());
    for (occur, clause) in b.clauses() {
        let p = plan(clause.as_ref())?;
        match occur {
            Occur::Must => all.push(p),
            Occur::Should => any.push(p),
            Occur::MustNot => none.push(p),
        }
    }
    Some(Plan::Bool { all, any, none })
}

/// Tantivy's meaning, as `Searchable::matching` evaluates indexes: with required clauses the optional
/// ones only score; without, one optional clause must match; exclusions alone match nothing.
fn eval(plan: &Plan, words: &HashMap<String, Vec<usize>>) -> bool {
    match plan {
        Plan::Word(w) => words.contains_key(w),
        Plan::Phrase(ws) => match ws.split_first() {
            None => false,
            Some((first, rest)) => words.get(first).is_some_and(|starts| {
                starts.iter().any(|&p| {
                    rest.iter().enumerate().all(|(k, w)| words.get(w).is_some_and(|ps| ps.contains(&(p + k + 1))))
                })
            }),
        },
        Plan::Bool { all, any, none } => {
            let base =
                if !all.is_empty() { all.iter().all(|p| eval(p, words)) } else { any.iter().any(|p| eval(p, words)) };
            base && !none.iter().any(|p| eval(p, words))
        }
        Plan::Nothing => false,
    }
}
