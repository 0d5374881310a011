//! OTLP/HTTP options: CORS for browser clients and configurable paths.

use crate::harness::{Daemon, FILE_PIPELINES, client};

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
