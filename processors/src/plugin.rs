//! Processors from plugin libraries (`extensions: plugins`): each batch's Arrow rows go to the
//! plugin and come back changed, with the rows it dropped; see `docs/plugins.md`.
//!
//! What the boundary guarantees the rest of the pipeline:
//! - the rows that come back are checked (valid Arrow, the table's columns and types, one row per
//!   row given); rows that do not fit fail the batch as permanent, never reach storage;
//! - the `tenant` column is the daemon's: it is put back as it was, whatever the plugin returned;
//! - dropped rows are settled as dropped on purpose and counted
//!   (`openwit_processor_dropped_*_total{processor}`), the rest go on with their payload rebuilt
//!   from the rows, so OTLP exporters downstream see the change too;
//! - a retryable error or a panic gives the batch up without a verdict: the WAL delivers it again
//!   (with backoff; after `wal.max_redeliveries` in a row it is marked failed). After a panic the
//!   instance is replaced by a fresh one built from the same config.

use arrow::array::{BooleanArray, RecordBatch};
use async_trait::async_trait;
use openwit_core::factory::{keeping_columnar, plugin_factory};
use openwit_core::telemetry::{SignalCounters, dropped_items};
use openwit_core::{Batch, BuildEnv, ComponentId, Factory, Fanout, Processor, Verdict};
use openwit_plugin::host::{CallError, Component, Processed, RowProcessor};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The factory of a plugin's processor type. The plugin works on Arrow rows: the pipeline converts
/// before it, and its rows go on.
pub fn factory(component: Arc<Component>) -> Arc<dyn Factory<dyn Processor>> {
    keeping_columnar(plugin_factory(component, build))
}

fn build(
    component: &Arc<Component>,
    json: &str,
    id: &ComponentId,
    env: &BuildEnv,
) -> anyhow::Result<Box<dyn Processor>> {
    let signal = env.signal.ok_or_else(|| anyhow::anyhow!("processor {id} is built outside a pipeline"))?;
    let (component, json) = (component.clone(), json.to_string());
    let make = move || -> Result<Box<dyn RowProcessor>, String> {
        component.create(&json, signal.into()).map(|i| Box::new(i) as Box<dyn RowProcessor>).map_err(|e| e.to_string())
    };
    let rows = make().map_err(|e| anyhow::anyhow!("processor {id}: the plugin refused to start: {e}"))?;
    Ok(Box::new(PluginProcessor::new(
        id.to_string(),
        rows,
        Box::new(make),
        dropped_items(&env.telemetry, &id.to_string()),
    )))
}

/// Makes a fresh instance (after a panic).
pub type Remake = Box<dyn Fn() -> Result<Box<dyn RowProcessor>, String> + Send>;

/// The pipeline stage around a `RowProcessor` (a plugin instance, or the same logic linked in).
pub struct PluginProcessor {
    id: String,
    rows: Option<Box<dyn RowProcessor>>,
    remake: Remake,
    dropped: SignalCounters,
}

impl PluginProcessor {
    pub fn new(id: String, rows: Box<dyn RowProcessor>, remake: Remake, dropped: SignalCounters) -> PluginProcessor {
        PluginProcessor { id, rows: Some(rows), remake, dropped }
    }

    /// Runs the plugin on one batch; the batch that goes on, if any (the others are settled or given
    /// up here).
    pub fn process(&mut self, mut batch: Batch) -> Option<Batch> {
        let rows = match batch.columnar() {
            Ok(r) => r.clone(),
            Err(e) => {
                batch.settle(&Verdict::Permanent(format!("processor {}: {e}", self.id)));
                return None;
            }
        };
        let Some(instance) = self.rows.as_mut() else {
            // The last panic's replacement could not be built: try again now.
            return self.remake_then_lose(batch, "no instance");
        };
        match instance.process(&rows) {
            Ok(processed) => match self.apply(&mut batch, &rows, processed) {
                Ok(()) => Some(batch),
                Err(e) => {
                    tracing::error!(processor = %self.id, "the batch is marked failed: {e}");
                    batch.settle(&Verdict::Permanent(format!("processor {}: {e}", self.id)));
                    None
                }
            },
            Err(CallError::Permanent(e)) => {
                tracing::error!(processor = %self.id, "the plugin failed the batch (permanent): {e}");
                batch.settle(&Verdict::Permanent(format!("processor {}: {e}", self.id)));
                None
            }
            Err(CallError::Retryable(e)) => {
                tracing::warn!(processor = %self.id, "the plugin failed the batch (retryable); it is delivered again: {e}");
                batch.lineage.lose(&format!("processor {} failed (retryable): {e}", self.id));
                None
            }
            Err(CallError::Panicked(e)) => {
                tracing::error!(processor = %self.id, "the plugin {e}; the batch is delivered again, the instance rebuilt");
                self.rows = None;
                self.remake_then_lose(batch, &format!("plugin {e}"))
            }
        }
    }

    fn remake_then_lose(&mut self, batch: Batch, why: &str) -> Option<Batch> {
        match (self.remake)() {
            Ok(r) => self.rows = Some(r),
            Err(e) => tracing::error!(processor = %self.id, "cannot rebuild the plugin's instance: {e}"),
        }
        batch.lineage.lose(&format!("processor {}: {why}", self.id));
        None
    }

    /// Puts the plugin's rows on the batch: the tenant column restored, dropped rows removed and
    /// settled.
    fn apply(&self, batch: &mut Batch, input: &RecordBatch, p: Processed) -> Result<(), String> {
        let Processed { rows, keep } = p;
        let rows = openwit_plugin::host::checked_output(input, rows).map_err(|e| e.to_string())?;
        if keep.len() != input.num_rows() {
            return Err(format!("{} keep flags for {} rows", keep.len(), input.num_rows()));
        }
        let rows = match input.schema().index_of("tenant") {
            Ok(i) => {
                let mut columns = rows.columns().to_vec();
                columns[i] = input.column(i).clone();
                RecordBatch::try_new(input.schema(), columns).map_err(|e| e.to_string())?
            }
            Err(_) => rows,
        };
        let rows = if keep.iter().all(|k| *k) {
            rows
        } else {
            arrow::compute::filter_record_batch(&rows, &BooleanArray::from(keep.clone())).map_err(|e| e.to_string())?
        };
        batch
            .replace_rows(&keep, rows, &self.dropped)
            .map(|_| ())
            .map_err(|e| format!("the plugin's rows cannot be read back: {e}"))
    }
}

#[async_trait]
impl Processor for PluginProcessor {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, output: &Fanout) {
        while let Some(batch) = input.recv().await {
            if let Some(b) = self.process(batch)
                && !crate::pass_on(b, output).await
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, AsArray, DictionaryArray, StringArray};
    use arrow::datatypes::Int32Type;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value as Kind};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use openwit_core::{AckToken, BatchId, Completion, Lineage, Outcome, Payload, TenantId};

    fn logs(bodies: &[&str]) -> (Batch, mpsc::UnboundedReceiver<Completion>) {
        let records = bodies
            .iter()
            .map(|b| LogRecord {
                body: Some(AnyValue { value: Some(Kind::StringValue(b.to_string())) }),
                ..Default::default()
            })
            .collect();
        let mut batch = Batch::new(
            TenantId::new("acme").unwrap(),
            Payload::Logs(ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                    ..Default::default()
                }],
            }),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        batch.lineage = Lineage::whole(AckToken::new(BatchId([9; 16]), tx), bodies.len() as u32);
        (batch, rx)
    }

    /// A plugin written as a closure over the rows.
    struct Fake<F>(F);
    impl<F: FnMut(&RecordBatch) -> Result<Processed, CallError> + Send> RowProcessor for Fake<F> {
        fn process(&mut self, rows: &RecordBatch) -> Result<Processed, CallError> {
            (self.0)(rows)
        }
    }

    fn stage(f: impl FnMut(&RecordBatch) -> Result<Processed, CallError> + Send + 'static) -> PluginProcessor {
        PluginProcessor::new("p".into(), Box::new(Fake(f)), Box::new(|| Err("no".into())), SignalCounters::default())
    }

    fn with_column(rows: &RecordBatch, name: &str, col: ArrayRef) -> RecordBatch {
        let mut cols = rows.columns().to_vec();
        cols[rows.schema().index_of(name).unwrap()] = col;
        RecordBatch::try_new(rows.schema(), cols).unwrap()
    }

    fn bodies(b: &Batch) -> Vec<String> {
        let Payload::Logs(r) = &*b.payload else { unreachable!() };
        r.resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .map(|l| match l.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(Kind::StringValue(s)) => s.clone(),
                _ => String::new(),
            })
            .collect()
    }

    #[test]
    fn changed_rows_reach_the_payload_dropped_rows_are_settled_and_the_tenant_stays() {
        let mut p = stage(|rows| {
            let n = rows.num_rows();
            let upper: StringArray = rows
                .column_by_name("body")
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|b| b.map(|b| b.to_uppercase()))
                .collect();
            let other: DictionaryArray<Int32Type> = std::iter::repeat_n("other", n).collect();
            let rows = with_column(
                &with_column(rows, "body", std::sync::Arc::new(upper)),
                "tenant",
                std::sync::Arc::new(other),
            );
            Ok(Processed { rows, keep: (0..n).map(|i| i != 1).collect() })
        });
        let (batch, mut done) = logs(&["a", "b", "c"]);
        let out = p.process(batch).expect("goes on");
        assert_eq!(bodies(&out), ["A", "C"], "the payload is rebuilt from the plugin's rows");
        let rows = out.columnar().unwrap();
        assert_eq!(rows.num_rows(), 2);
        let tenant = rows.column_by_name("tenant").unwrap().as_dictionary::<Int32Type>();
        let values = tenant.values().as_string::<i32>();
        assert!(
            tenant.keys().iter().all(|k| values.value(k.unwrap() as usize) == "acme"),
            "the tenant is the daemon's"
        );
        assert!(done.try_recv().is_err(), "the kept items are still held");
        out.settle(&Verdict::Stored);
        assert_eq!(done.try_recv().unwrap().outcome, Outcome::Stored, "the dropped item was settled as dropped");
    }

    #[test]
    fn rows_that_do_not_fit_fail_the_batch_and_a_panic_gives_it_up_to_be_delivered_again() {
        let mut p = stage(|rows| {
            let n = rows.num_rows();
            Ok(Processed { rows: rows.slice(0, n - 1), keep: vec![true; n] })
        });
        let (batch, mut done) = logs(&["a", "b"]);
        assert!(p.process(batch).is_none());
        assert!(matches!(done.try_recv().unwrap().outcome, Outcome::Permanent(e) if e.contains("rows")));

        let mut p = stage(|_| Err(CallError::Panicked("panicked: on purpose".into())));
        let (batch, mut done) = logs(&["a"]);
        assert!(p.process(batch).is_none());
        assert!(matches!(done.try_recv().unwrap().outcome, Outcome::Lost(e) if e.contains("panicked: on purpose")));
    }
}
