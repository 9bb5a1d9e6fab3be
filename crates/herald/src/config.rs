//! Configuration: defaults, a TOML file, environment and CLI flags, layered in that order,
//! then validated with every problem reported at once.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::apps::{App, Limits, WebhookFilter, WebhookTarget};
use crate::edge::EdgeSettings;
use crate::listener::tls::TlsSettings;
use crate::webhooks::WebhookSettings;

mod cluster;
mod edge;
mod keys;
mod ops;

pub use ops::{AdminConfig, LogConfig, LogFormat, MetricsConfig};

/// The built-in development app's credentials.
pub const DEV_APP_ID: &str = "1";
pub const DEV_APP_KEY: &str = "app-key";
pub const DEV_APP_SECRET: &str = "app-secret";

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub apps: Vec<App>,
    pub webhooks: WebhookSettings,
    /// `None`: one node on its own (`driver = "local"`).
    pub cluster: Option<crate::cluster::ClusterSettings>,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Seconds, sent in `connection_established`; silence this long triggers a probe.
    pub activity_timeout: u64,
    /// Seconds to wait for any frame after a probe before closing with 4201.
    pub pong_timeout: u64,
    /// Largest WebSocket message accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Frames queued for one connection before it is closed with 4100.
    pub outbox_capacity: usize,
    /// Seconds given to clients to leave on shutdown.
    pub shutdown_grace: u64,
    /// Bytes queued for one connection (frames not yet written) before it is closed with 4100.
    pub max_outbox_bytes: usize,
    /// Seconds a connection may stay unwritable (a write blocked on a client that stopped
    /// reading) before it is closed with 4100.
    pub write_timeout: u64,
    /// Channels one connection may hold at once.
    pub max_channels_per_connection: usize,
    /// Seconds a client has to send a request's headers (also the first request's).
    pub header_read_timeout: u64,
    /// Seconds a client has to send a request body.
    pub body_read_timeout: u64,
    /// Seconds an idle keep-alive HTTP connection is kept open.
    pub keepalive_timeout: u64,
    /// Connections from one IP address that have not (yet) become WebSockets.
    pub max_pending_connections_per_ip: usize,
    /// Largest request line plus headers, in bytes (the upgrade's too); larger: 431.
    pub max_header_bytes: usize,
    /// `[server.tls]`: HTTPS and WSS on the port instead of HTTP and WS.
    pub tls: Option<TlsSettings>,
    /// Trusted proxies, per-IP rates and the node's ceilings.
    pub edge: EdgeSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 6001,
            activity_timeout: 120,
            pong_timeout: 30,
            max_frame_bytes: 65_536,
            outbox_capacity: 1_024,
            shutdown_grace: 3,
            max_outbox_bytes: 1 << 20,
            write_timeout: 30,
            max_channels_per_connection: 100,
            header_read_timeout: 10,
            body_read_timeout: 30,
            keepalive_timeout: 60,
            max_pending_connections_per_ip: 256,
            max_header_bytes: 16_384,
            tls: None,
            edge: EdgeSettings::default(),
        }
    }
}

/// The file as written; ranges are checked in [`validate`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileConfig {
    server: FileServer,
    apps: Vec<App>,
    webhooks: FileWebhooks,
    cluster: cluster::FileCluster,
    metrics: ops::FileMetrics,
    log: ops::FileLog,
    admin: ops::FileAdmin,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct FileWebhooks {
    data_dir: Option<PathBuf>,
    retry_for: i64,
    timeout: i64,
    removal_delay_ms: i64,
    addition_delay_ms: i64,
    queue_capacity: i64,
    max_pending: i64,
    dead_letter_retention: i64,
    max_dead_letters: i64,
}

impl Default for FileWebhooks {
    fn default() -> Self {
        let d = WebhookSettings::default();
        Self {
            data_dir: None,
            retry_for: d.retry_for.as_secs() as i64,
            timeout: d.timeout.as_secs() as i64,
            removal_delay_ms: d.removal_delay.as_millis() as i64,
            addition_delay_ms: d.addition_delay.as_millis() as i64,
            queue_capacity: d.queue_capacity as i64,
            max_pending: d.max_pending as i64,
            dead_letter_retention: d.dead_letter_retention.as_secs() as i64,
            max_dead_letters: d.max_dead_letters as i64,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct FileServer {
    host: String,
    port: i64,
    activity_timeout: i64,
    pong_timeout: i64,
    max_frame_bytes: i64,
    outbox_capacity: i64,
    shutdown_grace: i64,
    max_outbox_bytes: i64,
    write_timeout: i64,
    max_channels_per_connection: i64,
    header_read_timeout: i64,
    body_read_timeout: i64,
    keepalive_timeout: i64,
    max_pending_connections_per_ip: i64,
    max_header_bytes: i64,
    trusted_proxies: Vec<String>,
    client_ip_header: String,
    max_connections_per_second_per_ip: i64,
    max_api_requests_per_second_per_ip: i64,
    max_connections: i64,
    max_memory_mb: i64,
    tls: Option<edge::FileTls>,
}

impl Default for FileServer {
    fn default() -> Self {
        let d = ServerConfig::default();
        Self {
            host: d.host,
            port: d.port.into(),
            activity_timeout: d.activity_timeout as i64,
            pong_timeout: d.pong_timeout as i64,
            max_frame_bytes: d.max_frame_bytes as i64,
            outbox_capacity: d.outbox_capacity as i64,
            shutdown_grace: d.shutdown_grace as i64,
            max_outbox_bytes: d.max_outbox_bytes as i64,
            write_timeout: d.write_timeout as i64,
            max_channels_per_connection: d.max_channels_per_connection as i64,
            header_read_timeout: d.header_read_timeout as i64,
            body_read_timeout: d.body_read_timeout as i64,
            keepalive_timeout: d.keepalive_timeout as i64,
            max_pending_connections_per_ip: d.max_pending_connections_per_ip as i64,
            max_header_bytes: d.max_header_bytes as i64,
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".into(),
            max_connections_per_second_per_ip: d.edge.max_connections_per_second_per_ip.into(),
            max_api_requests_per_second_per_ip: d.edge.max_api_requests_per_second_per_ip.into(),
            max_connections: d.edge.max_connections as i64,
            max_memory_mb: d.edge.max_memory_mb as i64,
            tls: None,
        }
    }
}

/// What the command line and environment say (clap fills the flags, with their env vars).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub app_id: Option<String>,
    pub app_key: Option<String>,
    pub app_secret: Option<String>,
    pub cluster_driver: Option<String>,
    pub redis_url: Option<String>,
    pub nats_url: Option<String>,
    pub cluster_prefix: Option<String>,
    pub node_id: Option<String>,
    /// Start even when the cluster broker is unreachable, and keep connecting.
    pub start_degraded: bool,
    /// `--tls-cert` / `HERALD_TLS_CERT`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key` / `HERALD_TLS_KEY`.
    pub tls_key: Option<PathBuf>,
    /// `--log-format` / `HERALD_LOG_FORMAT`.
    pub log_format: Option<String>,
    /// `HERALD_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
}

/// Every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

impl Config {
    /// Defaults < file < environment < flags, then validation.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigErrors> {
        let mut problems = Vec::new();
        let file = match &overrides.config {
            Some(path) => read_file(path, &mut problems),
            None => FileConfig::default(),
        };
        let config = merge(file, overrides, &mut problems);
        validate(&config, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// Parses TOML text alone, as `--config` would.
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        let mut problems = Vec::new();
        let file = parse_toml(text, &mut problems);
        let config = merge(file, &Overrides::default(), &mut problems);
        validate(&config, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// True when an app uses the built-in development credentials.
    pub fn uses_dev_credentials(&self) -> bool {
        self.dev_credentials_app().is_some()
    }

    /// The first app that uses the built-in development credentials.
    pub fn dev_credentials_app(&self) -> Option<&App> {
        self.apps
            .iter()
            .find(|app| app.key == DEV_APP_KEY && app.secret.expose() == DEV_APP_SECRET)
    }

    /// Development credentials must not be reachable from other machines.
    pub fn check_exposure(&self, allow_dev_credentials: bool) -> Result<(), String> {
        if !self.uses_dev_credentials() || allow_dev_credentials || is_loopback(&self.server.host) {
            return Ok(());
        }
        Err(format!(
            "refusing to listen on {} with the built-in development credentials \
             (key {DEV_APP_KEY}): configure your own apps, or pass --allow-dev-credentials",
            self.server.host
        ))
    }
}

/// The development app used when no app is configured.
pub fn dev_app() -> App {
    App {
        enable_client_messages: true,
        enable_subscription_count: true,
        ..App::new(DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET)
    }
}

/// `localhost` or a loopback IP address.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn read_file(path: &Path, problems: &mut Vec<String>) -> FileConfig {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_toml(&text, problems),
        Err(e) => {
            problems.push(format!("cannot read {}: {e}", path.display()));
            FileConfig::default()
        }
    }
}

fn parse_toml(text: &str, problems: &mut Vec<String>) -> FileConfig {
    let deserializer = toml::Deserializer::parse(text);
    let deserializer = match deserializer {
        Ok(d) => d,
        Err(e) => {
            problems.push(format!("TOML syntax: {e}"));
            return FileConfig::default();
        }
    };
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(deserializer, &mut track);
    let parsed = serde_ignored::deserialize(tracked, |path| unknown.push(unknown_setting(&path)));
    problems.extend(unknown);
    parsed.unwrap_or_else(|e| {
        let setting = track.path().to_string();
        let message = e.to_string();
        problems.push(match setting.as_str() {
            "" | "." => message.trim().to_owned(),
            _ => format!("setting `{setting}`: {}", message.trim()),
        });
        FileConfig::default()
    })
}

/// "unknown setting `server.prot` (did you mean `port`?)".
fn unknown_setting(path: &serde_ignored::Path<'_>) -> String {
    let setting = keys::setting_path(path);
    let known = known_settings(&keys::table_of(path));
    match keys::key_of(path).and_then(|key| keys::suggestion(key, known)) {
        Some(hint) => format!("unknown setting `{setting}` (did you mean `{hint}`?)"),
        None => format!("unknown setting `{setting}`"),
    }
}

/// The settings a table accepts, `apps[]` standing for every app.
fn known_settings(table: &str) -> &'static [&'static str] {
    match table {
        "" => keys::fields_of::<FileConfig>(),
        "server" => keys::fields_of::<FileServer>(),
        "server.tls" => keys::fields_of::<edge::FileTls>(),
        "webhooks" => keys::fields_of::<FileWebhooks>(),
        "cluster" => keys::fields_of::<cluster::FileCluster>(),
        "metrics" => keys::fields_of::<ops::FileMetrics>(),
        "log" => keys::fields_of::<ops::FileLog>(),
        "admin" => keys::fields_of::<ops::FileAdmin>(),
        "apps[]" => keys::fields_of::<App>(),
        "apps[].limits" => keys::fields_of::<Limits>(),
        "apps[].webhooks[]" => keys::fields_of::<WebhookTarget>(),
        "apps[].webhooks[].filter" => keys::fields_of::<WebhookFilter>(),
        _ => &[],
    }
}

fn merge(file: FileConfig, overrides: &Overrides, problems: &mut Vec<String>) -> Config {
    let s = file.server;
    let edge = edge::merge(&s, overrides, problems);
    let mut port = s.port;
    if let Some(text) = &overrides.port {
        match text.parse() {
            Ok(p) => port = p,
            Err(_) => problems.push(format!(
                "--port / HERALD_PORT must be a number between 0 and 65535, got {text:?}"
            )),
        }
    }
    let server = ServerConfig {
        host: overrides.host.clone().unwrap_or(s.host),
        port: ranged("server.port", port, 0, 65_535, problems) as u16,
        activity_timeout: ranged(
            "server.activity_timeout",
            s.activity_timeout,
            1,
            86_400,
            problems,
        ),
        pong_timeout: ranged("server.pong_timeout", s.pong_timeout, 1, 3_600, problems),
        max_frame_bytes: ranged(
            "server.max_frame_bytes",
            s.max_frame_bytes,
            1_024,
            16 << 20,
            problems,
        ) as usize,
        outbox_capacity: ranged(
            "server.outbox_capacity",
            s.outbox_capacity,
            16,
            1 << 20,
            problems,
        ) as usize,
        shutdown_grace: ranged("server.shutdown_grace", s.shutdown_grace, 0, 600, problems),
        max_outbox_bytes: ranged(
            "server.max_outbox_bytes",
            s.max_outbox_bytes,
            4_096,
            1 << 30,
            problems,
        ) as usize,
        write_timeout: ranged("server.write_timeout", s.write_timeout, 1, 3_600, problems),
        max_channels_per_connection: ranged(
            "server.max_channels_per_connection",
            s.max_channels_per_connection,
            1,
            1_000_000,
            problems,
        ) as usize,
        header_read_timeout: ranged(
            "server.header_read_timeout",
            s.header_read_timeout,
            1,
            3_600,
            problems,
        ),
        body_read_timeout: ranged(
            "server.body_read_timeout",
            s.body_read_timeout,
            1,
            3_600,
            problems,
        ),
        keepalive_timeout: ranged(
            "server.keepalive_timeout",
            s.keepalive_timeout,
            1,
            86_400,
            problems,
        ),
        max_pending_connections_per_ip: ranged(
            "server.max_pending_connections_per_ip",
            s.max_pending_connections_per_ip,
            1,
            1_000_000,
            problems,
        ) as usize,
        max_header_bytes: edge.max_header_bytes,
        tls: edge.tls,
        edge: edge.edge,
    };
    let webhooks = webhook_settings(file.webhooks, problems);
    let apps = match env_app(overrides, problems) {
        Some(app) => vec![app],
        None if file.apps.is_empty() => vec![dev_app()],
        None => file.apps,
    };
    let cluster = cluster::merge(file.cluster, overrides, problems);
    let metrics = ops::metrics(file.metrics, &server, problems);
    let log = ops::log(file.log, overrides.log_format.as_deref(), problems);
    let admin = ops::admin(file.admin, overrides.admin_token.as_deref(), problems);
    Config {
        server,
        apps,
        webhooks,
        cluster,
        metrics,
        log,
        admin,
    }
}

fn webhook_settings(w: FileWebhooks, problems: &mut Vec<String>) -> WebhookSettings {
    let mut ranged = |name: &str, value: i64, min: i64, max: i64| {
        ranged(&format!("webhooks.{name}"), value, min, max, problems)
    };
    WebhookSettings {
        data_dir_configured: w.data_dir.is_some(),
        data_dir: w
            .data_dir
            .unwrap_or_else(|| WebhookSettings::default().data_dir),
        retry_for: Duration::from_secs(ranged("retry_for", w.retry_for, 1, 7 * 86_400)),
        timeout: Duration::from_secs(ranged("timeout", w.timeout, 1, 300)),
        removal_delay: Duration::from_millis(ranged(
            "removal_delay_ms",
            w.removal_delay_ms,
            0,
            60_000,
        )),
        addition_delay: Duration::from_millis(ranged(
            "addition_delay_ms",
            w.addition_delay_ms,
            0,
            60_000,
        )),
        queue_capacity: ranged("queue_capacity", w.queue_capacity, 16, 10_000_000) as usize,
        max_pending: ranged("max_pending", w.max_pending, 1, 1_000_000_000) as usize,
        dead_letter_retention: Duration::from_secs(ranged(
            "dead_letter_retention",
            w.dead_letter_retention,
            1,
            366 * 86_400,
        )),
        max_dead_letters: ranged("max_dead_letters", w.max_dead_letters, 0, 1_000_000_000) as usize,
    }
}

fn ranged(name: &str, value: i64, min: i64, max: i64, problems: &mut Vec<String>) -> u64 {
    if (min..=max).contains(&value) {
        value as u64
    } else {
        problems.push(format!(
            "{name} must be between {min} and {max}, got {value}"
        ));
        min.max(0) as u64
    }
}

/// `HERALD_APP_ID`, `HERALD_APP_KEY`, `HERALD_APP_SECRET`: all three or none.
fn env_app(overrides: &Overrides, problems: &mut Vec<String>) -> Option<App> {
    let parts = [&overrides.app_id, &overrides.app_key, &overrides.app_secret];
    match parts {
        [None, None, None] => None,
        [Some(id), Some(key), Some(secret)] => Some(App::new(id, key, secret)),
        _ => {
            problems.push(
                "HERALD_APP_ID, HERALD_APP_KEY and HERALD_APP_SECRET must be set together".into(),
            );
            None
        }
    }
}

fn validate(config: &Config, problems: &mut Vec<String>) {
    let mut ids = std::collections::HashSet::new();
    let mut keys = std::collections::HashSet::new();
    for (index, app) in config.apps.iter().enumerate() {
        let at = format!("apps[{index}]");
        if app.id.is_empty() {
            problems.push(format!("{at}: id is empty"));
        }
        if app.key.is_empty() {
            problems.push(format!("{at}: key is empty"));
        }
        if app.secret.expose().is_empty() {
            problems.push(format!("{at}: secret is empty"));
        }
        if !app.id.is_empty() && !ids.insert(app.id.as_str()) {
            problems.push(format!("{at}: duplicate app id {:?}", app.id));
        }
        if !app.key.is_empty() && !keys.insert(app.key.as_str()) {
            problems.push(format!("{at}: duplicate app key {:?}", app.key));
        }
        if app.limits.max_channel_name_length == 0 || app.limits.max_event_name_length == 0 {
            problems.push(format!("{at}: name length limits must be positive"));
        }
        for (n, target) in app.webhooks.iter().enumerate() {
            let url_ok = reqwest::Url::parse(&target.url)
                .is_ok_and(|url| matches!(url.scheme(), "http" | "https"));
            if !url_ok {
                problems.push(format!(
                    "{at}.webhooks[{n}]: url must be an http(s) URL, got {:?}",
                    crate::webhooks::redact(&target.url)
                ));
            }
            if target.event_types.is_empty() {
                problems.push(format!("{at}.webhooks[{n}]: event_types is empty"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_configuration_gives_the_dev_app_on_loopback() {
        let config = Config::load(&Overrides::default()).expect("defaults are valid");
        assert_eq!(config.server.host, "127.0.0.1");
        assert_eq!(config.server.port, 6001);
        assert_eq!(config.apps, vec![dev_app()]);
        assert!(config.apps[0].enable_client_messages);
        assert!(config.uses_dev_credentials());
        assert!(config.check_exposure(false).is_ok());
    }

    #[test]
    fn dev_credentials_refuse_a_public_address_unless_allowed() {
        let overrides = Overrides {
            host: Some("0.0.0.0".into()),
            ..Overrides::default()
        };
        let config = Config::load(&overrides).expect("valid");
        let refusal = config.check_exposure(false).expect_err("refused");
        assert!(refusal.contains("--allow-dev-credentials"), "{refusal}");
        assert!(config.check_exposure(true).is_ok());
    }

    #[test]
    fn file_values_and_app_defaults() {
        let config = Config::from_toml(
            r#"
            [server]
            host = "0.0.0.0"
            port = 7000
            activity_timeout = 30
            [[apps]]
            id = "9"
            key = "k"
            secret = "s"
            "#,
        )
        .expect("valid");
        assert_eq!(config.server.port, 7000);
        assert_eq!(config.server.activity_timeout, 30);
        let app = &config.apps[0];
        assert!(!app.enable_client_messages && app.enabled && app.max_connections == 0);
        assert_eq!(app.limits, crate::apps::Limits::default());
        assert!(config.check_exposure(false).is_ok());
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let errors = Config::from_toml(
            r#"
            colour = "blue"
            [server]
            port = 70000
            prot = 1
            [[apps]]
            id = "1"
            key = "a"
            secret = ""
            [[apps]]
            id = "1"
            key = "a"
            secret = "x"
            enable_client_events = true
            [[apps.webhooks]]
            url = "ftp://example"
            event_types = ["channel_occupied"]
            "#,
        )
        .expect_err("invalid");
        let text = errors.to_string();
        for needle in [
            "unknown setting `colour`",
            "unknown setting `server.prot`",
            "unknown setting `apps[1].enable_client_events` (did you mean `enable_client_messages`?)",
            "unknown setting `server.prot` (did you mean `port`?)",
            "server.port must be between 0 and 65535, got 70000",
            "apps[0]: secret is empty",
            "apps[1]: duplicate app id \"1\"",
            "apps[1]: duplicate app key \"a\"",
            "apps[1].webhooks[0]: url must be an http(s) URL",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn a_type_error_names_its_setting() {
        let text = Config::from_toml("[server]\nport = \"abc\"\n")
            .expect_err("invalid")
            .to_string();
        assert!(text.contains("setting `server.port`"), "{text}");
        let text = Config::from_toml("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n[apps.limits]\nmax_batch_events = -1\n")
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("apps[0].limits.max_batch_events")
                || text.contains("apps.0.limits.max_batch_events"),
            "{text}"
        );
    }

    #[test]
    fn flags_and_environment_override_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "[server]\nport = 7000\nhost = \"127.0.0.2\"\n").expect("write");
        let overrides = Overrides {
            config: Some(path),
            port: Some("7001".into()),
            app_id: Some("5".into()),
            app_key: Some("env-key".into()),
            app_secret: Some("env-secret".into()),
            ..Overrides::default()
        };
        let config = Config::load(&overrides).expect("valid");
        assert_eq!(config.server.port, 7001);
        assert_eq!(config.server.host, "127.0.0.2");
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].key, "env-key");
        assert!(!config.uses_dev_credentials());
    }

    const EXAMPLE: &str = include_str!("../../../herald.example.toml");
    const EXAMPLE_WEBHOOK: &str = "#[[apps.webhooks]]\n";

    #[test]
    fn the_example_configuration_is_valid_and_complete() {
        // As shipped: no webhook receiver, so nothing retries a receiver that is not there.
        let config = Config::from_toml(EXAMPLE).expect("herald.example.toml is valid");
        assert!(config.apps[0].webhooks.is_empty());
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.webhooks, WebhookSettings::default());
        assert_eq!(config.metrics, MetricsConfig::default());
        assert_eq!(config.log, LogConfig::default());

        // With the documented [[apps.webhooks]] block uncommented (one leading "#" off each
        // line to the end of the file), every documented setting parses.
        let (head, block) = EXAMPLE
            .split_once(EXAMPLE_WEBHOOK)
            .expect("the example documents [[apps.webhooks]]");
        let block: String = format!("{EXAMPLE_WEBHOOK}{block}")
            .lines()
            .map(|line| format!("{}\n", line.strip_prefix('#').unwrap_or(line)))
            .collect();
        let config = Config::from_toml(&format!("{head}{block}"))
            .expect("the example's webhook block is valid");
        let target = &config.apps[0].webhooks[..];
        assert_eq!(target.len(), 1);
        assert_eq!(target[0].event_types.len(), 7);
        assert_eq!(target[0].headers.len(), 1);
        assert_eq!(target[0].filter.channel_prefix.as_deref(), Some("private-"));
    }

    #[test]
    fn webhook_limits_are_read_and_checked() {
        let config = Config::from_toml(
            "[webhooks]\naddition_delay_ms = 0\nqueue_capacity = 64\nmax_pending = 5\n\
             dead_letter_retention = 60\nmax_dead_letters = 0\n",
        )
        .expect("valid");
        let w = &config.webhooks;
        assert_eq!(w.addition_delay, Duration::ZERO);
        assert_eq!(
            (w.queue_capacity, w.max_pending, w.max_dead_letters),
            (64, 5, 0)
        );
        assert_eq!(w.dead_letter_retention, Duration::from_secs(60));
        let text = Config::from_toml("[webhooks]\nqueue_capacity = 0\nmax_pending = 0\n")
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("webhooks.queue_capacity must be between"),
            "{text}"
        );
        assert!(
            text.contains("webhooks.max_pending must be between"),
            "{text}"
        );
    }

    #[test]
    fn metrics_and_log_sections_are_read_and_checked() {
        let config = Config::from_toml(
            "[metrics]\nport = 9100\n[log]\nlevel = \"herald=debug,info\"\nformat = \"json\"\n",
        )
        .expect("valid");
        assert_eq!(config.metrics.listen, Some(("127.0.0.1".into(), 9100)));
        assert_eq!(config.log.format, LogFormat::Json);
        let off = Config::from_toml("[metrics]\nenabled = false\nport = 9100\n").expect("valid");
        assert!(!off.metrics.enabled && off.metrics.listen.is_none());
        let text = Config::from_toml(
            "[metrics]\nhost = \"0.0.0.0\"\nprot = 1\n[log]\nlevel = \"loud[\"\nformat = \"xml\"\n",
        )
        .expect_err("invalid")
        .to_string();
        for needle in [
            "metrics.host needs metrics.port",
            "unknown setting `metrics.prot` (did you mean `port`?)",
            "log.level must be a level",
            "log.format must be \"pretty\" or \"json\", got \"xml\"",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        let short = Config::from_toml("[admin]\ntoken = \"short\"\n").expect_err("too short");
        assert!(short.to_string().contains("at least 16"), "{short}");
        let admin = Config::from_toml("[admin]\ntoken = \"0123456789abcdef\"\n").expect("valid");
        assert!(
            !format!("{admin:?}").contains("0123456789abcdef"),
            "Debug hides the token"
        );
        let text = Config::from_toml("[metrics]\nport = 6001\n")
            .expect_err("the main port")
            .to_string();
        assert!(text.contains("leave it 0"), "{text}");
        let overrides = Overrides {
            log_format: Some("yaml".into()),
            ..Overrides::default()
        };
        let text = Config::load(&overrides).expect_err("invalid").to_string();
        assert!(
            text.contains("--log-format / HERALD_LOG_FORMAT must be"),
            "{text}"
        );
    }

    #[test]
    fn partial_env_app_and_bad_port_are_errors() {
        let overrides = Overrides {
            port: Some("http".into()),
            app_key: Some("k".into()),
            ..Overrides::default()
        };
        let text = Config::load(&overrides).expect_err("invalid").to_string();
        assert!(text.contains("HERALD_PORT must be a number"), "{text}");
        assert!(text.contains("must be set together"), "{text}");
    }
}
