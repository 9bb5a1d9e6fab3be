//! Connection-time checks (spec §1.2), in order: path, node capacity, app, enabled,
//! protocol, quota.

use std::sync::Arc;

use herald_protocol::ErrorCode;
use herald_protocol::auth::parse_query;

use crate::apps::App;
use crate::edge::NodeSlot;
use crate::node::{ConnectionPermit, Node};

/// Protocol versions Herald speaks; a missing `protocol` means 7.
const SUPPORTED_PROTOCOLS: [u32; 3] = [5, 6, 7];

/// A connection that passed every check.
pub struct Admitted {
    pub app: Arc<App>,
    pub permit: ConnectionPermit,
    /// Counted against the node's `max_connections`.
    pub slot: NodeSlot,
}

/// Runs the checks for a socket opened at `/app/{key}?{query}` (`key` is `None` for any
/// other path). The first failure wins.
pub fn check(node: &Arc<Node>, key: Option<&str>, query: &str) -> Result<Admitted, ErrorCode> {
    let key = key.ok_or(ErrorCode::PathNotFound)?;
    let slot = node.edge.capacity.admit().map_err(|reason| {
        node.metrics.capacity_refused.inc();
        tracing::debug!(reason, "WebSocket refused with 4100");
        ErrorCode::OverCapacity
    })?;
    let app = node.apps.find_by_key(key).ok_or(ErrorCode::AppNotFound)?;
    if !app.enabled {
        return Err(ErrorCode::AppDisabled);
    }
    let params = parse_query(query);
    if let Some((_, protocol)) = params.iter().find(|(name, _)| name == "protocol") {
        let supported = protocol
            .parse::<u32>()
            .is_ok_and(|v| SUPPORTED_PROTOCOLS.contains(&v));
        if !supported {
            return Err(ErrorCode::UnsupportedProtocol);
        }
    }
    let permit = node.admit(&app).ok_or(ErrorCode::OverConnectionQuota)?;
    Ok(Admitted { app, permit, slot })
}
