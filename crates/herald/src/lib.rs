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
//! - [`webhooks`]: the durable webhook outbox and its sender.
//! - [`metrics`]: counters, served at `/metrics`.

pub mod api;
pub mod apps;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod hub;
pub mod metrics;
pub mod node;
pub mod outbox;
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

/// Serves `config` on `listener` until `shutdown` is cancelled, then tells every client to
/// reconnect (4200) and waits up to `shutdown_grace` seconds for them to go.
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
        config.server,
        webhooks,
        metrics,
        shutdown.clone(),
    ));
    tokio::spawn(node.clone().run_ticks());
    let router = api::router(node.clone());
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    node.tasks.close();
    if tokio::time::timeout(grace, node.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = node.tasks.len(),
            "connections still open after the shutdown grace period"
        );
    }
    // Webhook events of the connections that just closed are stored before we exit.
    if let Some(webhooks) = &node.webhooks {
        webhooks.flush().await;
    }
    Ok(())
}
