//! The `transform` processor, with the Collector's keys: OTTL statements per signal, in the grouped form
//! (`{context, conditions, statements, error_mode}`) or the flat form (a statement whose paths name
//! their context, `set(span.attributes["x"], …)`). Statements change items; they never remove them.
//!
//! `error_mode` as in `filter`: `propagate` (default) marks the batch failed with the error, `ignore`
//! logs it and goes on with the next statement, `silent` goes on without a log.

use crate::ottl::ErrorMode;
use crate::ottl::paths::Context;
use crate::ottl::program::{CStatement, Condition, condition, statement};
use crate::ottl::walk::visit;
use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{Batch, BuildEnv, ComponentId, ConfigIssue, Factory, Fanout, Processor, Signal, Verdict};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    pub error_mode: ErrorMode,
    pub trace_statements: Vec<Group>,
    pub metric_statements: Vec<Group>,
    pub log_statements: Vec<Group>,
}

/// One entry of `*_statements`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Group {
    Flat(String),
    Grouped(GroupConfig),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub context: String,
    #[serde(default)]
    pub conditions: Vec<String>,
    pub statements: Vec<String>,
    pub error_mode: Option<ErrorMode>,
}

#[derive(Clone, Debug)]
struct Compiled {
    ctx: Context,
    conditions: Vec<Condition>,
    statements: Vec<CStatement>,
    error_mode: ErrorMode,
}

/// The contexts a signal's statements may use, most general first.
fn contexts(signal: Signal) -> &'static [Context] {
    match signal {
        Signal::Traces => &[Context::Resource, Context::Scope, Context::Span, Context::SpanEvent],
        Signal::Metrics => &[Context::Resource, Context::Scope, Context::Metric, Context::DataPoint],
        Signal::Logs => &[Context::Resource, Context::Scope, Context::Log],
    }
}

/// The context of a flat statement: the most specific one its paths name (`resource.` < `scope.` <
/// `span.`…).
fn infer(text: &str, signal: Signal) -> Result<Context, String> {
    let ast = crate::ottl::parser::statement(text)?;
    let allowed = contexts(signal);
    ast.paths()
        .iter()
        .filter_map(|p| Context::parse(&p.fields[0].name))
        .filter_map(|c| allowed.iter().position(|a| *a == c))
        .max()
        .map(|i| allowed[i])
        .ok_or_else(|| {
            "a flat statement must name its context in its paths (span.name, log.body, resource.attributes[…]), or use the grouped form with context:".to_string()
        })
}

fn compile_groups(
    groups: &[Group],
    signal: Signal,
    key: &str,
    default_mode: ErrorMode,
) -> Result<Vec<Compiled>, ConfigIssue> {
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let at = format!("{key}[{i}]");
            match g {
                Group::Flat(text) => {
                    let ctx = infer(text, signal).map_err(|e| ConfigIssue::new(&at, e))?;
                    let st = statement(text, ctx).map_err(|e| ConfigIssue::new(&at, e))?;
                    Ok(Compiled { ctx, conditions: Vec::new(), statements: vec![st], error_mode: default_mode })
                }
                Group::Grouped(g) => {
                    let ctx = Context::parse(&g.context).filter(|c| contexts(signal).contains(c)).ok_or_else(|| {
                        ConfigIssue::new(
                            format!("{at}.context"),
                            format!("{:?} is not a context of {key} (use one of {:?})", g.context, contexts(signal)),
                        )
                    })?;
                    let conditions = g
                        .conditions
                        .iter()
                        .enumerate()
                        .map(|(j, c)| {
                            condition(c, ctx).map_err(|e| ConfigIssue::new(format!("{at}.conditions[{j}]"), e))
                        })
                        .collect::<Result<_, _>>()?;
                    let statements = g
                        .statements
                        .iter()
                        .enumerate()
                        .map(|(j, s)| {
                            statement(s, ctx).map_err(|e| ConfigIssue::new(format!("{at}.statements[{j}]"), e))
                        })
                        .collect::<Result<_, _>>()?;
                    Ok(Compiled { ctx, conditions, statements, error_mode: g.error_mode.unwrap_or(default_mode) })
                }
            }
        })
        .collect()
}

impl TransformConfig {
    fn compile(&self) -> Result<[Vec<Compiled>; 3], ConfigIssue> {
        Ok([
            compile_groups(&self.trace_statements, Signal::Traces, "trace_statements", self.error_mode)?,
            compile_groups(&self.metric_statements, Signal::Metrics, "metric_statements", self.error_mode)?,
            compile_groups(&self.log_statements, Signal::Logs, "log_statements", self.error_mode)?,
        ])
    }
}

impl ComponentConfig for TransformConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        self.compile().map(|_| ())
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Processor>> {
    typed::<TransformConfig, dyn Processor>(
        "transform",
        &[],
        &Signal::ALL,
        "changes spans, metrics and logs with OTTL statements",
        |id: &ComponentId, cfg: &TransformConfig, _env: &BuildEnv| {
            let [traces, metrics, logs] = cfg.compile().map_err(|e| anyhow::anyhow!("{}: {}", e.path, e.message))?;
            Ok(Box::new(TransformProcessor { id: id.to_string(), traces, metrics, logs }))
        },
    )
}

struct TransformProcessor {
    id: String,
    traces: Vec<Compiled>,
    metrics: Vec<Compiled>,
    logs: Vec<Compiled>,
}

impl TransformProcessor {
    /// Runs every group over the batch; `Err` with the first error of a group under `propagate`.
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        let groups = match batch.signal() {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        };
        for g in groups {
            let mut failed = None;
            visit(&mut batch.payload, g.ctx, |item| {
                let selected = g.conditions.is_empty()
                    || g.conditions.iter().any(|c| match c.eval(item) {
                        Ok(b) => b,
                        Err(e) => {
                            failed.get_or_insert(e);
                            false
                        }
                    });
                if selected {
                    for s in &g.statements {
                        if let Err(e) = s.run(item) {
                            failed.get_or_insert(e);
                            if g.error_mode == ErrorMode::Propagate {
                                break;
                            }
                        }
                    }
                }
                false
            });
            match (failed, g.error_mode) {
                (Some(e), ErrorMode::Propagate) => return Err(e),
                (Some(e), ErrorMode::Ignore) => {
                    tracing::warn!(processor = %self.id, "a statement failed (error_mode: ignore): {e}")
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Processor for TransformProcessor {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, output: &Fanout) {
        while let Some(mut batch) = input.recv().await {
            let result = self.apply(&mut batch);
            batch.columnar = Default::default();
            if let Err(e) = result {
                tracing::error!(processor = %self.id, "a statement failed (error_mode: propagate); the batch is marked failed: {e}");
                batch.settle(&Verdict::Permanent(format!("processor {}: {e}", self.id)));
                continue;
            }
            if output.send(batch).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use openwit_core::{Payload, TenantId};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn spans() -> Batch {
        let span = |name: &str| Span {
            name: name.into(),
            start_time_unix_nano: 1_000_000,
            end_time_unix_nano: 4_000_000,
            attributes: vec![
                kv("user.email", "a@b.c"),
                kv("http.url", "https://x/?client_id=s3cret&y=1"),
                kv("drop.me", "1"),
            ],
            ..Default::default()
        };
        Batch::new(
            TenantId::new("t").unwrap(),
            Payload::Traces(ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource { attributes: vec![kv("service.name", "api")], ..Default::default() }),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span("GET /a"), span("GET /health")],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }),
        )
    }

    fn processor(yaml: &str) -> TransformProcessor {
        let c: TransformConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let [traces, metrics, logs] = c.compile().unwrap();
        TransformProcessor { id: "transform".into(), traces, metrics, logs }
    }

    fn attrs(b: &Batch, i: usize) -> Vec<String> {
        let Payload::Traces(r) = &*b.payload else { unreachable!() };
        r.resource_spans[0].scope_spans[0].spans[i]
            .attributes
            .iter()
            .map(|kv| format!("{}={}", kv.key, value::as_string(kv.value.as_ref().unwrap())))
            .collect()
    }

    #[test]
    fn grouped_and_flat_statements_change_what_they_select() {
        let p = processor(
            r#"
trace_statements:
  - context: span
    conditions: ['IsMatch(name, "^GET /a")']
    statements:
      - set(attributes["user.email"], SHA256(attributes["user.email"]))
      - replace_pattern(attributes["http.url"], "client_id=[^&]+", "client_id=REDACTED")
      - set(attributes["duration_ms"], (end_time_unix_nano - start_time_unix_nano) / 1000000)
      - delete_matching_keys(attributes, "^drop\\.")
  - 'set(resource.attributes["env"], "prod")'
  - 'set(span.attributes["svc"], resource.attributes["service.name"]) where span.name == "GET /health"'
"#,
        );
        let mut b = spans();
        p.apply(&mut b).unwrap();
        let email = {
            use sha2::Digest;
            sha2::Sha256::digest(b"a@b.c").iter().map(|x| format!("{x:02x}")).collect::<String>()
        };
        assert_eq!(
            attrs(&b, 0),
            [
                format!("user.email={email}"),
                "http.url=https://x/?client_id=REDACTED&y=1".into(),
                "duration_ms=3".into()
            ]
        );
        assert_eq!(
            attrs(&b, 1),
            ["user.email=a@b.c", "http.url=https://x/?client_id=s3cret&y=1", "drop.me=1", "svc=api"]
        );
        let Payload::Traces(r) = &*b.payload else { unreachable!() };
        assert_eq!(
            value::as_string(value::get(&r.resource_spans[0].resource.as_ref().unwrap().attributes, "env").unwrap()),
            "prod"
        );
    }

    #[test]
    fn errors_follow_error_mode() {
        let p = processor("{trace_statements: [{context: span, statements: ['set(name, 1)']}]}");
        assert!(p.apply(&mut spans()).unwrap_err().contains("expected a string"));
        let p = processor(
            "{error_mode: ignore, trace_statements: [{context: span, statements: ['set(name, 1)', 'set(attributes[\"ok\"], true)']}]}",
        );
        let mut b = spans();
        p.apply(&mut b).unwrap();
        assert!(attrs(&b, 0).contains(&"ok=true".to_string()), "the next statement still ran");
    }

    #[test]
    fn config_errors_name_the_statement() {
        for (yaml, path) in [
            ("{trace_statements: ['set(attributes[\"x\"], 1)']}", "trace_statements[0]"),
            ("{log_statements: [{context: span, statements: []}]}", "log_statements[0].context"),
            (
                "{metric_statements: [{context: datapoint, statements: ['frob(attributes)']}]}",
                "metric_statements[0].statements[0]",
            ),
            (
                "{trace_statements: [{context: span, conditions: ['Nope()'], statements: []}]}",
                "trace_statements[0].conditions[0]",
            ),
        ] {
            let c: TransformConfig = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(c.validate().unwrap_err().path, path, "{yaml}");
        }
    }
}
