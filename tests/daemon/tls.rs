//! TLS through the real binary, with certificates made at test time: both OTLP ports and the API port
//! over mutual TLS (a client without an accepted certificate is refused before anything reaches the
//! WAL), and the `otlp` and `otlphttp` exporters forwarding to such a daemon.

use crate::harness::{Daemon, eventually, log_request as logs, read_records};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use openwit_core::tls::{ClientTls, TlsConnector, TlsSettings};
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A CA that signs test certificates.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// Writes `<name>.pem` and `<name>.key` for a certificate with these names into `dir`.
    fn issue(&self, dir: &Path, name: &str, sans: &[&str]) {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let cert = CertificateParams::new(sans).unwrap().signed_by(&key, &self.0).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    fn write(&self, dir: &Path, name: &str) {
        std::fs::write(dir.join(name), self.0.pem()).unwrap();
    }
}

/// A server CA and a client CA in `dir`: `ca.pem` signs `server`, `clients.pem` signs `agent`.
pub(crate) fn pki(dir: &Path) {
    let (servers, clients) = (Ca::new(), Ca::new());
    servers.write(dir, "ca.pem");
    clients.write(dir, "clients.pem");
    servers.issue(dir, "server", &["localhost", "127.0.0.1"]);
    clients.issue(dir, "agent", &["agent-1"]);
    // A certificate the daemon does not trust, for the refusals.
    Ca::new().issue(dir, "stranger", &["agent-2"]);
}

/// Server TLS without client certificates (for clients that have none, such as the Collector's test).
pub(crate) fn server_only_tls(dir: &Path) -> String {
    let d = dir.display();
    format!("{{cert_file: {d}/server.pem, key_file: {d}/server.key}}")
}

fn server_tls(dir: &Path) -> String {
    let d = dir.display();
    format!("{{cert_file: {d}/server.pem, key_file: {d}/server.key, client_ca_file: {d}/clients.pem}}")
}

/// A daemon whose OTLP ports and API port (batch_monitor) all require client certificates.
fn secured(dir: &Path, api: u16) -> String {
    let tls = server_tls(dir);
    format!(
        "
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: '127.0.0.1:{{grpc}}', tls: {tls}}}
      http: {{endpoint: '127.0.0.1:{{http}}', tls: {tls}}}
exporters:
  file/logs: {{path: '{{dir}}/logs.bin', format: proto}}
  file/traces: {{path: '{{dir}}/traces.bin', format: proto}}
extensions:
  health_check: {{endpoint: '127.0.0.1:{{health}}'}}
  batch_monitor: {{endpoint: '127.0.0.1:{api}', tls: {tls}}}
service:
  extensions: [health_check, batch_monitor]
  pipelines:
    logs: {{receivers: [otlp], exporters: [file/logs]}}
    traces: {{receivers: [otlp], exporters: [file/traces]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
"
    )
}

/// An HTTPS client trusting `ca.pem`, presenting `<identity>.pem` when given (reqwest's own TLS set-up).
fn https(dir: &Path, identity: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let mut b = reqwest::Client::builder().add_root_certificate(ca).tls_built_in_root_certs(false).no_proxy();
    if let Some(name) = identity {
        let mut pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
        pem.extend(std::fs::read(dir.join(format!("{name}.key"))).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.timeout(Duration::from_secs(10)).build().unwrap()
}

/// A gRPC logs client over TLS, presenting `<identity>.pem` when given.
async fn grpc(
    dir: &Path,
    port: u16,
    identity: Option<&str>,
) -> anyhow::Result<LogsServiceClient<tonic::transport::Channel>> {
    let d = dir.display();
    let yaml = match identity {
        Some(n) => format!("{{ca_file: {d}/ca.pem, cert_file: {d}/{n}.pem, key_file: {d}/{n}.key}}"),
        None => format!("{{ca_file: {d}/ca.pem}}"),
    };
    let settings: TlsSettings = serde_yaml_ng::from_str(&yaml).unwrap();
    let tls = ClientTls::new("test", &settings, &[b"h2"])?;
    let channel = tonic::transport::Channel::from_shared(format!("https://localhost:{port}"))?
        .connect_with_connector(TlsConnector::new(Some(tls)))
        .await?;
    Ok(LogsServiceClient::new(channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_on_every_port_serves_certified_clients_and_refuses_the_rest_before_the_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir);
    let api = crate::harness::free_port();
    let d = Daemon::spawn_in(dir, &secured(dir, api), &[]);
    d.wait_ready().await;

    // With a client certificate: accepted over HTTPS and over gRPC with TLS.
    let ok = https(dir, Some("agent"))
        .post(format!("https://localhost:{}/v1/logs", d.http))
        .header("content-type", "application/x-protobuf")
        .body(logs("over https").encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "{}", d.logs());
    grpc(dir, d.grpc, Some("agent")).await.unwrap().export(logs("over grpc")).await.unwrap();

    // Without one, with one from a CA the daemon does not trust, or in plaintext: refused.
    for who in [None, Some("stranger")] {
        let r = https(dir, who)
            .post(format!("https://localhost:{}/v1/logs", d.http))
            .header("content-type", "application/x-protobuf")
            .body(logs("refused").encode_to_vec())
            .send()
            .await;
        assert!(r.is_err(), "{who:?}: {r:?}");
        let r = match grpc(dir, d.grpc, who).await {
            Ok(mut c) => c.export(logs("refused")).await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        assert!(r.is_err(), "{who:?}");
    }
    let plain = crate::harness::client()
        .post(format!("http://127.0.0.1:{}/v1/logs", d.http))
        .header("content-type", "application/x-protobuf")
        .body(logs("refused").encode_to_vec())
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));

    // Exactly the two accepted requests were written to the WAL and stored.
    let stored =
        eventually(WAIT, || read_records::<ExportLogsServiceRequest>(&d.path("logs.bin")), |r| r.len() >= 2).await;
    let mut bodies: Vec<String> = stored
        .iter()
        .flat_map(|r| &r.resource_logs[0].scope_logs[0].log_records)
        .map(|l| match l.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(s)) => s.clone(),
            _ => String::new(),
        })
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["over grpc", "over https"]);
    assert_eq!(d.metric_sum("openwit_wal_batches_total{outcome=\"written\"}").await, 2.0);

    // The API port: served to the certified client only.
    let url = format!("https://localhost:{api}/api/batch-monitor/status");
    assert_eq!(https(dir, Some("agent")).get(&url).send().await.unwrap().status(), 200);
    assert!(https(dir, None).get(&url).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otlp_exporters_forward_over_mutual_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki(dir);
    let sink_dir = dir.join("sink");
    std::fs::create_dir(&sink_dir).unwrap();
    let sink = Daemon::spawn_in(&sink_dir, &secured(dir, crate::harness::free_port()), &[]);
    sink.wait_ready().await;
    let d = dir.display();
    let client_tls = format!("{{ca_file: {d}/ca.pem, cert_file: {d}/agent.pem, key_file: {d}/agent.key}}");
    // gRPC to a bare host:port is TLS (as in the Collector); HTTP is TLS by its https:// scheme.
    let forwarder = format!(
        "
receivers:
  otlp:
    protocols:
      http: {{endpoint: '127.0.0.1:{{http}}'}}
exporters:
  otlp:
    endpoint: localhost:{grpc}
    tls: {client_tls}
    retry_on_failure: {{initial_interval: 100ms}}
  otlphttp:
    endpoint: https://localhost:{http}
    tls: {client_tls}
    retry_on_failure: {{initial_interval: 100ms}}
extensions:
  health_check: {{endpoint: '127.0.0.1:{{health}}'}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
    logs: {{receivers: [otlp], exporters: [otlphttp]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
",
        grpc = sink.grpc,
        http = sink.http
    );
    let fwd = Daemon::start(&forwarder).await;
    let traces = crate::ingest::rich_traces("tls");
    assert_eq!(fwd.post_protobuf("/v1/traces", traces.encode_to_vec()).await, 200);
    assert_eq!(fwd.post_protobuf("/v1/logs", logs("forwarded over https").encode_to_vec()).await, 200);
    let got =
        eventually(WAIT, || read_records::<ExportTraceServiceRequest>(&sink.path("traces.bin")), |r| !r.is_empty())
            .await;
    assert_eq!(got, vec![traces], "{}", fwd.logs());
    let got =
        eventually(WAIT, || read_records::<ExportLogsServiceRequest>(&sink.path("logs.bin")), |r| !r.is_empty()).await;
    assert_eq!(got, vec![logs("forwarded over https")], "{}", fwd.logs());
}

#[test]
fn a_tls_server_without_its_key_or_with_tls_1_1_does_not_start() {
    let tmp = tempfile::tempdir().unwrap();
    for (tls, words) in [
        ("{cert_file: /nonexistent/server.pem}", "protocols.grpc.tls.key_file"),
        ("{cert_file: a.pem, key_file: a.key, min_version: '1.1'}", "RFC 8996"),
        (
            "{cert_file: /nonexistent/server.pem, key_file: /nonexistent/server.key}",
            "cert_file /nonexistent/server.pem",
        ),
    ] {
        let config = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{{grpc}}\n        tls: {tls}\nexporters:\n  debug: {{}}\nservice:\n  pipelines:\n    logs: {{receivers: [otlp], exporters: [debug]}}\n"
        );
        let mut d = Daemon::spawn_in_on_base(tmp.path(), &config);
        assert!(!d.wait_exit(Duration::from_secs(20)).success());
        assert!(d.logs().contains(words), "{words}: {}", d.logs());
    }
}
