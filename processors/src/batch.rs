//! The `batch` processor, with the Collector's semantics.
//!
//! Items are gathered per tenant (and per value of the configured `metadata_keys`). A batch is sent
//! as soon as it holds `send_batch_size` items, or `timeout` after its first item arrived, whichever
//! comes first; no batch sent is larger than `send_batch_max_size` (0: no limit). With `timeout: 0`
//! data is sent as it comes, only split to the maximum size. On shutdown everything held is sent.

use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::telemetry::{Histogram, Telemetry, labels};
use openwit_core::{
    Batch, BuildEnv, ComponentId, ConfigIssue, Factory, Fanout, LazyPayload, Metadata, Processor, Signal, TenantId,
};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The `batch` processor's config (the Collector's keys and defaults).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub send_batch_size: usize,
    pub send_batch_max_size: usize,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Client metadata keys whose values separate batches.
    pub metadata_keys: Vec<String>,
    /// How many distinct metadata combinations may be batched at once.
    pub metadata_cardinality_limit: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(200),
            metadata_keys: Vec::new(),
            metadata_cardinality_limit: 1000,
        }
    }
}

impl ComponentConfig for BatchConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.send_batch_max_size > 0 && self.send_batch_max_size < self.send_batch_size {
            return Err(ConfigIssue::new(
                "send_batch_max_size",
                format!(
                    "must be 0 (no limit) or at least send_batch_size ({}), got {}",
                    self.send_batch_size, self.send_batch_max_size
                ),
            ));
        }
        Ok(())
    }
}

/// The `batch` processor factory.
pub fn factory() -> Arc<dyn Factory<dyn Processor>> {
    typed::<BatchConfig, dyn Processor>(
        "batch",
        &[],
        &Signal::ALL,
        "groups items into batches by size and time, per tenant",
        |id: &ComponentId, cfg: &BatchConfig, env: &BuildEnv| {
            Ok(Box::new(BatchProcessor {
                id: id.to_string(),
                cfg: cfg.clone(),
                send_size: send_size(&env.telemetry, &id.to_string()),
                columnar: env.columnar_downstream,
            }))
        },
    )
}

/// The Collector's buckets for batch sizes, so that the same dashboards read the same shape.
fn batch_size_buckets() -> Histogram {
    Histogram::new([
        10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0,
        8000.0, 9000.0, 10000.0, 20000.0, 30000.0, 50000.0, 100000.0,
    ])
}

/// `otelcol_processor_batch_batch_send_size{processor}`, as the Collector names it.
fn send_size(t: &Telemetry, processor: &str) -> Histogram {
    t.histograms(
        "otelcol_processor_batch_batch_send_size",
        "Number of items in each batch a batch processor sent",
        batch_size_buckets,
    )
    .get_or_create(&labels(&[("processor", processor)]))
    .clone()
}

struct BatchProcessor {
    id: String,
    cfg: BatchConfig,
    /// Items per batch sent.
    send_size: Histogram,
    /// Convert each batch to Arrow rows before handing it on (an exporter downstream reads them; the
    /// copies the fan-out makes share the one conversion).
    columnar: bool,
}

/// What separates batches: the tenant and the values of `metadata_keys`.
type Key = (TenantId, Vec<Option<Vec<String>>>);

struct Pending {
    /// What is held: the payload with its lineage, and the metadata kept for the key.
    held: Batch,
    items: usize,
    deadline: Instant,
}

#[async_trait]
impl Processor for BatchProcessor {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, output: &Fanout) {
        let mut pending: HashMap<Key, Pending> = HashMap::new();
        loop {
            let next_deadline = pending.values().map(|p| p.deadline).min();
            tokio::select! {
                msg = input.recv() => match msg {
                    Some(batch) => {
                        if self.add(&mut pending, batch, output).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        for (_, p) in pending.drain() {
                            if self.send_all(p, output).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                },
                _ = sleep_until(next_deadline), if next_deadline.is_some() => {
                    let now = Instant::now();
                    let due: Vec<Key> = pending.iter().filter(|(_, p)| p.deadline <= now).map(|(k, _)| k.clone()).collect();
                    for key in due {
                        if let Some(p) = pending.remove(&key)
                            && self.send_all(p, output).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl BatchProcessor {
    fn key(&self, batch: &Batch) -> Key {
        let values =
            self.cfg.metadata_keys.iter().map(|k| batch.metadata.get(&k.to_ascii_lowercase()).cloned()).collect();
        (batch.tenant.clone(), values)
    }

    /// The metadata a combined batch carries: only the keys it was grouped by.
    fn kept_metadata(&self, key: &Key) -> Arc<Metadata> {
        let mut md = Metadata::new();
        for (k, v) in self.cfg.metadata_keys.iter().zip(&key.1) {
            if let Some(v) = v {
                md.insert(k.to_ascii_lowercase(), v.clone());
            }
        }
        Arc::new(md)
    }

    async fn add(&self, pending: &mut HashMap<Key, Pending>, batch: Batch, out: &Fanout) -> Result<(), ()> {
        let key = self.key(&batch);
        if !pending.contains_key(&key) && pending.len() >= self.cfg.metadata_cardinality_limit {
            // Over the limit: pass the data on unbatched rather than refuse what was already accepted.
            tracing::warn!(processor = %self.id, "metadata_cardinality_limit reached; sending a batch unbatched");
            return self.emit(batch, out).await;
        }
        let items = batch.item_count();
        let p = pending.entry(key.clone()).or_insert_with(|| Pending {
            held: Batch {
                tenant: key.0.clone(),
                payload: LazyPayload::nothing(batch.signal()),
                metadata: self.kept_metadata(&key),
                lineage: Default::default(),
                columnar: Default::default(),
                memory: Default::default(),
            },
            items: 0,
            deadline: Instant::now() + self.cfg.timeout,
        });
        p.held.append(batch);
        p.items += items;
        let threshold = if self.cfg.timeout.is_zero() { 1 } else { self.cfg.send_batch_size.max(1) };
        self.drain(p, threshold, out).await?;
        if p.items == 0 {
            pending.remove(&key);
        }
        Ok(())
    }

    /// Sends everything pending for one key, in chunks of at most `send_batch_max_size`.
    async fn send_all(&self, mut p: Pending, out: &Fanout) -> Result<(), ()> {
        self.drain(&mut p, 1, out).await
    }

    /// Sends chunks of at most `send_batch_max_size` items while at least `threshold` are held.
    async fn drain(&self, p: &mut Pending, threshold: usize, out: &Fanout) -> Result<(), ()> {
        while p.items >= threshold && p.items > 0 {
            let max = self.cfg.send_batch_max_size;
            let n = if max > 0 { p.items.min(max) } else { p.items };
            let chunk = p.held.split_front(n);
            p.items -= n;
            self.emit(chunk, out).await?;
        }
        Ok(())
    }

    async fn emit(&self, batch: Batch, out: &Fanout) -> Result<(), ()> {
        let n = batch.item_count() as f64;
        if self.columnar
            && let Err(e) = batch.columnar_grouped()
        {
            // The batch goes on: the exporter that needs the rows reports the error for it.
            tracing::warn!(processor = %self.id, "{e}");
        }
        if out.send(batch).await.is_err() {
            tracing::error!(processor = %self.id, "downstream closed while batches were still pending");
            return Err(());
        }
        self.send_size.observe(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use openwit_core::Payload;

    fn logs(tenant: &str, n: usize) -> Batch {
        Batch::new(
            TenantId::new(tenant).unwrap(),
            Payload::Logs(ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default(); n], ..Default::default() }],
                    ..Default::default()
                }],
            }),
        )
    }

    fn start(cfg: BatchConfig) -> (mpsc::Sender<Batch>, mpsc::Receiver<Batch>, tokio::task::JoinHandle<()>) {
        let (in_tx, in_rx) = mpsc::channel(100);
        let (out_tx, out_rx) = mpsc::channel(100);
        let mut p = BatchProcessor { id: "batch".into(), cfg, send_size: batch_size_buckets(), columnar: true };
        let h = tokio::spawn(async move {
            let mut in_rx = in_rx;
            p.run(&mut in_rx, &Fanout::new(vec![out_tx])).await
        });
        (in_tx, out_rx, h)
    }

    #[tokio::test]
    async fn sends_when_size_reached_and_splits_to_max() {
        let cfg = BatchConfig {
            send_batch_size: 10,
            send_batch_max_size: 10,
            timeout: Duration::from_secs(3600),
            ..Default::default()
        };
        let (tx, mut rx, h) = start(cfg);
        tx.send(logs("a", 7)).await.unwrap();
        tx.send(logs("a", 18)).await.unwrap(); // 25 pending: two batches of 10, 5 left
        assert_eq!(rx.recv().await.unwrap().item_count(), 10);
        assert_eq!(rx.recv().await.unwrap().item_count(), 10);
        assert!(rx.try_recv().is_err());
        drop(tx); // shutdown flushes the rest
        assert_eq!(rx.recv().await.unwrap().item_count(), 5);
        h.await.unwrap();
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn converts_to_arrow_once_before_the_fan_out_when_asked() {
        let cfg = BatchConfig { send_batch_size: 4, send_batch_max_size: 4, ..Default::default() };
        let (tx, mut rx, _h) = start(cfg.clone());
        tx.send(logs("a", 6)).await.unwrap();
        let b = rx.recv().await.unwrap();
        assert!(b.is_converted());
        let copy = b.clone();
        assert_eq!(copy.columnar().unwrap().num_rows(), 4);
        // The copy shares the rows made before the fan-out: the same Arrow buffers.
        assert!(std::ptr::eq(copy.columnar().unwrap(), b.columnar().unwrap()));

        // Without a columnar exporter downstream, no conversion is paid for.
        let (in_tx, in_rx) = mpsc::channel(10);
        let (out_tx, mut out_rx) = mpsc::channel(10);
        let mut p = BatchProcessor { id: "batch".into(), cfg, send_size: batch_size_buckets(), columnar: false };
        tokio::spawn(async move {
            let mut in_rx = in_rx;
            p.run(&mut in_rx, &Fanout::new(vec![out_tx])).await
        });
        in_tx.send(logs("a", 4)).await.unwrap();
        assert!(!out_rx.recv().await.unwrap().is_converted());
    }

    #[tokio::test(start_paused = true)]
    async fn sends_after_timeout_and_keeps_tenants_apart() {
        let cfg = BatchConfig { send_batch_size: 100, timeout: Duration::from_millis(200), ..Default::default() };
        let (tx, mut rx, _h) = start(cfg);
        tx.send(logs("a", 3)).await.unwrap();
        tx.send(logs("b", 4)).await.unwrap();
        tx.send(logs("a", 2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err(), "nothing may be sent before the timeout");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut got: Vec<(String, usize)> = Vec::new();
        while let Ok(b) = rx.try_recv() {
            got.push((b.tenant.to_string(), b.item_count()));
        }
        got.sort();
        assert_eq!(got, vec![("a".to_string(), 5), ("b".to_string(), 4)]);
    }

    #[tokio::test]
    async fn zero_timeout_sends_immediately() {
        let cfg = BatchConfig { timeout: Duration::ZERO, send_batch_max_size: 8192, ..Default::default() };
        let (tx, mut rx, _h) = start(cfg);
        tx.send(logs("a", 3)).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().item_count(), 3);
    }

    #[test]
    fn max_below_size_is_rejected() {
        let cfg = BatchConfig { send_batch_size: 100, send_batch_max_size: 50, ..Default::default() };
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.path, "send_batch_max_size");
        assert!(e.message.contains("at least send_batch_size (100)"), "{}", e.message);
    }
}
