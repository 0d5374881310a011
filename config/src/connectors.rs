//! The Collector's rules for connectors in `service.pipelines`: a connector used at one end must be used
//! at the other (an exporter of some pipeline and a receiver of another, of the same signal: OpenWit's
//! connectors do not change signals), the pipelines a connector's config names must read from it, and
//! the graph pipelines and connectors form must have no cycle (data would go round for ever).

use crate::model::{Ctx, PipelineSpec, Resolved};
use openwit_core::{ComponentId, Processor};

pub(crate) fn check(cx: &mut Ctx, connectors: &[Resolved<dyn Processor>], pipelines: &[PipelineSpec]) {
    for c in connectors {
        let exporting: Vec<&PipelineSpec> = pipelines.iter().filter(|p| p.exporters.contains(&c.id)).collect();
        let reading: Vec<&PipelineSpec> = pipelines.iter().filter(|p| p.receivers.contains(&c.id)).collect();
        let path = format!("connectors.{}", c.id);
        for p in &exporting {
            if !reading.iter().any(|q| q.id.signal == p.id.signal) {
                cx.err(
                    &format!("service.pipelines.{}.exporters", p.id),
                    format!(
                        "connector {} is an exporter of {} pipeline {} but no {} pipeline lists it under receivers; \
                         a connector passes data from the pipelines that export to it to those that receive from it",
                        c.id, p.id.signal, p.id, p.id.signal
                    ),
                );
            }
        }
        for q in &reading {
            if !exporting.iter().any(|p| p.id.signal == q.id.signal) {
                cx.err(
                    &format!("service.pipelines.{}.receivers", q.id),
                    format!(
                        "connector {} is a receiver of {} pipeline {} but no {} pipeline lists it under exporters, \
                         so nothing would ever reach it",
                        c.id, q.id.signal, q.id, q.id.signal
                    ),
                );
            }
        }
        if exporting.is_empty() && reading.is_empty() {
            continue;
        }
        for (at, target) in c.config.pipeline_refs() {
            let at = format!("{path}.{at}");
            match pipelines.iter().find(|q| q.id.to_string() == target) {
                None => {
                    let known: Vec<String> = reading.iter().map(|q| q.id.to_string()).collect();
                    cx.err(
                        &at,
                        format!(
                            "names pipeline {target:?}, which is not configured; pipelines that receive from {}: {}",
                            c.id,
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    );
                }
                Some(q) if !q.receivers.contains(&c.id) => cx.err(
                    &at,
                    format!("names pipeline {target}, which does not list {} under its receivers; add it there", c.id),
                ),
                Some(q) if !exporting.iter().all(|p| p.id.signal == q.id.signal) => cx.err(
                    &at,
                    format!(
                        "names {} pipeline {target}, but {} also receives other signals; use one {} per signal",
                        q.id.signal, c.id, c.id.type_name
                    ),
                ),
                Some(_) => {}
            }
        }
    }
    if let Some(cycle) = find_cycle(connectors, pipelines) {
        cx.err(
            "service.pipelines",
            format!(
                "cycle detected: {cycle}; a pipeline may not feed itself through connectors (data would circle \
                 for ever)"
            ),
        );
    }
}

/// A cycle of pipelines joined by connectors, written `traces/a → forward → traces/b → … → traces/a`.
fn find_cycle(connectors: &[Resolved<dyn Processor>], pipelines: &[PipelineSpec]) -> Option<String> {
    // Edges: pipeline i → pipeline j through connector c, when i exports to c and j receives from it.
    let is_connector = |id: &ComponentId| connectors.iter().any(|c| &c.id == id);
    let edges: Vec<Vec<(usize, &ComponentId)>> = pipelines
        .iter()
        .map(|p| {
            p.exporters
                .iter()
                .filter(|e| is_connector(e))
                .flat_map(|c| {
                    pipelines.iter().enumerate().filter(|(_, q)| q.receivers.contains(c)).map(move |(j, _)| (j, c))
                })
                .collect()
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn dfs<'a>(
        i: usize,
        edges: &[Vec<(usize, &'a ComponentId)>],
        mark: &mut [Mark],
        path: &mut Vec<(usize, &'a ComponentId)>,
    ) -> Option<Vec<(usize, &'a ComponentId)>> {
        mark[i] = Mark::OnPath;
        for &(j, c) in &edges[i] {
            if mark[j] == Mark::OnPath {
                // `path` holds the ancestors of `i` (each with the connector it left by), not `i` itself.
                let start = if j == i { path.len() } else { path.iter().position(|(p, _)| *p == j).unwrap_or(0) };
                let mut cycle = path[start..].to_vec();
                cycle.push((i, c));
                return Some(cycle);
            }
            if mark[j] == Mark::New {
                path.push((i, c));
                if let Some(found) = dfs(j, edges, mark, path) {
                    return Some(found);
                }
                path.pop();
            }
        }
        mark[i] = Mark::Done;
        None
    }
    let mut mark = vec![Mark::New; pipelines.len()];
    for i in 0..pipelines.len() {
        if mark[i] != Mark::New {
            continue;
        }
        let mut path = Vec::new();
        if let Some(cycle) = dfs(i, &edges, &mut mark, &mut path) {
            // `cycle` lists (pipeline, connector it exports through); it closes on its first pipeline.
            let mut text = String::new();
            for (p, c) in &cycle {
                text.push_str(&format!("{} → {c} → ", pipelines[*p].id));
            }
            text.push_str(&pipelines[cycle[0].0].id.to_string());
            return Some(text);
        }
    }
    None
}
