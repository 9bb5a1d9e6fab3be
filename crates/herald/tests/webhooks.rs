//! Webhooks (spec §9): every event type, signatures, the settle windows of additions and
//! removals, retries, dead letters, replay, limits and durability across restarts, against a
//! real server and a real HTTP receiver.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use herald::webhooks::Store;
use serde_json::{Value, json};
use support::sink::WebhookSink;
use support::*;

const ALL_TYPES: &str = r#"["channel_occupied","channel_vacated","member_added","member_removed","client_event","cache_miss","subscription_count"]"#;
const WAIT_LONG: Duration = Duration::from_secs(10);

fn config(data_dir: &Path, url: &str, extra_webhooks: &str, app_extra: &str) -> String {
    format!(
        r#"
[webhooks]
data_dir = "{}"
removal_delay_ms = 300
addition_delay_ms = 300
timeout = 1
{extra_webhooks}
[[apps]]
id = "1"
key = "app-key"
secret = "app-secret"
enable_client_messages = true
{app_extra}
[[apps.webhooks]]
url = "{url}"
event_types = {ALL_TYPES}
headers = {{ Authorization = "Bearer sink-token" }}
"#,
        data_dir.display()
    )
}

/// A counter at `/metrics` summed over its series, 0 when not rendered.
async fn metric(server: &TestServer, name: &str) -> u64 {
    prom::scrape(server.addr).await.value(name).unwrap_or(0.0) as u64
}

/// Polls `metric` until it reaches `at_least`, or fails after [`WAIT_LONG`].
async fn wait_for_metric(server: &TestServer, name: &str, at_least: u64) -> u64 {
    let started = Instant::now();
    loop {
        let value = metric(server, name).await;
        if value >= at_least {
            return value;
        }
        assert!(
            started.elapsed() < WAIT_LONG,
            "{name} stayed at {value}, expected {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events waiting in the outbox (dead letters not included).
fn pending(dir: &Path) -> Vec<herald::webhooks::StoredEvent> {
    Store::open(dir)
        .unwrap()
        .due(u64::MAX / 2, 100_000)
        .unwrap()
}

/// Waits until nothing waits in the outbox any more: every stored event was delivered.
async fn wait_until_outbox_is_empty(dir: &Path) {
    let started = Instant::now();
    loop {
        let left = pending(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < WAIT_LONG,
            "still in the outbox: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An event without its id, to compare shapes.
fn shape(event: &Value) -> String {
    let mut event = event.clone();
    event.as_object_mut().unwrap().remove("id");
    event.to_string()
}

fn names(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["name"].as_str().unwrap()).collect()
}

fn has(events: &[Value], wanted: &Value) -> bool {
    events.iter().any(|e| {
        wanted
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| e.get(k) == Some(v))
    })
}

#[tokio::test]
async fn every_event_type_arrives_signed_with_a_unique_id() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(SECRET).await;
    let server = TestServer::with_config(&config(dir.path(), &sink.url(), "", "")).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_presence("presence-room", r#"{"user_id":"42"}"#)
        .await;
    b.subscribe_presence("presence-room", r#"{"user_id":"7"}"#)
        .await;
    b.send(json!({"event":"client-typing","channel":"presence-room","data":{"who":"Bob"}}))
        .await;
    a.expect("client-typing").await;
    a.subscribe("cache-prices").await;
    assert_eq!(a.next().await.event, "pusher:cache_miss");
    a.subscribe("orders").await;
    let expected = [
        json!({"name":"channel_occupied","channel":"presence-room"}),
        json!({"name":"member_added","channel":"presence-room","user_id":"42"}),
        json!({"name":"member_added","channel":"presence-room","user_id":"7"}),
        json!({"name":"client_event","channel":"presence-room","event":"client-typing","data":"{\"who\":\"Bob\"}","socket_id":b.socket_id,"user_id":"7"}),
        json!({"name":"cache_miss","channel":"cache-prices"}),
        json!({"name":"subscription_count","channel":"orders","subscription_count":1}),
        json!({"name":"channel_occupied","channel":"orders"}),
        json!({"name":"member_removed","channel":"presence-room","user_id":"7"}),
        json!({"name":"channel_vacated","channel":"orders"}),
    ];
    // Additions wait addition_delay_ms; leaving before they are out would cancel them.
    sink.wait_for(WAIT_LONG, |events| {
        expected[..7].iter().all(|w| has(events, w))
    })
    .await;
    b.send(json!({"event":"pusher:unsubscribe","data":{"channel":"presence-room"}}))
        .await;
    a.send(json!({"event":"pusher:unsubscribe","data":{"channel":"orders"}}))
        .await;
    let events = sink
        .wait_for(WAIT_LONG, |events| expected.iter().all(|w| has(events, w)))
        .await;
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "ids are unique");
    let shapes: HashSet<String> = events.iter().map(shape).collect();
    assert_eq!(
        shapes.len(),
        events.len(),
        "an event arrived twice: {events:?}"
    );
    let request = &sink.requests()[0];
    assert_eq!(request.headers["authorization"], "Bearer sink-token");
}

#[tokio::test]
async fn a_sink_with_another_secret_sees_bad_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start("not-the-app-secret").await;
    let server = TestServer::with_config(&config(dir.path(), &sink.url(), "", "")).await;
    let mut a = server.client().await;
    a.subscribe("orders").await;
    let started = Instant::now();
    while sink.requests().is_empty() {
        assert!(started.elapsed() < WAIT_LONG, "no request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!sink.requests()[0].signature_valid);
    let checked = std::panic::catch_unwind(|| sink.events());
    let message = *checked.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("bad X-Pusher-Signature"), "{message}");
}

#[tokio::test]
async fn a_quick_rejoin_cancels_both_the_removal_and_the_readd() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(SECRET).await;
    let server = TestServer::with_config(&config(dir.path(), &sink.url(), "", "")).await;
    let mut a = server.client().await;
    a.subscribe_presence("presence-room", r#"{"user_id":"42"}"#)
        .await;
    sink.wait_for(WAIT_LONG, |e| e.len() >= 2).await;
    a.send(json!({"event":"pusher:unsubscribe","data":{"channel":"presence-room"}}))
        .await;
    // Frames of one socket are handled in order: once this answers, the leave is done.
    a.subscribe("sync").await;
    let mut again = server.client().await;
    again
        .subscribe_presence("presence-room", r#"{"user_id":"42"}"#)
        .await;
    // member_removed + member_added and channel_vacated + channel_occupied cancelled.
    wait_for_metric(&server, "herald_webhooks_collapsed_total", 4).await;
    let room = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["channel"] == "presence-room")
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        pending(dir.path())
            .iter()
            .all(|e| !e.event.contains("presence-room")),
        "the stored removals were deleted"
    );
    assert_eq!(
        room(&sink.events()),
        vec!["channel_occupied", "member_added"],
        "neither the removal nor the re-add is sent"
    );
    drop(again);
    let events = sink.wait_for(WAIT_LONG, |e| room(e).len() >= 4).await;
    let tail: HashSet<String> = room(&events)[2..].iter().cloned().collect();
    assert_eq!(
        tail,
        HashSet::from(["member_removed".into(), "channel_vacated".into()])
    );
}

#[tokio::test]
async fn a_quick_subscribe_and_unsubscribe_stores_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(SECRET).await;
    let server = TestServer::with_config(&config(dir.path(), &sink.url(), "", "")).await;
    let mut a = server.client().await;
    a.subscribe("flap").await;
    a.subscribe_presence("presence-flap", r#"{"user_id":"42"}"#)
        .await;
    for channel in ["flap", "presence-flap"] {
        a.send(json!({"event":"pusher:unsubscribe","data":{"channel":channel}}))
            .await;
    }
    // occupied + vacated twice, member_added + member_removed once.
    wait_for_metric(&server, "herald_webhooks_collapsed_total", 6).await;
    // A channel occupied after the pairs: once its webhook is out, theirs would have been.
    a.subscribe("marker").await;
    let events = sink
        .wait_for(WAIT_LONG, |e| {
            has(e, &json!({"name":"channel_occupied","channel":"marker"}))
        })
        .await;
    let flapped: Vec<&Value> = events
        .iter()
        .filter(|e| e["channel"] != "marker")
        .filter(|e| e["name"] != "subscription_count")
        .collect();
    assert!(flapped.is_empty(), "sent for the pairs: {flapped:?}");
    assert!(
        pending(dir.path())
            .iter()
            .all(|e| !e.event.contains("flap")),
        "nothing stored for the pairs"
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff_until_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(SECRET).await;
    sink.fail_next(2);
    let toml =
        config(dir.path(), &sink.url(), "", "").replace(ALL_TYPES, r#"["channel_occupied"]"#);
    let server = TestServer::with_config(&toml).await;
    let mut a = server.client().await;
    a.subscribe("orders").await;
    let events = sink.wait_for(WAIT_LONG, |e| !e.is_empty()).await;
    assert_eq!(names(&events), vec!["channel_occupied"]);
    let requests = sink.requests();
    assert_eq!(requests.len(), 3, "two failures, then success");
    let gaps: Vec<Duration> = requests.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps[0] >= Duration::from_millis(900),
        "first retry after ~1 s: {gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(1_900),
        "second after ~2 s: {gaps:?}"
    );
    let ids: HashSet<&str> = requests
        .iter()
        .map(|r| r.body["events"][0]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "retries carry the same id");
    let times: HashSet<u64> = requests
        .iter()
        .map(|r| r.body["time_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(
        times.len(),
        1,
        "time_ms is the creation time on every attempt"
    );
}

#[tokio::test]
async fn exhausted_retries_become_dead_letters_that_can_be_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(SECRET).await;
    sink.fail_next(usize::MAX);
    let toml = config(dir.path(), &sink.url(), "retry_for = 1", "");
    let server = TestServer::with_config(&toml).await;
    let mut a = server.client().await;
    a.subscribe("orders").await;
    let store = Store::open(dir.path()).unwrap();
    let started = Instant::now();
    while store.dead_letters().unwrap().len() < 2 {
        assert!(started.elapsed() < WAIT_LONG, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = store.dead_letters().unwrap();
    assert!(
        dead.iter()
            .all(|d| d.last_error.as_deref() == Some("HTTP 500"))
    );
    assert!(sink.events().is_empty());
    let metrics = prom::scrape(server.addr).await;
    let value = |selector| metrics.value(selector).unwrap_or(-1.0);
    assert_eq!(
        value("herald_webhooks_dead_lettered_total{app_id=\"1\"}"),
        2.0
    );
    assert!(value("herald_webhook_attempts_failed_total") > 0.0);
    assert_eq!(value("herald_connections{app_id=\"1\"}"), 1.0);

    // The CLI lists and replays them; the running server then delivers.
    sink.fail_next(0);
    let herald = env!("CARGO_BIN_EXE_herald");
    let config_path = dir.path().join("herald.toml");
    std::fs::write(&config_path, &toml).unwrap();
    let listed = std::process::Command::new(herald)
        .args(["webhooks", "list-failed", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.starts_with("2 dead-lettered"), "{listed}");
    assert!(listed.contains(&dead[0].id));
    let replay = std::process::Command::new(herald)
        .args(["webhooks", "replay", "--all", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&replay.stdout).contains("2 webhook event(s) queued again"));
    sink.wait_for(WAIT_LONG, |e| e.len() >= 2).await;
    assert!(store.dead_letters().unwrap().is_empty());
}

#[tokio::test]
async fn pending_webhooks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(SECRET).await;
    sink.fail_next(usize::MAX);
    let toml = config(dir.path(), &sink.url(), "", "");
    let first = TestServer::with_config(&toml).await;
    let mut a = first.client().await;
    a.subscribe("orders").await;
    // Once channel_occupied was attempted (after addition_delay_ms), the channel's end is
    // a change of its own, stored at shutdown.
    let attempted = || {
        sink.requests()
            .iter()
            .any(|r| r.body["events"][0]["name"] == "channel_occupied")
    };
    let started = Instant::now();
    while !attempted() {
        assert!(started.elapsed() < WAIT_LONG, "no attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.shutdown.cancel();
    first.task.await.unwrap().unwrap();
    sink.fail_next(0);
    let delivered_before = sink.events().len();
    assert_eq!(delivered_before, 0);
    let _second = TestServer::with_config(&toml).await;
    let events = sink
        .wait_for(WAIT_LONG, |e| {
            has(e, &json!({"name":"channel_occupied","channel":"orders"}))
                && has(e, &json!({"name":"channel_vacated","channel":"orders"}))
        })
        .await;
    assert!(events.len() >= 2);
}

#[tokio::test]
async fn a_hanging_or_refusing_receiver_never_slows_message_delivery() {
    let dir = tempfile::tempdir().unwrap();
    // A listener that accepts connections but never answers, and a port nobody listens on.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refusing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_url = format!("http://{}/hooks", refusing.local_addr().unwrap());
    drop(refusing);
    let toml = config(
        dir.path(),
        &format!("http://{}/hooks", hanging.local_addr().unwrap()),
        "",
        "",
    )
    .replace(
        "headers = {",
        &format!("[[apps.webhooks]]\nurl = \"{refused_url}\"\nevent_types = {ALL_TYPES}\n[apps.webhooks.headers]\nx = \"y\"\n#"),
    );
    let server = TestServer::with_config(&toml).await;
    let mut subscribers = Vec::new();
    for n in 0..20 {
        let mut client = server.client().await;
        client.subscribe(&format!("c{n}")).await;
        client.subscribe("all").await;
        subscribers.push(client);
    }
    let started = Instant::now();
    server.api().trigger(&["all"], "e", "x").await;
    for client in &mut subscribers {
        client.expect("e").await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // At least the 40 subscription counts per target wait in the outbox.
    let started = Instant::now();
    while pending(dir.path()).len() < 80 {
        assert!(
            started.elapsed() < WAIT_LONG,
            "events wait in the outbox: {}",
            pending(dir.path()).len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn batching_sends_several_events_in_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(SECRET).await;
    sink.fail_next(1);
    let toml = config(dir.path(), &sink.url(), "", "webhook_batching = true");
    let server = TestServer::with_config(&toml).await;
    let mut a = server.client().await;
    for n in 0..5 {
        a.subscribe(&format!("c{n}")).await;
    }
    sink.wait_for(WAIT_LONG, |e| e.len() >= 10).await;
    let biggest = sink
        .requests()
        .iter()
        .map(|r| r.body["events"].as_array().unwrap().len())
        .max()
        .unwrap();
    assert!(biggest > 1, "events were batched");
}

#[tokio::test]
async fn every_event_is_delivered_exactly_once_when_all_goes_well() {
    for batching in ["webhook_batching = false", "webhook_batching = true"] {
        let dir = tempfile::tempdir().unwrap();
        let sink = WebhookSink::start(SECRET).await;
        let server = TestServer::with_config(&config(dir.path(), &sink.url(), "", batching)).await;
        let mut clients = Vec::new();
        for n in 0..20 {
            let mut client = server.client().await;
            for c in 0..5 {
                client
                    .subscribe_presence(
                        &format!("presence-{c}"),
                        &format!(r#"{{"user_id":"{n}"}}"#),
                    )
                    .await;
            }
            clients.push(client);
        }
        // 5 occupied + 100 member_added; then every stored event has been delivered and
        // deleted from the outbox.
        sink.wait_for(WAIT_LONG, |e| e.len() >= 105).await;
        wait_until_outbox_is_empty(dir.path()).await;
        let events = sink.events();
        let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids.len(),
            events.len(),
            "{batching}: an event arrived twice"
        );
        assert_eq!(events.len(), 105, "{batching}");
    }
}

#[tokio::test]
async fn redirects_are_not_followed_but_retried_as_failures() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let location = url.clone();
    let router = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let location = location.clone();
            async move { (axum::http::StatusCode::FOUND, [("location", location)]) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let toml = config(dir.path(), &url, "", "").replace(ALL_TYPES, r#"["channel_occupied"]"#);
    let server = TestServer::with_config(&toml).await;
    let mut a = server.client().await;
    a.subscribe("orders").await;
    let store = Store::open(dir.path()).unwrap();
    let started = Instant::now();
    loop {
        let pending = store.due(u64::MAX / 2, 10).unwrap();
        if pending.first().is_some_and(|e| e.attempts >= 1) {
            assert_eq!(pending[0].last_error.as_deref(), Some("HTTP 302"));
            break;
        }
        assert!(started.elapsed() < WAIT_LONG, "never attempted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn an_app_with_max_pending_events_waiting_gets_no_more_and_the_drops_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(SECRET).await;
    sink.fail_next(usize::MAX);
    let toml = config(dir.path(), &sink.url(), "max_pending = 5", "")
        .replace(ALL_TYPES, r#"["channel_occupied"]"#);
    let server = TestServer::with_config(&toml).await;
    let mut a = server.client().await;
    for n in 0..12 {
        a.subscribe(&format!("c{n}")).await;
    }
    assert_eq!(
        wait_for_metric(&server, "herald_webhooks_dropped_total", 7).await,
        7
    );
    assert_eq!(pending(dir.path()).len(), 5, "the outbox holds max_pending");
}

#[tokio::test]
async fn dead_letters_are_deleted_after_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(SECRET).await;
    sink.fail_next(usize::MAX);
    let toml = config(
        dir.path(),
        &sink.url(),
        "retry_for = 1\ndead_letter_retention = 2",
        "",
    )
    .replace(ALL_TYPES, r#"["channel_occupied"]"#);
    let server = TestServer::with_config(&toml).await;
    let mut a = server.client().await;
    a.subscribe("orders").await;
    wait_for_metric(&server, "herald_webhooks_dead_lettered_total", 1).await;
    let store = Store::open(dir.path()).unwrap();
    let started = Instant::now();
    while !store.dead_letters().unwrap().is_empty() {
        assert!(started.elapsed() < WAIT_LONG, "the dead letter stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "kept for its retention"
    );
}

#[tokio::test]
async fn a_client_event_in_a_young_channel_sends_its_occupancy_first() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(SECRET).await;
    let server = TestServer::with_config(&config(dir.path(), &sink.url(), "", "")).await;
    let mut a = server.client().await;
    a.subscribe_presence("presence-young", r#"{"user_id":"42"}"#)
        .await;
    a.send(json!({"event":"client-hi","channel":"presence-young","data":{}}))
        .await;
    a.send(json!({"event":"pusher:unsubscribe","data":{"channel":"presence-young"}}))
        .await;
    // Well inside addition_delay_ms, yet the channel was in use: nothing collapses.
    let events = sink
        .wait_for(WAIT_LONG, |e| {
            has(
                e,
                &json!({"name":"channel_vacated","channel":"presence-young"}),
            )
        })
        .await;
    let mut young: Vec<&str> = names(&events);
    young.sort_unstable();
    assert_eq!(
        young,
        vec![
            "channel_occupied",
            "channel_vacated",
            "client_event",
            "member_added",
            "member_removed"
        ]
    );
}
