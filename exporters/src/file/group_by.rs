//! `group_by`: one file per value of a resource attribute, as the Collector's file exporter does. The
//! `*` in `path` is replaced by the attribute's string value; resources without it (or with a value of
//! another type) are not written — as in the Collector — and counted in
//! `openwit_exporter_file_ungrouped_{spans,metric_points,log_records}_total{exporter}`. At most
//! `max_open_files` files are open; the least recently written is synced and closed first, and a file
//! reopened later in the same run is appended to, never truncated.

use super::FileExporter;
use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use openwit_core::telemetry::{SignalCounters, Telemetry, labels};
use openwit_core::{Batch, ExportError, Exporter, Payload};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;

pub struct GroupingExporter {
    /// The settings every file is written with (its own path is the template, never opened).
    template: FileExporter,
    /// `path` before and after the `*`.
    prefix: String,
    suffix: String,
    attribute: String,
    max_open: usize,
    /// Open files, least recently written first.
    open: VecDeque<FileExporter>,
    /// Files opened before in this run: reopened for appending.
    seen: HashSet<PathBuf>,
    ungrouped: SignalCounters,
}

impl GroupingExporter {
    pub fn new(template: FileExporter, cfg: &super::GroupBy, id: &str, telemetry: &Telemetry) -> GroupingExporter {
        let path = template.path.to_string_lossy().to_string();
        let (prefix, suffix) = path.split_once('*').unwrap_or((&path, ""));
        GroupingExporter {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            attribute: cfg.resource_attribute.clone(),
            max_open: cfg.max_open_files.max(1),
            open: VecDeque::new(),
            seen: HashSet::new(),
            ungrouped: SignalCounters::register(
                telemetry,
                "openwit_exporter_file_ungrouped",
                "Items the file exporter's group_by did not write: their resource has no string value for the attribute",
                &labels(&[("exporter", id)]),
            ),
            template,
        }
    }

    /// The file for one value. The value cannot climb out of the configured directory: `.`, `..` and
    /// empty segments are dropped.
    fn path_for(&self, value: &str) -> PathBuf {
        let clean: Vec<&str> = value.split('/').filter(|s| !s.is_empty() && *s != "." && *s != "..").collect();
        PathBuf::from(format!("{}{}{}", self.prefix, clean.join("/"), self.suffix))
    }

    /// The open file for `path`, opening it (and closing the least recently written) if needed.
    async fn writer(&mut self, path: PathBuf) -> Result<&mut FileExporter, ExportError> {
        if let Some(i) = self.open.iter().position(|w| w.path == path) {
            let w = self.open.remove(i).expect("found above");
            self.open.push_back(w);
        } else {
            if self.open.len() >= self.max_open
                && let Some(mut oldest) = self.open.pop_front()
            {
                oldest.shutdown().await?;
            }
            let append = self.template.append || !self.seen.insert(path.clone());
            self.open.push_back(self.template.for_path(path, append));
        }
        Ok(self.open.back_mut().expect("pushed above"))
    }

    /// The value of the attribute on a resource, when it is a string.
    fn value<'a>(&self, r: Option<&'a Resource>) -> Option<&'a str> {
        r?.attributes.iter().find(|kv| kv.key == self.attribute).and_then(|kv| match &kv.value.as_ref()?.value {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The batch's resources grouped by value (in value order), and the payload of those without one.
    fn group(&self, p: &Payload) -> (BTreeMap<String, Payload>, Payload) {
        fn split<R: Clone>(
            items: &[R],
            value: impl Fn(&R) -> Option<String>,
            make: impl Fn(Vec<R>) -> Payload,
        ) -> (BTreeMap<String, Payload>, Payload) {
            let mut groups: BTreeMap<String, Vec<R>> = BTreeMap::new();
            let mut rest = Vec::new();
            for r in items {
                match value(r) {
                    Some(v) => groups.entry(v).or_default().push(r.clone()),
                    None => rest.push(r.clone()),
                }
            }
            (groups.into_iter().map(|(k, v)| (k, make(v))).collect(), make(rest))
        }
        let v = |r: Option<&Resource>| self.value(r).map(str::to_string);
        match p {
            Payload::Traces(req) => split(
                &req.resource_spans,
                |r| v(r.resource.as_ref()),
                |resource_spans| Payload::Traces(ExportTraceServiceRequest { resource_spans }),
            ),
            Payload::Metrics(req) => split(
                &req.resource_metrics,
                |r| v(r.resource.as_ref()),
                |resource_metrics| Payload::Metrics(ExportMetricsServiceRequest { resource_metrics }),
            ),
            Payload::Logs(req) => split(
                &req.resource_logs,
                |r| v(r.resource.as_ref()),
                |resource_logs| Payload::Logs(ExportLogsServiceRequest { resource_logs }),
            ),
        }
    }
}

#[async_trait]
impl Exporter for GroupingExporter {
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let (groups, rest) = self.group(&batch.payload);
        for (value, payload) in groups {
            let path = self.path_for(&value);
            let part = Batch::new(batch.tenant.clone(), payload);
            self.writer(path).await?.export(&part).await?;
        }
        if rest.item_count() > 0 {
            tracing::debug!(
                attribute = %self.attribute,
                "file exporter: {} items have no string resource attribute to group by; not written",
                rest.item_count()
            );
            self.ungrouped.add(rest.signal(), rest.item_count());
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), ExportError> {
        for w in &mut self.open {
            w.shutdown().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FileFormat, GroupBy};
    use super::*;
    use openwit_core::TenantId;

    /// One log record per resource, each resource with `fileexporter.path_segment` = the value given
    /// (none for `None`).
    fn batch(values: &[Option<&str>]) -> Batch {
        let resources: Vec<String> = values
            .iter()
            .map(|v| {
                let attrs = v.map_or(String::new(), |v| {
                    format!(r#""attributes":[{{"key":"fileexporter.path_segment","value":{{"stringValue":"{v}"}}}}]"#)
                });
                format!(
                    r#"{{"resource":{{{attrs}}},"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"x"}}}}]}}]}}"#
                )
            })
            .collect();
        let json = format!(r#"{{"resourceLogs":[{}]}}"#, resources.join(","));
        Batch::new(
            TenantId::new("t").unwrap(),
            Payload::Logs(openwit_core::otlp_json::decode(json.as_bytes()).unwrap()),
        )
    }

    fn records(path: &std::path::Path) -> usize {
        std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
    }

    #[tokio::test]
    async fn one_file_per_value_closing_the_least_recent_and_appending_when_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let template = FileExporter::new(dir.path().join("out/*.json"), FileFormat::Json, false);
        let cfg = GroupBy { enabled: true, max_open_files: 1, ..Default::default() };
        let t = Telemetry::default();
        let mut e = GroupingExporter::new(template, &cfg, "file", &t);
        e.export(&batch(&[Some("a"), Some("b"), None])).await.unwrap();
        // `a` was closed when `b` opened (one open file at most): reopening must not truncate it.
        e.export(&batch(&[Some("a"), Some("../../escape")])).await.unwrap();
        e.shutdown().await.unwrap();
        assert_eq!(records(&dir.path().join("out/a.json")), 2);
        assert_eq!(records(&dir.path().join("out/b.json")), 1);
        assert_eq!(records(&dir.path().join("out/escape.json")), 1, "the value stays inside the directory");
        assert!(!dir.path().join("escape.json").exists());
        assert!(
            t.encode().contains("openwit_exporter_file_ungrouped_log_records_total{exporter=\"file\"} 1"),
            "{}",
            t.encode()
        );
    }
}
