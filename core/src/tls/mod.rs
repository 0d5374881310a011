//! TLS for every server and client OpenWit runs, with the Collector's `tls` keys, on rustls (ring).
//!
//! One settings type serves both sides, as the Collector's `configtls` does; each side refuses the keys
//! that mean nothing to it. Certificates, keys and CAs come from files or inline PEM; files are read
//! again when they change (at most once per `reload_interval`), so a certificate renewed on disk is
//! served without a restart.

mod client;
mod listener;
mod reload;
mod server;

pub use client::{ClientTls, TlsConnector};
pub use listener::{Conn, Incoming, incoming};
pub use server::ServerTls;

use crate::ConfigIssue;
use serde::Deserialize;
use std::time::Duration;

/// `tls` on a server (`protocols.grpc.tls`, an extension's `tls`) or a client (an exporter's `tls`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// CA that verifies the peer: a client's server. Servers use `client_ca_file` instead.
    pub ca_file: String,
    pub ca_pem: String,
    /// Also trust the system's CAs (a client; a server with `client_ca_file`).
    pub include_system_ca_certs_pool: bool,
    pub cert_file: String,
    pub cert_pem: String,
    pub key_file: String,
    pub key_pem: String,
    /// `1.2` (default) or `1.3`; rustls has no TLS 1.0 or 1.1.
    pub min_version: String,
    pub max_version: String,
    /// Refused: rustls offers only modern AEAD suites and curves, and picks among them itself.
    pub cipher_suites: Vec<String>,
    pub curve_preferences: Vec<String>,
    /// How often certificate files are checked for changes (none: read once at start).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Option<Duration>,
    /// Server: CA that client certificates must chain to (mutual TLS: a client without one is refused).
    pub client_ca_file: String,
    /// Server: re-read `client_ca_file` when it changes.
    pub client_ca_file_reload: bool,
    /// Client: plaintext (gRPC: when the endpoint has no scheme; `https://` is always TLS).
    pub insecure: bool,
    /// Client: do not verify the server's certificate. For tests only: anyone can impersonate the server.
    pub insecure_skip_verify: bool,
    /// Client: the name the server's certificate must carry, instead of the endpoint's host.
    pub server_name_override: String,
}

/// Which end of a connection the settings are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

fn both(a: &str, b: &str) -> bool {
    !a.is_empty() && !b.is_empty()
}

impl TlsSettings {
    /// Checks the keys for `side`; paths are relative to the `tls` section.
    pub fn validate(&self, side: Side) -> Result<(), ConfigIssue> {
        for (file, pem, name) in [
            (&self.cert_file, &self.cert_pem, "cert"),
            (&self.key_file, &self.key_pem, "key"),
            (&self.ca_file, &self.ca_pem, "ca"),
        ] {
            if both(file, pem) {
                return Err(ConfigIssue::new(
                    format!("{name}_file"),
                    format!("give {name}_file or {name}_pem, not both"),
                ));
            }
        }
        let has_cert = !self.cert_file.is_empty() || !self.cert_pem.is_empty();
        let has_key = !self.key_file.is_empty() || !self.key_pem.is_empty();
        if has_cert != has_key {
            return Err(ConfigIssue::new(
                if has_cert { "key_file" } else { "cert_file" },
                "a certificate needs its private key and the reverse: give both (cert_file and key_file, or the _pem forms)",
            ));
        }
        if !self.cipher_suites.is_empty() {
            return Err(ConfigIssue::new(
                "cipher_suites",
                "cannot be chosen: rustls offers only modern AEAD suites (AES-GCM, ChaCha20-Poly1305) and picks among them; remove the key",
            ));
        }
        if !self.curve_preferences.is_empty() {
            return Err(ConfigIssue::new(
                "curve_preferences",
                "cannot be chosen: rustls offers X25519 and the NIST P-256/P-384 curves; remove the key",
            ));
        }
        let min = version(&self.min_version).map_err(|m| ConfigIssue::new("min_version", m))?;
        let max = version(&self.max_version).map_err(|m| ConfigIssue::new("max_version", m))?;
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            return Err(ConfigIssue::new("max_version", "is lower than min_version"));
        }
        if self.reload_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigIssue::new("reload_interval", "must be more than 0 (leave it out to read files once)"));
        }
        match side {
            Side::Server => {
                if !has_cert {
                    return Err(ConfigIssue::new(
                        "cert_file",
                        "a TLS server needs its certificate and key: cert_file and key_file (or cert_pem and key_pem)",
                    ));
                }
                for (set, key) in [
                    (self.insecure, "insecure"),
                    (self.insecure_skip_verify, "insecure_skip_verify"),
                    (!self.server_name_override.is_empty(), "server_name_override"),
                ] {
                    if set {
                        return Err(ConfigIssue::new(key, "is a client setting; a server does not use it"));
                    }
                }
                if self.client_ca_file_reload && self.client_ca_file.is_empty() {
                    return Err(ConfigIssue::new("client_ca_file_reload", "needs client_ca_file"));
                }
            }
            Side::Client => {
                if !self.client_ca_file.is_empty() || self.client_ca_file_reload {
                    return Err(ConfigIssue::new(
                        "client_ca_file",
                        "is a server setting (the CA client certificates must chain to); a client verifies its server with ca_file",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The protocol versions allowed, from `min_version` and `max_version`.
    fn versions(&self) -> Vec<&'static rustls::SupportedProtocolVersion> {
        let min = version(&self.min_version).ok().flatten().unwrap_or(2);
        let max = version(&self.max_version).ok().flatten().unwrap_or(3);
        let mut v = Vec::new();
        if min <= 2 && max >= 2 {
            v.push(&rustls::version::TLS12);
        }
        if max >= 3 {
            v.push(&rustls::version::TLS13);
        }
        v
    }
}

/// `1.2` → 2, `1.3` → 3, empty → none; TLS 1.0 and 1.1 are refused with the reason.
fn version(v: &str) -> Result<Option<u8>, String> {
    match v {
        "" => Ok(None),
        "1.2" => Ok(Some(2)),
        "1.3" => Ok(Some(3)),
        "1.0" | "1.1" => {
            Err(format!("TLS {v} is not offered: it is deprecated (RFC 8996) and rustls has only 1.2 and 1.3"))
        }
        other => Err(format!("{other:?} is not a TLS version; use 1.2 or 1.3")),
    }
}

/// The crypto provider every OpenWit TLS config uses.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests;
