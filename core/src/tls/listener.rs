//! Accepting connections, plain or TLS, for axum (HTTP) and tonic (gRPC) servers alike.
//!
//! Handshakes run in their own tasks, under a deadline, so a client that connects and says nothing
//! holds one small task and never the accept loop; connections reach the server only once their
//! handshake is done. A failed handshake (no client certificate under mutual TLS, an untrusted one, a
//! plaintext client on a TLS port) closes that connection and is logged at debug level.

use super::ServerTls;
use super::client::delegate_io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// An accepted connection.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

delegate_io!(Conn, Plain, Tls);

impl Conn {
    fn remote(&self) -> Option<SocketAddr> {
        match self {
            Conn::Plain(s) => s.peer_addr().ok(),
            Conn::Tls(s) => s.get_ref().0.peer_addr().ok(),
        }
    }

    fn local(&self) -> Option<SocketAddr> {
        match self {
            Conn::Plain(s) => s.local_addr().ok(),
            Conn::Tls(s) => s.get_ref().0.local_addr().ok(),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo { local_addr: self.local(), remote_addr: self.remote() }
    }
}

/// Connections ready to serve: an `axum::serve::Listener`, and a `Stream` for tonic's
/// `serve_with_incoming`. Dropping it stops the accept loop.
pub struct Incoming {
    rx: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
    _stop: tokio_util::sync::DropGuard,
}

/// Starts accepting on `listener`, with TLS when `tls` is given. `what` names the server in logs.
pub fn incoming(listener: TcpListener, tls: Option<Arc<ServerTls>>, what: &str) -> std::io::Result<Incoming> {
    let local = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(64);
    let cancel = tokio_util::sync::CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let what = what.to_string();
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait a little rather than spin.
                        tracing::warn!("{what}: accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            match &tls {
                None => {
                    if tx.send((Conn::Plain(tcp), addr)).await.is_err() {
                        return;
                    }
                }
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                    let (tx, what) = (tx.clone(), what.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => {
                                let _ = tx.send((Conn::Tls(Box::new(s)), addr)).await;
                            }
                            Ok(Err(e)) => tracing::debug!("{what}: TLS handshake from {addr} failed: {e}"),
                            Err(_) => tracing::debug!("{what}: TLS handshake from {addr} took too long; closed"),
                        }
                    });
                }
            }
        }
    });
    Ok(Incoming { rx, local, _stop })
}

impl axum::serve::Listener for Incoming {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended (it only ends when this is dropped): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl futures::Stream for Incoming {
    type Item = std::io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(|(conn, _)| Ok(conn)))
    }
}
