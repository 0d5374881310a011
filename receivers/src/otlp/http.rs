//! OTLP over HTTP: protobuf and JSON on one port, as the Collector serves them.
//!
//! Answers: 200 with an Export response in the request's content type; 400 with a `google.rpc.Status`
//! for undecodable bodies and invalid tenants; 413 for bodies over the limit (before or after
//! decompression); 415 for other content types; 405 for other methods (axum's method router);
//! 429 (pipeline full) and 503 (shutting down) with `Retry-After`.

use super::ingest::{Accept, Refusal, Transport};
use super::signals::{Logs, Metrics, OtlpSignal, Traces};
use super::{CorsConfig, HttpConfig};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use openwit_core::auth::{AuthError, ServerAuth};
use openwit_core::{ComponentId, ConsumeError, LazyPayload, Metadata, Signal, otlp_json};
use prost::Message;
use std::io::Read;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";
/// Seconds a client is asked to wait before retrying a refused request.
const RETRY_AFTER_SECS: &str = "1";

struct HttpState {
    ingest: Arc<Accept>,
    /// `read_timeout`: how long the body may take to arrive.
    read_timeout: Option<std::time::Duration>,
    /// `compression_algorithms`, lower-case (none: every encoding OpenWit decodes).
    encodings: Option<Vec<String>>,
    auth: Option<Arc<dyn ServerAuth>>,
    max_body: usize,
    include_metadata: bool,
}

pub async fn start(
    id: &ComponentId,
    cfg: &HttpConfig,
    ingest: Arc<Accept>,
    auth: Option<Arc<dyn ServerAuth>>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = super::bind(id, "OTLP/HTTP", &cfg.endpoint, cfg.tls.as_ref(), &[b"h2", b"http/1.1"]).await?;
    let (has_traces, has_metrics, has_logs) =
        (ingest.serves(Signal::Traces), ingest.serves(Signal::Metrics), ingest.serves(Signal::Logs));
    let state = Arc::new(HttpState {
        ingest,
        read_timeout: cfg.read_timeout,
        encodings: cfg.compression_algorithms.as_ref().map(|l| l.iter().map(|a| a.to_ascii_lowercase()).collect()),
        auth,
        max_body: usize::try_from(cfg.max_request_body_size).unwrap_or(usize::MAX),
        include_metadata: cfg.include_metadata,
    });
    let mut app = Router::new();
    if has_traces {
        app = app.route(&cfg.traces_url_path, post(export::<Traces>));
    }
    if has_metrics {
        app = app.route(&cfg.metrics_url_path, post(export::<Metrics>));
    }
    if has_logs {
        app = app.route(&cfg.logs_url_path, post(export::<Logs>));
    }
    let mut app = app.layer(DefaultBodyLimit::disable()).with_state(state);
    if let Some(cors) = &cfg.cors {
        app = app.layer(cors_layer(cors));
    }
    if !cfg.response_headers.is_empty() {
        let extra: Vec<(http::HeaderName, http::HeaderValue)> = cfg
            .response_headers
            .iter()
            .map(|(k, v)| Ok((http::HeaderName::from_bytes(k.as_bytes())?, http::HeaderValue::from_str(v)?)))
            .collect::<anyhow::Result<_>>()?;
        app = app.layer(axum::middleware::map_response(move |mut r: Response| {
            let extra = extra.clone();
            async move {
                for (k, v) in extra {
                    r.headers_mut().insert(k, v);
                }
                r
            }
        }));
    }
    let id = id.to_string();
    let timeouts = openwit_core::http_server::Timeouts {
        read_header: cfg.read_header_timeout,
        write: cfg.write_timeout,
        idle: cfg.idle_timeout,
    };
    tracing::info!(receiver = %id, endpoint = %cfg.endpoint, tls = cfg.tls.is_some(), "OTLP/HTTP listening");
    Ok(tokio::spawn(async move {
        openwit_core::http_server::serve(listener, app, timeouts, shutdown).await;
        tracing::debug!(receiver = %id, "OTLP/HTTP server stopped");
    }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => PROTOBUF,
            Format::Json => JSON,
        }
    }
}

async fn export<S: OtlpSignal>(State(st): State<Arc<HttpState>>, headers: HeaderMap, body: Body) -> Response {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = match ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
        PROTOBUF => Format::Protobuf,
        JSON => Format::Json,
        _ => {
            let msg = format!("unsupported content type {ctype:?}; send {PROTOBUF} or {JSON}");
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, msg).into_response();
        }
    };
    // Refused encodings are answered before the body is read.
    if let Some(allowed) = &st.encodings {
        let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
        let enc = encoding.trim().to_ascii_lowercase();
        let enc = if enc == "identity" { String::new() } else { enc };
        if !allowed.contains(&enc) {
            let msg = format!("Content-Encoding {encoding:?} is not accepted here; accepted: {allowed:?}");
            return status(format, StatusCode::BAD_REQUEST, msg);
        }
    }
    let identity = match super::ingest::authenticate(st.auth.as_ref(), &headers) {
        Ok(i) => i,
        Err(e) => return auth_refusal(format, e),
    };
    let ingest = &st.ingest;
    let tenant = match ingest.tenant_for(identity.as_ref(), headers.get(ingest.tenant_key()).map(|v| v.as_bytes())) {
        Ok(t) => t,
        Err(e) => return auth_refusal(format, e),
    };
    let collect = Limited::new(body, st.max_body).collect();
    let collected = match st.read_timeout {
        Some(t) => match tokio::time::timeout(t, collect).await {
            Ok(r) => r,
            Err(_) => {
                return status(
                    format,
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request body did not arrive within {t:?}"),
                );
            }
        },
        None => collect.await,
    };
    let raw = match collected {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return status(format, StatusCode::PAYLOAD_TOO_LARGE, too_large(st.max_body));
        }
        Err(e) => {
            return status(format, StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"));
        }
    };
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let body = match decompress(encoding, raw, st.max_body) {
        Ok(b) => b,
        Err(Decompress::TooLarge) => {
            return status(format, StatusCode::PAYLOAD_TOO_LARGE, too_large(st.max_body));
        }
        Err(Decompress::Bad(m)) => return status(format, StatusCode::BAD_REQUEST, m),
    };
    let raw = (format == Format::Protobuf).then(|| body.clone());
    let payload = match format {
        Format::Protobuf => match LazyPayload::from_protobuf(S::SIGNAL, body) {
            Ok(p) => p,
            Err(e) => {
                return status(format, StatusCode::BAD_REQUEST, format!("cannot decode the OTLP protobuf body: {e}"));
            }
        },
        Format::Json => match otlp_json::decode::<S::Req>(&body) {
            Ok(r) => S::payload(r).into(),
            Err(e) => return status(format, StatusCode::BAD_REQUEST, e),
        },
    };
    let metadata =
        if st.include_metadata { super::metadata::kept(&headers, st.auth.as_ref()) } else { Metadata::new() };
    match ingest.accept(Transport::Http, tenant, payload, raw, metadata).await {
        Ok(()) => {
            // A full success is an empty Export response: no bytes in protobuf, `{}` in JSON.
            let bytes = match format {
                Format::Protobuf => S::Resp::default().encode_to_vec(),
                Format::Json => b"{}".to_vec(),
            };
            ([(header::CONTENT_TYPE, format.content_type())], bytes).into_response()
        }
        Err(e @ Refusal::Tenant(_)) => status(format, StatusCode::BAD_REQUEST, e.to_string()),
        Err(Refusal::Pipeline(e)) => {
            let code = match e {
                ConsumeError::Full => StatusCode::TOO_MANY_REQUESTS,
                ConsumeError::Closed
                | ConsumeError::DiskBudget
                | ConsumeError::Unavailable(_)
                | ConsumeError::MemoryLimit(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            let mut r = status(format, code, e.to_string());
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            r
        }
    }
}

fn too_large(max: usize) -> String {
    format!("the request body is larger than max_request_body_size ({max} bytes), before or after decompression")
}

enum Decompress {
    TooLarge,
    Bad(String),
}

/// Inflates the body, stopping as soon as it exceeds `max` so that a small compressed body cannot
/// become an unbounded allocation.
fn decompress(encoding: &str, raw: Bytes, max: usize) -> Result<Bytes, Decompress> {
    let enc = encoding.trim().to_ascii_lowercase();
    let reader: Box<dyn Read> = match enc.as_str() {
        "" | "identity" => return Ok(raw),
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(&raw[..])),
        "deflate" | "zlib" => Box::new(flate2::read::ZlibDecoder::new(&raw[..])),
        "zstd" => Box::new(
            zstd::stream::read::Decoder::new(&raw[..])
                .map_err(|e| Decompress::Bad(format!("cannot read the zstd body: {e}")))?,
        ),
        other => {
            return Err(Decompress::Bad(format!(
                "unsupported Content-Encoding {other:?}; supported: gzip, deflate, zlib, zstd"
            )));
        }
    };
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| Decompress::Bad(format!("cannot decompress the {enc} body: {e}")))?;
    if out.len() > max {
        return Err(Decompress::TooLarge);
    }
    Ok(Bytes::from(out))
}

/// `google.rpc.Status`, the error body OTLP/HTTP specifies.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// 401 (with the challenge clients expect) or 403.
fn auth_refusal(format: Format, e: AuthError) -> Response {
    match e {
        AuthError::Unauthenticated(m) => {
            let mut r = status(format, StatusCode::UNAUTHORIZED, m);
            r.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer, Basic"));
            r
        }
        AuthError::Forbidden(m) => status(format, StatusCode::FORBIDDEN, m),
    }
}

fn status(format: Format, http_code: StatusCode, message: String) -> Response {
    // gRPC codes that correspond to each HTTP answer, as the OTLP spec pairs them.
    let code = match http_code {
        StatusCode::BAD_REQUEST => tonic_code::INVALID_ARGUMENT,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => tonic_code::RESOURCE_EXHAUSTED,
        _ => tonic_code::UNAVAILABLE,
    };
    let st = RpcStatus { code, message };
    let body = match format {
        Format::Protobuf => st.encode_to_vec(),
        Format::Json => serde_json::to_vec(&st).unwrap_or_default(),
    };
    (http_code, [(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

mod tonic_code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNAVAILABLE: i32 = 14;
}

fn cors_layer(cfg: &CorsConfig) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    let patterns = cfg.allowed_origins.clone();
    let mut layer = CorsLayer::new().allow_methods([http::Method::POST]).allow_origin(AllowOrigin::predicate(
        move |origin: &HeaderValue, _| origin.to_str().is_ok_and(|o| patterns.iter().any(|p| origin_matches(p, o))),
    ));
    let mut allowed: Vec<http::HeaderName> = vec![header::CONTENT_TYPE, header::CONTENT_ENCODING];
    allowed.extend(cfg.allowed_headers.iter().filter_map(|h| h.parse().ok()));
    layer = layer.allow_headers(AllowHeaders::list(allowed));
    if cfg.max_age > 0 {
        layer = layer.max_age(std::time::Duration::from_secs(cfg.max_age));
    }
    layer
}

/// `*` matches any run of characters, as in the Collector's `allowed_origins`.
fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == origin,
        Some((pre, post)) => {
            origin.len() >= pre.len() + post.len()
                && origin.starts_with(pre)
                && origin_matches_rest(post, &origin[pre.len()..])
        }
    }
}

fn origin_matches_rest(pattern: &str, rest: &str) -> bool {
    if !pattern.contains('*') {
        return rest.ends_with(pattern);
    }
    (0..=rest.len()).filter(|i| rest.is_char_boundary(*i)).any(|i| origin_matches(pattern, &rest[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_wildcards() {
        assert!(origin_matches("*", "https://a.example.com"));
        assert!(origin_matches("https://*.example.com", "https://a.example.com"));
        assert!(!origin_matches("https://*.example.com", "https://a.example.org"));
        assert!(origin_matches("https://app.example.com", "https://app.example.com"));
        assert!(!origin_matches("https://app.example.com", "http://app.example.com"));
    }

    #[test]
    fn decompression_is_bounded() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        let small = Bytes::from(enc.finish().unwrap());
        assert!(small.len() < 10_000);
        assert!(matches!(decompress("gzip", small.clone(), 1000), Err(Decompress::TooLarge)));
        assert_eq!(decompress("gzip", small, 1 << 20).ok().map(|b| b.len()), Some(1 << 20));
        assert!(matches!(decompress("br", Bytes::new(), 10), Err(Decompress::Bad(_))));
    }
}
