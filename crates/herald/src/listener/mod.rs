//! The accept loop and the HTTP/1 connections it serves until they upgrade to WebSockets or
//! close: per-IP admission, TLS, header/body/keep-alive deadlines, accept back-off, and a
//! drain bounded by `shutdown_grace` on shutdown.

mod backoff;
mod deadline;
mod pending;
pub mod tls;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Duration, sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use backoff::{AcceptBackoff, Retry};
use deadline::{Deadline, Phase, Timeouts, Watched};
use pending::{PendingConnections, PendingSlot};
use tls::Tls;

/// Time a handler has after `body_read_timeout` (which the body read enforces with 408)
/// before its connection is closed anyway.
const HANDLER_MARGIN: Duration = Duration::from_secs(5);

/// Written (without waiting) to a connection refused at accept, before closing it.
const REFUSAL: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 51\r\n\r\nToo many connections from this address; try later.\n";

/// Written to a plain-text request on the TLS port (whose first byte is not a handshake).
const NOT_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 46\r\n\r\nThis port speaks TLS: use https:// or wss://.\n";

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// What every connection of one listener shares.
struct Shared {
    router: Router,
    http: http1::Builder,
    timeouts: Arc<Timeouts>,
    grace: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tls: Option<Arc<Tls>>,
}

/// Accepts connections on `listener` and serves `router` on them (over `tls` when given)
/// until `shutdown`; then closes the listener and returns the connection tasks, which end
/// within `shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    server: &ServerConfig,
    tls: Option<Arc<Tls>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> TaskTracker {
    let mut http = http1::Builder::new();
    // `Deadline` replaces hyper's header timeout, which also cuts idle keep-alive
    // connections at the header timeout instead of `keepalive_timeout`. A request head
    // (request line and headers) over `max_header_bytes` is answered 431 by hyper.
    http.keep_alive(true)
        .header_read_timeout(None)
        .max_buf_size(server.max_header_bytes);
    let shared = Arc::new(Shared {
        router,
        http,
        timeouts: Arc::new(Timeouts {
            header: Duration::from_secs(server.header_read_timeout),
            request: Duration::from_secs(server.body_read_timeout) + HANDLER_MARGIN,
            keepalive: Duration::from_secs(server.keepalive_timeout),
        }),
        grace: Duration::from_secs(server.shutdown_grace),
        metrics,
        shutdown,
        tls,
    });
    let pending = PendingConnections::new(server.max_pending_connections_per_ip);
    let tasks = TaskTracker::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if !wait_after(&error, &mut backoff, &shared).await {
                    break;
                }
                continue;
            }
        };
        if let Some(errors) = backoff.on_success() {
            tracing::info!(failed_accepts = errors, "accepting connections again");
        }
        match pending.admit(remote.ip()) {
            Some(slot) => drop(tasks.spawn(connection(stream, remote, slot, shared.clone()))),
            None => refuse(stream, remote, &shared),
        }
    }
    tasks.close();
    tasks
}

/// Backs off after a failed accept; false when shutdown began meanwhile.
async fn wait_after(error: &std::io::Error, backoff: &mut AcceptBackoff, shared: &Shared) -> bool {
    Metrics::add(&shared.metrics.accept_errors, 1);
    match backoff.on_error(error) {
        Retry::Now => {
            tracing::debug!(%error, "accept failed for one connection");
            true
        }
        Retry::After { delay, first } => {
            if first {
                tracing::warn!(
                    %error,
                    "cannot accept connections; retrying with back-off (logged once until it recovers)"
                );
            }
            tokio::select! {
                () = shared.shutdown.cancelled() => false,
                () = sleep(delay) => true,
            }
        }
    }
}

/// Over the per-IP limit: a 429 if the socket takes it at once (in plain text only), then
/// close.
fn refuse(stream: TcpStream, remote: SocketAddr, shared: &Shared) {
    Metrics::add(&shared.metrics.pending_connections_refused, 1);
    tracing::debug!(%remote, "refused: too many pending connections from this address");
    if shared.tls.is_none() {
        let _ = stream.try_write(REFUSAL);
    }
}

/// Serves one connection until it upgrades, closes, misses its deadline or is drained. On
/// the TLS port the handshake is part of the first request's header deadline.
async fn connection(stream: TcpStream, remote: SocketAddr, slot: PendingSlot, shared: Arc<Shared>) {
    let deadline = Arc::new(Deadline::new(shared.timeouts.clone()));
    let Some(first) = first_byte(&stream, remote, &deadline, &shared).await else {
        return;
    };
    match shared.tls.clone() {
        None => http(stream, remote, slot, deadline, shared).await,
        Some(tls) => {
            if first != TLS_HANDSHAKE {
                // 0: the client left without a byte.
                if first != 0 {
                    shared.metrics.tls_handshake_failures.inc();
                    tracing::debug!(%remote, "plain text on the TLS port");
                    let _ = stream.try_write(NOT_TLS);
                }
                return;
            }
            if let Some(stream) = handshake(stream, remote, &tls, &deadline, &shared).await {
                http(stream, remote, slot, deadline, shared).await;
            }
        }
    }
}

/// The TLS handshake, within what is left of the header deadline.
async fn handshake(
    stream: TcpStream,
    remote: SocketAddr,
    tls: &Tls,
    deadline: &Deadline,
    shared: &Shared,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let accept = tokio::time::timeout_at(deadline.current().1, tls.acceptor().accept(stream));
    tokio::select! {
        accepted = accept => match accepted {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                shared.metrics.tls_handshake_failures.inc();
                tracing::debug!(%remote, %error, "TLS handshake failed");
                None
            }
            Err(_) => {
                expired(Phase::Head, remote, &shared.metrics);
                None
            }
        },
        () = shared.shutdown.cancelled() => None,
    }
}

/// HTTP/1 on `stream` (plain or TLS) until it upgrades, closes, misses its deadline or is
/// drained.
async fn http<S>(
    stream: S,
    remote: SocketAddr,
    slot: PendingSlot,
    deadline: Arc<Deadline>,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Watched::new(stream, deadline.clone()));
    let service = {
        let (deadline, shared) = (deadline.clone(), shared.clone());
        service_fn(move |mut request: Request<Incoming>| {
            deadline.on_request();
            request.extensions_mut().insert(ConnectInfo(remote));
            let response = shared.router.clone().oneshot(request);
            let deadline = deadline.clone();
            async move {
                let response = response.await;
                deadline.on_response();
                response
            }
        })
    };
    let mut served = Box::pin(shared.http.serve_connection(io, service).with_upgrades());
    let mut timer = pin!(sleep(Duration::ZERO));
    let mut draining = false;
    let outcome = loop {
        tokio::select! {
            outcome = poll_fn(|cx| deadline.poll(served.as_mut(), timer.as_mut(), cx)) => break outcome,
            () = shared.shutdown.cancelled(), if !draining => {
                draining = true;
                deadline.cap(shared.grace);
                served.as_mut().graceful_shutdown();
            }
        }
    };
    // Upgraded or closed: no longer pending (the WebSocket task holds the socket now).
    drop(slot);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%remote, %error, "HTTP connection failed"),
        Err(phase) => expired(phase, remote, &shared.metrics),
    }
}

/// Waits for the connection's first byte (0 at EOF or on an error); `None` when the header deadline or
/// shutdown came first. Until then a connection costs its socket and a small future (about
/// 1.5 KB measured); hyper's connection and buffers (about 9 KB more) come with the request.
async fn first_byte(
    stream: &TcpStream,
    remote: SocketAddr,
    deadline: &Deadline,
    shared: &Shared,
) -> Option<u8> {
    // `readable()` is ready at once for a new socket; a peek waits for a byte.
    let mut first = [0; 1];
    let peek = tokio::time::timeout_at(deadline.current().1, stream.peek(&mut first));
    tokio::select! {
        peeked = peek => {
            if peeked.is_err() {
                expired(Phase::Head, remote, &shared.metrics);
            }
            peeked.ok().map(|_| first[0])
        }
        () = shared.shutdown.cancelled() => None,
    }
}

fn expired(phase: Phase, remote: SocketAddr, metrics: &Metrics) {
    tracing::debug!(%remote, ?phase, "HTTP connection closed at its deadline");
    let counter = match phase {
        Phase::Head => &metrics.header_timeouts,
        Phase::Request => &metrics.request_timeouts,
        Phase::Idle => &metrics.keepalive_timeouts,
        Phase::Shutdown => return,
    };
    Metrics::add(counter, 1);
}
