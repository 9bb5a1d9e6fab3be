//! The operator's sections: `[metrics]` (where `/metrics` is served, if at all) and `[log]`
//! (level and format), `[admin]` (the dashboard's token).

use serde::Deserialize;

use super::ranged;

/// `[metrics]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// A listener of its own (host, port); `None`: `/metrics` on the main port.
    pub listen: Option<(String, u16)>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
        }
    }
}

/// `[metrics]` as written.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct FileMetrics {
    enabled: bool,
    host: String,
    port: i64,
}

impl Default for FileMetrics {
    fn default() -> Self {
        Self {
            enabled: true,
            host: String::new(),
            port: 0,
        }
    }
}

pub(super) fn metrics(
    file: FileMetrics,
    server: &super::ServerConfig,
    problems: &mut Vec<String>,
) -> MetricsConfig {
    let port = ranged("metrics.port", file.port, 0, 65_535, problems) as u16;
    if port == 0 && !file.host.is_empty() {
        problems.push("metrics.host needs metrics.port (a listener of its own)".into());
    }
    let host = match file.host {
        host if host.is_empty() => server.host.clone(),
        host => host,
    };
    if port != 0 && port == server.port && host == server.host {
        problems.push(format!(
            "metrics.port {port} is the main port: leave it 0 to serve /metrics there"
        ));
    }
    MetricsConfig {
        enabled: file.enabled,
        listen: (port != 0 && file.enabled).then_some((host, port)),
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]`, validated. `RUST_LOG`, when set, replaces `level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `herald=debug,info`...
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Pretty,
        }
    }
}

/// `[log]` as written.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct FileLog {
    level: String,
    format: String,
}

impl Default for FileLog {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "pretty".into(),
        }
    }
}

pub(super) fn log(file: FileLog, flag: Option<&str>, problems: &mut Vec<String>) -> LogConfig {
    if tracing_subscriber::EnvFilter::try_new(&file.level).is_err() {
        problems.push(format!(
            "log.level must be a level (error, warn, info, debug, trace) or a filter such as \"herald=debug,info\", got {:?}",
            file.level
        ));
    }
    let (name, written) = match flag {
        Some(flag) => ("--log-format / HERALD_LOG_FORMAT", flag.to_owned()),
        None => ("log.format", file.format),
    };
    let format = match written.as_str() {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        other => {
            problems.push(format!(
                "{name} must be \"pretty\" or \"json\", got {other:?}"
            ));
            LogFormat::Pretty
        }
    };
    LogConfig {
        level: file.level,
        format,
    }
}

/// `[admin]`, validated.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// The dashboard and `/admin` token; `None`: dashboard only on a loopback address.
    pub token: Option<crate::apps::Secret>,
}

/// `[admin]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FileAdmin {
    token: String,
}

/// Shorter tokens are refused: they can be guessed despite the rate limit.
const MIN_TOKEN: usize = 16;

pub(super) fn admin(file: FileAdmin, env: Option<&str>, problems: &mut Vec<String>) -> AdminConfig {
    let token = env.map_or(file.token, str::to_owned);
    if !token.is_empty() && token.chars().count() < MIN_TOKEN {
        problems.push(format!(
            "admin.token (HERALD_ADMIN_TOKEN) must be at least {MIN_TOKEN} characters"
        ));
    }
    AdminConfig {
        token: (!token.is_empty()).then(|| crate::apps::Secret::new(token)),
    }
}
