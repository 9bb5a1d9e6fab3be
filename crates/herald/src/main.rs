//! The `herald` binary: parse flags, load the configuration, serve until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::config::{Config, Overrides};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod dead_letters;

const SETTINGS_HELP: &str = include_str!("../settings-help.txt");

#[derive(Parser)]
#[command(name = "herald", version, about = "A self-hosted Pusher Channels protocol server", after_long_help = SETTINGS_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (the default when no command is given).
    Serve(ServeArgs),
    /// Inspect and replay webhooks that ran out of retries (dead letters).
    Webhooks {
        #[command(subcommand)]
        action: WebhookAction,
    },
}

#[derive(Subcommand)]
enum WebhookAction {
    /// List dead-lettered webhook events, oldest first.
    ListFailed,
    /// Queue dead letters again with a fresh retry window; a running server sends them.
    Replay {
        /// Event ids to replay (as shown by list-failed).
        ids: Vec<String>,
        /// Replay every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

#[derive(clap::Args, Clone, Default)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "HERALD_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1).
    #[arg(long, env = "HERALD_HOST", global = true)]
    host: Option<String>,
    /// Port to listen on (default 6001; 0 picks a free port).
    #[arg(long, env = "HERALD_PORT", global = true)]
    port: Option<String>,
    /// Allow the built-in development credentials on a non-loopback address.
    #[arg(long, global = true)]
    allow_dev_credentials: bool,
    /// Start even when the cluster broker is unreachable, and keep connecting to it.
    #[arg(long, global = true)]
    start_degraded: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, webhook_action) = match cli.command {
        Some(Command::Serve(args)) => (args, None),
        Some(Command::Webhooks { action }) => (cli.serve, Some(action)),
        None => (cli.serve, None),
    };
    init_tracing();
    let overrides = Overrides {
        config: args.config,
        host: args.host,
        port: args.port,
        app_id: std::env::var("HERALD_APP_ID").ok(),
        app_key: std::env::var("HERALD_APP_KEY").ok(),
        app_secret: std::env::var("HERALD_APP_SECRET").ok(),
        cluster_driver: std::env::var("HERALD_CLUSTER_DRIVER").ok(),
        redis_url: std::env::var("HERALD_REDIS_URL").ok(),
        nats_url: std::env::var("HERALD_NATS_URL").ok(),
        cluster_prefix: std::env::var("HERALD_CLUSTER_PREFIX").ok(),
        node_id: std::env::var("HERALD_NODE_ID").ok(),
        start_degraded: args.start_degraded,
    };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(errors) => return fail(&errors.to_string()),
    };
    if let Some(action) = webhook_action {
        return match dead_letters::run(&config.webhooks.data_dir, action) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => fail(&message),
        };
    }
    if let Err(refusal) = config.check_exposure(args.allow_dev_credentials) {
        return fail(&refusal);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let address = (config.server.host.as_str(), config.server.port);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", address.0, address.1))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    announce(&config, local);
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    herald::run(config, listener, shutdown)
        .await
        .map_err(|e| format!("server failed: {e}"))
}

/// The listening line (tests and scripts read it) and, in development, the credentials.
#[allow(clippy::print_stdout)]
fn announce(config: &Config, local: std::net::SocketAddr) {
    println!("herald {} listening on {local}", env!("CARGO_PKG_VERSION"));
    if let Some(app) = config.dev_credentials_app() {
        let client_events = if app.enable_client_messages {
            "on"
        } else {
            "off"
        };
        println!(
            "development app: id {} key {} secret {} (client events {client_events})",
            app.id,
            app.key,
            app.secret.expose()
        );
        tracing::warn!(
            "these built-in credentials are for development only; configure your own apps"
        );
    } else {
        for app in &config.apps {
            tracing::info!(app_id = %app.id, key = %app.key, "app configured");
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: asking clients to reconnect");
    shutdown.cancel();
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal, and never when NO_COLOR is set (no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

#[allow(clippy::print_stderr)]
fn fail(message: &str) -> ExitCode {
    eprintln!("herald: {message}");
    ExitCode::FAILURE
}
