//! Writes an accepted [`Config`] back out as TOML, every setting explicit, so a property can
//! check that what was accepted is accepted again unchanged. Shared with the `config` fuzz
//! target (fuzz/fuzz_targets/config.rs includes this file).

use herald::apps::{App, Limits, WebhookKind, WebhookTarget};
use herald::config::{Config, ServerConfig};
use herald::webhooks::WebhookSettings;
use toml::{Table, Value};

/// The whole configuration as TOML text.
pub fn render(config: &Config) -> String {
    let mut root = Table::new();
    root.insert("server".into(), Value::Table(server(&config.server)));
    root.insert("webhooks".into(), Value::Table(webhooks(&config.webhooks)));
    let apps = config.apps.iter().map(|a| Value::Table(app(a))).collect();
    root.insert("apps".into(), Value::Array(apps));
    root.to_string()
}

/// Integers as TOML has them; every accepted value fits.
fn int(value: impl TryInto<i64>) -> Value {
    Value::Integer(value.try_into().unwrap_or(i64::MAX))
}

fn server(s: &ServerConfig) -> Table {
    let mut t = Table::new();
    t.insert("host".into(), Value::String(s.host.clone()));
    t.insert("port".into(), int(s.port));
    t.insert("activity_timeout".into(), int(s.activity_timeout));
    t.insert("pong_timeout".into(), int(s.pong_timeout));
    t.insert("max_frame_bytes".into(), int(s.max_frame_bytes));
    t.insert("outbox_capacity".into(), int(s.outbox_capacity));
    t.insert("shutdown_grace".into(), int(s.shutdown_grace));
    t
}

fn webhooks(w: &WebhookSettings) -> Table {
    let mut t = Table::new();
    // Written only when the configuration named it: naming it is itself a setting (usage
    // is then stored there even without webhooks).
    if w.data_dir_configured {
        let dir = w.data_dir.to_string_lossy().into_owned();
        t.insert("data_dir".into(), Value::String(dir));
    }
    t.insert("retry_for".into(), int(w.retry_for.as_secs()));
    t.insert("timeout".into(), int(w.timeout.as_secs()));
    t.insert("removal_delay_ms".into(), int(w.removal_delay.as_millis()));
    t
}

fn app(a: &App) -> Table {
    let mut t = Table::new();
    t.insert("id".into(), Value::String(a.id.clone()));
    t.insert("key".into(), Value::String(a.key.clone()));
    t.insert("secret".into(), Value::String(a.secret.expose().to_owned()));
    let flags = [
        ("enable_client_messages", a.enable_client_messages),
        ("enabled", a.enabled),
        ("enable_subscription_count", a.enable_subscription_count),
        ("enable_watchlist_events", a.enable_watchlist_events),
        ("webhook_batching", a.webhook_batching),
        ("subscription_error_events", a.subscription_error_events),
    ];
    for (name, flag) in flags {
        t.insert(name.into(), Value::Boolean(flag));
    }
    t.insert("max_connections".into(), int(a.max_connections));
    t.insert(
        "authorized_connections_timeout".into(),
        int(a.authorized_connections_timeout),
    );
    t.insert("cache_ttl".into(), int(a.cache_ttl));
    t.insert("limits".into(), Value::Table(limits(&a.limits)));
    let targets = a.webhooks.iter().map(|w| Value::Table(target(w))).collect();
    t.insert("webhooks".into(), Value::Array(targets));
    t
}

fn limits(l: &Limits) -> Table {
    let mut t = Table::new();
    t.insert(
        "max_channel_name_length".into(),
        int(l.max_channel_name_length),
    );
    t.insert("max_event_name_length".into(), int(l.max_event_name_length));
    t.insert(
        "max_event_payload_bytes".into(),
        int(l.max_event_payload_bytes),
    );
    t.insert(
        "max_channels_per_trigger".into(),
        int(l.max_channels_per_trigger),
    );
    t.insert("max_batch_events".into(), int(l.max_batch_events));
    t.insert("max_presence_members".into(), int(l.max_presence_members));
    t.insert(
        "max_presence_user_info_bytes".into(),
        int(l.max_presence_user_info_bytes),
    );
    t.insert(
        "max_presence_user_id_length".into(),
        int(l.max_presence_user_id_length),
    );
    t.insert(
        "max_client_events_per_second".into(),
        int(l.max_client_events_per_second),
    );
    t
}

fn target(w: &WebhookTarget) -> Table {
    let mut t = Table::new();
    t.insert("url".into(), Value::String(w.url.clone()));
    let kinds = w.event_types.iter().map(|k| Value::String(kind(*k).into()));
    t.insert("event_types".into(), Value::Array(kinds.collect()));
    let headers = w
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())));
    t.insert("headers".into(), Value::Table(headers.collect()));
    let mut filter = Table::new();
    if let Some(prefix) = &w.filter.channel_prefix {
        filter.insert("channel_prefix".into(), Value::String(prefix.clone()));
    }
    if let Some(suffix) = &w.filter.channel_suffix {
        filter.insert("channel_suffix".into(), Value::String(suffix.clone()));
    }
    t.insert("filter".into(), Value::Table(filter));
    t
}

/// Exhaustive on purpose: a new kind must be given its TOML name here.
fn kind(kind: WebhookKind) -> &'static str {
    match kind {
        WebhookKind::ChannelOccupied => "channel_occupied",
        WebhookKind::ChannelVacated => "channel_vacated",
        WebhookKind::MemberAdded => "member_added",
        WebhookKind::MemberRemoved => "member_removed",
        WebhookKind::ClientEvent => "client_event",
        WebhookKind::CacheMiss => "cache_miss",
        WebhookKind::SubscriptionCount => "subscription_count",
    }
}
