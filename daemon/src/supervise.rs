//! Supervised pipeline tasks. Each processor and exporter runs under a supervisor that owns its input
//! queue (and a processor's output): a component that panics is logged with its id, counted
//! (`openwit_component_panics_total{component}`), dropped — everything it held is then lost without a
//! verdict, so the WAL delivers it again — and rebuilt from the same config after a backoff, carrying on
//! with the same queue. Other pipelines never notice.

use backon::BackoffBuilder;
use futures::FutureExt;
use openwit_core::telemetry::{Counter, SignalCounters, Telemetry, labels};
use openwit_core::{Batch, ComponentId, ExportError, Exporter, Fanout, HOLDER, Processor, Verdict};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Builds a fresh instance of one component (from its parsed config).
pub type Build<C> = Box<dyn Fn() -> anyhow::Result<Box<C>> + Send + Sync>;

/// Restarts after a panic wait this long, doubling per consecutive panic up to `MAX_RESTART_DELAY`.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(5);
/// A component that ran this long without panicking starts its backoff afresh.
const CALM_AFTER: Duration = Duration::from_secs(30);

/// What a supervisor knows of its component.
struct Supervised<C: ?Sized> {
    /// `processor batch in pipeline traces`, `exporter parquet`: for logs and lost items.
    name: Arc<str>,
    build: Build<C>,
    /// The instance built at start (where a build error stops the daemon); later ones come from `build`.
    first: Option<Box<C>>,
    /// `openwit_component_panics_total{component}`.
    panic_count: Counter,
    panics: u32,
    last_panic: Option<Instant>,
}

impl<C: ?Sized> Supervised<C> {
    fn new(name: String, id: &ComponentId, first: Box<C>, build: Build<C>, telemetry: &Telemetry) -> Supervised<C> {
        let panic_count = telemetry
            .counters(
                "openwit_component_panics",
                "Panics of a pipeline component (each one restarts it; what it held is delivered again)",
            )
            .get_or_create(&labels(&[("component", &id.to_string())]))
            .clone();
        Supervised { name: Arc::from(name), build, first: Some(first), panic_count, panics: 0, last_panic: None }
    }

    /// Builds an instance, retrying with the restart backoff while the build fails.
    async fn instance(&mut self) -> Box<C> {
        if let Some(c) = self.first.take() {
            return c;
        }
        loop {
            match (self.build)() {
                Ok(c) => return c,
                Err(e) => {
                    tracing::error!(component = %self.name, "cannot rebuild after a panic: {e:#}");
                    self.back_off().await;
                }
            }
        }
    }

    /// Records a panic: logged, counted; then waits before the restart.
    async fn panicked(&mut self, payload: Box<dyn std::any::Any + Send>, remains: impl FnOnce()) {
        let msg = panic_message(&payload);
        self.panic_count.inc();
        tracing::error!(component = %self.name, "panicked: {msg}; what it held is delivered again from the WAL, restarting it");
        // Whatever the dead instance still holds is lost; the outcome names who lost it.
        let who: Arc<str> = Arc::from(format!("{}, which panicked,", self.name));
        HOLDER.sync_scope(who, remains);
        if self.last_panic.is_some_and(|t| t.elapsed() > CALM_AFTER) {
            self.panics = 0;
        }
        self.last_panic = Some(Instant::now());
        self.back_off().await;
    }

    async fn back_off(&mut self) {
        let delay = FIRST_RESTART_DELAY.saturating_mul(1 << self.panics.min(16)).min(MAX_RESTART_DELAY);
        self.panics += 1;
        tokio::time::sleep(delay).await;
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Runs a processor of one pipeline until its input closes, restarting it after panics.
pub async fn run_processor(
    name: String,
    id: ComponentId,
    first: Box<dyn Processor>,
    build: Build<dyn Processor>,
    mut input: mpsc::Receiver<Batch>,
    output: Fanout,
    telemetry: Arc<Telemetry>,
) {
    let mut s = Supervised::new(name, &id, first, build, &telemetry);
    loop {
        let mut p = s.instance().await;
        let run = HOLDER.scope(s.name.clone(), p.run(&mut input, &output));
        match AssertUnwindSafe(run).catch_unwind().await {
            // Its input closed: the pipeline is draining.
            Ok(()) if input.is_closed() => return,
            // Returned while batches may still come: a bug in the processor. What it dropped is lost
            // (delivered again); a fresh instance carries on, as after a panic.
            Ok(()) => {
                tracing::error!(component = %s.name, "returned while its input is still open; restarting it");
                let who: Arc<str> = Arc::from(format!("{}, which returned early,", s.name));
                HOLDER.sync_scope(who, move || drop(p));
                s.back_off().await;
            }
            Err(payload) => s.panicked(payload, move || drop(p)).await,
        }
    }
}

/// Runs an exporter until its input closes: each batch is exported (retryable failures retried with
/// backoff up to `retries` times) and settled by the answer; panics restart the exporter. With
/// `consumers` > 1 (`sending_queue.num_consumers`), that many instances take batches from the one queue
/// and export them at once, each supervised on its own; batches then complete in any order.
pub async fn run_exporter(
    id: ComponentId,
    first: Box<dyn Exporter>,
    build: Build<dyn Exporter>,
    rx: mpsc::Receiver<Batch>,
    telemetry: Arc<Telemetry>,
    retries: usize,
    consumers: usize,
) {
    let l = labels(&[("exporter", &id.to_string())]);
    let counters = ExportCounters {
        sent: SignalCounters::register(&telemetry, "otelcol_exporter_sent", "Items an exporter delivered", &l),
        failed: SignalCounters::register(
            &telemetry,
            "otelcol_exporter_send_failed",
            "Items an exporter failed to deliver",
            &l,
        ),
    };
    let build = Arc::new(build);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut first = Some(first);
    let mut workers = Vec::new();
    for _ in 0..consumers.max(1) {
        let instance = match first.take() {
            Some(e) => e,
            None => match build() {
                Ok(e) => e,
                Err(e) => {
                    // The first instance built; one more consumer fewer is not worth stopping for.
                    tracing::error!(exporter = %id, "cannot build another consumer: {e:#}");
                    continue;
                }
            },
        };
        let b = build.clone();
        let s = Supervised::new(format!("exporter {id}"), &id, instance, Box::new(move || b()), &telemetry);
        workers.push(consume(id.clone(), s, rx.clone(), counters.clone(), retries));
    }
    futures::future::join_all(workers).await;
}

#[derive(Clone)]
struct ExportCounters {
    sent: SignalCounters,
    failed: SignalCounters,
}

/// One consumer of an exporter's queue.
async fn consume(
    id: ComponentId,
    mut s: Supervised<dyn Exporter>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Batch>>>,
    counters: ExportCounters,
    retries: usize,
) {
    let backoff = backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(retries)
        .with_jitter();
    let mut exporter = s.instance().await;
    loop {
        // The lock is held only while waiting for the next batch, not while exporting it.
        let next = rx.lock().await.recv().await;
        let Some(batch) = next else { break };
        let (signal, n) = (batch.signal(), batch.item_count());
        let attempt = HOLDER.scope(s.name.clone(), export_with_retries(&mut exporter, &batch, &backoff, &s.name));
        match AssertUnwindSafe(attempt).catch_unwind().await {
            Ok(Ok(())) => {
                counters.sent.add(signal, n);
                batch.settle(&Verdict::Stored);
            }
            Ok(Err(e)) => {
                tracing::error!(exporter = %id, %signal, items = n, "export failed: {e}");
                counters.failed.add(signal, n);
                // The WAL keeps the batch, marked failed: replayed at the next start or by an operator.
                batch.settle(&match e {
                    ExportError::Retryable(e) => Verdict::Retryable(format!("exporter {id}: {e}")),
                    ExportError::Permanent(e) => Verdict::Permanent(format!("exporter {id}: {e}")),
                });
            }
            Err(payload) => {
                counters.failed.add(signal, n);
                let dead = std::mem::replace(&mut exporter, Box::new(Stopped));
                s.panicked(payload, move || {
                    drop(batch);
                    drop(dead);
                })
                .await;
                exporter = s.instance().await;
            }
        }
    }
    let shutdown = HOLDER.scope(s.name.clone(), exporter.shutdown());
    match AssertUnwindSafe(shutdown).catch_unwind().await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(exporter = %id, "shutdown failed: {e}"),
        Err(payload) => s.panicked(payload, || {}).await,
    }
}

async fn export_with_retries(
    exporter: &mut Box<dyn Exporter>,
    batch: &Batch,
    backoff: &backon::ExponentialBuilder,
    name: &str,
) -> Result<(), ExportError> {
    // The policy comes from backon; the loop is ours because each attempt borrows the exporter.
    let mut delays = backoff.build();
    loop {
        match exporter.export(batch).await {
            Ok(()) => return Ok(()),
            Err(e @ ExportError::Retryable(_)) => match delays.next() {
                Some(d) => {
                    tracing::warn!(exporter = %name, "export failed ({e}); retrying in {d:?}");
                    tokio::time::sleep(d).await;
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

/// Stands in for an exporter between its death and its rebuild.
struct Stopped;

#[async_trait::async_trait]
impl Exporter for Stopped {
    async fn export(&mut self, _batch: &Batch) -> Result<(), ExportError> {
        Err(ExportError::Retryable("the exporter is restarting".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openwit_core::{Payload, Signal, TenantId};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Takes 100 ms per batch and records how many exports run at once.
    struct Slow {
        running: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        done: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl Exporter for Slow {
        async fn export(&mut self, _: &Batch) -> Result<(), ExportError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.done.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// Exports 8 batches with `consumers`; returns (most at once, exported).
    async fn export_eight(consumers: usize) -> (usize, usize) {
        let (running, most, done) = (Arc::default(), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let make = {
            let (running, most, done) = (Arc::clone(&running), most.clone(), done.clone());
            move || -> Box<dyn Exporter> {
                Box::new(Slow { running: Arc::clone(&running), most: most.clone(), done: done.clone() })
            }
        };
        let first = make();
        let (tx, rx) = mpsc::channel(16);
        for _ in 0..8 {
            tx.send(Batch::new(TenantId::new("t").unwrap(), Payload::empty(Signal::Logs))).await.unwrap();
        }
        drop(tx);
        let id = ComponentId::parse("otlp").unwrap();
        run_exporter(id, first, Box::new(move || Ok(make())), rx, Arc::default(), 0, consumers).await;
        (most.load(Ordering::SeqCst), done.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn num_consumers_exports_that_many_batches_at_once() {
        assert_eq!(export_eight(4).await, (4, 8));
        assert_eq!(export_eight(1).await, (1, 8), "one consumer: one at a time");
    }
}
