//! Deep merge of config trees, remembering which source set each key.

use serde_yaml_ng::{Mapping, Value};
use std::collections::HashMap;

/// For each dotted path, the last source that wrote it.
#[derive(Debug, Default, Clone)]
pub struct Origins(HashMap<String, String>);

impl Origins {
    /// The source of `path`, or of its nearest ancestor that has one.
    pub fn source_of(&self, path: &str) -> Option<String> {
        let mut p = path;
        loop {
            if let Some(s) = self.0.get(p) {
                return Some(s.clone());
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return self.0.get("").cloned(),
            }
        }
    }
}

/// The text form of a mapping key (keys are strings in practice; numbers are tolerated).
pub fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

pub fn join(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => path.to_string(),
        (false, false) => format!("{path}.{key}"),
    }
}

/// Merges `over` into `base` the way the Collector does: maps merge key by key, anything else (lists,
/// scalars) replaces. A `null` in a later source leaves an earlier map as it was: `exporters: {debug: }`
/// reads "debug, with nothing to add", not "erase debug's settings".
pub fn merge_into(base: &mut Value, over: Value, source: &str, origins: &mut Origins) {
    merge_at(base, over, "", source, origins);
}

fn merge_at(base: &mut Value, over: Value, path: &str, source: &str, origins: &mut Origins) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            origins.0.entry(path.to_string()).or_insert_with(|| source.to_string());
            for (k, v) in o {
                let child = join(path, &key_text(&k));
                match b.get_mut(&k) {
                    Some(existing) => merge_at(existing, v, &child, source, origins),
                    None => {
                        record(&v, &child, source, origins);
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Mapping(_), Value::Null) => {}
        (b, o) => {
            record(&o, path, source, origins);
            *b = o;
        }
    }
}

fn record(v: &Value, path: &str, source: &str, origins: &mut Origins) {
    origins.0.insert(path.to_string(), source.to_string());
    if let Value::Mapping(m) = v {
        for (k, child) in m {
            record(child, &join(path, &key_text(k)), source, origins);
        }
    }
}

/// An empty mapping, for building trees.
pub fn mapping() -> Value {
    Value::Mapping(Mapping::new())
}
