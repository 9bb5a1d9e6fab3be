//! Usage metering: counted as Pusher bills, shown at `/metrics` and `/admin/apps/{id}/usage`,
//! kept in `usage.sqlite3` when a data directory is in use (so it survives a restart), and
//! written nowhere when none is.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use serde_json::Value;
use support::prom::scrape;
use support::{APPS, TestServer};

/// Today's row of app 1 from the usage endpoint (no token: the test server is on loopback).
async fn today(server: &TestServer) -> Value {
    let date = herald::usage::today();
    let url = format!(
        "http://{}/admin/apps/1/usage?from={date}&to={date}",
        server.addr
    );
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let days = body["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{body}");
    days[0].clone()
}

/// Three API events to one subscriber: 3 deliveries + 3 publishes = 6 billable messages.
async fn traffic(server: &TestServer) {
    let mut client = server.client().await;
    client.subscribe("metered").await;
    let api = server.api();
    for i in 0..3 {
        api.trigger(&["metered"], "tick", &i.to_string()).await;
        client.expect("tick").await;
    }
}

async fn stop(server: TestServer) {
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

fn config(dir: &Path) -> String {
    format!(
        "[webhooks]\ndata_dir = {:?}\n{APPS}",
        dir.display().to_string()
    )
}

#[tokio::test]
async fn usage_survives_a_restart_with_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_config(&config(dir.path())).await;
    traffic(&server).await;
    let metrics = scrape(server.addr).await;
    assert_eq!(
        metrics.value(r#"herald_usage_messages_today{app_id="1"}"#),
        Some(6.0)
    );
    assert_eq!(
        metrics.value(r#"herald_usage_peak_connections_today{app_id="1"}"#),
        Some(1.0)
    );
    assert_eq!(
        metrics.value(r#"herald_usage_webhook_calls_today{app_id="1"}"#),
        Some(0.0)
    );
    assert_eq!(
        metrics.value(r#"herald_usage_messages_today{app_id="2"}"#),
        Some(0.0)
    );
    stop(server).await;
    assert!(dir.path().join("usage.sqlite3").exists());

    let again = TestServer::with_config(&config(dir.path())).await;
    let metrics = scrape(again.addr).await;
    assert_eq!(
        metrics.value(r#"herald_usage_messages_today{app_id="1"}"#),
        Some(6.0),
        "the stored day is read back"
    );
    assert_eq!(
        metrics.value(r#"herald_usage_peak_connections_today{app_id="1"}"#),
        Some(1.0)
    );
    traffic(&again).await;
    let row = today(&again).await;
    assert_eq!(row["messages"], 12, "{row}");
    assert_eq!(row["peak_connections"], 1, "{row}");
    assert_eq!(row["webhook_calls"], 0, "{row}");
    let metrics = scrape(again.addr).await;
    assert_eq!(
        metrics.value(r#"herald_usage_messages_today{app_id="1"}"#),
        Some(12.0)
    );
    stop(again).await;
}

#[tokio::test]
async fn without_webhooks_or_a_configured_data_dir_usage_stays_in_memory() {
    // The test server points data_dir at an empty temp dir without naming it in the file.
    let mut server = TestServer::start().await;
    let dir = server.data_dir.take().unwrap();
    traffic(&server).await;
    let row = today(&server).await;
    assert_eq!(row["messages"], 6, "{row}");
    let apps: Value = reqwest::get(format!("http://{}/admin/apps", server.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app = &apps["apps"][0];
    assert_eq!(app["usage_durable"], false, "{app}");
    assert_eq!(app["usage_today"]["messages"], 6, "{app}");
    stop(server).await;
    let written: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(written.is_empty(), "wrote {written:?}");
}

#[tokio::test]
async fn an_unwritable_data_dir_is_reported_at_start() {
    let file = tempfile::NamedTempFile::new().unwrap();
    // A regular file where the directory should be: it cannot be created.
    let config = config(&file.path().join("sub"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = herald::config::Config::from_toml(&config).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let error = herald::run(config, listener, shutdown).await.unwrap_err();
    assert!(error.to_string().contains("usage store"), "{error}");
}
