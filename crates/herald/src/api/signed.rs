//! [`Signed`]: the extractor that authenticates an HTTP API request (spec §8.2) over the
//! raw path, the raw query and the raw body bytes, before any handler sees it. It also
//! applies the client IP's request rate (first, before the body is read) and, once the
//! request is authenticated, the app's read rate to GET requests.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use axum::http::request::Parts;
use herald_protocol::auth::{self, body_md5, parse_query, request_string};

use super::error::ApiError;
use crate::apps::App;
use crate::edge::Limited;
use crate::metrics::Metrics;
use crate::node::Node;

/// Seconds a request timestamp may differ from the server clock.
const TIMESTAMP_WINDOW: u64 = 600;
/// Largest request body read (a full batch of 10 KB events fits many times over).
const MAX_BODY_BYTES: usize = 1 << 20;

/// An authenticated request: its app, query parameters and raw body.
pub struct Signed {
    pub app: Arc<App>,
    pub params: Vec<(String, String)>,
    pub body: Bytes,
}

impl Signed {
    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl FromRequest<Arc<Node>> for Signed {
    type Rejection = ApiError;

    async fn from_request(request: Request, node: &Arc<Node>) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        check_ip_rate(&parts, node)?;
        let body = read_body(body, node).await?;
        let path = parts.uri.path();
        let params = parse_query(parts.uri.query().unwrap_or_default());
        let signed = Self {
            app: find_app(node, path, &params)?,
            params,
            body,
        };
        signed.verify(parts.method.as_str(), path, unix_now())?;
        if parts.method == Method::GET {
            node.edge
                .apps
                .api_read(&signed.app)
                .map_err(|limited| app_limited(node, limited))?;
        }
        Ok(signed)
    }
}

/// 429 when the client's IP is over `max_api_requests_per_second_per_ip`.
fn check_ip_rate(parts: &Parts, node: &Node) -> Result<(), ApiError> {
    let Some(ip) = node.edge.client_ip(&parts.extensions, &parts.headers) else {
        return Ok(());
    };
    node.edge.api_requests.check(ip).map_err(|retry_after| {
        node.metrics.ip_api_requests_limited.inc();
        tracing::debug!(%ip, "HTTP API request refused: over max_api_requests_per_second_per_ip");
        ApiError::TooManyRequests {
            message: "Too many requests from this address (max_api_requests_per_second_per_ip)"
                .into(),
            retry_after,
        }
    })
}

/// Counts an app's refusal under its metric and turns it into the HTTP answer.
pub(super) fn app_limited(node: &Node, limited: Limited) -> ApiError {
    let counter = match &limited {
        Limited::DailyQuota { .. } => &node.metrics.app_daily_quota_refused,
        Limited::Rate {
            limit: "max_api_reads_per_second",
            ..
        } => &node.metrics.app_api_reads_limited,
        Limited::Rate { .. } | Limited::TooLarge { .. } => &node.metrics.app_api_events_limited,
    };
    counter.inc();
    limited.into()
}

/// The whole body, within `body_read_timeout` of the handler's start (a client that stops
/// sending mid-body gets 408 instead of holding the connection).
async fn read_body(body: Body, node: &Node) -> Result<Bytes, ApiError> {
    let within = Duration::from_secs(node.server.body_read_timeout);
    match tokio::time::timeout(within, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_)) => Err(ApiError::PayloadTooLarge("Request body too large".into())),
        Err(_) => {
            Metrics::add(&node.metrics.body_timeouts, 1);
            Err(ApiError::RequestTimeout(format!(
                "Request body not received within {}s",
                within.as_secs()
            )))
        }
    }
}

/// By the `/apps/{id}` prefix; without one (the Python SDK's terminate path), by `auth_key`.
fn find_app(node: &Node, path: &str, params: &[(String, String)]) -> Result<Arc<App>, ApiError> {
    let app = match path.strip_prefix("/apps/") {
        Some(rest) => {
            let id = rest.split('/').next().unwrap_or_default();
            node.apps
                .find_by_id(id)
                .ok_or_else(|| ApiError::NotFound(format!("Unknown app id {id}")))?
        }
        None => {
            let key = lookup(params, "auth_key").unwrap_or_default();
            node.apps
                .find_by_key(key)
                .ok_or_else(|| ApiError::Unauthorized("Unknown auth_key".into()))?
        }
    };
    if !app.enabled {
        return Err(ApiError::Forbidden("Application disabled".into()));
    }
    Ok(app)
}

fn lookup<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Signed {
    /// Spec §8.2 steps 2-6.
    fn verify(&self, method: &str, raw_path: &str, now: u64) -> Result<(), ApiError> {
        let unauthorized = |message: String| Err(ApiError::Unauthorized(message));
        if self.param("auth_key") != Some(self.app.key.as_str()) {
            return unauthorized("Invalid or missing auth_key".into());
        }
        if self.param("auth_version") != Some("1.0") {
            return unauthorized("auth_version must be 1.0".into());
        }
        let Some(timestamp) = self
            .param("auth_timestamp")
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return unauthorized("Missing or invalid auth_timestamp".into());
        };
        if timestamp.abs_diff(now) > TIMESTAMP_WINDOW {
            return unauthorized(format!(
                "Timestamp expired: Given timestamp ({timestamp}) not within {TIMESTAMP_WINDOW}s of server time ({now})"
            ));
        }
        let md5 = self.param("body_md5");
        if (!self.body.is_empty() || md5.is_some()) && md5 != Some(body_md5(&self.body).as_str()) {
            return unauthorized(
                "Invalid or missing body_md5: it must be the MD5 of the request body".into(),
            );
        }
        let signature = self.param("auth_signature").unwrap_or_default();
        let secret = self.app.secret.expose();
        let signs = |path: &str| {
            let string = request_string(method, path, &self.params);
            auth::verify(secret, string.as_bytes(), signature)
                .then_some(())
                .ok_or(string)
        };
        // SDKs put channel names unescaped into paths; accept the decoded form too.
        let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
        match signs(raw_path) {
            Ok(()) => Ok(()),
            Err(_) if decoded != raw_path && signs(&decoded).is_ok() => Ok(()),
            Err(expected) => unauthorized(format!(
                "Invalid signature: you should have sent HmacSHA256Hex({expected:?}, your_secret_key), but you sent {signature:?}"
            )),
        }
    }
}
