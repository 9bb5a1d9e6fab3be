//! Webhooks that are never lost while Herald keeps up: events are written to a durable SQLite
//! outbox before any attempt, sent signed (spec §9.1), retried with backoff, and kept for a
//! while as dead letters. Every stage is bounded; what does not fit is dropped and counted.

mod debounce;
mod health;
mod ingest;
mod retention;
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
pub use health::redact;
pub use store::{NewEvent, Store, StoredEvent};

/// `[webhooks]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Where the outbox database (and the usage database beside it) lives.
    pub data_dir: PathBuf,
    /// True when the configuration names `data_dir`: usage is then kept there even when no
    /// app has webhooks (see [`WebhookSettings::durable_dir`]).
    pub data_dir_configured: bool,
    /// How long an event is retried before it becomes a dead letter.
    pub retry_for: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
    /// How long `channel_vacated` and `member_removed` wait for a cancelling re-add.
    pub removal_delay: Duration,
    /// How long `channel_occupied` and `member_added` are held in memory; a matching removal
    /// within it cancels both and nothing is stored.
    pub addition_delay: Duration,
    /// Events waiting in memory for the outbox; when full, new events are dropped.
    pub queue_capacity: usize,
    /// Events of one app waiting in the outbox; beyond it the app's new events are dropped.
    pub max_pending: usize,
    /// How long a dead letter is kept after its last attempt.
    pub dead_letter_retention: Duration,
    /// Dead letters kept per app; the oldest are deleted first.
    pub max_dead_letters: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("herald-data"),
            data_dir_configured: false,
            retry_for: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            removal_delay: Duration::from_secs(3),
            // Long enough that a subscribe/unsubscribe loop never reaches the disk, short
            // enough that a receiver hears of a new channel within about a second.
            addition_delay: Duration::from_secs(1),
            // About 3 MB of typical events; 100 MB if all were 10 KB client events.
            queue_capacity: 10_000,
            // About 30 MB of disk per app (a row takes ~300 bytes).
            max_pending: 100_000,
            dead_letter_retention: Duration::from_secs(7 * 86_400),
            max_dead_letters: 100_000,
        }
    }
}

impl WebhookSettings {
    /// The directory Herald writes to, if any: `data_dir` once some app has webhooks (the
    /// outbox needs it) or the configuration names it. Otherwise (the development default)
    /// nothing is written, so a server started anywhere leaves no `herald-data/` behind.
    pub fn durable_dir(&self, has_webhooks: bool) -> Option<&std::path::Path> {
        (has_webhooks || self.data_dir_configured).then_some(self.data_dir.as_path())
    }
}

/// How often repeated conditions (drops, failing targets) are summarised in the log.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// How long shutdown waits for queued events to reach the outbox.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// One event for one target, on its way to the outbox.
#[derive(Debug)]
enum Job {
    Event {
        app_id: String,
        url: String,
        event: WebhookEvent,
        /// When it was emitted: the settle windows count from here.
        at: tokio::time::Instant,
    },
    /// Answered once every job queued before it, and every held addition, is stored.
    Flush(oneshot::Sender<()>),
}

/// The handle connections and the API use to emit webhook events.
#[derive(Clone)]
pub struct Webhooks {
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
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
    /// Opens the outbox and starts the ingest, delivery and retention tasks; delivery and
    /// retention stop when `shutdown` is cancelled (what is left is sent after the next start).
    pub fn start(
        settings: WebhookSettings,
        apps: Arc<dyn AppStore>,
        metrics: Arc<Metrics>,
        debug: Arc<crate::debug::Tap>,
        shutdown: CancellationToken,
    ) -> rusqlite::Result<Self> {
        let store = Arc::new(std::sync::Mutex::new(Store::open(&settings.data_dir)?));
        let (jobs, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let wake = Arc::new(tokio::sync::Notify::new());
        let settings = Arc::new(settings);
        tokio::spawn(ingest::run(
            receiver,
            store.clone(),
            settings.clone(),
            wake.clone(),
            metrics.clone(),
        ));
        tokio::spawn(retention::run(
            store.clone(),
            settings.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(sender::run(
            store,
            apps,
            settings,
            metrics.clone(),
            debug,
            wake,
            shutdown,
        ));
        Ok(Self { jobs, metrics })
    }

    /// Queues `event` for every target of `app` that wants it. Never waits: when the queue
    /// is full the new event is dropped and counted (`herald_webhooks_dropped_total`); the
    /// ingest task logs drops at most once a minute.
    pub fn emit(&self, app: &App, event: WebhookEvent) {
        let at = tokio::time::Instant::now();
        let queued = &self.metrics.app(&app.id).webhooks_queued;
        for target in app.webhook_targets(kind(&event), event.channel()) {
            queued.inc();
            let job = Job::Event {
                app_id: app.id.clone(),
                url: target.url.clone(),
                event: event.clone(),
                at,
            };
            if let Err(e) = self.jobs.try_send(job) {
                match e {
                    mpsc::error::TrySendError::Full(_) => {
                        Metrics::add(&self.metrics.webhooks_dropped, 1);
                        // The ingest task sets the depth when it takes jobs; while it is
                        // stuck, this keeps the gauge honest.
                        let depth = self.jobs.max_capacity() as i64;
                        self.metrics.webhook_queue_depth.set(depth);
                    }
                    mpsc::error::TrySendError::Closed(_) => {
                        tracing::error!(app_id = %app.id, "webhook queue closed; event not stored");
                    }
                }
            }
        }
    }

    /// Waits until every event emitted so far, and every addition still held back, is in
    /// the outbox; gives up after [`FLUSH_WAIT`] so a backlog cannot hold up shutdown.
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        let flushed = tokio::time::timeout(FLUSH_WAIT, async {
            if self.jobs.send(Job::Flush(done)).await.is_ok() {
                let _ = stored.await;
            }
        })
        .await;
        if flushed.is_err() {
            let queued = self.jobs.max_capacity() - self.jobs.capacity();
            tracing::warn!(
                queued,
                "webhook events still queued at shutdown were not stored"
            );
        }
    }
}
