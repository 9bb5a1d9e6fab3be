//! `POST /apps/{id}/events` and `POST /apps/{id}/batch_events` (spec §8.3, §8.4): validate
//! every event against the app's limits first, then deliver each once per channel.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herald_protocol::api::{BatchRequest, InfoRequest, TriggerRequest};
use herald_protocol::{ChannelKind, ChannelName, ServerMessage, SocketId};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::signed::{Signed, app_limited};
use crate::apps::App;
use crate::node::{Audience, Node};

/// One validated event, ready to deliver.
struct Event {
    name: String,
    data: String,
    channels: Vec<ChannelName>,
    except: Option<SocketId>,
    info: InfoRequest,
}

pub async fn trigger(
    State(node): State<Arc<Node>>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    let request: TriggerRequest = parse_body(&signed.body)?;
    let names = match (request.channels, request.channel) {
        (Some(channels), _) => channels,
        (None, Some(channel)) => vec![channel],
        (None, None) => return Err(bad("Missing channels: give `channels` or `channel`")),
    };
    let event = validate(
        &signed.app,
        request.name,
        request.data.0,
        &names,
        request.socket_id,
        request.info.as_deref(),
    )?;
    take_budget(&node, &signed.app, event.channels.len())?;
    deliver(&node, &signed.app, &event);
    if event.info.is_empty() {
        return Ok(Json(json!({})));
    }
    let channels: Map<String, Value> = event
        .channels
        .iter()
        .map(|channel| {
            (
                channel.to_string(),
                attributes(&node, &signed.app, channel, event.info),
            )
        })
        .collect();
    Ok(Json(json!({ "channels": channels })))
}

pub async fn batch(State(node): State<Arc<Node>>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let request: BatchRequest = parse_body(&signed.body)?;
    let app = &signed.app;
    let max = app.limits.max_batch_events;
    if request.batch.is_empty() || request.batch.len() > max {
        return Err(bad(&format!(
            "A batch holds 1 to {max} events, got {}",
            request.batch.len()
        )));
    }
    // The whole batch is validated before any event is delivered.
    let events = request
        .batch
        .into_iter()
        .map(|e| {
            validate(
                app,
                e.name,
                e.data.0,
                &[e.channel],
                e.socket_id,
                e.info.as_deref(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let messages = events.iter().map(|event| event.channels.len()).sum();
    take_budget(&node, app, messages)?;
    for event in &events {
        deliver(&node, app, event);
    }
    if events.iter().all(|event| event.info.is_empty()) {
        return Ok(Json(json!({})));
    }
    let attributes: Vec<Value> = events
        .iter()
        .map(|event| attributes(&node, app, &event.channels[0], event.info))
        .collect();
    Ok(Json(json!({ "batch": attributes })))
}

pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad(&format!("Invalid request body: {e}")))
}

/// Counts `messages` (events x channels) against the app's rate and daily quota.
fn take_budget(node: &Node, app: &App, messages: usize) -> Result<(), ApiError> {
    let cost = u32::try_from(messages).unwrap_or(u32::MAX);
    node.edge
        .apps
        .api_events(app, cost)
        .map_err(|limited| app_limited(node, limited))
}

fn bad(message: &str) -> ApiError {
    ApiError::BadRequest(message.to_owned())
}

/// Spec §8.3 validation: name, channels, socket_id, payload size, encrypted channels.
fn validate(
    app: &App,
    name: String,
    data: String,
    channel_names: &[String],
    socket_id: Option<String>,
    info: Option<&str>,
) -> Result<Event, ApiError> {
    let limits = &app.limits;
    if name.is_empty() || name.len() > limits.max_event_name_length {
        return Err(bad(&format!(
            "Event name must be 1 to {} characters",
            limits.max_event_name_length
        )));
    }
    if name.starts_with("pusher:") || name.starts_with("pusher_internal:") {
        return Err(bad("Event names starting with pusher: are reserved"));
    }
    let max = limits.max_channels_per_trigger;
    if channel_names.is_empty() || channel_names.len() > max {
        return Err(bad(&format!(
            "An event goes to 1 to {max} channels, got {}",
            channel_names.len()
        )));
    }
    let mut channels: Vec<ChannelName> = Vec::with_capacity(channel_names.len());
    for name in channel_names {
        let channel = ChannelName::parse(name, limits.max_channel_name_length)
            .map_err(|e| bad(&format!("Invalid channel name '{name}': {e}")))?;
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    if channels.len() > 1 && channels.iter().any(|c| c.kind() == ChannelKind::Encrypted) {
        return Err(bad(
            "An event to an encrypted channel must go to that channel alone",
        ));
    }
    let except = match socket_id {
        None => None,
        Some(id) => Some(
            SocketId::parse(&id)
                .ok_or_else(|| bad(&format!("Invalid socket_id {id:?}: expected digits.digits")))?,
        ),
    };
    if data.len() > limits.max_event_payload_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "Event data is {} bytes; the limit is {}",
            data.len(),
            limits.max_event_payload_bytes
        )));
    }
    Ok(Event {
        name,
        data,
        channels,
        except,
        info: InfoRequest::parse(info),
    })
}

/// Publishes the event to each of its channels.
fn deliver(node: &Node, app: &App, event: &Event) {
    for channel in &event.channels {
        let message = ServerMessage::ChannelEvent {
            event: &event.name,
            channel: channel.as_str(),
            data: &event.data,
        };
        node.publish(
            app,
            Audience::Channel(channel),
            &message,
            event.except.as_ref(),
        );
    }
}

/// `user_count` for presence channels, `subscription_count` for any, as asked.
fn attributes(node: &Node, app: &App, channel: &ChannelName, info: InfoRequest) -> Value {
    let summary = node.channel(&app.id, channel);
    let is_presence = channel.kind() == ChannelKind::Presence;
    serde_json::to_value(super::attributes(summary.as_ref(), info, is_presence)).unwrap_or_default()
}
