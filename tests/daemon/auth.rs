//! Authentication through the real binary: `bearertokenauth` on gRPC and on the API port, `basicauth`
//! on HTTP, identities bound to tenants (OpenWit's `tenants:`), and the exporters' client side
//! (`bearertokenauth` sending a token, `headers_setter` passing each batch's tenant on).

use crate::harness::{Daemon, client, free_port, log_request as logs};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message;
use serde_json::{Value as Json, json};
use std::time::{Duration, Instant};

/// Both "password": SHA-1 (`htpasswd -s`) and Apache MD5 (`htpasswd`'s default).
const HTPASSWD: &str = "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\\nops:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00\\n";

fn secured(api: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
        auth: {{authenticator: bearertokenauth}}
      http:
        endpoint: 127.0.0.1:{{http}}
        include_metadata: true
        auth: {{authenticator: basicauth}}
processors:
  batch: {{timeout: 50ms}}
exporters:
  parquet: {{rotation: {{max_age: 300ms}}}}
extensions:
  health_check: {{endpoint: '127.0.0.1:{{health}}'}}
  bearertokenauth:
    tokens: [tok-acme, tok-globex, tok-admin]
    tenants: {{acme: [tok-acme], globex: [tok-globex], '*': [tok-admin]}}
  basicauth:
    htpasswd: {{inline: "{HTPASSWD}"}}
    tenants: {{acme: [alice], '*': [ops]}}
  query: {{endpoint: '127.0.0.1:{api}', auth: {{authenticator: bearertokenauth}}}}
  batch_monitor: {{endpoint: '127.0.0.1:{api}', auth: {{authenticator: bearertokenauth}}}}
service:
  extensions: [health_check, bearertokenauth, basicauth, query, batch_monitor]
  pipelines:
    logs: {{receivers: [otlp], processors: [batch], exporters: [parquet]}}
    traces: {{receivers: [otlp], processors: [batch], exporters: [parquet]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
"#
    )
}

async fn post(d: &Daemon, user: Option<(&str, &str)>, tenant: Option<&str>, body: &str) -> u16 {
    let mut r = client()
        .post(d.http_url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(logs(body).encode_to_vec());
    if let Some((u, p)) = user {
        r = r.basic_auth(u, Some(p));
    }
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    r.send().await.unwrap().status().as_u16()
}

async fn grpc(d: &Daemon, token: Option<&str>, tenant: Option<&str>, body: &str) -> Result<(), tonic::Code> {
    let mut c = LogsServiceClient::connect(d.grpc_url()).await.unwrap();
    let mut req = tonic::Request::new(logs(body));
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    if let Some(t) = tenant {
        req.metadata_mut().insert("x-scope-orgid", t.parse().unwrap());
    }
    c.export(req).await.map(|_| ()).map_err(|s| s.code())
}

/// A query API call: (status, JSON answer).
async fn api(port: u16, token: Option<&str>, tenant: Option<&str>, path: &str, sql: Option<&str>) -> (u16, Json) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut r = match sql {
        Some(q) => client().post(url).json(&json!({ "sql": q })),
        None => client().get(url),
    };
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    let r = r.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Json::Null))
}

/// Bodies stored for the tenant `token` may query (waits for `n`).
async fn bodies(port: u16, token: &str, tenant: Option<&str>, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, rows) =
            api(port, Some(token), tenant, "/api/v1/query", Some("SELECT body FROM logs ORDER BY body")).await;
        assert_eq!(code, 200, "{rows}");
        let got: Vec<String> =
            rows.as_array().unwrap().iter().map(|r| r["body"].as_str().unwrap().to_string()).collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_before_the_wal_and_identities_keep_to_their_tenant() {
    let port = free_port();
    let d = Daemon::start(&secured(port)).await;

    // Refused before the WAL: no credentials, a wrong password, an unknown token.
    assert_eq!(post(&d, None, None, "anonymous").await, 401);
    assert_eq!(post(&d, Some(("alice", "wrong")), None, "wrong").await, 401);
    assert_eq!(grpc(&d, None, None, "anonymous").await, Err(tonic::Code::Unauthenticated));
    assert_eq!(grpc(&d, Some("tok-nope"), None, "unknown").await, Err(tonic::Code::Unauthenticated));
    // A bound identity cannot write another tenant's data, whatever header it sends.
    assert_eq!(post(&d, Some(("alice", "password")), Some("globex"), "sneaky").await, 403);
    assert_eq!(grpc(&d, Some("tok-acme"), Some("globex"), "sneaky").await, Err(tonic::Code::PermissionDenied));
    assert_eq!(d.metric_sum("openwit_wal_batches_total{outcome=\"written\"}").await, 0.0);

    // Accepted: alice and tok-acme write acme, tok-globex writes globex, the admin user names a tenant.
    assert_eq!(post(&d, Some(("alice", "password")), None, "acme by alice").await, 200);
    assert_eq!(post(&d, Some(("alice", "password")), Some("acme"), "acme again").await, 200);
    grpc(&d, Some("tok-acme"), None, "acme by token").await.unwrap();
    grpc(&d, Some("tok-globex"), Some("globex"), "globex by token").await.unwrap();
    assert_eq!(post(&d, Some(("ops", "password")), Some("initech"), "initech by ops").await, 200);

    // Reading: each token sees its own tenant, whatever header it sends; the admin chooses.
    assert_eq!(bodies(port, "tok-acme", None, 3).await, ["acme again", "acme by alice", "acme by token"]);
    assert_eq!(bodies(port, "tok-globex", None, 1).await, ["globex by token"]);
    let (code, _) = api(port, Some("tok-acme"), Some("globex"), "/api/v1/query", Some("SELECT 1")).await;
    assert_eq!(code, 403);
    assert_eq!(api(port, None, None, "/api/v1/query", Some("SELECT 1")).await.0, 401);
    assert_eq!(bodies(port, "tok-admin", Some("initech"), 1).await, ["initech by ops"]);

    // The batch monitor: the admin sees all five batches, a tenant's token its own only, and cannot retry.
    // The tracker writes batch rows to the catalog in the background: a row may trail its data.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, all) = api(port, Some("tok-admin"), None, "/api/batch-monitor/batches", None).await;
        let n = all["batches"].as_array().map_or(0, Vec::len);
        assert!(n <= 5, "more batches than requests accepted: {all}");
        if n == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the admin sees {n} batches, not 5: {all}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, b) = api(port, Some("tok-globex"), None, "/api/batch-monitor/batches", None).await;
    assert_eq!(code, 200, "{b}");
    let tenants = |b: &Json| -> Vec<String> {
        let mut t: Vec<String> =
            b["batches"].as_array().unwrap().iter().map(|r| r["client_id"].as_str().unwrap().to_string()).collect();
        t.dedup();
        t
    };
    assert_eq!(tenants(&b), ["globex"]);
    let (code, _) = api(port, Some("tok-globex"), None, "/api/batch-monitor/batches?tenant=acme", None).await;
    assert_eq!(code, 403);
    let r = client()
        .post(format!("http://127.0.0.1:{port}/api/batch-monitor/retry-failed"))
        .bearer_auth("tok-acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_sign_their_requests_and_pass_each_tenant_on() {
    let port = free_port();
    let sink = Daemon::start(&secured(port)).await;
    // ops:password, as the Basic credentials headers_setter sends along with each batch's tenant.
    let forwarder = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: '127.0.0.1:{{http}}'}}
exporters:
  otlp:
    endpoint: http://127.0.0.1:{grpc}
    auth: {{authenticator: bearertokenauth}}
  otlphttp:
    endpoint: http://127.0.0.1:{http}
    auth: {{authenticator: headers_setter}}
extensions:
  health_check: {{endpoint: '127.0.0.1:{{health}}'}}
  bearertokenauth: {{token: tok-globex}}
  headers_setter:
    headers:
      - {{key: Authorization, value: "Basic b3BzOnBhc3N3b3Jk"}}
      - {{key: X-Scope-OrgID, from_context: X-Scope-OrgID}}
service:
  extensions: [health_check, bearertokenauth, headers_setter]
  pipelines:
    logs: {{receivers: [otlp], exporters: [otlphttp]}}
    traces: {{receivers: [otlp], exporters: [otlp]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
"#,
        grpc = sink.grpc,
        http = sink.http
    );
    let fwd = Daemon::start(&forwarder).await;
    for (tenant, body) in [("north", "from north"), ("south", "from south")] {
        let r = client()
            .post(fwd.http_url("/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .header("X-Scope-OrgID", tenant)
            .body(logs(body).encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let traces = crate::ingest::rich_traces("signed");
    assert_eq!(fwd.post_protobuf("/v1/traces", traces.encode_to_vec()).await, 200);
    // Each tenant arrived as itself; the traces under the token's tenant.
    assert_eq!(bodies(port, "tok-admin", Some("north"), 1).await, ["from north"], "{}", fwd.logs());
    assert_eq!(bodies(port, "tok-admin", Some("south"), 1).await, ["from south"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, rows) =
            api(port, Some("tok-globex"), None, "/api/v1/query", Some("SELECT count(*) AS n FROM spans")).await;
        if rows[0]["n"].as_i64() == Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "spans not stored under globex: {rows}; {}", fwd.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
