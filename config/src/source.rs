//! Where config comes from: the values of `--config`.

use crate::ConfigError;
use serde_yaml_ng::Value;
use std::fmt;
use std::path::PathBuf;

/// One `--config` value, as the Collector accepts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `path/to/file.yaml` or `file:path/to/file.yaml`.
    File(PathBuf),
    /// `env:VAR`: the variable holds YAML.
    Env(String),
    /// `yaml:processors::batch::timeout: 2s`: inline YAML whose keys may use `::` for nesting.
    Yaml(String),
    /// YAML text compiled into the binary (the embedded default).
    Embedded(&'static str, &'static str),
}

impl ConfigSource {
    /// Parses a `--config` value.
    pub fn parse(s: &str) -> ConfigSource {
        if let Some(rest) = s.strip_prefix("file:") {
            ConfigSource::File(PathBuf::from(rest))
        } else if let Some(rest) = s.strip_prefix("env:") {
            ConfigSource::Env(rest.to_string())
        } else if let Some(rest) = s.strip_prefix("yaml:") {
            ConfigSource::Yaml(rest.to_string())
        } else {
            ConfigSource::File(PathBuf::from(s))
        }
    }

    /// Reads and parses the source.
    pub fn load(&self) -> Result<Value, ConfigError> {
        let me = Some(self.to_string());
        let text = match self {
            ConfigSource::File(p) => std::fs::read_to_string(p).map_err(|e| {
                ConfigError::new(me.clone(), "", format!("cannot read config file: {e}; check the --config path"))
            })?,
            ConfigSource::Env(var) => std::env::var(var).map_err(|_| {
                ConfigError::new(me.clone(), "", format!("environment variable {var} is not set (or not UTF-8)"))
            })?,
            ConfigSource::Yaml(y) => yaml_shorthand(y),
            ConfigSource::Embedded(_, text) => text.to_string(),
        };
        parse_yaml(&text).map_err(|m| ConfigError::new(me, "", m))
    }
}

/// `a::b::c: v` → nested YAML, as the Collector's `yaml:` provider reads it.
fn yaml_shorthand(y: &str) -> String {
    match y.split_once(": ") {
        Some((key, value)) if key.contains("::") => {
            let parts: Vec<&str> = key.split("::").collect();
            let mut out = String::new();
            for (depth, p) in parts.iter().enumerate() {
                out.push_str(&"  ".repeat(depth));
                out.push_str(p);
                out.push(':');
                if depth + 1 < parts.len() {
                    out.push('\n');
                }
            }
            out.push(' ');
            out.push_str(value);
            out
        }
        _ => y.to_string(),
    }
}

/// Parses YAML text; an empty document is an empty config.
pub(crate) fn parse_yaml(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Env(v) => write!(f, "env:{v}"),
            ConfigSource::Yaml(y) => write!(f, "yaml:{y}"),
            ConfigSource::Embedded(name, _) => f.write_str(name),
        }
    }
}
