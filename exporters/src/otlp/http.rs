//! `otlphttp`: OTLP over HTTP, protobuf or JSON.

use super::{Common, Compression};
use async_trait::async_trait;
use backon::Retryable;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::tls::ClientTls;
use openwit_core::{
    Batch, BuildEnv, ComponentId, ConfigIssue, ExportError, Exporter, Factory, Payload, Signal, otlp_json,
};
use prost::Message;
use serde::Deserialize;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Proto,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpHttpConfig {
    /// Base URL; `/v1/traces`, `/v1/metrics`, `/v1/logs` are appended.
    pub endpoint: String,
    /// Full URLs that override the base for one signal.
    pub traces_endpoint: String,
    pub metrics_endpoint: String,
    pub logs_endpoint: String,
    pub encoding: Encoding,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(flatten)]
    pub common: Common,
}

impl Default for OtlpHttpConfig {
    fn default() -> Self {
        OtlpHttpConfig {
            endpoint: String::new(),
            traces_endpoint: String::new(),
            metrics_endpoint: String::new(),
            logs_endpoint: String::new(),
            encoding: Encoding::Proto,
            timeout: Duration::from_secs(30),
            common: Common::default(),
        }
    }
}

impl OtlpHttpConfig {
    fn url(&self, signal: Signal) -> String {
        let explicit = match signal {
            Signal::Traces => &self.traces_endpoint,
            Signal::Metrics => &self.metrics_endpoint,
            Signal::Logs => &self.logs_endpoint,
        };
        if !explicit.is_empty() {
            return explicit.clone();
        }
        format!("{}/v1/{}", self.endpoint.trim_end_matches('/'), signal.as_str())
    }
}

impl ComponentConfig for OtlpHttpConfig {
    fn queue_size(&self) -> Option<usize> {
        self.common.queue_capacity()
    }

    fn consumers(&self) -> usize {
        self.common.consumers()
    }

    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.endpoint.is_empty() && Signal::ALL.iter().any(|s| self.url(*s).starts_with("/v1/")) {
            return Err(ConfigIssue::new(
                "endpoint",
                "is required (or traces_endpoint, metrics_endpoint and logs_endpoint), e.g. http://collector:4318",
            ));
        }
        for s in Signal::ALL {
            let url = self.url(s);
            if url.starts_with("/v1/") {
                continue;
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) || reqwest::Url::parse(&url).is_err() {
                return Err(ConfigIssue::new("endpoint", format!("{url:?} is not an http:// or https:// URL")));
            }
        }
        self.common.check_tls()?;
        self.common.check_queue()?;
        self.common.check_headers()
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Exporter>> {
    typed::<OtlpHttpConfig, dyn Exporter>(
        "otlphttp",
        &["otlp_http"],
        &Signal::ALL,
        "forwards OTLP over HTTP (protobuf or JSON) to another collector or backend",
        |id: &ComponentId, cfg: &OtlpHttpConfig, env: &BuildEnv| {
            cfg.common.note_ignored(&id.to_string());
            let auth = cfg.common.client_auth(&id.to_string(), env)?;
            let mut headers = reqwest::header::HeaderMap::new();
            for (k, v) in &cfg.common.headers {
                headers.insert(reqwest::header::HeaderName::from_bytes(k.as_bytes())?, v.parse()?);
            }
            // As the Collector: the scheme decides; `https://` uses the tls settings.
            let tls = Signal::ALL
                .iter()
                .any(|s| cfg.url(*s).starts_with("https://"))
                .then(|| ClientTls::new(&format!("exporter {id}"), &cfg.common.tls, &[b"h2", b"http/1.1"]))
                .transpose()?;
            let clients = Clients::new(cfg.timeout, headers.clone(), tls)?;
            Ok(Box::new(OtlpHttpExporter { id: id.to_string(), clients, headers, auth, cfg: cfg.clone() }))
        },
    )
}

struct OtlpHttpExporter {
    id: String,
    clients: Clients,
    /// The configured `headers` (also the client's defaults), for the authenticator to start from.
    headers: reqwest::header::HeaderMap,
    auth: Option<Arc<dyn openwit_core::auth::ClientAuth>>,
    cfg: OtlpHttpConfig,
}

/// The HTTP client, made again when the TLS settings were reloaded (renewed certificate files).
struct Clients {
    timeout: Duration,
    headers: reqwest::header::HeaderMap,
    tls: Option<Arc<ClientTls>>,
    current: std::sync::Mutex<(Option<Arc<rustls::ClientConfig>>, reqwest::Client)>,
}

impl Clients {
    fn new(
        timeout: Duration,
        headers: reqwest::header::HeaderMap,
        tls: Option<Arc<ClientTls>>,
    ) -> anyhow::Result<Clients> {
        let config = tls.as_ref().map(|t| t.config());
        let client = Self::build(timeout, &headers, config.clone())?;
        Ok(Clients { timeout, headers, tls, current: std::sync::Mutex::new((config, client)) })
    }

    fn build(
        timeout: Duration,
        headers: &reqwest::header::HeaderMap,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder().timeout(timeout).default_headers(headers.clone()).no_proxy();
        if let Some(c) = tls {
            b = b.use_preconfigured_tls((*c).clone());
        }
        Ok(b.build()?)
    }

    fn get(&self) -> reqwest::Client {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = &self.tls {
            let now = t.config();
            if !cur.0.as_ref().is_some_and(|c| Arc::ptr_eq(c, &now)) {
                match Self::build(self.timeout, &self.headers, Some(now.clone())) {
                    Ok(c) => *cur = (Some(now), c),
                    Err(e) => tracing::warn!("cannot rebuild the HTTP client with reloaded TLS settings: {e}"),
                }
            }
        }
        cur.1.clone()
    }
}

/// Why one attempt failed.
#[derive(Debug)]
struct Failure {
    retryable: bool,
    /// The server's `Retry-After`, in seconds.
    retry_after: Option<Duration>,
    message: String,
}

impl OtlpHttpExporter {
    fn body(&self, p: &Payload) -> Result<Vec<u8>, ExportError> {
        let raw = match (self.cfg.encoding, p) {
            (Encoding::Proto, Payload::Traces(r)) => r.encode_to_vec(),
            (Encoding::Proto, Payload::Metrics(r)) => r.encode_to_vec(),
            (Encoding::Proto, Payload::Logs(r)) => r.encode_to_vec(),
            (Encoding::Json, Payload::Traces(r)) => otlp_json::encode(r),
            (Encoding::Json, Payload::Metrics(r)) => otlp_json::encode(r),
            (Encoding::Json, Payload::Logs(r)) => otlp_json::encode(r),
        };
        let fail = |e: std::io::Error| ExportError::Permanent(format!("cannot compress the request: {e}"));
        Ok(match self.cfg.common.compression.enabled() {
            Some(Compression::Zstd) => zstd::encode_all(&raw[..], 3).map_err(fail)?,
            Some(_) => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&raw).map_err(fail)?;
                e.finish().map_err(fail)?
            }
            None => raw,
        })
    }

    async fn send_once(
        &self,
        url: &str,
        body: &bytes::Bytes,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<(), Failure> {
        let ctype = match self.cfg.encoding {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        let mut req =
            self.clients.get().post(url).headers(headers.clone()).header("content-type", ctype).body(body.clone());
        match self.cfg.common.compression.enabled() {
            Some(Compression::Zstd) => req = req.header("content-encoding", "zstd"),
            Some(_) => req = req.header("content-encoding", "gzip"),
            None => {}
        }
        let resp = req.send().await.map_err(|e| Failure {
            retryable: true,
            retry_after: None,
            message: format!("{url}: {e}"),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        Err(Failure {
            retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
            retry_after,
            message: format!("{url}: HTTP {status}: {}", text.chars().take(300).collect::<String>()),
        })
    }
}

#[async_trait]
impl Exporter for OtlpHttpExporter {
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let url = self.cfg.url(batch.signal());
        let body = bytes::Bytes::from(self.body(&batch.payload)?);
        let headers = Common::request_headers(&self.headers, self.auth.as_ref(), batch)
            .map_err(|m| ExportError::Retryable(format!("exporter {}: auth: {m}", self.id)))?;
        let once = || self.send_once(&url, &body, &headers);
        let result = match self.cfg.common.retry_on_failure.backoff() {
            Some(b) => {
                once.retry(b)
                    .when(|f: &Failure| f.retryable)
                    // A server that says when to come back is believed.
                    .adjust(|f: &Failure, d| f.retry_after.or(d))
                    .notify(
                        |f, d| tracing::warn!(exporter = %self.id, "export failed ({}); retrying in {d:?}", f.message),
                    )
                    .await
            }
            None => once().await,
        };
        result.map_err(
            |f| {
                if f.retryable { ExportError::Retryable(f.message) } else { ExportError::Permanent(f.message) }
            },
        )
    }
}
