//! OpenWit's extensions, and the server for the daemon's own metrics.

pub mod batch_monitor;
pub mod health_check;
pub mod metrics_endpoint;
pub mod query;

/// Binds a TCP listener with an error that names the component and the address.
pub(crate) async fn bind(what: &str, endpoint: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("{what}: cannot listen on {endpoint}: {e}; is another process using the port?"))
}

/// Serves the routes extensions added, one server per endpoint (extensions that name the same endpoint
/// share it).
pub async fn serve_apis(
    apis: &openwit_core::shared::HttpApis,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for (endpoint, routers) in apis.take() {
        let owners: Vec<String> = routers.iter().map(|(id, _)| id.to_string()).collect();
        let listener = bind(&format!("extensions {}", owners.join(", ")), &endpoint).await?;
        let app = routers.into_iter().fold(axum::Router::new(), |app, (_, r)| app.merge(r));
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(endpoint = %endpoint, "API server stopped: {e}");
            }
        }));
    }
    Ok(tasks)
}
