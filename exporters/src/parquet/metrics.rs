//! The Parquet exporter's own metrics (`openwit_parquet_*`), resolved for one exporter when it is built.

use openwit_core::Signal;
use openwit_core::telemetry::{Counter, Counters, Gauge, Telemetry, labels};

/// Counters per table (spans, logs, metrics).
struct PerTable([Counter; 3]);

impl PerTable {
    fn get(&self, signal: Signal) -> &Counter {
        &self.0[match signal {
            Signal::Traces => 0,
            Signal::Logs => 1,
            Signal::Metrics => 2,
        }]
    }
}

pub struct ParquetMetrics {
    files: PerTable,
    rows: PerTable,
    bytes: PerTable,
    /// Failed attempts of the `catalog` and `upload` steps (each is retried).
    pub catalog_failures: Counter,
    pub upload_failures: Counter,
    /// Bytes of finalized files waiting for their store.
    pub staging_bytes: Gauge,
    indexes: Counters,
    index_bytes: Counters,
    compactions: Counters,
    compacted_files: Counter,
    retired_files: Counters,
    deleted_files: Counters,
    deleted_bytes: Counters,
    batches_pruned: Counter,
    exporter: String,
}

impl ParquetMetrics {
    pub fn register(t: &Telemetry, exporter: &str) -> ParquetMetrics {
        let per_table = |name: &str, help: &str| {
            let f = t.counters(name, help);
            PerTable([Signal::Traces, Signal::Logs, Signal::Metrics].map(|s| {
                f.get_or_create(&labels(&[("exporter", exporter), ("table", openwit_core::columnar::table_name(s))]))
                    .clone()
            }))
        };
        let failures = t.counters(
            "openwit_parquet_failures",
            "Failed attempts to record or upload a Parquet file (each is retried)",
        );
        let step = |s: &str| failures.get_or_create(&labels(&[("exporter", exporter), ("step", s)])).clone();
        ParquetMetrics {
            files: per_table("openwit_parquet_files", "Parquet files stored (verified, recorded stable)"),
            rows: per_table("openwit_parquet_rows", "Rows in stored Parquet files"),
            bytes: per_table("openwit_parquet_bytes", "Bytes of stored Parquet files"),
            catalog_failures: step("catalog"),
            upload_failures: step("upload"),
            staging_bytes: t
                .gauges("openwit_parquet_staging_bytes", "Bytes of finalized Parquet files waiting for their store")
                .get_or_create(&labels(&[("exporter", exporter)]))
                .clone(),
            indexes: t.counters(
                "openwit_parquet_indexes",
                "Full-text indexes of stored files, by outcome: built, rebuilt (repair), failed",
            ),
            index_bytes: t.counters("openwit_parquet_index_bytes", "Bytes of full-text indexes stored"),
            compactions: t.counters(
                "openwit_parquet_compactions",
                "Compactions of a partition's small files, by outcome: done, failed (the files stay as they were)",
            ),
            compacted_files: t
                .counters("openwit_parquet_compacted_files", "Stored files replaced by compaction outputs")
                .get_or_create(&labels(&[("exporter", exporter)]))
                .clone(),
            retired_files: t.counters(
                "openwit_parquet_retired_files",
                "Stored files retired (deleted after the grace period), by reason: compaction, retention",
            ),
            deleted_files: t.counters(
                "openwit_parquet_deleted_files",
                "Retired files deleted from the store with their indexes, by reason",
            ),
            deleted_bytes: t.counters("openwit_parquet_deleted_bytes", "Bytes of retired files deleted, by reason"),
            batches_pruned: t
                .counters("openwit_parquet_batches_pruned", "Finished batch records deleted by retention")
                .get_or_create(&labels(&[("exporter", exporter)]))
                .clone(),
            exporter: exporter.to_string(),
        }
    }

    /// An index of a `table` file was built (`how`: built, rebuilt) or failed.
    pub fn indexed(&self, table: &str, how: &str, bytes: u64) {
        let l = labels(&[("exporter", &self.exporter), ("table", table)]);
        let mut with_outcome = l.clone();
        with_outcome.push(("outcome".to_string(), how.to_string()));
        self.indexes.get_or_create(&with_outcome).inc();
        if bytes > 0 {
            self.index_bytes.get_or_create(&l).inc_by(bytes);
        }
    }

    /// A compaction ended (`outcome`: done, failed), replacing `inputs` files.
    pub fn compacted(&self, outcome: &str, inputs: u64) {
        self.compactions.get_or_create(&labels(&[("exporter", &self.exporter), ("outcome", outcome)])).inc();
        self.compacted_files.inc_by(inputs);
        if inputs > 0 {
            self.retired(openwit_catalog::BY_COMPACTION, inputs);
        }
    }

    pub fn retired(&self, reason: &str, files: u64) {
        self.retired_files.get_or_create(&labels(&[("exporter", &self.exporter), ("reason", reason)])).inc_by(files);
    }

    pub fn deleted(&self, reason: &str, bytes: u64) {
        let l = labels(&[("exporter", &self.exporter), ("reason", reason)]);
        self.deleted_files.get_or_create(&l).inc();
        self.deleted_bytes.get_or_create(&l).inc_by(bytes);
    }

    pub fn batches_pruned(&self, n: u64) {
        self.batches_pruned.inc_by(n);
    }

    /// A file of `signal`'s table is stored.
    pub fn stored(&self, signal: Signal, rows: u64, bytes: u64) {
        self.files.get(signal).inc();
        self.rows.get(signal).inc_by(rows);
        self.bytes.get(signal).inc_by(bytes);
    }
}
