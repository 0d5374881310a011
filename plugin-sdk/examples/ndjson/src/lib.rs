//! Example plugin: `ndjson`, an exporter that appends every row it is given to a file as one JSON
//! object per line, and answers "stored" only once the lines are on disk (fsynced).
//!
//! ```yaml
//! exporters:
//!   ndjson:
//!     path: /var/lib/openwit/logs.ndjson
//! ```
//!
//! Each column becomes a key: numbers and booleans as JSON numbers and booleans, maps (attributes) as
//! objects, everything else as the text Arrow's display gives it (timestamps in RFC 3339, binary ids
//! in hex). Null values are left out.

use openwit_plugin::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use openwit_plugin::arrow::datatypes::{DataType, TimeUnit, TimestampNanosecondType};
use openwit_plugin::arrow::util::display::{ArrayFormatter, FormatOptions};
use openwit_plugin::guest::Exporter;
use openwit_plugin::{Error, Signal};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NdjsonConfig {
    pub path: Option<PathBuf>,
}

pub struct Ndjson {
    path: PathBuf,
    file: File,
}

impl Exporter for Ndjson {
    const TYPE_NAME: &'static str = "ndjson";
    const DESCRIPTION: &'static str = "appends rows to a file as newline-delimited JSON, fsynced (example plugin)";
    const SIGNALS: &'static [Signal] = &[Signal::Traces, Signal::Metrics, Signal::Logs];
    type Config = NdjsonConfig;

    fn validate(config: &NdjsonConfig) -> Result<(), String> {
        match &config.path {
            None => Err("path: required (the file the lines are appended to)".into()),
            Some(p) if p.as_os_str().is_empty() => Err("path: must not be empty".into()),
            Some(_) => Ok(()),
        }
    }

    fn new(config: NdjsonConfig, _signal: Signal) -> Result<Ndjson, String> {
        let path = config.path.unwrap_or_default();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(Ndjson { path, file })
    }

    fn export(&mut self, rows: RecordBatch) -> Result<(), Error> {
        let text = lines(&rows).map_err(Error::Permanent)?;
        // One write for the whole batch (appends are whole), then fsync: "stored" means on disk.
        let io = |e: std::io::Error| Error::Retryable(format!("cannot write {}: {e}", self.path.display()));
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.file.sync_all().map_err(|e| Error::Retryable(format!("cannot sync {}: {e}", self.path.display())))
    }
}

/// The rows as JSON lines.
pub fn lines(rows: &RecordBatch) -> Result<String, String> {
    let options = FormatOptions::default();
    let schema = rows.schema();
    let mut objects: Vec<Map<String, Value>> = vec![Map::new(); rows.num_rows()];
    for (field, col) in schema.fields().iter().zip(rows.columns()) {
        // Timestamps are UTC (`docs/schema.md`): shown without the zone name (which Arrow's display
        // would need a time-zone database to read), with a `Z`.
        let (col, utc) = match col.data_type() {
            DataType::Timestamp(TimeUnit::Nanosecond, Some(_)) => {
                let naive = col.as_primitive::<TimestampNanosecondType>().clone().with_timezone_opt(None::<String>);
                (Arc::new(naive) as ArrayRef, true)
            }
            _ => (col.clone(), false),
        };
        let text = ArrayFormatter::try_new(col.as_ref(), &options).map_err(|e| e.to_string())?;
        for (row, obj) in objects.iter_mut().enumerate() {
            if col.is_null(row) {
                continue;
            }
            let v = match col.data_type() {
                DataType::Boolean => Value::Bool(col.as_boolean().value(row)),
                t if t.is_integer() || t.is_floating() => {
                    let s = text.value(row).to_string();
                    serde_json::from_str(&s).unwrap_or(Value::String(s))
                }
                DataType::Map(_, _) => {
                    let m = col.as_map();
                    let (keys, values) = (m.keys(), m.values());
                    let (k, v) = (
                        ArrayFormatter::try_new(keys.as_ref(), &options).map_err(|e| e.to_string())?,
                        ArrayFormatter::try_new(values.as_ref(), &options).map_err(|e| e.to_string())?,
                    );
                    let offsets = m.value_offsets();
                    let entries = (offsets[row] as usize..offsets[row + 1] as usize)
                        .map(|e| (k.value(e).to_string(), Value::String(v.value(e).to_string())));
                    Value::Object(entries.collect())
                }
                _ if utc => Value::String(format!("{}Z", text.value(row))),
                _ => Value::String(text.value(row).to_string()),
            };
            obj.insert(field.name().clone(), v);
        }
    }
    let mut out = String::new();
    for o in objects {
        out.push_str(&Value::Object(o).to_string());
        out.push('\n');
    }
    Ok(out)
}

openwit_plugin::export_plugin!(
    name: "openwit-plugin-ndjson",
    version: env!("CARGO_PKG_VERSION"),
    processors: [],
    exporters: [Ndjson],
);
