//! The [`Transport`] seam: moving opaque bytes between nodes by topic, and nothing else.
//! Envelopes, echo suppression and replicated state live above it, written once; the three
//! implementations (memory, Redis, NATS) only differ in how bytes reach the broker.

#[cfg(any(feature = "redis", feature = "nats"))]
mod backoff;
mod endpoint;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
mod redact;
#[cfg(feature = "redis")]
pub mod redis;
mod stats;
mod topic;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use memory::{MemoryBroker, MemoryNodeId, MemoryTransport};
pub use redact::{redact_text, redact_url};
pub use stats::{TransportCounts, TransportStats};
pub use topic::is_valid_topic;

/// A message from the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub topic: String,
    pub payload: Bytes,
}

/// Whether the node can currently exchange messages with the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Up,
    Down,
}

/// How one node exchanges bytes with the others.
///
/// Topics are built by the caller from tokens of `[A-Za-z0-9_-]` separated by `.`
/// (e.g. `herald.prefix.c.0123abcd`): safe as NATS subjects and Redis channels alike.
/// Debug builds assert it. Delivery is at-most-once, like Redis and NATS pub/sub.
pub trait Transport: Send + Sync + 'static {
    /// Queues `payload` for every node subscribed to `topic` (the publisher's own subscription
    /// included, as Redis and NATS do). Never waits: a bounded queue feeds one writer task, so
    /// messages from one node arrive in the order published. Returns false, and counts it,
    /// when the message cannot be sent (queue full or link down).
    fn publish(&self, topic: &str, payload: Bytes) -> bool;
    /// Starts receiving `topic`. Idempotent (callers reference-count); takes effect
    /// asynchronously, shortly after the call.
    fn subscribe(&self, topic: &str);
    /// Stops receiving `topic`. Idempotent.
    fn unsubscribe(&self, topic: &str);
    /// Link state; goes Up again only after a reconnect has resubscribed every topic.
    fn link(&self) -> watch::Receiver<Link>;
    /// Counters of this transport.
    fn stats(&self) -> &TransportStats;
}

/// Which broker carries the cluster's messages.
#[derive(Clone, Debug)]
pub enum Driver {
    /// Nodes in one process (tests); the broker is shared by every node that joins it.
    Memory(MemoryBroker),
    /// Redis pub/sub: `redis://`, `rediss://` or `redis+sentinel://` URLs.
    Redis,
    /// NATS core pub/sub: `nats://` or `tls://` URLs, comma-separated for a server list.
    Nats,
}

/// How to reach the broker. `Debug` shows the URL redacted.
#[derive(Clone)]
pub struct Settings {
    /// Broker URL(s); may hold a password, which is never logged.
    pub url: String,
    /// Start with the link Down and keep connecting in the background instead of failing
    /// when the broker cannot be reached at startup.
    pub start_degraded: bool,
    /// How long startup waits for the broker before failing (when not degraded).
    pub connect_timeout: Duration,
    /// PEM file of extra root certificates for `rediss://` and `tls://` (private CAs).
    pub tls_ca: Option<PathBuf>,
    /// Messages that may wait for the writer task before `publish` refuses more.
    pub queue_capacity: usize,
}

impl Settings {
    /// Defaults for `url`: fail after 5 s, system roots, a queue of 16,384 messages.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            start_degraded: false,
            connect_timeout: Duration::from_secs(5),
            tls_ca: None,
            queue_capacity: 16_384,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("url", &redact_url(&self.url))
            .field("start_degraded", &self.start_degraded)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_ca", &self.tls_ca)
            .field("queue_capacity", &self.queue_capacity)
            .finish()
    }
}

/// Why a transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The URL does not fit the driver. `url` is redacted.
    #[error("invalid broker URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The broker did not answer within the startup timeout. `url` and `cause` are redacted.
    #[error("cannot reach broker {url} within {timeout:?}: {cause}")]
    Unreachable {
        url: String,
        timeout: Duration,
        cause: String,
    },
    /// The `tls_ca` file could not be read.
    #[error("cannot read TLS CA file {path}: {cause}")]
    TlsCa { path: PathBuf, cause: String },
    /// This binary was built without the driver's cargo feature.
    #[error("the {0} transport is not built in (cargo feature `{0}`)")]
    NotBuilt(&'static str),
}

/// Starts the transport of `driver`. Messages for this node's subscriptions go to `inbound`
/// (a full channel drops and counts them). Background tasks are spawned on `tasks` and end
/// when `shutdown` is cancelled.
pub async fn connect(
    driver: &Driver,
    settings: &Settings,
    inbound: mpsc::Sender<Inbound>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Arc<dyn Transport>, TransportError> {
    let transport: Arc<dyn Transport> = match driver {
        Driver::Memory(broker) => broker.join(settings.queue_capacity, inbound, shutdown, tasks),
        #[cfg(feature = "redis")]
        Driver::Redis => redis::connect(settings, inbound, shutdown, tasks).await?,
        #[cfg(not(feature = "redis"))]
        Driver::Redis => return Err(TransportError::NotBuilt("redis")),
        #[cfg(feature = "nats")]
        Driver::Nats => nats::connect(settings, inbound, shutdown, tasks).await?,
        #[cfg(not(feature = "nats"))]
        Driver::Nats => return Err(TransportError::NotBuilt("nats")),
    };
    let link = *transport.link().borrow();
    let url = redact_url(&settings.url);
    tracing::info!(driver = driver.name(), %url, ?link, "cluster transport started");
    Ok(transport)
}

impl Driver {
    /// `memory`, `redis` or `nats`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis => "redis",
            Self::Nats => "nats",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Settings;

    #[test]
    fn settings_debug_hides_the_broker_password() {
        let settings = Settings::new("redis://:hunter2@db:6379/0");
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("***@db"),
            "{shown}"
        );
    }
}
