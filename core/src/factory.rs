//! Factories: how a component type is named, configured and built; and the registry that lists them.

use crate::{ComponentId, Exporter, Extension, Processor, Receiver, Signal, telemetry::Telemetry};
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

/// A component's config after it was parsed and validated: it builds as many instances as asked (one
/// per pipeline for processors, a fresh one after a panic), all from the same parsed config.
pub trait Configured<C: ?Sized>: Send + Sync {
    fn build(&self, id: &ComponentId, env: &BuildEnv) -> anyhow::Result<Box<C>>;
    /// The pipelines this config names (a routing connector's tables), as (path in the section,
    /// pipeline id): the config check verifies each one exists and reads from the component.
    fn pipeline_refs(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Batches an exporter's queue holds (its `sending_queue`); `None`: the daemon's default.
    fn queue_size(&self) -> Option<usize> {
        None
    }
    /// Batches an exporter exports at once (its `sending_queue.num_consumers`), each consumer with its
    /// own instance; 1: one at a time, in order.
    fn consumers(&self) -> usize {
        1
    }
}

/// A parsed config, shared by everything that builds from it.
pub type ParsedConfig<C> = Arc<dyn Configured<C>>;

/// A problem in one component's config section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where in the component's section (`protocols.grpc.endpoint`); empty for the section itself.
    pub path: String,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigIssue {
        ConfigIssue { path: path.into(), message: message.into() }
    }
}

/// What a factory may use when it builds a component.
#[derive(Clone)]
pub struct BuildEnv {
    pub data_dir: PathBuf,
    pub telemetry: Arc<Telemetry>,
    /// The catalog (one pool for the daemon), for components that record what they store.
    pub catalog: openwit_catalog::Catalog,
    /// This daemon's id in the catalog (also part of the names of the files it writes).
    pub node_id: String,
    /// For processors: whether an exporter of this pipeline reads Arrow rows.
    pub columnar_downstream: bool,
    /// For processors: the signal of the pipeline the instance is built for (its config may only fit
    /// some signals, as the Collector's `include`/`exclude` do).
    pub signal: Option<crate::Signal>,
    /// Where files are kept: storage roots and one object-store client per bucket, for the daemon.
    pub storage: Arc<openwit_storage::Storage>,
    /// How each table's full-text index analyses text: exporters that index register theirs, the query
    /// engine reads them.
    pub index_specs: Arc<crate::text_index::IndexSpecs>,
    /// Rows exporters hold that are not in stable files yet: exporters register theirs, the query
    /// engine reads them.
    pub fresh: Arc<crate::fresh::FreshData>,
    /// For connectors: the entries of the pipelines that list the connector as a receiver, by pipeline
    /// id (`logs/acme`), in config order. Empty for every other component.
    pub connector_outputs: Arc<Vec<(String, crate::Fanout)>>,
    /// The running authenticators, for components with `auth: {authenticator: …}`.
    pub auth: Arc<crate::auth::Authenticators>,
    /// The process's memory budget (`wal.max_memory_megabytes`), for components that hold telemetry
    /// beyond a batch's life (the Parquet exporter's buffered rows).
    pub memory: Arc<crate::memory::MemoryBudget>,
}

/// A component type: its name, the signals it supports, and how to parse and build it.
pub trait Factory<C: ?Sized>: Send + Sync {
    fn type_name(&self) -> &'static str;
    /// Other names accepted for this type (`otlp_grpc` for `otlp`).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    fn signals(&self) -> &'static [Signal];
    /// One line for `openwit components`.
    fn description(&self) -> &'static str;
    /// Parses and validates the component's section (`null` means "all defaults") into something that
    /// builds the component.
    fn parse(&self, raw: &Value) -> Result<ParsedConfig<C>, ConfigIssue>;
    /// Whether the component reads batches as Arrow rows (`Batch::columnar`): pipelines that feed one
    /// have their batch processor convert each batch once, before the fan-out.
    fn reads_columnar(&self) -> bool {
        false
    }
    /// For processors: whether the component passes on a batch's Arrow rows made before it, kept
    /// current (a filter selects the rows it keeps). A pipeline then converts before it, so that it
    /// evaluates the rows.
    fn keeps_columnar(&self) -> bool {
        false
    }
}

/// A factory whose components read Arrow rows (see `Factory::reads_columnar`).
pub fn reading_columnar<C: ?Sized + 'static>(inner: Arc<dyn Factory<C>>) -> Arc<dyn Factory<C>> {
    Arc::new(Columnar { inner, reads: true, keeps: false })
}

/// A processor factory whose components keep a batch's Arrow rows current (see
/// `Factory::keeps_columnar`).
pub fn keeping_columnar<C: ?Sized + 'static>(inner: Arc<dyn Factory<C>>) -> Arc<dyn Factory<C>> {
    Arc::new(Columnar { inner, reads: false, keeps: true })
}

/// A factory with its Arrow flags set.
struct Columnar<C: ?Sized> {
    inner: Arc<dyn Factory<C>>,
    reads: bool,
    keeps: bool,
}

impl<C: ?Sized> Factory<C> for Columnar<C> {
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
    fn aliases(&self) -> &'static [&'static str] {
        self.inner.aliases()
    }
    fn signals(&self) -> &'static [Signal] {
        self.inner.signals()
    }
    fn description(&self) -> &'static str {
        self.inner.description()
    }
    fn parse(&self, raw: &Value) -> Result<ParsedConfig<C>, ConfigIssue> {
        self.inner.parse(raw)
    }
    fn reads_columnar(&self) -> bool {
        self.reads
    }
    fn keeps_columnar(&self) -> bool {
        self.keeps
    }
}

/// A typed component config: serde does the shape (`deny_unknown_fields`, defaults), `validate` the rest.
pub trait ComponentConfig: DeserializeOwned + Default + Send + Sync + 'static {
    fn validate(&self) -> Result<(), ConfigIssue> {
        Ok(())
    }
    /// See `Configured::pipeline_refs`.
    fn pipeline_refs(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// See `Configured::queue_size`.
    fn queue_size(&self) -> Option<usize> {
        None
    }
    /// See `Configured::consumers`.
    fn consumers(&self) -> usize {
        1
    }
}

/// Parses a config section into `T`, reporting the path of the first problem.
pub fn parse_section<T: DeserializeOwned + Default>(raw: &Value) -> Result<T, ConfigIssue> {
    if raw.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        ConfigIssue::new(if path == "." { String::new() } else { path }, e.into_inner().to_string())
    })
}

/// The usual factory: a typed config and a build function.
pub struct TypedFactory<Cfg, C: ?Sized> {
    pub type_name: &'static str,
    pub aliases: &'static [&'static str],
    pub signals: &'static [Signal],
    pub description: &'static str,
    pub build: BuildFn<Cfg, C>,
    pub _config: PhantomData<fn() -> Cfg>,
}

/// Builds one instance of a component from its borrowed, typed config.
pub type BuildFn<Cfg, C> = fn(&ComponentId, &Cfg, &BuildEnv) -> anyhow::Result<Box<C>>;

/// A typed config with the function that builds from it.
struct Typed<Cfg, C: ?Sized> {
    cfg: Cfg,
    build: BuildFn<Cfg, C>,
}

impl<Cfg: ComponentConfig, C: ?Sized> Configured<C> for Typed<Cfg, C> {
    fn build(&self, id: &ComponentId, env: &BuildEnv) -> anyhow::Result<Box<C>> {
        (self.build)(id, &self.cfg, env)
    }
    fn pipeline_refs(&self) -> Vec<(String, String)> {
        self.cfg.pipeline_refs()
    }
    fn queue_size(&self) -> Option<usize> {
        self.cfg.queue_size()
    }
    fn consumers(&self) -> usize {
        self.cfg.consumers()
    }
}

impl<Cfg: ComponentConfig, C: ?Sized + 'static> Factory<C> for TypedFactory<Cfg, C> {
    fn type_name(&self) -> &'static str {
        self.type_name
    }
    fn aliases(&self) -> &'static [&'static str] {
        self.aliases
    }
    fn signals(&self) -> &'static [Signal] {
        self.signals
    }
    fn description(&self) -> &'static str {
        self.description
    }
    fn parse(&self, raw: &Value) -> Result<ParsedConfig<C>, ConfigIssue> {
        let cfg: Cfg = parse_section(raw)?;
        cfg.validate()?;
        Ok(Arc::new(Typed { cfg, build: self.build }))
    }
}

/// Shorthand for building a `TypedFactory` in a component's module.
pub fn typed<Cfg: ComponentConfig, C: ?Sized + 'static>(
    type_name: &'static str,
    aliases: &'static [&'static str],
    signals: &'static [Signal],
    description: &'static str,
    build: BuildFn<Cfg, C>,
) -> Arc<dyn Factory<C>> {
    Arc::new(TypedFactory { type_name, aliases, signals, description, build, _config: PhantomData })
}

/// The factories of one component kind.
pub struct FactorySet<C: ?Sized> {
    factories: Vec<Arc<dyn Factory<C>>>,
}

impl<C: ?Sized> Default for FactorySet<C> {
    fn default() -> Self {
        FactorySet { factories: Vec::new() }
    }
}

impl<C: ?Sized> FactorySet<C> {
    pub fn add(&mut self, f: Arc<dyn Factory<C>>) {
        self.factories.push(f);
    }

    /// The factory for a type name or one of its aliases.
    pub fn get(&self, type_name: &str) -> Option<&Arc<dyn Factory<C>>> {
        self.factories.iter().find(|f| f.type_name() == type_name || f.aliases().contains(&type_name))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Factory<C>>> {
        self.factories.iter()
    }

    /// Every accepted type name, aliases included, sorted: for error messages.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self
            .factories
            .iter()
            .flat_map(|f| std::iter::once(f.type_name()).chain(f.aliases().iter().copied()))
            .collect();
        v.sort_unstable();
        v
    }
}

/// Every component type the daemon can build.
#[derive(Default)]
pub struct Registry {
    pub receivers: FactorySet<dyn Receiver>,
    pub processors: FactorySet<dyn Processor>,
    pub exporters: FactorySet<dyn Exporter>,
    pub extensions: FactorySet<dyn Extension>,
    /// Connectors run as processors whose output is the pipelines that read from them
    /// (`BuildEnv::connector_outputs`); the plain `Fanout` they get reaches all of those pipelines.
    pub connectors: FactorySet<dyn Processor>,
}

/// A component's YAML section as JSON text, what a plugin is given (`{}` for an empty section).
fn section_json(raw: &Value) -> Result<String, ConfigIssue> {
    if raw.is_null() {
        return Ok("{}".into());
    }
    serde_json::to_string(raw)
        .map_err(|e| ConfigIssue::new("", format!("cannot hand this section to the plugin as JSON: {e}")))
}

/// Names, descriptions and signals of plugin components live as long as their library, which is
/// never unloaded.
fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// Builds one instance of a plugin component from its section (as JSON).
pub type PluginBuildFn<C> =
    fn(&Arc<openwit_plugin::host::Component>, &str, &ComponentId, &BuildEnv) -> anyhow::Result<Box<C>>;

/// The factory of a component type a plugin library offers: the plugin validates its own section
/// (handed over as JSON), `build` makes an instance from it.
pub fn plugin_factory<C: ?Sized + 'static>(
    component: Arc<openwit_plugin::host::Component>,
    build: PluginBuildFn<C>,
) -> Arc<dyn Factory<C>> {
    Arc::new(PluginFactory {
        type_name: leak_str(&component.type_name),
        description: leak_str(&component.description),
        signals: Vec::leak(component.signals.iter().map(|s| Signal::from(*s)).collect()),
        component,
        build,
    })
}

struct PluginFactory<C: ?Sized> {
    type_name: &'static str,
    description: &'static str,
    signals: &'static [Signal],
    component: Arc<openwit_plugin::host::Component>,
    build: PluginBuildFn<C>,
}

impl<C: ?Sized + 'static> Factory<C> for PluginFactory<C> {
    fn type_name(&self) -> &'static str {
        self.type_name
    }
    fn signals(&self) -> &'static [Signal] {
        self.signals
    }
    fn description(&self) -> &'static str {
        self.description
    }
    fn parse(&self, raw: &Value) -> Result<ParsedConfig<C>, ConfigIssue> {
        let json = section_json(raw)?;
        self.component.validate(&json).map_err(|e| ConfigIssue::new("", e))?;
        Ok(Arc::new(PluginConfig { json, component: self.component.clone(), build: self.build }))
    }
}

struct PluginConfig<C: ?Sized> {
    json: String,
    component: Arc<openwit_plugin::host::Component>,
    build: PluginBuildFn<C>,
}

impl<C: ?Sized> Configured<C> for PluginConfig<C> {
    fn build(&self, id: &ComponentId, env: &BuildEnv) -> anyhow::Result<Box<C>> {
        (self.build)(&self.component, &self.json, id, env)
    }
}
