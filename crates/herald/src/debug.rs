//! The debug console's feed: what happens on this node (connections, subscriptions, events,
//! webhooks) as [`DebugEvent`]s, for dashboard viewers here and, in a cluster, on other
//! nodes. Costs one atomic load per happening when nobody watches anywhere; a viewer gets a
//! bounded queue that drops the oldest events (and says how many) instead of slowing anyone.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Events a viewer may fall behind by before it loses the oldest.
pub const VIEWER_QUEUE: usize = 256;
/// Event data shown in the console is cut at this many bytes.
const DATA_SHOWN: usize = 1_024;

/// One thing that happened, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugEvent {
    pub time_ms: u64,
    /// The node it happened on.
    pub node: String,
    pub app_id: String,
    /// `connection_opened`, `connection_closed`, `subscribed`, `unsubscribed`, `api_event`,
    /// `client_event`, `webhook`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// A close code, a webhook's outcome, a remote address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl DebugEvent {
    pub fn new(app_id: &str, kind: &str) -> Self {
        Self {
            time_ms: crate::webhooks::now_ms(),
            node: String::new(),
            app_id: app_id.to_owned(),
            kind: kind.to_owned(),
            channel: None,
            event: None,
            socket_id: None,
            data: None,
            detail: None,
        }
    }

    pub fn channel(mut self, channel: &str) -> Self {
        self.channel = Some(channel.to_owned());
        self
    }

    pub fn event(mut self, event: &str) -> Self {
        self.event = Some(event.to_owned());
        self
    }

    pub fn socket(mut self, socket: impl ToString) -> Self {
        self.socket_id = Some(socket.to_string());
        self
    }

    pub fn data(mut self, data: &str) -> Self {
        let mut end = data.len().min(DATA_SHOWN);
        while !data.is_char_boundary(end) {
            end -= 1;
        }
        self.data = Some(data[..end].to_owned());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Sends an event to the other nodes.
pub type Forward = Box<dyn Fn(&DebugEvent) + Send + Sync>;

/// The feed of one node.
pub struct Tap {
    /// This node's id, set once it is known (in a cluster).
    node: std::sync::OnceLock<String>,
    viewers: AtomicUsize,
    /// Another node has a viewer: this node's events go to it over the cluster.
    remote: AtomicBool,
    sender: broadcast::Sender<DebugEvent>,
    /// Sends an event to the other nodes (set when clustered).
    forward: std::sync::OnceLock<Forward>,
}

impl Tap {
    pub fn new() -> Self {
        Self {
            node: std::sync::OnceLock::new(),
            viewers: AtomicUsize::new(0),
            remote: AtomicBool::new(false),
            sender: broadcast::channel(VIEWER_QUEUE).0,
            forward: std::sync::OnceLock::new(),
        }
    }

    /// Whether anyone, here or on another node, watches. One relaxed load (two in a
    /// cluster): the cost of the console when nobody uses it.
    pub fn is_watched(&self) -> bool {
        self.viewers.load(Relaxed) > 0 || self.remote.load(Relaxed)
    }

    /// Records what `make` builds, only when someone watches.
    pub fn record(&self, make: impl FnOnce() -> DebugEvent) {
        if !self.is_watched() {
            return;
        }
        let mut event = make();
        if let Some(node) = self.node.get() {
            event.node.clone_from(node);
        }
        if self.remote.load(Relaxed)
            && let Some(forward) = self.forward.get()
        {
            forward(&event);
        }
        if self.viewers.load(Relaxed) > 0 {
            let _ = self.sender.send(event);
        }
    }

    /// An event from another node, for this node's viewers.
    pub fn relay(&self, event: DebugEvent) {
        if self.viewers.load(Relaxed) > 0 {
            let _ = self.sender.send(event);
        }
    }

    /// A new viewer; it stops counting when the [`Viewer`] is dropped.
    pub fn watch(self: &std::sync::Arc<Self>) -> Viewer {
        self.viewers.fetch_add(1, Relaxed);
        Viewer {
            events: self.sender.subscribe(),
            tap: self.clone(),
        }
    }

    /// Viewers on this node.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Relaxed)
    }

    /// Names this node in its events.
    pub fn set_node(&self, node: &str) {
        let _ = self.node.set(node.to_owned());
    }

    pub fn set_remote_watching(&self, watching: bool) {
        self.remote.store(watching, Relaxed);
    }

    /// How events reach other nodes.
    pub fn set_forward(&self, forward: Forward) {
        let _ = self.forward.set(forward);
    }
}

impl Default for Tap {
    fn default() -> Self {
        Self::new()
    }
}

/// One viewer's bounded queue.
pub struct Viewer {
    pub events: broadcast::Receiver<DebugEvent>,
    tap: std::sync::Arc<Tap>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.tap.viewers.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_built_unless_someone_watches_and_a_slow_viewer_loses_the_oldest() {
        let tap = std::sync::Arc::new(Tap::new());
        tap.set_node("n1");
        tap.record(|| panic!("built with nobody watching"));
        let mut viewer = tap.watch();
        for n in 0..VIEWER_QUEUE + 10 {
            tap.record(|| DebugEvent::new("1", "api_event").event(&n.to_string()));
        }
        assert!(matches!(
            viewer.events.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
        let next = viewer.events.try_recv().expect("the oldest kept");
        assert_eq!(
            (next.event.as_deref(), next.node.as_str()),
            (Some("10"), "n1")
        );
        drop(viewer);
        assert_eq!(tap.viewers(), 0);
        tap.record(|| panic!("built after the last viewer left"));
    }

    #[test]
    fn data_is_cut_on_a_character_boundary() {
        let long = "é".repeat(DATA_SHOWN);
        let event = DebugEvent::new("1", "api_event").data(&long);
        let shown = event.data.expect("data");
        assert!(shown.len() <= DATA_SHOWN && shown.chars().all(|c| c == 'é'));
    }
}
