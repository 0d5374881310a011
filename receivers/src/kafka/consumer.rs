//! The consumer: a thread polling librdkafka, handing each message to the durable ingest, and
//! committing offsets only once everything below them is in the WAL.
//!
//! Polling runs on its own thread because librdkafka calls the rebalance callback from inside
//! `poll`, and on revocation that callback must wait for the partition's messages still on their
//! way to the WAL and commit what is durable before the partition goes to another consumer. Each
//! message's trip to the WAL runs as a task on the daemon's runtime, so waiting there never blocks
//! the tasks it waits for.

use super::dead_letter::{DeadLetter, Poison};
use super::message::{MessageError, TenantResolver, TopicRoutes, decode, extract_headers};
use super::metrics::KafkaMetrics;
use super::offsets::PartitionTrack;
use openwit_core::{
    BatchingConfig, ConsumeError, DurableOffsets, Ingest, IngestRequest, Payload, Receipt, Signal, SourceOffsets,
    TenantId,
};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

type PartKey = (Arc<str>, i32);

/// What the consumer needs besides the client.
pub struct Settings {
    pub receiver: Arc<str>,
    pub routes: TopicRoutes,
    pub tenant: TenantResolver,
    pub headers: Vec<String>,
    pub batching: BatchingConfig,
    pub backpressure_wait: Duration,
    pub max_in_flight_messages: usize,
    pub max_in_flight_bytes: usize,
    pub commit_interval: Duration,
    /// How long a revocation or a shutdown waits for messages on their way to the WAL.
    pub settle_wait: Duration,
}

/// State shared by the polling thread, the rebalance callback and the delivery tasks.
pub struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    parts: HashMap<PartKey, Part>,
    /// Offsets this receiver has in the WAL and not yet seen committed: the WAL's at start, then
    /// every message made durable since. A message found here is not stored again, whether Kafka
    /// redelivers it after a crash or after a rebalance whose commit failed.
    durable: DurableOffsets,
    generation: u64,
    /// Bumped on every assignment, so that a paused consumer pauses new partitions too.
    assignments: u64,
    in_flight: usize,
    in_flight_bytes: usize,
    /// Messages refused by a full pipeline or WAL and waiting to be tried again.
    stalled: usize,
}

struct Part {
    track: PartitionTrack,
    generation: u64,
    /// Delivery tasks still running for this partition.
    active: usize,
    revoked: bool,
}

impl Shared {
    pub fn new(durable: DurableOffsets) -> Arc<Shared> {
        Arc::new(Shared { state: Mutex::new(State { durable, ..Default::default() }), changed: Condvar::new() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// librdkafka's callbacks: logs, errors, rebalances and commit results.
pub struct Context {
    receiver: Arc<str>,
    shared: Arc<Shared>,
    settle_wait: Duration,
    metrics: Arc<KafkaMetrics>,
}

impl Context {
    pub fn new(receiver: Arc<str>, shared: Arc<Shared>, settle_wait: Duration, metrics: Arc<KafkaMetrics>) -> Context {
        Context { receiver, shared, settle_wait, metrics }
    }

    /// Before partitions go: waits for their messages on the way to the WAL, commits what is durable,
    /// and forgets them. Messages that did not make it are left uncommitted for the next owner.
    fn release(&self, consumer: &BaseConsumer<Context>, tpl: &TopicPartitionList) {
        let keys: Vec<PartKey> = tpl.elements().iter().map(|e| (Arc::from(e.topic()), e.partition())).collect();
        let deadline = Instant::now() + self.settle_wait;
        let mut st = self.shared.lock();
        for k in &keys {
            if let Some(p) = st.parts.get_mut(k) {
                p.revoked = true;
            }
        }
        loop {
            let busy: usize = keys.iter().filter_map(|k| st.parts.get(k)).map(|p| p.active).sum();
            let now = Instant::now();
            if busy == 0 || now >= deadline {
                if busy > 0 {
                    tracing::warn!(receiver = %self.receiver, messages = busy, "partitions revoked while messages were still on their way to the WAL; they are left uncommitted, and the next owner reads them again");
                }
                break;
            }
            st = self.shared.changed.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        let commit = commit_list(keys.iter().filter_map(|k| st.parts.get(k).map(|p| (k, p))));
        drop(st);
        if commit.count() > 0 && !self.commit_and_confirm(consumer, &commit, self.settle_wait) {
            tracing::warn!(receiver = %self.receiver, "could not confirm a commit before partitions were revoked; the next owner may store some messages again");
        }
        let mut st = self.shared.lock();
        for k in &keys {
            st.parts.remove(k);
        }
        tracing::info!(receiver = %self.receiver, partitions = keys.len(), "partitions released");
    }

    /// Commits `tpl` and waits up to `timeout` to see it confirmed; true once it is. Never blocks
    /// longer: librdkafka's synchronous commit waits without a limit while the coordinator is away.
    fn commit_and_confirm(
        &self,
        consumer: &BaseConsumer<Context>,
        tpl: &TopicPartitionList,
        timeout: Duration,
    ) -> bool {
        if let Err(e) = consumer.commit(tpl, CommitMode::Async) {
            self.metrics.commit("failed");
            tracing::warn!(receiver = %self.receiver, "offset commit failed: {e}");
            return false;
        }
        let confirmed = self.confirm(consumer, tpl, timeout);
        let outcome = if confirmed { "ok" } else { "unconfirmed" };
        self.metrics.commit(outcome);
        confirmed
    }

    /// Asks the coordinator (waiting up to `timeout`) which of `tpl`'s offsets are committed, and
    /// releases what lies below them. True when all of `tpl` is committed.
    fn confirm(&self, consumer: &BaseConsumer<Context>, tpl: &TopicPartitionList, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let got = match consumer.committed_offsets(tpl.clone(), deadline.saturating_duration_since(Instant::now()))
            {
                Ok(got) => got,
                Err(e) => {
                    tracing::debug!(receiver = %self.receiver, "cannot read committed offsets: {e}");
                    return false;
                }
            };
            self.committed(&got);
            let done = tpl.elements().iter().all(|want| {
                matches!(
                    (want.offset(), got.find_partition(want.topic(), want.partition()).map(|e| e.offset())),
                    (Offset::Offset(w), Some(Offset::Offset(g))) if g >= w
                )
            });
            if done || Instant::now() >= deadline {
                return done;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kafka holds these committed offsets: what lies below them needs no receipt and no
    /// duplicate check any more.
    fn committed(&self, tpl: &TopicPartitionList) {
        let mut st = self.shared.lock();
        for e in tpl.elements() {
            let Offset::Offset(o) = e.offset() else { continue };
            st.durable.forget_below(e.topic(), e.partition(), o);
            if let Some(p) = st.parts.get_mut(&(Arc::from(e.topic()), e.partition())) {
                p.track.committed(o);
            }
        }
    }
}

/// The offsets to commit for these partitions: each one's commit point, where it moved.
fn commit_list<'a>(parts: impl Iterator<Item = (&'a PartKey, &'a Part)>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), p) in parts {
        if let Some(o) = p.track.to_commit() {
            // Adding a partition with an offset to a fresh list cannot fail.
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(o));
        }
    }
    tpl
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let r = &*self.receiver;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(receiver = r, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(receiver = r, facility = fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(receiver = r, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(receiver = r, facility = fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(receiver = %self.receiver, "kafka client error: {error}: {reason}");
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.release(consumer, tpl);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut st = self.shared.lock();
            st.generation += 1;
            st.assignments += 1;
            let generation = st.generation;
            for e in tpl.elements() {
                st.parts.entry((Arc::from(e.topic()), e.partition())).or_insert_with(|| Part {
                    track: PartitionTrack::default(),
                    generation,
                    active: 0,
                    revoked: false,
                });
            }
            tracing::info!(receiver = %self.receiver, partitions = tpl.count(), "partitions assigned");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        // Commits are confirmed by reading the committed offsets back (`confirm`); this only reports.
        if let Err(e) = result {
            tracing::debug!(receiver = %self.receiver, partitions = offsets.count(), "offset commit failed: {e}");
        }
    }
}

/// What happened to one message.
#[derive(Clone, Copy)]
enum Outcome {
    Stored,
    Duplicate,
    Empty,
    DeadLettered,
    Abandoned,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Duplicate => "duplicate",
            Outcome::Empty => "empty",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// A decoded message on its way to the WAL.
struct Prepared {
    signal: Signal,
    tenant: TenantId,
    payload: Payload,
    /// The message's payload, to decode again if the WAL refuses it once.
    bytes: bytes::Bytes,
    /// The same bytes when the payload is exactly them as protobuf (saves re-encoding).
    raw: Option<bytes::Bytes>,
    items: usize,
}

pub struct Poller {
    pub settings: Arc<Settings>,
    pub shared: Arc<Shared>,
    pub ingest: Arc<dyn Ingest>,
    pub metrics: Arc<KafkaMetrics>,
    pub runtime: tokio::runtime::Handle,
    pub shutdown: CancellationToken,
    pub dead_letter: DeadLetter,
    pub paused: Option<u64>,
    pub topics: HashMap<String, Arc<str>>,
    pub last_error: HashMap<String, Instant>,
}

impl Poller {
    /// Polls until shutdown, then lets in-flight messages settle, commits, and leaves the group.
    pub fn run(mut self, consumer: BaseConsumer<Context>) {
        let mut last_commit = Instant::now();
        while !self.shutdown.is_cancelled() {
            self.backpressure(&consumer);
            if last_commit.elapsed() >= self.settings.commit_interval {
                self.commit(&consumer);
                last_commit = Instant::now();
            }
            match consumer.poll(Duration::from_millis(50)) {
                None => {}
                Some(Ok(m)) => self.handle(&m),
                Some(Err(e)) => self.poll_error(e),
            }
        }
        self.stop(consumer);
    }

    fn stop(self, consumer: BaseConsumer<Context>) {
        if let Ok(a) = consumer.assignment() {
            let _ = consumer.pause(&a);
        }
        let deadline = Instant::now() + self.settings.settle_wait;
        let mut st = self.shared.lock();
        while st.in_flight > 0 && Instant::now() < deadline {
            st = self.shared.changed.wait_timeout(st, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
        }
        let left = st.in_flight;
        drop(st);
        if left > 0 {
            tracing::warn!(receiver = %self.settings.receiver, messages = left, "stopping with messages not yet in the WAL; they are not committed and are read again at the next start");
        }
        let tpl = commit_list(self.shared.lock().parts.iter());
        if tpl.count() > 0 && !consumer.context().commit_and_confirm(&consumer, &tpl, self.settings.settle_wait) {
            tracing::warn!(receiver = %self.settings.receiver, "could not confirm the last commit; what was not committed is read again (and skipped) at the next start");
        }
        // Closing leaves the group (the revocation it triggers commits once more); librdkafka may wait
        // for unreachable brokers, so the close gets a bounded time on a thread of its own.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(consumer);
            let _ = done_tx.send(());
        });
        if done_rx.recv_timeout(self.settings.settle_wait).is_err() {
            tracing::warn!(receiver = %self.settings.receiver, "the Kafka consumer did not close in time (brokers unreachable?); stopping without leaving the group cleanly");
        }
        tracing::info!(receiver = %self.settings.receiver, "kafka consumer stopped");
    }

    /// Commits every partition's commit point that moved, then confirms it (waiting a short while,
    /// so that an unreachable coordinator slows this loop down without stopping it); confirmed
    /// commits release the receipts below them. An unconfirmed commit is simply made again.
    fn commit(&mut self, consumer: &BaseConsumer<Context>) {
        let tpl = commit_list(self.shared.lock().parts.iter());
        if tpl.count() > 0 && !consumer.context().commit_and_confirm(consumer, &tpl, Duration::from_millis(500)) {
            self.rate_limited_warn("commit", "an offset commit was not confirmed within 500 ms; it is made again");
        }
    }

    /// Pauses every assigned partition while too much waits for the WAL or a message was refused,
    /// and resumes once half the room is free again.
    fn backpressure(&mut self, consumer: &BaseConsumer<Context>) {
        let (over, under, assignments) = {
            let st = self.shared.lock();
            let (m, b) = (self.settings.max_in_flight_messages, self.settings.max_in_flight_bytes);
            (
                st.stalled > 0 || st.in_flight >= m || st.in_flight_bytes >= b,
                st.stalled == 0 && st.in_flight <= m / 2 && st.in_flight_bytes <= b / 2,
                st.assignments,
            )
        };
        // Decided from counters first: the assignment is read (and the gauge set) only on a change,
        // since this runs after every message.
        enum Act {
            Pause,
            Resume,
        }
        let act = match self.paused {
            Some(_) if under => Act::Resume,
            // New partitions arrived while paused: they start fetching unless paused too.
            Some(seen) if seen != assignments => Act::Pause,
            None if over => Act::Pause,
            _ => return,
        };
        let Ok(assigned) = consumer.assignment() else { return };
        let paused = match act {
            Act::Resume => {
                let _ = consumer.resume(&assigned);
                self.paused = None;
                tracing::debug!(receiver = %self.settings.receiver, "partitions resumed");
                0
            }
            Act::Pause => {
                let _ = consumer.pause(&assigned);
                if self.paused.is_none() {
                    tracing::debug!(receiver = %self.settings.receiver, partitions = assigned.count(), "partitions paused: the pipeline or the WAL is full");
                }
                self.paused = Some(assignments);
                assigned.count() as i64
            }
        };
        self.metrics.paused_partitions.set(paused);
    }

    fn topic(&mut self, name: &str) -> Arc<str> {
        if let Some(t) = self.topics.get(name) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(name);
        self.topics.insert(name.to_string(), t.clone());
        t
    }

    fn outcome(&self, outcome: Outcome) {
        self.metrics.message(outcome.label());
    }

    fn handle(&mut self, m: &BorrowedMessage<'_>) {
        let key: PartKey = (self.topic(m.topic()), m.partition());
        let offset = m.offset();
        let (generation, duplicate) = {
            let mut st = self.shared.lock();
            let generation = st.generation;
            let duplicate = st.durable.contains(&key.0, key.1, offset);
            let part = st.parts.entry(key.clone()).or_insert_with(|| Part {
                track: PartitionTrack::default(),
                generation,
                active: 0,
                revoked: false,
            });
            (part.generation, duplicate)
        };
        let settle = |shared: &Shared, outcome: Outcome| {
            if let Some(p) = shared.lock().parts.get_mut(&key) {
                p.track.settled(offset);
            }
            outcome
        };
        if duplicate {
            self.outcome(settle(&self.shared, Outcome::Duplicate));
            return;
        }
        let headers: Vec<(&str, Option<&[u8]>)> = match m.headers() {
            Some(h) => h.iter().map(|h| (h.key, h.value)).collect(),
            None => Vec::new(),
        };
        let bytes = m.payload().unwrap_or_default();
        let prepared = self.settings.tenant.resolve(&key.0, &headers).and_then(|tenant| {
            // One copy of the payload serves the WAL (as the batch's protobuf bytes) and a retry.
            let copy = bytes::Bytes::copy_from_slice(bytes);
            prepare(&self.settings, &key.0, tenant, copy, &headers)
        });
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                let reason = e.to_string();
                let poison = Poison {
                    topic: &key.0,
                    partition: key.1,
                    offset,
                    key: m.key(),
                    payload: bytes,
                    headers: &headers,
                    reason: &reason,
                };
                self.dead_letter(&poison);
                self.outcome(settle(&self.shared, Outcome::DeadLettered));
                return;
            }
        };
        if prepared.items == 0 {
            self.outcome(settle(&self.shared, Outcome::Empty));
            return;
        }
        {
            let mut st = self.shared.lock();
            st.in_flight += 1;
            st.in_flight_bytes += bytes.len();
            if let Some(p) = st.parts.get_mut(&key) {
                p.track.consumed(offset);
                p.active += 1;
            }
        }
        // Headers are needed again only to copy them into the payload.
        let retry_headers = if self.settings.headers.is_empty() { Vec::new() } else { owned(&headers) };
        let task = Delivery {
            settings: self.settings.clone(),
            shared: self.shared.clone(),
            ingest: self.ingest.clone(),
            metrics: self.metrics.clone(),
            shutdown: self.shutdown.clone(),
            key,
            offset,
            generation,
            size: bytes.len(),
        };
        self.runtime.spawn(task.run(prepared, retry_headers));
    }

    fn dead_letter(&mut self, p: &Poison<'_>) {
        match self.dead_letter.store(p) {
            Ok(at) => tracing::warn!(
                receiver = %self.settings.receiver, topic = p.topic, partition = p.partition, offset = p.offset,
                "message skipped: {}; written to {at}", p.reason
            ),
            Err(e) => {
                self.metrics.message("dead_letter_failed");
                tracing::error!(
                    receiver = %self.settings.receiver, topic = p.topic, partition = p.partition, offset = p.offset,
                    "message skipped: {}; it could NOT be dead-lettered ({e}); it stays readable in Kafka until retention removes it", p.reason
                )
            }
        }
    }

    fn poll_error(&mut self, e: KafkaError) {
        let text = e.to_string();
        self.rate_limited_warn(&text, &format!("kafka consumer: {text}"));
    }

    /// Logs a recurring problem at most every 10 seconds.
    fn rate_limited_warn(&mut self, key: &str, message: &str) {
        let now = Instant::now();
        let due = self.last_error.get(key).is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(10));
        if due {
            self.last_error.insert(key.to_string(), now);
            tracing::warn!(receiver = %self.settings.receiver, "{message}");
        }
    }
}

/// Decodes a message of `topic` and copies the wanted headers into it.
fn prepare(
    settings: &Settings,
    topic: &str,
    tenant: TenantId,
    bytes: bytes::Bytes,
    headers: &[(&str, Option<&[u8]>)],
) -> Result<Prepared, MessageError> {
    let (signal, encoding) =
        settings.routes.route(topic).ok_or_else(|| MessageError::UnknownTopic(topic.to_string()))?;
    let mut payload = decode(signal, encoding, &bytes)?;
    let changed = !settings.headers.is_empty() && extract_headers(&mut payload, &settings.headers, headers);
    let raw = (encoding == super::config::Encoding::OtlpProto && !changed).then(|| bytes.clone());
    let items = payload.item_count();
    Ok(Prepared { signal, tenant, payload, bytes, raw, items })
}

fn owned(headers: &[(&str, Option<&[u8]>)]) -> Vec<(String, Option<Vec<u8>>)> {
    headers.iter().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect()
}

/// One message's trip to the WAL, retried while the pipeline or the WAL refuses it.
struct Delivery {
    settings: Arc<Settings>,
    shared: Arc<Shared>,
    ingest: Arc<dyn Ingest>,
    metrics: Arc<KafkaMetrics>,
    shutdown: CancellationToken,
    key: PartKey,
    offset: i64,
    generation: u64,
    size: usize,
}

impl Delivery {
    async fn run(self, first: Prepared, retry_headers: Vec<(String, Option<Vec<u8>>)>) {
        let (signal, items, tenant, bytes) = (first.signal, first.items, first.tenant.clone(), first.bytes.clone());
        let mut next = Some(first);
        let mut stalled = false;
        let mut backoff = Duration::from_millis(20);
        let result = loop {
            let attempt = match next.take() {
                Some(p) => p,
                None => {
                    let headers: Vec<(&str, Option<&[u8]>)> =
                        retry_headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                    match prepare(&self.settings, &self.key.0, tenant.clone(), bytes.clone(), &headers) {
                        Ok(p) => p,
                        // It decoded a moment ago; nothing to do but leave it uncommitted.
                        Err(_) => break None,
                    }
                }
            };
            let req = IngestRequest {
                receiver: self.settings.receiver.clone(),
                tenant: tenant.clone(),
                payload: attempt.payload.into(),
                raw: attempt.raw,
                metadata: Default::default(),
                batching: self.settings.batching,
                wait: self.settings.backpressure_wait,
                sources: vec![SourceOffsets::one(self.key.0.clone(), self.key.1, self.offset)],
            };
            match self.ingest.ingest(req).await {
                Ok(receipt) => break Some(receipt),
                Err(ConsumeError::Closed) => break None,
                Err(e) => {
                    if !stalled {
                        stalled = true;
                        self.shared.lock().stalled += 1;
                        tracing::debug!(receiver = %self.settings.receiver, topic = %self.key.0, partition = self.key.1, offset = self.offset, "message refused ({e}); partitions pause and it is tried again");
                    }
                    if self.shutdown.is_cancelled() || self.revoked() {
                        break None;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        };
        let outcome = if result.is_some() { Outcome::Stored } else { Outcome::Abandoned };
        match outcome {
            Outcome::Stored => self.metrics.items.accepted.add(signal, items),
            _ => self.metrics.items.refused.add(signal, items),
        }
        self.metrics.message(outcome.label());
        self.finish(stalled, result);
    }

    fn revoked(&self) -> bool {
        self.shared.lock().parts.get(&self.key).is_none_or(|p| p.revoked || p.generation != self.generation)
    }

    fn finish(&self, stalled: bool, receipt: Option<Receipt>) {
        let mut st = self.shared.lock();
        st.in_flight -= 1;
        st.in_flight_bytes -= self.size;
        if stalled {
            st.stalled -= 1;
        }
        match st.parts.get_mut(&self.key) {
            Some(p) if p.generation == self.generation => {
                p.active -= 1;
                // An abandoned message stays pending: no commit may pass it.
                if let Some(r) = receipt {
                    p.track.durable(self.offset, r);
                    st.durable.add(&SourceOffsets::one(self.key.0.clone(), self.key.1, self.offset));
                }
            }
            _ if receipt.is_some() => tracing::warn!(
                receiver = %self.settings.receiver, topic = %self.key.0, partition = self.key.1, offset = self.offset,
                "message reached the WAL after its partition was revoked; the partition's next owner may store it again"
            ),
            _ => {}
        }
        drop(st);
        self.shared.changed.notify_all();
    }
}
