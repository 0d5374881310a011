//! Plugin libraries named by the config (`extensions: plugins: {paths: […]}`): opened and checked
//! at start, their processors and exporters added to the registry beside the built-ins, under their
//! own type names. A library that cannot be used stops the start with an error naming its file and
//! what is wrong; a type name already taken (by a built-in or another plugin) likewise.

use openwit_config::{ConfigErrors, PluginPath};
use openwit_core::Registry;
use openwit_plugin::host::{self, Kind};
use std::path::PathBuf;

/// A loaded library, for `openwit components`.
pub struct Loaded {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub types: Vec<String>,
}

/// Opens each library and registers its components.
pub fn load(registry: &mut Registry, paths: &[PluginPath]) -> Result<Vec<Loaded>, ConfigErrors> {
    let mut errors = Vec::new();
    let mut loaded: Vec<Loaded> = Vec::new();
    for p in paths {
        let canonical = p.path.canonicalize().unwrap_or_else(|_| p.path.clone());
        if loaded.iter().any(|l| l.path == canonical) {
            errors.push(p.error(format!("{} is listed twice", p.path.display())));
            continue;
        }
        let components = match host::open(&p.path) {
            Ok(c) => c,
            Err(e) => {
                errors.push(p.error(e.to_string()));
                continue;
            }
        };
        let Some(first) = components.first() else { continue };
        let library = first.library.clone();
        let mut types = Vec::new();
        for c in components {
            let taken = match c.kind {
                Kind::Processor => registry.processors.get(&c.type_name).is_some(),
                Kind::Exporter => registry.exporters.get(&c.type_name).is_some(),
            };
            let noun = if c.kind == Kind::Processor { "processor" } else { "exporter" };
            if taken {
                errors.push(p.error(format!(
                    "plugin {}: its {noun} type {:?} is already defined (by a built-in or another plugin); \
                     rename it in the plugin",
                    p.path.display(),
                    c.type_name
                )));
                continue;
            }
            types.push(format!("{noun} {}", c.type_name));
            match c.kind {
                Kind::Processor => registry.processors.add(openwit_processors::plugin::factory(c)),
                Kind::Exporter => registry.exporters.add(openwit_exporters::plugin::factory(c)),
            }
        }
        loaded.push(Loaded { path: canonical, name: library.name.clone(), version: library.version.clone(), types });
    }
    if errors.is_empty() { Ok(loaded) } else { Err(ConfigErrors(errors)) }
}
