//! A spec (`openwit_core::text_index`: which columns, analysed how) as Tantivy sees it: the schema of a
//! file's index and of the on-the-spot index a scan builds (one function, so both analyse text alike),
//! and OpenWit's analysers, registered under names of their own.

pub use openwit_core::text_index::{Kind, Spec, Table, Tokenizer};
use tantivy::schema::{FAST, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    LowerCaser, MAX_TOKEN_LEN, RawTokenizer, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer, TokenizerManager,
};

/// The row of the Parquet file a document stands for (a fast field).
pub const ROW: &str = "row";
/// Marks documents whose text may hold a word too long to be indexed (see `LONG_TEXT`).
pub const FLAGS: &str = "openwit_flags";
/// The file in a bundle that holds the spec the index was built with (JSON).
pub const SPEC_FILE: &str = "openwit_spec.json";
/// A text field's value longer than this may hold a word Tantivy does not index (its limit on a term).
pub const LONG_TEXT: usize = MAX_TOKEN_LEN;

/// A spec's analysers in Tantivy's terms.
pub trait TantivyNames {
    /// The name the Tantivy schema records (OpenWit's own, so that an index is only ever read with the
    /// analysis it was built with).
    fn tantivy_name(self) -> &'static str;
}

impl TantivyNames for Tokenizer {
    fn tantivy_name(self) -> &'static str {
        match self {
            Tokenizer::Default => "openwit_default",
            Tokenizer::Raw => "openwit_raw",
            Tokenizer::Lowercase => "openwit_lowercase",
            Tokenizer::Stemming => "openwit_stemming",
        }
    }
}

/// The analyser of a tokenizer (what `register` gives Tantivy under its name).
pub fn analyzer(t: Tokenizer) -> TextAnalyzer {
    // Words are kept up to Tantivy's own limit (its `default` drops words over 40 bytes, which would
    // make a long word unfindable).
    let words = || TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(LONG_TEXT + 1));
    match t {
        Tokenizer::Default => words().filter(LowerCaser).build(),
        Tokenizer::Raw => TextAnalyzer::builder(RawTokenizer::default()).build(),
        Tokenizer::Lowercase => TextAnalyzer::builder(RawTokenizer::default()).filter(LowerCaser).build(),
        Tokenizer::Stemming => {
            words().filter(LowerCaser).filter(Stemmer::new(tantivy::tokenizer::Language::English)).build()
        }
    }
}

/// Registers OpenWit's analysers with an index (needed before building or searching it).
pub fn register(manager: &TokenizerManager) {
    for t in Tokenizer::all() {
        manager.register(t.tantivy_name(), analyzer(t));
    }
}

/// The Tantivy schema of `spec`'s indexes.
pub fn schema(spec: &Spec) -> Schema {
    let mut s = Schema::builder();
    s.add_u64_field(ROW, FAST);
    // No field needs norms: hits are filtered, never scored.
    let raw = TextFieldIndexing::default()
        .set_tokenizer(Tokenizer::Raw.tantivy_name())
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    s.add_text_field(FLAGS, TextOptions::default().set_indexing_options(raw));
    for f in &spec.fields {
        let record = match (spec.table.kind_of(f), spec.positions) {
            (Some(Kind::Text), true) => IndexRecordOption::WithFreqsAndPositions,
            _ => IndexRecordOption::Basic,
        };
        let indexing = TextFieldIndexing::default()
            .set_tokenizer(spec.tokenizer_of(f).tantivy_name())
            .set_index_option(record)
            .set_fieldnorms(false);
        s.add_text_field(f, TextOptions::default().set_indexing_options(indexing));
    }
    s.build()
}
