//! The dashboard's JSON: overview, apps, channels, connections, and its actions (terminate,
//! trigger an event through `Node::publish`, as the HTTP API does).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_protocol::{ChannelName, ErrorCode, ServerMessage, SocketId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, Console, history};
use crate::apps::App;
use crate::node::Audience;

/// A request the dashboard API cannot serve.
pub enum Problem {
    NotFound(&'static str),
    Bad(String),
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound(what) => {
                (StatusCode::NOT_FOUND, format!("{what} not found\n")).into_response()
            }
            Self::Bad(message) => (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
        }
    }
}

fn not_found(what: &'static str) -> Problem {
    Problem::NotFound(what)
}

fn bad(message: String) -> Problem {
    Problem::Bad(message)
}

fn app(console: &Console, id: &str) -> Result<Arc<App>, Problem> {
    console
        .node
        .apps
        .find_by_id(id)
        .ok_or_else(|| not_found("app"))
}

pub async fn overview(State(console): State<Arc<Console>>, _: Admin) -> Json<Value> {
    let node = &console.node;
    Json(json!({
        "node": node.cluster.as_ref().map(|c| c.me().id),
        "peers": node.cluster.as_ref().map(|c| c.peer_count()),
        "ready": node.ready().err().unwrap_or("ready"),
        "now": history::totals(&console),
        "history": console.history.samples(),
        "viewers": node.debug.viewers(),
    }))
}

pub async fn apps(State(console): State<Arc<Console>>, _: Admin) -> Json<Value> {
    let node = &console.node;
    let counts = node.connection_counts();
    let apps: Vec<Value> = node
        .apps
        .all()
        .iter()
        .map(|app| {
            let metrics = node.metrics.app(&app.id);
            let connections = counts
                .iter()
                .find(|(id, _)| *id == app.id)
                .map_or(0, |(_, n)| *n);
            json!({
                "id": app.id,
                "key": app.key,
                "enabled": app.enabled,
                "features": {
                    "client_events": app.enable_client_messages,
                    "subscription_count": app.enable_subscription_count,
                    "watchlist_events": app.enable_watchlist_events,
                    "webhook_batching": app.webhook_batching,
                    "webhooks": app.webhooks.len(),
                },
                "max_connections": app.max_connections,
                "limits": serde_json::to_value(&app.limits).unwrap_or_default(),
                "live": {
                    "connections": connections,
                    "received": metrics.received_total(),
                    "delivered": metrics.delivered_total(),
                    "webhooks_delivered": metrics.webhooks_delivered.get(),
                    "webhooks_failed": metrics.webhooks_failed.get(),
                },
                "usage_today": console.usage.today_of(&app.id, metrics),
                "usage_durable": console.usage.is_durable(),
            })
        })
        .collect();
    Json(json!({ "apps": apps }))
}

#[derive(Deserialize)]
pub struct Prefix {
    #[serde(default)]
    prefix: String,
}

pub async fn channels(
    State(console): State<Arc<Console>>,
    _: Admin,
    Path(app_id): Path<String>,
    Query(query): Query<Prefix>,
) -> Result<Json<Value>, Problem> {
    let app = app(&console, &app_id)?;
    let channels: Vec<Value> = console
        .node
        .channels(&app.id, &query.prefix)
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name.as_str(),
                "kind": crate::metrics::channel_kind_label(c.name.kind()),
                "cache": c.name.is_cache(),
                "subscription_count": c.subscription_count,
                "user_count": c.user_count,
            })
        })
        .collect();
    Ok(Json(json!({ "channels": channels })))
}

pub async fn channel(
    State(console): State<Arc<Console>>,
    _: Admin,
    Path((app_id, name)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let app = app(&console, &app_id)?;
    let channel = ChannelName::parse(&name, usize::MAX).map_err(|e| bad(e.to_string()))?;
    let node = &console.node;
    let summary = node.channel(&app.id, &channel);
    Ok(Json(json!({
        "name": channel.as_str(),
        "occupied": summary.is_some(),
        "subscription_count": summary.as_ref().map_or(0, |s| s.subscription_count),
        "members": node.user_ids(&app.id, &channel),
        "subscribers_here": node.local_subscribers(&app.id, &channel),
    })))
}

pub async fn connections(
    State(console): State<Arc<Console>>,
    _: Admin,
    Path(app_id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let app = app(&console, &app_id)?;
    Ok(Json(
        json!({ "sockets": console.node.sockets.of_app(&app.id, 200) }),
    ))
}

pub async fn connection(
    State(console): State<Arc<Console>>,
    _: Admin,
    Path(socket_id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let node = &console.node;
    let socket = SocketId::parse(&socket_id).ok_or_else(|| not_found("connection"))?;
    let entry = node
        .sockets
        .get(&socket)
        .ok_or_else(|| not_found("connection"))?;
    let age = entry.age().as_secs();
    Ok(Json(json!({
        "socket_id": socket_id,
        "app_id": entry.app.id,
        "remote": entry.remote().map(|r| r.to_string()),
        "user_id": entry.user,
        "age_seconds": age,
        "frames_queued": entry.outbox.queued(),
        "channels": node.channels_of(&entry.app.id, &socket),
    })))
}

pub async fn terminate_connection(
    State(console): State<Arc<Console>>,
    _: Admin,
    Path(socket_id): Path<String>,
) -> Response {
    let socket = SocketId::parse(&socket_id);
    match socket.and_then(|socket| console.node.sockets.get(&socket)) {
        Some(entry) => {
            entry
                .outbox
                .kick(ErrorCode::Unauthorized, "Terminated from the dashboard");
            Json(json!({ "terminated": 1 })).into_response()
        }
        None => not_found("connection").into_response(),
    }
}

pub async fn terminate_user(
    State(console): State<Arc<Console>>,
    _: Admin,
    Path((app_id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let app = app(&console, &app_id)?;
    let here = console.node.terminate(&app, &user_id);
    Ok(Json(json!({ "terminated_here": here })))
}

#[derive(Deserialize)]
pub struct Trigger {
    channel: String,
    name: String,
    #[serde(default)]
    data: String,
}

/// The event creator: the same delivery as `POST /apps/{id}/events`.
pub async fn trigger(
    State(console): State<Arc<Console>>,
    _: Admin,
    Path(app_id): Path<String>,
    Json(trigger): Json<Trigger>,
) -> Result<Json<Value>, Problem> {
    let app = app(&console, &app_id)?;
    let limits = &app.limits;
    let channel = ChannelName::parse(&trigger.channel, limits.max_channel_name_length)
        .map_err(|e| bad(format!("Invalid channel name: {e}")))?;
    if trigger.name.is_empty() || trigger.name.starts_with("pusher") {
        return Err(bad(
            "Event names must be non-empty and not start with pusher".into(),
        ));
    }
    if trigger.data.len() > limits.max_event_payload_bytes {
        return Err(bad(format!(
            "Data is over {} bytes",
            limits.max_event_payload_bytes
        )));
    }
    let message = ServerMessage::ChannelEvent {
        event: &trigger.name,
        channel: channel.as_str(),
        data: &trigger.data,
    };
    let here = console
        .node
        .publish(&app, Audience::Channel(&channel), &message, None);
    Ok(Json(json!({ "delivered_here": here })))
}

#[derive(Deserialize)]
pub struct Period {
    from: String,
    to: String,
}

/// `GET /admin/apps/{id}/usage?from=YYYY-MM-DD&to=YYYY-MM-DD`: one row per day with usage.
pub async fn usage(
    State(console): State<Arc<Console>>,
    _: Admin,
    Path(app_id): Path<String>,
    Query(period): Query<Period>,
) -> Result<Json<Value>, Problem> {
    let app = app(&console, &app_id)?;
    if !crate::usage::is_date(&period.from) || !crate::usage::is_date(&period.to) {
        return Err(bad("from and to must be dates as YYYY-MM-DD".into()));
    }
    // Counted but not yet written: write it first, so the answer is current.
    let (usage, metrics) = (console.usage.clone(), console.node.metrics.clone());
    let (id, from, to) = (app.id.clone(), period.from, period.to);
    let days = tokio::task::spawn_blocking(move || {
        usage.flush(&metrics)?;
        usage.days(&id, &from, &to)
    })
    .await
    .map_err(|e| bad(e.to_string()))?
    .map_err(|e| bad(format!("usage store: {e}")))?;
    Ok(Json(json!({ "app_id": app.id, "days": days })))
}
