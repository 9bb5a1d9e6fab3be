//! Webhooks that are never lost: events are written to a durable SQLite outbox before any
//! attempt, sent signed (spec §9.1), retried with backoff, and kept as dead letters when
//! their receiver never accepts them. Nothing here runs on the WebSocket path: connections
//! only push events into an in-memory queue that the ingest task drains.

mod ingest;
mod sender;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use herald_protocol::webhook::WebhookEvent;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::apps::{App, AppStore, WebhookKind};
use crate::metrics::Metrics;
pub use store::{Store, StoredEvent};

/// `[webhooks]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Where the outbox database lives.
    pub data_dir: PathBuf,
    /// How long an event is retried before it becomes a dead letter.
    pub retry_for: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
    /// How long `channel_vacated` and `member_removed` wait for a cancelling re-add.
    pub removal_delay: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("herald-data"),
            retry_for: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            removal_delay: Duration::from_secs(3),
        }
    }
}

/// One event for one target, on its way to the outbox.
#[derive(Debug)]
enum Job {
    Event {
        app_id: String,
        url: String,
        event: WebhookEvent,
    },
    /// Answered once every job queued before it is stored.
    Flush(oneshot::Sender<()>),
}

/// The handle connections and the API use to emit webhook events.
#[derive(Clone)]
pub struct Webhooks {
    jobs: mpsc::UnboundedSender<Job>,
}

/// The configured event type of an event.
pub fn kind(event: &WebhookEvent) -> WebhookKind {
    match event {
        WebhookEvent::ChannelOccupied { .. } => WebhookKind::ChannelOccupied,
        WebhookEvent::ChannelVacated { .. } => WebhookKind::ChannelVacated,
        WebhookEvent::MemberAdded { .. } => WebhookKind::MemberAdded,
        WebhookEvent::MemberRemoved { .. } => WebhookKind::MemberRemoved,
        WebhookEvent::ClientEvent { .. } => WebhookKind::ClientEvent,
        WebhookEvent::CacheMiss { .. } => WebhookKind::CacheMiss,
        WebhookEvent::SubscriptionCount { .. } => WebhookKind::SubscriptionCount,
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Webhooks {
    /// Opens the outbox and starts the ingest and delivery tasks; delivery stops when
    /// `shutdown` is cancelled (what is left is sent after the next start).
    pub fn start(
        settings: WebhookSettings,
        apps: Arc<dyn AppStore>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> rusqlite::Result<Self> {
        let store = Arc::new(std::sync::Mutex::new(Store::open(&settings.data_dir)?));
        let (jobs, receiver) = mpsc::unbounded_channel();
        let wake = Arc::new(tokio::sync::Notify::new());
        let settings = Arc::new(settings);
        tokio::spawn(ingest::run(
            receiver,
            store.clone(),
            settings.clone(),
            wake.clone(),
        ));
        tokio::spawn(sender::run(store, apps, settings, metrics, wake, shutdown));
        Ok(Self { jobs })
    }

    /// Queues `event` for every target of `app` that wants it. Never waits.
    pub fn emit(&self, app: &App, event: WebhookEvent) {
        for target in app.webhook_targets(kind(&event), event.channel()) {
            let job = Job::Event {
                app_id: app.id.clone(),
                url: target.url.clone(),
                event: event.clone(),
            };
            if self.jobs.send(job).is_err() {
                tracing::error!(app_id = %app.id, "webhook queue closed; event not stored");
            }
        }
    }

    /// Waits until every event emitted so far is in the outbox.
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.jobs.send(Job::Flush(done)).is_ok() {
            let _ = stored.await;
        }
    }
}
