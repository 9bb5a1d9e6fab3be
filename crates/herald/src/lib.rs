//! Herald: a Pusher Channels protocol server.
//!
//! Layout:
//! - [`config`]: the configuration tree, layered from defaults, file, environment and flags.
//! - [`apps`]: apps (credentials, flags, limits) and the [`apps::AppStore`] seam.
//! - [`node`]: the shared state of one process; [`node::Node::publish`] delivers every event.
//! - [`hub`]: the sharded registry of channels, subscribers and presence rosters.
//! - [`connection`]: one WebSocket: handshake, session state, outbox, liveness.
//! - [`api`]: the Pusher HTTP API with signed requests.
//! - [`listener`]: the accept loop; HTTP connections until they upgrade (deadlines, per-IP cap).
//! - [`webhooks`]: the durable webhook outbox and its sender.
//! - [`metrics`]: counters, served at `/metrics`.

pub mod api;
pub mod apps;
pub mod config;
pub mod connection;
pub mod hub;
pub mod listener;
pub mod metrics;
pub mod node;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    let has_webhooks = config.apps.iter().any(|app| !app.webhooks.is_empty());
    let apps: Arc<dyn AppStore> = Arc::new(ConfigAppStore::new(config.apps));
    let grace = Duration::from_secs(config.server.shutdown_grace);
    let metrics = Arc::new(Metrics::default());
    let webhooks = if has_webhooks {
        let started = Webhooks::start(
            config.webhooks,
            apps.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        Some(started.map_err(|e| std::io::Error::other(format!("webhook outbox: {e}")))?)
    } else {
        None
    };
    let node = Arc::new(Node::new(
        apps,
        config.server.clone(),
        webhooks,
        metrics.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(node.clone().run_ticks());
    let router = api::router(node.clone());
    let http = listener::serve(listener, router, &config.server, metrics, shutdown).await;
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
    Ok(())
}
