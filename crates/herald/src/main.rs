//! The `herald` binary: parse flags, load the configuration, serve until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use herald::config::{Config, LogConfig, LogFormat, Overrides};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod dead_letters;

const SETTINGS_HELP: &str = include_str!("../settings-help.txt");

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "A self-hosted Pusher Channels protocol server",
    after_long_help = SETTINGS_HELP
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "HERALD_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Serving flags without a command: `herald --port 0` is `herald serve --port 0`.
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (the default when no command is given).
    Serve(Box<ServeArgs>),
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

/// Flags of `serve` only; `--config` is global, for the webhook commands too.
#[derive(clap::Args, Clone, Default)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1).
    #[arg(long, env = "HERALD_HOST")]
    host: Option<String>,
    /// Port to listen on (default 6001; 0 picks a free port).
    #[arg(long, env = "HERALD_PORT")]
    port: Option<String>,
    /// Allow the built-in development credentials on a non-loopback address.
    #[arg(long)]
    allow_dev_credentials: bool,
    /// Cluster driver: local (one node), redis or nats.
    #[arg(long, env = "HERALD_CLUSTER_DRIVER")]
    cluster_driver: Option<String>,
    /// Redis URL for the cluster (redis://, rediss://, redis+sentinel://).
    #[arg(long, env = "HERALD_REDIS_URL")]
    redis_url: Option<String>,
    /// NATS URL(s) for the cluster (nats://, tls://; comma-separated).
    #[arg(long, env = "HERALD_NATS_URL")]
    nats_url: Option<String>,
    /// Namespace of the cluster's keys and subjects.
    #[arg(long, env = "HERALD_CLUSTER_PREFIX")]
    cluster_prefix: Option<String>,
    /// This node's id in the cluster (default: host name and a random suffix).
    #[arg(long, env = "HERALD_NODE_ID")]
    node_id: Option<String>,
    /// Start even when the cluster broker is unreachable, and keep connecting to it.
    #[arg(long, env = "HERALD_CLUSTER_START_DEGRADED")]
    start_degraded: bool,
    /// TLS certificate chain (PEM); with --tls-key, serves https:// and wss://.
    #[arg(long, env = "HERALD_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, env = "HERALD_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Log lines as `pretty` text or `json` objects (default: [log] format, else pretty).
    #[arg(long, env = "HERALD_LOG_FORMAT")]
    log_format: Option<String>,
}

/// The command line: the configuration file, the serving flags and the webhook command, if
/// that is what was asked. Serving flags before `serve` count as its own (`herald --port 0
/// serve`); before `webhooks` they mean nothing and are refused.
fn parse() -> (Option<PathBuf>, ServeArgs, Option<WebhookAction>) {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Some(Command::Serve(args)) => {
            let args = *args;
            let top = cli.serve;
            let merged = ServeArgs {
                host: args.host.or(top.host),
                port: args.port.or(top.port),
                allow_dev_credentials: args.allow_dev_credentials || top.allow_dev_credentials,
                cluster_driver: args.cluster_driver.or(top.cluster_driver),
                redis_url: args.redis_url.or(top.redis_url),
                nats_url: args.nats_url.or(top.nats_url),
                cluster_prefix: args.cluster_prefix.or(top.cluster_prefix),
                node_id: args.node_id.or(top.node_id),
                start_degraded: args.start_degraded || top.start_degraded,
                tls_cert: args.tls_cert.or(top.tls_cert),
                tls_key: args.tls_key.or(top.tls_key),
                log_format: args.log_format.or(top.log_format),
            };
            (cli.config, merged, None)
        }
        Some(Command::Webhooks { action }) => {
            let given = [
                "host",
                "port",
                "allow_dev_credentials",
                "cluster_driver",
                "redis_url",
                "nats_url",
                "cluster_prefix",
                "node_id",
                "start_degraded",
                "tls_cert",
                "tls_key",
                "log_format",
            ]
            .iter()
            .any(|id| matches.value_source(id) == Some(ValueSource::CommandLine));
            if given {
                Cli::command()
                    .error(
                        ErrorKind::ArgumentConflict,
                        "serving flags (--host, --port, --allow-dev-credentials, cluster and TLS flags) apply to `herald serve` only",
                    )
                    .exit();
            }
            (cli.config, ServeArgs::default(), Some(action))
        }
        None => (cli.config, cli.serve, None),
    }
}

fn main() -> ExitCode {
    let (config, args, webhook_action) = parse();
    let overrides = Overrides {
        config,
        host: args.host,
        port: args.port,
        app_id: std::env::var("HERALD_APP_ID").ok(),
        app_key: std::env::var("HERALD_APP_KEY").ok(),
        app_secret: std::env::var("HERALD_APP_SECRET").ok(),
        cluster_driver: args.cluster_driver,
        redis_url: args.redis_url,
        nats_url: args.nats_url,
        cluster_prefix: args.cluster_prefix,
        node_id: args.node_id,
        start_degraded: args.start_degraded,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        log_format: args.log_format,
        admin_token: std::env::var("HERALD_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(errors) => return fail(&errors.to_string()),
    };
    init_tracing(&config.log);
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
    let served = runtime.block_on(serve(config));
    // A webhook outbox write still blocked (a shutdown flush that gave up) must not hold up
    // the exit; what it held is lost, as the flush already logged.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match served {
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
    if let Some(tls) = &config.server.tls {
        let cert = tls.cert.display();
        tracing::info!(%cert, "TLS on: clients use https:// and wss://");
    }
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

/// `RUST_LOG`, when set, wins over `[log] level`.
fn init_tracing(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Pretty => {
            // Colours only on a terminal, and never when NO_COLOR is set (no-color.org).
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
            builder.with_ansi(ansi).init();
        }
    }
}

#[allow(clippy::print_stderr)]
fn fail(message: &str) -> ExitCode {
    eprintln!("herald: {message}");
    ExitCode::FAILURE
}
