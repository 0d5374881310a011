//! The `routing` connector: sends each item to the pipelines of the first route whose condition it
//! matches, the rest to `default_pipelines` (or nowhere: settled as dropped and counted), with the
//! Collector's keys:
//!
//! ```yaml
//! connectors:
//!   routing:
//!     default_pipelines: [logs/other]
//!     error_mode: ignore                 # propagate (default) | ignore | silent
//!     table:
//!       - context: request               # the request's metadata
//!         condition: request["X-Tenant"] == "acme"
//!         pipelines: [logs/acme]
//!       - context: log                   # resource (default) | span | metric | datapoint | log
//!         condition: severity_number < SEVERITY_NUMBER_ERROR
//!         pipelines: [logs/cheap]
//!       - statement: route() where attributes["env"] == "prod"
//!         pipelines: [logs/prod]
//! ```
//!
//! Routes are tried in order and an item goes to the first that matches (the Collector since v0.120,
//! which removed `match_once`). A condition that fails on an item sends the whole batch to failure
//! under `propagate`, and that item to the default pipelines under `ignore`/`silent`.
//!
//! `request["key"]` reads the metadata the receiver kept (`include_metadata: true`), keys in any case.
//! OpenWit addition: `request["X-Scope-OrgID"]` falls back to the batch's tenant when the metadata does
//! not carry it, so routing by tenant needs no `include_metadata`.

use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::telemetry::{SignalCounters, dropped_items};
use openwit_core::{Batch, BuildEnv, ComponentId, ConfigIssue, Factory, Fanout, Processor, Signal, Verdict};
use openwit_processors::ottl::ErrorMode;
use openwit_processors::ottl::paths::Context;
use openwit_processors::ottl::program::{Condition, condition};
use openwit_processors::ottl::walk::visit;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    pub default_pipelines: Vec<String>,
    pub error_mode: ErrorMode,
    pub table: Vec<RouteConfig>,
    /// Removed from the Collector in v0.120.0; refused with the reason (routes now match once).
    pub match_once: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    pub context: Option<String>,
    pub statement: Option<String>,
    pub condition: Option<String>,
    pub pipelines: Vec<String>,
}

/// What decides whether an item takes a route.
enum Matcher {
    Ottl(Context, Condition),
    /// `request["key"] == "value"` (or `!=`) over the batch's metadata.
    Request {
        key: String,
        value: String,
        equal: bool,
    },
}

impl RouteConfig {
    fn compile(&self, at: &str) -> Result<Matcher, ConfigIssue> {
        let context = self.context.as_deref().unwrap_or("resource");
        if self.pipelines.is_empty() {
            return Err(ConfigIssue::new(format!("{at}.pipelines"), "a route needs at least one pipeline"));
        }
        let text = match (&self.statement, &self.condition) {
            (Some(_), Some(_)) => {
                return Err(ConfigIssue::new(at, "give either statement or condition, not both"));
            }
            (None, None) => return Err(ConfigIssue::new(at, "a route needs a statement or a condition")),
            (Some(s), None) => {
                if context == "request" {
                    return Err(ConfigIssue::new(
                        format!("{at}.statement"),
                        "the request context takes a condition, not a statement",
                    ));
                }
                route_statement(s).map_err(|e| ConfigIssue::new(format!("{at}.statement"), e))?
            }
            (None, Some(c)) => c.clone(),
        };
        let field = if self.statement.is_some() { "statement" } else { "condition" };
        if context == "request" {
            return request_condition(&text).map_err(|e| ConfigIssue::new(format!("{at}.condition"), e));
        }
        let ctx = match Context::parse(context) {
            Some(c @ (Context::Resource | Context::Span | Context::Metric | Context::DataPoint | Context::Log)) => c,
            _ => {
                return Err(ConfigIssue::new(
                    format!("{at}.context"),
                    format!("unknown context {context:?}; valid: resource, span, metric, datapoint, log, request"),
                ));
            }
        };
        let cond = condition(&text, ctx).map_err(|e| ConfigIssue::new(format!("{at}.{field}"), e))?;
        Ok(Matcher::Ottl(ctx, cond))
    }
}

/// The condition of `route() where <condition>` (`route()` alone routes everything).
fn route_statement(s: &str) -> Result<String, String> {
    let rest = s
        .trim()
        .strip_prefix("route()")
        .ok_or_else(|| format!("{s:?}: a routing statement is `route() where <condition>`"))?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok("true".into());
    }
    match rest.strip_prefix("where") {
        Some(c) if c.starts_with(char::is_whitespace) && !c.trim().is_empty() => Ok(c.trim().to_string()),
        _ => Err(format!("{s:?}: after route() comes `where <condition>`")),
    }
}

/// Parses the request context's one form: `request["key"] == "value"` or `!=`.
fn request_condition(text: &str) -> Result<Matcher, String> {
    let bad = || format!("{text:?}: the request context accepts only request[\"key\"] == \"value\" or !=");
    let rest = text.trim().strip_prefix("request[").ok_or_else(bad)?;
    let (key, rest) = quoted(rest).ok_or_else(bad)?;
    let rest = rest.trim_start().strip_prefix(']').ok_or_else(bad)?.trim_start();
    let (equal, rest) = if let Some(r) = rest.strip_prefix("==") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("!=") {
        (false, r)
    } else {
        return Err(bad());
    };
    let (value, rest) = quoted(rest.trim_start()).ok_or_else(bad)?;
    if !rest.trim().is_empty() {
        return Err(bad());
    }
    Ok(Matcher::Request { key, value, equal })
}

/// A double-quoted string at the start of `s` (with `\"` and `\\` escapes), and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

impl RoutingConfig {
    fn compile(&self) -> Result<Vec<Matcher>, ConfigIssue> {
        if self.match_once.is_some() {
            return Err(ConfigIssue::new(
                "match_once",
                "was removed from the Collector in v0.120.0: routes always match once (an item takes the \
                 first route it matches); remove the key",
            ));
        }
        if self.table.is_empty() {
            return Err(ConfigIssue::new("table", "the routing table needs at least one route"));
        }
        self.table.iter().enumerate().map(|(i, r)| r.compile(&format!("table[{i}]"))).collect()
    }
}

impl ComponentConfig for RoutingConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        self.compile().map(|_| ())
    }

    fn pipeline_refs(&self) -> Vec<(String, String)> {
        let routes = self.table.iter().enumerate().flat_map(|(i, r)| {
            r.pipelines.iter().enumerate().map(move |(j, p)| (format!("table[{i}].pipelines[{j}]"), p.clone()))
        });
        let defaults =
            self.default_pipelines.iter().enumerate().map(|(j, p)| (format!("default_pipelines[{j}]"), p.clone()));
        routes.chain(defaults).collect()
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Processor>> {
    typed::<RoutingConfig, dyn Processor>(
        "routing",
        &[],
        &Signal::ALL,
        "sends each item to the pipelines of the first route whose OTTL or request condition it matches",
        |id: &ComponentId, cfg: &RoutingConfig, env: &BuildEnv| {
            let matchers = cfg.compile().map_err(|e| anyhow::anyhow!("{}: {}", e.path, e.message))?;
            let outputs = |names: &[String]| -> anyhow::Result<Fanout> {
                let parts = names
                    .iter()
                    .map(|n| {
                        env.connector_outputs.iter().find(|(p, _)| p == n).map(|(_, f)| f).ok_or_else(|| {
                            anyhow::anyhow!(
                                "connector {id} routes to pipeline {n}, which does not list it as a receiver"
                            )
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(Fanout::union(parts))
            };
            let mut routes = Vec::new();
            for (m, r) in matchers.into_iter().zip(&cfg.table) {
                if let (Matcher::Ottl(ctx, _), Some(signal)) = (&m, env.signal) {
                    let fits = match ctx {
                        Context::Span => signal == Signal::Traces,
                        Context::Log => signal == Signal::Logs,
                        Context::Metric | Context::DataPoint => signal == Signal::Metrics,
                        _ => true,
                    };
                    anyhow::ensure!(fits, "connector {id}: a {ctx:?} route cannot apply to {signal} pipelines");
                }
                routes.push(Route { matcher: m, output: outputs(&r.pipelines)? });
            }
            let default = if cfg.default_pipelines.is_empty() { None } else { Some(outputs(&cfg.default_pipelines)?) };
            Ok(Box::new(Router {
                id: id.to_string(),
                routes,
                default,
                error_mode: cfg.error_mode,
                dropped: dropped_items(&env.telemetry, &id.to_string()),
            }))
        },
    )
}

struct Route {
    matcher: Matcher,
    output: Fanout,
}

struct Router {
    id: String,
    routes: Vec<Route>,
    default: Option<Fanout>,
    error_mode: ErrorMode,
    dropped: SignalCounters,
}

/// Where an item goes: a route's index, or the default.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dest {
    Route(usize),
    Default,
}

fn request_matches(batch: &Batch, key: &str, value: &str, equal: bool) -> bool {
    let found: Vec<&str> = batch
        .metadata
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(key))
        .flat_map(|(_, v)| v.iter().map(String::as_str))
        .collect();
    let tenant = batch.tenant.as_str();
    let values: Vec<&str> = if found.is_empty() && key.eq_ignore_ascii_case(openwit_core::tenant::DEFAULT_TENANT_HEADER)
    {
        vec![tenant]
    } else {
        found
    };
    // As the Collector: the first value of the key is compared.
    let first = values.first().copied();
    if equal { first == Some(value) } else { first != Some(value) }
}

impl Router {
    /// Each item's destination; `Err` with the first error under `propagate`.
    fn destinations(&self, batch: &mut Batch) -> Result<Vec<Option<Dest>>, String> {
        let n = batch.item_count();
        let mut dest: Vec<Option<Dest>> = vec![None; n];
        for (ri, route) in self.routes.iter().enumerate() {
            if dest.iter().all(Option::is_some) {
                break;
            }
            let (hits, errors) = match &route.matcher {
                Matcher::Request { key, value, equal } => (vec![request_matches(batch, key, value, *equal); n], None),
                Matcher::Ottl(ctx, cond) => {
                    let mut first_error = None;
                    let hits = visit(&mut batch.payload, *ctx, |item| {
                        cond.eval(item).unwrap_or_else(|e| {
                            first_error.get_or_insert(e);
                            false
                        })
                    });
                    // Only when something failed: which items failed (conditions have no side effects).
                    let errors = match first_error {
                        None => None,
                        Some(e) if self.error_mode == ErrorMode::Propagate => return Err(e),
                        Some(e) => {
                            if self.error_mode == ErrorMode::Ignore {
                                tracing::warn!(connector = %self.id, "a routing condition failed (error_mode: ignore, the item goes to the default pipelines): {e}");
                            }
                            Some(visit(&mut batch.payload, *ctx, |item| cond.eval(item).is_err()))
                        }
                    };
                    (hits, errors)
                }
            };
            for i in 0..n {
                if dest[i].is_none() {
                    if errors.as_ref().is_some_and(|e| e[i]) {
                        dest[i] = Some(Dest::Default);
                    } else if hits[i] {
                        dest[i] = Some(Dest::Route(ri));
                    }
                }
            }
        }
        Ok(dest)
    }
}

#[async_trait]
impl Processor for Router {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, _all: &Fanout) {
        while let Some(mut batch) = input.recv().await {
            if batch.item_count() == 0 {
                batch.settle(&Verdict::Dropped);
                continue;
            }
            let dest = match self.destinations(&mut batch) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(connector = %self.id, "a routing condition failed (error_mode: propagate); the batch is marked failed: {e}");
                    batch.settle(&Verdict::Permanent(format!("connector {}: {e}", self.id)));
                    continue;
                }
            };
            let dest: Vec<Dest> = dest.into_iter().map(|d| d.unwrap_or(Dest::Default)).collect();
            // One part per destination that has items, in route order, then the default. The last part
            // is what remains of the batch (no copy when everything goes one way).
            let mut targets: Vec<Dest> = (0..self.routes.len()).map(Dest::Route).chain([Dest::Default]).collect();
            targets.retain(|t| dest.contains(t));
            let last = targets.pop();
            let mut dest = dest;
            let mut parts: Vec<(Dest, Batch)> = Vec::with_capacity(targets.len() + 1);
            for t in targets {
                let mask: Vec<bool> = dest.iter().map(|d| *d == t).collect();
                parts.push((t, batch.take_items(&mask)));
                // The batch shrank: the flags of what is left must line up with it again.
                dest.retain(|d| *d != t);
            }
            if let Some(t) = last {
                parts.push((t, batch));
            }
            for (target, part) in parts {
                let output = match target {
                    Dest::Route(i) => Some(&self.routes[i].output),
                    Dest::Default => self.default.as_ref(),
                };
                match output {
                    Some(o) => {
                        if o.send(part).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        // No route and no default pipelines: dropped on purpose, as the Collector does.
                        self.dropped.add(part.signal(), part.item_count());
                        part.settle(&Verdict::Dropped);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
