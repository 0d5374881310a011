//! The client side: a rustls `ClientConfig` from an exporter's `tls` settings (its CA or the system's,
//! an optional client certificate, `server_name_override`, `insecure_skip_verify`), and a connector
//! that dials TCP and, when TLS is on, does the handshake: what tonic's channel and reqwest use.

use super::reload::Reloading;
use super::server::{add_system_roots, certificates, private_key};
use super::{TlsSettings, provider};
use anyhow::Context;
use axum::http::Uri;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::net::TcpStream;

/// A client's TLS: the config (reloaded when its files change) and the name to verify.
pub struct ClientTls {
    config: Reloading<rustls::ClientConfig>,
    server_name_override: Option<String>,
}

impl ClientTls {
    /// `alpn`: the application protocols to offer (`h2` for gRPC).
    pub fn new(what: &str, s: &TlsSettings, alpn: &[&[u8]]) -> anyhow::Result<Arc<ClientTls>> {
        if s.insecure_skip_verify {
            tracing::warn!("{what}: tls.insecure_skip_verify is set: the server's certificate is not verified");
        }
        let files = if s.reload_interval.is_some() {
            [&s.ca_file, &s.cert_file, &s.key_file].into_iter().filter(|f| !f.is_empty()).map(PathBuf::from).collect()
        } else {
            Vec::new()
        };
        let (settings, alpn): (TlsSettings, Vec<Vec<u8>>) = (s.clone(), alpn.iter().map(|p| p.to_vec()).collect());
        let label = what.to_string();
        let config = Reloading::new(what.to_string(), files, s.reload_interval, move || {
            client_config(&settings, &alpn).with_context(|| format!("{label}: tls"))
        })?;
        let server_name_override = (!s.server_name_override.is_empty()).then(|| s.server_name_override.clone());
        Ok(Arc::new(ClientTls { config, server_name_override }))
    }

    /// The settings for the next connection (for clients that do their own dialing, such as reqwest).
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.current()
    }

    /// The name the server's certificate must carry when dialing `host`.
    fn server_name(&self, host: &str) -> anyhow::Result<ServerName<'static>> {
        let name = self.server_name_override.as_deref().unwrap_or(host);
        // `[::1]` in a URI is the address `::1`.
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_string()).with_context(|| format!("{name:?} is not a valid TLS server name"))
    }
}

fn client_config(s: &TlsSettings, alpn: &[Vec<u8>]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider()).with_protocol_versions(&s.versions())?;
    let builder = if s.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification))
    } else {
        let mut roots = RootCertStore::empty();
        if s.ca_file.is_empty() && s.ca_pem.is_empty() {
            add_system_roots(&mut roots);
        } else {
            for c in certificates(&s.ca_file, &s.ca_pem, "ca")? {
                roots.add(c).context("ca: not a usable CA certificate")?;
            }
            if s.include_system_ca_certs_pool {
                add_system_roots(&mut roots);
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut cfg = if s.cert_file.is_empty() && s.cert_pem.is_empty() {
        builder.with_no_client_auth()
    } else {
        let certs = certificates(&s.cert_file, &s.cert_pem, "cert")?;
        let key = private_key(&s.key_file, &s.key_pem)?;
        builder.with_client_auth_cert(certs, key).context("cert and key do not make a usable pair")?
    };
    cfg.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(cfg))
}

/// `insecure_skip_verify`: any certificate is accepted (handshake signatures are still checked, so
/// the session keys are those of whoever holds the presented certificate's key).
#[derive(Debug)]
struct NoVerification;

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// Dials the URI's host and port over TCP, then TLS when configured: a `tower::Service<Uri>` for
/// tonic's `Endpoint::connect_with_connector`.
#[derive(Clone)]
pub struct TlsConnector {
    tls: Option<Arc<ClientTls>>,
}

impl TlsConnector {
    pub fn new(tls: Option<Arc<ClientTls>>) -> TlsConnector {
        TlsConnector { tls }
    }
}

/// A client connection, plain or TLS.
pub enum ClientIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<ClientIo>;
    type Error = anyhow::Error;
    type Future = Pin<Box<dyn Future<Output = anyhow::Result<TokioIo<ClientIo>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri.host().with_context(|| format!("{uri} has no host"))?.to_string();
            let https = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let addr = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let tcp = TcpStream::connect((addr.as_str(), port))
                .await
                .with_context(|| format!("cannot connect to {host}:{port}"))?;
            tcp.set_nodelay(true)?;
            let io = match tls {
                None => ClientIo::Plain(tcp),
                Some(t) => {
                    let name = t.server_name(&host)?;
                    let stream = tokio_rustls::TlsConnector::from(t.config())
                        .connect(name, tcp)
                        .await
                        .with_context(|| format!("TLS handshake with {host}:{port} failed"))?;
                    ClientIo::Tls(Box::new(stream))
                }
            };
            Ok(TokioIo::new(io))
        })
    }
}

macro_rules! delegate_io {
    ($t:ty, $($v:ident),+) => {
        impl tokio::io::AsyncRead for $t {
            fn poll_read(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() { $(Self::$v(s) => std::pin::Pin::new(s).poll_read(cx, buf),)+ }
            }
        }
        impl tokio::io::AsyncWrite for $t {
            fn poll_write(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() { $(Self::$v(s) => std::pin::Pin::new(s).poll_write(cx, buf),)+ }
            }
            fn poll_write_vectored(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() { $(Self::$v(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),)+ }
            }
            fn is_write_vectored(&self) -> bool {
                match self { $(Self::$v(s) => s.is_write_vectored(),)+ }
            }
            fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() { $(Self::$v(s) => std::pin::Pin::new(s).poll_flush(cx),)+ }
            }
            fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() { $(Self::$v(s) => std::pin::Pin::new(s).poll_shutdown(cx),)+ }
            }
        }
    };
}
pub(super) use delegate_io;

delegate_io!(ClientIo, Plain, Tls);
