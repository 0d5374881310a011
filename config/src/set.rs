//! `--set key.path=value` overrides.

use crate::ConfigError;
use crate::merge::mapping;
use serde_yaml_ng::Value;

/// Turns `a.b.c=value` (or the Collector's `a::b::c=value`) into a tree to merge last. The value is
/// read as YAML, so `--set processors.batch.send_batch_size=100` is a number and `[a,b]` a list.
pub fn parse(s: &str) -> Result<Value, ConfigError> {
    let bad = |m: &str| ConfigError::new(Some(format!("--set {s}")), "", m.to_string());
    let (key, value) = s.split_once('=').ok_or_else(|| bad("expected key.path=value"))?;
    let parts: Vec<&str> = if key.contains("::") { key.split("::").collect() } else { key.split('.').collect() };
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(bad("the key path has an empty part; write it like processors.batch.timeout"));
    }
    let mut tree = if value.is_empty() {
        Value::String(String::new())
    } else {
        serde_yaml_ng::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()))
    };
    for p in parts.iter().rev() {
        let mut m = mapping();
        if let Value::Mapping(map) = &mut m {
            map.insert(Value::String(p.trim().to_string()), tree);
        }
        tree = m;
    }
    Ok(tree)
}
