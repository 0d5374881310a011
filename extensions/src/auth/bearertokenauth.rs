//! `bearertokenauth`: a request carries `Authorization: Bearer <token>` (or `header: <name>` with
//! `scheme` before the token). Server side: the token must be one of `token`, `tokens`, or the lines of
//! `filename` (re-read when the file changes). Client side: the first token is sent with every request.
//! OpenWit addition: `tenants: {<tenant>: [<token>…]}` binds tokens to tenants (`'*'`: every tenant).

use super::AuthExtension;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use openwit_core::auth::{
    AuthError, Authenticator, Binding, ClientAuth, HeaderOp, Identity, ServerAuth, parse_bindings, same_secret,
};
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{BuildEnv, ComponentId, ConfigIssue, Extension, Factory, Signal};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BearerTokenConfig {
    /// Written before the token (`Bearer`); empty: the header holds the token alone.
    pub scheme: String,
    /// The header that carries it.
    pub header: String,
    pub token: String,
    /// More accepted tokens (server side).
    pub tokens: Vec<String>,
    /// A file with the token(s), one per line; read again when it changes.
    pub filename: String,
    /// OpenWit: tenant → the tokens bound to it (`'*'`: admin tokens, any tenant).
    pub tenants: BTreeMap<String, Vec<String>>,
}

impl Default for BearerTokenConfig {
    fn default() -> Self {
        BearerTokenConfig {
            scheme: "Bearer".into(),
            header: "Authorization".into(),
            token: String::new(),
            tokens: Vec::new(),
            filename: String::new(),
            tenants: BTreeMap::new(),
        }
    }
}

impl ComponentConfig for BearerTokenConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        let inline = !self.token.is_empty() || !self.tokens.is_empty();
        if inline && !self.filename.is_empty() {
            return Err(ConfigIssue::new("filename", "give the token inline (token, tokens) or in a file, not both"));
        }
        if !inline && self.filename.is_empty() {
            return Err(ConfigIssue::new("token", "is required: give token, tokens or filename"));
        }
        if HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            return Err(ConfigIssue::new("header", format!("{:?} is not an HTTP header name", self.header)));
        }
        parse_bindings(&self.tenants).map_err(|m| ConfigIssue::new("tenants", m))?;
        if inline {
            let known = self.inline_tokens();
            if let Some(t) = self.tenants.values().flatten().find(|t| !known.contains(t)) {
                return Err(ConfigIssue::new(
                    "tenants",
                    format!("binds a token that is not among token/tokens ({} characters)", t.len()),
                ));
            }
        }
        Ok(())
    }
}

impl BearerTokenConfig {
    fn inline_tokens(&self) -> Vec<String> {
        std::iter::once(&self.token).chain(&self.tokens).filter(|t| !t.is_empty()).cloned().collect()
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Extension>> {
    typed::<BearerTokenConfig, dyn Extension>(
        "bearertokenauth",
        &[],
        &Signal::ALL,
        "authenticator: bearer tokens checked on receivers and APIs, sent by exporters",
        |id: &ComponentId, cfg: &BearerTokenConfig, _env: &BuildEnv| {
            let tokens = Tokens::new(cfg)?;
            let bearer = Arc::new(Bearer {
                id: id.to_string(),
                header: HeaderName::from_bytes(cfg.header.as_bytes())?,
                scheme: cfg.scheme.clone(),
                tokens,
                bindings: parse_bindings(&cfg.tenants).map_err(anyhow::Error::msg)?,
            });
            Ok(Box::new(AuthExtension(Authenticator { server: Some(bearer.clone()), client: Some(bearer) })))
        },
    )
}

/// The accepted tokens: inline, or a file checked for changes at most once a second.
/// Shared, so that checking a request copies nothing.
enum Tokens {
    Inline(Arc<Vec<String>>),
    File { path: PathBuf, cache: Mutex<(Instant, Option<SystemTime>, Arc<Vec<String>>)> },
}

const FILE_CHECK: Duration = Duration::from_secs(1);

fn read_tokens(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("bearertokenauth: cannot read the token file {}: {e}", path.display()))?;
    let tokens: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    anyhow::ensure!(!tokens.is_empty(), "bearertokenauth: the token file {} is empty", path.display());
    Ok(tokens)
}

impl Tokens {
    fn new(cfg: &BearerTokenConfig) -> anyhow::Result<Tokens> {
        if cfg.filename.is_empty() {
            return Ok(Tokens::Inline(Arc::new(cfg.inline_tokens())));
        }
        let path = PathBuf::from(&cfg.filename);
        let tokens = read_tokens(&path)?;
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Ok(Tokens::File { path, cache: Mutex::new((Instant::now(), mtime, Arc::new(tokens))) })
    }

    fn current(&self) -> Arc<Vec<String>> {
        match self {
            Tokens::Inline(t) => t.clone(),
            Tokens::File { path, cache } => {
                let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                if c.0.elapsed() >= FILE_CHECK {
                    c.0 = Instant::now();
                    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                    if mtime != c.1 {
                        match read_tokens(path) {
                            Ok(t) => {
                                c.1 = mtime;
                                c.2 = Arc::new(t);
                                tracing::info!("bearertokenauth: {} changed; tokens reloaded", path.display());
                            }
                            Err(e) => tracing::warn!("{e}; the previous tokens stay in use"),
                        }
                    }
                }
                c.2.clone()
            }
        }
    }
}

struct Bearer {
    id: String,
    header: HeaderName,
    scheme: String,
    tokens: Tokens,
    bindings: HashMap<String, Binding>,
}

impl ServerAuth for Bearer {
    fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let missing = || AuthError::Unauthenticated(format!("missing or invalid {} header", self.header));
        let value = headers.get(&self.header).and_then(|v| v.to_str().ok()).ok_or_else(missing)?;
        let presented = if self.scheme.is_empty() {
            value.trim()
        } else {
            match value.split_once(' ') {
                Some((s, t)) if s.eq_ignore_ascii_case(&self.scheme) => t.trim(),
                _ => return Err(missing()),
            }
        };
        // Every token is compared, in constant time, so that timing tells nothing.
        let mut found = None;
        for (i, t) in self.tokens.current().iter().enumerate() {
            if same_secret(t.as_bytes(), presented.as_bytes()) && found.is_none() {
                found = Some((i, t.clone()));
            }
        }
        let (i, token) =
            found.ok_or_else(|| AuthError::Unauthenticated(format!("{}: the token is not valid", self.id)))?;
        Ok(Identity {
            name: format!("token #{}", i + 1),
            binding: self.bindings.get(&token).cloned().unwrap_or(Binding::Any),
        })
    }

    fn credential_headers(&self) -> Vec<String> {
        vec![self.header.as_str().to_ascii_lowercase()]
    }
}

impl ClientAuth for Bearer {
    fn headers(
        &self,
        _metadata: &openwit_core::Metadata,
        _tenant: &openwit_core::TenantId,
    ) -> Result<Vec<HeaderOp>, String> {
        let token = self.tokens.current().first().cloned().ok_or("bearertokenauth: no token")?;
        let text = if self.scheme.is_empty() { token } else { format!("{} {token}", self.scheme) };
        let mut v =
            HeaderValue::from_str(&text).map_err(|_| format!("{}: the token is not a valid header value", self.id))?;
        v.set_sensitive(true);
        Ok(vec![HeaderOp::Upsert(self.header.clone(), v)])
    }
}
