//! Connecting: handshake checks, connection_established, ping/pong, liveness, bad frames,
//! quotas and graceful shutdown, against a real server on port 0.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

async fn refused_with(url: String) -> (Option<u64>, String, u16) {
    let mut ws = open(&url).await;
    let frame = next_frame(&mut ws).await.expect("error frame");
    assert_eq!(frame.event, "pusher:error");
    let data: serde_json::Value = serde_json::from_str(frame.data.unwrap().get()).unwrap();
    let mut client = TestClient {
        ws,
        socket_id: String::new(),
    };
    let close = client.expect_close().await;
    (
        data["code"].as_u64(),
        data["message"].as_str().unwrap().to_owned(),
        close,
    )
}

#[tokio::test]
async fn connection_established_comes_first_with_a_stringified_payload() {
    let server = TestServer::start().await;
    for protocol in ["5", "6", "7"] {
        let url = format!(
            "ws://{}/app/app-key?protocol={protocol}&client=js",
            server.addr
        );
        let mut ws = open(&url).await;
        let frame = next_frame(&mut ws).await.unwrap();
        assert_eq!(frame.event, "pusher:connection_established");
        assert!(frame.channel.is_none());
        let raw = frame.data.as_ref().unwrap().get();
        assert!(raw.starts_with('"'), "data must be a JSON string: {raw}");
        let data = frame.data_json().unwrap();
        let socket_id = data["socket_id"].as_str().unwrap();
        assert!(
            herald_protocol::SocketId::parse(socket_id).is_some(),
            "{socket_id}"
        );
        assert_eq!(data["activity_timeout"], 120);
    }
    let url = format!("ws://{}/app/app-key", server.addr);
    TestClient::connect(&url).await; // a missing protocol means 7
}

#[tokio::test]
async fn socket_ids_are_unique() {
    let server = TestServer::start().await;
    let a = server.client().await;
    let b = server.client().await;
    assert_ne!(a.socket_id, b.socket_id);
}

#[tokio::test]
async fn handshake_failures_send_the_code_then_close_with_it() {
    let server = TestServer::start().await;
    let base = format!("ws://{}", server.addr);
    let cases = [
        (format!("{base}/app/no-such-key"), 4001),
        (format!("{base}/app/disabled-key"), 4003),
        (format!("{base}/nowhere"), 4005),
        (format!("{base}/app/app-key/extra"), 4005),
        (format!("{base}/app/app-key?protocol=3"), 4007),
        (format!("{base}/app/app-key?protocol=seven"), 4007),
    ];
    for (url, expected) in cases {
        let (code, message, close) = refused_with(url.clone()).await;
        assert_eq!(code, Some(expected), "{url}: {message}");
        assert_eq!(close as u64, expected, "{url}");
        assert!(!message.is_empty());
    }
}

#[tokio::test]
async fn over_quota_is_4004_and_the_slot_frees_on_disconnect() {
    let server = TestServer::start().await;
    let url = server.ws_url("tiny-key");
    let first = TestClient::connect(&url).await;
    let (code, _, close) = refused_with(url.clone()).await;
    assert_eq!((code, close), (Some(4004), 4004));
    drop(first);
    let mut reconnected = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut ws = open(&url).await;
        let frame = next_frame(&mut ws).await.unwrap();
        if frame.event == "pusher:connection_established" {
            reconnected = Some(ws);
            break;
        }
    }
    assert!(reconnected.is_some(), "the slot was never released");
}

#[tokio::test]
async fn ping_in_every_data_form_gets_a_connection_level_pong() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for ping in [
        r#"{"event":"pusher:ping","data":{}}"#,
        r#"{"event":"pusher:ping","data":""}"#,
        r#"{"event":"pusher:ping","data":null}"#,
        r#"{"event":"pusher:ping"}"#,
    ] {
        client.send_text(ping).await;
        let pong = client.next().await;
        assert_eq!(pong.event, "pusher:pong", "{ping}");
        assert!(pong.channel.is_none());
    }
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_connection_keeps_working() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let cases = [
        ("{not json", "Invalid JSON"),
        ("[1,2,3]", "expected a JSON object"),
        ("\"just a string\"", "expected a JSON object"),
        (
            r#"{"event":"pusher:subscribe","data":"not an object"}"#,
            "Invalid pusher:subscribe data",
        ),
        (
            r#"{"event":"pusher:subscribe","data":{}}"#,
            "Invalid pusher:subscribe data",
        ),
        (
            r#"{"event":"pusher:subscribe","data":{"channel":42}}"#,
            "Invalid pusher:subscribe data",
        ),
        (
            r#"{"event":"pusher:unsubscribe","data":7}"#,
            "Invalid pusher:unsubscribe data",
        ),
        (r#"{"event":"hello","data":{}}"#, "must start with client-"),
        (r#"{"event":"client-x","data":{}}"#, "has no channel"),
    ];
    for (frame, needle) in cases {
        client.send_text(frame).await;
        let (code, message) = client.expect_error().await;
        assert_eq!(code, None, "{frame}");
        assert!(message.contains(needle), "{frame}: {message}");
    }
    client
        .ws
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let (code, message) = client.expect_error().await;
    assert_eq!(code, None);
    assert!(message.contains("Binary frames"), "{message}");
    // Unknown pusher events are ignored, not answered.
    client
        .send_text(r#"{"event":"pusher:unknown","data":{}}"#)
        .await;
    client.expect_silence(Duration::from_millis(200)).await;
    client.subscribe("still-works").await;
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009_and_others_are_unaffected() {
    let server =
        TestServer::with_config(&format!("[server]\nmax_frame_bytes = 2048\n{APPS}")).await;
    let mut bystander = server.client().await;
    bystander.subscribe("news").await;
    let mut client = server.client().await;
    let big = format!(
        r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#,
        "x".repeat(4096)
    );
    client.send_text(&big).await;
    let (code, message) = client.expect_error().await;
    assert_eq!(code, None);
    assert!(message.contains("too large"), "{message}");
    assert_eq!(client.expect_close().await, 1009);
    server.api().trigger(&["news"], "e", "still here").await;
    assert_eq!(
        bystander.expect("e").await.data_text().as_deref(),
        Some("still here")
    );
}

#[tokio::test]
async fn a_silent_client_is_probed_then_closed_with_4201() {
    let server = TestServer::with_config(&format!(
        "[server]\nactivity_timeout = 1\npong_timeout = 1\n{APPS}"
    ))
    .await;
    let mut silent = server.client().await;
    let mut answering = server.client().await;
    let silent_side = async {
        let probe = silent.next().await;
        assert_eq!(probe.event, "pusher:ping");
        assert!(probe.channel.is_none());
        let (code, _) = silent.expect_error().await;
        assert_eq!(code, Some(4201));
        assert_eq!(silent.expect_close().await, 4201);
    };
    // A client that answers each probe stays connected.
    let answering_side = async {
        for _ in 0..3 {
            assert_eq!(answering.next().await.event, "pusher:ping");
            answering
                .send(json!({"event":"pusher:pong","data":{}}))
                .await;
        }
        answering.subscribe("alive").await;
    };
    tokio::join!(silent_side, answering_side);
}

#[tokio::test]
async fn shutdown_asks_every_client_to_reconnect_with_4200() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("x").await;
    server.shutdown.cancel();
    for client in [&mut a, &mut b] {
        let (code, _) = client.expect_error().await;
        assert_eq!(code, Some(4200));
        assert_eq!(client.expect_close().await, 4200);
    }
    let finished = tokio::time::timeout(Duration::from_secs(5), server.task).await;
    assert!(matches!(finished, Ok(Ok(Ok(())))), "server stops cleanly");
}

#[tokio::test]
async fn plain_http_to_the_websocket_path_is_a_clear_400() {
    let server = TestServer::start().await;
    let response = reqwest::get(format!("http://{}/app/app-key", server.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("WebSocket"));
    let health = reqwest::get(format!("http://{}/health", server.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
