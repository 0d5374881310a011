//! Serves the daemon's own metrics in Prometheus text format (`service.telemetry.metrics`).

use axum::Router;
use axum::routing::get;
use openwit_core::telemetry::Telemetry;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts the endpoint; `/metrics` (and `/`) answer with every metric.
pub async fn start(
    endpoint: &str,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = crate::bind("own telemetry (service.telemetry.metrics)", endpoint, None).await?;
    let scrape = move || {
        let t = telemetry.clone();
        async move { ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], t.encode()) }
    };
    let app = Router::new().route("/metrics", get(scrape.clone())).route("/", get(scrape));
    tracing::info!(%endpoint, "own metrics on /metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    }))
}
