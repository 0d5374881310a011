//! OpenWit's extensions, and the server for the daemon's own metrics.

pub mod batch_monitor;
pub mod catalog;
pub mod health_check;
pub mod metrics_endpoint;
pub mod wal;

/// Binds a TCP listener with an error that names the component and the address.
pub(crate) async fn bind(what: &str, endpoint: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("{what}: cannot listen on {endpoint}: {e}; is another process using the port?"))
}
