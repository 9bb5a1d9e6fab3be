//! A webhook receiver for tests: records every request with whether its signature verifies
//! under the secret the sink was given, and answers 500 while told to fail. It never panics
//! in its handler: tests read what it recorded and fail with a message of their own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use herald_protocol::auth;
use serde_json::Value;

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The JSON body (`Null` if it was not JSON).
    pub body: Value,
    pub headers: HeaderMap,
    /// `X-Pusher-Signature` is the HMAC of the raw body under the sink's secret.
    pub signature_valid: bool,
    pub accepted: bool,
    pub at: Instant,
}

struct Inner {
    secret: String,
    received: Mutex<Vec<Received>>,
    /// Requests still to answer with 500.
    failures_left: AtomicUsize,
}

/// A running sink at `url()`.
#[derive(Clone)]
pub struct WebhookSink {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl WebhookSink {
    /// A sink that verifies signatures with `secret` (the app's secret).
    pub async fn start(secret: &str) -> Self {
        let inner = Arc::new(Inner {
            secret: secret.into(),
            received: Mutex::default(),
            failures_left: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/hooks", post(receive))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Answers the next `n` requests with 500.
    pub fn fail_next(&self, n: usize) {
        self.inner.failures_left.store(n, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// Events of accepted requests; fails the test if any request so far was not a
    /// correctly signed Pusher webhook.
    pub fn events(&self) -> Vec<Value> {
        let requests = self.requests();
        for (n, request) in requests.iter().enumerate() {
            check(n, request, &self.inner.secret);
        }
        requests
            .into_iter()
            .filter(|r| r.accepted)
            .flat_map(|r| r.body["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits until accepted events satisfy `done`, or fails after `wait`.
    pub async fn wait_for(&self, wait: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            assert!(
                started.elapsed() < wait,
                "webhooks never arrived; got {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Event names in arrival order.
    pub fn names(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub fn secret(&self) -> &str {
        &self.inner.secret
    }
}

/// Request `n` carries Pusher's headers, a valid signature and a creation time.
fn check(n: usize, request: &Received, secret: &str) {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        request.signature_valid,
        "webhook request {n} has a bad X-Pusher-Signature {:?} for secret {secret:?}; body {}",
        header("x-pusher-signature"),
        request.body
    );
    assert_eq!(header("content-type"), "application/json", "request {n}");
    assert_eq!(header("x-pusher-key"), super::KEY, "request {n}");
    let time_ms = request.body["time_ms"].as_u64().unwrap_or_default();
    assert!(
        time_ms > 1_600_000_000_000,
        "request {n}: time_ms {time_ms}"
    );
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-pusher-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let signature_valid = auth::verify(&inner.secret, &body, signature);
    let failing = inner
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inner.received.lock().unwrap().push(Received {
        body,
        headers,
        signature_valid,
        accepted: !failing,
        at: Instant::now(),
    });
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}
