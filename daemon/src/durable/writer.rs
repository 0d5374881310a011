//! The WAL writer: batching, group commit, hand-off.

use super::log::WalHandle;
use super::metrics::WalMetrics;
use super::signal_code;
use async_trait::async_trait;
use openwit_core::memory::{HELD_PER_PROTOBUF_BYTE, MemoryBudget};
use openwit_core::source::push_offsets;
use openwit_core::{
    AckToken, Admission, Batch, BatchId, BatchingConfig, Completion, ConsumeError, Fanout, Ingest, IngestRequest,
    LazyPayload, Lineage, Metadata, Receipt, Signal, SourceOffsets, TenantId,
};
use openwit_wal::{MetaEntry, OutgoingBatch, SourceRange, WalBatch, WalError};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Each receiver's pipelines, per signal.
pub type Routes = Arc<HashMap<(Arc<str>, Signal), Fanout>>;

/// Requests waiting for the writer; beyond this, receivers wait (bounded like every queue).
const INBOX: usize = 4096;
/// While a closed batch waits for room in its pipelines, look again this often.
const RETRY_EVERY: Duration = Duration::from_millis(2);

type Reply = oneshot::Sender<Result<Receipt, ConsumeError>>;

struct Request {
    key: Key,
    payload: LazyPayload,
    /// The request's protobuf bytes, as received (shared with the payload, not copied: the WAL writes
    /// the batch's requests end to end straight into its frame).
    raw: bytes::Bytes,
    items: usize,
    sources: Vec<SourceOffsets>,
    reply: Reply,
    batching: BatchingConfig,
    refuse_at: Instant,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    receiver: Arc<str>,
    signal: Signal,
    tenant: TenantId,
    metadata: Arc<Metadata>,
}

struct Open {
    /// The requests' bytes while every request is held so (see `LazyPayload`), else decoded.
    payload: LazyPayload,
    /// The requests' bytes, in order: the WAL batch's payload in parts.
    raw: Vec<bytes::Bytes>,
    raw_bytes: usize,
    items: usize,
    sources: Vec<SourceOffsets>,
    replies: Vec<Reply>,
    close_at: Instant,
    refuse_at: Instant,
}

/// Each receiver's admission checks (its pipelines' `memory_limiter`s).
pub type Gates = HashMap<Arc<str>, Vec<Arc<dyn Admission>>>;

/// The durable front door receivers call.
pub struct Durable {
    inbox: mpsc::Sender<Request>,
    gates: Gates,
}

#[async_trait]
impl Ingest for Durable {
    async fn ingest(&self, req: IngestRequest) -> Result<Receipt, ConsumeError> {
        let items = req.payload.item_count();
        if items == 0 {
            return Ok(Receipt::default());
        }
        // Refused before anything is written: the client retries, nothing is half-accepted.
        for gate in self.gates.get(&req.receiver).into_iter().flatten() {
            gate.admit()?;
        }
        // Concatenated protobuf messages of one type are the message with their repeated fields
        // appended, so the WAL batch's payload is the requests' bytes end to end.
        let raw = match req.raw {
            Some(b) => b,
            None => bytes::Bytes::from(req.payload.encode_to_vec()),
        };
        let (tx, rx) = oneshot::channel();
        let request = Request {
            key: Key {
                receiver: req.receiver,
                signal: req.payload.signal(),
                tenant: req.tenant,
                metadata: Arc::new(req.metadata),
            },
            payload: req.payload,
            raw,
            items,
            sources: req.sources,
            reply: tx,
            batching: req.batching,
            refuse_at: Instant::now() + req.wait,
        };
        // Waiting for room in the writer's inbox counts against the same wait.
        match tokio::time::timeout_at(request.refuse_at, self.inbox.send(request)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ConsumeError::Closed),
            Err(_) => return Err(ConsumeError::Full),
        }
        rx.await.unwrap_or(Err(ConsumeError::Closed))
    }
}

impl Durable {
    /// Starts the writer task. It ends (after committing what it holds) once every `Durable` handle
    /// is dropped, which is when the receivers have stopped.
    pub fn start(
        wal: WalHandle,
        routes: Routes,
        memory: Arc<MemoryBudget>,
        completions: mpsc::UnboundedSender<Completion>,
        metrics: Arc<WalMetrics>,
        track: super::Tracking,
        gates: Gates,
    ) -> (Arc<Durable>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(INBOX);
        let writer =
            Writer { wal, routes, memory, completions, metrics, track, open: HashMap::new(), ready: VecDeque::new() };
        (Arc::new(Durable { inbox: tx, gates }), tokio::spawn(writer.run(rx)))
    }
}

struct Writer {
    wal: WalHandle,
    routes: Routes,
    memory: Arc<MemoryBudget>,
    completions: mpsc::UnboundedSender<Completion>,
    metrics: Arc<WalMetrics>,
    track: super::Tracking,
    open: HashMap<Key, Open>,
    /// Closed batches, oldest first, waiting to be committed.
    ready: VecDeque<(Key, Open)>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        loop {
            let next = if self.ready.is_empty() {
                self.open.values().map(|o| o.close_at).min()
            } else {
                Some(Instant::now() + RETRY_EVERY)
            };
            tokio::select! {
                r = rx.recv() => match r {
                    Some(req) => self.add(req),
                    None => break,
                },
                _ = sleep_until(next), if next.is_some() => {}
            }
            // Take whatever else is already waiting: this is what makes commits group up under load.
            while let Ok(req) = rx.try_recv() {
                self.add(req);
            }
            self.close_due(Instant::now());
            self.commit().await;
        }
        // Receivers are gone: commit or refuse what is left, then stop (dropping the routes lets the
        // pipelines drain).
        self.close_due(Instant::now() + Duration::from_secs(3600));
        while !self.ready.is_empty() {
            self.commit().await;
            if !self.ready.is_empty() {
                tokio::time::sleep(RETRY_EVERY).await;
            }
        }
    }

    fn add(&mut self, req: Request) {
        let now = Instant::now();
        let o = self.open.entry(req.key.clone()).or_insert_with(|| Open {
            payload: LazyPayload::nothing(req.key.signal),
            raw: Vec::new(),
            raw_bytes: 0,
            items: 0,
            sources: Vec::new(),
            replies: Vec::new(),
            close_at: now + req.batching.timeout,
            refuse_at: req.refuse_at,
        });
        o.payload.append(req.payload);
        o.raw_bytes += req.raw.len();
        o.raw.push(req.raw);
        o.items += req.items;
        for r in &req.sources {
            push_offsets(&mut o.sources, r);
        }
        o.replies.push(req.reply);
        o.refuse_at = o.refuse_at.min(req.refuse_at);
        if (o.items >= req.batching.max_items || o.raw_bytes >= req.batching.max_bytes)
            && let Some(o) = self.open.remove(&req.key)
        {
            self.ready.push_back((req.key, o));
        }
    }

    fn close_due(&mut self, now: Instant) {
        let due: Vec<Key> = self.open.iter().filter(|(_, o)| o.close_at <= now).map(|(k, _)| k.clone()).collect();
        for k in due {
            if let Some(o) = self.open.remove(&k) {
                self.ready.push_back((k, o));
            }
        }
    }

    /// Reserves pipeline room and memory for every ready batch that can have them, writes those batches
    /// with one fdatasync, hands them on and answers their requests.
    async fn commit(&mut self) {
        let now = Instant::now();
        let mut go = Vec::new();
        let mut wait = VecDeque::new();
        while let Some((key, open)) = self.ready.pop_front() {
            let Some(fanout) = self.routes.get(&(key.receiver.clone(), key.signal)) else {
                refuse_all(open.replies, ConsumeError::Closed);
                continue;
            };
            // Room in the queues, then in the memory budget; a batch that has not both holds neither.
            let room = fanout.try_reserve().map(|permits| {
                permits.and_then(|p| {
                    let held = open.raw_bytes as u64 * HELD_PER_PROTOBUF_BYTE;
                    self.memory.try_charge(held).map(|charge| (p, charge))
                })
            });
            match room {
                Ok(Some(permits)) => go.push((key, open, permits)),
                Ok(None) if now < open.refuse_at => wait.push_back((key, open)),
                Ok(None) => self.refuse(&key, open, ConsumeError::Full),
                Err(e) => self.refuse(&key, open, e),
            }
        }
        self.ready = wait;
        if go.is_empty() {
            return;
        }
        let created =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let mut records = Vec::with_capacity(go.len());
        for (key, open, _) in go.iter_mut() {
            let header = WalBatch {
                id: uuid::Uuid::now_v7().as_bytes().to_vec(),
                created_unix_ms: created,
                signal: signal_code(key.signal),
                tenant: key.tenant.to_string(),
                receiver: key.receiver.to_string(),
                items: open.items as u32,
                payload: Vec::new(),
                metadata: key.metadata.iter().map(|(k, v)| MetaEntry { key: k.clone(), values: v.clone() }).collect(),
                sources: open
                    .sources
                    .iter()
                    .map(|r| SourceRange {
                        topic: r.topic.to_string(),
                        partition: r.partition,
                        first_offset: r.first,
                        last_offset: r.last,
                    })
                    .collect(),
            };
            records.push(OutgoingBatch::new(header, std::mem::take(&mut open.raw)));
        }
        let ids: Vec<Vec<u8>> = records.iter().map(|r| r.header().id.clone()).collect();
        let rows: Vec<openwit_catalog::NewBatch> =
            records.iter().map(|r| super::new_batch(r.header(), r.payload_len(), &self.track.node_id)).collect();
        if let Err(e) = self.wal.append(records).await {
            let err = match e {
                WalError::Full { .. } => ConsumeError::DiskBudget,
                other => {
                    tracing::error!("WAL write failed: {other}");
                    ConsumeError::Unavailable(other.to_string())
                }
            };
            for (key, open, _) in go {
                self.refuse(&key, open, err.clone());
            }
            return;
        }
        self.metrics.written.inc_by(ids.len() as u64);
        let at = super::now_ms();
        for row in rows {
            self.track.tracker.send(openwit_catalog::Update::Written { batch: row, at });
        }
        for ((key, open, (permits, charge)), id) in go.into_iter().zip(ids) {
            let batch_id = BatchId::from_slice(&id).unwrap_or_default();
            let token_id = batch_id.to_string();
            let token = AckToken::new(batch_id, self.completions.clone());
            let receipts: Vec<Result<Receipt, ConsumeError>> =
                open.replies.iter().map(|_| Ok(Receipt::new(token.clone()))).collect();
            let batch = Batch {
                tenant: key.tenant.clone(),
                payload: open.payload,
                metadata: key.metadata.clone(),
                lineage: Lineage::whole(token, open.items as u32),
                columnar: Default::default(),
                memory: charge,
            };
            Fanout::deliver(permits, batch);
            self.track.tracker.send(openwit_catalog::Update::Ingested { batch_id: token_id, at: super::now_ms() });
            for (reply, receipt) in open.replies.into_iter().zip(receipts) {
                // A client that went away no longer needs its answer.
                let _ = reply.send(receipt);
            }
        }
    }

    fn refuse(&self, key: &Key, open: Open, err: ConsumeError) {
        tracing::debug!(receiver = %key.receiver, tenant = %key.tenant, items = open.items, "batch refused: {err}");
        refuse_all(open.replies, err);
    }
}

fn refuse_all(replies: Vec<Reply>, err: ConsumeError) {
    for r in replies {
        // A client that went away no longer needs its answer.
        let _ = r.send(Err(err.clone()));
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
