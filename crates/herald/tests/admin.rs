//! The dashboard and `/admin`: who may use them (token, cookie, bearer, Origin, loopback),
//! and the debug console's stream (content, filters, a slow viewer, a whole cluster).

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::cluster::{Backend, TestCluster};
use support::prom::scrape;
use support::{APPS, TestServer, WAIT};

const TOKEN: &str = "test-admin-token-0123456789";

async fn with_token() -> TestServer {
    TestServer::with_config(&format!("[admin]\ntoken = \"{TOKEN}\"\n{APPS}")).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn without_a_token_the_dashboard_is_open_on_loopback_only() {
    let open = TestServer::start().await;
    let page = http()
        .get(format!("http://{}/dashboard", open.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Debug console"));
    let apps = http()
        .get(format!("http://{}/admin/apps", open.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(apps.status(), 200);

    // Listening on every interface without a token: no dashboard at all.
    let public = TestServer::with_config(&format!("[server]\nhost = \"0.0.0.0\"\n{APPS}")).await;
    for path in ["/dashboard", "/admin/apps", "/admin/stream"] {
        let answer = http()
            .get(format!("http://{}{path}", public.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn every_admin_route_refuses_a_missing_or_wrong_token_and_counts_wrong_ones() {
    let server = with_token().await;
    let base = format!("http://{}", server.addr);
    let gets = [
        "/admin/overview",
        "/admin/apps",
        "/admin/apps/1/channels",
        "/admin/connections/1.2",
        "/admin/stream",
        "/dashboard/app.js",
    ];
    for path in gets {
        let none = http().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        let wrong = http()
            .get(format!("{base}{path}"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        assert!(!wrong.text().await.unwrap().contains(TOKEN));
    }
    let page = http()
        .get(format!("{base}/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        303,
        "the dashboard sends strangers to the login page"
    );
    let right = http()
        .get(format!("{base}/admin/apps"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let apps: serde_json::Value = right.json().await.unwrap();
    assert_eq!(apps["apps"][0]["id"], "1");
    assert!(
        !apps.to_string().contains("app-secret"),
        "secrets never shown"
    );
    let metrics = scrape(server.addr).await;
    assert_eq!(
        metrics.value("herald_admin_auth_failures_total"),
        Some(gets.len() as f64)
    );
    // Four more wrong ones pass the per-IP limit of ten: even the right token waits.
    for _ in 0..4 {
        http()
            .get(format!("{base}/admin/apps"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
    }
    let limited = http()
        .get(format!("{base}/admin/apps"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
}

#[tokio::test]
async fn the_login_sets_a_strict_http_only_session_and_state_changes_check_origin() {
    let server = with_token().await;
    let base = format!("http://{}", server.addr);
    let wrong = http()
        .post(format!("{base}/dashboard/login"))
        .body("token=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let login = http()
        .post(format!("{base}/dashboard/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN));
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = http()
        .get(format!("{base}/dashboard"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    let event = json!({"channel":"news","name":"hello","data":"{}"});
    let trigger = |origin: Option<&str>| {
        let mut request = http()
            .post(format!("{base}/admin/apps/1/events"))
            .header("cookie", &session)
            .json(&event);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(
        trigger(Some("http://evil.example")).await.unwrap().status(),
        403
    );
    assert_eq!(
        trigger(None).await.unwrap().status(),
        403,
        "a cookie alone changes nothing"
    );
    let own = format!("http://{}", server.addr);
    assert_eq!(trigger(Some(&own)).await.unwrap().status(), 200);
    // A script with the bearer token needs no Origin; a foreign one is still refused.
    let scripted = http()
        .post(format!("{base}/admin/apps/1/events"))
        .bearer_auth(TOKEN)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(scripted.status(), 200);
    let foreign = http()
        .post(format!("{base}/admin/apps/1/events"))
        .bearer_auth(TOKEN)
        .header("origin", "http://evil.example")
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let out = http()
        .post(format!("{base}/dashboard/logout"))
        .header("cookie", &session)
        .header("origin", &own)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let after = http()
        .get(format!("{base}/admin/apps"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

/// An SSE reader over one `/admin/stream` response.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(base: &str, query: &str) -> Self {
        let response = http()
            .get(format!("{base}/admin/stream?{query}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = Self {
            response,
            buffer: String::new(),
        };
        assert_eq!(stream.next().await.0, "ready");
        stream
    }

    /// The next `(event, data)`.
    async fn next(&mut self) -> (String, serde_json::Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim().to_owned())
                };
                let (Some(event), Some(data)) = (field("event:"), field("data:")) else {
                    continue; // a keep-alive comment
                };
                return (event, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("stream data in time")
                .unwrap()
                .expect("stream open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Skips to the next `debug` event of `kind`.
    async fn expect(&mut self, kind: &str) -> serde_json::Value {
        loop {
            let (event, data) = self.next().await;
            if event == "debug" && data["kind"] == kind {
                return data;
            }
        }
    }
}

#[tokio::test]
async fn the_console_streams_connections_subscriptions_and_events_filtered() {
    let server = with_token().await;
    let base = format!("http://{}", server.addr);
    let mut all = Stream::open(&base, "app=1").await;
    let mut news_only = Stream::open(&base, "channel_prefix=news&event=hello").await;
    let mut client = server.client().await;
    let opened = all.expect("connection_opened").await;
    assert_eq!(opened["socket_id"], client.socket_id.as_str());
    assert!(opened["detail"].as_str().unwrap().starts_with("127.0.0.1:"));
    client.subscribe("news").await;
    client.subscribe_private("private-chat").await;
    assert_eq!(all.expect("subscribed").await["channel"], "news");
    server.api().trigger(&["other"], "hello", "elsewhere").await;
    server.api().trigger(&["news"], "hello", "{\"n\":1}").await;
    let event = all.expect("api_event").await;
    assert_eq!(
        (event["channel"].clone(), event["event"].clone()),
        (json!("other"), json!("hello"))
    );
    let shown = news_only.expect("api_event").await;
    assert_eq!(shown["channel"], "news", "the filter hid the other channel");
    assert_eq!(shown["data"], "{\"n\":1}");
    client
        .send(json!({"event":"client-typing","channel":"private-chat","data":{}}))
        .await;
    assert_eq!(all.expect("client_event").await["event"], "client-typing");
    // The event creator goes through Node::publish: the subscriber gets it.
    let created = http()
        .post(format!("{base}/admin/apps/1/events"))
        .bearer_auth(TOKEN)
        .json(&json!({"channel":"news","name":"from-dashboard","data":"hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    client.expect("from-dashboard").await;
    // The inspector sees the socket, and terminating it closes it with 4009.
    let socket = client.socket_id.clone();
    let info: serde_json::Value = http()
        .get(format!("{base}/admin/connections/{socket}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["channels"], json!(["news", "private-chat"]));
    assert_eq!(info["app_id"], "1");
    let kill = http()
        .post(format!("{base}/admin/connections/{socket}/terminate"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(kill.status(), 200);
    assert_eq!(client.expect_close().await, 4009);
    let closed = all.expect("connection_closed").await;
    assert_eq!(closed["detail"], "4009");
}

#[tokio::test]
async fn a_slow_viewer_gets_a_dropped_marker_and_never_delays_delivery() {
    let server = with_token().await;
    let base = format!("http://{}", server.addr);
    let mut slow = Stream::open(&base, "").await;
    // Nobody reads "busy" either: the console records its events all the same.
    let mut subscriber = server.client().await;
    subscriber.subscribe("quiet").await;
    let data = "x".repeat(1_000);
    let batch: Vec<_> = (0..10)
        .map(|_| json!({"channel":"busy","name":"e","data":data}))
        .collect();
    // Far more than the socket buffers and the viewer's queue hold, while it reads nothing.
    // One HTTP client for all (a new client per request costs ~40 ms in a debug build).
    let api = server.api();
    let body = json!({ "batch": batch });
    for _ in 0..400 {
        let (status, _) = api.post("/batch_events", &body).await;
        assert_eq!(status, 200);
    }
    let started = Instant::now();
    api.trigger(&["quiet"], "probe", "now").await;
    subscriber.expect("probe").await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "delivery waited on the viewer"
    );
    loop {
        let (event, data) = slow.next().await;
        if event == "dropped" {
            assert!(data["dropped"].as_u64().unwrap() > 0);
            break;
        }
    }
}

#[tokio::test]
async fn the_console_on_one_node_shows_the_whole_cluster() {
    let cluster = TestCluster::with_config(
        2,
        Backend::memory(),
        &format!("[admin]\ntoken = \"{TOKEN}\"\n"),
    )
    .await;
    let base = format!("http://{}", cluster.nodes[0].addr);
    let mut stream = Stream::open(&base, "event=far-away").await;
    // The other node hears of the viewer with a heartbeat (tests: every second).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        cluster.nodes[1]
            .api()
            .trigger(&["news"], "far-away", "x")
            .await;
        let next =
            tokio::time::timeout(Duration::from_millis(500), stream.expect("api_event")).await;
        if let Ok(event) = next {
            assert_ne!(event["node"], "", "names the node it happened on");
            break;
        }
        assert!(Instant::now() < deadline, "no event from the other node");
    }
}
