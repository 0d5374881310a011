//! The `file` exporter: appends each batch to a file, as OTLP/JSON lines or length-prefixed protobuf
//! (the Collector's `file` exporter formats).

use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{
    Batch, BuildEnv, ComponentId, ConfigIssue, ExportError, Exporter, Factory, Payload, Signal, otlp_json,
};
use prost::Message;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
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

/// The `file` exporter's config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub path: PathBuf,
    pub format: FileFormat,
    /// Append to an existing file instead of truncating it at start.
    pub append: bool,
}

impl ComponentConfig for FileConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigIssue::new("path", "is required: the file to write to"));
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
        |_id: &ComponentId, cfg: &FileConfig, _env: &BuildEnv| {
            Ok(Box::new(FileExporter::new(cfg.path.clone(), cfg.format, cfg.append)))
        },
    )
}

/// Writes encoded export requests to a file; shared with the `testing` exporter.
pub struct FileExporter {
    path: PathBuf,
    format: FileFormat,
    append: bool,
    file: Option<tokio::fs::File>,
}

impl FileExporter {
    pub fn new(path: PathBuf, format: FileFormat, append: bool) -> FileExporter {
        FileExporter { path, format, append, file: None }
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
            self.file = Some(opts.open(&self.path).await.map_err(|e| self.io_error(e))?);
        }
        self.file.as_mut().ok_or_else(|| ExportError::Retryable("file not open".into()))
    }

    fn io_error(&self, e: std::io::Error) -> ExportError {
        ExportError::Retryable(format!("cannot write {}: {e}", self.path.display()))
    }
}

#[async_trait]
impl Exporter for FileExporter {
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let record = Self::encode(self.format, &batch.payload);
        let path = self.path.display().to_string();
        let f = self.file().await?;
        f.write_all(&record).await.map_err(|e| ExportError::Retryable(format!("cannot write {path}: {e}")))?;
        f.flush().await.map_err(|e| ExportError::Retryable(format!("cannot write {path}: {e}")))
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
