//! Per-partition bookkeeping: which consumed offsets are durable, and how far the group may commit.
//!
//! Kafka resumes a partition at its committed offset, so the offset committed must be one below
//! which every consumed message is durable (in the WAL, dead-lettered, or skipped as already there).
//! Messages become durable out of order (a refused one is retried while later ones go through), so
//! the commit point is the lowest offset still pending, or one past the last consumed if none is.
//! The receipts of durable messages are held until an offset past them is committed, which keeps
//! their WAL batches on disk for as long as Kafka could redeliver them.

use openwit_core::Receipt;
use std::collections::{BTreeMap, BTreeSet};

/// One assigned partition.
#[derive(Debug, Default)]
pub struct PartitionTrack {
    /// Consumed, not yet durable.
    pending: BTreeSet<i64>,
    /// Durable, not yet covered by a committed offset.
    held: BTreeMap<i64, Receipt>,
    /// One past the highest offset consumed since the partition was assigned.
    next: Option<i64>,
    /// The last offset whose commit Kafka confirmed.
    committed: Option<i64>,
}

impl PartitionTrack {
    /// A message was consumed and is on its way to the WAL.
    pub fn consumed(&mut self, offset: i64) {
        self.pending.insert(offset);
        self.advance(offset);
    }

    /// A message was consumed and needs nothing more (already durable, empty, dead-lettered).
    pub fn settled(&mut self, offset: i64) {
        self.pending.remove(&offset);
        self.advance(offset);
    }

    /// A consumed message is now durable in the WAL.
    pub fn durable(&mut self, offset: i64, receipt: Receipt) {
        if self.pending.remove(&offset) {
            self.held.insert(offset, receipt);
        }
    }

    fn advance(&mut self, offset: i64) {
        let n = offset.saturating_add(1);
        if self.next.is_none_or(|x| x < n) {
            self.next = Some(n);
        }
    }

    /// The offset to commit: every consumed message below it is durable. `None` before anything
    /// was consumed.
    pub fn commit_point(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }

    /// The commit point, if it is past what Kafka has confirmed.
    pub fn to_commit(&self) -> Option<i64> {
        self.commit_point().filter(|p| self.committed.is_none_or(|c| c < *p))
    }

    /// Kafka confirmed a commit at `offset`: the receipts of what lies below are released.
    pub fn committed(&mut self, offset: i64) {
        if self.committed.is_none_or(|c| c < offset) {
            self.committed = Some(offset);
        }
        let keep = self.held.split_off(&offset);
        self.held = keep;
    }

    /// Receipts still held (durable, not yet committed).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commit_waits_for_the_lowest_pending_offset() {
        let mut t = PartitionTrack::default();
        assert_eq!(t.commit_point(), None);
        for o in 10..15 {
            t.consumed(o);
        }
        assert_eq!(t.commit_point(), Some(10));
        t.durable(11, Receipt::default());
        t.durable(12, Receipt::default());
        assert_eq!(t.commit_point(), Some(10), "10 is not durable yet");
        t.durable(10, Receipt::default());
        assert_eq!(t.commit_point(), Some(13));
        t.settled(15);
        t.durable(13, Receipt::default());
        t.durable(14, Receipt::default());
        assert_eq!(t.commit_point(), Some(16));
        assert_eq!(t.to_commit(), Some(16));
        t.committed(13);
        assert_eq!(t.held(), 2, "13 and 14 are not covered by a commit at 13");
        t.committed(16);
        assert_eq!((t.held(), t.to_commit()), (0, None));
    }

    proptest! {
        /// Whatever order messages become durable in, the commit point never passes a message that
        /// is not durable, and reaches the end once all are.
        #[test]
        fn never_commits_past_a_message_that_is_not_durable(order in Just((0..40i64).collect::<Vec<_>>()).prop_shuffle(), skip in proptest::collection::vec(any::<bool>(), 40)) {
            let mut t = PartitionTrack::default();
            for o in 0..40 {
                if skip[o as usize] { t.settled(o) } else { t.consumed(o) }
            }
            let mut durable = std::collections::BTreeSet::new();
            for o in order {
                if !skip[o as usize] {
                    t.durable(o, Receipt::default());
                }
                durable.insert(o);
                let point = t.commit_point().unwrap();
                for below in 0..point {
                    prop_assert!(skip[below as usize] || durable.contains(&below), "commit at {} passes {}", point, below);
                }
            }
            prop_assert_eq!(t.commit_point(), Some(40));
        }
    }
}
