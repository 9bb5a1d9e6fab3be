//! Cache channels (spec §3.8) and subscription count events (§3.9), against a real server.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[tokio::test]
async fn cache_channels_replay_the_last_http_event_or_send_cache_miss() {
    let server = TestServer::start().await;
    let api = server.api();
    let mut first = server.client().await;
    first.subscribe("cache-prices").await;
    let miss = first.next().await;
    assert_eq!(miss.event, "pusher:cache_miss");
    assert_eq!(miss.channel.as_deref(), Some("cache-prices"));
    api.trigger(&["cache-prices"], "price-updated", r#"{"eur":1.08}"#)
        .await;
    api.trigger(&["cache-prices"], "price-updated", r#"{"eur":1.09}"#)
        .await;
    let mut late = server.client().await;
    late.subscribe("cache-prices").await;
    let replayed = late.next().await;
    assert_eq!(replayed.event, "price-updated");
    assert_eq!(replayed.data_text().as_deref(), Some(r#"{"eur":1.09}"#));
    let info = api
        .get_json("/channels/cache-prices", &[("info", "cache")])
        .await;
    assert_eq!(info["occupied"], true);
    assert_eq!(info["cache"]["data"], r#"{"eur":1.09}"#);
    let ttl = info["cache"]["ttl"].as_u64().unwrap();
    assert!((1_790..=1_800).contains(&ttl), "{ttl}");
    let empty = api
        .get_json("/channels/cache-empty", &[("info", "cache")])
        .await;
    assert_eq!(empty, json!({"occupied":false,"cache":null}));
}

#[tokio::test]
async fn client_events_are_not_cached_and_ttl_expires() {
    let server = TestServer::with_config(&APPS.replace(
        "enable_client_messages = true",
        "enable_client_messages = true\ncache_ttl = 1",
    ))
    .await;
    let mut a = server.client().await;
    a.subscribe_private("private-cache-room").await;
    assert_eq!(a.next().await.event, "pusher:cache_miss");
    let mut b = server.client().await;
    b.subscribe_private("private-cache-room").await;
    b.next().await;
    a.send(json!({"event":"client-x","channel":"private-cache-room","data":{}}))
        .await;
    b.expect("client-x").await;
    let mut c = server.client().await;
    c.subscribe_private("private-cache-room").await;
    assert_eq!(
        c.next().await.event,
        "pusher:cache_miss",
        "client events are not cached"
    );
    server
        .api()
        .trigger(&["private-cache-room"], "e", "v")
        .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut d = server.client().await;
    d.subscribe_private("private-cache-room").await;
    assert_eq!(d.next().await.event, "pusher:cache_miss", "expired");
}

#[tokio::test]
async fn subscription_counts_reach_every_subscriber_when_enabled() {
    let server = TestServer::with_config(&APPS.replace(
        "enable_client_messages = true",
        "enable_client_messages = true\nenable_subscription_count = true",
    ))
    .await;
    let mut a = server.client().await;
    a.subscribe("counted").await;
    let count = a.next().await;
    assert_eq!(count.event, "pusher_internal:subscription_count");
    assert_eq!(count.data_json().unwrap(), json!({"subscription_count":1}));
    let mut b = server.client().await;
    b.subscribe("counted").await;
    for client in [&mut a, &mut b] {
        let count = client.expect("pusher_internal:subscription_count").await;
        assert_eq!(count.data_json().unwrap(), json!({"subscription_count":2}));
    }
    drop(b);
    let count = a.expect("pusher_internal:subscription_count").await;
    assert_eq!(count.data_json().unwrap(), json!({"subscription_count":1}));
    a.subscribe_presence("presence-room", r#"{"user_id":"1"}"#)
        .await;
    a.expect_silence(Duration::from_millis(200)).await; // none on presence channels
}

#[tokio::test]
async fn subscription_counts_are_off_by_default() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.subscribe("quiet").await;
    a.expect_silence(Duration::from_millis(200)).await;
}
