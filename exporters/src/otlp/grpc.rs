//! `otlp`: OTLP over gRPC.

use super::{Common, Compression};
use async_trait::async_trait;
use backon::Retryable;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::tls::{ClientTls, TlsConnector};
use openwit_core::{Batch, BuildEnv, ComponentId, ConfigIssue, ExportError, Exporter, Factory, Payload, Signal};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpGrpcConfig {
    /// `host:port`, or a URL with `http://`.
    pub endpoint: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// HTTP/2 pings on the connection, as gRPC-Go's client keepalive.
    pub keepalive: Option<ClientKeepalive>,
    /// `pick_first` (the default, and what one tonic channel does); other balancers are refused.
    pub balancer_name: String,
    /// Accepted: OpenWit's retry loop already waits for the endpoint instead of failing fast.
    pub wait_for_ready: bool,
    #[serde(flatten)]
    pub common: Common,
}

/// `keepalive` on the `otlp` exporter.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientKeepalive {
    #[serde(with = "humantime_serde")]
    pub time: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub permit_without_stream: bool,
}

impl Default for OtlpGrpcConfig {
    fn default() -> Self {
        OtlpGrpcConfig {
            endpoint: String::new(),
            timeout: Duration::from_secs(5),
            keepalive: None,
            balancer_name: String::new(),
            wait_for_ready: false,
            common: Common::default(),
        }
    }
}

impl OtlpGrpcConfig {
    /// TLS, as the Collector decides: `https://` always, `http://` never, a bare `host:port` unless
    /// `tls.insecure` is set.
    fn uses_tls(&self) -> bool {
        if self.endpoint.starts_with("https://") {
            true
        } else if self.endpoint.starts_with("http://") {
            false
        } else {
            !self.common.tls.insecure
        }
    }

    fn url(&self) -> String {
        if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else if self.uses_tls() {
            format!("https://{}", self.endpoint)
        } else {
            format!("http://{}", self.endpoint)
        }
    }
}

impl ComponentConfig for OtlpGrpcConfig {
    fn queue_size(&self) -> Option<usize> {
        self.common.queue_capacity()
    }

    fn consumers(&self) -> usize {
        self.common.consumers()
    }

    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.endpoint.is_empty() {
            return Err(ConfigIssue::new("endpoint", "is required, e.g. collector:4317"));
        }
        self.common.check_tls()?;
        self.common.check_queue()?;
        if !["", "pick_first"].contains(&self.balancer_name.as_str()) {
            return Err(ConfigIssue::new(
                "balancer_name",
                format!(
                    "{:?} is not supported: OpenWit's gRPC client keeps one connection to the endpoint (pick_first); \
                     put a load balancer in front, or one exporter per backend",
                    self.balancer_name
                ),
            ));
        }
        if Channel::from_shared(self.url()).is_err() {
            return Err(ConfigIssue::new("endpoint", format!("{:?} is not a valid address", self.endpoint)));
        }
        self.common.check_headers()
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Exporter>> {
    typed::<OtlpGrpcConfig, dyn Exporter>(
        "otlp",
        &["otlp_grpc"],
        &Signal::ALL,
        "forwards OTLP over gRPC to another collector or backend",
        |id: &ComponentId, cfg: &OtlpGrpcConfig, env: &BuildEnv| {
            cfg.common.note_ignored(&id.to_string());
            let auth = cfg.common.client_auth(&id.to_string(), env)?;
            let mut endpoint = Channel::from_shared(cfg.url())?.timeout(cfg.timeout);
            if let Some(k) = &cfg.keepalive {
                if let Some(t) = k.time {
                    endpoint = endpoint.http2_keep_alive_interval(t);
                }
                if let Some(t) = k.timeout {
                    endpoint = endpoint.keep_alive_timeout(t);
                }
                endpoint = endpoint.keep_alive_while_idle(k.permit_without_stream);
            }
            let channel = if cfg.uses_tls() {
                let tls = ClientTls::new(&format!("exporter {id}"), &cfg.common.tls, &[b"h2"])?;
                endpoint.connect_with_connector_lazy(TlsConnector::new(Some(tls)))
            } else {
                endpoint.connect_lazy()
            };
            let mut headers = http::HeaderMap::new();
            for (k, v) in &cfg.common.headers {
                headers.insert(http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())?, v.parse()?);
            }
            Ok(Box::new(OtlpGrpcExporter { id: id.to_string(), channel, headers, auth, cfg: cfg.clone() }))
        },
    )
}

struct OtlpGrpcExporter {
    id: String,
    channel: Channel,
    /// The configured `headers`, sent as gRPC metadata.
    headers: http::HeaderMap,
    auth: Option<Arc<dyn openwit_core::auth::ClientAuth>>,
    cfg: OtlpGrpcConfig,
}

/// Codes after which the same request may succeed (the OTLP spec's list).
fn retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(code, Cancelled | DeadlineExceeded | Aborted | OutOfRange | Unavailable | DataLoss | ResourceExhausted)
}

impl OtlpGrpcExporter {
    async fn send_once(&self, payload: &Payload, metadata: &MetadataMap) -> Result<(), tonic::Status> {
        let enc = match self.cfg.common.compression.enabled() {
            Some(Compression::Zstd) => Some(CompressionEncoding::Zstd),
            Some(_) => Some(CompressionEncoding::Gzip),
            None => None,
        };
        fn req<T>(msg: T, md: &MetadataMap) -> tonic::Request<T> {
            let mut r = tonic::Request::new(msg);
            *r.metadata_mut() = md.clone();
            r
        }
        macro_rules! call {
            ($client:ident, $msg:expr) => {{
                let mut c = $client::new(self.channel.clone());
                if let Some(e) = enc {
                    c = c.send_compressed(e);
                }
                c.export(req($msg.clone(), metadata)).await.map(|_| ())
            }};
        }
        match payload {
            Payload::Traces(r) => call!(TraceServiceClient, r),
            Payload::Metrics(r) => call!(MetricsServiceClient, r),
            Payload::Logs(r) => call!(LogsServiceClient, r),
        }
    }
}

#[async_trait]
impl Exporter for OtlpGrpcExporter {
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let headers = Common::request_headers(&self.headers, self.auth.as_ref(), batch)
            .map_err(|m| ExportError::Retryable(format!("exporter {}: auth: {m}", self.id)))?;
        let metadata = MetadataMap::from_headers(headers);
        let once = || self.send_once(&batch.payload, &metadata);
        let result = match self.cfg.common.retry_on_failure.backoff() {
            Some(b) => {
                once.retry(b)
                    .when(|s: &tonic::Status| retryable(s.code()))
                    .notify(|s, d| tracing::warn!(exporter = %self.id, "export failed ({}: {}); retrying in {d:?}", s.code(), s.message()))
                    .await
            }
            None => once().await,
        };
        result.map_err(|s| {
            let msg = format!("{} {}: {}", self.cfg.endpoint, s.code(), s.message());
            if retryable(s.code()) { ExportError::Retryable(msg) } else { ExportError::Permanent(msg) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_client_keys_apply_or_are_refused_with_the_reason() {
        let parse = |y: &str| -> OtlpGrpcConfig { serde_yaml_ng::from_str(y).unwrap() };
        let ok = parse(
            "endpoint: c:4317\nkeepalive: {time: 10s, timeout: 2s}\nbalancer_name: pick_first\nwait_for_ready: true",
        );
        assert!(ok.validate().is_ok());
        assert!(ok.uses_tls(), "a bare host:port is TLS unless tls.insecure");
        let e = parse("endpoint: c:4317\nbalancer_name: round_robin").validate().unwrap_err();
        assert_eq!(e.path, "balancer_name");
        assert!(e.message.contains("pick_first"));
        assert!(!parse("endpoint: http://c:4317").uses_tls());
        assert!(parse("endpoint: https://c:4317\ntls: {insecure: true}").uses_tls());
        assert!(!parse("endpoint: c:4317\ntls: {insecure: true}").uses_tls());
        // sending_queue sizes the queue in batches; a disabled queue holds one.
        let q = parse("endpoint: c:4317\nsending_queue: {queue_size: 64, num_consumers: 4, storage: file_storage}");
        assert!(q.validate().is_ok());
        assert_eq!(q.queue_size(), Some(64));
        assert_eq!(q.consumers(), 4);
        assert_eq!(parse("endpoint: c:4317").consumers(), 1, "without a sending_queue: one at a time");
        assert_eq!(
            parse("endpoint: c:4317\nsending_queue: {queue_size: 8}").consumers(),
            10,
            "the Collector's default"
        );
        let zero = parse("endpoint: c:4317\nsending_queue: {num_consumers: 0}").validate().unwrap_err();
        assert_eq!(zero.path, "sending_queue.num_consumers");
        assert_eq!(parse("endpoint: c:4317\nsending_queue: {enabled: false}").queue_size(), Some(1));
        assert_eq!(parse("endpoint: c:4317").queue_size(), None);
        let e = parse("endpoint: c:4317\nsending_queue: {sizer: items}").validate().unwrap_err();
        assert_eq!(e.path, "sending_queue.sizer");
    }
}
