//! Subscriptions: every channel type, auth failures, duplicates, unsubscribe and presence
//! rosters, against a real server on port 0.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const QUIET: Duration = Duration::from_millis(200);

#[tokio::test]
async fn public_subscribe_with_or_without_auth_succeeds_once_with_empty_data() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let ok = client.subscribe("my-channel").await;
    assert_eq!(ok.data.unwrap().get(), r#""{}""#);
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"pysher-style"}}))
        .await;
    assert_eq!(
        client.next().await.event,
        "pusher_internal:subscription_succeeded"
    );
    client
        .send(json!({"event":"pusher:subscribe","data":{"auth":"","channel":"my-channel"}}))
        .await;
    let (code, message) = client.expect_error().await;
    assert_eq!(code, None);
    assert_eq!(message, "Existing subscription to channel my-channel");
    client.expect_silence(QUIET).await;
}

#[tokio::test]
async fn private_channels_need_a_valid_signature_over_this_socket() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe_private("private-orders").await;
    client.subscribe_private("private-encrypted-vault").await;
    let cases = [
        (
            json!({"channel":"private-a"}),
            "Auth info required to subscribe to private-a",
        ),
        (
            json!({"channel":"private-a","auth":""}),
            "Auth info required",
        ),
        (
            json!({"channel":"private-a","auth":"no-colon"}),
            "Invalid auth format",
        ),
        (
            json!({"channel":"private-a","auth":format!("app-key-2:{}", sign("secret-2", &format!("{}:private-a", client.socket_id)))}),
            "Invalid key in subscription auth data: 'app-key-2'",
        ),
        (
            json!({"channel":"private-a","auth":format!("app-key:{}", sign(SECRET, "1.1:private-a"))}),
            "Invalid signature",
        ),
        (
            json!({"channel":"private-a","auth":format!("app-key:{}", sign(SECRET, &format!("{}:private-b", client.socket_id)))}),
            "Invalid signature",
        ),
        (
            json!({"channel":"private-a","auth":"app-key:zz"}),
            "Invalid signature",
        ),
    ];
    for (data, needle) in cases {
        client
            .send(json!({"event":"pusher:subscribe","data":data}))
            .await;
        let (code, message) = client.expect_error().await;
        assert_eq!(code, None);
        assert!(message.contains(needle), "{data}: {message}");
    }
    client.expect_silence(QUIET).await;
    server.api().trigger(&["private-a"], "e", "x").await;
    client.expect_silence(QUIET).await;
}

#[tokio::test]
async fn bad_channel_names_are_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let long = "a".repeat(201);
    for name in [
        "has space",
        "slash/y",
        "",
        "#server-to-user-",
        "#other",
        long.as_str(),
    ] {
        client
            .send(json!({"event":"pusher:subscribe","data":{"channel":name}}))
            .await;
        let (code, message) = client.expect_error().await;
        assert_eq!(code, None);
        assert!(
            message.starts_with("Invalid channel name"),
            "{name}: {message}"
        );
    }
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"#server-to-user-42"}}))
        .await;
    let (_, message) = client.expect_error().await;
    assert!(message.contains("signed in"), "{message}");
}

#[tokio::test]
async fn presence_roster_counts_users_and_announces_only_first_and_last_sockets() {
    let server = TestServer::start().await;
    let ada = r#"{"user_id":"42","user_info":{"name":"Ada"}}"#;
    let bob = r#"{"user_id":7,"user_info":{"name":"Bob"}}"#;
    let mut a = server.client().await;
    let ok = a.subscribe_presence("presence-room", ada).await;
    assert_eq!(
        ok.data_json().unwrap(),
        json!({"presence":{"ids":["42"],"hash":{"42":{"name":"Ada"}},"count":1}})
    );
    let mut b = server.client().await;
    let ok = b.subscribe_presence("presence-room", bob).await;
    assert_eq!(
        ok.data_json().unwrap(),
        json!({"presence":{"ids":["42","7"],"hash":{"42":{"name":"Ada"},"7":{"name":"Bob"}},"count":2}})
    );
    let added = a.expect("pusher_internal:member_added").await;
    assert_eq!(added.channel.as_deref(), Some("presence-room"));
    assert!(
        added.data.as_ref().unwrap().get().starts_with('"'),
        "stringified"
    );
    assert_eq!(
        added.data_json().unwrap(),
        json!({"user_id":"7","user_info":{"name":"Bob"}})
    );
    b.expect_silence(QUIET).await; // no member_added to the joiner

    // Ada's second socket: no member_added, count stays 2.
    let mut a2 = server.client().await;
    let ok = a2.subscribe_presence("presence-room", ada).await;
    assert_eq!(ok.data_json().unwrap()["presence"]["count"], 2);
    b.expect_silence(QUIET).await;

    let users = server
        .api()
        .get_json("/channels/presence-room/users", &[])
        .await;
    assert_eq!(users, json!({"users":[{"id":"42"},{"id":"7"}]}));

    drop(a2); // not Ada's last socket: nothing
    wait_for_count(&server, "presence-room", 2).await;
    b.expect_nothing_queued().await;
    a.send(json!({"event":"pusher:unsubscribe","data":{"channel":"presence-room"}}))
        .await;
    let removed = b.next().await;
    assert_eq!(removed.event, "pusher_internal:member_removed");
    assert_eq!(removed.data_json().unwrap(), json!({"user_id":"42"}));
    wait_for_count(&server, "presence-room", 1).await;
    b.expect_nothing_queued().await; // exactly one member_removed
    drop(b);
    let api = server.api();
    eventually(|| async {
        api.get_json("/channels/presence-room/users", &[]).await == json!({"users":[]})
    })
    .await;
}

/// Waits until `channel` has `count` subscribers, as the HTTP API sees it.
async fn wait_for_count(server: &TestServer, channel: &str, count: u64) {
    let api = server.api();
    let path = format!("/channels/{channel}");
    eventually(|| async {
        let info = api.get_json(&path, &[("info", "subscription_count")]).await;
        info["subscription_count"].as_u64() == Some(count)
    })
    .await;
}

#[tokio::test]
async fn a_connection_holds_at_most_max_channels_per_connection() {
    let server = TestServer::with_config(&format!(
        "[server]\nmax_channels_per_connection = 3\n{APPS}"
    ))
    .await;
    let mut client = server.client().await;
    for name in ["one", "two", "three"] {
        client.subscribe(name).await;
    }
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"four"}}))
        .await;
    let (code, message) = client.expect_error().await;
    assert_eq!(code, None);
    assert!(message.contains("at most 3 channels"), "{message}");
    // The connection stays usable, and leaving a channel makes room.
    client
        .send(json!({"event":"pusher:unsubscribe","data":{"channel":"one"}}))
        .await;
    client.subscribe("four").await;
    let channels = server.api().get_json("/channels", &[]).await;
    assert!(channels["channels"].get("four").is_some(), "{channels}");
    assert!(channels["channels"].get("one").is_none(), "{channels}");
}

#[tokio::test]
async fn the_default_cap_is_100_channels() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for n in 0..100 {
        client.subscribe(&format!("c{n}")).await;
    }
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"c100"}}))
        .await;
    let (_, message) = client.expect_error().await;
    assert!(message.contains("at most 100 channels"), "{message}");
}

#[tokio::test]
async fn presence_channel_data_is_checked() {
    let server = TestServer::with_config(&APPS.replace(
        "enable_client_messages = true",
        "enable_client_messages = true\n[apps.limits]\nmax_presence_members = 1",
    ))
    .await;
    let mut client = server.client().await;
    let big = format!(r#"{{"user_id":"1","user_info":"{}"}}"#, "x".repeat(1100));
    let long_id = format!(r#"{{"user_id":"{}"}}"#, "x".repeat(129));
    for (data, needle) in [
        ("not json", "Invalid channel_data"),
        (r#"{"user_info":{}}"#, "Invalid channel_data"),
        (r#"{"user_id":""}"#, "user_id must be"),
        (big.as_str(), "user_info is larger than 1024 bytes"),
        (long_id.as_str(), "longer than 128"),
    ] {
        client.send_presence("presence-x", data).await;
        let (code, message) = client.expect_error().await;
        assert_eq!(code, None);
        assert!(message.contains(needle), "{data}: {message}");
    }
    let signed = format!(
        "app-key:{}",
        sign(SECRET, &format!("{}:presence-x", client.socket_id))
    );
    client
        .send(json!({"event":"pusher:subscribe","data":{"auth":signed,"channel":"presence-x"}}))
        .await;
    let (_, message) = client.expect_error().await;
    assert!(message.contains("requires channel_data"), "{message}");
    // The member limit: a second distinct user is refused, the same user is not.
    client
        .subscribe_presence("presence-x", r#"{"user_id":"1"}"#)
        .await;
    let mut other = server.client().await;
    other
        .send_presence("presence-x", r#"{"user_id":"2"}"#)
        .await;
    let (_, message) = other.expect_error().await;
    assert!(message.contains("is full"), "{message}");
    other
        .subscribe_presence("presence-x", r#"{"user_id":"1"}"#)
        .await;
}

#[tokio::test]
async fn presence_signature_covers_channel_data_byte_for_byte() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // Python's json.dumps spacing: signed as sent, never re-serialised.
    let spaced = r#"{"user_id": "9", "user_info": {"name": "Py"}}"#;
    client.subscribe_presence("presence-py", spaced).await;
    let tampered_signature = format!(
        "app-key:{}",
        sign(
            SECRET,
            &format!("{}:presence-py2:{}", client.socket_id, spaced)
        )
    );
    client
        .send(json!({"event":"pusher:subscribe","data":{"auth":tampered_signature,"channel":"presence-py2","channel_data":r#"{"user_id":"9","user_info":{"name":"Py"}}"#}}))
        .await;
    let (_, message) = client.expect_error().await;
    assert!(message.contains("Invalid signature"), "{message}");
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_is_idempotent() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.subscribe("news").await;
    server.api().trigger(&["news"], "e", "one").await;
    assert_eq!(client.expect("e").await.data_text().as_deref(), Some("one"));
    for _ in 0..2 {
        client
            .send(json!({"event":"pusher:unsubscribe","data":{"channel":"news"}}))
            .await;
    }
    client
        .send(json!({"event":"pusher:unsubscribe","data":{"channel":"never-held"}}))
        .await;
    client.expect_silence(QUIET).await;
    server.api().trigger(&["news"], "e", "two").await;
    client.expect_silence(QUIET).await;
    let info = server.api().get_json("/channels/news", &[]).await;
    assert_eq!(info, json!({"occupied": false}));
    client.subscribe("news").await; // can subscribe again
}

#[tokio::test]
async fn closing_a_socket_cleans_up_every_channel() {
    let server = TestServer::start().await;
    let mut watcher = server.client().await;
    watcher
        .subscribe_presence("presence-r", r#"{"user_id":"w"}"#)
        .await;
    let mut leaver = server.client().await;
    leaver.subscribe("a").await;
    leaver.subscribe_private("private-b").await;
    leaver
        .subscribe_presence("presence-r", r#"{"user_id":"l"}"#)
        .await;
    watcher.expect("pusher_internal:member_added").await;
    drop(leaver);
    let removed = watcher.expect("pusher_internal:member_removed").await;
    assert_eq!(removed.data_json().unwrap(), json!({"user_id":"l"}));
    let channels = server.api().get_json("/channels", &[]).await;
    assert_eq!(channels, json!({"channels":{"presence-r":{}}}));
}

#[tokio::test]
async fn soketi_style_subscription_errors_when_the_app_asks_for_them() {
    let server = TestServer::with_config(&APPS.replace(
        "enable_client_messages = true",
        "enable_client_messages = true\nsubscription_error_events = true",
    ))
    .await;
    let mut client = server.client().await;
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"private-orders"}}))
        .await;
    let (code, message) = client.expect_error().await;
    assert_eq!(code, None);
    let scoped = client.next().await;
    assert_eq!(scoped.event, "pusher:subscription_error");
    assert_eq!(scoped.channel.as_deref(), Some("private-orders"));
    let data: serde_json::Value = serde_json::from_str(scoped.data.unwrap().get()).unwrap();
    assert_eq!(
        data,
        json!({"type":"AuthError","error":message,"status":401})
    );
    // A duplicate keeps its subscription, so it gets no channel-scoped error.
    client.subscribe("news").await;
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"news"}}))
        .await;
    client.expect_error().await;
    client.expect_silence(QUIET).await;
}
