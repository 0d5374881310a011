//! OpenWit's extensions, and the server for the daemon's own metrics.

pub mod auth;
pub mod batch_monitor;
pub mod health_check;
pub mod metrics_endpoint;
pub mod query;

/// Listens on `endpoint` (with TLS when `tls` is set) with errors that name the component and the address.
pub(crate) async fn bind(
    what: &str,
    endpoint: &str,
    tls: Option<&openwit_core::tls::TlsSettings>,
) -> anyhow::Result<openwit_core::tls::Incoming> {
    let tls = tls.map(|t| openwit_core::tls::ServerTls::new(what, t, &[b"h2", b"http/1.1"])).transpose()?;
    let listener = tokio::net::TcpListener::bind(endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("{what}: cannot listen on {endpoint}: {e}; is another process using the port?"))?;
    Ok(openwit_core::tls::incoming(listener, tls, what)?)
}

/// Puts `router` behind the referenced authenticator (none: open): a request without accepted
/// credentials gets 401 before any handler runs; the handlers find the `Identity` in the request's
/// extensions.
pub(crate) fn guarded(
    router: axum::Router,
    auth: Option<&openwit_core::auth::AuthRef>,
    ctx: &openwit_core::ExtensionContext,
) -> anyhow::Result<axum::Router> {
    use axum::response::IntoResponse;
    let Some(r) = auth else { return Ok(router) };
    let server = ctx.auth.server(r).map_err(|m| anyhow::anyhow!("extension {}: {m}", ctx.id))?;
    Ok(router.layer(axum::middleware::from_fn(move |mut req: axum::extract::Request, next: axum::middleware::Next| {
        let server = server.clone();
        async move {
            match server.authenticate(req.headers()) {
                Ok(identity) => {
                    req.extensions_mut().insert(identity);
                    next.run(req).await
                }
                Err(e) => {
                    let code = match e {
                        openwit_core::auth::AuthError::Unauthenticated(_) => axum::http::StatusCode::UNAUTHORIZED,
                        openwit_core::auth::AuthError::Forbidden(_) => axum::http::StatusCode::FORBIDDEN,
                    };
                    (code, axum::Json(serde_json::json!({ "error": e.to_string() }))).into_response()
                }
            }
        }
    })))
}

/// The tenant a bound identity is limited to (`None`: no authenticator, no binding, or an admin).
/// Unix milliseconds now (the catalog's unit of time).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub(crate) fn bound_to(identity: Option<&openwit_core::auth::Identity>) -> Option<&openwit_core::TenantId> {
    match identity.map(|i| &i.binding) {
        Some(openwit_core::auth::Binding::Tenant(t)) => Some(t),
        _ => None,
    }
}

/// Checks an extension's `tls` section as a server's.
pub(crate) fn check_tls(tls: &Option<openwit_core::tls::TlsSettings>) -> Result<(), openwit_core::ConfigIssue> {
    match tls {
        Some(t) => t
            .validate(openwit_core::tls::Side::Server)
            .map_err(|i| openwit_core::ConfigIssue::new(format!("tls.{}", i.path), i.message)),
        None => Ok(()),
    }
}

/// Serves the routes extensions added, one server per endpoint (extensions that name the same endpoint
/// share it).
pub async fn serve_apis(
    apis: &openwit_core::shared::HttpApis,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for (endpoint, routers) in apis.take() {
        let owners: Vec<String> = routers.iter().map(|r| r.owner.to_string()).collect();
        let tls = routers[0].tls.clone();
        if let Some(other) = routers.iter().find(|r| r.tls != tls) {
            anyhow::bail!(
                "extensions {} and {} serve on the same endpoint {endpoint} with different tls settings; \
                 give them the same tls, or different endpoints",
                routers[0].owner,
                other.owner
            );
        }
        let listener = bind(&format!("extensions {}", owners.join(", ")), &endpoint, tls.as_ref()).await?;
        let app = routers.into_iter().fold(axum::Router::new(), |app, r| app.merge(r.router));
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(endpoint = %endpoint, "API server stopped: {e}");
            }
        }));
    }
    Ok(tasks)
}
