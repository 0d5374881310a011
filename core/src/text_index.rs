//! What the full-text index of a table holds (which columns, analysed how): the data model shared by the
//! exporters that build indexes (`openwit-index`) and the query engine that reads them, so that a scan
//! analyses text exactly as the index did. `IndexSpecs` is the daemon's one registry of them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// How a text field is cut into words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tokenizer {
    /// Runs of letters and digits, lower-cased (`Timeout:` → `timeout`).
    #[default]
    Default,
    /// The whole value as one term, as is.
    Raw,
    /// The whole value as one term, lower-cased.
    Lowercase,
    /// As `default`, then reduced to English stems (`timeouts` → `timeout`).
    Stemming,
}

impl Tokenizer {
    pub fn all() -> [Tokenizer; 4] {
        [Tokenizer::Default, Tokenizer::Raw, Tokenizer::Lowercase, Tokenizer::Stemming]
    }
}

/// A table with an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Logs,
    Spans,
}

/// How a column is indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Analysed with the table's tokenizer (words).
    Text,
    /// Whole values as exact terms (`service_name`, `trace_id` as lower-case hex, attributes as
    /// `key=value`).
    Exact,
}

impl Table {
    /// Every column that can be indexed, and how.
    pub fn columns(self) -> &'static [(&'static str, Kind)] {
        match self {
            Table::Logs => &[
                ("body", Kind::Text),
                ("severity_text", Kind::Exact),
                ("service_name", Kind::Exact),
                ("trace_id", Kind::Exact),
                ("attributes", Kind::Exact),
            ],
            Table::Spans => &[
                ("name", Kind::Text),
                ("status_message", Kind::Text),
                ("events", Kind::Text),
                ("service_name", Kind::Exact),
                ("trace_id", Kind::Exact),
                ("attributes", Kind::Exact),
            ],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Logs => "logs",
            Table::Spans => "spans",
        }
    }

    pub fn by_name(name: &str) -> Option<Table> {
        match name {
            "logs" => Some(Table::Logs),
            "spans" => Some(Table::Spans),
            _ => None,
        }
    }

    pub fn kind_of(self, column: &str) -> Option<Kind> {
        self.columns().iter().find(|(c, _)| *c == column).map(|(_, k)| *k)
    }
}

/// What one table's indexes hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Spec {
    pub table: Table,
    /// The indexed columns, in the table's order.
    pub fields: Vec<String>,
    /// How text columns are cut into words (exact columns are whole values).
    pub tokenizer: Tokenizer,
    /// Word positions for text columns: needed by phrase queries, about a third of a text field's size.
    pub positions: bool,
    /// The attribute keys indexed as `key=value` (empty: every string attribute).
    pub attribute_keys: Vec<String>,
}

impl Spec {
    /// The defaults: logs by `body`, `severity_text`, `service_name` and string attributes; spans by
    /// `name`, `status_message`, event names and string attributes; words with positions. `trace_id`
    /// can be added but is not by default: a random 128-bit id per row is a unique term per row (on the
    /// load generator's logs it made the index 1.6 times bigger), and the bloom filter every Parquet file
    /// has on `trace_id` already serves `trace_id = '…'`.
    pub fn default_for(table: Table) -> Spec {
        let fields = match table {
            Table::Logs => vec!["body", "severity_text", "service_name", "attributes"],
            Table::Spans => vec!["name", "status_message", "events", "attributes"],
        };
        Spec {
            table,
            fields: fields.into_iter().map(String::from).collect(),
            tokenizer: Tokenizer::Default,
            positions: true,
            attribute_keys: Vec::new(),
        }
    }

    /// Checks the field names (an error names the unknown one and lists the known ones).
    pub fn validate(&self) -> Result<(), String> {
        for f in &self.fields {
            if self.table.kind_of(f).is_none() {
                let known: Vec<&str> = self.table.columns().iter().map(|(c, _)| *c).collect();
                return Err(format!(
                    "{} cannot be indexed in {}: the columns that can are {}",
                    f,
                    self.table.name(),
                    known.join(", ")
                ));
            }
        }
        if self.fields.is_empty() {
            return Err(format!(
                "the index of {} names no field (leave `fields` out for the defaults)",
                self.table.name()
            ));
        }
        Ok(())
    }

    /// Whether `column` is indexed, and how.
    pub fn kind_of(&self, column: &str) -> Option<Kind> {
        self.fields.iter().any(|f| f == column).then(|| self.table.kind_of(column)).flatten()
    }

    /// The analyser a column's values go through, in the index and in a scan.
    pub fn tokenizer_of(&self, column: &str) -> Tokenizer {
        match self.table.kind_of(column) {
            Some(Kind::Exact) => Tokenizer::Raw,
            _ => self.tokenizer,
        }
    }
}

/// The specs the daemon's exporters index with, by table (the defaults where none said otherwise): what
/// `text_match` and `match_all` analyse text with.
#[derive(Debug, Default)]
pub struct IndexSpecs {
    specs: RwLock<BTreeMap<Table, Spec>>,
}

impl IndexSpecs {
    /// Records the spec an exporter indexes `spec.table` with. Two exporters indexing one table
    /// differently is allowed (each file's index records its own), but queries analyse text only one
    /// way: the first registered; the caller is told (`Err` with the spec in use) to warn about it.
    pub fn register(&self, spec: &Spec) -> Result<(), Spec> {
        let mut specs = self.specs.write().expect("index specs lock");
        match specs.get(&spec.table) {
            Some(s) if s != spec => Err(s.clone()),
            Some(_) => Ok(()),
            None => {
                specs.insert(spec.table, spec.clone());
                Ok(())
            }
        }
    }

    /// The spec queries use for `table`.
    pub fn get(&self, table: Table) -> Spec {
        self.specs.read().expect("index specs lock").get(&table).cloned().unwrap_or_else(|| Spec::default_for(table))
    }
}
