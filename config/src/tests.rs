//! Config semantics as the Collector documents them, and one test per validation error.

use crate::{ConfigSource, load, resolve};
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{BuildEnv, ComponentId, Exporter, Extension, Processor, Receiver, Registry, Signal};
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::io::Write;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RecvCfg {
    endpoint: String,
    #[allow(dead_code)]
    max_recv_msg_size_mib: u64,
}
impl ComponentConfig for RecvCfg {}

#[derive(Default, Deserialize, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
enum Verbosity {
    #[default]
    Basic,
    Detailed,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ExpCfg {
    verbosity: Verbosity,
}
impl ComponentConfig for ExpCfg {}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Empty {}
impl ComponentConfig for Empty {}

/// A routing-like connector config: the pipelines it names.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RouteCfg {
    pipelines: Vec<String>,
}
impl ComponentConfig for RouteCfg {
    fn pipeline_refs(&self) -> Vec<(String, String)> {
        self.pipelines.iter().enumerate().map(|(i, p)| (format!("pipelines[{i}]"), p.clone())).collect()
    }
}

fn nope<T: ?Sized>() -> anyhow::Result<Box<T>> {
    anyhow::bail!("not built in config tests")
}

/// A registry shaped like the daemon's, with factories that only parse.
fn registry() -> Registry {
    let mut r = Registry::default();
    r.receivers.add(typed::<RecvCfg, dyn Receiver>(
        "otlp",
        &[],
        &Signal::ALL,
        "",
        |_: &ComponentId, _, _: &BuildEnv| nope(),
    ));
    r.processors.add(typed::<Empty, dyn Processor>(
        "batch",
        &[],
        &Signal::ALL,
        "",
        |_: &ComponentId, _, _: &BuildEnv| nope(),
    ));
    r.exporters.add(typed::<ExpCfg, dyn Exporter>(
        "debug",
        &[],
        &Signal::ALL,
        "",
        |_: &ComponentId, _, _: &BuildEnv| nope(),
    ));
    r.exporters.add(typed::<Empty, dyn Exporter>(
        "otlp",
        &["otlp_grpc"],
        &Signal::ALL,
        "",
        |_: &ComponentId, _, _: &BuildEnv| nope(),
    ));
    r.exporters.add(typed::<Empty, dyn Exporter>(
        "tracesonly",
        &[],
        &[Signal::Traces],
        "",
        |_: &ComponentId, _, _: &BuildEnv| nope(),
    ));
    r.connectors.add(typed::<Empty, dyn Processor>(
        "forward",
        &[],
        &Signal::ALL,
        "",
        |_: &ComponentId, _, _: &BuildEnv| nope(),
    ));
    r.connectors.add(typed::<RouteCfg, dyn Processor>(
        "routing",
        &[],
        &Signal::ALL,
        "",
        |_: &ComponentId, _, _: &BuildEnv| nope(),
    ));
    r.extensions.add(typed::<Empty, dyn Extension>(
        "health_check",
        &[],
        &Signal::ALL,
        "",
        |_: &ComponentId, _, _: &BuildEnv| nope(),
    ));
    r
}

const BASE: &str = "
receivers:
  otlp:
    endpoint: localhost:4317
processors:
  batch:
exporters:
  debug:
    verbosity: detailed
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
";

fn yaml(text: &str) -> ConfigSource {
    ConfigSource::Embedded("test.yaml", Box::leak(text.to_string().into_boxed_str()))
}

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> ConfigSource {
    let p = dir.path().join(name);
    std::fs::File::create(&p).unwrap().write_all(text.as_bytes()).unwrap();
    ConfigSource::parse(p.to_str().unwrap())
}

fn tree(sources: &[ConfigSource], sets: &[&str]) -> Value {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    load(sources, &sets).unwrap().0
}

/// Every error message of a config that must fail.
fn errors(sources: &[ConfigSource]) -> Vec<String> {
    match resolve(sources, &[], &registry()) {
        Ok(_) => panic!("config was accepted"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn one_error(text: &str) -> String {
    let e = errors(&[yaml(text)]);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap()
}

fn set_env(k: &str, v: &str) {
    // SAFETY: tests use distinct variable names, and std serialises its own env access.
    unsafe { std::env::set_var(k, v) };
}

// ---- merging ----

#[test]
fn later_sources_win_and_maps_merge() {
    let over = "receivers:\n  otlp:\n    max_recv_msg_size_mib: 16\nexporters:\n  debug:\n    verbosity: basic\n";
    let t = tree(&[yaml(BASE), yaml(over)], &[]);
    assert_eq!(t["receivers"]["otlp"]["endpoint"].as_str(), Some("localhost:4317"), "key from the first source kept");
    assert_eq!(t["receivers"]["otlp"]["max_recv_msg_size_mib"].as_u64(), Some(16), "key from the second source added");
    assert_eq!(t["exporters"]["debug"]["verbosity"].as_str(), Some("basic"), "the later source wins");
}

#[test]
fn lists_are_replaced_not_appended() {
    let over = "exporters:\n  otlp:\nservice:\n  pipelines:\n    traces:\n      exporters: [otlp]\n";
    let t = tree(&[yaml(BASE), yaml(over)], &[]);
    let exps: Vec<_> = t["service"]["pipelines"]["traces"]["exporters"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(exps, vec!["otlp"]);
    assert_eq!(t["service"]["pipelines"]["traces"]["receivers"][0].as_str(), Some("otlp"), "sibling keys kept");
}

#[test]
fn null_component_means_defaults_and_does_not_erase_earlier_settings() {
    // `batch:` with no value is a valid component with its defaults.
    resolve(&[yaml(BASE)], &[], &registry()).unwrap();
    // A later `debug:` with no value leaves the earlier settings alone.
    let t = tree(&[yaml(BASE), yaml("exporters:\n  debug:\n")], &[]);
    assert_eq!(t["exporters"]["debug"]["verbosity"].as_str(), Some("detailed"));
}

#[test]
fn files_merge_in_command_line_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = file(&dir, "a.yaml", BASE);
    let b = file(&dir, "b.yaml", "exporters:\n  debug:\n    verbosity: basic\n");
    assert_eq!(tree(&[a.clone(), b.clone()], &[])["exporters"]["debug"]["verbosity"].as_str(), Some("basic"));
    assert_eq!(tree(&[b, a], &[])["exporters"]["debug"]["verbosity"].as_str(), Some("detailed"));
}

#[test]
fn env_and_yaml_sources() {
    set_env("OW_TEST_CFG_SOURCE", BASE);
    let t = tree(
        &[
            ConfigSource::parse("env:OW_TEST_CFG_SOURCE"),
            ConfigSource::parse("yaml:exporters::debug::verbosity: basic"),
        ],
        &[],
    );
    assert_eq!(t["receivers"]["otlp"]["endpoint"].as_str(), Some("localhost:4317"));
    assert_eq!(t["exporters"]["debug"]["verbosity"].as_str(), Some("basic"));
}

#[test]
fn set_overrides_with_dots_or_colons_and_typed_values() {
    let t = tree(
        &[yaml(BASE)],
        &[
            "exporters.debug.verbosity=basic",
            "receivers::otlp::max_recv_msg_size_mib=32",
            "processors.batch.metadata_keys=[a, b]",
        ],
    );
    assert_eq!(t["exporters"]["debug"]["verbosity"].as_str(), Some("basic"));
    assert_eq!(t["receivers"]["otlp"]["max_recv_msg_size_mib"].as_u64(), Some(32));
    assert_eq!(t["processors"]["batch"]["metadata_keys"].as_sequence().map(|s| s.len()), Some(2));
}

#[test]
fn bad_set_is_an_error_naming_it() {
    let e = load(&[yaml(BASE)], &["novalue".to_string()]).unwrap_err().to_string();
    assert!(e.contains("--set novalue") && e.contains("key.path=value"), "{e}");
}

// ---- expansion ----

#[test]
fn env_expansion_forms() {
    set_env("OW_TEST_HOST", "collector.local");
    set_env("OW_TEST_EMPTY", "");
    let t = tree(
        &[yaml(
            "a: ${env:OW_TEST_HOST}\nb: ${OW_TEST_HOST}\nc: http://${env:OW_TEST_HOST}:4317/x\n\
             d: ${env:OW_TEST_UNSET_VAR:-fallback}\ne: ${env:OW_TEST_EMPTY:-fallback}\nf: ${env:OW_TEST_UNSET_VAR}\n",
        )],
        &[],
    );
    assert_eq!(t["a"].as_str(), Some("collector.local"));
    assert_eq!(t["b"].as_str(), Some("collector.local"), "${{VAR}} is ${{env:VAR}}");
    assert_eq!(t["c"].as_str(), Some("http://collector.local:4317/x"), "inline expansion");
    assert_eq!(t["d"].as_str(), Some("fallback"), "default when unset");
    assert_eq!(t["e"].as_str(), Some(""), "no default when set but empty");
    assert_eq!(t["f"].as_str(), Some(""), "unset without default is empty");
}

#[test]
fn whole_field_expansion_is_typed_inline_is_text() {
    set_env("OW_TEST_NUM", "5");
    set_env("OW_TEST_BOOL", "true");
    let t = tree(
        &[yaml("n: ${env:OW_TEST_NUM}\nb: ${env:OW_TEST_BOOL}\ns: v${env:OW_TEST_NUM}\nq: \"${env:OW_TEST_NUM}\"\n")],
        &[],
    );
    assert_eq!(t["n"].as_u64(), Some(5));
    assert_eq!(t["b"].as_bool(), Some(true));
    assert_eq!(t["s"].as_str(), Some("v5"));
    assert_eq!(t["q"].as_u64(), Some(5), "quoting in the file does not change the typing of a whole-field reference");
}

#[test]
fn dollar_dollar_escapes() {
    set_env("OW_TEST_ESC", "x");
    let t = tree(&[yaml("a: $${env:OW_TEST_ESC}\nb: price $$5\nc: $$$${env:OW_TEST_ESC}\nd: a $ b\n")], &[]);
    assert_eq!(t["a"].as_str(), Some("${env:OW_TEST_ESC}"));
    assert_eq!(t["b"].as_str(), Some("price $5"));
    assert_eq!(t["c"].as_str(), Some("$${env:OW_TEST_ESC}"));
    assert_eq!(t["d"].as_str(), Some("a $ b"), "a lone $ is kept");
}

#[test]
fn keys_are_not_expanded() {
    set_env("OW_TEST_KEY", "x");
    let t = tree(&[yaml("${env:OW_TEST_KEY}: 1\n")], &[]);
    assert_eq!(t["${env:OW_TEST_KEY}"].as_u64(), Some(1));
}

#[test]
fn unknown_provider_is_an_error_with_path() {
    let e = load(&[yaml("exporters:\n  debug:\n    verbosity: ${vault:secret}\n")], &[]).unwrap_err().to_string();
    assert!(
        e.contains("exporters.debug.verbosity")
            && e.contains("unknown provider \"vault\"")
            && e.contains("env and file"),
        "{e}"
    );
}

#[test]
fn bad_env_name_is_an_error() {
    let e = load(&[yaml("a: ${env:1BAD}\n")], &[]).unwrap_err().to_string();
    assert!(e.contains("not a valid environment variable name"), "{e}");
}

// ---- aliases ----

#[test]
fn exporter_aliases_are_accepted() {
    for name in ["otlp", "otlp_grpc", "otlp_grpc/backup"] {
        let cfg = BASE
            .replace("  debug:\n    verbosity: detailed", &format!("  {name}:"))
            .replace("[debug]", &format!("[{name}]"));
        let r = resolve(&[yaml(&cfg)], &[], &registry()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.exporters[0].factory.type_name(), "otlp");
    }
}

// ---- validation errors, one each ----

#[test]
fn error_unknown_top_level_key() {
    let e = one_error(&format!("{BASE}recievers: {{}}\n"));
    assert!(e.contains("test.yaml: recievers: unknown top-level key; valid keys: receivers, processors"), "{e}");
}

#[test]
fn error_unknown_component_type_lists_known_types() {
    let e =
        one_error(&BASE.replace("  debug:\n    verbosity: detailed", "  debug:\n    verbosity: detailed\n  kafkaa:"));
    assert!(
        e.contains(
            "exporters.kafkaa: unknown exporter type \"kafkaa\"; known types: debug, otlp, otlp_grpc, tracesonly"
        ),
        "{e}"
    );
}

#[test]
fn error_unknown_key_names_source_path_and_valid_keys() {
    let dir = tempfile::tempdir().unwrap();
    let a = file(&dir, "base.yaml", BASE);
    let b = file(&dir, "override.yaml", "exporters:\n  debug:\n    verbosty: basic\n");
    let e = errors(&[a, b]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("override.yaml: exporters.debug.verbosty: unknown field `verbosty`, expected `verbosity`"),
        "{}",
        e[0]
    );
}

#[test]
fn error_bad_value_lists_variants() {
    let e = one_error(&BASE.replace("verbosity: detailed", "verbosity: loud"));
    assert!(e.contains("exporters.debug.verbosity: unknown variant `loud`, expected `basic` or `detailed`"), "{e}");
}

#[test]
fn error_bad_value_type() {
    let e = one_error(
        &BASE.replace("endpoint: localhost:4317", "endpoint: localhost:4317\n    max_recv_msg_size_mib: lots"),
    );
    assert!(e.contains("receivers.otlp.max_recv_msg_size_mib: invalid type: string \"lots\", expected u64"), "{e}");
}

#[test]
fn error_pipeline_without_receivers() {
    let e = one_error(&BASE.replace("      receivers: [otlp]\n", ""));
    assert!(e.contains("service.pipelines.traces.receivers: a pipeline needs at least one receiver"), "{e}");
}

#[test]
fn error_pipeline_without_exporters() {
    let e = one_error(&BASE.replace("      exporters: [debug]\n", ""));
    assert!(e.contains("service.pipelines.traces.exporters: a pipeline needs at least one exporter"), "{e}");
}

#[test]
fn error_reference_to_unconfigured_component() {
    let e = one_error(&BASE.replace("exporters: [debug]", "exporters: [debug/2]"));
    assert!(e.contains("service.pipelines.traces.exporters[0]: references exporter \"debug/2\", which is not configured; configured exporters: debug"), "{e}");
}

#[test]
fn error_component_does_not_support_signal() {
    let cfg = BASE.replace("    verbosity: detailed", "    verbosity: detailed\n  tracesonly:")
        + "    logs:\n      receivers: [otlp]\n      exporters: [tracesonly]\n";
    let e = one_error(&cfg);
    assert!(
        e.contains(
            "service.pipelines.logs.exporters[0]: exporter \"tracesonly\" does not support logs; it supports traces"
        ),
        "{e}"
    );
}

#[test]
fn error_unknown_pipeline_signal() {
    let e = one_error(&BASE.replace("    traces:\n", "    spans/x:\n"));
    assert!(e.contains("service.pipelines.spans/x: unknown signal \"spans\""), "{e}");
}

#[test]
fn error_no_pipelines() {
    let e = one_error("receivers:\n  otlp:\nexporters:\n  debug:\n");
    assert!(e.contains("service.pipelines: at least one pipeline is required"), "{e}");
}

#[test]
fn error_duplicate_reference() {
    let e = one_error(&BASE.replace("processors: [batch]", "processors: [batch, batch]"));
    assert!(e.contains("processors[1]: references processor \"batch\" more than once"), "{e}");
}

#[test]
fn error_service_extension_not_configured() {
    let e = one_error(&BASE.replace("service:\n", "service:\n  extensions: [health_check]\n"));
    assert!(e.contains("service.extensions[0]: references extension \"health_check\", which is not configured; configured extensions: none"), "{e}");
}

#[test]
fn error_invalid_component_id() {
    let e = one_error(&BASE.replace("batch", "bat-ch"));
    assert!(e.contains("processors.bat-ch: invalid processor id") && e.contains("letters, digits and '_'"), "{e}");
}

#[test]
fn error_unknown_pipeline_key() {
    let e = one_error(&BASE.replace("      processors: [batch]\n", "      processor: [batch]\n"));
    assert!(e.contains("service.pipelines.traces.processor: unknown field `processor`, expected one of `receivers`, `processors`, `exporters`"), "{e}");
}

#[test]
fn error_unknown_service_key() {
    let e = one_error(&BASE.replace("service:\n", "service:\n  pipeline: {}\n"));
    assert!(e.contains("service.pipeline: unknown key; valid keys: extensions, pipelines, telemetry"), "{e}");
}

#[test]
fn error_bad_telemetry_level() {
    let e = one_error(&format!("{BASE}  telemetry:\n    logs:\n      level: chatty\n"));
    assert!(e.contains("service.telemetry.logs.level: unknown level \"chatty\"; valid levels: debug, info"), "{e}");
}

#[test]
fn error_not_yaml() {
    let e = errors(&[yaml("receivers: [unclosed\n")]);
    assert!(e[0].contains("test.yaml: not valid YAML"), "{e:?}");
}

#[test]
fn error_missing_file() {
    let e = errors(&[ConfigSource::parse("/nonexistent/openwit.yaml")]);
    assert!(e[0].contains("/nonexistent/openwit.yaml: cannot read config file") && e[0].contains("--config"), "{e:?}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let cfg =
        BASE.replace("verbosity: detailed", "verbosity: loud").replace("processors: [batch]", "processors: [nope]");
    assert_eq!(errors(&[yaml(&cfg)]).len(), 2);
}

#[test]
fn collector_telemetry_keys_are_accepted() {
    let cfg = format!(
        "{BASE}  telemetry:\n    logs:\n      level: debug\n      development: true\n      initial_fields: {{a: b}}\n    \
         metrics:\n      level: detailed\n      readers:\n        - pull:\n            exporter:\n              prometheus:\n                host: 0.0.0.0\n                port: 9999\n"
    );
    let r = resolve(&[yaml(&cfg)], &[], &registry()).unwrap();
    assert_eq!(r.telemetry.metrics_endpoint().as_deref(), Some("0.0.0.0:9999"));
    assert_eq!(r.telemetry.ignored_keys(), vec!["logs.development", "logs.initial_fields"]);
}

#[test]
fn redaction_hides_secrets_and_headers() {
    let mut t = tree(
        &[yaml(
            "exporters:\n  otlp:\n    endpoint: x:4317\n    headers:\n      x-api: abc\n    auth_token: t\n    password: p\n",
        )],
        &[],
    );
    crate::redact(&mut t);
    let o = &t["exporters"]["otlp"];
    assert_eq!(o["endpoint"].as_str(), Some("x:4317"));
    assert_eq!(o["headers"]["x-api"].as_str(), Some("[REDACTED]"));
    assert_eq!(o["auth_token"].as_str(), Some("[REDACTED]"));
    assert_eq!(o["password"].as_str(), Some("[REDACTED]"));
}

const JOINED: &str = "
receivers:
  otlp:
exporters:
  debug:
connectors:
  forward:
  routing:
    pipelines: [logs/b]
service:
  pipelines:
    logs/in:
      receivers: [otlp]
      exporters: [forward]
    logs/a:
      receivers: [forward]
      exporters: [routing]
    logs/b:
      receivers: [routing]
      exporters: [debug]
";

#[test]
fn connectors_join_pipelines_as_exporter_and_receiver() {
    let r = resolve(&[yaml(JOINED)], &[], &registry()).unwrap();
    let ids: Vec<String> = r.connectors.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(ids, ["forward", "routing"]);
    let a = r.pipelines.iter().find(|p| p.id.to_string() == "logs/a").unwrap();
    assert_eq!(a.receivers[0].to_string(), "forward");
    assert_eq!(a.exporters[0].to_string(), "routing");
}

#[test]
fn a_connector_used_at_one_end_only_is_refused() {
    let only_exporter = JOINED.replace("      receivers: [forward]\n", "      receivers: [otlp]\n");
    let e = errors(&[yaml(&only_exporter)]);
    assert!(
        e.iter().any(|m| m.contains("service.pipelines.logs/in.exporters")
            && m.contains("connector forward is an exporter of logs pipeline logs/in but no logs pipeline lists it under receivers")),
        "{e:?}"
    );
    let only_receiver = JOINED.replace("      exporters: [forward]\n", "      exporters: [debug]\n");
    let e = errors(&[yaml(&only_receiver)]);
    assert!(e.iter().any(|m| m.contains("logs/a.receivers") && m.contains("nothing would ever reach it")), "{e:?}");
    // A connector between signals it does not convert: traces in, logs out.
    let across = JOINED.replace("    logs/in:", "    traces/in:");
    let e = errors(&[yaml(&across)]);
    assert!(e.iter().any(|m| m.contains("traces pipeline traces/in but no traces pipeline")), "{e:?}");
}

#[test]
fn a_pipeline_a_connector_names_must_read_from_it() {
    let e = errors(&[yaml(&JOINED.replace("pipelines: [logs/b]", "pipelines: [logs/a]"))]);
    assert!(
        e.iter().any(|m| m.contains("connectors.routing.pipelines[0]")
            && m.contains("does not list routing under its receivers")),
        "{e:?}"
    );
    let e = errors(&[yaml(&JOINED.replace("pipelines: [logs/b]", "pipelines: [logs/zzz]"))]);
    assert!(e.iter().any(|m| m.contains("\"logs/zzz\", which is not configured") && m.contains("logs/b")), "{e:?}");
}

#[test]
fn a_cycle_through_connectors_is_refused_and_named() {
    let cyclic = "
receivers:
  otlp:
exporters:
  debug:
connectors:
  forward:
  forward/back:
service:
  pipelines:
    traces/in:
      receivers: [otlp, forward/back]
      exporters: [forward]
    traces/out:
      receivers: [forward]
      exporters: [debug, forward/back]
";
    let e = errors(&[yaml(cyclic)]);
    assert!(
        e.iter().any(|m| m.contains("cycle detected: traces/in → forward → traces/out → forward/back → traces/in")),
        "{e:?}"
    );
    // A pipeline feeding itself.
    let own = "
receivers:
  otlp:
exporters:
  debug:
connectors:
  forward:
service:
  pipelines:
    logs:
      receivers: [otlp, forward]
      exporters: [debug, forward]
";
    let e = errors(&[yaml(own)]);
    assert!(e.iter().any(|m| m.contains("cycle detected: logs → forward → logs")), "{e:?}");
}
