//! Serving an axum router over `tls::Incoming` with the Collector's HTTP server timeouts, which
//! `axum::serve` does not take: `read_header_timeout` closes a connection whose request headers do not
//! arrive in time (the slow-loris defence), on every connection, TLS or not. Shutdown is graceful:
//! once `shutdown` fires no connection is accepted and requests in flight finish.

use crate::tls::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Serves `app` until `shutdown`, then waits for the requests in flight.
pub async fn serve(
    mut incoming: Incoming,
    app: axum::Router,
    read_header_timeout: Option<Duration>,
    shutdown: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    if let Some(t) = read_header_timeout {
        builder.http1().timer(TokioTimer::new()).header_read_timeout(t);
    }
    let graceful = GracefulShutdown::new();
    loop {
        let (conn, addr) = tokio::select! {
            c = axum::serve::Listener::accept(&mut incoming) => c,
            () = shutdown.cancelled() => break,
        };
        let svc = TowerToHyperService::new(
            app.clone().map_request(|r: axum::http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new)),
        );
        let served = graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(conn), svc).into_owned());
        tokio::spawn(async move {
            if let Err(e) = served.await {
                tracing::debug!("HTTP connection from {addr} ended: {e}");
            }
        });
    }
    drop(incoming);
    graceful.shutdown().await;
}
