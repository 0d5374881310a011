//! Where a request came from in a log-structured source (Kafka): topic, partition, offsets.
//!
//! Receivers that read such a source pass the offsets each request covers; the WAL stores them with
//! the batch. At start the daemon reads them back from the WAL, so that a receiver recognises records
//! redelivered after a crash between the WAL's fsync and the source's commit, and skips them.

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

/// Offsets already in the WAL, per (topic, partition), for one receiver.
#[derive(Clone, Debug, Default)]
pub struct DurableOffsets(HashMap<Arc<str>, HashMap<i32, OffsetSet>>);

impl DurableOffsets {
    pub fn add(&mut self, o: &SourceOffsets) {
        self.0.entry(o.topic.clone()).or_default().entry(o.partition).or_default().insert(o.first, o.last);
    }

    /// Whether the record at `offset` of `topic`/`partition` is already in the WAL.
    pub fn contains(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.0.get(topic).and_then(|p| p.get(&partition)).is_some_and(|s| s.contains(offset))
    }

    /// Forgets the offsets of a partition below `offset` (committed: the source will not send them
    /// again).
    pub fn forget_below(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(s) = self.0.get_mut(topic).and_then(|p| p.get_mut(&partition)) {
            s.remove_below(offset);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(|p| p.values().all(OffsetSet::is_empty))
    }

    /// Number of partitions with offsets.
    pub fn partitions(&self) -> usize {
        self.0.values().map(|p| p.values().filter(|s| !s.is_empty()).count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
