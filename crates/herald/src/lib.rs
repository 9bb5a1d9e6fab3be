//! Herald: a Pusher Channels protocol server.
//!
//! Layout:
//! - [`config`]: the configuration tree, layered from defaults, file, environment and flags.
//! - [`apps`]: apps (credentials, flags, limits) and the [`apps::AppStore`] seam.
//! - [`node`]: the shared state of one process; [`node::Node::publish`] delivers every event.
//! - [`hub`]: the sharded registry of channels, subscribers and presence rosters.
//! - [`connection`]: one WebSocket: handshake, session state, outbox, liveness.
//! - [`api`]: the Pusher HTTP API with signed requests.

pub mod api;
pub mod apps;
pub mod config;
pub mod connection;
pub mod hub;
pub mod node;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use apps::ConfigAppStore;
use config::Config;
use node::Node;

/// Serves `config` on `listener` until `shutdown` is cancelled, then tells every client to
/// reconnect (4200) and waits up to `shutdown_grace` seconds for them to go.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let apps = Arc::new(ConfigAppStore::new(config.apps));
    let grace = Duration::from_secs(config.server.shutdown_grace);
    let node = Arc::new(Node::new(apps, config.server, shutdown.clone()));
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
    Ok(())
}
