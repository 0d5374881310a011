//! The `otlp` receiver: OTLP over gRPC and over HTTP (protobuf and JSON), as the Collector's.

mod grpc;
mod http;
mod ingest;
mod metadata;
mod signals;

use async_trait::async_trait;
use openwit_core::auth::{AuthRef, ServerAuth};
use openwit_core::config_types::{check_endpoint, present_or_default};
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::tls::{ServerTls, Side, TlsSettings};
use openwit_core::{
    BatchingConfig, BuildEnv, ComponentId, ConfigIssue, Factory, Receiver, ReceiverContext, Signal, TenantConfig,
};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// `protocols.grpc.keepalive.server_parameters`: HTTP/2 pings and connection ages, as gRPC-Go's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerParameters {
    /// Ping an idle connection this often…
    #[serde(with = "humantime_serde")]
    pub time: Option<Duration>,
    /// …and close it when the ping is not answered within this.
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Close connections after this long (clients reconnect, which spreads load after a scale-out).
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Option<Duration>,
    /// Time given to requests in flight when a connection reaches its age.
    #[serde(with = "humantime_serde")]
    pub max_connection_age_grace: Option<Duration>,
    /// Refused: the gRPC server OpenWit uses (tonic) has no idle-connection limit.
    #[serde(with = "humantime_serde")]
    pub max_connection_idle: Option<Duration>,
}

/// `protocols.grpc.keepalive`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keepalive {
    pub server_parameters: ServerParameters,
    /// Refused: tonic does not police how often clients ping.
    pub enforcement_policy: Option<serde::de::IgnoredAny>,
}

/// `protocols.grpc`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub endpoint: String,
    /// Largest accepted message, after decompression, in MiB.
    pub max_recv_msg_size_mib: u64,
    /// Keep gRPC metadata on each batch.
    pub include_metadata: bool,
    /// Only `tcp` is supported.
    pub transport: String,
    /// TLS (and mutual TLS with `client_ca_file`); plaintext when absent.
    #[serde(deserialize_with = "present_or_default")]
    pub tls: Option<TlsSettings>,
    /// `auth: {authenticator: <extension id>}`: requests without accepted credentials are refused.
    pub auth: Option<AuthRef>,
    /// Streams one connection may have open at once (none: unlimited).
    pub max_concurrent_streams: Option<u32>,
    pub keepalive: Keepalive,
    /// Accepted for Collector configs (its default config sets them): tonic sizes its own buffers.
    pub read_buffer_size: Option<u64>,
    pub write_buffer_size: Option<u64>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "localhost:4317".into(),
            max_recv_msg_size_mib: 4,
            include_metadata: false,
            transport: "tcp".into(),
            tls: None,
            auth: None,
            max_concurrent_streams: None,
            keepalive: Keepalive::default(),
            read_buffer_size: None,
            write_buffer_size: None,
        }
    }
}

/// `protocols.http.cors`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to send; `*` wildcards match within a host (`https://*.example.com`).
    pub allowed_origins: Vec<String>,
    /// Headers allowed beyond the CORS-safelisted ones.
    pub allowed_headers: Vec<String>,
    /// Seconds a preflight answer may be cached; 0 leaves it to the browser.
    pub max_age: u64,
}

/// `protocols.http`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub endpoint: String,
    pub traces_url_path: String,
    pub metrics_url_path: String,
    pub logs_url_path: String,
    /// Largest accepted body in bytes, applied both before and after decompression.
    pub max_request_body_size: u64,
    pub include_metadata: bool,
    #[serde(deserialize_with = "present_or_default")]
    pub cors: Option<CorsConfig>,
    /// TLS (and mutual TLS with `client_ca_file`); plaintext when absent.
    #[serde(deserialize_with = "present_or_default")]
    pub tls: Option<TlsSettings>,
    /// `auth: {authenticator: <extension id>}`: requests without accepted credentials are refused.
    pub auth: Option<AuthRef>,
    /// Headers added to every response.
    pub response_headers: std::collections::BTreeMap<String, String>,
    /// The `Content-Encoding`s accepted (none: all OpenWit supports). `""` is an uncompressed body.
    pub compression_algorithms: Option<Vec<String>>,
    /// Time a request's body may take to arrive (408 after it).
    #[serde(with = "humantime_serde")]
    pub read_timeout: Option<Duration>,
    /// Time a request's headers may take to arrive; the connection is closed after it (slow clients).
    #[serde(with = "humantime_serde")]
    pub read_header_timeout: Option<Duration>,
    /// Time from a request's headers to its response; the connection is closed without one after it.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Option<Duration>,
    /// A connection with no request in flight for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "localhost:4318".into(),
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            max_request_body_size: 20 * 1024 * 1024,
            include_metadata: false,
            cors: None,
            tls: None,
            auth: None,
            response_headers: Default::default(),
            compression_algorithms: None,
            read_timeout: None,
            read_header_timeout: None,
            write_timeout: None,
            idle_timeout: None,
        }
    }
}

/// Content encodings the HTTP receiver decodes (`""`: none).
pub const HTTP_ENCODINGS: [&str; 5] = ["", "gzip", "zstd", "deflate", "zlib"];

/// `protocols`: each protocol is on when its key is present, even with no settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "present_or_default")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "present_or_default")]
    pub http: Option<HttpConfig>,
}

/// The `otlp` receiver's config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    pub protocols: Protocols,
    /// OpenWit: where the tenant comes from.
    pub tenant: TenantConfig,
    /// OpenWit: how requests are gathered into WAL batches.
    pub batching: BatchingConfig,
    /// OpenWit: how long a request may wait for room in a full pipeline before it is refused with a
    /// retryable error (HTTP 429, gRPC `UNAVAILABLE`).
    #[serde(with = "humantime_serde")]
    pub backpressure_wait: Option<Duration>,
}

impl ComponentConfig for OtlpConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            return Err(ConfigIssue::new("protocols", "enable at least one protocol: grpc or http"));
        }
        if let Some(g) = &self.protocols.grpc {
            check_endpoint(&g.endpoint).map_err(|m| ConfigIssue::new("protocols.grpc.endpoint", m))?;
            if g.max_recv_msg_size_mib == 0 {
                return Err(ConfigIssue::new("protocols.grpc.max_recv_msg_size_mib", "must be at least 1"));
            }
            if g.transport != "tcp" {
                return Err(ConfigIssue::new("protocols.grpc.transport", "only tcp is supported"));
            }
            let sp = &g.keepalive.server_parameters;
            if sp.max_connection_idle.is_some() {
                return Err(ConfigIssue::new(
                    "protocols.grpc.keepalive.server_parameters.max_connection_idle",
                    "is not supported: OpenWit's gRPC server (tonic) has no idle-connection limit; use max_connection_age",
                ));
            }
            if g.keepalive.enforcement_policy.is_some() {
                return Err(ConfigIssue::new(
                    "protocols.grpc.keepalive.enforcement_policy",
                    "is not supported: OpenWit's gRPC server (tonic) does not police client pings; remove it",
                ));
            }
            if g.max_concurrent_streams == Some(0) {
                return Err(ConfigIssue::new("protocols.grpc.max_concurrent_streams", "must be at least 1"));
            }
            if let Some(t) = &g.tls {
                t.validate(Side::Server)
                    .map_err(|i| ConfigIssue::new(format!("protocols.grpc.tls.{}", i.path), i.message))?;
            }
        }
        if let Some(h) = &self.protocols.http {
            check_endpoint(&h.endpoint).map_err(|m| ConfigIssue::new("protocols.http.endpoint", m))?;
            for (k, p) in [
                ("traces_url_path", &h.traces_url_path),
                ("metrics_url_path", &h.metrics_url_path),
                ("logs_url_path", &h.logs_url_path),
            ] {
                if !p.starts_with('/') {
                    return Err(ConfigIssue::new(format!("protocols.http.{k}"), format!("{p:?} must start with '/'")));
                }
            }
            if h.max_request_body_size == 0 {
                return Err(ConfigIssue::new("protocols.http.max_request_body_size", "must be at least 1"));
            }
            for (k, v) in &h.response_headers {
                if ::http::HeaderName::from_bytes(k.as_bytes()).is_err() || ::http::HeaderValue::from_str(v).is_err() {
                    return Err(ConfigIssue::new(
                        format!("protocols.http.response_headers.{k}"),
                        "is not a valid HTTP header name and value",
                    ));
                }
            }
            for (i, a) in h.compression_algorithms.iter().flatten().enumerate() {
                if !HTTP_ENCODINGS.contains(&a.as_str()) {
                    return Err(ConfigIssue::new(
                        format!("protocols.http.compression_algorithms[{i}]"),
                        format!("{a:?} is not supported; OpenWit decodes {:?}", HTTP_ENCODINGS),
                    ));
                }
            }
            for (d, key) in [
                (h.read_timeout, "read_timeout"),
                (h.read_header_timeout, "read_header_timeout"),
                (h.write_timeout, "write_timeout"),
                (h.idle_timeout, "idle_timeout"),
            ] {
                if d.is_some_and(|d| d.is_zero()) {
                    return Err(ConfigIssue::new(format!("protocols.http.{key}"), "must be more than 0"));
                }
            }
            if let Some(t) = &h.tls {
                t.validate(Side::Server)
                    .map_err(|i| ConfigIssue::new(format!("protocols.http.tls.{}", i.path), i.message))?;
            }
        }
        self.tenant.validate().map_err(|m| ConfigIssue::new("tenant", m))
    }
}

/// The `otlp` receiver factory.
pub fn factory() -> Arc<dyn Factory<dyn Receiver>> {
    typed::<OtlpConfig, dyn Receiver>(
        "otlp",
        &[],
        &Signal::ALL,
        "OTLP over gRPC (4317) and HTTP (4318), protobuf and JSON",
        |id: &ComponentId, cfg: &OtlpConfig, env: &BuildEnv| {
            // The authenticators are resolved here, so that a wrong reference stops the start.
            let resolve = |r: Option<&AuthRef>, proto: &str| {
                r.map(|r| env.auth.server(r).map_err(|m| anyhow::anyhow!("receiver {id}: protocols.{proto}.{m}")))
                    .transpose()
            };
            let grpc_auth = resolve(cfg.protocols.grpc.as_ref().and_then(|g| g.auth.as_ref()), "grpc")?;
            let http_auth = resolve(cfg.protocols.http.as_ref().and_then(|h| h.auth.as_ref()), "http")?;
            Ok(Box::new(OtlpReceiver { cfg: cfg.clone(), grpc_auth, http_auth }))
        },
    )
}

struct OtlpReceiver {
    cfg: OtlpConfig,
    grpc_auth: Option<Arc<dyn ServerAuth>>,
    http_auth: Option<Arc<dyn ServerAuth>>,
}

#[async_trait]
impl Receiver for OtlpReceiver {
    async fn start(self: Box<Self>, ctx: ReceiverContext) -> anyhow::Result<JoinHandle<()>> {
        let ingest = Arc::new(ingest::Accept::new(
            &ctx,
            self.cfg.tenant.clone(),
            self.cfg.batching,
            self.cfg.backpressure_wait.unwrap_or(Duration::from_millis(500)),
        ));
        let mut tasks = Vec::new();
        if let Some(g) = &self.cfg.protocols.grpc {
            tasks.push(grpc::start(&ctx.id, g, ingest.clone(), self.grpc_auth.clone(), ctx.shutdown.clone()).await?);
        }
        if let Some(h) = &self.cfg.protocols.http {
            tasks.push(http::start(&ctx.id, h, ingest.clone(), self.http_auth.clone(), ctx.shutdown.clone()).await?);
        }
        // The servers hold the only other references to `ingest` (and through it the pipelines' inputs):
        // once both have stopped, the pipelines behind this receiver see their inputs close and drain.
        drop(ingest);
        Ok(tokio::spawn(async move {
            for t in tasks {
                let _ = t.await;
            }
        }))
    }
}

/// Binds a TCP listener, with an error that says which component and address failed.
/// Listens on `endpoint`, with TLS when `tls` is set (certificates are loaded here: a bad file stops the
/// start with its name). `alpn`: the protocols offered in the TLS handshake.
pub(crate) async fn bind(
    id: &ComponentId,
    proto: &str,
    endpoint: &str,
    tls: Option<&TlsSettings>,
    alpn: &[&[u8]],
) -> anyhow::Result<openwit_core::tls::Incoming> {
    let what = format!("receiver {id} ({proto})");
    let tls = tls.map(|t| ServerTls::new(&what, t, alpn)).transpose()?;
    let listener = tokio::net::TcpListener::bind(endpoint).await.map_err(|e| {
        anyhow::anyhow!(
            "receiver {id}: cannot listen for {proto} on {endpoint}: {e}; is another process using the port?"
        )
    })?;
    Ok(openwit_core::tls::incoming(listener, tls, &what)?)
}
