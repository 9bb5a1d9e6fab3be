//! A webhook receiver for tests: records every request, checks its headers and signature,
//! and answers 500 while told to fail.

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
    pub body: Value,
    pub headers: HeaderMap,
    pub accepted: bool,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    /// Requests still to answer with 500.
    failures_left: AtomicUsize,
}

/// A running sink at `url()`.
#[derive(Clone)]
pub struct WebhookSink {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    secret: String,
}

impl WebhookSink {
    pub async fn start(secret: &str) -> Self {
        let inner = Arc::new(Inner::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/hooks", post(receive))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            addr,
            inner,
            secret: secret.into(),
        }
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

    /// Events of accepted requests, each checked for Pusher's headers and signature.
    pub fn events(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.accepted)
            .flat_map(|r| {
                self.check(&r);
                r.body["events"].as_array().cloned().unwrap_or_default()
            })
            .collect()
    }

    fn check(&self, request: &Received) {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("x-pusher-key"), super::KEY);
        // The signature over the raw body was verified on receipt.
        let time_ms = request.body["time_ms"].as_u64().expect("time_ms");
        assert!(time_ms > 1_600_000_000_000);
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
        &self.secret
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-pusher-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        auth::verify(super::SECRET, &body, &signature),
        "bad webhook signature"
    );
    let failing = inner
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let body: Value = serde_json::from_slice(&body).unwrap();
    inner.received.lock().unwrap().push(Received {
        body,
        headers,
        accepted: !failing,
        at: Instant::now(),
    });
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}
