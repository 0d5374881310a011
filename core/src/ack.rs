//! Acknowledgement by explicit verdict: knowing when every path has finished with a WAL batch.
//!
//! Each WAL batch gets one `AckToken`. Everything downstream that carries any of the batch's items
//! holds a `Segment` — the token plus the range of the batch's items it carries — and a segment is an
//! **obligation**: whoever holds it must settle it with a `Verdict` (`stored`, `dropped`, `retryable`,
//! `permanent`). A segment dropped without a verdict (a panic, a closed queue, an early return, a
//! forgotten batch) counts as **lost**, never as success. Cloning a segment (the copies a fan-out makes)
//! creates one more obligation for the same items: every path settles its own.
//!
//! When the last segment (and the last other holder, such as a Kafka receipt) is gone, the token
//! reports one `Completion` with the worst outcome it saw. Exporters can use the segments'
//! (batch id, item index) pairs to store each item at most once across redeliveries.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A WAL batch id (UUIDv7 bytes: ordered by creation time). Its one text form is the UUID form
/// (`0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b`), parsed back by `FromStr`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BatchId(pub [u8; 16]);

impl BatchId {
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The id from WAL or catalog bytes; `None` unless there are exactly 16.
    pub fn from_slice(b: &[u8]) -> Option<BatchId> {
        <[u8; 16]>::try_from(b).ok().map(BatchId)
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(f, "{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }
}

impl fmt::Debug for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A text that is not a batch id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a batch id; batch ids are UUIDs such as 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")]
pub struct BadBatchId(pub String);

impl FromStr for BatchId {
    type Err = BadBatchId;

    /// The UUID form, with or without its dashes, in either case.
    fn from_str(s: &str) -> Result<BatchId, BadBatchId> {
        let digits: String = s.chars().filter(|c| *c != '-').collect();
        let dashes_ok = s.len() == 32 || (s.len() == 36 && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-'));
        let mut out = [0u8; 16];
        match hex::decode_to_slice(&digits, &mut out) {
            Ok(()) if dashes_ok => Ok(BatchId(out)),
            _ => Err(BadBatchId(s.to_string())),
        }
    }
}

/// How a holder finished with items of a WAL batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Durable where this path sends them (an exporter's destination).
    Stored,
    /// Removed on purpose (a filter, a sampler): nothing more to do for them on this path.
    Dropped,
    /// Failed after the retries this path makes; the batch stays in the WAL, marked failed.
    Retryable(String),
    /// Will not succeed as it is; the batch stays in the WAL, marked failed with the reason.
    Permanent(String),
}

/// The end of a WAL batch's journey: the worst of its verdicts, every path counted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Every path stored or dropped every item.
    Stored,
    /// Some items were dropped without a verdict (a panic, a closed queue): the WAL delivers the
    /// batch again.
    Lost(String),
    /// A path gave up after its retries: kept in the WAL, failed, until a restart or an operator retry.
    Failed(String),
    /// A path said retrying will not help: kept in the WAL, failed, with the reason.
    Permanent(String),
}

impl Outcome {
    /// The text for logs and the catalog, `None` when stored.
    pub fn error(&self) -> Option<String> {
        match self {
            Outcome::Stored => None,
            Outcome::Lost(e) => Some(format!("lost without a verdict: {e}")),
            Outcome::Failed(e) => Some(e.clone()),
            Outcome::Permanent(e) => Some(format!("permanent failure: {e}")),
        }
    }
}

/// A WAL batch's completion, reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub id: BatchId,
    pub outcome: Outcome,
}

tokio::task_local! {
    /// The component whose task is running: named in the outcome of what it drops without a verdict.
    pub static HOLDER: Arc<str>;
}

/// Reports a completion when the last reference to it is dropped.
#[derive(Debug)]
pub struct AckToken {
    id: BatchId,
    redelivered: bool,
    outcome: Mutex<Outcome>,
    done: mpsc::UnboundedSender<Completion>,
}

impl AckToken {
    pub fn new(id: BatchId, done: mpsc::UnboundedSender<Completion>) -> Arc<AckToken> {
        Arc::new(AckToken { id, redelivered: false, outcome: Mutex::new(Outcome::Stored), done })
    }

    /// A token for a batch sent through the pipelines again (WAL replay at start, redelivery,
    /// operator retry): exporters may already hold some of its items from an earlier delivery.
    pub fn redelivered(id: BatchId, done: mpsc::UnboundedSender<Completion>) -> Arc<AckToken> {
        Arc::new(AckToken { id, redelivered: true, outcome: Mutex::new(Outcome::Stored), done })
    }

    pub fn id(&self) -> &BatchId {
        &self.id
    }

    /// Whether an earlier delivery of this batch may have stored some of its items.
    pub fn is_redelivery(&self) -> bool {
        self.redelivered
    }

    /// Keeps the worse of the outcome so far and `o` (the first reason of a rank is kept).
    fn record(&self, o: Outcome) {
        let mut cur = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::discriminant(&o) != std::mem::discriminant(&*cur) && o > *cur {
            *cur = o;
        }
    }

    fn settle(&self, v: &Verdict) {
        match v {
            Verdict::Stored | Verdict::Dropped => {}
            Verdict::Retryable(e) => self.record(Outcome::Failed(e.clone())),
            Verdict::Permanent(e) => self.record(Outcome::Permanent(e.clone())),
        }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        let outcome = std::mem::replace(self.outcome.get_mut().unwrap_or_else(|p| p.into_inner()), Outcome::Stored);
        // The receiving end lives as long as the daemon; after it is gone nobody needs to know.
        let _ = self.done.send(Completion { id: self.id, outcome });
    }
}

/// Items `start..start + len` of one WAL batch, held by one path: settle it, or it counts as lost.
#[derive(Debug)]
pub struct Segment {
    token: Arc<AckToken>,
    start: u32,
    len: u32,
    /// False once settled (or once its items moved to other segments).
    open: bool,
}

impl Segment {
    pub fn new(token: Arc<AckToken>, start: u32, len: u32) -> Segment {
        Segment { token, start, len, open: true }
    }

    pub fn token(&self) -> &Arc<AckToken> {
        &self.token
    }

    pub fn start(&self) -> u32 {
        self.start
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Settles these items on this path.
    pub fn settle(mut self, v: &Verdict) {
        self.open = false;
        self.token.settle(v);
    }

    /// Gives these items up without a verdict, saying why: the batch is delivered again from the WAL,
    /// as when a holder panics, but the reason names what happened.
    pub fn lose(mut self, reason: &str) {
        self.open = false;
        self.token.record(Outcome::Lost(format!("{reason} (items {}..{})", self.start, self.start + self.len)));
    }
}

impl Clone for Segment {
    /// One more obligation for the same items (another path: a fan-out copy, a file that holds them).
    fn clone(&self) -> Segment {
        Segment::new(self.token.clone(), self.start, self.len)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.open {
            let who = HOLDER.try_with(|h| h.to_string()).unwrap_or_else(|_| "a pipeline task".to_string());
            let how = if std::thread::panicking() { "panicked" } else { "dropped them" };
            self.token.record(Outcome::Lost(format!("{who} {how} (items {}..{})", self.start, self.start + self.len)));
        }
    }
}

/// Where a batch's items come from, in item order; one obligation per segment. Empty for batches that
/// no WAL batch backs.
#[derive(Debug, Clone, Default)]
pub struct Lineage(Vec<Segment>);

impl Lineage {
    /// A whole WAL batch of `items` items.
    pub fn whole(token: Arc<AckToken>, items: u32) -> Lineage {
        Lineage(vec![Segment::new(token, 0, items)])
    }

    /// Items `start..start + len` of one WAL batch.
    pub fn range(token: Arc<AckToken>, start: u32, len: u32) -> Lineage {
        Lineage(vec![Segment::new(token, start, len)])
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn append(&mut self, other: Lineage) {
        self.0.extend(other.0);
    }

    /// Removes and returns the segments of the first `n` items, splitting one if needed.
    pub fn split_front(&mut self, n: usize) -> Lineage {
        let mut left = n as u32;
        let mut taken = 0;
        let mut head = None;
        for s in &mut self.0 {
            if left == 0 {
                break;
            }
            if s.len <= left {
                left -= s.len;
                taken += 1;
            } else {
                head = Some(Segment::new(s.token.clone(), s.start, left));
                s.start += left;
                s.len -= left;
                left = 0;
            }
        }
        let mut out: Vec<Segment> = self.0.drain(..taken).collect();
        out.extend(head);
        Lineage(out)
    }

    /// Keeps the items whose `keep` is true (one flag per item, in order) and returns the others, in
    /// order, for their holder to settle (usually `Verdict::Dropped`).
    pub fn retain(&mut self, keep: &[bool]) -> Lineage {
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        let mut i = 0usize;
        for mut s in std::mem::take(&mut self.0) {
            let flags = keep.get(i..i + s.len as usize).unwrap_or(&[]);
            i += s.len as usize;
            // Runs of equal flags become segments; a missing flag keeps the item.
            let mut run_start = 0usize;
            while run_start < s.len as usize {
                let k = flags.get(run_start).copied().unwrap_or(true);
                let mut end = run_start + 1;
                while end < s.len as usize && flags.get(end).copied().unwrap_or(true) == k {
                    end += 1;
                }
                let piece = Segment::new(s.token.clone(), s.start + run_start as u32, (end - run_start) as u32);
                if k {
                    kept.push(piece)
                } else {
                    removed.push(piece)
                }
                run_start = end;
            }
            // Its items now live in the pieces.
            s.open = false;
        }
        self.0 = kept;
        Lineage(removed)
    }

    /// Settles every item on this path.
    pub fn settle(self, v: &Verdict) {
        for s in self.0 {
            s.settle(v);
        }
    }

    /// Gives every item up without a verdict (see `Segment::lose`).
    pub fn lose(self, reason: &str) {
        for s in self.0 {
            s.lose(reason);
        }
    }

    /// `(batch id, item index within that batch)` for each item, in order.
    pub fn items(&self) -> impl Iterator<Item = (BatchId, u32)> + '_ {
        self.0.iter().flat_map(|s| (s.start..s.start + s.len).map(move |i| (*s.token.id(), i)))
    }

    /// Items in this lineage.
    pub fn item_count(&self) -> usize {
        self.0.iter().map(|s| s.len as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: u8) -> (Arc<AckToken>, mpsc::UnboundedReceiver<Completion>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (AckToken::new(BatchId([id; 16]), tx), rx)
    }

    #[test]
    fn completes_once_every_piece_is_settled() {
        let (t, mut rx) = token(1);
        let mut l = Lineage::whole(t, 10);
        let head = l.split_front(4);
        assert_eq!(head.items().map(|(_, i)| i).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(l.items().map(|(_, i)| i).collect::<Vec<_>>(), (4..10).collect::<Vec<_>>());
        head.settle(&Verdict::Stored);
        assert!(rx.try_recv().is_err(), "still held by the rest");
        l.settle(&Verdict::Dropped);
        assert_eq!(rx.try_recv().unwrap(), Completion { id: BatchId([1; 16]), outcome: Outcome::Stored });
    }

    #[test]
    fn dropping_without_a_verdict_is_a_loss_never_a_success() {
        let (t, mut rx) = token(2);
        let l = Lineage::whole(t, 3);
        let copy = l.clone();
        l.settle(&Verdict::Stored);
        drop(copy);
        let c = rx.try_recv().unwrap();
        assert!(matches!(&c.outcome, Outcome::Lost(why) if why.contains("items 0..3")), "{c:?}");
    }

    #[tokio::test]
    async fn a_panic_names_the_component_that_held_the_items() {
        use futures::FutureExt;
        let (t, mut rx) = token(3);
        let l = Lineage::whole(t, 2);
        let holder: Arc<str> = Arc::from("exporter testing");
        let run = HOLDER.scope(holder, async move {
            let _held = l;
            panic!("on purpose");
        });
        assert!(std::panic::AssertUnwindSafe(run).catch_unwind().await.is_err());
        let c = rx.try_recv().unwrap();
        assert_eq!(c.outcome, Outcome::Lost("exporter testing panicked (items 0..2)".into()));
    }

    #[test]
    fn a_lost_lineage_is_delivered_again_with_its_reason() {
        let (t, mut rx) = token(7);
        let l = Lineage::whole(t, 4);
        l.lose("plugin redact panicked");
        assert_eq!(rx.try_recv().unwrap().outcome, Outcome::Lost("plugin redact panicked (items 0..4)".into()));
    }

    #[test]
    fn the_worst_verdict_wins_and_failures_keep_their_first_reason() {
        let (t, mut rx) = token(4);
        let a = Lineage::whole(t.clone(), 3);
        let b = Lineage::whole(t.clone(), 3);
        let c = Lineage::whole(t.clone(), 3);
        let d = Lineage::whole(t, 3);
        a.settle(&Verdict::Retryable("disk full".into()));
        b.settle(&Verdict::Retryable("later".into()));
        drop(c);
        d.settle(&Verdict::Stored);
        assert_eq!(rx.try_recv().unwrap().outcome, Outcome::Failed("disk full".into()));

        let (t, mut rx) = token(5);
        let a = Lineage::whole(t.clone(), 1);
        Lineage::whole(t, 1).settle(&Verdict::Permanent("bad schema".into()));
        a.settle(&Verdict::Retryable("x".into()));
        assert_eq!(rx.try_recv().unwrap().outcome, Outcome::Permanent("bad schema".into()));
    }

    #[test]
    fn retain_splits_segments_and_returns_the_removed_items() {
        let (t, mut rx) = token(6);
        let mut l = Lineage::whole(t.clone(), 4);
        l.append(Lineage(vec![Segment::new(t, 10, 3)]));
        let removed = l.retain(&[true, false, false, true, false, true, true]);
        assert_eq!(l.items().map(|(_, i)| i).collect::<Vec<_>>(), vec![0, 3, 11, 12]);
        assert_eq!(removed.items().map(|(_, i)| i).collect::<Vec<_>>(), vec![1, 2, 10]);
        removed.settle(&Verdict::Dropped);
        assert!(rx.try_recv().is_err(), "the kept items are still held");
        l.settle(&Verdict::Stored);
        assert_eq!(rx.try_recv().unwrap().outcome, Outcome::Stored, "splitting alone loses nothing");
    }

    #[test]
    fn id_text_is_uuid_shaped_and_parses_back() {
        let id = BatchId([0xab; 16]);
        assert_eq!(id.to_string(), "abababab-abab-abab-abab-abababababab");
        assert_eq!("abababab-abab-abab-abab-abababababab".parse::<BatchId>(), Ok(id));
        assert_eq!("ABABABABABABABABABABABABABABABAB".parse::<BatchId>(), Ok(id));
        for bad in ["", "abab", "abababab-abab-abab-abab-ababababababzz", "abababababab-abab-abab-abab-abababab"] {
            assert!(bad.parse::<BatchId>().is_err(), "{bad:?}");
        }
    }
}
