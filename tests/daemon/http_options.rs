//! OTLP/HTTP options: CORS for browser clients and configurable paths.

use crate::harness::{Daemon, FILE_PIPELINES, client};
use prost::Message;

fn with_http_options() -> String {
    FILE_PIPELINES.replace(
        "        endpoint: 127.0.0.1:{http}\n",
        "        endpoint: 127.0.0.1:{http}\n        traces_url_path: /otlp/traces\n        cors:\n          allowed_origins: [\"https://*.example.com\", \"http://localhost:3000\"]\n          allowed_headers: [X-Custom]\n          max_age: 600\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_simple_requests() {
    let d = Daemon::start(&with_http_options()).await;
    let c = client();
    // Preflight from an allowed origin.
    let r = c
        .request(reqwest::Method::OPTIONS, d.http_url("/v1/logs"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-custom")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
    let allowed = r.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("x-custom") && allowed.contains("content-type"), "{allowed}");
    assert_eq!(r.headers()["access-control-max-age"], "600");
    // Preflight from another origin: no permission granted.
    let r = c
        .request(reqwest::Method::OPTIONS, d.http_url("/v1/logs"))
        .header("origin", "https://evil.example.org")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // The actual request carries the header too.
    let r = c
        .post(d.http_url("/v1/logs"))
        .header("origin", "http://localhost:3000")
        .header("content-type", "application/json")
        .body(r#"{"resourceLogs":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "http://localhost:3000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_paths_are_configurable() {
    let d = Daemon::start(&with_http_options()).await;
    let post = |path: &str| {
        client()
            .post(d.http_url(path))
            .header("content-type", "application/json")
            .body(r#"{"resourceSpans":[]}"#)
            .send()
    };
    assert_eq!(post("/otlp/traces").await.unwrap().status(), 200);
    assert_eq!(post("/v1/traces").await.unwrap().status(), 404, "the default path is replaced, not added");
}

/// The Collector's server keys: `response_headers` and `compression_algorithms` on HTTP, stream and
/// keepalive limits on gRPC, all applied; the keys OpenWit cannot apply are refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_keys_of_the_collector_apply_or_are_refused_with_the_reason() {
    let config = FILE_PIPELINES
        .replace(
            "        endpoint: 127.0.0.1:{http}\n",
            "        endpoint: 127.0.0.1:{http}\n        response_headers: {X-Served-By: openwit, Cache-Control: no-store}\n        compression_algorithms: ['', zstd]\n",
        )
        .replace(
            "        endpoint: 127.0.0.1:{grpc}\n",
            "        endpoint: 127.0.0.1:{grpc}\n        max_concurrent_streams: 16\n        read_buffer_size: 524288\n        keepalive:\n          server_parameters: {time: 30s, timeout: 5s, max_connection_age: 1h, max_connection_age_grace: 10s}\n",
        );
    let d = Daemon::start(&config).await;
    let body = crate::harness::log_request("kept").encode_to_vec();
    let send = |enc: Option<&'static str>, body: Vec<u8>| {
        let mut r = client().post(d.http_url("/v1/logs")).header("content-type", "application/x-protobuf");
        if let Some(e) = enc {
            r = r.header("content-encoding", e);
        }
        r.body(body).send()
    };
    let r = send(None, body.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-by"], "openwit");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = send(Some("zstd"), zstd::encode_all(&body[..], 1).unwrap()).await.unwrap();
    assert_eq!(r.status(), 200);
    // gzip is a codec OpenWit has, but this receiver was told not to accept it.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &body).unwrap();
    let r = send(Some("gzip"), gz.finish().unwrap()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().contains_key("x-served-by"), "refusals carry the headers too");
    // gRPC with its limits still serves.
    let mut grpc =
        opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(d.grpc_url())
            .await
            .unwrap();
    grpc.export(crate::harness::log_request("over grpc")).await.unwrap();
    assert_eq!(d.metric_sum("openwit_wal_batches_total{outcome=\"written\"}").await, 3.0);

    for (key, words) in [
        ("      http:\n        idle_timeout: 0s\n", "protocols.http.idle_timeout: must be more than 0"),
        ("      http:\n        write_timeout: 0s\n", "protocols.http.write_timeout: must be more than 0"),
        ("      http:\n        compression_algorithms: [snappy]\n", "\"snappy\" is not supported"),
        ("      grpc:\n        keepalive: {enforcement_policy: {min_time: 10s}}\n", "does not police client pings"),
        ("      grpc:\n        keepalive: {server_parameters: {max_connection_idle: 1m}}\n", "use max_connection_age"),
    ] {
        let cfg = format!(
            "receivers:\n  otlp:\n    protocols:\n{key}exporters:\n  debug: {{}}\nservice:\n  pipelines:\n    logs: {{receivers: [otlp], exporters: [debug]}}\n"
        );
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), cfg).unwrap();
        let out = std::process::Command::new(crate::harness::bin())
            .args(["validate", "--config", f.path().to_str().unwrap()])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success() && text.contains(words), "{words}: {text}");
    }
}

/// `read_header_timeout` closes a connection whose headers do not come (slow loris); `read_timeout`
/// answers 408 to a body that stops coming; neither touches the others, and nothing partial is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_by_the_http_timeouts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = FILE_PIPELINES.replace(
        "        endpoint: 127.0.0.1:{http}\n",
        "        endpoint: 127.0.0.1:{http}\n        read_header_timeout: 300ms\n        read_timeout: 300ms\n",
    );
    let d = Daemon::start(&config).await;
    let addr = format!("127.0.0.1:{}", d.http);

    // Headers that never end: the connection is closed, without an answer, soon after 300 ms.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // A body that stops half-way: 408.
    let body = crate::harness::log_request("half").encode_to_vec();
    let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    half.write_all(head.as_bytes()).await.unwrap();
    half.write_all(&body[..body.len() / 2]).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), half.read(&mut answer)).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    // Everyone else is served as usual; only that request was written.
    let r = client()
        .post(d.http_url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(crate::harness::log_request("whole").encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(d.metric_sum("openwit_wal_batches_total{outcome=\"written\"}").await, 1.0);
}

/// `idle_timeout` closes a keep-alive connection once no request has come for that long; `write_timeout`
/// (generous here) leaves ordinary requests alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = FILE_PIPELINES.replace(
        "        endpoint: 127.0.0.1:{http}\n",
        "        endpoint: 127.0.0.1:{http}\n        idle_timeout: 400ms\n        write_timeout: 10s\n",
    );
    let d = Daemon::start(&config).await;
    let mut conn = tokio::net::TcpStream::connect(format!("127.0.0.1:{}", d.http)).await.unwrap();
    let body = crate::harness::log_request("kept alive").encode_to_vec();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = conn.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), conn.read_to_end(&mut rest))
        .await
        .expect("the idle connection was not closed")
        .unwrap();
    let idle = started.elapsed();
    assert!(idle >= std::time::Duration::from_millis(300), "closed too early: {idle:?}");
    assert_eq!(d.metric_sum("openwit_wal_batches_total{outcome=\"written\"}").await, 1.0);
}
