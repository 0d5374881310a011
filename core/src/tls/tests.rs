//! TLS settings and connections, with certificates made at test time (rcgen): a server over
//! `incoming`, a client over `TlsConnector`, mutual TLS, an untrusted server, and a renewed
//! certificate picked up without a restart.

use super::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA; `leaf` makes certificates it signs.
pub struct TestCa {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        TestCa { ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub fn pem(&self) -> String {
        self.ca.pem()
    }

    /// (certificate PEM, key PEM) for these names.
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn settings(yaml: &str) -> TlsSettings {
    serde_yaml_ng::from_str(yaml).unwrap()
}

#[test]
fn each_side_refuses_what_it_cannot_use_and_says_why() {
    for (yaml, side, path, words) in [
        ("{}", Side::Server, "cert_file", "needs its certificate and key"),
        ("{cert_file: a}", Side::Server, "key_file", "give both"),
        ("{cert_file: a, cert_pem: b, key_file: c}", Side::Server, "cert_file", "not both"),
        ("{cert_file: a, key_file: b, min_version: '1.1'}", Side::Server, "min_version", "RFC 8996"),
        ("{cert_file: a, key_file: b, min_version: '1.3', max_version: '1.2'}", Side::Server, "max_version", "lower"),
        (
            "{cert_file: a, key_file: b, cipher_suites: [TLS_AES_128_GCM_SHA256]}",
            Side::Server,
            "cipher_suites",
            "rustls",
        ),
        (
            "{cert_file: a, key_file: b, insecure_skip_verify: true}",
            Side::Server,
            "insecure_skip_verify",
            "client setting",
        ),
        ("{cert_file: a, key_file: b, client_ca_file_reload: true}", Side::Server, "client_ca_file_reload", "needs"),
        ("{client_ca_file: ca.pem}", Side::Client, "client_ca_file", "server setting"),
        ("{reload_interval: 0s}", Side::Client, "reload_interval", "more than 0"),
        ("{min_version: '2.0'}", Side::Client, "min_version", "not a TLS version"),
    ] {
        let e = settings(yaml).validate(side).unwrap_err();
        assert_eq!(e.path, path, "{yaml}");
        assert!(e.message.contains(words), "{yaml}: {}", e.message);
    }
    assert!(
        settings("{cert_file: a, key_file: b, client_ca_file: c, min_version: '1.3'}").validate(Side::Server).is_ok()
    );
    assert!(settings("{insecure_skip_verify: true, server_name_override: x}").validate(Side::Client).is_ok());
    assert_eq!(settings("{min_version: '1.3'}").versions(), vec![&rustls::version::TLS13]);
    assert_eq!(settings("{}").versions().len(), 2);
}

#[test]
fn unreadable_or_mismatched_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, _) = ca.leaf(&["localhost"]);
    let (_, other_key) = ca.leaf(&["localhost"]);
    let s = settings(&format!("{{cert_file: {}, key_file: /nonexistent/key.pem}}", write(dir.path(), "c.pem", &cert)));
    let e = ServerTls::new("test", &s, &[]).err().unwrap();
    assert!(format!("{e:#}").contains("key_file /nonexistent/key.pem"), "{e:#}");
    let s = settings(&format!(
        "{{cert_file: {}, key_file: {}}}",
        write(dir.path(), "c.pem", &cert),
        write(dir.path(), "k.pem", &other_key)
    ));
    let e = ServerTls::new("test", &s, &[]).err().unwrap();
    assert!(format!("{e:#}").contains("does the key belong to the certificate"), "{e:#}");
    let s = settings(&format!("{{cert_file: {}, key_file: {}}}", write(dir.path(), "e.pem", "junk"), "x"));
    let e = ServerTls::new("test", &s, &[]).err().unwrap();
    assert!(format!("{e:#}").contains("holds no certificate"), "{e:#}");
}

/// A server that answers each connection with the first line it read, over `incoming`.
async fn echo_server(tls: Option<Arc<ServerTls>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut inc = incoming(listener, tls, "test").unwrap();
    let addr = axum::serve::Listener::local_addr(&inc).unwrap();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = axum::serve::Listener::accept(&mut inc).await;
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                if let Ok(n) = conn.read(&mut buf).await {
                    let _ = conn.write_all(&buf[..n]).await;
                    let _ = conn.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Connects through `TlsConnector`, says hello, returns the answer (or the first error).
async fn hello(addr: std::net::SocketAddr, tls: Option<Arc<ClientTls>>, host: &str) -> anyhow::Result<String> {
    let uri: axum::http::Uri = format!("https://{host}:{}", addr.port()).parse().unwrap();
    let io = tower::Service::call(&mut TlsConnector::new(tls), uri).await?;
    let mut io = io.into_inner();
    io.write_all(b"hello").await?;
    let mut out = String::new();
    io.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn mutual_tls_serves_clients_with_a_certificate_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, clients) = (TestCa::new(), TestCa::new());
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
    let server = settings(&format!(
        "{{cert_file: {}, key_file: {}, client_ca_file: {}}}",
        write(dir.path(), "s.pem", &cert),
        write(dir.path(), "s.key", &key),
        write(dir.path(), "clients.pem", &clients.pem())
    ));
    server.validate(Side::Server).unwrap();
    let addr = echo_server(Some(ServerTls::new("test", &server, &[]).unwrap())).await;

    let (ccert, ckey) = clients.leaf(&["agent-1"]);
    let with_cert = settings(&format!(
        "{{ca_file: {}, cert_file: {}, key_file: {}}}",
        write(dir.path(), "ca.pem", &ca.pem()),
        write(dir.path(), "c.pem", &ccert),
        write(dir.path(), "c.key", &ckey)
    ));
    let client = ClientTls::new("test", &with_cert, &[]).unwrap();
    assert_eq!(hello(addr, Some(client.clone()), "localhost").await.unwrap(), "hello");
    assert_eq!(hello(addr, Some(client), "127.0.0.1").await.unwrap(), "hello", "an IP address SAN");

    // No client certificate: the handshake (or, in TLS 1.3, the first read) fails; nothing is echoed.
    let no_cert = settings(&format!("{{ca_file: {}}}", write(dir.path(), "ca.pem", &ca.pem())));
    let r = hello(addr, Some(ClientTls::new("test", &no_cert, &[]).unwrap()), "localhost").await;
    assert!(r.as_deref().map_or(true, |s| s.is_empty()), "{r:?}");
    // A certificate from another CA: refused too.
    let (wrong, wrong_key) = TestCa::new().leaf(&["agent-2"]);
    let other = settings(&format!(
        "{{ca_file: {}, cert_pem: {:?}, key_pem: {:?}}}",
        write(dir.path(), "ca.pem", &ca.pem()),
        wrong,
        wrong_key
    ));
    let r = hello(addr, Some(ClientTls::new("test", &other, &[]).unwrap()), "localhost").await;
    assert!(r.as_deref().map_or(true, |s| s.is_empty()), "{r:?}");
    // A plaintext client on the TLS port is not served (it gets at most a TLS alert), and the server
    // keeps serving.
    let r = hello(addr, None, "localhost").await;
    assert!(r.as_deref().map_or(true, |s| !s.contains("hello")), "{r:?}");
    let client = ClientTls::new("test", &with_cert, &[]).unwrap();
    assert_eq!(hello(addr, Some(client), "localhost").await.unwrap(), "hello");
}

#[tokio::test]
async fn a_client_verifies_the_server_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["collector.internal"]);
    let server = settings(&format!("{{cert_pem: {cert:?}, key_pem: {key:?}}}"));
    let addr = echo_server(Some(ServerTls::new("test", &server, &[]).unwrap())).await;
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());

    // The name in the certificate is not the host dialed: refused, unless server_name_override says it.
    let plain = settings(&format!("{{ca_file: {ca_file}}}"));
    let e = hello(addr, Some(ClientTls::new("test", &plain, &[]).unwrap()), "localhost").await.unwrap_err();
    assert!(format!("{e:#}").contains("TLS handshake with localhost"), "{e:#}");
    let named = settings(&format!("{{ca_file: {ca_file}, server_name_override: collector.internal}}"));
    assert_eq!(hello(addr, Some(ClientTls::new("test", &named, &[]).unwrap()), "localhost").await.unwrap(), "hello");
    // A CA that did not sign it: refused; insecure_skip_verify: accepted.
    let other = settings(&format!("{{ca_pem: {:?}, server_name_override: collector.internal}}", TestCa::new().pem()));
    assert!(hello(addr, Some(ClientTls::new("test", &other, &[]).unwrap()), "localhost").await.is_err());
    let skip = settings("{insecure_skip_verify: true}");
    assert_eq!(hello(addr, Some(ClientTls::new("test", &skip, &[]).unwrap()), "localhost").await.unwrap(), "hello");
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (TestCa::new(), TestCa::new());
    let (cert, key) = old_ca.leaf(&["localhost"]);
    let (cert_file, key_file) = (write(dir.path(), "s.pem", &cert), write(dir.path(), "s.key", &key));
    let server = settings(&format!("{{cert_file: {cert_file}, key_file: {key_file}, reload_interval: 100ms}}"));
    let addr = echo_server(Some(ServerTls::new("test", &server, &[]).unwrap())).await;
    let trusting =
        |ca: &TestCa| ClientTls::new("test", &settings(&format!("{{ca_pem: {:?}}}", ca.pem())), &[]).unwrap();
    assert_eq!(hello(addr, Some(trusting(&old_ca)), "localhost").await.unwrap(), "hello");

    // A half-written pair (the new certificate, the old key) is not taken: the old pair stays.
    let (cert2, key2) = new_ca.leaf(&["localhost"]);
    std::fs::write(&cert_file, &cert2).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert_eq!(hello(addr, Some(trusting(&old_ca)), "localhost").await.unwrap(), "hello");
    // Once the key follows, the next connection gets the new certificate.
    std::fs::write(&key_file, &key2).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert_eq!(hello(addr, Some(trusting(&new_ca)), "localhost").await.unwrap(), "hello");
    assert!(hello(addr, Some(trusting(&old_ca)), "localhost").await.is_err());
}
