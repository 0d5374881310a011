//! The process's memory budget for telemetry between the WAL and storage.
//!
//! Queues count batches and the batch processor counts items, so what they hold in bytes depends on
//! the load: 16 queued batches of 8,192 large spans are hundreds of MiB. One budget in bytes bounds
//! it all: the WAL writer charges each batch it hands on (an estimate of its decoded size) before
//! it is acknowledged, and the charge travels with the batch — through fan-out copies, merges and
//! splits — until the last copy holding it is dropped. While the budget is spent, batches wait in the
//! writer and receivers answer with their retryable "full" error, as they do for a full queue.
//!
//! What outlives the batch is charged by its holder: the Parquet exporter charges the Arrow rows it
//! buffers for a row group ([`MemoryBudget::charge_held`]) until it has written them, writes them early
//! when they would take more than half the budget, and writes them out while the budget is starved
//! (a charge was refused), so that its buffers never keep the budget spent.

use crate::telemetry::{Gauge, Telemetry};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Decoded OTLP (prost's structs: a `String` or `Vec` header per field, attributes as vectors of
/// key-value structs) plus its Arrow rows, per byte of protobuf. Measured on the load generator's data
/// by `bench/src/held_bytes.rs` (which counts what decoding allocates): decoded 3.4–4.5×, Arrow rows
/// (buffers as allocated) 3.3–4.3×; together spans 7.2, logs 7.1, metric points 8.8.
pub const HELD_PER_PROTOBUF_BYTE: u64 = 9;

/// A byte budget shared by every pipeline of the process.
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
    /// Bytes ever charged for batches (never decreases; not what holders charge with `charge_held`):
    /// how fast telemetry passes through memory, which the daemon's allocator settings follow.
    batches_charged: AtomicU64,
    /// Whether the last charge asked for was refused (someone is waiting for room): holders of memory
    /// that can let go of it early (an exporter's buffered rows) do so then.
    starved: AtomicBool,
    /// Told of each refusal, so that those holders act at once rather than at their next tick.
    refused: tokio::sync::watch::Sender<()>,
    /// Published as it changes (`openwit_memory_charged_bytes`).
    gauge: Option<Gauge>,
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemoryBudget({} of {} bytes)", self.used(), self.limit)
    }
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicU64::new(0),
            batches_charged: AtomicU64::new(0),
            starved: AtomicBool::new(false),
            refused: Default::default(),
            gauge: None,
        })
    }

    /// A budget whose charged bytes and limit are the daemon's metrics `openwit_memory_charged_bytes`
    /// and `openwit_memory_budget_bytes`.
    pub fn registered(limit: u64, t: &Telemetry) -> Arc<MemoryBudget> {
        let gauge = t.gauge(
            "openwit_memory_charged_bytes",
            "Estimated bytes of telemetry held in memory between the WAL and storage (charged to the budget)",
        );
        t.gauge("openwit_memory_budget_bytes", "The memory budget for telemetry between the WAL and storage")
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
        Arc::new(MemoryBudget {
            limit,
            used: AtomicU64::new(0),
            batches_charged: AtomicU64::new(0),
            starved: AtomicBool::new(false),
            refused: Default::default(),
            gauge: Some(gauge),
        })
    }

    /// Moves the gauge by the change (not to a value read before it: changes race each other).
    fn publish(&self, delta: i64) {
        if let Some(g) = &self.gauge {
            g.inc_by(delta);
        }
    }

    /// Charges `bytes` if they fit, or if nothing is charged at all (a batch larger than the whole
    /// budget still goes, alone, rather than never).
    pub fn try_charge(self: &Arc<Self>, bytes: u64) -> Option<Charge> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used != 0 && used.saturating_add(bytes) > self.limit {
                self.starved.store(true, Ordering::Relaxed);
                self.refused.send_replace(());
                return None;
            }
            match self.used.compare_exchange_weak(used, used + bytes, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    self.batches_charged.fetch_add(bytes, Ordering::Relaxed);
                    self.starved.store(false, Ordering::Relaxed);
                    self.publish(bytes as i64);
                    return Some(self.held(bytes));
                }
                Err(now) => used = now,
            }
        }
    }

    /// Charges `bytes` whatever is charged already: for memory that is held already and cannot be let
    /// go of before its holder's work is done (an exporter's buffered rows). It makes the next
    /// [`MemoryBudget::try_charge`] wait instead.
    pub fn charge_held(self: &Arc<Self>, bytes: u64) -> Charge {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        self.publish(bytes as i64);
        self.held(bytes)
    }

    fn held(self: &Arc<Self>, bytes: u64) -> Charge {
        Charge(vec![Arc::new(Held { budget: self.clone(), bytes })])
    }

    /// Charges `bytes`, waiting for room as long as it takes (replay and redelivery: nobody is waiting
    /// for an answer, and the data is safe in the WAL meanwhile).
    pub async fn charge(self: &Arc<Self>, bytes: u64) -> Charge {
        loop {
            if let Some(c) = self.try_charge(bytes) {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes charged for batches ([`MemoryBudget::try_charge`], [`MemoryBudget::charge`]) since the
    /// budget was made, given back or not: its growth per second is the rate at which telemetry passes
    /// through memory. Memory charged by its holder ([`MemoryBudget::charge_held`]: an index build's
    /// arena, charged whole at once) is not counted.
    pub fn batches_charged(&self) -> u64 {
        self.batches_charged.load(Ordering::Relaxed)
    }

    /// The budget's size in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether a charge was refused since the last one that fitted: something waits for room.
    pub fn starved(&self) -> bool {
        self.starved.load(Ordering::Relaxed)
    }

    /// Changes at each refused charge (waiters retry every few milliseconds while they wait).
    pub fn refusals(&self) -> tokio::sync::watch::Receiver<()> {
        self.refused.subscribe()
    }
}

/// What a batch holds of the budget; given back when the last batch holding it is dropped.
#[derive(Clone, Default)]
pub struct Charge(Vec<Arc<Held>>);

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Charge({} bytes)", self.bytes())
    }
}

impl Charge {
    /// Holds `other`'s charges too (a merge: both batches' items now live here).
    pub fn append(&mut self, other: Charge) {
        self.0.extend(other.0);
    }

    /// Bytes this charge stands for (each part once, however many batches share it).
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|h| h.bytes).sum()
    }
}

struct Held {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.publish(-(self.bytes as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_fit_the_limit_and_come_back_when_the_last_holder_drops() {
        let b = MemoryBudget::new(100);
        let first = b.try_charge(60).unwrap();
        assert!(b.try_charge(50).is_none(), "60 + 50 is over 100");
        let mut second = b.try_charge(40).unwrap();
        assert_eq!(b.used(), 100);
        // A merge holds both; a copy shares them: nothing returns until every holder is gone.
        second.append(first);
        let copy = second.clone();
        drop(second);
        assert_eq!((b.used(), copy.bytes()), (100, 100));
        drop(copy);
        assert_eq!(b.used(), 0);
        assert_eq!(b.batches_charged(), 100, "what was charged stays counted; the refused 50 never was");
    }

    #[test]
    fn held_memory_is_charged_over_the_limit_and_makes_others_wait() {
        let b = MemoryBudget::new(100);
        let held = b.charge_held(150);
        assert_eq!(b.used(), 150);
        assert!(!b.starved());
        assert!(b.try_charge(1).is_none(), "the budget is spent");
        assert!(b.starved(), "a refused charge shows");
        drop(held);
        assert!(b.try_charge(1).is_some());
        assert!(!b.starved(), "a charge that fits clears it");
        assert_eq!(b.batches_charged(), 1, "memory charged by its holder is not a batch's");
    }

    #[test]
    fn a_charge_larger_than_the_budget_goes_alone() {
        let b = MemoryBudget::new(10);
        let big = b.try_charge(1000).expect("nothing else is charged");
        assert!(b.try_charge(1).is_none());
        drop(big);
        assert!(b.try_charge(1).is_some());
    }
}
