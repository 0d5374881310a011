//! Config errors that say where (source and path), what, and what to do.

use std::fmt;

/// One problem in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The source the offending key came from (`config.yaml`, `env:OTEL_CONFIG`, `--set …`).
    pub source: Option<String>,
    /// Dotted path in the merged config (`exporters.debug.verbosity`).
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(source: Option<String>, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { source, path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.source {
            write!(f, "{s}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found; validation reports them all at once rather than one per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn one(e: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "invalid configuration ({n} problem{}):", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
