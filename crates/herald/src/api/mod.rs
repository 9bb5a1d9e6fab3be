//! The HTTP side of Herald on the WebSocket's port: the Pusher HTTP API (spec §8), the
//! WebSocket upgrade route, and a health check.

mod channels;
mod error;
mod events;
mod signed;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::connection;
use crate::node::Node;
pub use error::ApiError;
use herald_protocol::api::{ChannelAttributes, InfoRequest};

use crate::hub::ChannelSummary;

/// The counts `info` asks for; `user_count` only where `include_users` (presence channels).
/// An unoccupied channel counts zero.
fn attributes(
    summary: Option<&ChannelSummary>,
    info: InfoRequest,
    include_users: bool,
) -> ChannelAttributes {
    ChannelAttributes {
        user_count: (info.user_count && include_users)
            .then(|| summary.and_then(|s| s.user_count).unwrap_or(0)),
        subscription_count: info
            .subscription_count
            .then(|| summary.map_or(0, |s| s.subscription_count)),
    }
}

/// Every route Herald serves; `/metrics` only when `with_metrics`.
pub fn router(node: Arc<Node>, with_metrics: bool) -> Router {
    let mut api = Router::new()
        .route("/apps/{app_id}/events", post(events::trigger))
        .route("/apps/{app_id}/batch_events", post(events::batch))
        .route("/apps/{app_id}/channels", get(channels::list))
        .route(
            "/apps/{app_id}/channels/{channel_name}",
            get(channels::show),
        )
        .route(
            "/apps/{app_id}/channels/{channel_name}/users",
            get(channels::users),
        )
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(users::terminate),
        )
        // pusher-http-python 3.3 sends this path without the /apps/{id} prefix (spec §8.8).
        .route(
            "/users/{user_id}/terminate_connections",
            post(users::terminate_unprefixed),
        )
        .route("/health", get(health))
        .route("/ready", get(ready));
    if with_metrics {
        api = api.route("/metrics", get(metrics));
    }
    api.route_layer(middleware::from_fn_with_state(node.clone(), measure))
        // WebSocket upgrades are counted as connections, not as HTTP requests.
        .route("/app/{key}", get(connection::upgrade))
        .fallback(fallback)
        .with_state(node)
}

/// `/metrics` alone, for a listener of its own.
pub fn metrics_router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(node)
}

/// Counts and times each request by its route template (a bounded label set).
async fn measure(
    State(node): State<Arc<Node>>,
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    node.metrics
        .http_request(matched.as_str(), status, started.elapsed());
    response
}

async fn health() -> &'static str {
    "OK"
}

/// 200 while this node should get clients; 503 with the reason while draining, while the
/// cluster broker is unreachable, or while joining the cluster. `/health` is liveness only.
async fn ready(State(node): State<Arc<Node>>) -> Response {
    match node.ready() {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unavailable", "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let text = node.metrics.render();
    let kind = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, kind)], text).into_response()
}

/// A WebSocket upgrade on any other path gets the Pusher 4005 answer; anything else 404.
async fn fallback(state: State<Arc<Node>>, request: Request) -> Response {
    if request.headers().contains_key(header::UPGRADE) {
        return connection::upgrade(state, request).await;
    }
    (StatusCode::NOT_FOUND, "Not found\n").into_response()
}
