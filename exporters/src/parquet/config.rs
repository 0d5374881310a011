//! The `parquet` exporter's settings.

use openwit_core::ConfigIssue;
use openwit_core::factory::ComponentConfig;
use openwit_core::text_index::{Spec, Table, Tokenizer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetConfig {
    /// Where files go: a local path or `file://` URL, `s3://bucket/prefix`, `gs://bucket/prefix` or
    /// `az://container/prefix`. Default: `DATA_DIR/storage`.
    pub endpoint: Option<String>,
    /// `object_store` settings for the endpoint's service (`aws_access_key_id`, `aws_endpoint`,
    /// `aws_allow_http`, `google_service_account`, `azure_storage_account_name`, …). They override the
    /// standard environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`), which are read too.
    pub storage_options: BTreeMap<String, String>,
    /// zstd level, 1 (fastest) to 22 (smallest).
    pub compression_level: i32,
    /// Rows per row group; rows are sorted by `service_name`, then `time`, within each.
    pub row_group_size: usize,
    pub rotation: Rotation,
    pub staging: Staging,
    pub retry_on_failure: Retry,
    /// The full-text index beside each logs and spans file.
    pub index: IndexSettings,
    /// Merging small stored files of one table, tenant and hour into large ones.
    pub compaction: Compaction,
    /// Deleting stored files past their age, and old batch records.
    pub retention: Retention,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            endpoint: None,
            storage_options: BTreeMap::new(),
            compression_level: 3,
            row_group_size: 128 * 1024,
            rotation: Rotation::default(),
            staging: Staging::default(),
            retry_on_failure: Retry::default(),
            index: IndexSettings::default(),
            compaction: Compaction::default(),
            retention: Retention::default(),
        }
    }
}

/// What `index.memory_megabytes` may be: Tantivy refuses an arena under 15 MB (15,000,000 bytes) or
/// of 4 GiB and more for one indexing thread.
pub const INDEX_MEMORY_MEGABYTES: std::ops::RangeInclusive<u64> = 15..=4095;

/// Which files get a full-text index, holding what.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexSettings {
    /// Build indexes at all (queries scan files without one: same answers, slower).
    pub enabled: bool,
    /// How often stable files without a usable index (interrupted, deleted, damaged) are looked for and
    /// indexed again; also done at start.
    #[serde(with = "humantime_serde")]
    pub repair_interval: Duration,
    /// Tantivy's indexing arena while a file is indexed, in MiB: a segment is written each time it
    /// fills, so less memory makes more, smaller segments for a search to visit.
    pub memory_megabytes: u64,
    pub logs: TableIndex,
    pub spans: TableIndex,
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            enabled: true,
            repair_interval: Duration::from_secs(60),
            memory_megabytes: (openwit_index::build::WRITER_HEAP >> 20) as u64,
            logs: TableIndex::default(),
            spans: TableIndex::default(),
        }
    }
}

/// One table's index.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableIndex {
    pub enabled: bool,
    /// The columns indexed (default: logs `body`, `severity_text`, `service_name`, `trace_id`,
    /// `attributes`; spans `name`, `status_message`, `events`, `attributes`).
    pub fields: Option<Vec<String>>,
    /// How text columns are cut into words: `default`, `raw`, `lowercase` or `stemming`.
    pub tokenizer: Tokenizer,
    /// Word positions, for phrase queries.
    pub positions: bool,
    /// Attribute keys indexed as `key=value` (default: every string attribute).
    pub attribute_keys: Vec<String>,
}

impl Default for TableIndex {
    fn default() -> Self {
        TableIndex {
            enabled: true,
            fields: None,
            tokenizer: Tokenizer::Default,
            positions: true,
            attribute_keys: Vec::new(),
        }
    }
}

impl IndexSettings {
    /// The spec of each table that gets an index.
    pub fn specs(&self) -> Vec<Spec> {
        if !self.enabled {
            return Vec::new();
        }
        [(Table::Logs, &self.logs), (Table::Spans, &self.spans)]
            .into_iter()
            .filter(|(_, t)| t.enabled)
            .map(|(table, t)| {
                let default = Spec::default_for(table);
                Spec {
                    table,
                    fields: t.fields.clone().unwrap_or(default.fields),
                    tokenizer: t.tokenizer,
                    positions: t.positions,
                    attribute_keys: t.attribute_keys.clone(),
                }
            })
            .collect()
    }
}

/// When an active file is finalized and uploaded.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Finalize once the file is about this big (fractions allowed: `0.5` is 512 KiB).
    pub max_megabytes: f64,
    /// Finalize once the file has been open this long, however small.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { max_megabytes: 128.0, max_age: Duration::from_secs(600) }
    }
}

/// The janitor's compaction: stored files of one table, tenant and hour (of this exporter, from every
/// daemon writing the same store) merged into files of about `target_megabytes`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Compaction {
    pub enabled: bool,
    /// How often the janitor looks for work (compaction, retention, deletion of retired files).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Size of the files compaction makes; files of half this size or more are left as they are.
    pub target_megabytes: f64,
    /// Files merged at least (fewer small files in a partition are left alone).
    pub min_files: usize,
    /// An hour's files are compacted once the hour ended this long ago (late files of an hour are
    /// merged in by a later pass).
    #[serde(with = "humantime_serde")]
    pub min_age: Duration,
    /// Replaced and expired files are deleted from the store this long after they left the catalog's
    /// stable files: longer than the longest query (`extensions.query.timeout`), so that no running
    /// query loses a file it listed.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            enabled: true,
            interval: Duration::from_secs(60),
            target_megabytes: 256.0,
            min_files: 2,
            min_age: Duration::from_secs(900),
            grace_period: Duration::from_secs(900),
        }
    }
}

/// How long stored data is kept: whole files are retired once their newest row is older than the
/// retention of their tenant (`tenants`), else of their table, else `default`. Zero keeps for ever.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    #[serde(with = "humantime_serde")]
    pub default: Duration,
    #[serde(with = "humantime_serde")]
    pub spans: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub logs: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub metrics: Option<Duration>,
    /// Per tenant, for all its tables.
    pub tenants: std::collections::BTreeMap<String, HumanDuration>,
    /// Batch records (the `batches` view) finished this long ago are deleted. Zero keeps them.
    #[serde(with = "humantime_serde")]
    pub batches: Duration,
}

/// A duration written as `90d`, `12h`, `30m`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
pub struct HumanDuration(#[serde(with = "humantime_serde")] pub Duration);

impl Retention {
    /// The retention of `table`'s files of tenants without their own (`None`: kept for ever).
    pub fn of_table(&self, table: &str) -> Option<Duration> {
        let t = match table {
            "spans" => self.spans,
            "logs" => self.logs,
            "metrics" => self.metrics,
            _ => None,
        };
        Some(t.unwrap_or(self.default)).filter(|d| !d.is_zero())
    }

    /// Whether anything is ever retired.
    pub fn any(&self) -> bool {
        ["spans", "logs", "metrics"].iter().any(|t| self.of_table(t).is_some())
            || self.tenants.values().any(|d| !d.0.is_zero())
            || !self.batches.is_zero()
    }
}

/// The local directory where files are written and wait for their upload.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Staging {
    /// Default: `DATA_DIR/parquet/<exporter id>`.
    pub directory: Option<PathBuf>,
    /// Finalized files waiting for the store may take this much disk (fractions allowed); beyond it
    /// the exporter stops taking batches (the pipeline, then the receivers, push back) until uploads
    /// catch up.
    pub max_megabytes: f64,
}

impl Default for Staging {
    fn default() -> Self {
        Staging { directory: None, max_megabytes: 4096.0 }
    }
}

/// How uploads (and catalog writes) are retried: with exponential backoff, for as long as it takes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { initial_interval: Duration::from_millis(500), max_interval: Duration::from_secs(30) }
    }
}

impl ComponentConfig for ParquetConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if let Some(e) = &self.endpoint {
            openwit_storage::Endpoint::parse(e, &self.storage_options)
                .map_err(|e| ConfigIssue::new(e.key, e.message))?;
        } else if !self.storage_options.is_empty() {
            return Err(ConfigIssue::new("storage_options", "apply to s3://, gs:// and az:// endpoints; set endpoint"));
        }
        if !(1..=22).contains(&self.compression_level) {
            return Err(ConfigIssue::new("compression_level", "must be between 1 and 22 (zstd levels)"));
        }
        if self.row_group_size == 0 {
            return Err(ConfigIssue::new("row_group_size", "must be at least 1 row"));
        }
        if !(self.rotation.max_megabytes > 0.0 && self.rotation.max_megabytes.is_finite()) {
            return Err(ConfigIssue::new("rotation.max_megabytes", "must be a positive number of megabytes"));
        }
        if self.rotation.max_age.is_zero() {
            return Err(ConfigIssue::new("rotation.max_age", "must be longer than zero (for example 10m)"));
        }
        if !(self.staging.max_megabytes > 0.0 && self.staging.max_megabytes.is_finite()) {
            return Err(ConfigIssue::new("staging.max_megabytes", "must be a positive number of megabytes"));
        }
        if self.retry_on_failure.initial_interval.is_zero()
            || self.retry_on_failure.max_interval < self.retry_on_failure.initial_interval
        {
            return Err(ConfigIssue::new(
                "retry_on_failure",
                "initial_interval must be above zero and max_interval at least initial_interval",
            ));
        }
        if !(INDEX_MEMORY_MEGABYTES.contains(&self.index.memory_megabytes)) {
            return Err(ConfigIssue::new(
                "index.memory_megabytes",
                format!(
                    "must be between {} and {} (Tantivy's indexing arena for one thread)",
                    INDEX_MEMORY_MEGABYTES.start(),
                    INDEX_MEMORY_MEGABYTES.end()
                ),
            ));
        }
        if self.index.repair_interval.is_zero() {
            return Err(ConfigIssue::new("index.repair_interval", "must be longer than zero (for example 1m)"));
        }
        let c = &self.compaction;
        if c.interval.is_zero() {
            return Err(ConfigIssue::new("compaction.interval", "must be longer than zero (for example 1m)"));
        }
        if !(c.target_megabytes > 0.0 && c.target_megabytes.is_finite()) {
            return Err(ConfigIssue::new("compaction.target_megabytes", "must be a positive number of megabytes"));
        }
        if c.min_files < 2 {
            return Err(ConfigIssue::new(
                "compaction.min_files",
                "must be at least 2 (merging one file gains nothing)",
            ));
        }
        for t in self.retention.tenants.keys() {
            openwit_core::TenantId::new(t)
                .map_err(|e| ConfigIssue::new(format!("retention.tenants.{t}"), e.to_string()))?;
        }
        for spec in self.index.specs() {
            spec.validate().map_err(|m| ConfigIssue::new(format!("index.{}.fields", spec.table.name()), m))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    fn issue(yaml: &str) -> (String, String) {
        let raw: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
        match super::super::factory().parse(&raw) {
            Ok(_) => panic!("{yaml} was accepted"),
            Err(i) => (i.path, i.message),
        }
    }

    #[test]
    fn defaults_are_valid_and_sensible() {
        let f = super::super::factory();
        assert!(f.parse(&serde_yaml_ng::Value::Null).is_ok());
        let cfg: super::ParquetConfig = openwit_core::factory::parse_section(&serde_yaml_ng::Value::Null).unwrap();
        assert_eq!((cfg.rotation.max_megabytes, cfg.rotation.max_age.as_secs()), (128.0, 600));
        assert_eq!(cfg.compression_level, 3);
        assert!(f.reads_columnar());
        let specs = cfg.index.specs();
        assert_eq!(specs.len(), 2, "logs and spans are indexed by default");
        assert_eq!(specs[0], openwit_core::text_index::Spec::default_for(openwit_core::text_index::Table::Logs));
        let off: super::ParquetConfig =
            openwit_core::factory::parse_section(&serde_yaml_ng::from_str("index: {enabled: false}").unwrap()).unwrap();
        assert!(off.index.specs().is_empty());
    }

    #[test]
    fn every_bad_setting_is_named_with_what_to_do() {
        let (p, m) = issue("endpoint: ftp://host/x");
        assert_eq!(p, "endpoint");
        assert!(m.contains("unsupported scheme \"ftp\"") && m.contains("s3://"), "{m}");
        let (p, m) = issue("endpoint: s3:///prefix");
        assert_eq!(p, "endpoint");
        assert!(m.contains("names no bucket"), "{m}");
        let (p, m) = issue("endpoint: s3://b/p\nstorage_options: {aws_secret_acces_key: x}");
        assert_eq!(p, "storage_options.aws_secret_acces_key");
        assert!(m.contains("is not a S3 setting"), "{m}");
        // A key of another service is refused too.
        let (p, _) = issue("endpoint: az://c/p\nstorage_options: {aws_region: x}");
        assert_eq!(p, "storage_options.aws_region");
        let (p, m) = issue("storage_options: {aws_region: x}");
        assert_eq!(p, "storage_options");
        assert!(m.contains("set endpoint"), "{m}");
        assert_eq!(issue("compression_level: 23").0, "compression_level");
        assert_eq!(issue("row_group_size: 0").0, "row_group_size");
        assert_eq!(issue("rotation: {max_megabytes: 0}").0, "rotation.max_megabytes");
        assert_eq!(issue("rotation: {max_age: 0s}").0, "rotation.max_age");
        assert_eq!(issue("staging: {max_megabytes: -1}").0, "staging.max_megabytes");
        assert_eq!(issue("retry_on_failure: {initial_interval: 5s, max_interval: 1s}").0, "retry_on_failure");
        let (p, m) = issue("index: {logs: {fields: [body, nme]}}");
        assert_eq!(p, "index.logs.fields");
        assert!(m.contains("nme cannot be indexed in logs") && m.contains("severity_text"), "{m}");
        let (p, m) = issue("index: {spans: {tokenizer: porter}}");
        assert_eq!(p, "index.spans.tokenizer");
        assert!(m.contains("stemming"), "{m}");
        assert_eq!(issue("index: {logs: {fields: []}}").0, "index.logs.fields");
        assert_eq!(issue("index: {repair_interval: 0s}").0, "index.repair_interval");
        assert_eq!(issue("index: {memory_megabytes: 14}").0, "index.memory_megabytes");
        assert_eq!(issue("index: {memory_megabytes: 4096}").0, "index.memory_megabytes");
        let (p, m) = issue("rotation: {max_size: 3}");
        assert_eq!(p, "rotation.max_size");
        assert!(m.contains("unknown field `max_size`"), "{m}");
    }
}
