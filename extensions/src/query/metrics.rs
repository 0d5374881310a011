//! The query extension's own metrics (`openwit_query_*`), registered when it starts.

use super::engine::{self, Running};
use openwit_core::telemetry::{Counter, Counters, Histogram, Telemetry, exponential_buckets, labels};
use std::time::Instant;

pub struct QueryMetrics {
    /// Queries by outcome (`ok`, `invalid`, `limit`, `timeout`, `unavailable`, `error`).
    requests: Counters,
    seconds: Histogram,
    files_considered: Counter,
    files_scanned: Counter,
    row_groups_considered: Counter,
    pruned_by_statistics: Counter,
    pruned_by_bloom_filter: Counter,
    row_groups_scanned: Counter,
}

impl QueryMetrics {
    pub fn register(t: &Telemetry) -> QueryMetrics {
        let pruned = t.counters(
            "openwit_query_row_groups_pruned",
            "Row groups skipped, by what excluded them (statistics, bloom_filter)",
        );
        let by = |b: &str| pruned.get_or_create(&labels(&[("by", b)])).clone();
        QueryMetrics {
            requests: t.counters("openwit_query_requests", "SQL queries by outcome"),
            seconds: t.histogram("openwit_query_seconds", "Duration of SQL queries, to the last row", || {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            files_considered: t.counter(
                "openwit_query_files_considered",
                "Parquet files of the queried tenant and tables in the catalog",
            ),
            files_scanned: t.counter(
                "openwit_query_files_scanned",
                "Parquet files opened by queries after pruning by time in the catalog",
            ),
            row_groups_considered: t
                .counter("openwit_query_row_groups_considered", "Row groups checked against a query's predicate"),
            pruned_by_statistics: by("statistics"),
            pruned_by_bloom_filter: by("bloom_filter"),
            row_groups_scanned: t.counter(
                "openwit_query_row_groups_scanned",
                "Row groups read after pruning (of those checked against a predicate)",
            ),
        }
    }

    /// Counts one finished query.
    pub fn record(&self, started: Instant, outcome: &str, running: Option<&Running>) {
        // Outcomes are a handful of constant labels: resolving here costs a lookup per query, not per row.
        self.requests.get_or_create(&labels(&[("outcome", outcome)])).inc();
        self.seconds.observe(started.elapsed().as_secs_f64());
        if let Some(r) = running {
            let c = engine::scan_counts(&r.plan);
            self.files_considered.inc_by(c.files_considered as u64);
            self.files_scanned.inc_by(c.files_scanned as u64);
            self.row_groups_considered.inc_by(c.row_groups_considered as u64);
            self.pruned_by_statistics.inc_by(c.row_groups_pruned_by_statistics as u64);
            self.pruned_by_bloom_filter.inc_by(c.row_groups_pruned_by_bloom_filter as u64);
            self.row_groups_scanned.inc_by(c.row_groups_scanned as u64);
        }
    }
}
