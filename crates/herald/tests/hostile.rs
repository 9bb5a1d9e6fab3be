//! Hostile and careless HTTP clients before the upgrade: silent sockets, trickled headers,
//! idle keep-alive connections, stalled bodies, too many connections from one address, and
//! running out of file descriptors; and shutdown while such a client is connected. Every
//! case also checks that a well-behaved subscriber still gets its events promptly.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{APPS, ApiClient, KEY, SECRET, TestClient, TestServer, next_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{MaybeTlsStream, client_async};

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
/// Another loopback source address: a different client IP for the per-IP limit.
const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
/// How late an event may reach a subscriber while a hostile client is connected.
const PROMPT: Duration = Duration::from_millis(100);

async fn server(settings: &str) -> TestServer {
    TestServer::with_config(&format!("[server]\n{settings}\n{APPS}")).await
}

async fn tcp_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// A protocol client whose socket is bound to `from`.
async fn client_from(from: IpAddr, to: SocketAddr) -> TestClient {
    let stream = tcp_from(from, to).await;
    let url = format!("ws://{to}/app/{KEY}?protocol=7&client=js&version=8.4.0");
    let (mut ws, _) = client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .expect("websocket connects");
    let frame = next_frame(&mut ws).await.expect("connection_established");
    assert_eq!(frame.event, "pusher:connection_established");
    let data = frame.data_json().unwrap();
    let socket_id = data["socket_id"].as_str().unwrap().to_owned();
    TestClient { ws, socket_id }
}

fn api_from(from: IpAddr, to: SocketAddr) -> ApiClient {
    ApiClient {
        base: format!("http://{to}"),
        app_id: "1".into(),
        key: KEY.into(),
        secret: SECRET.into(),
        http: reqwest::Client::builder()
            .local_address(from)
            .build()
            .unwrap(),
    }
}

/// A subscriber connecting from `from` gets an event triggered over the API (also from
/// `from`) within [`PROMPT`].
async fn others_unaffected(from: IpAddr, to: SocketAddr) {
    let channel = format!("unaffected-{}", rand_suffix());
    let mut subscriber = client_from(from, to).await;
    subscriber.subscribe(&channel).await;
    let api = api_from(from, to);
    let started = Instant::now();
    api.trigger(&[&channel], "ping", "{}").await;
    let frame = tokio::time::timeout(PROMPT, subscriber.expect("ping"))
        .await
        .unwrap_or_else(|_| panic!("event not delivered within {PROMPT:?}"));
    assert_eq!(frame.channel.as_deref(), Some(channel.as_str()));
    assert!(started.elapsed() <= PROMPT, "took {:?}", started.elapsed());
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Reads until the server closes the connection. Returns when it closed (since `since`) and
/// what it sent; fails once it is still open `limit` after `since`.
async fn wait_closed<R: AsyncRead + Unpin>(
    stream: &mut R,
    since: Instant,
    limit: Duration,
) -> (Duration, String) {
    let mut received = Vec::new();
    let mut buf = [0; 1024];
    loop {
        let remaining = limit.saturating_sub(since.elapsed());
        match tokio::time::timeout(remaining, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0) | Err(_)) => {
                return (
                    since.elapsed(),
                    String::from_utf8_lossy(&received).into_owned(),
                );
            }
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Nothing arrives and the connection stays open for `wait`.
async fn assert_open(stream: &mut TcpStream, wait: Duration) {
    let mut buf = [0; 64];
    if let Ok(read) = tokio::time::timeout(wait, stream.read(&mut buf)).await {
        panic!("expected an open, silent connection, got {read:?}");
    }
}

/// One `GET /health` on a new connection from `from`; the status line.
async fn health_from(from: IpAddr, to: SocketAddr) -> String {
    let mut stream = tcp_from(from, to).await;
    let request = "GET /health HTTP/1.1\r\nhost: herald\r\nconnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let (_, answer) = wait_closed(&mut stream, Instant::now(), Duration::from_secs(5)).await;
    answer.lines().next().unwrap_or_default().to_owned()
}

/// A counter from `/metrics`, asked from [`OTHER`] (the per-IP test fills [`LOCAL`]).
async fn metric(to: SocketAddr, name: &str) -> u64 {
    let text = api_from(OTHER, to)
        .http
        .get(format!("http://{to}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    support::prom::parse(&text)
        .value(name)
        .unwrap_or_else(|| panic!("no {name} in {text}")) as u64
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_deadline() {
    let server = server("header_read_timeout = 1").await;
    let since = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    others_unaffected(LOCAL, server.addr).await;
    let (closed, _) = wait_closed(&mut silent, since, Duration::from_secs(3)).await;
    assert!(
        closed >= Duration::from_millis(900),
        "closed early: {closed:?}"
    );
    assert_eq!(
        metric(server.addr, "herald_http_header_timeouts_total").await,
        1
    );
}

#[tokio::test]
async fn trickled_headers_do_not_extend_the_header_deadline() {
    let server = server("header_read_timeout = 1").await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let since = Instant::now();
    slow.write_all(b"GET /health HTTP/1.1\r\nx-slow: ")
        .await
        .unwrap();
    let (mut reader, mut writer) = slow.split();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if writer.write_all(b"a").await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let check = async {
        others_unaffected(LOCAL, server.addr).await;
        wait_closed(&mut reader, since, Duration::from_secs(3)).await
    };
    let (closed, answer) = tokio::select! {
        closed = check => closed,
        () = trickle => unreachable!(),
    };
    assert!(
        closed >= Duration::from_millis(900),
        "closed early: {closed:?}"
    );
    assert!(!answer.contains("200"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    let server = server("header_read_timeout = 1\nkeepalive_timeout = 2").await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: herald\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"OK") {
        let mut buf = [0; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    let since = Instant::now();
    others_unaffected(LOCAL, server.addr).await;
    let (closed, _) = wait_closed(&mut idle, since, Duration::from_secs(4)).await;
    assert!(
        closed >= Duration::from_millis(1_800),
        "closed at the header timeout, not the keep-alive timeout: {closed:?}"
    );
    assert_eq!(
        metric(server.addr, "herald_http_keepalive_timeouts_total").await,
        1
    );
}

#[tokio::test]
async fn a_stalled_body_gets_408_at_the_body_deadline() {
    let server = server("body_read_timeout = 1").await;
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    let since = Instant::now();
    stalled
        .write_all(b"POST /apps/1/events HTTP/1.1\r\nhost: herald\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"na")
        .await
        .unwrap();
    others_unaffected(LOCAL, server.addr).await;
    let (closed, answer) = wait_closed(&mut stalled, since, Duration::from_secs(3)).await;
    assert!(
        closed >= Duration::from_millis(900),
        "closed early: {closed:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(
        metric(server.addr, "herald_http_body_timeouts_total").await,
        1
    );
}

#[tokio::test]
async fn connections_over_the_per_ip_pending_limit_are_refused_at_once() {
    let server = server("max_pending_connections_per_ip = 4").await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tcp_from(LOCAL, server.addr).await);
    }
    for _ in 0..3 {
        let mut extra = tcp_from(LOCAL, server.addr).await;
        let (_, answer) = wait_closed(&mut extra, Instant::now(), Duration::from_millis(500)).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 429"),
            "{answer}"
        );
    }
    for stream in &mut held {
        assert_open(stream, Duration::from_millis(50)).await;
    }
    others_unaffected(OTHER, server.addr).await;
    assert_eq!(
        metric(server.addr, "herald_pending_connections_refused_total").await,
        3
    );

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let status = health_from(LOCAL, server.addr).await;
        if status.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn websockets_do_not_count_against_the_pending_limit() {
    let server = server("max_pending_connections_per_ip = 4").await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut client = client_from(LOCAL, server.addr).await;
        client.subscribe("crowd").await;
        clients.push(client);
    }
    api_from(LOCAL, server.addr)
        .trigger(&["crowd"], "hello", "{}")
        .await;
    for client in &mut clients {
        client.expect("hello").await;
    }
    assert!(
        health_from(LOCAL, server.addr)
            .await
            .starts_with("HTTP/1.1 200")
    );
    others_unaffected(LOCAL, server.addr).await;
}

#[tokio::test]
async fn cancelling_run_returns_within_the_grace_whatever_clients_do() {
    let server = server("shutdown_grace = 1").await;
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"GET /health HTTP/1.1\r\nx-")
        .await
        .unwrap();
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"POST /apps/1/events HTTP/1.1\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut subscriber = server.client().await;
    others_unaffected(LOCAL, server.addr).await;

    let since = Instant::now();
    server.shutdown.cancel();
    assert_eq!(subscriber.expect_error().await.0, Some(4200));
    let finished = tokio::time::timeout(Duration::from_secs(2), server.task).await;
    assert!(
        finished.is_ok(),
        "run still going {:?} after cancel",
        since.elapsed()
    );
    finished.unwrap().unwrap().unwrap();
    wait_closed(&mut partial, since, Duration::from_secs(2)).await;
    wait_closed(&mut stalled, since, Duration::from_secs(2)).await;
}

// The `herald` binary.

fn herald() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    for var in [
        "HERALD_CONFIG",
        "HERALD_HOST",
        "HERALD_PORT",
        "HERALD_APP_ID",
        "HERALD_APP_KEY",
        "HERALD_APP_SECRET",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

/// Starts `command` (a `herald` with `settings` as its `[server]` section, on port 0) and
/// reads the address from its listening line. Its stderr is piped.
fn start(mut command: Command, settings: &str) -> (Child, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, format!("[server]\n{settings}\n")).unwrap();
    let mut child = command
        .arg("--config")
        .arg(&path)
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // Keep reading: a closed pipe would fail herald's next line (the dev credentials).
    std::thread::spawn(move || stdout.lines().for_each(drop));
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no listening line: {line:?}"));
    (child, addr, dir)
}

fn terminate(child: &Child) -> Instant {
    let since = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    since
}

/// Waits for the process to exit within `limit` of `since`; it must exit with 0.
async fn exits_within(child: &mut Child, since: Instant, limit: Duration) {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            return;
        }
        if since.elapsed() > limit {
            let _ = child.kill();
            panic!("still running {limit:?} after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Grace 1 s (+1 s allowance) while one client holds a request in each state.
async fn sigterm_while(request: &[u8]) {
    let (mut child, addr, _dir) = start(herald(), "shutdown_grace = 1");
    let mut hostile = TcpStream::connect(addr).await.unwrap();
    hostile.write_all(request).await.unwrap();
    others_unaffected(LOCAL, addr).await;
    let since = terminate(&child);
    exits_within(&mut child, since, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn sigterm_with_partial_headers_exits_within_the_grace() {
    sigterm_while(b"GET /health HTTP/1.1\r\nhost: her").await;
}

#[tokio::test]
async fn sigterm_with_a_stalled_body_exits_within_the_grace() {
    sigterm_while(b"POST /apps/1/events HTTP/1.1\r\ncontent-length: 100\r\n\r\n{\"na").await;
}

/// Under a 64-descriptor limit, 100 silent sockets exhaust the process: accept errors are
/// logged once per episode, and a real client gets in once the silent ones time out.
#[tokio::test]
async fn out_of_descriptors_backs_off_quietly_and_recovers() {
    let mut command = Command::new("prlimit");
    command
        .args(["--nofile=64", "--"])
        .arg(env!("CARGO_BIN_EXE_herald"))
        .env_remove("HERALD_CONFIG")
        .env_remove("RUST_LOG");
    let (mut child, addr, _dir) = start(command, "header_read_timeout = 2");
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let since = Instant::now();
    let recovered = tokio::time::timeout(Duration::from_secs(15), async {
        let mut client = client_from(LOCAL, addr).await;
        client.subscribe("after").await;
        client
    })
    .await;
    assert!(
        recovered.is_ok(),
        "no client got in after {:?}",
        since.elapsed()
    );
    others_unaffected(LOCAL, addr).await;
    let stopped = terminate(&child);
    exits_within(&mut child, stopped, Duration::from_secs(5)).await;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let errors = stderr.lines().filter(|l| l.contains("accept")).count();
    assert!(
        (1..=6).contains(&errors),
        "{errors} accept log lines:\n{stderr}"
    );
}
