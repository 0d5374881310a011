//! Bad input gets the answer the OTLP spec gives it, and the daemon keeps serving.

use crate::harness::{Daemon, FILE_PIPELINES, client};
use crate::ingest::rich_traces;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use prost::Message;
use std::io::Write;

/// `google.rpc.Status` as the daemon sends it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Small limits so that oversized input is cheap to make.
fn limited() -> String {
    FILE_PIPELINES
        .replace(
            "        endpoint: 127.0.0.1:{grpc}\n",
            "        endpoint: 127.0.0.1:{grpc}\n        max_recv_msg_size_mib: 1\n",
        )
        .replace(
            "        endpoint: 127.0.0.1:{http}\n",
            "        endpoint: 127.0.0.1:{http}\n        max_request_body_size: 1048576\n",
        )
}

async fn post(d: &Daemon, ctype: &str, encoding: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut r = client().post(d.http_url("/v1/traces")).header("content-type", ctype);
    if let Some(e) = encoding {
        r = r.header("content-encoding", e);
    }
    r.body(body).send().await.unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A trace request whose one span has a name of `n` zero bytes: tiny once compressed.
fn inflatable(n: usize) -> Vec<u8> {
    let mut t = rich_traces("bomb");
    t.resource_spans[0].scope_spans[0].spans[0].name = "\0".repeat(n);
    t.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bad_input_answers() {
    let d = Daemon::start(&limited()).await;

    // Garbage protobuf: 400 with a protobuf google.rpc.Status.
    let r = post(&d, "application/x-protobuf", None, b"\xff\xff\xff\xff garbage".to_vec()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let st = RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(st.code, 3, "INVALID_ARGUMENT");
    assert!(st.message.contains("cannot decode"), "{}", st.message);
    d.assert_serving().await;

    // Malformed JSON: 400 with a JSON google.rpc.Status.
    let r = post(&d, "application/json", None, br#"{"resourceSpans": [ {"#.to_vec()).await;
    assert_eq!(r.status(), 400);
    let st: serde_json::Value = r.json().await.unwrap();
    assert_eq!(st["code"], 3);
    assert!(st["message"].as_str().unwrap().contains("invalid JSON"), "{st}");
    // Well-formed JSON of the wrong shape.
    let r = post(&d, "application/json", None, br#"{"resourceSpans": "nope"}"#.to_vec()).await;
    assert_eq!(r.status(), 400);
    d.assert_serving().await;

    // Wrong content type: 415.
    let r = post(&d, "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("application/x-protobuf"));

    // Other methods: 405.
    let r = client().get(d.http_url("/v1/traces")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = client().put(d.http_url("/v1/traces")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 405);

    // Oversized body: 413.
    let r = post(&d, "application/x-protobuf", None, inflatable(2 << 20)).await;
    assert_eq!(r.status(), 413);
    d.assert_serving().await;

    // Gzip bomb: 40 KiB that inflates to 32 MiB is refused once it passes the 1 MiB limit.
    let bomb = gzip(&inflatable(32 << 20));
    assert!(bomb.len() < 64 << 10, "the bomb should be small: {}", bomb.len());
    let r = post(&d, "application/x-protobuf", Some("gzip"), bomb).await;
    assert_eq!(r.status(), 413);
    let bomb = zstd::encode_all(&inflatable(32 << 20)[..], 19).unwrap();
    assert_eq!(post(&d, "application/x-protobuf", Some("zstd"), bomb).await.status(), 413);
    // Corrupt compressed data and unknown encodings: 400.
    assert_eq!(post(&d, "application/x-protobuf", Some("gzip"), b"not gzip".to_vec()).await.status(), 400);
    assert_eq!(post(&d, "application/x-protobuf", Some("br"), b"x".to_vec()).await.status(), 400);

    // Invalid tenant: 400, never sanitised into a path, and never taken for a missing header (which would
    // store the data under `default`) when its bytes are not visible ASCII.
    let long = "x".repeat(65);
    let bad: [&[u8]; 6] = [b"../../etc", b"a b", long.as_bytes(), b"acme\xff", "caf\u{e9}".as_bytes(), b"a\tb"];
    for bad in bad {
        let r = client()
            .post(d.http_url("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .header("x-scope-orgid", reqwest::header::HeaderValue::from_bytes(bad).unwrap())
            .body(rich_traces("t").encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "tenant {bad:?}");
        let st = RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
        assert!(st.message.contains("invalid tenant"), "{}", st.message);
    }

    // Unknown path: 404.
    assert_eq!(client().post(d.http_url("/v1/profiles")).body("x").send().await.unwrap().status(), 404);

    d.assert_serving().await;
    assert!(!std::fs::read(d.path("traces.bin")).is_ok_and(|b| !b.is_empty()), "nothing refused may be stored");
    let m = d.metrics_text().await;
    assert!(m.contains("otelcol_receiver_refused_spans_total{receiver=\"otlp\",transport=\"http\"} 12"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bad_input_answers() {
    let d = Daemon::start(&limited()).await;
    let mut c = TraceServiceClient::connect(d.grpc_url()).await.unwrap();

    // Undecodable protobuf: INVALID_ARGUMENT. A valid request whose attribute value is cut short on the
    // wire is what a corrupting proxy would produce; send bytes via a message with a bad nested field.
    let garbage = raw_grpc(&d, b"\x0a\x05\xff\xff\xff\xff\xff").await;
    assert_eq!(garbage, tonic::Code::InvalidArgument, "garbage protobuf");

    // Oversized: RESOURCE_EXHAUSTED.
    let mut big = rich_traces("big");
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(2 << 20);
    let e = c.export(big.clone()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");

    // Compression bomb: small on the wire, over the limit once inflated: RESOURCE_EXHAUSTED.
    big.resource_spans[0].scope_spans[0].spans[0].name = "\0".repeat(32 << 20);
    let e = c.clone().send_compressed(tonic::codec::CompressionEncoding::Gzip).export(big).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");

    // Invalid tenant, also in bytes that are not visible ASCII: INVALID_ARGUMENT.
    for bad in [&b"no/slashes"[..], b"acme\xff"] {
        let mut req = tonic::Request::new(rich_traces("t"));
        let value = tonic::metadata::AsciiMetadataValue::try_from(bad).unwrap();
        req.metadata_mut().insert("x-scope-orgid", value);
        let e = c.export(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
        assert!(e.message().contains("invalid tenant"), "{}", e.message());
    }

    // Still serving, over gRPC too.
    let mut ok = rich_traces("ok");
    ok.resource_spans[0].scope_spans[0].spans[0].attributes.push(KeyValue {
        key: "after".into(),
        value: Some(AnyValue { value: Some(Value::BoolValue(true)) }),
        ..Default::default()
    });
    c.export(ok).await.unwrap();
    d.assert_serving().await;
}

/// Sends raw bytes as the body of a TraceService/Export call; returns the gRPC status code.
async fn raw_grpc(d: &Daemon, payload: &[u8]) -> tonic::Code {
    raw_grpc_to(d, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", payload).await
}

/// Sends `payload` as the request message of the gRPC method at `path`, bytes as they are.
pub async fn raw_grpc_to(d: &Daemon, path: &'static str, payload: &[u8]) -> tonic::Code {
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    #[derive(Default)]
    struct Raw;
    struct RawEnc;
    struct RawDec;
    impl Encoder for RawEnc {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            bytes::BufMut::put_slice(dst, &item);
            Ok(())
        }
    }
    impl Decoder for RawDec {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
            let n = bytes::Buf::remaining(src);
            Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
        }
    }
    impl Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawEnc;
        type Decoder = RawDec;
        fn encoder(&mut self) -> RawEnc {
            RawEnc
        }
        fn decoder(&mut self) -> RawDec {
            RawDec
        }
    }
    let channel = tonic::transport::Channel::from_shared(d.grpc_url()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(path);
    match grpc.unary(tonic::Request::new(payload.to_vec()), path, Raw).await {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}
