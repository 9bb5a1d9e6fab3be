//! `[cluster]`: which broker connects the nodes, how to reach it, and the protocol's timings.

use std::time::Duration;

use serde::Deserialize;

use super::{Overrides, ranged};
use crate::cluster::ClusterSettings;
use crate::cluster::transport::{Driver, redact_url};

/// `[cluster]` as written.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct FileCluster {
    driver: String,
    redis_url: String,
    nats_url: String,
    prefix: String,
    node_id: String,
    heartbeat_interval: i64,
    node_timeout: i64,
    start_degraded: bool,
}

impl Default for FileCluster {
    fn default() -> Self {
        Self {
            driver: "local".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            prefix: "herald".into(),
            node_id: String::new(),
            heartbeat_interval: 2,
            node_timeout: 10,
            start_degraded: false,
        }
    }
}

/// The cluster settings, or `None` for a single node (`driver = "local"`).
pub(super) fn merge(
    file: FileCluster,
    overrides: &Overrides,
    problems: &mut Vec<String>,
) -> Option<ClusterSettings> {
    let pick = |flag: &Option<String>, file: String| flag.clone().unwrap_or(file);
    let driver_name = pick(&overrides.cluster_driver, file.driver);
    let redis_url = pick(&overrides.redis_url, file.redis_url);
    let nats_url = pick(&overrides.nats_url, file.nats_url);
    let prefix = pick(&overrides.cluster_prefix, file.prefix);
    let node_id = pick(&overrides.node_id, file.node_id);
    let heartbeat = ranged(
        "cluster.heartbeat_interval",
        file.heartbeat_interval,
        1,
        60,
        problems,
    );
    let timeout = ranged("cluster.node_timeout", file.node_timeout, 2, 600, problems);
    if timeout <= heartbeat {
        problems.push(format!(
            "cluster.node_timeout ({timeout} s) must be longer than cluster.heartbeat_interval ({heartbeat} s)"
        ));
    }
    if !is_valid_prefix(&prefix) {
        problems.push(format!(
            "cluster.prefix (HERALD_CLUSTER_PREFIX) must be tokens of A-Z a-z 0-9 _ - separated by dots, got {prefix:?}"
        ));
    }
    if !node_id.is_empty() && !node_id.chars().all(|c| c.is_ascii_graphic()) {
        problems.push(format!(
            "cluster.node_id (HERALD_NODE_ID) must be printable ASCII without spaces, got {node_id:?}"
        ));
    }
    let (driver, url) = match driver_name.as_str() {
        "local" => return None,
        "redis" => (Driver::Redis, redis_url),
        "nats" => (Driver::Nats, nats_url),
        other => {
            problems.push(format!(
                "cluster.driver (HERALD_CLUSTER_DRIVER) must be \"local\", \"redis\" or \"nats\", got {other:?}"
            ));
            return None;
        }
    };
    let scheme_ok = match driver {
        Driver::Redis => ["redis://", "rediss://", "redis+sentinel://"]
            .iter()
            .any(|s| url.starts_with(s)),
        _ => url.split(',').all(|u| {
            ["nats://", "tls://"]
                .iter()
                .any(|s| u.trim().starts_with(s))
        }),
    };
    if !scheme_ok {
        problems.push(format!(
            "the {driver_name} URL must start with {}, got {}",
            match driver {
                Driver::Redis => "redis://, rediss:// or redis+sentinel://",
                _ => "nats:// or tls://",
            },
            redact_url(&url)
        ));
    }
    Some(ClusterSettings {
        driver,
        url,
        prefix,
        node_id: (!node_id.is_empty()).then_some(node_id),
        heartbeat_interval: Duration::from_secs(heartbeat),
        node_timeout: Duration::from_secs(timeout),
        start_degraded: overrides.start_degraded || file.start_degraded,
    })
}

fn is_valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}
