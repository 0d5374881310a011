//! The `testing` exporter: stores batches in a file, at most once per item, optionally slowly, failing
//! or panicking on demand. It exists for OpenWit's own end-to-end tests (backpressure, shutdown
//! draining, crash recovery, supervision, failed batches) and is registered only when the environment
//! variable `OPENWIT_TEST_COMPONENTS=1` is set, so it never appears in a production config.
//!
//! Record format: `u32` length of the rest (big-endian), `u32` item count n, n × (16-byte WAL batch id,
//! `u32` item index), then the export request as protobuf. Each record is fdatasynced before the export
//! succeeds, and items already stored (by WAL batch id and index) are dropped, so replays after a crash
//! store nothing twice — the contract the Parquet exporter keeps through the catalog.

use crate::file::{FileExporter, FileFormat};
use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{Batch, BatchId, BuildEnv, ComponentId, ConfigIssue, ExportError, Exporter, Factory, Signal};
use serde::Deserialize;
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestingConfig {
    pub path: PathBuf,
    /// Sleep this long before writing each batch.
    #[serde(with = "humantime_serde")]
    pub delay: Option<Duration>,
    /// Fail this many exports (retryably) before succeeding, to exercise retries.
    pub fail_first: u32,
    /// While this file exists, every export fails with a permanent error (an operator "fixes" the
    /// exporter by deleting it).
    pub fail_permanently_while: Option<PathBuf>,
    /// Panic once, inside the Nth export call this exporter id makes in the process (0: never).
    pub panic_on_export: u64,
    /// Panic inside every export of a batch whose protobuf contains this text (a poison batch).
    pub panic_on_text: Option<String>,
}

impl ComponentConfig for TestingConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigIssue::new("path", "is required"));
        }
        Ok(())
    }
}

/// The factory, or `None` unless test components are enabled.
pub fn factory_if_enabled() -> Option<Arc<dyn Factory<dyn Exporter>>> {
    openwit_core::testing::enabled().then(|| {
        typed::<TestingConfig, dyn Exporter>(
            "testing",
            &[],
            &Signal::ALL,
            "test only: stores each item at most once in a file, optionally slowly, failing or panicking on demand",
            |id: &ComponentId, cfg: &TestingConfig, _env: &BuildEnv| {
                Ok(Box::new(TestingExporter::open(format!("exporter {id}"), cfg.clone())?))
            },
        )
    })
}

/// One stored record: the (WAL batch id, item index) of each item, and the request's protobuf bytes.
pub type StoredRecord = (Vec<(BatchId, u32)>, Vec<u8>);

/// Parses a testing-exporter file: each complete record's `(items, request bytes)`. A torn record at
/// the end (a crash mid-write) ends the list and its offset is returned.
pub fn read_records(bytes: &[u8]) -> (Vec<StoredRecord>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while bytes.len() >= pos + 8 {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let Some(rec) = bytes.get(pos + 4..pos + 4 + len) else {
            break;
        };
        let n = u32::from_be_bytes(rec[..4].try_into().unwrap_or_default()) as usize;
        let ids_end = 4 + n * 20;
        if rec.len() < ids_end {
            break;
        }
        let items = rec[4..ids_end]
            .chunks_exact(20)
            .map(|c| {
                let id = BatchId::from_slice(&c[..16]).unwrap_or_default();
                (id, u32::from_be_bytes(c[16..20].try_into().unwrap_or_default()))
            })
            .collect();
        out.push((items, rec[ids_end..].to_vec()));
        pos += 4 + len;
    }
    (out, pos)
}

struct TestingExporter {
    /// Counts export calls across the instances of this exporter id (see `panic_on_export`).
    key: String,
    cfg: TestingConfig,
    path: PathBuf,
    delay: Duration,
    fail_left: u32,
    file: std::fs::File,
    stored: HashSet<(BatchId, u32)>,
}

impl TestingExporter {
    fn open(key: String, cfg: TestingConfig) -> anyhow::Result<TestingExporter> {
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let existing = std::fs::read(&cfg.path).unwrap_or_default();
        let (records, valid) = read_records(&existing);
        let stored = records.into_iter().flat_map(|(items, _)| items).collect();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&cfg.path)?;
        // Drop a record torn by a crash: it was never reported as stored.
        file.set_len(valid as u64)?;
        Ok(TestingExporter {
            key,
            path: cfg.path.clone(),
            delay: cfg.delay.unwrap_or_default(),
            fail_left: cfg.fail_first,
            cfg,
            file,
            stored,
        })
    }
}

#[async_trait]
impl Exporter for TestingExporter {
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        tokio::time::sleep(self.delay).await;
        if openwit_core::testing::nth_call(&self.key, self.cfg.panic_on_export) {
            panic!("{}: panicking in export call {} on purpose (panic_on_export)", self.key, self.cfg.panic_on_export);
        }
        if let Some(text) = &self.cfg.panic_on_text {
            let body = FileExporter::encode(FileFormat::Proto, &batch.payload);
            if body.windows(text.len().max(1)).any(|w| w == text.as_bytes()) {
                panic!("{}: the batch contains {text:?}, panicking on purpose (panic_on_text)", self.key);
            }
        }
        if let Some(p) = &self.cfg.fail_permanently_while
            && p.exists()
        {
            return Err(ExportError::Permanent(format!(
                "testing exporter: failing permanently while {} exists (fail_permanently_while)",
                p.display()
            )));
        }
        if self.fail_left > 0 {
            self.fail_left -= 1;
            return Err(ExportError::Retryable("testing exporter: failing on purpose (fail_first)".into()));
        }
        let items: Vec<(BatchId, u32)> = batch.lineage.items().collect();
        let keep: Vec<bool> = items.iter().map(|i| !self.stored.contains(i)).collect();
        let fresh: Vec<(BatchId, u32)> = items.iter().zip(&keep).filter(|(_, k)| **k).map(|(i, _)| *i).collect();
        if !items.is_empty() && fresh.is_empty() {
            return Ok(());
        }
        // Only a partly stored batch needs a filtered copy.
        let filtered;
        let payload = if items.is_empty() || fresh.len() == items.len() {
            &batch.payload
        } else {
            let mut p = batch.payload.clone();
            p.retain_items(|i| keep[i]);
            filtered = p;
            &filtered
        };
        let body = FileExporter::encode(FileFormat::Proto, payload);
        let mut rec = Vec::with_capacity(8 + fresh.len() * 20 + body.len());
        let len = 4 + fresh.len() * 20 + body.len() - 4;
        rec.extend_from_slice(&(len as u32).to_be_bytes());
        rec.extend_from_slice(&(fresh.len() as u32).to_be_bytes());
        for (id, i) in &fresh {
            rec.extend_from_slice(id.as_bytes());
            rec.extend_from_slice(&i.to_be_bytes());
        }
        // `encode` already put a 4-byte length in front of the protobuf; the record's own length covers it.
        rec.extend_from_slice(&body[4..]);
        let path = self.path.display().to_string();
        let fail = |e: std::io::Error| ExportError::Retryable(format!("cannot write {path}: {e}"));
        self.file.write_all(&rec).map_err(fail)?;
        self.file.sync_data().map_err(fail)?;
        self.stored.extend(fresh);
        Ok(())
    }
}
