//! `/metrics` read as Prometheus reads it: traffic of every kind shows in the right series,
//! histograms are well formed, and `[metrics]` moves or turns off the endpoint.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::prom::{Exposition, scrape};
use support::{APPS, TestServer, eventually};

fn value(metrics: &Exposition, selector: &str) -> f64 {
    metrics
        .value(selector)
        .unwrap_or_else(|| panic!("no series {selector}"))
}

/// A histogram's `+Inf` bucket equals its count, and buckets never decrease.
fn assert_histogram(metrics: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matches = |s: &&support::prom::Sample| {
        labels
            .iter()
            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    };
    let buckets: Vec<_> = metrics
        .samples
        .iter()
        .filter(|s| s.name == format!("{name}_bucket"))
        .filter(matches)
        .collect();
    assert!(buckets.len() > 5, "{name} has buckets");
    assert!(
        buckets.windows(2).all(|w| w[0].value <= w[1].value),
        "{name} is cumulative"
    );
    let count = metrics
        .samples
        .iter()
        .filter(|s| s.name == format!("{name}_count"))
        .find(matches)
        .expect("a count")
        .value;
    let last = buckets.last().expect("buckets");
    assert_eq!(last.labels["le"], "+Inf");
    assert_eq!(last.value, count);
    assert_eq!(
        metrics.types.get(name).map(String::as_str),
        Some("histogram")
    );
    count
}

#[tokio::test]
async fn traffic_shows_in_labelled_series_and_histograms() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("news").await;
    a.subscribe_private("private-chat").await;
    b.subscribe_private("private-chat").await;
    b.subscribe_presence("presence-room", r#"{"user_id":"ada"}"#)
        .await;
    server
        .api()
        .trigger(&["news", "private-chat"], "headline", "x")
        .await;
    a.expect("headline").await;
    a.expect("headline").await;
    b.expect("headline").await;
    a.send(json!({"event":"client-typing","channel":"private-chat","data":{}}))
        .await;
    b.expect("client-typing").await;
    // Over the client-event rate (10/s): one 4301 at least.
    for _ in 0..12 {
        a.send(json!({"event":"client-typing","channel":"private-chat","data":{}}))
            .await;
    }
    let (code, _) = loop {
        let frame = a.next().await;
        if frame.event == "pusher:error" {
            let data: serde_json::Value = frame.data_json().unwrap();
            break (data["code"].as_u64(), ());
        }
    };
    assert_eq!(code, Some(4301));
    drop(b);

    eventually(|| async {
        scrape(server.addr)
            .await
            .value("herald_connections_closed_total{app_id=\"1\",code=\"client\"}")
            == Some(1.0)
    })
    .await;
    let m = scrape(server.addr).await;
    let app = |selector: &str| value(&m, &selector.replace("APP", "app_id=\"1\""));
    assert_eq!(app("herald_connections{APP}"), 1.0);
    assert_eq!(app("herald_connections_opened_total{APP}"), 2.0);
    assert_eq!(value(&m, "herald_connections{app_id=\"2\"}"), 0.0);
    assert_eq!(
        app("herald_messages_received_total{APP,kind=\"api_event\"}"),
        2.0
    );
    assert!(app("herald_messages_received_total{APP,kind=\"client_event\"}") >= 1.0);
    // news: a; private-chat: a and b.
    assert_eq!(
        app("herald_messages_delivered_total{APP,kind=\"api_event\"}"),
        3.0
    );
    // One copy of the news frame, two of the private-chat one.
    let news = r#"{"event":"headline","channel":"news","data":"x"}"#.len() as f64;
    let chat = r#"{"event":"headline","channel":"private-chat","data":"x"}"#.len() as f64;
    assert_eq!(
        app("herald_messages_received_bytes_total{APP,kind=\"api_event\"}"),
        news + chat
    );
    assert_eq!(
        app("herald_messages_delivered_bytes_total{APP,kind=\"api_event\"}"),
        news + 2.0 * chat
    );
    assert!(app("herald_messages_delivered_total{APP,kind=\"client_event\"}") >= 1.0);
    assert!(app("herald_client_events_rate_limited_total{APP}") >= 1.0);
    // b left: only a's subscriptions remain.
    assert_eq!(
        app("herald_subscriptions{APP,channel_kind=\"public\"}"),
        1.0
    );
    assert_eq!(
        app("herald_subscriptions{APP,channel_kind=\"private\"}"),
        1.0
    );
    assert_eq!(
        app("herald_subscriptions{APP,channel_kind=\"presence\"}"),
        0.0
    );
    assert_eq!(app("herald_occupied_channels{APP}"), 2.0);
    assert_eq!(app("herald_presence_members{APP}"), 0.0);
    let events = [("endpoint", "/apps/{app_id}/events")];
    let requests = value(
        &m,
        "herald_http_requests_total{endpoint=\"/apps/{app_id}/events\",status=\"200\"}",
    );
    assert_eq!(requests, 1.0);
    assert_eq!(
        assert_histogram(&m, "herald_http_request_duration_seconds", &events),
        1.0
    );
    assert!(assert_histogram(&m, "herald_delivery_latency_seconds", &[]) >= 4.0);
    assert!(value(&m, "process_resident_memory_bytes") > 1e6);
    assert!(value(&m, "process_open_fds") > 3.0);
    assert!(m.names().iter().all(|name| !name.contains("cluster")));
}

#[tokio::test]
async fn metrics_move_to_a_port_of_their_own_or_turn_off() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let moved = TestServer::with_config(&format!("[metrics]\nport = {port}\n{APPS}")).await;
    let own: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually(|| async { reqwest::get(format!("http://{own}/metrics")).await.is_ok() }).await;
    assert!(scrape(own).await.value("herald_connections").is_some());
    let main = reqwest::get(format!("http://{}/metrics", moved.addr))
        .await
        .unwrap();
    assert_eq!(main.status(), 404);

    let off = TestServer::with_config(&format!("[metrics]\nenabled = false\n{APPS}")).await;
    let response = reqwest::get(format!("http://{}/metrics", off.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn a_client_that_vanishes_without_a_close_frame_counts_as_gone_not_as_a_violation() {
    let server = TestServer::start().await;
    drop(server.client().await);
    let gone = r#"herald_connections_closed_total{app_id="1",code="client"}"#;
    eventually(|| async { scrape(server.addr).await.value(gone) == Some(1.0) }).await;
    let metrics = scrape(server.addr).await;
    assert_eq!(
        metrics.value(r#"herald_connections_closed_total{code="1002"}"#),
        None
    );
}
