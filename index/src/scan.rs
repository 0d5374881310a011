//! A query evaluated over texts held in memory, without a stored index: what `text_match` does for rows
//! no index covers. The texts are indexed on the spot, with the same analysis as `body` in a file's
//! index, and searched with the same parser, so a scan and an index give the same answer by construction.

use crate::IndexError;
use crate::fields::{BODY, ROW};
use tantivy::schema::{FAST, Schema, TEXT};
use tantivy::{Index, TantivyDocument};

/// Tantivy's smallest indexing arena for one thread.
const ARENA: usize = 15_000_000;

/// One flag per text: whether `query` (Tantivy's syntax, words ANDed by default) matches it as analysed
/// text. A missing text matches nothing.
pub fn matches<'a>(texts: impl IntoIterator<Item = Option<&'a str>>, query: &str) -> Result<Vec<bool>, IndexError> {
    let mut s = Schema::builder();
    let row = s.add_u64_field(ROW, FAST);
    let body = s.add_text_field(BODY, TEXT);
    let index = Index::create_in_ram(s.build());
    let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, ARENA)?;
    let mut n = 0u64;
    for t in texts {
        if let Some(t) = t {
            let mut doc = TantivyDocument::new();
            doc.add_u64(row, n);
            doc.add_text(body, t);
            writer.add_document(doc)?;
        }
        n += 1;
    }
    writer.commit()?;
    let mut out = vec![false; n as usize];
    for r in crate::search::rows(&index, query, Some(&[BODY]))? {
        out[r as usize] = true;
    }
    Ok(out)
}
