//! Herald: a Pusher Channels protocol server.
//!
//! Layout:
//! - [`config`]: the configuration tree, layered from defaults, file, environment and flags.
//! - [`apps`]: apps (credentials, flags, limits) and the [`apps::AppStore`] seam.
//! - [`node`]: the shared state of one process; [`node::Node::publish`] delivers every event.
//! - [`hub`]: the sharded registry of channels, subscribers and presence rosters (behind `Node`).
//! - [`outbox`]: a connection's bounded queue of shared frames, and Herald's [`outbox::Frame`].
//! - [`connection`]: one WebSocket: handshake, session state, liveness.
//! - [`api`]: the Pusher HTTP API with signed requests.
//! - [`listener`]: the accept loop; TLS; HTTP connections until they upgrade (deadlines,
//!   per-IP cap).
//! - [`edge`]: client IPs behind proxies, per-IP and per-app rates, the node's ceilings.
//! - [`webhooks`]: the durable webhook outbox and its sender.
//! - [`metrics`]: counters, served at `/metrics`.

pub mod admin;
pub mod api;
pub mod apps;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod debug;
pub mod edge;
pub mod hub;
pub mod listener;
pub mod metrics;
pub mod node;
pub mod outbox;
pub mod usage;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use apps::{AppStore, ConfigAppStore};
use config::Config;
use metrics::Metrics;
use node::Node;
use webhooks::Webhooks;

/// Time allowed after the grace period for storing the webhook events of closed connections.
const FLUSH_BOUND: Duration = Duration::from_secs(1);

/// Serves `config` on `listener` until `shutdown` is cancelled, then stops accepting, tells
/// every client to reconnect (4200), drains HTTP connections, and returns within
/// `shutdown_grace` (plus at most [`FLUSH_BOUND`]) whatever the clients do.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tls = match &config.server.tls {
        Some(settings) => Some(listener::tls::Tls::load(settings).map_err(std::io::Error::other)?),
        None => None,
    };
    let has_webhooks = config.apps.iter().any(|app| !app.webhooks.is_empty());
    let app_ids: Vec<&str> = config.apps.iter().map(|app| app.id.as_str()).collect();
    let metrics = Arc::new(Metrics::new(&app_ids));
    let debug = Arc::new(debug::Tap::new());
    let apps: Arc<dyn AppStore> = Arc::new(ConfigAppStore::new(config.apps));
    let grace = Duration::from_secs(config.server.shutdown_grace);
    let removal_delay = config.webhooks.removal_delay;
    // Usage goes where the webhook outbox goes; without a data directory in use, in memory.
    let usage_dir = config.webhooks.durable_dir(has_webhooks);
    let usage = usage::UsageStore::for_dir(usage_dir)
        .map(Arc::new)
        .map_err(|e| std::io::Error::other(format!("usage store: {e}")))?;
    metrics.attach_usage(usage.clone());
    let usage_task = tokio::spawn(usage::run(usage.clone(), metrics.clone(), shutdown.clone()));
    let webhooks = if has_webhooks {
        let started = Webhooks::start(
            config.webhooks,
            apps.clone(),
            metrics.clone(),
            debug.clone(),
            shutdown.clone(),
        );
        Some(started.map_err(|e| std::io::Error::other(format!("webhook outbox: {e}")))?)
    } else {
        None
    };
    // The cluster's transport outlives the connections: it tells the others this node is
    // leaving before any client is told to reconnect, and carries their departures.
    let transport_stop = CancellationToken::new();
    let transport_tasks = TaskTracker::new();
    let draining = CancellationToken::new();
    let mut node = Node::new(
        apps,
        config.server.clone(),
        webhooks,
        metrics.clone(),
        draining.clone(),
        debug,
    );
    let mut inbound = None;
    if let Some(settings) = &config.cluster {
        let (cluster, received) =
            cluster::start(settings, removal_delay, &transport_stop, &transport_tasks)
                .await
                .map_err(|e| std::io::Error::other(format!("cluster: {e}")))?;
        metrics.attach_cluster(cluster.clone());
        node = node.with_cluster(cluster);
        inbound = Some(received);
    }
    let node = Arc::new(node);
    tokio::spawn(node.clone().run_ticks());
    if let Some(received) = inbound {
        tokio::spawn(node.clone().run_cluster(received));
    }
    tokio::spawn(drain_on(shutdown.clone(), node.clone()));
    if let Some(tls) = &tls {
        let watch = listener::tls::watch(tls.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(watch);
    }
    let own_port = config.metrics.listen.is_some();
    if let Some((host, port)) = &config.metrics.listen {
        let bound = tokio::net::TcpListener::bind((host.as_str(), *port))
            .await
            .map_err(|e| std::io::Error::other(format!("metrics listener {host}:{port}: {e}")))?;
        tracing::info!(address = %bound.local_addr()?, "serving /metrics");
        let router = api::metrics_router(node.clone());
        let (server, metrics, shutdown) =
            (config.server.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            listener::serve(bound, router, &server, None, metrics, shutdown).await;
        });
    }
    let mut router = api::router(node.clone(), config.metrics.enabled && !own_port);
    let loopback = config::is_loopback(&config.server.host);
    if let Some(admin) = admin::router(
        node.clone(),
        usage,
        config.admin.token.as_ref(),
        loopback,
        shutdown.clone(),
    ) {
        router = router.merge(admin);
    }
    let http = listener::serve(listener, router, &config.server, tls, metrics, shutdown).await;
    // HTTP connections and WebSocket tasks drain together, against one deadline.
    let deadline = tokio::time::Instant::now() + grace;
    node.tasks.close();
    let drained = async { tokio::join!(http.wait(), node.tasks.wait()) };
    if tokio::time::timeout_at(deadline, drained).await.is_err() {
        tracing::warn!(
            websockets = node.tasks.len(),
            http = http.len(),
            "connections still open after the shutdown grace period"
        );
    }
    // Webhook events of the connections that just closed are stored before we exit.
    if let Some(webhooks) = &node.webhooks
        && tokio::time::timeout(FLUSH_BOUND, webhooks.flush())
            .await
            .is_err()
    {
        tracing::warn!("webhook events of closing connections were not all stored in time");
    }
    let _ = tokio::time::timeout(FLUSH_BOUND, usage_task).await;
    transport_stop.cancel();
    transport_tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), transport_tasks.wait()).await;
    Ok(())
}

/// On shutdown: tell the cluster first (its members keep this node's presence for the
/// removal delay while clients move), then ask every client to reconnect.
async fn drain_on(shutdown: CancellationToken, node: Arc<Node>) {
    shutdown.cancelled().await;
    if let Some(cluster) = &node.cluster {
        cluster.leave();
        // The transport's writer sends it ahead of the departures that follow.
        tokio::task::yield_now().await;
    }
    node.shutdown.cancel();
}
