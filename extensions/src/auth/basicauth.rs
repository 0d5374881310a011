//! `basicauth`: HTTP Basic authentication. Server side (`htpasswd.file` and/or `htpasswd.inline`):
//! `Authorization: Basic <base64 user:password>` must match an htpasswd entry. Client side
//! (`client_auth.username`, `client_auth.password`): sent with every request. OpenWit addition:
//! `tenants: {<tenant>: [<user>…]}` binds users to tenants (`'*'`: any).

use super::AuthExtension;
use super::htpasswd::Htpasswd;
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use openwit_core::auth::{
    AuthError, Authenticator, Binding, ClientAuth, HeaderOp, Identity, ServerAuth, parse_bindings,
};
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{BuildEnv, ComponentId, ConfigIssue, Extension, Factory, Signal};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HtpasswdConfig {
    pub file: String,
    pub inline: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientAuthConfig {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuthConfig {
    pub htpasswd: Option<HtpasswdConfig>,
    pub client_auth: Option<ClientAuthConfig>,
    /// OpenWit: tenant → the users bound to it (`'*'`: admins, any tenant).
    pub tenants: BTreeMap<String, Vec<String>>,
}

impl ComponentConfig for BasicAuthConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.htpasswd.is_none() && self.client_auth.is_none() {
            return Err(ConfigIssue::new("", "give htpasswd (server side) or client_auth (client side), or both"));
        }
        if let Some(h) = &self.htpasswd {
            if h.file.is_empty() && h.inline.is_empty() {
                return Err(ConfigIssue::new("htpasswd", "give file or inline"));
            }
            if !h.inline.is_empty() {
                Htpasswd::default()
                    .add(&h.inline, "htpasswd.inline")
                    .map_err(|m| ConfigIssue::new("htpasswd.inline", m))?;
            }
        }
        if let Some(c) = &self.client_auth
            && (c.username.is_empty() || c.username.contains(':'))
        {
            return Err(ConfigIssue::new("client_auth.username", "is required and may not contain ':'"));
        }
        parse_bindings(&self.tenants).map_err(|m| ConfigIssue::new("tenants", m))?;
        Ok(())
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Extension>> {
    typed::<BasicAuthConfig, dyn Extension>(
        "basicauth",
        &[],
        &Signal::ALL,
        "authenticator: HTTP Basic checked against htpasswd on receivers and APIs, sent by exporters",
        |id: &ComponentId, cfg: &BasicAuthConfig, _env: &BuildEnv| {
            let server: Option<Arc<dyn ServerAuth>> = match &cfg.htpasswd {
                None => None,
                Some(h) => {
                    let mut users = Htpasswd::default();
                    if !h.file.is_empty() {
                        let text = std::fs::read_to_string(&h.file)
                            .map_err(|e| anyhow::anyhow!("{id}: cannot read htpasswd.file {}: {e}", h.file))?;
                        users.add(&text, &h.file).map_err(|m| anyhow::anyhow!("{id}: {m}"))?;
                    }
                    users.add(&h.inline, "htpasswd.inline").map_err(|m| anyhow::anyhow!("{id}: {m}"))?;
                    anyhow::ensure!(!users.is_empty(), "{id}: the htpasswd settings hold no user");
                    let bindings = parse_bindings(&cfg.tenants).map_err(anyhow::Error::msg)?;
                    Some(Arc::new(BasicServer { id: id.to_string(), users, bindings }))
                }
            };
            let client: Option<Arc<dyn ClientAuth>> = cfg.client_auth.as_ref().map(|c| {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
                Arc::new(BasicClient(format!("Basic {encoded}"))) as Arc<dyn ClientAuth>
            });
            Ok(Box::new(AuthExtension(Authenticator { server, client })))
        },
    )
}

struct BasicServer {
    id: String,
    users: Htpasswd,
    bindings: HashMap<String, Binding>,
}

impl ServerAuth for BasicServer {
    fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let missing = || AuthError::Unauthenticated("missing or invalid Authorization: Basic header".to_string());
        let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(missing)?;
        let (scheme, b64) = value.split_once(' ').ok_or_else(missing)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(missing());
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| missing())?;
        let text = String::from_utf8(decoded).map_err(|_| missing())?;
        let (user, password) = text.split_once(':').ok_or_else(missing)?;
        if !self.users.check(user, password) {
            return Err(AuthError::Unauthenticated(format!("{}: wrong user name or password", self.id)));
        }
        Ok(Identity { name: user.to_string(), binding: self.bindings.get(user).cloned().unwrap_or(Binding::Any) })
    }

    fn credential_headers(&self) -> Vec<String> {
        vec!["authorization".to_string()]
    }
}

struct BasicClient(String);

impl ClientAuth for BasicClient {
    fn headers(
        &self,
        _metadata: &openwit_core::Metadata,
        _tenant: &openwit_core::TenantId,
    ) -> Result<Vec<HeaderOp>, String> {
        let mut v = HeaderValue::from_str(&self.0)
            .map_err(|_| "basicauth: the credentials are not a valid header".to_string())?;
        v.set_sensitive(true);
        Ok(vec![HeaderOp::Upsert(header::AUTHORIZATION, v)])
    }
}
