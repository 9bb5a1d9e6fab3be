//! Client events under every rule of spec §6, against a real server on port 0.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const QUIET: Duration = Duration::from_millis(200);

fn client_event(channel: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"event":"client-typing","channel":channel,"data":data})
}

#[tokio::test]
async fn relayed_to_others_as_received_and_never_echoed() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_private("private-chat").await;
    b.subscribe_private("private-chat").await;
    a.send(client_event("private-chat", json!({"who":"Ada"})))
        .await;
    let relayed = b.expect("client-typing").await;
    assert_eq!(relayed.channel.as_deref(), Some("private-chat"));
    assert_eq!(relayed.data.as_ref().unwrap().get(), r#"{"who":"Ada"}"#);
    assert!(relayed.user_id.is_none());
    // String data stays a string (the Java client's form).
    a.send(client_event("private-chat", json!("{\"who\":\"Ada\"}")))
        .await;
    let relayed = b.expect("client-typing").await;
    assert_eq!(
        relayed.data.as_ref().unwrap().get(),
        r#""{\"who\":\"Ada\"}""#
    );
    a.expect_silence(QUIET).await;
}

#[tokio::test]
async fn presence_relays_carry_the_senders_user_id() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_presence("presence-room", r#"{"user_id":42}"#)
        .await;
    b.subscribe_presence("presence-room", r#"{"user_id":"7"}"#)
        .await;
    a.expect("pusher_internal:member_added").await;
    a.send(client_event("presence-room", json!({"x":1}))).await;
    let relayed = b.expect("client-typing").await;
    assert_eq!(relayed.user_id.as_deref(), Some("42"));
}

#[tokio::test]
async fn each_rule_has_its_error_and_the_connection_stays_open() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("public").await;
    a.subscribe_private("private-chat").await;
    b.subscribe_private("private-chat").await;
    b.subscribe("public").await;
    let cases = [
        (
            client_event("public", json!({})),
            "only supported on private and presence channels",
        ),
        (
            client_event("private-other", json!({})),
            "you are not subscribed to channel private-other",
        ),
        (
            json!({"event":format!("client-{}", "x".repeat(200)),"channel":"private-chat","data":{}}),
            "event name is longer than 200",
        ),
        (
            client_event("private-chat", json!("x".repeat(10_241))),
            "data is larger than 10240 bytes",
        ),
    ];
    for (frame, needle) in cases {
        a.send(frame.clone()).await;
        let (code, message) = a.expect_error().await;
        assert_eq!(code, None);
        assert!(message.contains(needle), "{frame}: {message}");
    }
    b.expect_silence(QUIET).await;
    a.send(client_event("private-chat", json!("fine"))).await;
    b.expect("client-typing").await;
}

#[tokio::test]
async fn disabled_apps_refuse_client_events() {
    let server = TestServer::start().await;
    let mut client = TestClient::connect(&server.ws_url("app-key-2")).await;
    client.send(client_event("private-chat", json!({}))).await;
    let (code, message) = client.expect_error().await;
    assert_eq!(code, None);
    assert!(message.contains("enable_client_messages"), "{message}");
}

#[tokio::test]
async fn client_events_on_encrypted_channels_are_refused_and_not_relayed() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_private("private-encrypted-vault").await;
    b.subscribe_private("private-encrypted-vault").await;
    a.send(client_event(
        "private-encrypted-vault",
        json!({"nonce":"n","ciphertext":"c"}),
    ))
    .await;
    let (code, message) = a.expect_error().await;
    assert_eq!(code, None);
    assert!(message.contains("encrypted"), "{message}");
    b.expect_nothing_queued().await;
    a.expect_nothing_queued().await;
}

#[tokio::test]
async fn more_than_ten_per_second_are_rejected_with_4301() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_private("private-chat").await;
    b.subscribe_private("private-chat").await;
    for n in 0..12 {
        a.send(client_event("private-chat", json!(n))).await;
    }
    let (code, message) = a.expect_error().await;
    assert_eq!(code, Some(4301));
    assert!(message.contains("rate limit"));
    a.expect_error().await;
    for n in 0..10 {
        let relayed = b.expect("client-typing").await;
        assert_eq!(relayed.data.unwrap().get(), n.to_string());
    }
    b.expect_silence(QUIET).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    a.send(client_event("private-chat", json!("later"))).await;
    b.expect("client-typing").await;
}
