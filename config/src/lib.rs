//! Configuration in the OpenTelemetry Collector's format.
//!
//! Loading goes: every `--config` source is read (a path, `file:`, `env:`, `yaml:`), `--set` overrides
//! are turned into one more source, all are deep-merged in order (maps merge, lists and scalars
//! replace), `${…}` references are expanded, and the result is validated against the registry of
//! component factories. Every error names the source the offending key came from and its path.

mod connectors;
mod durability;
mod error;
mod expand;
mod merge;
mod model;
mod plugins;
mod redact;
mod set;
mod source;

pub use durability::{CatalogSettings, SETTINGS, WalSettings};
pub use error::{ConfigError, ConfigErrors};
pub use model::{PipelineId, PipelineSpec, Resolved, ResolvedConfig, TelemetryConfig, TelemetryLogs};
pub use plugins::{PluginPath, PluginSettings, plugin_paths};
pub use redact::redact;
pub use source::ConfigSource;

pub use merge::Origins;
use openwit_core::Registry;
use serde_yaml_ng::Value;

/// Loads, merges and expands the sources, then applies the `--set` overrides. Returns the merged tree
/// and where each key came from.
pub fn load(sources: &[ConfigSource], sets: &[String]) -> Result<(Value, Origins), ConfigErrors> {
    let mut merged = Value::Null;
    let mut origins = Origins::default();
    for src in sources {
        let tree = src.load().map_err(ConfigErrors::one)?;
        merge::merge_into(&mut merged, tree, &src.to_string(), &mut origins);
    }
    for s in sets {
        let tree = set::parse(s).map_err(ConfigErrors::one)?;
        merge::merge_into(&mut merged, tree, &format!("--set {s}"), &mut origins);
    }
    expand::expand_tree(&mut merged, &origins).map_err(ConfigErrors::one)?;
    Ok((merged, origins))
}

/// Loads and validates a config: the whole path from command-line sources to buildable components.
pub fn resolve(sources: &[ConfigSource], sets: &[String], registry: &Registry) -> Result<ResolvedConfig, ConfigErrors> {
    let (tree, origins) = load(sources, sets)?;
    model::resolve(tree, &origins, registry)
}

/// Validates a loaded tree against the registry (after plugins, read with `plugin_paths`, added their
/// component types to it).
pub fn resolve_tree(tree: Value, origins: &Origins, registry: &Registry) -> Result<ResolvedConfig, ConfigErrors> {
    model::resolve(tree, origins, registry)
}

#[cfg(test)]
mod tests;
