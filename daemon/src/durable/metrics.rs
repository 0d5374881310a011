//! The durable stage's own metrics (`openwit_wal_*`), registered once at start.

use openwit_core::telemetry::{Counter, Gauge, Histogram, Telemetry, exponential_buckets, labels};
use openwit_wal::WalStats;

pub struct WalMetrics {
    disk_bytes: Gauge,
    segments: Gauge,
    pending_batches: Gauge,
    /// Seconds each group commit (write + fdatasync) took.
    pub commit_seconds: Histogram,
    /// WAL batches by outcome.
    pub written: Counter,
    pub completed: Counter,
    pub failed: Counter,
    pub replayed: Counter,
    pub quarantined_records: Counter,
    /// Segments that could not be read at start, by name.
    pub quarantined_segments: openwit_core::telemetry::Counters,
}

impl WalMetrics {
    pub fn register(t: &Telemetry) -> WalMetrics {
        let batches =
            t.counters("openwit_wal_batches", "WAL batches by outcome (written, completed, failed, replayed)");
        let outcome = |o: &str| batches.get_or_create(&labels(&[("outcome", o)])).clone();
        WalMetrics {
            disk_bytes: t.gauge("openwit_wal_disk_bytes", "Bytes the write-ahead log holds on disk"),
            segments: t.gauge("openwit_wal_segments", "Segment files in the write-ahead log"),
            pending_batches: t.gauge("openwit_wal_pending_batches", "WAL batches not yet stored by every exporter"),
            commit_seconds: t.histogram(
                "openwit_wal_commit_seconds",
                "Duration of each WAL group commit (write + fdatasync)",
                || Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            ),
            written: outcome("written"),
            completed: outcome("completed"),
            failed: outcome("failed"),
            replayed: outcome("replayed"),
            quarantined_records: t
                .counter("openwit_wal_quarantined_records", "Corrupt WAL records quarantined at start"),
            quarantined_segments: t.counters(
                "openwit_wal_quarantined_segments",
                "WAL segments that could not be read at start, moved to quarantine/ (label: the segment's file name)",
            ),
        }
    }

    /// The WAL's size and backlog, as they are now.
    pub fn publish(&self, s: &WalStats) {
        self.disk_bytes.set(s.disk_bytes as i64);
        self.segments.set(s.segments as i64);
        self.pending_batches.set(s.pending_batches as i64);
    }
}
