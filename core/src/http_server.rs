//! Serving an axum router over `tls::Incoming` with the Collector's HTTP server timeouts, which
//! `axum::serve` does not take (`Timeouts`), on every connection, TLS or not. Shutdown is graceful:
//! once `shutdown` fires no connection is accepted, idle connections close, and requests in flight
//! finish.

use crate::tls::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The Collector's HTTP server timeouts (`confighttp`), with Go's `http.Server` meaning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// `read_header_timeout`: a request's headers must arrive within it, or the connection is closed
    /// (the slow-loris defence).
    pub read_header: Option<Duration>,
    /// `write_timeout`: the response must be ready within it from the request's headers, or the
    /// connection is closed without one, as Go's server does.
    pub write: Option<Duration>,
    /// `idle_timeout`: a connection with no request in flight for this long is closed.
    pub idle: Option<Duration>,
}

/// The request timed out (`write_timeout`): hyper closes the connection on a service error.
#[derive(Debug, thiserror::Error)]
#[error("no response within write_timeout ({0:?}); connection closed")]
struct WriteTimeout(Duration);

/// What a connection is doing, for the idle check: requests in flight and when the last one ended.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `start` at the end of the last request (or the connection's start).
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity { start: Instant::now(), in_flight: AtomicUsize::new(0), last_ms: AtomicU64::new(0) })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts a request in flight until the guard drops.
    fn begin(self: &Arc<Activity>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// How long the connection has been idle (zero while a request is in flight).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Ordering::SeqCst)))
    }

    /// Resolves once the connection has been idle for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `app` until `shutdown`, then waits for the requests in flight.
pub async fn serve(mut incoming: Incoming, app: axum::Router, timeouts: Timeouts, shutdown: CancellationToken) {
    let mut builder = Builder::new(TokioExecutor::new());
    if let Some(t) = timeouts.read_header {
        builder.http1().timer(TokioTimer::new()).header_read_timeout(t);
    }
    let builder = Arc::new(builder);
    // Each connection task holds a sender; when all are gone, every connection has ended.
    let (alive, mut all_ended) = mpsc::channel::<()>(1);
    loop {
        let (conn, addr) = tokio::select! {
            c = axum::serve::Listener::accept(&mut incoming) => c,
            () = shutdown.cancelled() => break,
        };
        let (app, builder, shutdown, alive) = (app.clone(), builder.clone(), shutdown.clone(), alive.clone());
        tokio::spawn(async move {
            let activity = Activity::new();
            let requests = activity.clone();
            let svc = hyper::service::service_fn(move |r: axum::http::Request<hyper::body::Incoming>| {
                let (app, guard) = (app.clone(), requests.begin());
                async move {
                    let answer = app.oneshot(r.map(axum::body::Body::new));
                    let response = match timeouts.write {
                        Some(t) => tokio::time::timeout(t, answer).await.map_err(|_| WriteTimeout(t))?,
                        None => answer.await,
                    };
                    drop(guard);
                    Ok::<_, WriteTimeout>(response.unwrap_or_else(|never| match never {}))
                }
            });
            let served = builder.serve_connection_with_upgrades(TokioIo::new(conn), svc);
            tokio::pin!(served);
            let idle = async {
                match timeouts.idle {
                    Some(limit) => activity.idle(limit).await,
                    None => std::future::pending().await,
                }
            };
            let ended = tokio::select! {
                r = served.as_mut() => Some(r),
                () = shutdown.cancelled() => None,
                () = idle => None,
            };
            // Shutting down or idle: finish the request in flight (if any), then close.
            let result = match ended {
                Some(r) => r,
                None => {
                    served.as_mut().graceful_shutdown();
                    served.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("HTTP connection from {addr} ended: {e}");
            }
            drop(alive);
        });
    }
    drop(incoming);
    drop(alive);
    let _ = all_ended.recv().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves a router with `/fast` and `/slow` (answers after 500 ms); returns its address.
    async fn server(timeouts: Timeouts) -> (std::net::SocketAddr, CancellationToken) {
        let app = axum::Router::new().route("/fast", axum::routing::get(|| async { "ok" })).route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "late"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = crate::tls::incoming(listener, None, "test").unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve(incoming, app, timeouts, stop.clone()));
        (addr, stop)
    }

    /// Sends one keep-alive GET on `s` and reads its answer (status line and body).
    async fn get(s: &mut tokio::net::TcpStream, path: &str) -> String {
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    }

    /// Whether the server closed `s` (a read returns end of file) within `within`.
    async fn closed(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut b = [0u8; 1];
        matches!(tokio::time::timeout(within, s.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    #[tokio::test]
    async fn idle_timeout_closes_a_keep_alive_connection_with_no_request() {
        let (addr, _stop) = server(Timeouts { idle: Some(Duration::from_millis(300)), ..Default::default() }).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut s, "/fast").await.starts_with("HTTP/1.1 200"));
        assert!(!closed(&mut s, Duration::from_millis(100)).await, "still open right after the response");
        assert!(closed(&mut s, Duration::from_secs(2)).await, "closed once idle for 300 ms");
        // A request in flight is not idle: the slow answer (500 ms > 300 ms) arrives.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let answer = get(&mut s, "/slow").await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("late"), "{answer}");
    }

    #[tokio::test]
    async fn without_idle_timeout_the_connection_stays() {
        let (addr, _stop) = server(Timeouts::default()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut s, "/fast").await.starts_with("HTTP/1.1 200"));
        assert!(!closed(&mut s, Duration::from_millis(600)).await);
        assert!(get(&mut s, "/fast").await.starts_with("HTTP/1.1 200"), "reused");
    }

    #[tokio::test]
    async fn write_timeout_closes_the_connection_without_a_late_answer() {
        let (addr, _stop) = server(Timeouts { write: Some(Duration::from_millis(200)), ..Default::default() }).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let started = Instant::now();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await.unwrap();
        assert!(buf.is_empty(), "no answer: {}", String::from_utf8_lossy(&buf));
        assert!(started.elapsed() < Duration::from_millis(450), "closed at the timeout, not after the handler");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut s, "/fast").await.starts_with("HTTP/1.1 200"), "fast requests are answered");
    }

    #[tokio::test]
    async fn shutdown_lets_the_request_in_flight_finish() {
        let (addr, stop) = server(Timeouts::default()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.cancel();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("late"), "{text}");
    }
}
