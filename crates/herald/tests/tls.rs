//! TLS on the main port: `wss://` and `https://` with a certificate from a test CA,
//! rotation while a `wss://` client stays connected (files changed, or SIGHUP to the
//! binary), a broken new pair that keeps the old one, plain HTTP on the TLS port, and
//! clients that never complete the handshake, dropped at the header deadline.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::tls::{ServerCert, TestCa, replace, tls_section};
use support::{APPS, ApiClient, TestServer, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TLS server with `cert` (written to `dir` as `server.crt`/`server.key`) and `settings`
/// in `[server]`.
async fn tls_server(dir: &Path, cert: &ServerCert, watch: u64, settings: &str) -> TestServer {
    let (cert, key) = cert.write(dir, "server");
    let toml = format!(
        "[server]\n{settings}\n{}{APPS}",
        tls_section(&cert, &key, watch)
    );
    TestServer::with_config(&toml).await
}

/// An unlabelled counter from `/metrics`, over HTTPS.
async fn metric(api: &ApiClient, name: &str) -> u64 {
    let text = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Reads until the server closes `stream`; returns how long after `since`, and the bytes.
async fn closed_after(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> (Duration, String) {
    let mut received = Vec::new();
    let mut buf = [0; 512];
    loop {
        let left = limit.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => {
                return (since.elapsed(), String::from_utf8_lossy(&received).into());
            }
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn wss_subscribers_get_events_triggered_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let first = ca.issue(1);
    let server = tls_server(dir.path(), &first, 5, "").await;
    let (mut client, presented) = ca.client(server.addr).await;
    assert_eq!(presented, first.der);
    client.subscribe("tls-news").await;
    client.subscribe_private("private-tls").await;

    let api = ca.api(server.addr);
    api.trigger(&["tls-news", "private-tls"], "flash", "{\"over\":\"tls\"}")
        .await;
    for channel in ["tls-news", "private-tls"] {
        let frame = client.expect("flash").await;
        assert_eq!(frame.channel.as_deref(), Some(channel));
        assert_eq!(frame.data_text().as_deref(), Some("{\"over\":\"tls\"}"));
    }
    let channels = api.get_json("/channels", &[]).await;
    assert!(channels["channels"]["tls-news"].is_object(), "{channels}");
    let health = api
        .http
        .get(format!("{}/health", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready: Value = api
        .http
        .get(format!("{}/ready", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_told_to_use_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let server = tls_server(dir.path(), &ca.issue(1), 5, "").await;
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nhost: herald\r\n\r\n")
        .await
        .unwrap();
    let (_, answer) = closed_after(&mut plain, Instant::now(), Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("This port speaks TLS: use https:// or wss://.\n"),
        "{answer}"
    );
    let api = ca.api(server.addr);
    assert_eq!(metric(&api, "herald_tls_handshake_failures_total").await, 1);
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_handshakes_while_old_connections_stay() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let first = ca.issue(1);
    let server = tls_server(dir.path(), &first, 1, "").await;
    let (mut old, presented) = ca.client(server.addr).await;
    assert_eq!(presented, first.der);
    old.subscribe("renewal").await;

    let second = ca.issue(2);
    second.write(dir.path(), "server");
    eventually(|| async { ca.presented(server.addr).await == second.der }).await;
    let (mut new, presented) = ca.client(server.addr).await;
    assert_eq!(presented, second.der, "new handshakes use serial 2");
    new.subscribe("renewal").await;

    let api = ca.api(server.addr);
    api.trigger(&["renewal"], "after", "{}").await;
    old.expect("after").await;
    new.expect("after").await;
    assert_eq!(
        metric(&api, "herald_tls_certificate_reloads_total").await,
        1
    );
    assert_eq!(
        metric(&api, "herald_tls_certificate_reload_failures_total").await,
        0
    );
}

#[tokio::test]
async fn a_broken_new_pair_is_refused_and_the_current_certificate_stays() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let first = ca.issue(1);
    let server = tls_server(dir.path(), &first, 1, "").await;
    let (mut client, _) = ca.client(server.addr).await;
    client.subscribe("steady").await;
    let api = ca.api(server.addr);

    // A renewal that wrote the new certificate with some other key.
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    replace(&key, &ca.issue(3).key_pem);
    replace(&cert, &ca.issue(2).cert_pem);
    let failures = || async {
        metric(
            &ca.api(server.addr),
            "herald_tls_certificate_reload_failures_total",
        )
        .await
    };
    eventually(|| async { failures().await >= 1 }).await;
    assert_eq!(ca.presented(server.addr).await, first.der);
    api.trigger(&["steady"], "still", "{}").await;
    client.expect("still").await;
    let (_, presented) = ca.client(server.addr).await;
    assert_eq!(presented, first.der);

    // Not PEM at all.
    let before = failures().await;
    replace(&cert, "-----BEGIN NONSENSE-----\n");
    eventually(|| async { failures().await > before }).await;
    assert_eq!(ca.presented(server.addr).await, first.der);

    // A good pair afterwards is taken.
    let fourth = ca.issue(4);
    fourth.write(dir.path(), "server");
    eventually(|| async { ca.presented(server.addr).await == fourth.der }).await;
    api.trigger(&["steady"], "renewed", "{}").await;
    client.expect("renewed").await;
}

#[tokio::test]
async fn clients_that_never_finish_the_handshake_are_dropped_at_the_header_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let server = tls_server(dir.path(), &ca.issue(1), 5, "header_read_timeout = 1").await;
    let (mut bystander, _) = ca.client(server.addr).await;
    bystander.subscribe("bystanders").await;

    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    // A TLS record header announcing a ClientHello that never comes.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let limit = Duration::from_millis(2_500);
    for stream in [&mut silent, &mut stalled] {
        let (after, _) = closed_after(stream, started, limit).await;
        assert!(
            after >= Duration::from_millis(900),
            "closed after {after:?}"
        );
    }
    let api = ca.api(server.addr);
    api.trigger(&["bystanders"], "fine", "{}").await;
    bystander.expect("fine").await;
    assert_eq!(metric(&api, "herald_http_header_timeouts_total").await, 2);
}

// The binary: flags, environment and SIGHUP.

/// Starts `herald` with `env` and reads its address from the listening line.
fn start(env: &[(&str, &Path)], config: &Path) -> (Child, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    for var in [
        "HERALD_CONFIG",
        "HERALD_HOST",
        "HERALD_PORT",
        "HERALD_TLS_CERT",
        "HERALD_TLS_KEY",
    ] {
        command.env_remove(var);
    }
    command.args(["--port", "0", "--config"]).arg(config);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    // Keep reading: a closed pipe would fail the server's next line.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no listening line: {line:?}"));
    (child, addr)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_reloads_the_certificate_given_by_environment() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let first = ca.issue(1);
    let (cert, key) = first.write(dir.path(), "server");
    // Polling off: only SIGHUP reloads.
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, "[server.tls]\nwatch_interval = 0\n").unwrap();
    let (mut child, addr) = start(
        &[("HERALD_TLS_CERT", &cert), ("HERALD_TLS_KEY", &key)],
        &config,
    );
    let (mut client, presented) = ca.client(addr).await;
    assert_eq!(presented, first.der);
    client.subscribe("hup").await;

    let second = ca.issue(2);
    second.write(dir.path(), "server");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        ca.presented(addr).await,
        first.der,
        "no reload without SIGHUP"
    );
    signal(&child, "HUP");
    eventually(|| async { ca.presented(addr).await == second.der }).await;
    let api = ca.api(addr);
    api.trigger(&["hup"], "after-hup", "{}").await;
    client.expect("after-hup").await;

    signal(&child, "TERM");
    let since = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains("TLS certificate reloaded (SIGHUP)"), "{logs}");
    assert!(!logs.contains("PRIVATE KEY"), "no key material in logs");
}

#[test]
fn a_broken_pair_at_start_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, _) = ca.issue(1).write(dir.path(), "a");
    let (_, other_key) = ca.issue(2).write(dir.path(), "b");
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, "").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .env_remove("HERALD_CONFIG")
        .args(["--port", "0", "--config"])
        .arg(&config)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&other_key)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not belong to the certificate"),
        "{stderr}"
    );
}
