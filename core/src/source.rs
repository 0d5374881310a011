//! Where a request came from in a log-structured source (Kafka): topic, partition, offsets.
//!
//! Receivers that read such a source pass the offsets each request covers; the WAL stores them with
//! the batch. At start the daemon reads them back from the WAL, so that a receiver recognises records
//! redelivered after a crash between the WAL's fsync and the source's commit, and skips them.

use crate::AckToken;
use std::collections::HashMap;
use std::sync::Arc;

/// A run of offsets `first..=last` of one topic partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceOffsets {
    pub topic: Arc<str>,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
}

impl SourceOffsets {
    /// A single record's offset.
    pub fn one(topic: Arc<str>, partition: i32, offset: i64) -> SourceOffsets {
        SourceOffsets { topic, partition, first: offset, last: offset }
    }
}

/// Adds `add` to `runs`: it extends a run of the same partition it directly follows or precedes, else
/// starts a run of its own. Requests reach the WAL writer roughly, not exactly, in offset order (each
/// travels on its own task), so a batch holds few runs per partition, and every run is exact: no
/// offset in a run is missing from the batch.
pub fn push_offsets(runs: &mut Vec<SourceOffsets>, add: &SourceOffsets) {
    for r in runs.iter_mut().filter(|r| r.partition == add.partition && r.topic == add.topic) {
        if r.last.checked_add(1) == Some(add.first) {
            r.last = add.last;
            return;
        }
        if add.last.checked_add(1) == Some(r.first) {
            r.first = add.first;
            return;
        }
    }
    runs.push(add.clone());
}

/// Sorted, disjoint, non-adjacent inclusive ranges of offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetSet(Vec<(i64, i64)>);

impl OffsetSet {
    pub fn insert(&mut self, first: i64, last: i64) {
        let (mut lo, mut hi) = (first.min(last), first.max(last));
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut placed = false;
        for &(a, b) in &self.0 {
            if b.saturating_add(1) < lo {
                out.push((a, b));
            } else if hi.saturating_add(1) < a {
                if !placed {
                    out.push((lo, hi));
                    placed = true;
                }
                out.push((a, b));
            } else {
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        if !placed {
            out.push((lo, hi));
        }
        self.0 = out;
    }

    /// Drops every offset below `offset`.
    pub fn remove_below(&mut self, offset: i64) {
        self.0.retain(|&(_, b)| b >= offset);
        if let Some(first) = self.0.first_mut() {
            first.0 = first.0.max(offset);
        }
    }

    pub fn contains(&self, offset: i64) -> bool {
        let i = self.0.partition_point(|&(_, b)| b < offset);
        self.0.get(i).is_some_and(|&(a, _)| a <= offset)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ranges(&self) -> &[(i64, i64)] {
        &self.0
    }
}

/// Offsets already in the WAL, per (topic, partition), for one receiver; and, for the WAL batches replayed
/// at start, a hold on each until the source's committed offset passes it.
///
/// Why the holds: a replayed batch is stored without its receiver, which may not own its partitions yet
/// (a consumer group hands them over only after the previous member's session ends). Were it completed as
/// soon as it is stored, its WAL segment could be deleted before the offsets are committed, and a crash
/// then would make the source deliver those records again with nothing left to recognise them by: stored
/// twice. Holding the batch until the commit keeps its offsets in the WAL for as long as they matter.
#[derive(Debug, Default)]
pub struct DurableOffsets {
    sets: HashMap<Arc<str>, HashMap<i32, OffsetSet>>,
    holds: Vec<OffsetHold>,
}

/// A replayed batch's hold on one source range.
#[derive(Debug)]
struct OffsetHold {
    topic: Arc<str>,
    partition: i32,
    last: i64,
    _token: Arc<AckToken>,
}

impl DurableOffsets {
    pub fn add(&mut self, o: &SourceOffsets) {
        self.sets.entry(o.topic.clone()).or_default().entry(o.partition).or_default().insert(o.first, o.last);
    }

    /// Keeps `token` (a replayed WAL batch) from completing until the committed offset of `o`'s partition
    /// passes `o`.
    pub fn hold_until_committed(&mut self, o: &SourceOffsets, token: Arc<AckToken>) {
        self.add(o);
        self.holds.push(OffsetHold { topic: o.topic.clone(), partition: o.partition, last: o.last, _token: token });
    }

    /// Whether the record at `offset` of `topic`/`partition` is already in the WAL.
    pub fn contains(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.sets.get(topic).and_then(|p| p.get(&partition)).is_some_and(|s| s.contains(offset))
    }

    /// Forgets the offsets of a partition below `offset` (committed: the source will not send them
    /// again), and releases the holds they covered.
    pub fn forget_below(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(s) = self.sets.get_mut(topic).and_then(|p| p.get_mut(&partition)) {
            s.remove_below(offset);
        }
        self.holds.retain(|h| !(&*h.topic == topic && h.partition == partition && h.last < offset));
    }

    pub fn is_empty(&self) -> bool {
        self.sets.values().all(|p| p.values().all(OffsetSet::is_empty))
    }

    /// Number of partitions with offsets.
    pub fn partitions(&self) -> usize {
        self.sets.values().map(|p| p.values().filter(|s| !s.is_empty()).count()).sum()
    }

    /// Replayed batches still waiting for their offsets to be committed.
    pub fn holds(&self) -> usize {
        self.holds.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_replayed_batch_is_held_until_the_commit_passes_its_last_offset() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let token = crate::AckToken::redelivered(crate::BatchId([1; 16]), tx);
        let mut d = DurableOffsets::default();
        let t: Arc<str> = Arc::from("spans");
        d.hold_until_committed(&SourceOffsets { topic: t.clone(), partition: 0, first: 10, last: 19 }, token.clone());
        d.hold_until_committed(&SourceOffsets { topic: t.clone(), partition: 1, first: 5, last: 5 }, token.clone());
        assert!(d.contains("spans", 0, 12) && d.contains("spans", 1, 5));
        d.forget_below("spans", 0, 19);
        d.forget_below("spans", 1, 6);
        d.forget_below("other", 0, 100);
        assert_eq!((d.holds(), Arc::strong_count(&token)), (1, 2), "offset 19 of partition 0 is not committed yet");
        d.forget_below("spans", 0, 20);
        assert_eq!((d.holds(), Arc::strong_count(&token)), (0, 1), "released");
    }

    #[test]
    fn runs_extend_only_when_contiguous() {
        let t: Arc<str> = Arc::from("t");
        let mut runs = Vec::new();
        for o in [5, 6, 7, 9, 10] {
            push_offsets(&mut runs, &SourceOffsets::one(t.clone(), 0, o));
        }
        push_offsets(&mut runs, &SourceOffsets::one(t.clone(), 1, 8));
        push_offsets(&mut runs, &SourceOffsets::one(t.clone(), 0, 11));
        // Out of order: extends the run it precedes, and one it follows that is not the last.
        push_offsets(&mut runs, &SourceOffsets::one(t.clone(), 0, 4));
        push_offsets(&mut runs, &SourceOffsets::one(t.clone(), 0, 20));
        push_offsets(&mut runs, &SourceOffsets::one(t.clone(), 0, 12));
        let got: Vec<_> = runs.iter().map(|r| (r.partition, r.first, r.last)).collect();
        assert_eq!(got, vec![(0, 4, 7), (0, 9, 12), (1, 8, 8), (0, 20, 20)], "8 is partition 1's: 7 and 9 stay apart");
    }

    proptest! {
        #[test]
        fn offset_set_holds_exactly_what_was_inserted(ranges in proptest::collection::vec((0i64..200, 0i64..8), 0..30)) {
            let mut set = OffsetSet::default();
            let mut naive = std::collections::BTreeSet::new();
            for (a, len) in &ranges {
                set.insert(*a, a + len);
                naive.extend(*a..=a + len);
            }
            for o in -1..220 {
                prop_assert_eq!(set.contains(o), naive.contains(&o), "offset {}", o);
            }
            set.remove_below(100);
            for o in -1..220 {
                prop_assert_eq!(set.contains(o), o >= 100 && naive.contains(&o), "after remove_below, offset {}", o);
            }
            for w in set.ranges().windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0, "ranges are disjoint and not adjacent: {:?}", set.ranges());
            }
        }
    }
}
