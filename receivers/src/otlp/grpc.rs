//! OTLP over gRPC: the three `Export` services, written once for all signals.
//!
//! The services are hand-wired rather than generated so that two answers match the OTLP spec instead
//! of tonic's defaults: an undecodable message is `INVALID_ARGUMENT` (tonic says `INTERNAL`), and a
//! message over `max_recv_msg_size_mib` is `RESOURCE_EXHAUSTED` (tonic says `OUT_OF_RANGE`).
//! Decompression is bounded by the same limit, so a compression bomb is refused, not inflated.

use super::GrpcConfig;
use super::ingest::{Accept, Refusal, Transport};
use super::signals::{Logs, Metrics, OtlpSignal, Traces};
use openwit_core::auth::{AuthError, Identity, ServerAuth};
use openwit_core::{ComponentId, LazyPayload, Metadata, Signal};
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

pub async fn start(
    id: &ComponentId,
    cfg: &GrpcConfig,
    ingest: Arc<Accept>,
    auth: Option<Arc<dyn ServerAuth>>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let incoming = super::bind(id, "OTLP/gRPC", &cfg.endpoint, cfg.tls.as_ref(), &[b"h2"]).await?;
    let max = usize::try_from(cfg.max_recv_msg_size_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
    let svc = |signal| ingest.serves(signal).then(|| (ingest.clone(), max, cfg.include_metadata, auth.clone()));
    let traces = svc(Signal::Traces).map(|(i, m, md, a)| OtlpService::<Traces>::new(i, m, md, a));
    let metrics = svc(Signal::Metrics).map(|(i, m, md, a)| OtlpService::<Metrics>::new(i, m, md, a));
    let logs = svc(Signal::Logs).map(|(i, m, md, a)| OtlpService::<Logs>::new(i, m, md, a));
    let sp = &cfg.keepalive.server_parameters;
    let mut server = tonic::transport::Server::builder()
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .http2_keepalive_interval(sp.time)
        .http2_keepalive_timeout(sp.timeout);
    if let Some(age) = sp.max_connection_age {
        server = server.max_connection_age(age);
    }
    if let Some(grace) = sp.max_connection_age_grace {
        server = server.max_connection_age_grace(grace);
    }
    let router = server.add_optional_service(traces).add_optional_service(metrics).add_optional_service(logs);
    drop(ingest);
    let id = id.to_string();
    tracing::info!(receiver = %id, endpoint = %cfg.endpoint, tls = cfg.tls.is_some(), "OTLP/gRPC listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()).await {
            tracing::error!(receiver = %id, "OTLP/gRPC server stopped: {e}");
        }
    }))
}

/// One signal's `Export` service.
pub struct OtlpService<S> {
    ingest: Arc<Accept>,
    max: usize,
    include_metadata: bool,
    auth: Option<Arc<dyn ServerAuth>>,
    _signal: PhantomData<fn() -> S>,
}

impl<S> Clone for OtlpService<S> {
    fn clone(&self) -> Self {
        OtlpService {
            ingest: self.ingest.clone(),
            max: self.max,
            include_metadata: self.include_metadata,
            auth: self.auth.clone(),
            _signal: PhantomData,
        }
    }
}

impl<S: OtlpSignal> OtlpService<S> {
    fn new(ingest: Arc<Accept>, max: usize, include_metadata: bool, auth: Option<Arc<dyn ServerAuth>>) -> Self {
        OtlpService { ingest, max, include_metadata, auth, _signal: PhantomData }
    }
}

impl<S: OtlpSignal> NamedService for OtlpService<S> {
    const NAME: &'static str = S::SERVICE;
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S: OtlpSignal> tower::Service<http::Request<tonic::body::Body>> for OtlpService<S> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        let is_export = req.uri().path().strip_prefix('/').and_then(|p| p.strip_prefix(S::SERVICE)) == Some("/Export");
        let this = self.clone();
        Box::pin(async move {
            if !is_export {
                return Ok(Status::unimplemented("only Export is served").into_http());
            }
            // Credentials first: a refused request's message is never decoded.
            match super::ingest::authenticate(this.auth.as_ref(), req.headers()) {
                Ok(Some(identity)) => {
                    req.extensions_mut().insert(identity);
                }
                Ok(None) => {}
                Err(AuthError::Unauthenticated(m)) => return Ok(Status::unauthenticated(m).into_http()),
                Err(AuthError::Forbidden(m)) => return Ok(Status::permission_denied(m).into_http()),
            }
            let mut grpc = tonic::server::Grpc::new(OtlpCodec::<S>(ProstCodec::default()))
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(this.max);
            let mut resp = grpc.unary(Export::<S>(this), req).await;
            // tonic reports an over-long message as OUT_OF_RANGE; OTLP clients expect RESOURCE_EXHAUSTED.
            let h = resp.headers_mut();
            if h.get("grpc-status").and_then(|v| v.to_str().ok()) == Some("11") {
                h.insert("grpc-status", http::HeaderValue::from(Code::ResourceExhausted as i32));
            }
            Ok(resp)
        })
    }
}

struct Export<S>(OtlpService<S>);

impl<S: OtlpSignal> UnaryService<Raw> for Export<S> {
    type Response = S::Resp;
    type Future = BoxFut<Result<tonic::Response<S::Resp>, Status>>;

    fn call(&mut self, request: tonic::Request<Raw>) -> Self::Future {
        let svc = self.0.clone();
        Box::pin(async move {
            let md = request.metadata();
            let identity = request.extensions().get::<Identity>();
            let tenant = match svc.ingest.tenant_for(identity, md.get(svc.ingest.tenant_key()).map(|v| v.as_bytes())) {
                Ok(t) => t,
                Err(e) => return Err(Status::permission_denied(e.to_string())),
            };
            let metadata = if svc.include_metadata {
                super::metadata::kept(&md.clone().into_headers(), svc.auth.as_ref())
            } else {
                Metadata::new()
            };
            let raw = request.into_inner();
            match svc.ingest.accept(Transport::Grpc, tenant, raw.payload, Some(raw.bytes), metadata).await {
                Ok(()) => Ok(tonic::Response::new(S::Resp::default())),
                Err(e @ Refusal::Tenant(_)) => Err(Status::invalid_argument(e.to_string())),
                // Every pipeline refusal is temporary: UNAVAILABLE tells OTLP clients to retry.
                Err(Refusal::Pipeline(e)) => Err(Status::unavailable(e.to_string())),
            }
        })
    }
}

/// A request (decoded, or its bytes the conversion reads, see `LazyPayload`) with its bytes: the WAL
/// stores those bytes as they came, so the request is never encoded again.
pub struct Raw {
    payload: LazyPayload,
    bytes: bytes::Bytes,
}

/// Prost encoding for responses; requests decode into `Raw`, with failures reported as
/// `INVALID_ARGUMENT`.
struct OtlpCodec<S: OtlpSignal>(ProstCodec<S::Resp, S::Req>);

impl<S: OtlpSignal> Codec for OtlpCodec<S> {
    type Encode = S::Resp;
    type Decode = Raw;
    type Encoder = <ProstCodec<S::Resp, S::Req> as Codec>::Encoder;
    type Decoder = RawDecoder<S>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder(PhantomData)
    }
}

struct RawDecoder<S>(PhantomData<fn() -> S>);

impl<S: OtlpSignal> Decoder for RawDecoder<S> {
    type Item = Raw;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Raw>, Status> {
        let bytes = bytes::Buf::copy_to_bytes(buf, bytes::Buf::remaining(buf));
        let payload = LazyPayload::from_protobuf(S::SIGNAL, bytes.clone())
            .map_err(|e| Status::invalid_argument(format!("cannot decode the OTLP request: {e}")))?;
        Ok(Some(Raw { payload, bytes }))
    }
}
