//! Driving a target with pre-encoded OTLP requests and reporting what it acknowledged, and how fast.

use crate::data::Generator;
use bytes::Bytes;
use hdrhistogram::Histogram;
use prost::Message;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The signal a run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Logs => "/v1/logs",
            Signal::Metrics => "/v1/metrics",
        }
    }

    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }
}

/// How requests travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Grpc,
    Http,
}

/// `count` distinct requests of `items` each, encoded before any clock starts.
pub fn encode_requests(signal: Signal, seed: u64, count: usize, items: usize) -> Vec<Bytes> {
    let mut g = Generator::new(seed);
    (0..count)
        .map(|_| {
            Bytes::from(match signal {
                Signal::Traces => g.traces(items).encode_to_vec(),
                Signal::Logs => g.logs(items).encode_to_vec(),
                Signal::Metrics => g.metrics(items).encode_to_vec(),
            })
        })
        .collect()
}

/// What to send.
#[derive(Clone, Debug)]
pub struct Plan {
    pub signal: Signal,
    pub transport: Transport,
    /// `host:port`.
    pub endpoint: String,
    /// Pre-encoded requests, sent in turn.
    pub requests: Arc<Vec<Bytes>>,
    pub items_per_request: usize,
    pub concurrency: usize,
    /// Stop after this many items (rounded up to whole requests)…
    pub total_items: Option<u64>,
    /// …or after this long, whichever comes first.
    pub duration: Option<Duration>,
    /// Items per second to aim for; `None` sends as fast as acknowledgements allow.
    pub rate: Option<f64>,
}

/// What a run achieved.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub signal: Signal,
    pub transport: Transport,
    pub items_sent: u64,
    pub items_acked: u64,
    pub requests_acked: u64,
    /// Refusals and failures by kind (`http 429`, `grpc Unavailable`, `transport: …`).
    pub errors: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    pub acked_items_per_s: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
}

impl Report {
    pub fn text(&self) -> String {
        let errors = if self.errors.is_empty() {
            "none".to_string()
        } else {
            self.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
        };
        format!(
            "{:?} over {:?}: sent {} items, acknowledged {} ({} requests) in {:.2}s = {:.0} items/s; ack latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; errors: {errors}",
            self.signal,
            self.transport,
            self.items_sent,
            self.items_acked,
            self.requests_acked,
            self.elapsed_s,
            self.acked_items_per_s,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_max_ms
        )
    }
}

/// Sends pre-encoded bytes as a gRPC message; ignores the response body.
#[derive(Default, Clone)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        bytes::Buf::advance(src, n);
        Ok(Some(()))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

enum Client {
    Grpc(tonic::client::Grpc<tonic::transport::Channel>, http::uri::PathAndQuery),
    Http(reqwest::Client, String),
}

impl Client {
    async fn new(plan: &Plan) -> anyhow::Result<Client> {
        Ok(match plan.transport {
            Transport::Grpc => {
                let ch = tonic::transport::Channel::from_shared(format!("http://{}", plan.endpoint))?.connect().await?;
                Client::Grpc(
                    tonic::client::Grpc::new(ch),
                    http::uri::PathAndQuery::from_static(plan.signal.grpc_path()),
                )
            }
            Transport::Http => Client::Http(
                reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build()?,
                format!("http://{}{}", plan.endpoint, plan.signal.http_path()),
            ),
        })
    }

    /// Sends one request; `Err` names the kind of failure.
    async fn send(&mut self, body: Bytes) -> Result<(), String> {
        match self {
            Client::Grpc(g, path) => {
                g.ready().await.map_err(|e| format!("transport: {e}"))?;
                g.unary(tonic::Request::new(body), path.clone(), RawCodec)
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("grpc {:?}", s.code()))
            }
            Client::Http(c, url) => {
                let r = c
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("transport: {}", if e.is_timeout() { "timeout" } else { "error" }))?;
                if r.status().is_success() {
                    let _ = r.bytes().await;
                    Ok(())
                } else {
                    Err(format!("http {}", r.status().as_u16()))
                }
            }
        }
    }
}

/// Runs the plan to completion.
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    anyhow::ensure!(!plan.requests.is_empty(), "no requests to send");
    anyhow::ensure!(plan.total_items.is_some() || plan.duration.is_some(), "give a total item count or a duration");
    let total_requests = plan.total_items.map(|t| t.div_ceil(plan.items_per_request as u64)).unwrap_or(u64::MAX);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = plan.duration.map(|d| start + d);
    let mut workers = Vec::new();
    for _ in 0..plan.concurrency.max(1) {
        let mut client = Client::new(plan).await?;
        let next = next.clone();
        let plan = plan.clone();
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds");
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let (mut sent, mut acked) = (0u64, 0u64);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total_requests || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if let Some(rate) = plan.rate {
                    let due = start + Duration::from_secs_f64(k as f64 * plan.items_per_request as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = plan.requests[(k % plan.requests.len() as u64) as usize].clone();
                let t0 = Instant::now();
                sent += 1;
                match client.send(body).await {
                    Ok(()) => {
                        acked += 1;
                        let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                    }
                    Err(kind) => *errors.entry(kind).or_default() += 1,
                }
            }
            (hist, errors, sent, acked)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut errors = BTreeMap::new();
    let (mut sent, mut acked) = (0u64, 0u64);
    for w in workers {
        let (h, e, s, a) = w.await?;
        hist.add(h)?;
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
        sent += s;
        acked += a;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per = plan.items_per_request as u64;
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(Report {
        signal: plan.signal,
        transport: plan.transport,
        items_sent: sent * per,
        items_acked: acked * per,
        requests_acked: acked,
        errors,
        elapsed_s: elapsed,
        acked_items_per_s: (acked * per) as f64 / elapsed,
        latency_p50_ms: ms(hist.value_at_quantile(0.5)),
        latency_p99_ms: ms(hist.value_at_quantile(0.99)),
        latency_max_ms: ms(hist.max()),
    })
}
