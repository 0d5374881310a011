//! The merged config checked against the registry, turned into what the daemon builds.

use crate::durability::{CatalogSettings, SETTINGS, WalSettings};
use crate::merge::{Origins, join, key_text};
use crate::{ConfigError, ConfigErrors};
use openwit_core::factory::{ComponentConfig, FactorySet, parse_section};
use openwit_core::{ComponentId, ComponentKind, Exporter, Extension, Factory, ParsedConfig, Processor, Receiver};
use openwit_core::{Registry, Signal};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// A configured component with its factory and parsed config, ready to build.
pub struct Resolved<C: ?Sized> {
    pub id: ComponentId,
    pub factory: Arc<dyn Factory<C>>,
    pub config: ParsedConfig<C>,
}

/// A pipeline id: `signal[/name]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineId {
    pub signal: Signal,
    pub name: Option<String>,
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.signal, n),
            None => write!(f, "{}", self.signal),
        }
    }
}

/// One entry of `service.pipelines`.
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    pub id: PipelineId,
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
}

/// `service.telemetry.logs`. Keys the Collector has and OpenWit does not use are accepted and ignored
/// with a warning, so that Collector configs run unchanged.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryLogs {
    pub level: String,
    pub encoding: String,
    development: Option<Value>,
    disable_caller: Option<Value>,
    disable_stacktrace: Option<Value>,
    sampling: Option<Value>,
    output_paths: Option<Value>,
    error_output_paths: Option<Value>,
    initial_fields: Option<Value>,
    processors: Option<Value>,
}

impl Default for TelemetryLogs {
    fn default() -> Self {
        TelemetryLogs {
            level: "info".into(),
            encoding: "console".into(),
            development: None,
            disable_caller: None,
            disable_stacktrace: None,
            sampling: None,
            output_paths: None,
            error_output_paths: None,
            initial_fields: None,
            processors: None,
        }
    }
}

/// `service.telemetry.metrics`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryMetrics {
    /// `none` turns the metrics endpoint off; `basic`, `normal`, `detailed` keep it on.
    pub level: String,
    /// The older form of the endpoint: `host:port`.
    pub address: Option<String>,
    /// The newer form: `readers: [{pull: {exporter: {prometheus: {host, port}}}}]`.
    pub readers: Option<Vec<Value>>,
    views: Option<Value>,
}

impl Default for TelemetryMetrics {
    fn default() -> Self {
        TelemetryMetrics { level: "normal".into(), address: None, readers: None, views: None }
    }
}

/// `service.telemetry`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub logs: TelemetryLogs,
    pub metrics: TelemetryMetrics,
    traces: Option<Value>,
    resource: Option<Value>,
}

impl TelemetryConfig {
    /// Where the Prometheus endpoint listens, or `None` when metrics are off.
    pub fn metrics_endpoint(&self) -> Option<String> {
        if self.metrics.level == "none" {
            return None;
        }
        if let Some(a) = &self.metrics.address {
            return Some(a.clone());
        }
        for r in self.metrics.readers.iter().flatten() {
            let prom = &r["pull"]["exporter"]["prometheus"];
            if prom.is_mapping() {
                let host = prom["host"].as_str().unwrap_or("localhost");
                let port = prom["port"].as_u64().unwrap_or(8888);
                return Some(format!("{host}:{port}"));
            }
        }
        Some("localhost:8888".to_string())
    }

    /// Collector keys that are accepted but have no effect here.
    pub fn ignored_keys(&self) -> Vec<&'static str> {
        let l = &self.logs;
        [
            ("logs.development", l.development.is_some()),
            ("logs.disable_caller", l.disable_caller.is_some()),
            ("logs.disable_stacktrace", l.disable_stacktrace.is_some()),
            ("logs.sampling", l.sampling.is_some()),
            ("logs.output_paths", l.output_paths.is_some()),
            ("logs.error_output_paths", l.error_output_paths.is_some()),
            ("logs.initial_fields", l.initial_fields.is_some()),
            ("logs.processors", l.processors.is_some()),
            ("metrics.views", self.metrics.views.is_some()),
            ("traces", self.traces.is_some()),
            ("resource", self.resource.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }

    fn validate(&self) -> Result<(), (String, String)> {
        const LEVELS: [&str; 7] = ["debug", "info", "warn", "error", "dpanic", "panic", "fatal"];
        if !LEVELS.contains(&self.logs.level.to_ascii_lowercase().as_str()) {
            return Err((
                "logs.level".into(),
                format!("unknown level {:?}; valid levels: {}", self.logs.level, LEVELS.join(", ")),
            ));
        }
        if !["console", "json"].contains(&self.logs.encoding.as_str()) {
            return Err((
                "logs.encoding".into(),
                format!("unknown encoding {:?}; valid: console, json", self.logs.encoding),
            ));
        }
        const MLEVELS: [&str; 4] = ["none", "basic", "normal", "detailed"];
        if !MLEVELS.contains(&self.metrics.level.as_str()) {
            return Err((
                "metrics.level".into(),
                format!("unknown level {:?}; valid levels: {}", self.metrics.level, MLEVELS.join(", ")),
            ));
        }
        Ok(())
    }
}

/// A config that passed validation.
pub struct ResolvedConfig {
    pub receivers: Vec<Resolved<dyn Receiver>>,
    pub processors: Vec<Resolved<dyn Processor>>,
    pub exporters: Vec<Resolved<dyn Exporter>>,
    pub extensions: Vec<Resolved<dyn Extension>>,
    /// Connectors: each the exporter of some pipelines and the receiver of others (they run as
    /// processors whose output is the pipelines that read from them).
    pub connectors: Vec<Resolved<dyn Processor>>,
    pub pipelines: Vec<PipelineSpec>,
    /// `service.extensions`: the extensions to run, in order (settings such as `wal` left out).
    pub service_extensions: Vec<ComponentId>,
    /// The `wal` settings (defaults when not declared).
    pub wal: WalSettings,
    /// The `catalog` settings (defaults when not declared).
    pub catalog: CatalogSettings,
    pub telemetry: TelemetryConfig,
    /// The merged, expanded tree (for `print-config`).
    pub tree: Value,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PipelineRaw {
    #[serde(default)]
    receivers: Vec<String>,
    #[serde(default)]
    processors: Vec<String>,
    #[serde(default)]
    exporters: Vec<String>,
}

const TOP_LEVEL: [&str; 6] = ["receivers", "processors", "exporters", "extensions", "connectors", "service"];
const SERVICE_KEYS: [&str; 3] = ["extensions", "pipelines", "telemetry"];

pub(crate) struct Ctx<'a> {
    origins: &'a Origins,
    errors: Vec<ConfigError>,
    /// Components declared in a section whose own config is invalid: already reported, so references
    /// to them are not reported again as "not configured".
    broken: HashSet<(ComponentKind, String)>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(origins: &'a Origins) -> Ctx<'a> {
        Ctx { origins, errors: Vec::new(), broken: HashSet::new() }
    }

    pub(crate) fn into_result(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() { Ok(()) } else { Err(ConfigErrors(self.errors)) }
    }

    pub(crate) fn err(&mut self, path: &str, msg: impl Into<String>) {
        self.errors.push(ConfigError::new(self.origins.source_of(path), path, msg));
    }
}

/// Validates the merged tree against the registry.
pub fn resolve(tree: Value, origins: &Origins, registry: &Registry) -> Result<ResolvedConfig, ConfigErrors> {
    let mut cx = Ctx::new(origins);
    let empty = Mapping::new();
    let top = match &tree {
        Value::Mapping(m) => m,
        Value::Null => &empty,
        _ => {
            cx.err("", "the config must be a YAML mapping with receivers, exporters, service, …");
            return Err(ConfigErrors(cx.errors));
        }
    };
    for k in top.keys() {
        let k = key_text(k);
        if !TOP_LEVEL.contains(&k.as_str()) {
            cx.err(&k, format!("unknown top-level key; valid keys: {}", TOP_LEVEL.join(", ")));
        }
    }
    let receivers = section(&mut cx, top, ComponentKind::Receiver, &registry.receivers);
    let processors = section(&mut cx, top, ComponentKind::Processor, &registry.processors);
    let exporters = section(&mut cx, top, ComponentKind::Exporter, &registry.exporters);
    let extensions = section(&mut cx, top, ComponentKind::Extension, &registry.extensions);
    let wal: WalSettings = setting(&mut cx, top, "wal");
    let catalog: CatalogSettings = setting(&mut cx, top, "catalog");
    let connectors = section(&mut cx, top, ComponentKind::Connector, &registry.connectors);
    for c in &connectors {
        let clash = if receivers.iter().any(|r| r.id == c.id) {
            Some("receiver")
        } else if exporters.iter().any(|e| e.id == c.id) {
            Some("exporter")
        } else {
            None
        };
        if let Some(kind) = clash {
            cx.err(
                &join("connectors", &c.id.to_string()),
                format!(
                    "{} is declared both as a connector and as a {kind}: a pipeline could not tell which one it \
                     lists; rename one of them (e.g. {}/2)",
                    c.id, c.id
                ),
            );
        }
    }

    let service = top.get("service").cloned().unwrap_or(Value::Null);
    let smap = match &service {
        Value::Mapping(m) => m.clone(),
        Value::Null => Mapping::new(),
        _ => {
            cx.err("service", "must be a mapping with pipelines (and optionally extensions, telemetry)");
            Mapping::new()
        }
    };
    for k in smap.keys() {
        let k = key_text(k);
        if !SERVICE_KEYS.contains(&k.as_str()) {
            cx.err(&join("service", &k), format!("unknown key; valid keys: {}", SERVICE_KEYS.join(", ")));
        }
    }

    let telemetry = match parse_section::<TelemetryConfig>(smap.get("telemetry").unwrap_or(&Value::Null)) {
        Ok(t) => {
            if let Err((p, m)) = t.validate() {
                cx.err(&join("service.telemetry", &p), m);
            }
            t
        }
        Err(i) => {
            cx.err(&join("service.telemetry", &i.path), i.message);
            TelemetryConfig::default()
        }
    };

    let mut service_extensions = id_list(&mut cx, smap.get("extensions"), "service.extensions");
    // Settings may be listed (the Collector's habit for extensions); nothing runs for them.
    let is_setting = |id: &ComponentId| SETTINGS.iter().any(|(t, _)| *t == id.type_name);
    let declared = |id: &ComponentId| top.get("extensions").and_then(|e| e.get(id.to_string())).is_some();
    for (i, id) in service_extensions.iter().enumerate() {
        if is_setting(id) && !declared(id) {
            cx.err(
                &format!("service.extensions[{i}]"),
                format!("references {:?}, which is not declared under extensions", id.to_string()),
            );
        } else if !is_setting(id) && !extensions.iter().any(|e| &e.id == id) {
            let known = ids(&extensions);
            cx.err(
                &format!("service.extensions[{i}]"),
                format!(
                    "references extension {:?}, which is not configured; configured extensions: {known}",
                    id.to_string()
                ),
            );
        }
    }

    service_extensions.retain(|id| !is_setting(id));
    let pipelines = pipelines(&mut cx, smap.get("pipelines"), &receivers, &processors, &exporters, &connectors);
    crate::connectors::check(&mut cx, &connectors, &pipelines);

    if cx.errors.is_empty() {
        Ok(ResolvedConfig {
            receivers,
            processors,
            exporters,
            extensions,
            connectors,
            pipelines,
            service_extensions,
            wal,
            catalog,
            telemetry,
            tree,
        })
    } else {
        Err(ConfigErrors(cx.errors))
    }
}

fn ids<C: ?Sized>(list: &[Resolved<C>]) -> String {
    if list.is_empty() {
        return "none".to_string();
    }
    list.iter().map(|r| r.id.to_string()).collect::<Vec<_>>().join(", ")
}

fn section<C: ?Sized>(cx: &mut Ctx, top: &Mapping, kind: ComponentKind, factories: &FactorySet<C>) -> Vec<Resolved<C>> {
    let name = kind.section();
    let mut out = Vec::new();
    let m = match top.get(name) {
        None | Some(Value::Null) => return out,
        Some(Value::Mapping(m)) => m,
        Some(_) => {
            cx.err(name, format!("must be a mapping of {} ids to their settings", kind.noun()));
            return out;
        }
    };
    // Extensions that are settings are read by `setting`.
    let settings: &[(&str, &str)] = if kind == ComponentKind::Extension { &SETTINGS } else { &[] };
    for (k, v) in m {
        let key = key_text(k);
        let path = join(name, &key);
        let id = match ComponentId::parse(&key) {
            Ok(id) => id,
            Err(e) => {
                cx.err(&path, format!("invalid {} id: {e}", kind.noun()));
                cx.broken.insert((kind, key.trim().to_string()));
                continue;
            }
        };
        if settings.iter().any(|(t, _)| *t == id.type_name) {
            continue;
        }
        let Some(factory) = factories.get(&id.type_name) else {
            let mut known = factories.names();
            known.extend(settings.iter().map(|(t, _)| *t));
            known.sort_unstable();
            cx.err(
                &path,
                format!("unknown {} type {:?}; known types: {}", kind.noun(), id.type_name, known.join(", ")),
            );
            cx.broken.insert((kind, id.to_string()));
            continue;
        };
        match factory.parse(v) {
            Ok(config) => out.push(Resolved { id, factory: factory.clone(), config }),
            Err(issue) => {
                cx.err(&join(&path, &issue.path), issue.message);
                cx.broken.insert((kind, id.to_string()));
            }
        }
    }
    out
}

/// Reads the one extension of type `type_name` that holds settings (defaults when there is none).
pub(crate) fn setting<T: ComponentConfig>(cx: &mut Ctx, top: &Mapping, type_name: &str) -> T {
    let Some(Value::Mapping(m)) = top.get("extensions") else { return T::default() };
    let mut found: Option<(String, &Value)> = None;
    for (k, v) in m {
        let key = key_text(k);
        if ComponentId::parse(&key).is_ok_and(|id| id.type_name == type_name) {
            if let Some((first, _)) = &found {
                cx.err(
                    &join("extensions", &key),
                    format!("{type_name} settings are already given by {first}; declare them once"),
                );
                continue;
            }
            found = Some((key, v));
        }
    }
    let Some((key, raw)) = found else { return T::default() };
    let path = join("extensions", &key);
    match parse_section::<T>(raw).and_then(|t| t.validate().map(|()| t)) {
        Ok(t) => t,
        Err(i) => {
            cx.err(&join(&path, &i.path), i.message);
            T::default()
        }
    }
}

fn id_list(cx: &mut Ctx, v: Option<&Value>, path: &str) -> Vec<ComponentId> {
    let items = match v {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Sequence(s)) => s,
        Some(_) => {
            cx.err(path, "must be a list of component ids");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match item.as_str().map(ComponentId::parse) {
            Some(Ok(id)) => out.push(id),
            Some(Err(e)) => cx.err(&p, e),
            None => cx.err(&p, "must be a component id string"),
        }
    }
    out
}

fn pipelines(
    cx: &mut Ctx,
    v: Option<&Value>,
    receivers: &[Resolved<dyn Receiver>],
    processors: &[Resolved<dyn Processor>],
    exporters: &[Resolved<dyn Exporter>],
    connectors: &[Resolved<dyn Processor>],
) -> Vec<PipelineSpec> {
    let m = match v {
        Some(Value::Mapping(m)) if !m.is_empty() => m,
        None | Some(Value::Null) | Some(Value::Mapping(_)) => {
            cx.err(
                "service.pipelines",
                "at least one pipeline is required, e.g. traces: {receivers: [otlp], exporters: [debug]}",
            );
            return Vec::new();
        }
        Some(_) => {
            cx.err(
                "service.pipelines",
                "must be a mapping of pipeline ids (traces, metrics, logs, traces/name…) to pipelines",
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (k, body) in m {
        let key = key_text(k);
        let path = join("service.pipelines", &key);
        let (sig, name) = match key.split_once('/') {
            Some((s, n)) => (s, Some(n.to_string())),
            None => (key.as_str(), None),
        };
        let Some(signal) = Signal::parse(sig) else {
            cx.err(&path, format!("unknown signal {sig:?} in pipeline id; pipeline ids are traces, metrics or logs, optionally followed by /name"));
            continue;
        };
        let raw: PipelineRaw = match parse_section(body) {
            Ok(r) => r,
            Err(i) => {
                cx.err(&join(&path, &i.path), i.message);
                continue;
            }
        };
        let spec = PipelineSpec {
            id: PipelineId { signal, name },
            receivers: refs(cx, &path, "receivers", &raw.receivers, signal, receivers, connectors),
            processors: refs(cx, &path, "processors", &raw.processors, signal, processors, &[]),
            exporters: refs(cx, &path, "exporters", &raw.exporters, signal, exporters, connectors),
        };
        if raw.receivers.is_empty() {
            cx.err(&join(&path, "receivers"), "a pipeline needs at least one receiver");
        }
        if raw.exporters.is_empty() {
            cx.err(&join(&path, "exporters"), "a pipeline needs at least one exporter");
        }
        out.push(spec);
    }
    out
}

/// Checks one list of references in a pipeline: parseable, configured (as the component kind, or as a
/// connector where one may stand: receivers and exporters), not repeated, supports the signal.
fn refs<C: ?Sized>(
    cx: &mut Ctx,
    pipeline_path: &str,
    field: &str,
    names: &[String],
    signal: Signal,
    configured: &[Resolved<C>],
    connectors: &[Resolved<dyn Processor>],
) -> Vec<ComponentId> {
    let noun = field.trim_end_matches('s');
    let kind = match field {
        "receivers" => ComponentKind::Receiver,
        "processors" => ComponentKind::Processor,
        _ => ComponentKind::Exporter,
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let path = format!("{pipeline_path}.{field}[{i}]");
        let id = match ComponentId::parse(n) {
            Ok(id) => id,
            Err(e) => {
                if !cx.broken.contains(&(kind, n.trim().to_string())) {
                    cx.err(&path, e);
                }
                continue;
            }
        };
        let signals = match configured.iter().find(|r| r.id == id) {
            Some(r) => r.factory.signals(),
            None => match connectors.iter().find(|c| c.id == id) {
                Some(c) => c.factory.signals(),
                None => {
                    if cx.broken.contains(&(kind, id.to_string()))
                        || cx.broken.contains(&(ComponentKind::Connector, id.to_string()))
                    {
                        continue;
                    }
                    let also = if kind == ComponentKind::Processor {
                        String::new()
                    } else {
                        format!("; configured connectors: {}", ids(connectors))
                    };
                    cx.err(
                        &path,
                        format!(
                            "references {noun} {n:?}, which is not configured; configured {field}: {}{also}",
                            ids(configured)
                        ),
                    );
                    continue;
                }
            },
        };
        if !seen.insert(id.clone()) {
            cx.err(&path, format!("references {noun} {n:?} more than once"));
            continue;
        }
        if !signals.contains(&signal) {
            let sup: Vec<_> = signals.iter().map(|s| s.as_str()).collect();
            cx.err(&path, format!("{noun} {n:?} does not support {signal}; it supports {}", sup.join(", ")));
            continue;
        }
        out.push(id);
    }
    out
}
