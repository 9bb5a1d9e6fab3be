//! Apps: credentials, feature flags and limits, and the [`AppStore`] they are looked up in.
//! Only the config-backed store exists today; the trait is the seam for SQL-backed stores.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

/// An app secret. Never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for signing and verifying only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Per-app limits, Pusher's defaults (spec §7).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Limits {
    pub max_channel_name_length: usize,
    pub max_event_name_length: usize,
    /// Bytes of `data` per event, HTTP and client events alike; over it: 413 / error frame.
    pub max_event_payload_bytes: usize,
    pub max_channels_per_trigger: usize,
    pub max_batch_events: usize,
    /// Distinct users per presence channel.
    pub max_presence_members: usize,
    pub max_presence_user_info_bytes: usize,
    pub max_presence_user_id_length: usize,
    pub max_client_events_per_second: u32,
    /// Messages (events x channels) the HTTP API may publish per second; 0 = unlimited.
    /// Over it: 429 with `Retry-After`. Counted per node.
    pub max_api_events_per_second: u32,
    /// HTTP API reads (channel lists, channel info, presence users) per second; 0 = unlimited.
    pub max_api_reads_per_second: u32,
    /// Messages (HTTP API events x channels, and client events) per UTC day; 0 = unlimited.
    /// Counted per node; over it: 429 until midnight UTC, client events get an error frame.
    pub max_messages_per_day: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_channel_name_length: 200,
            max_event_name_length: 200,
            max_event_payload_bytes: 10_240,
            max_channels_per_trigger: 100,
            max_batch_events: 10,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1_024,
            max_presence_user_id_length: 128,
            max_client_events_per_second: 10,
            max_api_events_per_second: 0,
            max_api_reads_per_second: 0,
            max_messages_per_day: 0,
        }
    }
}

/// One app, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: Secret,
    /// Pusher's default is off.
    #[serde(default)]
    pub enable_client_messages: bool,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Concurrent connections; 0 = unlimited.
    #[serde(default)]
    pub max_connections: usize,
    /// Send `pusher_internal:subscription_count` to subscribers (spec §3.9). Off in Pusher.
    #[serde(default)]
    pub enable_subscription_count: bool,
    /// Send watchlist online/offline events to signed-in users (spec §5.4).
    #[serde(default = "enabled_by_default")]
    pub enable_watchlist_events: bool,
    /// Seconds a connection may stay without signing in or holding a private or presence
    /// channel before it is closed with 4009 (spec §5.5); 0 = no limit.
    #[serde(default)]
    pub authorized_connections_timeout: u64,
    /// Seconds a cache channel keeps its last event (spec §3.8).
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: u64,
    #[serde(default)]
    pub limits: Limits,
    /// Where this app's webhooks go.
    #[serde(default)]
    pub webhooks: Vec<WebhookTarget>,
    /// Send several webhook events in one request when they are due together.
    #[serde(default)]
    pub webhook_batching: bool,
    /// Besides Pusher's `pusher:error`, answer a refused subscription with Soketi's
    /// channel-scoped `pusher:subscription_error` (what Laravel Echo's `.error()` hears).
    #[serde(default)]
    pub subscription_error_events: bool,
}

fn enabled_by_default() -> bool {
    true
}

fn default_cache_ttl() -> u64 {
    1_800
}

impl App {
    /// An app with these credentials and every other setting at its default.
    pub fn new(id: &str, key: &str, secret: &str) -> Self {
        Self {
            id: id.into(),
            key: key.into(),
            secret: Secret::new(secret),
            enable_client_messages: false,
            enabled: true,
            max_connections: 0,
            enable_subscription_count: false,
            enable_watchlist_events: true,
            authorized_connections_timeout: 0,
            cache_ttl: default_cache_ttl(),
            limits: Limits::default(),
            webhooks: Vec::new(),
            webhook_batching: false,
            subscription_error_events: false,
        }
    }

    /// The webhook targets that want this event on this channel.
    pub fn webhook_targets(
        &self,
        event: WebhookKind,
        channel: &str,
    ) -> impl Iterator<Item = &WebhookTarget> {
        self.webhooks
            .iter()
            .filter(move |target| target.wants(event, channel))
    }
}

/// The webhook event types (spec §9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    CacheMiss,
    SubscriptionCount,
}

/// One `[[apps.webhooks]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WebhookTarget {
    pub url: String,
    pub event_types: Vec<WebhookKind>,
    /// Extra request headers (the `X-Pusher-*` and `Content-Type` headers cannot be replaced).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub filter: WebhookFilter,
}

/// Which channels a webhook target hears about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct WebhookFilter {
    #[serde(default)]
    pub channel_prefix: Option<String>,
    #[serde(default)]
    pub channel_suffix: Option<String>,
}

impl WebhookTarget {
    fn wants(&self, event: WebhookKind, channel: &str) -> bool {
        self.event_types.contains(&event)
            && self
                .filter
                .channel_prefix
                .as_deref()
                .is_none_or(|prefix| channel.starts_with(prefix))
            && self
                .filter
                .channel_suffix
                .as_deref()
                .is_none_or(|suffix| channel.ends_with(suffix))
    }
}

/// Where apps come from.
pub trait AppStore: Send + Sync + 'static {
    fn find_by_key(&self, key: &str) -> Option<Arc<App>>;
    fn find_by_id(&self, id: &str) -> Option<Arc<App>>;
    /// Every app, by id (for the dashboard).
    fn all(&self) -> Vec<Arc<App>>;
}

/// Apps from the configuration, indexed by key and by id.
pub struct ConfigAppStore {
    by_key: HashMap<String, Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
}

impl ConfigAppStore {
    /// Apps must already be validated (unique ids and keys).
    pub fn new(apps: impl IntoIterator<Item = App>) -> Self {
        let apps: Vec<Arc<App>> = apps.into_iter().map(Arc::new).collect();
        Self {
            by_key: apps.iter().map(|a| (a.key.clone(), a.clone())).collect(),
            by_id: apps.iter().map(|a| (a.id.clone(), a.clone())).collect(),
        }
    }
}

impl AppStore for ConfigAppStore {
    fn find_by_key(&self, key: &str) -> Option<Arc<App>> {
        self.by_key.get(key).cloned()
    }

    fn find_by_id(&self, id: &str) -> Option<Arc<App>> {
        self.by_id.get(id).cloned()
    }

    fn all(&self) -> Vec<Arc<App>> {
        let mut apps: Vec<Arc<App>> = self.by_id.values().cloned().collect();
        apps.sort_by(|a, b| a.id.cmp(&b.id));
        apps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_secret() {
        let app = App::new("1", "app-key", "very-secret-value");
        let shown = format!("{app:?} {:?}", app.secret);
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(shown.contains("app-key"));
    }

    #[test]
    fn webhook_targets_filter_by_type_and_channel() {
        let mut app = App::new("1", "k", "s");
        app.webhooks.push(WebhookTarget {
            url: "http://x".into(),
            event_types: vec![WebhookKind::ChannelOccupied],
            headers: Default::default(),
            filter: WebhookFilter {
                channel_prefix: Some("private-".into()),
                channel_suffix: None,
            },
        });
        assert_eq!(
            app.webhook_targets(WebhookKind::ChannelOccupied, "private-a")
                .count(),
            1
        );
        assert_eq!(
            app.webhook_targets(WebhookKind::ChannelOccupied, "public")
                .count(),
            0
        );
        assert_eq!(
            app.webhook_targets(WebhookKind::ChannelVacated, "private-a")
                .count(),
            0
        );
    }

    #[test]
    fn store_finds_by_key_and_id() {
        let store = ConfigAppStore::new([App::new("7", "k", "s")]);
        assert_eq!(
            store.find_by_key("k").map(|a| a.id.clone()),
            Some("7".into())
        );
        assert!(store.find_by_id("7").is_some());
        assert!(store.find_by_key("7").is_none());
    }
}
