//! `${…}` expansion with the Collector's rules.
//!
//! - `${env:VAR}` and `${VAR}` read an environment variable; `${env:VAR:-default}` uses `default` only
//!   when VAR is unset (an empty VAR stays empty); `${file:path}` reads a file;
//! - `$$` is a literal `$` (so `$${env:X}` stays as the text `${env:X}`); a lone `$` is kept;
//! - a value that is exactly one reference takes the referenced text as YAML (`5` is a number, `true`
//!   a bool); a reference inside a longer string is substituted as text.
//!
//! Only values are expanded, never keys.

use crate::merge::{Origins, join, key_text};
use crate::{ConfigError, source::parse_yaml};
use serde_yaml_ng::Value;

pub fn expand_tree(v: &mut Value, origins: &Origins) -> Result<(), ConfigError> {
    expand_at(v, "", origins)
}

fn expand_at(v: &mut Value, path: &str, origins: &Origins) -> Result<(), ConfigError> {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m.iter_mut() {
                expand_at(child, &join(path, &key_text(k)), origins)?;
            }
        }
        Value::Sequence(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                expand_at(child, &format!("{path}[{i}]"), origins)?;
            }
        }
        Value::String(s) if s.contains('$') => {
            *v = expand_value(s).map_err(|m| ConfigError::new(origins.source_of(path), path, m))?;
        }
        _ => {}
    }
    Ok(())
}

/// Expands one string value.
pub fn expand_value(s: &str) -> Result<Value, String> {
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !inner.contains('}')
    {
        let text = resolve(inner)?;
        // A whole-field reference is typed as YAML, as the Collector types it; text that is not YAML
        // (or is empty) stays a string.
        if text.is_empty() {
            return Ok(Value::String(text));
        }
        return Ok(parse_yaml(&text).unwrap_or(Value::String(text)));
    }
    expand_inline(s).map(Value::String)
}

fn expand_inline(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or_else(|| format!("unterminated reference in {s:?}: a '}}' is missing"))?;
            out.push_str(&resolve(&r[..end])?);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves the inside of `${…}`.
fn resolve(inner: &str) -> Result<String, String> {
    let (scheme, body) = match inner.split_once(':') {
        Some((scheme, body)) if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) => {
            (scheme, body)
        }
        _ => ("env", inner),
    };
    match scheme {
        "env" => {
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "${{{inner}}}: {name:?} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
                ));
            }
            match (std::env::var(name), default) {
                (Ok(v), _) => Ok(v),
                (Err(_), Some(d)) => Ok(d.to_string()),
                (Err(_), None) => {
                    tracing::warn!(
                        "config references environment variable {name}, which is not set; using an empty value"
                    );
                    Ok(String::new())
                }
            }
        }
        "file" => std::fs::read_to_string(body)
            .map(|t| t.trim_end_matches('\n').to_string())
            .map_err(|e| format!("${{{inner}}}: cannot read {body}: {e}")),
        other => Err(format!("${{{inner}}}: unknown provider {other:?}; supported providers are env and file")),
    }
}
