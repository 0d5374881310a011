//! Acknowledgement: knowing when every exporter has stored a WAL batch.
//!
//! Each WAL batch gets one `AckToken`. Everything downstream that carries any of the batch's items
//! holds a `Segment` — the token plus the range of the batch's items it carries — so the batch
//! processor can merge and split freely. When the last holder drops its segment the token reports a
//! `Completion`: successful unless some exporter marked it failed. Exporters can use the segments'
//! (batch id, item index) pairs to store each item at most once across replays.

use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A WAL batch id (UUIDv7 bytes: ordered by creation time).
pub type BatchId = [u8; 16];

/// The usual text form of a batch id (`0190a1b2-…`).
pub fn batch_id_text(id: &BatchId) -> String {
    let h = hex::encode(id);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// The end of a WAL batch's journey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub id: BatchId,
    /// `None` when every exporter stored the batch; otherwise the first failure.
    pub error: Option<String>,
}

/// Reports a completion when the last reference to it is dropped.
#[derive(Debug)]
pub struct AckToken {
    id: BatchId,
    redelivered: bool,
    failure: Mutex<Option<String>>,
    done: mpsc::UnboundedSender<Completion>,
}

impl AckToken {
    pub fn new(id: BatchId, done: mpsc::UnboundedSender<Completion>) -> Arc<AckToken> {
        Arc::new(AckToken { id, redelivered: false, failure: Mutex::new(None), done })
    }

    /// A token for a batch sent through the pipelines again (WAL replay at start, operator retry):
    /// exporters may already hold some of its items from an earlier delivery.
    pub fn redelivered(id: BatchId, done: mpsc::UnboundedSender<Completion>) -> Arc<AckToken> {
        Arc::new(AckToken { id, redelivered: true, failure: Mutex::new(None), done })
    }

    pub fn id(&self) -> &BatchId {
        &self.id
    }

    /// Whether an earlier delivery of this batch may have stored some of its items.
    pub fn is_redelivery(&self) -> bool {
        self.redelivered
    }

    /// Marks the batch failed (the first failure is kept).
    pub fn fail(&self, error: &str) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(error.to_string());
        }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        let error = self.failure.lock().unwrap_or_else(|p| p.into_inner()).take();
        // The receiving end lives as long as the daemon; after it is gone nobody needs to know.
        let _ = self.done.send(Completion { id: self.id, error });
    }
}

/// Items `start..start + len` of one WAL batch.
#[derive(Debug, Clone)]
pub struct Segment {
    pub token: Arc<AckToken>,
    pub start: u32,
    pub len: u32,
}

/// Where a batch's items come from, in item order. Empty for batches that no WAL batch backs.
#[derive(Debug, Clone, Default)]
pub struct Lineage(pub Vec<Segment>);

impl Lineage {
    /// A whole WAL batch of `items` items.
    pub fn whole(token: Arc<AckToken>, items: u32) -> Lineage {
        Lineage(vec![Segment { token, start: 0, len: items }])
    }

    pub fn append(&mut self, other: Lineage) {
        self.0.extend(other.0);
    }

    /// Removes and returns the segments of the first `n` items, splitting one if needed.
    pub fn split_front(&mut self, n: usize) -> Lineage {
        let mut left = n as u32;
        let mut out = Vec::new();
        while left > 0 && !self.0.is_empty() {
            if self.0[0].len <= left {
                let s = self.0.remove(0);
                left -= s.len;
                out.push(s);
            } else {
                let s = &mut self.0[0];
                out.push(Segment { token: s.token.clone(), start: s.start, len: left });
                s.start += left;
                s.len -= left;
                left = 0;
            }
        }
        Lineage(out)
    }

    /// Marks every batch this lineage touches as failed.
    pub fn fail_all(&self, error: &str) {
        for s in &self.0 {
            s.token.fail(error);
        }
    }

    /// `(batch id, item index within that batch)` for each item, in order.
    pub fn items(&self) -> impl Iterator<Item = (BatchId, u32)> + '_ {
        self.0.iter().flat_map(|s| (s.start..s.start + s.len).map(move |i| (*s.token.id(), i)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_once_every_piece_is_dropped() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut l = Lineage::whole(AckToken::new([1; 16], tx), 10);
        let head = l.split_front(4);
        assert_eq!(head.items().map(|(_, i)| i).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(l.items().map(|(_, i)| i).collect::<Vec<_>>(), (4..10).collect::<Vec<_>>());
        drop(head);
        assert!(rx.try_recv().is_err(), "still held by the rest");
        drop(l);
        assert_eq!(rx.try_recv().unwrap(), Completion { id: [1; 16], error: None });
    }

    #[test]
    fn a_failure_anywhere_fails_the_batch() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t = AckToken::new([2; 16], tx);
        let a = Lineage::whole(t.clone(), 3);
        let b = Lineage::whole(t, 3);
        b.fail_all("disk full");
        drop(b);
        drop(a);
        assert_eq!(rx.try_recv().unwrap().error.as_deref(), Some("disk full"));
    }

    #[test]
    fn id_text_is_uuid_shaped() {
        assert_eq!(batch_id_text(&[0xab; 16]), "abababab-abab-abab-abab-abababababab");
    }
}
