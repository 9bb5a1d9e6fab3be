//! Delivers due outbox events: signed POSTs (spec §9.1), several events per request when the
//! app batches, 2xx deletes them, anything else schedules a retry or a dead letter. Failures
//! are counted per attempt but logged per target state ([`super::health`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_protocol::auth;
use herald_protocol::webhook::body;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::health::{self, TargetHealth};
use super::store::{Store, StoredEvent};
use super::{WebhookSettings, now_ms, redact};
use crate::apps::{App, AppStore};
use crate::debug::Tap;
use crate::metrics::Metrics;

/// Events fetched per pass, requests in flight, events per batched request.
const FETCH: usize = 500;
const CONCURRENCY: usize = 32;
const PER_REQUEST: usize = 50;
/// How often the outbox is polled when nothing wakes the sender.
const POLL: Duration = Duration::from_millis(500);
/// How often the outbox gauges (pending events, oldest age) are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

struct Sender {
    store: Arc<Mutex<Store>>,
    apps: Arc<dyn AppStore>,
    settings: Arc<WebhookSettings>,
    metrics: Arc<Metrics>,
    debug: Arc<Tap>,
    http: reqwest::Client,
    /// Events being sent. Read and changed only while the store is locked, so a due-query
    /// and a completed delivery can never interleave (which would send an event twice).
    in_flight: Arc<Mutex<HashSet<String>>>,
    permits: Arc<Semaphore>,
    wake: Arc<Notify>,
    health: Mutex<TargetHealth>,
}

pub(super) async fn run(
    store: Arc<Mutex<Store>>,
    apps: Arc<dyn AppStore>,
    settings: Arc<WebhookSettings>,
    metrics: Arc<Metrics>,
    debug: Arc<Tap>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let http = match reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(http) => http,
        Err(e) => return tracing::error!(error = %e, "cannot build the webhook HTTP client"),
    };
    let sender = Arc::new(Sender {
        store,
        apps,
        settings,
        metrics,
        debug,
        http,
        in_flight: Arc::default(),
        permits: Arc::new(Semaphore::new(CONCURRENCY)),
        wake,
        health: Mutex::default(),
    });
    let mut gauges_at: Option<tokio::time::Instant> = None;
    loop {
        sender.clone().dispatch_due().await;
        sender.summarise_failures();
        if gauges_at.is_none_or(|at| at.elapsed() >= GAUGES_EVERY) {
            sender.refresh_gauges().await;
            gauges_at = Some(tokio::time::Instant::now());
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = sender.wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

impl Sender {
    async fn dispatch_due(self: Arc<Self>) {
        let (store, in_flight) = (self.store.clone(), self.in_flight.clone());
        let due = tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(|p| p.into_inner());
            let due = store.due(now_ms(), FETCH)?;
            let mut in_flight = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let fresh: Vec<StoredEvent> = due
                .into_iter()
                .filter(|e| in_flight.insert(e.id.clone()))
                .collect();
            Ok::<_, rusqlite::Error>(fresh)
        })
        .await;
        let fresh = match due {
            Ok(Ok(fresh)) => fresh,
            Ok(Err(e)) => return tracing::error!(error = %e, "cannot read the webhook outbox"),
            Err(_) => return,
        };
        for (target, events) in group(fresh) {
            let app = self.apps.find_by_id(&target.0);
            let per_request = if app.as_ref().is_some_and(|a| a.webhook_batching) {
                PER_REQUEST
            } else {
                1
            };
            for chunk in events.chunks(per_request) {
                let sender = self.clone();
                let (app, url, chunk) = (app.clone(), target.1.clone(), chunk.to_vec());
                let Ok(permit) = self.permits.clone().acquire_owned().await else {
                    return;
                };
                tokio::spawn(async move {
                    let started = tokio::time::Instant::now();
                    let outcome = sender.deliver(app.as_deref(), &url, &chunk).await;
                    sender.metrics.webhook_request.observe(started.elapsed());
                    if let Some(first) = chunk.first() {
                        sender.metrics.app(&first.app_id).webhook_requests.inc();
                    }
                    sender.record(chunk, outcome).await;
                    drop(permit);
                });
            }
        }
    }

    /// POSTs the events; `Err` carries why the attempt failed.
    async fn deliver(
        &self,
        app: Option<&App>,
        url: &str,
        events: &[StoredEvent],
    ) -> Result<(), String> {
        let app = app.ok_or("the app is no longer configured")?;
        let target = app.webhooks.iter().find(|t| t.url == url);
        let jsons: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        // `time_ms` is when the webhook was created (spec §9.2), kept across retries; a
        // replayed dead letter counts as created at its replay.
        let created = events
            .iter()
            .map(|e| e.created_ms)
            .max()
            .unwrap_or_else(now_ms);
        let body = body(created, &jsons);
        let signature = auth::sign(app.secret.expose(), body.as_bytes());
        let mut request = self.http.post(url);
        for (name, value) in target.map(|t| &t.headers).into_iter().flatten() {
            request = request.header(name, value);
        }
        let response = request
            .header("Content-Type", "application/json")
            .header("X-Pusher-Key", &app.key)
            .header("X-Pusher-Signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", describe(e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }

    async fn record(&self, events: Vec<StoredEvent>, outcome: Result<(), String>) {
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        let (store, retry_for) = (
            self.store.clone(),
            self.settings.retry_for.as_millis() as u64,
        );
        let url = events.first().map(|e| e.url.clone()).unwrap_or_default();
        let failure = outcome.clone().err();
        self.debug.record(|| {
            let outcome = failure.clone().unwrap_or_else(|| "delivered".into());
            let names: Vec<&str> = events.iter().filter_map(|e| event_name(&e.event)).collect();
            let app_id = events.first().map_or("", |e| e.app_id.as_str());
            crate::debug::DebugEvent::new(app_id, "webhook")
                .event(&names.join(","))
                .detail(format!("{} to {}", outcome, redact(&url)))
        });
        let (ids_for_store, in_flight) = (ids.clone(), self.in_flight.clone());
        let written = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            let written = match &failure {
                None => store.delivered(&ids_for_store).map(|()| 0),
                Some(error) => store.failed(&ids_for_store, error, now_ms(), retry_for),
            };
            let mut in_flight = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            for id in &ids_for_store {
                in_flight.remove(id);
            }
            written
        })
        .await;
        let count = ids.len() as u64;
        let app_id = events
            .first()
            .map(|e| e.app_id.as_str())
            .unwrap_or_default();
        let metrics = self.metrics.app(app_id);
        let report = match (&outcome, written) {
            (Ok(()), Ok(Ok(_))) => {
                metrics.webhooks_delivered.inc_by(count);
                let now = now_ms();
                for event in &events {
                    let age = Duration::from_millis(now.saturating_sub(event.created_ms));
                    self.metrics.webhook_latency.observe(age);
                }
                tracing::debug!(url = %redact(&url), events = count, "webhook delivered");
                let now = tokio::time::Instant::now();
                self.health().succeeded(app_id, &url, now);
                None
            }
            (Err(error), Ok(Ok(dead))) => {
                metrics.webhooks_failed.inc_by(count);
                metrics.webhooks_dead.inc_by(dead as u64);
                let now = tokio::time::Instant::now();
                self.health().failed(app_id, &url, error, dead as u64, now)
            }
            (_, Ok(Err(e))) => {
                tracing::error!(error = %e, "cannot update the webhook outbox");
                None
            }
            (_, Err(_)) => None,
        };
        if let Some(report) = report {
            health::log(app_id, &url, &report);
        }
    }

    /// Pending events per app and the oldest one's age, into the metrics.
    async fn refresh_gauges(&self) {
        let store = self.store.clone();
        let summary = tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(|p| p.into_inner());
            store.pending_summary()
        })
        .await;
        let Ok(Ok(summary)) = summary else {
            return;
        };
        for (_, app) in self.metrics.apps() {
            app.webhooks_pending.set(0);
        }
        let now = now_ms();
        let mut oldest = now;
        for (app_id, count, created) in summary {
            self.metrics.app(&app_id).webhooks_pending.set(count as i64);
            oldest = oldest.min(created);
        }
        let age = now.saturating_sub(oldest) as f64 / 1000.0;
        self.metrics.webhook_outbox_oldest.set(age);
    }

    fn health(&self) -> std::sync::MutexGuard<'_, TargetHealth> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs the once-a-minute summary of each target still failing.
    fn summarise_failures(&self) {
        let due = self.health().summaries(tokio::time::Instant::now());
        for ((app_id, url), report) in due {
            health::log(&app_id, &url, &report);
        }
    }
}

/// The `name` of a stored event's JSON.
fn event_name(json: &str) -> Option<&str> {
    let rest = &json[json.find(r#""name":""#)? + 8..];
    rest.get(..rest.find('"')?)
}

/// Events grouped by `(app id, url)`, each group oldest first.
fn group(events: Vec<StoredEvent>) -> BTreeMap<(String, String), Vec<StoredEvent>> {
    let mut groups: BTreeMap<(String, String), Vec<StoredEvent>> = BTreeMap::new();
    for event in events {
        groups
            .entry((event.app_id.clone(), event.url.clone()))
            .or_default()
            .push(event);
    }
    groups
}

/// reqwest errors print the URL, which may carry credentials; keep only the cause (this
/// text is also stored as the event's `last_error`).
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection refused or unreachable".into()
    } else {
        error.without_url().to_string()
    }
}
