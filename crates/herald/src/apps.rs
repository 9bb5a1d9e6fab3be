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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    #[serde(default)]
    pub limits: Limits,
}

fn enabled_by_default() -> bool {
    true
}

/// Where apps come from.
pub trait AppStore: Send + Sync + 'static {
    fn find_by_key(&self, key: &str) -> Option<Arc<App>>;
    fn find_by_id(&self, id: &str) -> Option<Arc<App>>;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_secret() {
        let app = App {
            id: "1".into(),
            key: "app-key".into(),
            secret: Secret::new("very-secret-value"),
            enable_client_messages: false,
            enabled: true,
            max_connections: 0,
            limits: Limits::default(),
        };
        let shown = format!("{app:?} {:?}", app.secret);
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(shown.contains("app-key"));
    }

    #[test]
    fn store_finds_by_key_and_id() {
        let store = ConfigAppStore::new([App {
            id: "7".into(),
            key: "k".into(),
            secret: Secret::new("s"),
            enable_client_messages: false,
            enabled: true,
            max_connections: 0,
            limits: Limits::default(),
        }]);
        assert_eq!(
            store.find_by_key("k").map(|a| a.id.clone()),
            Some("7".into())
        );
        assert!(store.find_by_id("7").is_some());
        assert!(store.find_by_key("7").is_none());
    }
}
