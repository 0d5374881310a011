//! Authentication as the Collector wires it: authenticator extensions (`bearertokenauth`, `basicauth`)
//! referenced by `auth: {authenticator: <id>}` on receivers, exporters and OpenWit's API port.
//!
//! A server-side authenticator checks a request's headers (HTTP headers, or gRPC metadata) before
//! anything else is read: a refused request gets 401 / `UNAUTHENTICATED` and never reaches the WAL.
//! OpenWit addition: an authenticator may bind identities to tenants (`tenants:`). A bound identity
//! writes and reads its own tenant only; a tenant header naming another is refused (403 /
//! `PERMISSION_DENIED`), and the admin binding (`*`) may name any.

use crate::TenantId;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// `auth: {authenticator: <extension id>}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthRef {
    pub authenticator: String,
}

/// The tenants an identity may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// No binding: the tenant header decides, as without authentication.
    Any,
    /// This tenant only.
    Tenant(TenantId),
    /// Every tenant (`*`): the header decides; the batch monitor shows all tenants.
    Admin,
}

/// Who a request is, once an authenticator accepted it.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The user name, or `token #n` for a bearer token (never the token itself).
    pub name: String,
    pub binding: Binding,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or wrong ones: 401 / `UNAUTHENTICATED`.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known identity, tenant not its own: 403 / `PERMISSION_DENIED`.
    #[error("{0}")]
    Forbidden(String),
}

/// Checks incoming requests.
pub trait ServerAuth: Send + Sync {
    fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError>;
    /// The headers that carry its credentials (lower-case): never kept as request metadata.
    fn credential_headers(&self) -> Vec<String>;
}

/// Adds credentials (or other headers) to outgoing requests; `metadata` and `tenant` are the batch's.
pub trait ClientAuth: Send + Sync {
    fn headers(&self, metadata: &crate::Metadata, tenant: &TenantId) -> Result<Vec<HeaderOp>, String>;
}

/// What a client authenticator does to an outgoing request's headers.
#[derive(Clone, Debug)]
pub enum HeaderOp {
    /// Set, replacing any value.
    Upsert(HeaderName, HeaderValue),
    /// Set only where the request has no such header.
    Insert(HeaderName, HeaderValue),
    /// Replace only where the request has the header.
    Update(HeaderName, HeaderValue),
    Delete(HeaderName),
}

/// Applies `ops` to `headers`, in order.
pub fn apply(ops: Vec<HeaderOp>, headers: &mut HeaderMap) {
    for op in ops {
        match op {
            HeaderOp::Upsert(k, v) => {
                headers.insert(k, v);
            }
            HeaderOp::Insert(k, v) => {
                if !headers.contains_key(&k) {
                    headers.insert(k, v);
                }
            }
            HeaderOp::Update(k, v) => {
                if headers.contains_key(&k) {
                    headers.insert(k, v);
                }
            }
            HeaderOp::Delete(k) => {
                headers.remove(&k);
            }
        }
    }
}

/// What one authenticator extension offers: the server side, the client side, or both.
#[derive(Clone, Default)]
pub struct Authenticator {
    pub server: Option<Arc<dyn ServerAuth>>,
    pub client: Option<Arc<dyn ClientAuth>>,
}

/// The authenticators the daemon runs (those listed in `service.extensions`), by extension id.
#[derive(Clone, Default)]
pub struct Authenticators(HashMap<String, Authenticator>);

impl Authenticators {
    pub fn insert(&mut self, id: &str, a: Authenticator) {
        self.0.insert(id.to_string(), a);
    }

    fn get(&self, r: &AuthRef) -> Result<&Authenticator, String> {
        self.0.get(&r.authenticator).ok_or_else(|| {
            format!(
                "auth.authenticator names {:?}, which is not a running authenticator: declare it under extensions \
                 and list it in service.extensions",
                r.authenticator
            )
        })
    }

    /// The server side of the referenced authenticator.
    pub fn server(&self, r: &AuthRef) -> Result<Arc<dyn ServerAuth>, String> {
        self.get(r)?.server.clone().ok_or_else(|| {
            format!("authenticator {} has no server settings, so it cannot check incoming requests", r.authenticator)
        })
    }

    /// The client side of the referenced authenticator.
    pub fn client(&self, r: &AuthRef) -> Result<Arc<dyn ClientAuth>, String> {
        self.get(r)?.client.clone().ok_or_else(|| {
            format!("authenticator {} has no client settings, so it cannot sign outgoing requests", r.authenticator)
        })
    }
}

/// The tenant a request may use: its binding's, or the header's (`resolve` reads the header as the
/// receiver or API always does).
pub fn bound_tenant<E>(
    identity: Option<&Identity>,
    header: Option<&[u8]>,
    header_name: &str,
    resolve: impl FnOnce(Option<&[u8]>) -> Result<TenantId, E>,
) -> Result<Result<TenantId, E>, AuthError> {
    match identity.map(|i| (&i.binding, &i.name)) {
        Some((Binding::Tenant(t), who)) => match header {
            Some(h) if h != t.as_str().as_bytes() => Err(AuthError::Forbidden(format!(
                "{who} may use tenant {t} only; the {header_name} header names {:?}",
                String::from_utf8_lossy(h)
            ))),
            _ => Ok(Ok(t.clone())),
        },
        _ => Ok(resolve(header)),
    }
}

/// Parses an OpenWit `tenants:` map: tenant → the identities (tokens, users) bound to it, `'*'` for the
/// admins. Tenants are the keys so that secrets stay in values, where `${env:…}` is expanded.
pub fn parse_bindings(
    map: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<HashMap<String, Binding>, String> {
    let mut out = HashMap::new();
    for (tenant, who) in map {
        let b = if tenant == "*" {
            Binding::Admin
        } else {
            Binding::Tenant(TenantId::new(tenant).map_err(|e| format!("tenants.{tenant}: {e}"))?)
        };
        for w in who {
            if out.insert(w.clone(), b.clone()).is_some() {
                return Err(format!("tenants.{tenant}: an identity is bound to two tenants"));
            }
        }
    }
    Ok(out)
}

/// Constant-time comparison of secrets (a mismatch takes as long wherever it is).
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
