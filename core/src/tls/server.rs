//! The server side: a rustls `ServerConfig` from the `tls` settings, with mutual TLS when
//! `client_ca_file` is set, rebuilt when its files change.

use super::reload::Reloading;
use super::{TlsSettings, provider};
use anyhow::Context;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often `client_ca_file_reload` checks the CA file when no `reload_interval` is given.
const CLIENT_CA_CHECK: Duration = Duration::from_secs(10);

/// A server's TLS, shared by its accept loop.
pub struct ServerTls {
    config: Reloading<rustls::ServerConfig>,
}

impl ServerTls {
    /// Loads the certificates now (an error names the file and stops the start). `alpn`: the
    /// application protocols offered (`h2` for gRPC; `h2` and `http/1.1` for HTTP).
    pub fn new(what: &str, s: &TlsSettings, alpn: &[&[u8]]) -> anyhow::Result<Arc<ServerTls>> {
        if !s.ca_file.is_empty() || !s.ca_pem.is_empty() {
            tracing::warn!(
                "{what}: tls.ca_file/ca_pem is not used by a server (as in the Collector); client certificates are checked against client_ca_file"
            );
        }
        let mut files = Vec::new();
        if s.reload_interval.is_some() {
            files.extend([&s.cert_file, &s.key_file].into_iter().filter(|f| !f.is_empty()).map(PathBuf::from));
        }
        if s.client_ca_file_reload {
            files.push(PathBuf::from(&s.client_ca_file));
        }
        let interval = s.reload_interval.or(s.client_ca_file_reload.then_some(CLIENT_CA_CHECK));
        let (settings, alpn): (TlsSettings, Vec<Vec<u8>>) = (s.clone(), alpn.iter().map(|p| p.to_vec()).collect());
        let what = what.to_string();
        let label = what.clone();
        let config = Reloading::new(what, files, interval, move || {
            server_config(&settings, &alpn).with_context(|| format!("{label}: tls"))
        })?;
        Ok(Arc::new(ServerTls { config }))
    }

    /// The settings to hand the next handshake.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.current()
    }
}

fn server_config(s: &TlsSettings, alpn: &[Vec<u8>]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = certificates(&s.cert_file, &s.cert_pem, "cert")?;
    let key = private_key(&s.key_file, &s.key_pem)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider()).with_protocol_versions(&s.versions())?;
    let builder = if s.client_ca_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for c in certificates(&s.client_ca_file, "", "client_ca")? {
            roots
                .add(c)
                .with_context(|| format!("client_ca_file {}: not a usable CA certificate", s.client_ca_file))?;
        }
        if s.include_system_ca_certs_pool {
            add_system_roots(&mut roots);
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .context("client_ca_file: cannot verify client certificates with it")?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .context("cert and key do not make a usable pair (does the key belong to the certificate?)")?;
    cfg.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(cfg))
}

/// The certificates of a PEM file or inline PEM (`what`: the key's prefix, for errors).
pub(super) fn certificates(file: &str, pem: &str, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = if !file.is_empty() {
        CertificateDer::pem_file_iter(file)
            .with_context(|| format!("{what}_file {file}: cannot read it"))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("{what}_file {file}: not PEM certificates"))?
    } else {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .with_context(|| format!("{what}_pem: not PEM certificates"))?
    };
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: holds no certificate (a PEM block starting with -----BEGIN CERTIFICATE-----)",
        if file.is_empty() { format!("{what}_pem") } else { format!("{what}_file {file}") }
    );
    Ok(certs)
}

/// The private key of a PEM file or inline PEM (PKCS#8, PKCS#1 or SEC1).
pub(super) fn private_key(file: &str, pem: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    if !file.is_empty() {
        PrivateKeyDer::from_pem_file(file).with_context(|| format!("key_file {file}: no PEM private key in it"))
    } else {
        PrivateKeyDer::from_pem_slice(pem.as_bytes()).context("key_pem: not a PEM private key")
    }
}

/// Adds the operating system's CAs; ones it cannot read are skipped with a warning.
pub(super) fn add_system_roots(roots: &mut RootCertStore) {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!("system CA certificates: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!("system CA certificates: {ignored} could not be used ({added} added)");
    }
}
