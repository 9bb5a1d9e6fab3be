//! Clients that stop reading: bounded bytes per connection, a write deadline (4100), and
//! shutdown and kicks that still end a connection whose write is blocked.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A WebSocket client that subscribes to `channel` and then never reads: its receive
/// buffer is tiny, so the server's writes block soon.
async fn stalled_subscriber(server: &TestServer, channel: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let request = format!(
        "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let subscribe = json!({"event":"pusher:subscribe","data":{"channel":channel}}).to_string();
    stream.write_all(&masked_text(&subscribe)).await.unwrap();
    stream
}

/// One masked text frame (mask key zero: the payload is unchanged).
fn masked_text(text: &str) -> Vec<u8> {
    let mut frame = vec![0x81];
    let len = text.len();
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// Waits until `channel` has `count` subscribers.
async fn wait_for_subscribers(api: &ApiClient, channel: &str, count: u64) {
    let path = format!("/channels/{channel}");
    eventually(|| async {
        let info = api.get_json(&path, &[("info", "subscription_count")]).await;
        info["subscription_count"].as_u64() == Some(count)
    })
    .await;
}

/// Publishes 10 KB events to `channel` until the server closed `count` slow consumers.
async fn flood_until_closed(server: &TestServer, channel: &str, count: u64) {
    let api = server.api();
    let data = "x".repeat(10_000);
    let batch: Vec<_> = (0..10)
        .map(|_| json!({"channel":channel,"name":"e","data":data}))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(server, "herald_slow_consumers_closed_total").await < count as f64 {
        assert!(
            Instant::now() < deadline,
            "the slow consumer was never closed"
        );
        let (status, body) = api.post("/batch_events", &json!({"batch":batch})).await;
        assert_eq!(status, 200, "{body}");
    }
    // The same closes, by app and close code.
    let by_code = "herald_connections_closed_total{app_id=\"1\",code=\"4100\"}";
    assert!(metric(server, by_code).await >= count as f64);
}

/// Reads what the server sent until it closed the connection; returns the last bytes.
async fn drain_until_closed(mut stream: TcpStream) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .expect("the server closed the connection");
        match read {
            Ok(0) | Err(_) => return tail,
            Ok(n) => {
                tail.extend_from_slice(&buffer[..n]);
                let keep = tail.len().saturating_sub(256);
                tail.drain(..keep);
            }
        }
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_at_the_byte_limit() {
    // Frames would allow 100,000 queued events; 256 KiB of bytes do not.
    let server = TestServer::with_config(&format!(
        "[server]\noutbox_capacity = 100000\nmax_outbox_bytes = 262144\nwrite_timeout = 600\n{APPS}"
    ))
    .await;
    let stalled = stalled_subscriber(&server, "firehose").await;
    let mut healthy = server.client().await;
    healthy.subscribe("firehose").await;
    let reader = tokio::spawn(async move {
        loop {
            if healthy.next().await.event == "done" {
                return healthy;
            }
        }
    });
    wait_for_subscribers(&server.api(), "firehose", 2).await;
    flood_until_closed(&server, "firehose", 1).await;
    wait_for_subscribers(&server.api(), "firehose", 1).await;
    server.api().trigger(&["firehose"], "done", "").await;
    let mut healthy = reader.await.unwrap();
    assert_event_within_100ms(&server, &mut healthy, "firehose").await;
    drain_until_closed(stalled).await;
}

#[tokio::test]
async fn a_client_unwritable_past_the_write_timeout_is_closed_with_4100() {
    // Neither limit of the outbox is reached: only the write deadline can end it.
    let server = TestServer::with_config(&format!(
        "[server]\noutbox_capacity = 1000000\nmax_outbox_bytes = 1073741824\nwrite_timeout = 1\n{APPS}"
    ))
    .await;
    let stalled = stalled_subscriber(&server, "firehose").await;
    wait_for_subscribers(&server.api(), "firehose", 1).await;
    let started = Instant::now();
    flood_until_closed(&server, "firehose", 1).await;
    assert!(started.elapsed() < Duration::from_secs(15));
    wait_for_subscribers(&server.api(), "firehose", 0).await;
    drain_until_closed(stalled).await;
    let mut other = server.client().await;
    other.subscribe("firehose").await;
    assert_event_within_100ms(&server, &mut other, "firehose").await;
}

#[tokio::test]
async fn shutdown_ends_a_connection_whose_write_is_blocked() {
    let server = TestServer::with_config(&format!(
        "[server]\noutbox_capacity = 1000000\nmax_outbox_bytes = 1073741824\nwrite_timeout = 600\nshutdown_grace = 1\n{APPS}"
    ))
    .await;
    let stalled = stalled_subscriber(&server, "firehose").await;
    wait_for_subscribers(&server.api(), "firehose", 1).await;
    // Enough to block the server's writes (the kernel buffers hold a few MB at most).
    let api = server.api();
    let data = "x".repeat(10_000);
    let batch: Vec<_> = (0..10)
        .map(|_| json!({"channel":"firehose","name":"e","data":data}))
        .collect();
    for _ in 0..100 {
        api.post("/batch_events", &json!({"batch":batch})).await;
    }
    drop(api);
    let started = Instant::now();
    server.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("the server stopped")
        .unwrap()
        .unwrap();
    // Every task the server spawned has ended, the blocked connection's included, while
    // the client still has not read anything.
    let runtime = tokio::runtime::Handle::current().metrics();
    eventually(|| async { runtime.num_alive_tasks() == 0 }).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "ended within shutdown_grace + the 1 s close handshake: {:?}",
        started.elapsed()
    );
    drain_until_closed(stalled).await;
}

#[tokio::test]
async fn terminate_ends_a_signed_in_connection_whose_write_is_blocked() {
    let server = TestServer::start().await;
    let mut user = server.client().await;
    user.sign_in(r#"{"id":"42"}"#).await;
    user.subscribe("firehose").await;
    // Stop reading, let the server's writes block, then terminate the user.
    let api = server.api();
    let data = "x".repeat(10_000);
    let batch: Vec<_> = (0..10)
        .map(|_| json!({"channel":"firehose","name":"e","data":data}))
        .collect();
    for _ in 0..20 {
        api.post("/batch_events", &json!({"batch":batch})).await;
    }
    let (status, _) = api
        .post("/users/42/terminate_connections", &json!({}))
        .await;
    assert_eq!(status, 200);
    wait_for_subscribers(&api, "firehose", 0).await;
}
