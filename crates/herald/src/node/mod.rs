//! The Node: the one door to shared state. Connections and the HTTP API publish, subscribe,
//! sign in and read through it; it owns the hub (who listens to what), connection quotas,
//! and the webhook emitter, and decides what each change announces.
//! [`Node::publish`] is the one place events are delivered.

mod cluster;
mod membership;
mod publish;
mod reads;
pub mod sockets;
mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apps::{App, AppStore};
use crate::cluster::Cluster;
use crate::config::ServerConfig;
use crate::debug::Tap;
use crate::edge::Edge;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::webhooks::{WebhookEvent, Webhooks};
pub use membership::Join;
pub use publish::Audience;

/// Everything one Herald process shares between its connections and its HTTP API.
pub struct Node {
    pub apps: Arc<dyn AppStore>,
    hub: Hub,
    pub server: ServerConfig,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Present when any app has webhook targets.
    pub webhooks: Option<Webhooks>,
    pub metrics: Arc<Metrics>,
    /// Present when other nodes share the apps (Redis, NATS, or memory in tests).
    pub cluster: Option<Arc<Cluster>>,
    connections: Mutex<HashMap<String, usize>>,
    /// Per-IP and per-app rates, the daily quota and the node's ceilings.
    pub edge: Edge,
    /// The debug console's feed.
    pub debug: Arc<Tap>,
    /// Live connections by socket id, for the connection inspector.
    pub sockets: sockets::Sockets,
}

impl Node {
    pub fn new(
        apps: Arc<dyn AppStore>,
        server: ServerConfig,
        webhooks: Option<Webhooks>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        debug: Arc<Tap>,
    ) -> Self {
        Self {
            edge: Edge::new(&server.edge),
            apps,
            hub: Hub::default(),
            server,
            shutdown,
            tasks: TaskTracker::new(),
            webhooks,
            metrics,
            cluster: None,
            connections: Mutex::default(),
            debug,
            sockets: sockets::Sockets::default(),
        }
    }

    /// The same node, one of a cluster.
    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> Self {
        self.debug.set_node(&cluster.me().id);
        let forwarder = cluster.clone();
        self.debug
            .set_forward(Box::new(move |event| forwarder.forward_debug(event)));
        self.cluster = Some(cluster);
        self
    }

    /// Emits a webhook event to the app's interested targets. Never waits.
    pub fn webhook(&self, app: &App, event: WebhookEvent) {
        if let Some(webhooks) = self.webhooks.as_ref().filter(|_| !app.webhooks.is_empty()) {
            webhooks.emit(app, event);
        }
    }

    /// Once a second: expire caches and announce throttled subscription counts.
    pub async fn run_ticks(self: Arc<Self>) {
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            self.edge.tick();
            for (app_id, channel, count) in self.hub.tick(std::time::Instant::now()) {
                if let Some(app) = self.apps.find_by_id(&app_id) {
                    self.announce_count(&app, &channel, count);
                }
            }
        }
    }

    /// Counts a new connection against the app's quota; `None` when it is full. In a
    /// cluster the quota counts every node's connections as of their last heartbeat.
    pub fn admit(self: &Arc<Self>, app: &Arc<App>) -> Option<ConnectionPermit> {
        let elsewhere = match (&self.cluster, app.max_connections) {
            (Some(cluster), max) if max != 0 => cluster.remote_connections(&app.id),
            _ => 0,
        };
        let mut counts = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(app.id.clone()).or_default();
        if app.max_connections != 0 && *count + elsewhere >= app.max_connections {
            return None;
        }
        *count += 1;
        let metrics = self.metrics.app(&app.id);
        metrics.connections.inc();
        metrics.note_peak(metrics.connections.get());
        Some(ConnectionPermit {
            node: self.clone(),
            app: app.clone(),
        })
    }

    /// Whether this node should get new clients: not while draining, nor while it is at
    /// `max_connections` or above `max_memory_mb`, nor while its cluster broker is
    /// unreachable or it is still joining the cluster.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.shutdown.is_cancelled() {
            return Err("draining: shutting down");
        }
        self.edge.capacity.check()?;
        match &self.cluster {
            Some(cluster) => cluster.ready(),
            None => Ok(()),
        }
    }

    /// Open connections per app, sorted by app id.
    pub fn connection_counts(&self) -> Vec<(String, usize)> {
        let counts = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let mut counts: Vec<_> = counts.iter().map(|(app, n)| (app.clone(), *n)).collect();
        counts.sort();
        counts
    }
}

/// One connection counted against its app's quota until dropped.
pub struct ConnectionPermit {
    node: Arc<Node>,
    app: Arc<App>,
}

impl ConnectionPermit {
    /// The id of the app the connection counts against.
    pub fn app_id(&self) -> &str {
        &self.app.id
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self
            .node
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.app.id) {
            *count = count.saturating_sub(1);
        }
        self.node.metrics.app(&self.app.id).connections.dec();
    }
}
