//! Protection at the edge, one limit at a time, each with its exact answer (close code or
//! status, `Retry-After`) and a check that other clients (other IPs through a trusted proxy,
//! other apps) are unaffected: per-IP WebSocket and API rates, per-app event and read rates,
//! the daily message quota, the node's max_connections and max_memory_mb, and the size of
//! request heads and bodies.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_protocol::auth::{auth_token, channel_auth_string, signed_query};
use serde_json::{Value, json};
use support::{
    APPS, ApiClient, Socket, TestClient, TestServer, eventually, metric, next_frame, now,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, client_async};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Another loopback address: a client that is not the trusted proxy.
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Apps 5-7 beside the usual four: one limit each.
const LIMITED_APPS: &str = r#"
[[apps]]
id = "5"
key = "events-key"
secret = "secret-5"
[apps.limits]
max_api_events_per_second = 1
[[apps]]
id = "6"
key = "reads-key"
secret = "secret-6"
[apps.limits]
max_api_reads_per_second = 1
[[apps]]
id = "7"
key = "quota-key"
secret = "secret-7"
enable_client_messages = true
[apps.limits]
max_messages_per_day = 3
"#;

async fn server(settings: &str) -> TestServer {
    TestServer::with_config(&format!("[server]\n{settings}\n{APPS}{LIMITED_APPS}")).await
}

async fn tcp_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// A WebSocket to `/app/{key}` from `from`, claiming `forwarded_for` if given.
async fn ws(to: SocketAddr, key: &str, from: IpAddr, forwarded_for: Option<&str>) -> Socket {
    let url = format!("ws://{to}/app/{key}?protocol=7&client=js&version=8.4.0");
    let mut request = url.into_client_request().unwrap();
    if let Some(client) = forwarded_for {
        let value = client.parse().unwrap();
        request.headers_mut().insert("x-forwarded-for", value);
    }
    let tcp = tcp_from(from, to).await;
    let (ws, _) = client_async(request, MaybeTlsStream::Plain(tcp))
        .await
        .expect("upgraded");
    ws
}

async fn client(to: SocketAddr, from: IpAddr, forwarded_for: Option<&str>) -> TestClient {
    TestClient::established(ws(to, support::KEY, from, forwarded_for).await).await
}

/// The handshake refusal: `pusher:error` with `code`, then a close with the same code.
async fn expect_refused(mut ws: Socket, code: u16) -> String {
    let frame = next_frame(&mut ws).await.expect("an error frame");
    assert_eq!(frame.event, "pusher:error", "{frame:?}");
    let data = frame.data_json().unwrap();
    assert_eq!(data["code"].as_u64(), Some(u64::from(code)), "{data}");
    let mut client = TestClient {
        ws,
        socket_id: String::new(),
    };
    assert_eq!(client.expect_close().await, code);
    data["message"].as_str().unwrap().to_owned()
}

/// An API client of `app` whose requests claim to come from `forwarded_for`.
fn api(server: &TestServer, app: (&str, &str, &str), forwarded_for: Option<&str>) -> ApiClient {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(client) = forwarded_for {
        headers.insert("x-forwarded-for", client.parse().unwrap());
    }
    ApiClient {
        base: format!("http://{}", server.addr),
        app_id: app.0.into(),
        key: app.1.into(),
        secret: app.2.into(),
        http: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap(),
    }
}

const APP_1: (&str, &str, &str) = ("1", "app-key", "app-secret");
const APP_5: (&str, &str, &str) = ("5", "events-key", "secret-5");
const APP_6: (&str, &str, &str) = ("6", "reads-key", "secret-6");
const APP_7: (&str, &str, &str) = ("7", "quota-key", "secret-7");

/// A signed request; the whole response, headers included.
async fn send(
    api: &ApiClient,
    method: &str,
    rest: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let path = api.path(rest);
    let body = body.map(Value::to_string).unwrap_or_default();
    let query = signed_query(
        &api.key,
        &api.secret,
        method,
        &path,
        body.as_bytes(),
        now(),
        &[],
    );
    let url = format!("{}{path}?{query}", api.base);
    let request = match method {
        "GET" => api.http.get(url),
        _ => api
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body),
    };
    request.send().await.unwrap()
}

/// Status, `Retry-After` and body text of a response.
async fn answer(response: reqwest::Response) -> (u16, Option<u64>, String) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry_after, response.text().await.unwrap())
}

fn event(channels: &[&str]) -> Value {
    json!({"name":"e","data":"{}","channels":channels})
}

// Rates of 1 per second: a refusal needs only a second request within a second, which
// holds even on a loaded machine.

#[tokio::test]
async fn new_websockets_over_the_per_ip_rate_are_closed_with_4301() {
    let server =
        server("max_connections_per_second_per_ip = 1\ntrusted_proxies = [\"127.0.0.1/32\"]").await;
    let to = server.addr;
    // Through the trusted proxy (127.0.0.1): the client is the forwarded address.
    let mut first = client(to, LOCAL, Some("203.0.113.1")).await;
    first.subscribe("rated").await;
    let second = ws(to, support::KEY, LOCAL, Some("203.0.113.1")).await;
    let message = expect_refused(second, 4301).await;
    assert!(message.contains("Too many new connections"), "{message}");
    let _other_client = client(to, LOCAL, Some("203.0.113.2")).await;

    // Not a trusted proxy: its own address counts, whatever it claims to forward.
    let _a = client(to, OTHER, Some("198.51.100.1")).await;
    expect_refused(
        ws(to, support::KEY, OTHER, Some("198.51.100.2")).await,
        4301,
    )
    .await;

    server.api().trigger(&["rated"], "still", "{}").await;
    first.expect("still").await;
    assert_eq!(
        metric(&server, "herald_ip_connections_limited_total").await,
        2.0
    );
}

#[tokio::test]
async fn api_requests_over_the_per_ip_rate_get_429_with_retry_after() {
    let server =
        server("max_api_requests_per_second_per_ip = 1\ntrusted_proxies = [\"127.0.0.1\"]").await;
    let busy = api(&server, APP_1, Some("203.0.113.1"));
    assert_eq!(send(&busy, "GET", "/channels", None).await.status(), 200);
    let (status, retry_after, text) =
        answer(send(&busy, "POST", "/events", Some(&event(&["c"]))).await).await;
    assert_eq!((status, retry_after), (429, Some(1)), "{text}");
    assert!(
        text.contains("max_api_requests_per_second_per_ip"),
        "{text}"
    );

    let calm = api(&server, APP_1, Some("203.0.113.2"));
    assert_eq!(send(&calm, "GET", "/channels", None).await.status(), 200);
    let health = busy
        .http
        .get(format!("{}/health", busy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "only the Pusher API is limited");
    let _websocket = client(server.addr, LOCAL, Some("203.0.113.1")).await;
    assert_eq!(
        metric(&server, "herald_ip_api_requests_limited_total").await,
        1.0
    );
}

#[tokio::test]
async fn an_apps_event_rate_answers_429_and_other_apps_are_unaffected() {
    let server = server("").await;
    let limited = api(&server, APP_5, None);
    assert_eq!(
        send(&limited, "POST", "/events", Some(&event(&["a"])))
            .await
            .status(),
        200
    );
    let (status, retry_after, text) =
        answer(send(&limited, "POST", "/events", Some(&event(&["a"]))).await).await;
    assert_eq!((status, retry_after), (429, Some(1)), "{text}");
    assert!(text.contains("max_api_events_per_second"), "{text}");

    let mut subscriber = server.client().await;
    subscriber.subscribe("unlimited").await;
    server.api().trigger(&["unlimited"], "fine", "{}").await;
    subscriber.expect("fine").await;

    // Two channels cost two: more than a second's budget, so never.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let batch = json!({"batch":[
        {"channel":"a","name":"e","data":"1"},
        {"channel":"b","name":"e","data":"2"}]});
    let (status, retry_after, text) =
        answer(send(&limited, "POST", "/batch_events", Some(&batch)).await).await;
    assert_eq!((status, retry_after), (400, None), "{text}");
    assert!(text.contains("publishes 2 messages"), "{text}");
    assert_eq!(
        send(&limited, "POST", "/events", Some(&event(&["a"])))
            .await
            .status(),
        200
    );
    assert_eq!(
        metric(&server, "herald_app_api_events_limited_total").await,
        2.0
    );
}

#[tokio::test]
async fn an_apps_read_rate_answers_429_and_leaves_its_events_alone() {
    let server = server("").await;
    let limited = api(&server, APP_6, None);
    assert_eq!(send(&limited, "GET", "/channels", None).await.status(), 200);
    let (status, retry_after, text) =
        answer(send(&limited, "GET", "/channels/x", None).await).await;
    assert_eq!((status, retry_after), (429, Some(1)), "{text}");
    assert!(text.contains("max_api_reads_per_second"), "{text}");
    assert_eq!(
        send(&limited, "POST", "/events", Some(&event(&["a"])))
            .await
            .status(),
        200
    );
    let other = api(&server, APP_1, None);
    assert_eq!(send(&other, "GET", "/channels", None).await.status(), 200);
    assert_eq!(
        metric(&server, "herald_app_api_reads_limited_total").await,
        1.0
    );
}

/// A client of app 7 in `private-quota`.
async fn quota_client(server: &TestServer) -> TestClient {
    let url = server.ws_url(APP_7.1);
    let mut client = TestClient::connect(&url).await;
    let channel = "private-quota";
    let signed = channel_auth_string(&client.socket_id, channel, None);
    let auth = auth_token(APP_7.1, APP_7.2, &signed);
    client
        .send(json!({"event":"pusher:subscribe","data":{"auth":auth,"channel":channel}}))
        .await;
    client
        .expect("pusher_internal:subscription_succeeded")
        .await;
    client
}

#[tokio::test]
async fn the_daily_quota_counts_api_messages_and_client_events_until_utc_midnight() {
    let server = server("").await;
    let mut sender = quota_client(&server).await;
    let mut receiver = quota_client(&server).await;
    let limited = api(&server, APP_7, None);
    // Two channels: two messages.
    let both = event(&["private-quota", "elsewhere"]);
    assert_eq!(
        send(&limited, "POST", "/events", Some(&both))
            .await
            .status(),
        200
    );
    receiver.expect("e").await;
    sender.expect("e").await;

    let client_event = json!({"event":"client-typing","channel":"private-quota","data":{}});
    sender.send(client_event.clone()).await;
    receiver.expect("client-typing").await;
    sender.send(client_event).await;
    let (code, message) = sender.expect_error().await;
    assert_eq!(code, Some(4301));
    assert!(
        message.contains("Daily message quota exceeded"),
        "{message}"
    );

    let (status, retry_after, text) =
        answer(send(&limited, "POST", "/events", Some(&event(&["x"]))).await).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("max_messages_per_day"), "{text}");
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let to_midnight = 86_400 - unix % 86_400;
    assert!(
        retry_after.unwrap().abs_diff(to_midnight) <= 5,
        "{retry_after:?} vs {to_midnight}"
    );
    receiver.expect_nothing_queued().await;

    // Reads still work, and other apps publish as before.
    assert_eq!(send(&limited, "GET", "/channels", None).await.status(), 200);
    server.api().trigger(&["c"], "e", "{}").await;
    assert_eq!(
        metric(&server, "herald_app_daily_quota_refused_total").await,
        2.0
    );
}

#[tokio::test]
async fn at_max_connections_new_websockets_get_4100_and_ready_is_503() {
    let server = server("max_connections = 2").await;
    let mut first = server.client().await;
    first.subscribe("full").await;
    let mut second = server.client().await;
    let refused = ws(server.addr, support::KEY, LOCAL, None).await;
    assert_eq!(expect_refused(refused, 4100).await, "Over capacity");
    let ready = reqwest::get(format!("http://{}/ready", server.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["reason"], "over capacity: max_connections reached");

    server.api().trigger(&["full"], "still-served", "{}").await;
    first.expect("still-served").await;

    second.ws.close(None).await.unwrap();
    let ready = || async {
        let url = format!("http://{}/ready", server.addr);
        reqwest::get(url).await.unwrap().status() == 200
    };
    eventually(ready).await;
    let _third = server.client().await;
    assert_eq!(metric(&server, "herald_capacity_refused_total").await, 1.0);
}

#[tokio::test]
async fn above_max_memory_new_websockets_get_4100_and_the_api_still_works() {
    // Every process is above 1 MB.
    let server = server("max_memory_mb = 1").await;
    let refused = ws(server.addr, support::KEY, LOCAL, None).await;
    assert_eq!(expect_refused(refused, 4100).await, "Over capacity");
    let ready = reqwest::get(format!("http://{}/ready", server.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body["reason"],
        "over capacity: resident memory above max_memory_mb"
    );
    server.api().trigger(&["c"], "e", "{}").await;
}

/// Sends raw `head` and returns the status line of the answer.
async fn status_line(to: SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(to).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 256];
    let n = tokio::time::timeout(support::WAIT, stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap_or(0);
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn upgrade_head(extra: &str) -> String {
    format!(
        "GET /app/app-key?protocol=7 HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn request_heads_over_max_header_bytes_or_100_headers_get_431() {
    let server = server("max_header_bytes = 8192").await;
    let big = format!("cookie: {}\r\n", "a".repeat(9_000));
    let fits = format!("cookie: {}\r\n", "a".repeat(6_000));
    let many: String = (0..120).map(|n| format!("x-h{n}: v\r\n")).collect();
    assert!(
        status_line(server.addr, &upgrade_head(&big))
            .await
            .starts_with("HTTP/1.1 431")
    );
    assert!(
        status_line(server.addr, &upgrade_head(&many))
            .await
            .starts_with("HTTP/1.1 431")
    );
    assert!(
        status_line(server.addr, &upgrade_head(&fits))
            .await
            .starts_with("HTTP/1.1 101")
    );
    let health = format!("GET /health HTTP/1.1\r\nhost: h\r\n{big}\r\n");
    assert!(
        status_line(server.addr, &health)
            .await
            .starts_with("HTTP/1.1 431")
    );
    // Everyone else is served.
    let mut subscriber = server.client().await;
    subscriber.subscribe("heads").await;
    server.api().trigger(&["heads"], "e", "{}").await;
    subscriber.expect("e").await;
}

#[tokio::test]
async fn an_api_body_over_one_mebibyte_is_413() {
    let server = server("").await;
    let api = server.api();
    let body = vec![b'x'; (1 << 20) + 1];
    let (status, text) = api.post_raw(&api.path("/events"), &body, now()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("Request body too large"), "{text}");
}
