//! One WebSocket connection: the HTTP upgrade at `/app/{key}`, the handshake checks, and one
//! task per live connection that selects over shutdown, the outbox (frames or a kick),
//! inbound frames and a single liveness timer.

mod handshake;
mod liveness;

mod session;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use herald_protocol::{ErrorCode, ServerMessage, SocketId};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::WaitForCancellationFuture;

use crate::debug::DebugEvent;
use crate::edge::NodeSlot;
use crate::metrics::DurationHistogram;
use crate::node::sockets::SocketEntry;
use crate::node::{ConnectionPermit, Node};
use crate::outbox::{self, Kick, OutboxReceiver, Ready};
use handshake::Admitted;
use liveness::{Check, Liveness};
use session::Session;

/// Frames written before one flush.
const MAX_BATCH: usize = 64;
/// RFC 6455 close codes: protocol error, invalid frame payload data, message too big.
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_TOO_BIG: u16 = 1009;

/// `GET /app/{key}` and any other WebSocket upgrade (answered with 4005).
pub async fn upgrade(State(node): State<Arc<Node>>, mut request: Request) -> Response {
    let Some(accept) = accept_key(request.headers()) else {
        return (
            StatusCode::BAD_REQUEST,
            "Expected a WebSocket upgrade (Pusher protocol endpoint is /app/{key})",
        )
            .into_response();
    };
    let key = request
        .uri()
        .path()
        .strip_prefix("/app/")
        .filter(|key| !key.is_empty() && !key.contains('/'))
        .map(str::to_owned);
    let query = request.uri().query().unwrap_or_default().to_owned();
    let too_fast = over_ip_rate(&node, &request);
    let remote = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    let on_upgrade = hyper::upgrade::on(&mut request);
    let config = socket_config(&node);
    let task_node = node.clone();
    node.tasks.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let stream = TokioIo::new(upgraded);
        let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
        let checked = if too_fast {
            Err(ErrorCode::ConnectionRateLimit)
        } else {
            handshake::check(&task_node, key.as_deref(), &query)
        };
        match checked {
            // A task of its own: the live connection does not carry the upgrade's state.
            Ok(admitted) => {
                let opened = open(&task_node, admitted, remote);
                let opened = Box::new(opened);
                drop(task_node.tasks.spawn(serve(ws, task_node.clone(), opened)));
            }
            Err(code) => refuse(ws, code).await,
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Whether the client's IP opened more WebSockets this second than it may (counted).
fn over_ip_rate(node: &Node, request: &Request) -> bool {
    let Some(ip) = node.edge.client_ip(request.extensions(), request.headers()) else {
        return false;
    };
    let limited = node.edge.connections.check(ip).is_err();
    if limited {
        node.metrics.ip_connections_limited.inc();
        tracing::debug!(%ip, "WebSocket refused: over max_connections_per_second_per_ip");
    }
    limited
}

/// The `Sec-WebSocket-Accept` value, when this is a valid version-13 upgrade request.
fn accept_key(headers: &HeaderMap) -> Option<HeaderValue> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return None;
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION)?.as_bytes() != b"13" {
        return None;
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()
}

/// Small buffers keep idle connections cheap: 256-byte read chunks instead of tungstenite's
/// 128 KiB (measured in ARCHITECTURE.md); writes coalesce up to 4 KiB before a syscall.
fn socket_config(node: &Node) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(256)
        .write_buffer_size(4096)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(node.server.max_frame_bytes))
        .max_frame_size(Some(node.server.max_frame_bytes))
}

/// Handshake failure: the numeric error frame, then the same close code (spec §1.2).
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>, code: ErrorCode) {
    close(&mut ws, code.code(), code.message()).await;
}

async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    code: u16,
    message: &str,
) {
    let numeric = (code >= 4000).then_some(code);
    let error = ServerMessage::Error {
        code: numeric,
        message,
    };
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: message.into(),
    };
    let sent = async {
        ws.feed(Message::Text(error.encode().into())).await?;
        ws.close(Some(frame)).await?;
        // Let the client answer the close so the TCP connection ends cleanly.
        while ws.next().await.is_some() {}
        Ok::<_, WsError>(())
    };
    let _ = timeout(Duration::from_secs(1), sent).await;
}

fn new_socket_id() -> SocketId {
    SocketId::from_parts(
        u64::from(rand::random::<u32>()),
        u64::from(rand::random::<u32>()),
    )
}

/// Why the connection loop ended.
enum Ending {
    /// The client went away or the socket failed: nothing more to send.
    Gone,
    /// Close with this code and message.
    Close(u16, String),
}

/// An admitted connection, registered for the inspector, before its task starts.
struct Opened {
    permit: ConnectionPermit,
    /// This connection's place under the node's ceilings, released when it ends.
    slot: NodeSlot,
    session: Session,
    receiver: OutboxReceiver,
}

/// Gives an admitted connection its socket id and outbox, registers it for the connection
/// inspector and tells the debug console. Done before the connection's task is spawned, so
/// what only this step needs (the remote address) is not kept in every idle connection.
fn open(node: &Arc<Node>, admitted: Admitted, remote: Option<std::net::SocketAddr>) -> Opened {
    let Admitted { app, permit, slot } = admitted;
    let (outbox, receiver) = outbox::bounded(outbox::Limits {
        frames: node.server.outbox_capacity,
        bytes: node.server.max_outbox_bytes,
    });
    let socket_id = new_socket_id();
    let entry = SocketEntry::new(app.clone(), remote, outbox.clone());
    node.sockets.add(&socket_id, entry);
    node.debug.record(|| {
        let event = DebugEvent::new(&app.id, "connection_opened").socket(&socket_id);
        match remote {
            Some(remote) => event.detail(remote.to_string()),
            None => event,
        }
    });
    Opened {
        permit,
        slot,
        session: Session::new(node.clone(), app, socket_id, outbox),
        receiver,
    }
}

/// Runs an admitted connection until it ends, then cleans up its subscriptions. `opened`
/// comes boxed: an async fn keeps its arguments' space for its whole life, and a session
/// passed by value would cost every idle connection 200 bytes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    node: Arc<Node>,
    opened: Box<Opened>,
) {
    let Opened {
        permit,
        slot,
        session,
        receiver,
    } = *opened;
    let queue = Queue {
        frames: receiver,
        latency: node.metrics.delivery_latency.clone(),
    };
    let established = ServerMessage::ConnectionEstablished {
        socket_id: session.socket_id().as_str(),
        activity_timeout: node.server.activity_timeout,
    }
    .encode();
    // connection_established goes out before any inbound frame is read (spec §1.3).
    // Looked up again at the end rather than held: an idle connection stays small.
    node.metrics.app(permit.app_id()).opened.inc();
    let (ending, socket_id) = match ws.send(Message::Text(established.into())).await {
        Ok(()) => run(&mut ws, &node, session, &queue).await,
        Err(_) => (Ending::Gone, session.socket_id().clone()),
    };
    let code = match &ending {
        Ending::Close(code, _) => Some(*code),
        Ending::Gone => None,
    };
    // Counted before the closing handshake (up to a second): both counters move together.
    let metrics = node.metrics.app(permit.app_id());
    if code == Some(ErrorCode::OverCapacity.code()) {
        metrics.slow_consumers.inc();
    }
    metrics.closed(code);
    if let Ending::Close(code, message) = ending {
        close(&mut ws, code, &message).await;
    }
    node.sockets.remove(&socket_id);
    node.debug.record(|| {
        DebugEvent::new(permit.app_id(), "connection_closed")
            .socket(&socket_id)
            .detail(crate::metrics::close_code_label(code))
    });
    drop(permit);
    drop(slot);
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    node: &Node,
    mut session: Session,
    queue: &Queue,
) -> (Ending, SocketId) {
    let auth_timeout = session.app().authorized_connections_timeout;
    let mut liveness = Liveness::new(&node.server, auth_timeout, Instant::now());
    let write_timeout = Duration::from_secs(node.server.write_timeout);
    // Pinned once: no timer or waiter registration per loop iteration.
    let timer = sleep_until(liveness.next_check());
    let shutdown = node.shutdown.cancelled();
    tokio::pin!(timer, shutdown);
    let ending = loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break reconnect(),
            // Before the outbox, so a stream of frames cannot starve the liveness checks.
            () = &mut timer => {
                match liveness.check(session.is_authorized(), Instant::now()) {
                    Check::Fine => {}
                    Check::Probe => {
                        let ping = Message::Text(ServerMessage::Ping.encode().into());
                        let sent = guarded(ws.send(ping), &queue.frames, shutdown.as_mut(), write_timeout);
                        if let Err(ending) = sent.await {
                            break ending;
                        }
                    }
                    Check::Close(code, message) => break Ending::Close(code.code(), message.into()),
                }
                timer.as_mut().reset(liveness.next_check());
            }
            ready = queue.frames.ready() => match ready {
                Ready::Kicked(kick) => break kicked(kick),
                Ready::Frames => {
                    let written = write_batch(ws, queue);
                    if let Err(ending) = guarded(written, &queue.frames, shutdown.as_mut(), write_timeout).await {
                        break ending;
                    }
                }
            },
            inbound = ws.next() => {
                liveness.received(Instant::now());
                match inbound {
                    Some(Ok(Message::Text(text))) => {
                        // The first subscriber of a channel on this node (in a cluster)
                        // waits, at most a second, until other nodes' events reach it.
                        if let Some(mut deferred) = session.handle_text(&text) {
                            deferred.ready().await;
                            session.finish(deferred);
                        }
                    }
                    Some(Ok(Message::Binary(_))) => session.binary_frame(),
                    Some(Ok(Message::Close(_))) | None => break Ending::Gone,
                    // tungstenite queues the pong itself (up to its 1 MiB write buffer):
                    // flushing it under the write deadline ends a flooder that never reads.
                    Some(Ok(Message::Ping(_))) => {
                        let flushed = guarded(ws.flush(), &queue.frames, shutdown.as_mut(), write_timeout);
                        if let Err(ending) = flushed.await {
                            break ending;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => break violation(error),
                }
            }
        }
    };
    let socket_id = session.socket_id().clone();
    session.close();
    (ending, socket_id)
}

/// Runs a write, but lets shutdown, a kick, or a client that stays unwritable for
/// `deadline` end the connection while the write is blocked.
async fn guarded<F>(
    write: F,
    outbox: &OutboxReceiver,
    shutdown: Pin<&mut WaitForCancellationFuture<'_>>,
    deadline: Duration,
) -> Result<(), Ending>
where
    F: Future<Output = Result<(), WsError>>,
{
    tokio::select! {
        biased;
        // First: a write that completes at once polls nothing else (no timer registered).
        written = write => written.map_err(|_| Ending::Gone),
        () = shutdown => Err(reconnect()),
        kick = outbox.kicked() => Err(kicked(kick)),
        () = sleep(deadline) => Err(Ending::Close(
            ErrorCode::OverCapacity.code(),
            format!("Client not reading: nothing could be written for {} s", deadline.as_secs()),
        )),
    }
}

/// How a WebSocket-level failure ends the connection: RFC 6455 close codes for protocol
/// violations, 1009 for oversized messages, nothing to send when the socket is gone.
fn violation(error: WsError) -> Ending {
    match error {
        WsError::Capacity(e) => Ending::Close(CLOSE_TOO_BIG, format!("Frame too large: {e}")),
        // The client vanished without a closing handshake: it went away, it broke no rule.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ending::Gone,
        WsError::Protocol(e) => Ending::Close(CLOSE_PROTOCOL_ERROR, format!("Protocol error: {e}")),
        WsError::Utf8(_) => {
            Ending::Close(CLOSE_INVALID_DATA, "Text frame is not valid UTF-8".into())
        }
        _ => Ending::Gone,
    }
}

fn reconnect() -> Ending {
    let code = ErrorCode::ReconnectImmediately;
    Ending::Close(code.code(), code.message().into())
}

fn kicked((code, message): Kick) -> Ending {
    Ending::Close(code.code(), message)
}

/// The connection's side of its outbox, and where its events' delivery latency goes.
struct Queue {
    frames: OutboxReceiver,
    latency: DurationHistogram,
}

impl Queue {
    /// The next frame's text; a published event's delivery latency is observed as it is
    /// taken for writing.
    fn pop(&self) -> Option<Utf8Bytes> {
        let frame = self.frames.pop()?;
        if let Some(published) = frame.published() {
            self.latency.observe(published.elapsed());
        }
        Some(frame.into_text())
    }
}

/// Writes what is queued (up to a batch), then flushes once. Nothing more is kept across
/// the writes than before delivery latency was measured: whatever this future holds, every
/// idle connection's task holds too (an array of publish instants here cost 1 KiB each).
async fn write_batch<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    queue: &Queue,
) -> Result<(), WsError> {
    for _ in 0..MAX_BATCH {
        match queue.pop() {
            Some(text) => ws.feed(Message::Text(text)).await?,
            None => break,
        }
    }
    ws.flush().await
}
