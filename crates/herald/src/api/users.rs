//! `POST /apps/{id}/users/{user_id}/terminate_connections` (spec §8.8, §5.5): closes every
//! socket signed in as the user with 4009.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::error::ApiError;
use super::signed::Signed;
use crate::node::Node;

pub async fn terminate(
    State(node): State<Arc<Node>>,
    Path((_, user_id)): Path<(String, String)>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    Ok(terminate_user(&node, &signed, &user_id))
}

/// The same, for the Python SDK's path without `/apps/{id}` (the app comes from `auth_key`).
pub async fn terminate_unprefixed(
    State(node): State<Arc<Node>>,
    Path(user_id): Path<String>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    Ok(terminate_user(&node, &signed, &user_id))
}

/// Unknown users are fine: nothing happens, the answer is still `{}`.
fn terminate_user(node: &Node, signed: &Signed, user_id: &str) -> Json<Value> {
    let sockets = node.terminate(&signed.app, user_id);
    tracing::info!(app_id = %signed.app.id, user_id, sockets, "terminated user connections");
    Json(json!({}))
}
