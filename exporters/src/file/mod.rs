//! The `file` exporter: appends each batch to a file, as OTLP/JSON lines or length-prefixed protobuf
//! (the Collector's `file` exporter formats); with `group_by`, one file per value of a resource
//! attribute (`group_by`).

mod group_by;

use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{
    Batch, BuildEnv, ComponentId, ConfigIssue, ExportError, Exporter, Factory, Payload, Signal, otlp_json,
};
use prost::Message;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How records are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// One OTLP/JSON export request per line.
    #[default]
    Json,
    /// Each export request as protobuf, preceded by its length as a 4-byte big-endian integer.
    Proto,
}

/// The `file` exporter's config (the Collector's keys).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub path: PathBuf,
    pub format: FileFormat,
    /// Append to an existing file instead of truncating it at start.
    pub append: bool,
    /// `zstd`: each record is compressed and written with a 4-byte big-endian length before it.
    pub compression: String,
    /// Accepted: every batch is written and flushed before it counts as stored, which is sooner.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Option<Duration>,
    /// Size-based rotation with numbered backups, as the Collector's (lumberjack).
    pub rotation: Option<Rotation>,
    /// One file per value of a resource attribute: `*` in `path` is replaced by the value.
    pub group_by: Option<GroupBy>,
}

/// `rotation`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Rotate once the file would grow past this.
    pub max_megabytes: u64,
    /// Delete backups older than this many days (0: keep).
    pub max_days: u64,
    /// Keep at most this many backups (0: all).
    pub max_backups: usize,
    /// Refused when true: backups are named in UTC (the daemon does not read the local time zone).
    pub localtime: bool,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { max_megabytes: 100, max_days: 0, max_backups: 100, localtime: false }
    }
}

/// `group_by`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupBy {
    pub enabled: bool,
    /// The resource attribute whose (string) value replaces `*` in `path`.
    pub resource_attribute: String,
    /// Files kept open at once; the least recently written is closed first.
    pub max_open_files: usize,
}

impl Default for GroupBy {
    fn default() -> GroupBy {
        GroupBy { enabled: false, resource_attribute: "fileexporter.path_segment".into(), max_open_files: 100 }
    }
}

impl ComponentConfig for FileConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigIssue::new("path", "is required: the file to write to"));
        }
        if !["", "zstd"].contains(&self.compression.as_str()) {
            return Err(ConfigIssue::new("compression", format!("{:?}: only zstd is supported", self.compression)));
        }
        if self.rotation.as_ref().is_some_and(|r| r.localtime) {
            return Err(ConfigIssue::new(
                "rotation.localtime",
                "is not supported: backups are named in UTC (the daemon does not read the local time zone); remove it",
            ));
        }
        if self.rotation.as_ref().is_some_and(|r| r.max_megabytes == 0) {
            return Err(ConfigIssue::new("rotation.max_megabytes", "must be at least 1"));
        }
        if let Some(g) = self.group_by.as_ref().filter(|g| g.enabled) {
            let path = self.path.to_string_lossy();
            let issue = |m: &str| Err(ConfigIssue::new("path", m));
            if path.matches('*').count() != 1 {
                return issue("must contain exactly one * when group_by is enabled (it is replaced by the value)");
            }
            if path.starts_with('*') {
                return issue("must not start with * when group_by is enabled");
            }
            if g.resource_attribute.is_empty() {
                return Err(ConfigIssue::new("group_by.resource_attribute", "must not be empty"));
            }
            if g.max_open_files == 0 {
                return Err(ConfigIssue::new("group_by.max_open_files", "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// The `file` exporter factory.
pub fn factory() -> Arc<dyn Factory<dyn Exporter>> {
    typed::<FileConfig, dyn Exporter>(
        "file",
        &[],
        &Signal::ALL,
        "writes telemetry to a file as OTLP/JSON lines or length-prefixed protobuf",
        |id: &ComponentId, cfg: &FileConfig, env: &BuildEnv| {
            let mut e = FileExporter::new(cfg.path.clone(), cfg.format, cfg.append);
            e.zstd = cfg.compression == "zstd";
            e.rotation = cfg.rotation.clone();
            Ok(match cfg.group_by.as_ref().filter(|g| g.enabled) {
                Some(g) => Box::new(group_by::GroupingExporter::new(e, g, &id.to_string(), &env.telemetry)),
                None => Box::new(e),
            })
        },
    )
}

/// Writes encoded export requests to a file; shared with the `testing` exporter.
pub struct FileExporter {
    path: PathBuf,
    format: FileFormat,
    append: bool,
    zstd: bool,
    rotation: Option<Rotation>,
    file: Option<tokio::fs::File>,
    /// Bytes in the open file (for rotation).
    size: u64,
}

impl FileExporter {
    pub fn new(path: PathBuf, format: FileFormat, append: bool) -> FileExporter {
        FileExporter { path, format, append, zstd: false, rotation: None, file: None, size: 0 }
    }

    /// An exporter with these settings writing to another path (closed until the first write).
    fn for_path(&self, path: PathBuf, append: bool) -> FileExporter {
        FileExporter { path, append, rotation: self.rotation.clone(), file: None, size: 0, ..*self }
    }

    /// The record for one batch in the configured format.
    pub fn encode(format: FileFormat, p: &Payload) -> Vec<u8> {
        match format {
            FileFormat::Json => {
                let mut v = match p {
                    Payload::Traces(r) => otlp_json::encode(r),
                    Payload::Metrics(r) => otlp_json::encode(r),
                    Payload::Logs(r) => otlp_json::encode(r),
                };
                v.push(b'\n');
                v
            }
            FileFormat::Proto => {
                let body = match p {
                    Payload::Traces(r) => r.encode_to_vec(),
                    Payload::Metrics(r) => r.encode_to_vec(),
                    Payload::Logs(r) => r.encode_to_vec(),
                };
                let mut v = Vec::with_capacity(body.len() + 4);
                v.extend_from_slice(&(body.len() as u32).to_be_bytes());
                v.extend_from_slice(&body);
                v
            }
        }
    }

    async fn file(&mut self) -> Result<&mut tokio::fs::File, ExportError> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir).await.map_err(|e| self.io_error(e))?;
            }
            let mut opts = tokio::fs::OpenOptions::new();
            opts.create(true);
            if self.append {
                opts.append(true)
            } else {
                opts.write(true).truncate(true)
            };
            let f = opts.open(&self.path).await.map_err(|e| self.io_error(e))?;
            self.size = f.metadata().await.map(|m| m.len()).unwrap_or(0);
            self.file = Some(f);
        }
        self.file.as_mut().ok_or_else(|| ExportError::Retryable("file not open".into()))
    }

    /// Renames the full file to a timestamped backup (`name-2026-11-30T23-59-59.123.ext`), then prunes
    /// backups by `max_backups` and `max_days`. The next write opens a new file.
    async fn rotate(&mut self, r: &Rotation) -> Result<(), ExportError> {
        if let Some(f) = self.file.take() {
            f.sync_all().await.map_err(|e| self.io_error(e))?;
        }
        let (stem, ext) = name_parts(&self.path);
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]-[minute]-[second].[subsecond digits:3]"
            ))
            .unwrap_or_default();
        let backup = self.path.with_file_name(format!("{stem}-{stamp}{ext}"));
        tokio::fs::rename(&self.path, &backup).await.map_err(|e| self.io_error(e))?;
        self.size = 0;
        // Appending to the new file from now on: the backup holds what was there.
        self.append = true;
        prune(&self.path, r).await;
        Ok(())
    }

    fn io_error(&self, e: std::io::Error) -> ExportError {
        ExportError::Retryable(format!("cannot write {}: {e}", self.path.display()))
    }
}

#[async_trait]
impl Exporter for FileExporter {
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let mut record = Self::encode(self.format, &batch.payload);
        if self.zstd {
            let packed = zstd::encode_all(&record[..], 3)
                .map_err(|e| ExportError::Permanent(format!("cannot compress a record: {e}")))?;
            record = Vec::with_capacity(packed.len() + 4);
            record.extend_from_slice(&(packed.len() as u32).to_be_bytes());
            record.extend_from_slice(&packed);
        }
        if let Some(r) = self.rotation.clone() {
            self.file().await?;
            if self.size > 0 && self.size + record.len() as u64 > r.max_megabytes * 1024 * 1024 {
                self.rotate(&r).await?;
            }
        }
        let path = self.path.display().to_string();
        let f = self.file().await?;
        f.write_all(&record).await.map_err(|e| ExportError::Retryable(format!("cannot write {path}: {e}")))?;
        f.flush().await.map_err(|e| ExportError::Retryable(format!("cannot write {path}: {e}")))?;
        self.size += record.len() as u64;
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), ExportError> {
        if let Some(f) = self.file.as_mut() {
            f.sync_all()
                .await
                .map_err(|e| ExportError::Retryable(format!("cannot sync {}: {e}", self.path.display())))?;
        }
        Ok(())
    }
}

/// `("logs", ".json")` for `dir/logs.json`.
fn name_parts(path: &std::path::Path) -> (String, String) {
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    (stem, ext)
}

/// Deletes the backups of `path` beyond `max_backups` (newest kept) and older than `max_days`.
async fn prune(path: &std::path::Path, r: &Rotation) {
    let (stem, ext) = name_parts(path);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let Ok(mut rd) = tokio::fs::read_dir(dir).await else { return };
    let mut backups = Vec::new();
    while let Ok(Some(e)) = rd.next_entry().await {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(&format!("{stem}-")) && name.ends_with(&ext) && e.path() != path {
            backups.push((name, e.path()));
        }
    }
    // The timestamp in the name sorts as time.
    backups.sort();
    let cutoff =
        (r.max_days > 0).then(|| std::time::SystemTime::now() - std::time::Duration::from_secs(r.max_days * 86_400));
    let keep_from = if r.max_backups > 0 { backups.len().saturating_sub(r.max_backups) } else { 0 };
    for (i, (_, p)) in backups.iter().enumerate() {
        let too_many = i < keep_from;
        let too_old = match cutoff {
            Some(c) => tokio::fs::metadata(p).await.and_then(|m| m.modified()).is_ok_and(|m| m < c),
            None => false,
        };
        if (too_many || too_old)
            && let Err(e) = tokio::fs::remove_file(p).await
        {
            tracing::warn!("file exporter: cannot delete the old backup {}: {e}", p.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openwit_core::TenantId;

    fn batch(body: &str) -> Batch {
        Batch::new(TenantId::new("t").unwrap(), Payload::Logs(openwit_core::otlp_json::decode(
            format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{body}"}}}}]}}]}}]}}"#).as_bytes(),
        ).unwrap()))
    }

    #[tokio::test]
    async fn rotation_keeps_files_under_the_size_and_the_newest_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.json");
        let mut e = FileExporter::new(path.clone(), FileFormat::Json, false);
        e.rotation = Some(Rotation { max_megabytes: 1, max_days: 0, max_backups: 2, localtime: false });
        let big = "x".repeat(300 * 1024);
        for _ in 0..10 {
            e.export(&batch(&big)).await.unwrap();
            // Backups are named to the millisecond.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        e.shutdown().await.unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "the file and two backups: {names:?}");
        assert!(names.iter().any(|n| n == "logs.json"));
        assert!(names.iter().filter(|n| n.starts_with("logs-") && n.ends_with(".json")).count() == 2, "{names:?}");
        for n in &names {
            assert!(std::fs::metadata(dir.path().join(n)).unwrap().len() <= 1024 * 1024, "{n}");
        }
    }

    #[tokio::test]
    async fn zstd_records_are_length_prefixed_and_decode_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.bin");
        let mut e = FileExporter::new(path.clone(), FileFormat::Proto, false);
        e.zstd = true;
        e.export(&batch("a")).await.unwrap();
        e.export(&batch("b")).await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut rest = &bytes[..];
        let mut n = 0;
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let plain = zstd::decode_all(&rest[4..4 + len]).unwrap();
            let inner = u32::from_be_bytes(plain[..4].try_into().unwrap()) as usize;
            assert_eq!(inner + 4, plain.len());
            rest = &rest[4 + len..];
            n += 1;
        }
        assert_eq!(n, 2);
    }

    #[test]
    fn keys_the_exporter_cannot_apply_are_refused_with_the_reason() {
        let parse = |y: &str| -> FileConfig { serde_yaml_ng::from_str(y).unwrap() };
        assert_eq!(parse("path: x\ncompression: gzip").validate().unwrap_err().path, "compression");
        assert_eq!(parse("path: x\ngroup_by: {enabled: true}").validate().unwrap_err().path, "path");
        assert_eq!(parse("path: '*/x'\ngroup_by: {enabled: true}").validate().unwrap_err().path, "path");
        assert_eq!(parse("path: 'a/*/*'\ngroup_by: {enabled: true}").validate().unwrap_err().path, "path");
        let bad = parse("path: 'a/*.json'\ngroup_by: {enabled: true, max_open_files: 0}").validate().unwrap_err();
        assert_eq!(bad.path, "group_by.max_open_files");
        assert!(parse("path: 'a/*.json'\ngroup_by: {enabled: true}").validate().is_ok());
        assert!(
            parse("path: x\nflush_interval: 1s\nrotation: {max_megabytes: 10}\ngroup_by: {enabled: false}")
                .validate()
                .is_ok()
        );
    }
}
