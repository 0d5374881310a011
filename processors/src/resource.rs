//! The `resource` processor, with the Collector's keys: `attributes` is a list of attribute actions
//! (the `attributes` processor's, see `attributes::actions`) applied to the resource of every item.

use crate::attributes::actions::{ActionConfig, Actions};
use async_trait::async_trait;
use opentelemetry_proto::tonic::resource::v1::Resource;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{Batch, BuildEnv, ComponentId, ConfigIssue, Factory, Fanout, Metadata, Payload, Processor, Signal};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// `processors: resource: {…}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceConfig {
    pub attributes: Vec<ActionConfig>,
}

impl ComponentConfig for ResourceConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        compile(&self.attributes).map(|_| ())
    }
}

fn compile(list: &[ActionConfig]) -> Result<Actions, ConfigIssue> {
    Actions::compile(list).map_err(|e| ConfigIssue::new(e.path.replacen("actions", "attributes", 1), e.message))
}

pub fn factory() -> Arc<dyn Factory<dyn Processor>> {
    typed::<ResourceConfig, dyn Processor>(
        "resource",
        &[],
        &Signal::ALL,
        "inserts, updates, deletes, hashes, extracts and converts resource attributes",
        |_id: &ComponentId, cfg: &ResourceConfig, _env: &BuildEnv| {
            let actions = compile(&cfg.attributes).map_err(|e| anyhow::anyhow!("{}: {}", e.path, e.message))?;
            Ok(Box::new(ResourceProcessor { actions }))
        },
    )
}

struct ResourceProcessor {
    actions: Actions,
}

#[async_trait]
impl Processor for ResourceProcessor {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, output: &Fanout) {
        while let Some(mut batch) = input.recv().await {
            let metadata = batch.metadata.clone();
            apply(&mut batch.payload, &self.actions, &metadata);
            batch.columnar = Default::default();
            if output.send(batch).await.is_err() {
                return;
            }
        }
    }
}

/// Applies `actions` to every resource of `payload` (a missing resource is an empty one).
pub fn apply(payload: &mut Payload, actions: &Actions, metadata: &Metadata) {
    let each =
        |r: &mut Option<Resource>| actions.apply(&mut r.get_or_insert_with(Resource::default).attributes, metadata);
    match payload {
        Payload::Traces(req) => req.resource_spans.iter_mut().for_each(|rs| each(&mut rs.resource)),
        Payload::Logs(req) => req.resource_logs.iter_mut().for_each(|rl| each(&mut rl.resource)),
        Payload::Metrics(req) => req.resource_metrics.iter_mut().for_each(|rm| each(&mut rm.resource)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::ResourceLogs;

    #[test]
    fn every_resource_changes_even_a_missing_one() {
        let cfg: ResourceConfig = serde_yaml_ng::from_str(
            "{attributes: [{key: deployment.environment, value: prod, action: upsert}, {key: host.name, action: delete}]}",
        )
        .unwrap();
        let actions = compile(&cfg.attributes).unwrap();
        let mut p = Payload::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs::default(), ResourceLogs::default()],
        });
        apply(&mut p, &actions, &Metadata::new());
        let Payload::Logs(req) = p else { unreachable!() };
        for rl in &req.resource_logs {
            let attrs = &rl.resource.as_ref().unwrap().attributes;
            assert_eq!(value::as_string(value::get(attrs, "deployment.environment").unwrap()), "prod");
        }
    }

    #[test]
    fn errors_name_the_attributes_key() {
        let cfg: ResourceConfig = serde_yaml_ng::from_str("{attributes: [{key: a, action: upsert}]}").unwrap();
        assert_eq!(cfg.validate().unwrap_err().path, "attributes[0].value");
        assert_eq!(ResourceConfig::default().validate().unwrap_err().path, "attributes");
    }
}
