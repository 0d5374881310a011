//! `extensions: plugins: {paths: [...]}`: the shared libraries whose processors and exporters join the
//! built-in component types. Read before the components are (their types may come from a plugin);
//! the daemon opens the libraries (`daemon/src/plugins.rs`, `docs/plugins.md`).

use crate::merge::{Origins, join, key_text};
use crate::model::{Ctx, setting};
use crate::{ConfigError, ConfigErrors};
use openwit_core::ComponentId;
use openwit_core::factory::ComponentConfig;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::path::PathBuf;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Library files (`.so`), absolute or relative to the working directory, loaded in order.
    pub paths: Vec<PathBuf>,
}

impl ComponentConfig for PluginSettings {}

/// One library to load, with where the config named it (for errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginPath {
    pub path: PathBuf,
    /// `extensions.plugins.paths[0]`
    pub key: String,
    /// The config source that gave it.
    pub source: Option<String>,
}

impl PluginPath {
    /// An error about this library, located where the config names it.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.source.clone(), &self.key, message)
    }
}

/// The libraries a loaded config lists.
pub fn plugin_paths(tree: &Value, origins: &Origins) -> Result<Vec<PluginPath>, ConfigErrors> {
    let Some(top) = tree.as_mapping() else { return Ok(Vec::new()) };
    let mut cx = Ctx::new(origins);
    let settings: PluginSettings = setting(&mut cx, top, "plugins");
    cx.into_result()?;
    let key = top
        .get("extensions")
        .and_then(Value::as_mapping)
        .and_then(|m| m.keys().map(key_text).find(|k| ComponentId::parse(k).is_ok_and(|id| id.type_name == "plugins")))
        .unwrap_or_else(|| "plugins".into());
    Ok(settings
        .paths
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let key = format!("{}[{i}]", join(&join("extensions", &key), "paths"));
            PluginPath { source: origins.source_of(&key), path, key }
        })
        .collect())
}
