//! The signed Pusher HTTP API as SDKs call it (spec §8.2): one keep-alive HTTP/1.1
//! connection per [`ApiConn`], each request signed with the app secret.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use herald_protocol::auth::signed_query;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Credentials and address of the app under test.
#[derive(Debug, Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

/// One event to trigger.
pub struct Event<'a> {
    pub name: &'a str,
    pub channel: &'a str,
    pub data: &'a str,
}

impl Api {
    pub async fn connect(&self) -> Result<ApiConn> {
        let stream = TcpStream::connect(self.addr).await.context("API connect")?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(ApiConn { sender })
    }

    /// `(path, body)` of a trigger: `/events` for one event, `/batch_events` for several.
    pub fn trigger_body(&self, events: &[Event<'_>]) -> (String, Bytes) {
        let json = |e: &Event<'_>, key: &str| {
            let channel = match key {
                "channels" => serde_json::json!([e.channel]),
                _ => serde_json::json!(e.channel),
            };
            serde_json::json!({"name": e.name, key: channel, "data": e.data})
        };
        if let [one] = events {
            let body = json(one, "channels").to_string();
            (format!("/apps/{}/events", self.app_id), body.into())
        } else {
            let batch: Vec<_> = events.iter().map(|e| json(e, "channel")).collect();
            let body = serde_json::json!({ "batch": batch }).to_string();
            (format!("/apps/{}/batch_events", self.app_id), body.into())
        }
    }
}

/// A keep-alive API connection.
pub struct ApiConn {
    sender: SendRequest<Full<Bytes>>,
}

impl ApiConn {
    /// Signs and sends `POST path` with `body`; the status and the time it took (µs).
    pub async fn post(&mut self, api: &Api, path: &str, body: Bytes) -> Result<(u16, u64)> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let query = signed_query(&api.key, &api.secret, "POST", path, &body, timestamp, &[]);
        let request = hyper::Request::post(format!("{path}?{query}"))
            .header("host", api.addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let started = Instant::now();
        if self.sender.ready().await.is_err() {
            // The server closed the keep-alive connection (Soketi does after each
            // response): open a new one, as an SDK's HTTP client would.
            *self = api.connect().await?;
            self.sender.ready().await.context("API connection lost")?;
        }
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        let micros = started.elapsed().as_micros() as u64;
        if status >= 400 && body.len() < 300 {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok((status, micros))
    }
}
