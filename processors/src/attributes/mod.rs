//! The `attributes` processor, with the Collector's keys and behaviour: `actions` change the attributes
//! of spans, log records and metric data points; `include` / `exclude` choose which items (see
//! `matching`). Items are changed, never dropped: every item goes on, so the verdicts stay the
//! exporters'.

pub mod actions;
pub mod matching;

use actions::{ActionConfig, Actions};
use async_trait::async_trait;
use matching::{Item, ItemFilter, ItemKind, MatchProperties};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{Batch, BuildEnv, ComponentId, ConfigIssue, Factory, Fanout, Metadata, Payload, Processor, Signal};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// `processors: attributes: {…}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributesConfig {
    pub actions: Vec<ActionConfig>,
    pub include: Option<MatchProperties>,
    pub exclude: Option<MatchProperties>,
}

impl ComponentConfig for AttributesConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        Actions::compile(&self.actions)?;
        // Properties that fit no signal at all (a bad pattern, a missing match_type) are refused here;
        // those that do not fit the pipeline's signal when the processor is built for it.
        let any = Signal::ALL
            .iter()
            .map(|s| ItemFilter::compile(self.include.as_ref(), self.exclude.as_ref(), *s))
            .collect::<Vec<_>>();
        match any.iter().find(|r| r.is_ok()) {
            Some(_) => Ok(()),
            None => Err(any.into_iter().find_map(Result::err).expect("three results")),
        }
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Processor>> {
    typed::<AttributesConfig, dyn Processor>(
        "attributes",
        &[],
        &Signal::ALL,
        "inserts, updates, deletes, hashes, extracts and converts attributes of spans, logs and metric points",
        |_id: &ComponentId, cfg: &AttributesConfig, env: &BuildEnv| {
            let actions = Actions::compile(&cfg.actions).map_err(issue)?;
            let filters = Signal::ALL
                .iter()
                .map(|s| ItemFilter::compile(cfg.include.as_ref(), cfg.exclude.as_ref(), *s))
                .collect::<Vec<_>>();
            // Built for one pipeline: its signal's match properties must fit it.
            if let Some(signal) = env.signal
                && let Err(e) = &filters[signal_index(signal)]
            {
                return Err(issue(e.clone()));
            }
            Ok(Box::new(AttributesProcessor { actions, filters: filters.into_iter().map(Result::ok).collect() }))
        },
    )
}

fn signal_index(s: Signal) -> usize {
    Signal::ALL.iter().position(|x| *x == s).expect("every signal is in ALL")
}

fn issue(e: ConfigIssue) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", e.path, e.message)
}

struct AttributesProcessor {
    actions: Actions,
    /// By signal (`Signal::ALL` order); `None` where the match properties do not fit the signal.
    filters: Vec<Option<ItemFilter>>,
}

#[async_trait]
impl Processor for AttributesProcessor {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, output: &Fanout) {
        while let Some(mut batch) = input.recv().await {
            match &self.filters[signal_index(batch.signal())] {
                Some(filter) => {
                    let metadata = batch.metadata.clone();
                    apply(&mut batch.payload, &self.actions, filter, &metadata);
                    batch.columnar = Default::default();
                }
                // Only reachable for a processor built without a pipeline signal (tests); the build
                // refuses this for real pipelines.
                None => tracing::warn!(
                    "attributes: include/exclude do not apply to {:?}; batch passed unchanged",
                    batch.signal()
                ),
            }
            if output.send(batch).await.is_err() {
                return;
            }
        }
    }
}

/// Applies `actions` to the attributes of every selected item of `payload`.
pub fn apply(payload: &mut Payload, actions: &Actions, filter: &ItemFilter, metadata: &Metadata) {
    match payload {
        Payload::Traces(req) => {
            for rs in &mut req.resource_spans {
                for ss in &mut rs.scope_spans {
                    for span in &mut ss.spans {
                        let item = Item {
                            resource: rs.resource.as_ref(),
                            scope: ss.scope.as_ref(),
                            attributes: &span.attributes,
                            kind: ItemKind::Span { name: &span.name, kind: span.kind },
                        };
                        if filter.selects(&item) {
                            actions.apply(&mut span.attributes, metadata);
                        }
                    }
                }
            }
        }
        Payload::Logs(req) => {
            for rl in &mut req.resource_logs {
                for sl in &mut rl.scope_logs {
                    for log in &mut sl.log_records {
                        let item = Item {
                            resource: rl.resource.as_ref(),
                            scope: sl.scope.as_ref(),
                            attributes: &log.attributes,
                            kind: ItemKind::Log {
                                body: log.body.as_ref(),
                                severity_text: &log.severity_text,
                                severity_number: log.severity_number,
                            },
                        };
                        if filter.selects(&item) {
                            actions.apply(&mut log.attributes, metadata);
                        }
                    }
                }
            }
        }
        Payload::Metrics(req) => {
            for rm in &mut req.resource_metrics {
                for sm in &mut rm.scope_metrics {
                    for metric in &mut sm.metrics {
                        let item = Item {
                            resource: rm.resource.as_ref(),
                            scope: sm.scope.as_ref(),
                            attributes: &[],
                            kind: ItemKind::Metric { name: &metric.name },
                        };
                        if !filter.selects(&item) {
                            continue;
                        }
                        match &mut metric.data {
                            Some(Data::Gauge(g)) => {
                                g.data_points.iter_mut().for_each(|p| actions.apply(&mut p.attributes, metadata))
                            }
                            Some(Data::Sum(s)) => {
                                s.data_points.iter_mut().for_each(|p| actions.apply(&mut p.attributes, metadata))
                            }
                            Some(Data::Histogram(h)) => {
                                h.data_points.iter_mut().for_each(|p| actions.apply(&mut p.attributes, metadata))
                            }
                            Some(Data::ExponentialHistogram(h)) => {
                                h.data_points.iter_mut().for_each(|p| actions.apply(&mut p.attributes, metadata))
                            }
                            Some(Data::Summary(s)) => {
                                s.data_points.iter_mut().for_each(|p| actions.apply(&mut p.attributes, metadata))
                            }
                            None => {}
                        }
                    }
                }
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

    fn cfg(yaml: &str) -> AttributesConfig {
        let c: AttributesConfig = serde_yaml_ng::from_str(yaml).unwrap();
        c.validate().unwrap();
        c
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn spans(names: &[&str]) -> Payload {
        Payload::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: vec![kv("service.name", "api")], ..Default::default() }),
                scope_spans: vec![ScopeSpans {
                    spans: names
                        .iter()
                        .map(|n| Span {
                            name: n.to_string(),
                            attributes: vec![kv("user.email", "a@b.c")],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[test]
    fn only_selected_items_change() {
        let c = cfg("{actions: [{key: user.email, action: delete}, {key: env, value: prod, action: insert}],
                     exclude: {match_type: strict, span_names: [keep]}}");
        let actions = Actions::compile(&c.actions).unwrap();
        let filter = ItemFilter::compile(c.include.as_ref(), c.exclude.as_ref(), Signal::Traces).unwrap();
        let mut p = spans(&["change", "keep"]);
        apply(&mut p, &actions, &filter, &Metadata::new());
        let Payload::Traces(req) = p else { unreachable!() };
        let got: Vec<Vec<String>> = req.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| {
                s.attributes
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, value::as_string(kv.value.as_ref().unwrap())))
                    .collect()
            })
            .collect();
        assert_eq!(got, [vec!["env=prod".to_string()], vec!["user.email=a@b.c".to_string()]]);
    }

    #[test]
    fn a_config_that_fits_no_signal_is_refused() {
        let c: AttributesConfig = serde_yaml_ng::from_str(
            "{actions: [{key: a, action: delete}], include: {match_type: regexp, services: ['(']}}",
        )
        .unwrap();
        assert_eq!(c.validate().unwrap_err().path, "include.services");
        let c: AttributesConfig = serde_yaml_ng::from_str("{actions: []}").unwrap();
        assert_eq!(c.validate().unwrap_err().path, "actions");
    }
}
