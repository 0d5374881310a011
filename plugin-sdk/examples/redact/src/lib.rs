//! Example plugin: `redact`, a processor for logs and spans that replaces, in chosen attributes, the
//! parts of string values that match patterns.
//!
//! ```yaml
//! processors:
//!   redact:
//!     attributes: [user.email, card]          # which keys; empty: every attribute
//!     patterns: ['\d{4}-\d{4}-\d{4}-\d{4}']   # regexes; empty: the whole value
//!     replacement: "***"
//! ```
//!
//! Only the `attributes` column changes: every other column is handed back as it came (shared, not
//! copied). Values of other types (numbers, booleans, nested values) are left alone, so that what is
//! stored stays readable as its type.

use openwit_plugin::arrow::array::ListArray;
use openwit_plugin::arrow::array::{Array, ArrayRef, AsArray, MapArray, RecordBatch, StringBuilder, StructArray};
use openwit_plugin::arrow::datatypes::{DataType, UInt8Type};
use openwit_plugin::guest::Processor;
use openwit_plugin::{Error, Signal};
use regex::RegexSet;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    pub attributes: Vec<String>,
    pub patterns: Vec<String>,
    pub replacement: Option<String>,
}

pub struct Redact {
    keys: Vec<String>,
    patterns: Vec<regex::Regex>,
    any: Option<RegexSet>,
    replacement: String,
}

impl Processor for Redact {
    const TYPE_NAME: &'static str = "redact";
    const DESCRIPTION: &'static str = "redacts the parts of attribute values that match patterns (example plugin)";
    const SIGNALS: &'static [Signal] = &[Signal::Logs, Signal::Traces];
    type Config = RedactConfig;

    fn validate(config: &RedactConfig) -> Result<(), String> {
        for (i, p) in config.patterns.iter().enumerate() {
            regex::Regex::new(p).map_err(|e| format!("patterns[{i}]: {e}"))?;
        }
        Ok(())
    }

    fn new(config: RedactConfig, _signal: Signal) -> Result<Redact, String> {
        let patterns = config
            .patterns
            .iter()
            .map(|p| regex::Regex::new(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let any =
            if patterns.is_empty() { None } else { Some(RegexSet::new(&config.patterns).map_err(|e| e.to_string())?) };
        Ok(Redact { keys: config.attributes, patterns, any, replacement: config.replacement.unwrap_or("***".into()) })
    }

    fn process(&mut self, rows: RecordBatch, _keep: &mut [bool]) -> Result<RecordBatch, Error> {
        let Some(idx) = rows.schema().index_of("attributes").ok() else { return Ok(rows) };
        let map = rows.column(idx).as_map_opt().ok_or_else(|| Error::Permanent("attributes is not a map".into()))?;
        let types = rows.column_by_name("attribute_types").and_then(|t| t.as_list_opt::<i32>());
        let redacted = self.redact(map, types)?;
        let mut columns = rows.columns().to_vec();
        columns[idx] = redacted;
        RecordBatch::try_new(rows.schema(), columns).map_err(|e| Error::Permanent(e.to_string()))
    }
}

impl Redact {
    /// The new text of one string value, `None` when it stays as it is.
    pub fn redact_value(&self, value: &str) -> Option<String> {
        match &self.any {
            None => Some(self.replacement.clone()),
            Some(set) if set.is_match(value) => {
                let mut out = value.to_string();
                for p in &self.patterns {
                    out = p.replace_all(&out, self.replacement.as_str()).into_owned();
                }
                Some(out)
            }
            Some(_) => None,
        }
    }

    fn redact(&self, map: &MapArray, types: Option<&ListArray>) -> Result<ArrayRef, Error> {
        let keys =
            map.keys().as_string_opt::<i32>().ok_or_else(|| Error::Permanent("attribute keys are not text".into()))?;
        let values = map
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::Permanent("attribute values are not text".into()))?;
        let offsets = map.value_offsets();
        // The entries to change, in entry order, with their new text.
        let mut replaced: Vec<(usize, String)> = Vec::new();
        for row in 0..map.len() {
            // The type code of each entry of this row; none listed means every value is a string.
            let codes = types.filter(|t| !t.is_null(row)).map(|t| t.value(row));
            let codes = codes.as_ref().map(|c| c.as_primitive::<UInt8Type>());
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            for (n, e) in (start..end).enumerate() {
                let is_string = codes.is_none_or(|c| c.is_empty() || (n < c.len() && c.value(n) == 0));
                if !is_string
                    || values.is_null(e)
                    || !(self.keys.is_empty() || self.keys.iter().any(|k| k == keys.value(e)))
                {
                    continue;
                }
                if let Some(v) = self.redact_value(values.value(e)) {
                    replaced.push((e, v));
                }
            }
        }
        if replaced.is_empty() {
            return Ok(Arc::new(map.clone()));
        }
        // Every entry of the values array is written (also those outside a sliced map's rows), so that
        // the offsets stay as they are.
        let mut full = StringBuilder::with_capacity(values.len(), values.value_data().len());
        let mut next = replaced.iter().peekable();
        for e in 0..values.len() {
            match next.next_if(|(i, _)| *i == e) {
                Some((_, v)) => full.append_value(v),
                None if values.is_null(e) => full.append_null(),
                None => full.append_value(values.value(e)),
            }
        }
        let entries = map.entries();
        let DataType::Map(field, ordered) = map.data_type() else {
            return Err(Error::Permanent("attributes is not a map".into()));
        };
        let DataType::Struct(entry_fields) = field.data_type() else {
            return Err(Error::Permanent("attribute entries are not a struct".into()));
        };
        let new_entries = StructArray::try_new(
            entry_fields.clone(),
            vec![entries.column(0).clone(), Arc::new(full.finish())],
            entries.nulls().cloned(),
        )
        .map_err(|e| Error::Permanent(e.to_string()))?;
        let m = MapArray::try_new(field.clone(), map.offsets().clone(), new_entries, map.nulls().cloned(), *ordered)
            .map_err(|e| Error::Permanent(e.to_string()))?;
        Ok(Arc::new(m))
    }
}

openwit_plugin::export_plugin!(
    name: "openwit-plugin-redact",
    version: env!("CARGO_PKG_VERSION"),
    processors: [Redact],
    exporters: [],
);
