//! Test vocabulary: a real server on port 0 ([`TestServer`]), WebSocket clients that speak
//! the protocol ([`TestClient`]) and a signing HTTP API client ([`ApiClient`]).
#![allow(dead_code, clippy::unwrap_used)]

pub mod brokers;
pub mod cluster;
pub mod prom;
pub mod sink;
pub mod tls;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use herald::config::Config;
use herald_protocol::InboundFrame;
use herald_protocol::auth::{self, auth_token, channel_auth_string, signed_query};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "app-key";
pub const SECRET: &str = "app-secret";
/// How long to wait for a frame that should come.
pub const WAIT: Duration = Duration::from_secs(5);

/// The apps most tests use: 1 with client events, 2 without, 3 disabled, 4 with one slot.
pub const APPS: &str = r#"
[[apps]]
id = "1"
key = "app-key"
secret = "app-secret"
enable_client_messages = true
[[apps]]
id = "2"
key = "app-key-2"
secret = "secret-2"
[[apps]]
id = "3"
key = "disabled-key"
secret = "secret-3"
enabled = false
[[apps]]
id = "4"
key = "tiny-key"
secret = "secret-4"
max_connections = 1
"#;

/// A Herald server running in this test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
    /// The data directory unless the configuration names one: each server has its own.
    pub data_dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_config(APPS).await
    }

    /// `toml` holds the whole configuration; `[server]` settings may be included.
    pub async fn with_config(toml: &str) -> Self {
        let mut config = Config::from_toml(toml).expect("test config is valid");
        let data_dir = (!config.webhooks.data_dir_configured).then(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            config.webhooks.data_dir = dir.path().to_owned();
            dir
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(herald::run(config, listener, shutdown.clone()));
        Self {
            addr,
            shutdown,
            task,
            data_dir,
        }
    }

    pub fn ws_url(&self, key: &str) -> String {
        format!(
            "ws://{}/app/{key}?protocol=7&client=js&version=8.4.0",
            self.addr
        )
    }

    pub async fn client(&self) -> TestClient {
        TestClient::connect(&self.ws_url(KEY)).await
    }

    pub fn api(&self) -> ApiClient {
        ApiClient {
            base: format!("http://{}", self.addr),
            app_id: "1".into(),
            key: KEY.into(),
            secret: SECRET.into(),
            http: reqwest::Client::new(),
        }
    }
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol-speaking WebSocket client.
pub struct TestClient {
    pub ws: Socket,
    pub socket_id: String,
}

impl TestClient {
    /// Connects and reads `connection_established`.
    pub async fn connect(url: &str) -> Self {
        Self::established(open(url).await).await
    }

    /// Reads `connection_established` from a socket opened some other way.
    pub async fn established(mut ws: Socket) -> Self {
        let frame = next_frame(&mut ws).await.expect("connection_established");
        assert_eq!(frame.event, "pusher:connection_established");
        let data = frame.data_json().unwrap();
        let socket_id = data["socket_id"].as_str().unwrap().to_owned();
        Self { ws, socket_id }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// The next frame, failing the test after [`WAIT`].
    pub async fn next(&mut self) -> InboundFrame {
        next_frame(&mut self.ws).await.expect("a frame")
    }

    /// Skips frames until one named `event` arrives.
    pub async fn expect(&mut self, event: &str) -> InboundFrame {
        loop {
            let frame = self.next().await;
            if frame.event == event {
                return frame;
            }
        }
    }

    /// The next frame must be a `pusher:error`; returns `(code, message)`.
    pub async fn expect_error(&mut self) -> (Option<u64>, String) {
        let frame = self.next().await;
        assert_eq!(frame.event, "pusher:error", "got {frame:?}");
        assert!(frame.channel.is_none());
        let data: Value = serde_json::from_str(frame.data.unwrap().get()).unwrap();
        assert!(data.is_object(), "error data is an object, not a string");
        (
            data["code"].as_u64(),
            data["message"].as_str().unwrap().to_owned(),
        )
    }

    /// Nothing arrives for a while.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(frame) = tokio::time::timeout(wait, self.ws.next()).await {
            panic!("expected silence, got {frame:?}");
        }
    }

    /// Reads until the close frame; returns its code.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("closed in time")
            {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return u16::from(CloseCode::Status),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    pub async fn subscribe(&mut self, channel: &str) -> InboundFrame {
        self.send(json!({"event":"pusher:subscribe","data":{"auth":"","channel":channel}}))
            .await;
        self.expect_succeeded(channel).await
    }

    pub async fn subscribe_private(&mut self, channel: &str) -> InboundFrame {
        let auth = auth_token(
            KEY,
            SECRET,
            &channel_auth_string(&self.socket_id, channel, None),
        );
        self.send(json!({"event":"pusher:subscribe","data":{"auth":auth,"channel":channel}}))
            .await;
        self.expect_succeeded(channel).await
    }

    pub async fn subscribe_presence(&mut self, channel: &str, channel_data: &str) -> InboundFrame {
        self.send_presence(channel, channel_data).await;
        self.expect_succeeded(channel).await
    }

    pub async fn send_presence(&mut self, channel: &str, channel_data: &str) {
        let signed = channel_auth_string(&self.socket_id, channel, Some(channel_data));
        let auth = auth_token(KEY, SECRET, &signed);
        self.send(json!({"event":"pusher:subscribe","data":{"auth":auth,"channel":channel,"channel_data":channel_data}}))
            .await;
    }

    /// Sends `pusher:signin` signed for this socket; returns the next frame.
    pub async fn send_signin(&mut self, user_data: &str) {
        let auth = auth_token(
            KEY,
            SECRET,
            &auth::signin_string(&self.socket_id, user_data),
        );
        self.send(json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}))
            .await;
    }

    /// Signs in and checks `pusher:signin_success` echoes `user_data` exactly.
    pub async fn sign_in(&mut self, user_data: &str) {
        self.send_signin(user_data).await;
        let frame = self.next().await;
        assert_eq!(frame.event, "pusher:signin_success", "{frame:?}");
        let data: Value = serde_json::from_str(frame.data.unwrap().get()).unwrap();
        assert_eq!(data["user_data"].as_str(), Some(user_data));
    }

    async fn expect_succeeded(&mut self, channel: &str) -> InboundFrame {
        let frame = self.next().await;
        assert_eq!(
            frame.event, "pusher_internal:subscription_succeeded",
            "{frame:?}"
        );
        assert_eq!(frame.channel.as_deref(), Some(channel));
        frame
    }
}

pub async fn open(url: &str) -> Socket {
    let (ws, _) = connect_async(url).await.expect("websocket connects");
    ws
}

pub async fn next_frame(ws: &mut Socket) -> Option<InboundFrame> {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time");
        match message? {
            Ok(Message::Text(text)) => {
                return Some(InboundFrame::parse(&text).expect("JSON frame"));
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(other) => panic!("unexpected message {other:?}"),
            Err(e) => panic!("socket error {e}"),
        }
    }
}

/// Signs requests like the official SDKs.
pub struct ApiClient {
    pub base: String,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    pub http: reqwest::Client,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl ApiClient {
    pub fn path(&self, rest: &str) -> String {
        format!("/apps/{}{rest}", self.app_id)
    }

    /// A signed POST of `body` to `/apps/{id}{rest}`; returns status and body text.
    pub async fn post(&self, rest: &str, body: &Value) -> (u16, String) {
        let body = body.to_string();
        self.post_raw(&self.path(rest), body.as_bytes(), now())
            .await
    }

    pub async fn post_raw(&self, path: &str, body: &[u8], timestamp: u64) -> (u16, String) {
        let query = signed_query(&self.key, &self.secret, "POST", path, body, timestamp, &[]);
        self.send_post(path, &query, body).await
    }

    pub async fn send_post(&self, path: &str, query: &str, body: &[u8]) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}{path}?{query}", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// A signed GET of `/apps/{id}{rest}` with extra query parameters.
    pub async fn get(&self, rest: &str, params: &[(&str, &str)]) -> (u16, String) {
        let path = self.path(rest);
        let extra: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let query = signed_query(&self.key, &self.secret, "GET", &path, b"", now(), &extra);
        let response = self
            .http
            .get(format!("{}{path}?{query}", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// A signed GET whose answer must be 200 JSON.
    pub async fn get_json(&self, rest: &str, params: &[(&str, &str)]) -> Value {
        let (status, body) = self.get(rest, params).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Triggers one event; must answer 200.
    pub async fn trigger(&self, channels: &[&str], name: &str, data: &str) -> Value {
        let (status, body) = self
            .post(
                "/events",
                &json!({"name":name,"data":data,"channels":channels}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// HMAC hex, for hand-built auth values.
pub fn sign(secret: &str, message: &str) -> String {
    auth::sign(secret, message.as_bytes())
}

/// Polls `check` every 20 ms until it holds, failing the test after [`WAIT`].
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A metric in `/metrics`: `name` or `name{label="value"}`, summed over the series that
/// match (0 when none does).
pub async fn metric(server: &TestServer, selector: &str) -> f64 {
    prom::scrape(server.addr)
        .await
        .value(selector)
        .unwrap_or(0.0)
}

/// An event triggered through the HTTP API reaches `client` (subscribed to `channel`)
/// within 100 ms: the server still serves everyone else. Debug builds share two cores with
/// parallel tests (and with the hostile client under test), so the best of five tries,
/// 20 ms apart, counts; a server that is really stuck misses every one.
pub async fn assert_event_within_100ms(
    server: &TestServer,
    client: &mut TestClient,
    channel: &str,
) {
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        server
            .api()
            .trigger(&[channel], "probe", "still-here")
            .await;
        client.expect("probe").await;
        times.push(started.elapsed());
        if times
            .last()
            .is_some_and(|t| *t < Duration::from_millis(100))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no event arrived within 100 ms: {times:?}");
}

impl TestClient {
    /// Proves nothing else is queued for this client: a ping's pong is the next frame.
    pub async fn expect_nothing_queued(&mut self) {
        self.send(json!({"event":"pusher:ping","data":{}})).await;
        let frame = self.next().await;
        assert_eq!(frame.event, "pusher:pong", "unexpected {frame:?}");
    }
}
