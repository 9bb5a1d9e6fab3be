//! User sign-in, server-to-user events, watchlists, terminating connections and authorized
//! connections (spec §5), against a real server on port 0.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const QUIET: Duration = Duration::from_millis(200);

#[tokio::test]
async fn signin_echoes_user_data_and_server_to_user_reaches_every_socket_of_the_user() {
    let server = TestServer::start().await;
    let user_data = r#"{"id":"42","user_info":{"name":"Ada"}}"#;
    let mut phone = server.client().await;
    let mut laptop = server.client().await;
    let mut other = server.client().await;
    phone.sign_in(user_data).await;
    laptop.sign_in(user_data).await;
    other.sign_in(r#"{"id":"7"}"#).await;
    // pusher-js subscribes to its own user channel after sign-in.
    phone.subscribe("#server-to-user-42").await;
    other
        .send(json!({"event":"pusher:subscribe","data":{"auth":"","channel":"#server-to-user-42"}}))
        .await;
    let (_, message) = other.expect_error().await;
    assert!(message.contains("signed in as that user"), "{message}");

    server
        .api()
        .trigger(&["#server-to-user-42"], "notification", r#"{"text":"hi"}"#)
        .await;
    for socket in [&mut phone, &mut laptop] {
        let event = socket.expect("notification").await;
        assert_eq!(event.channel.as_deref(), Some("#server-to-user-42"));
        assert_eq!(event.data_text().as_deref(), Some(r#"{"text":"hi"}"#));
    }
    other.expect_silence(QUIET).await;
    let listed = server.api().get_json("/channels", &[]).await;
    assert_eq!(
        listed,
        json!({"channels":{}}),
        "user channels are not listed"
    );
}

#[tokio::test]
async fn bad_signins_get_4009_and_close() {
    let server = TestServer::start().await;
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "user_data"),
        (r#"{"user_info":{}}"#.into(), "id"),
        (r#"{"id":42}"#.into(), "string id"),
        (r#"{"id":""}"#.into(), "string id"),
        (r#"{"id":"1","watchlist":"7"}"#.into(), "watchlist"),
    ];
    for (user_data, needle) in cases {
        let mut client = server.client().await;
        client.send_signin(&user_data).await;
        let (code, message) = client.expect_error().await;
        assert_eq!(code, Some(4009), "{user_data}");
        assert!(message.contains(needle), "{user_data}: {message}");
        assert_eq!(client.expect_close().await, 4009);
    }
    let mut forged = server.client().await;
    let user_data = r#"{"id":"1"}"#;
    let auth = format!(
        "app-key:{}",
        sign(SECRET, &format!("9.9::user::{user_data}"))
    );
    forged
        .send(json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}))
        .await;
    let (code, message) = forged.expect_error().await;
    assert_eq!(code, Some(4009));
    assert!(message.contains("signature"), "{message}");

    let mut switcher = server.client().await;
    switcher.sign_in(r#"{"id":"1"}"#).await;
    switcher
        .sign_in(r#"{"id":"1","user_info":{"again":true}}"#)
        .await;
    switcher.send_signin(r#"{"id":"2"}"#).await;
    let (code, message) = switcher.expect_error().await;
    assert_eq!(code, Some(4009));
    assert!(message.contains("another user"), "{message}");
}

#[tokio::test]
async fn presence_without_channel_data_uses_the_signed_in_user() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .sign_in(r#"{"id":"42","user_info":{"name":"Ada"}}"#)
        .await;
    let auth = format!(
        "app-key:{}",
        sign(SECRET, &format!("{}:presence-room", client.socket_id))
    );
    client
        .send(json!({"event":"pusher:subscribe","data":{"auth":auth,"channel":"presence-room"}}))
        .await;
    let ok = client
        .expect("pusher_internal:subscription_succeeded")
        .await;
    assert_eq!(
        ok.data_json().unwrap(),
        json!({"presence":{"ids":["42"],"hash":{"42":{"name":"Ada"}},"count":1}})
    );
}

#[tokio::test]
async fn watchlists_report_initial_status_then_online_and_offline() {
    let server = TestServer::start().await;
    let mut seven = server.client().await;
    seven.sign_in(r#"{"id":"7"}"#).await;
    let mut watcher = server.client().await;
    watcher
        .sign_in(r#"{"id":"42","watchlist":["7","9"]}"#)
        .await;
    let initial = watcher.expect("pusher_internal:watchlist_events").await;
    assert!(initial.channel.is_none());
    assert_eq!(
        initial.data_json().unwrap(),
        json!({"events":[{"name":"online","user_ids":["7"]},{"name":"offline","user_ids":["9"]}]})
    );
    let mut nine = server.client().await;
    nine.sign_in(r#"{"id":"9"}"#).await;
    let online = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        online.data_json().unwrap(),
        json!({"events":[{"name":"online","user_ids":["9"]}]})
    );
    let mut nine_again = server.client().await;
    nine_again.sign_in(r#"{"id":"9"}"#).await;
    watcher.expect_silence(QUIET).await; // already online
    drop(nine);
    watcher.expect_silence(QUIET).await; // one socket left
    drop(nine_again);
    let offline = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        offline.data_json().unwrap(),
        json!({"events":[{"name":"offline","user_ids":["9"]}]})
    );
}

#[tokio::test]
async fn watchlists_over_100_ids_keep_the_first_100_with_4302() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let ids: Vec<String> = (0..101).map(|n| format!("u{n}")).collect();
    let user_data = json!({"id":"me","watchlist":ids}).to_string();
    client.sign_in(&user_data).await;
    let (code, _) = client.expect_error().await;
    assert_eq!(code, Some(4302));
    let events = client.expect("pusher_internal:watchlist_events").await;
    let offline = events.data_json().unwrap()["events"][0]["user_ids"].clone();
    assert_eq!(offline.as_array().unwrap().len(), 100);
    assert_eq!(offline[99], "u99");
}

#[tokio::test]
async fn terminate_connections_closes_every_socket_of_the_user_with_4009() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let mut bystander = server.client().await;
    a.sign_in(r#"{"id":"42"}"#).await;
    b.sign_in(r#"{"id":"42"}"#).await;
    bystander.sign_in(r#"{"id":"7"}"#).await;
    let (status, body) = server
        .api()
        .post("/users/42/terminate_connections", &json!({}))
        .await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    for socket in [&mut a, &mut b] {
        let (code, _) = socket.expect_error().await;
        assert_eq!(code, Some(4009));
        assert_eq!(socket.expect_close().await, 4009);
    }
    bystander.subscribe("still-here").await;
    let (status, _) = server
        .api()
        .post("/users/nobody/terminate_connections", &json!({}))
        .await;
    assert_eq!(status, 200, "unknown users are fine");
}

#[tokio::test]
async fn the_python_sdk_path_without_the_apps_prefix_is_accepted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.sign_in(r#"{"id":"42"}"#).await;
    let api = server.api();
    let (status, _) = api
        .post_raw("/users/42/terminate_connections", b"{}", now())
        .await;
    assert_eq!(status, 200);
    let (code, _) = client.expect_error().await;
    assert_eq!(code, Some(4009));
}

#[tokio::test]
async fn authorized_connections_must_sign_in_or_hold_a_private_channel_in_time() {
    let server = TestServer::with_config(&APPS.replace(
        "enable_client_messages = true",
        "enable_client_messages = true\nauthorized_connections_timeout = 1",
    ))
    .await;
    let mut idle = server.client().await;
    let mut signed = server.client().await;
    let mut private = server.client().await;
    signed.sign_in(r#"{"id":"1"}"#).await;
    private.subscribe_private("private-x").await;
    idle.subscribe("public").await;
    let (code, message) = idle.expect_error().await;
    assert_eq!(code, Some(4009));
    assert!(message.contains("within timeout"), "{message}");
    assert_eq!(idle.expect_close().await, 4009);
    signed.expect_silence(Duration::from_millis(500)).await;
    private.expect_silence(QUIET).await;
}
