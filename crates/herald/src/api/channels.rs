//! `GET /apps/{id}/channels`, `/channels/{name}` and `/channels/{name}/users` (spec §8.5-8.7).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use herald_protocol::api::{ChannelAttributes, InfoRequest};
use herald_protocol::{ChannelKind, ChannelName};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::signed::Signed;
use crate::node::Node;

const PRESENCE_PREFIX: &str = "presence-";

pub async fn list(State(node): State<Arc<Node>>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let prefix = signed.param("filter_by_prefix").unwrap_or_default();
    let info = InfoRequest::parse(signed.param("info"));
    if info.user_count && !prefix.starts_with(PRESENCE_PREFIX) {
        return Err(ApiError::BadRequest(
            "info=user_count needs filter_by_prefix starting with presence-".into(),
        ));
    }
    let channels: Map<String, Value> = node
        .channels(&signed.app.id, prefix)
        .into_iter()
        .filter(|c| c.name.kind() != ChannelKind::ServerToUser)
        .map(|c| {
            let counts = super::attributes(Some(&c), info, true);
            (c.name.to_string(), to_json(&counts))
        })
        .collect();
    Ok(Json(json!({ "channels": channels })))
}

pub async fn show(
    State(node): State<Arc<Node>>,
    Path((_, name)): Path<(String, String)>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    let channel = parse_channel(&signed, &name)?;
    let info = InfoRequest::parse(signed.param("info"));
    let is_presence = channel.kind() == ChannelKind::Presence;
    if info.user_count && !is_presence {
        return Err(ApiError::BadRequest(
            "info=user_count is only available for presence channels".into(),
        ));
    }
    let summary = node.channel(&signed.app.id, &channel);
    let mut body = Map::new();
    body.insert("occupied".into(), summary.is_some().into());
    if let Value::Object(counts) = to_json(&super::attributes(summary.as_ref(), info, true)) {
        body.extend(counts);
    }
    if info.cache && channel.is_cache() {
        let cached = node.cached(&signed.app.id, &channel).map(|cached| {
            json!({ "event": cached.event, "data": cached.data, "ttl": cached.ttl(Instant::now()) })
        });
        body.insert("cache".into(), cached.unwrap_or(Value::Null));
    }
    Ok(Json(Value::Object(body)))
}

pub async fn users(
    State(node): State<Arc<Node>>,
    Path((_, name)): Path<(String, String)>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    let channel = parse_channel(&signed, &name)?;
    if channel.kind() != ChannelKind::Presence {
        return Err(ApiError::BadRequest(
            "Users can only be listed for presence channels".into(),
        ));
    }
    let users: Vec<Value> = node
        .user_ids(&signed.app.id, &channel)
        .into_iter()
        .map(|id| json!({ "id": id }))
        .collect();
    Ok(Json(json!({ "users": users })))
}

fn to_json(counts: &ChannelAttributes) -> Value {
    serde_json::to_value(counts).unwrap_or_default()
}

fn parse_channel(signed: &Signed, name: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(name, signed.app.limits.max_channel_name_length)
        .map_err(|e| ApiError::BadRequest(format!("Invalid channel name '{name}': {e}")))
}
