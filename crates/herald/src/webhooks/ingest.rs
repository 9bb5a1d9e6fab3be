//! Moves queued events into the outbox: one transaction per batch of up to [`BATCH`] jobs,
//! after the settle windows of [`Debounce`] and the per-app `max_pending` limit. Reports the
//! queue depth and, at most once a minute, the events lost on the way.

use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::debounce::{Admitted, Debounce};
use super::store::{Inserted, NewEvent, Store};
use super::{Job, LOG_EVERY, WebhookSettings, now_ms};
use crate::metrics::Metrics;

/// Jobs taken from the queue per transaction.
const BATCH: usize = 1_000;

/// What one batch of jobs asks of the outbox.
#[derive(Default)]
struct Work {
    rows: Vec<NewEvent>,
    cancels: Vec<(String, NewEvent)>,
    flushes: Vec<oneshot::Sender<()>>,
    collapsed: u64,
}

pub(super) async fn run(
    mut jobs: mpsc::Receiver<Job>,
    store: Arc<Mutex<Store>>,
    settings: Arc<WebhookSettings>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    let mut debounce = Debounce::new(settings.addition_delay, settings.removal_delay);
    let mut losses = Losses::default();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Wake for the next held addition, and at least once a minute to report losses.
        let until = debounce
            .next_release()
            .unwrap_or_else(|| Instant::now() + LOG_EVERY);
        tokio::select! {
            received = jobs.recv_many(&mut batch, BATCH) => if received == 0 { break },
            () = tokio::time::sleep_until(until) => {}
        }
        metrics.webhook_queue_depth.set(jobs.len() as i64);
        let now = Instant::now();
        let horizon = if jobs.is_empty() {
            Some(now)
        } else {
            batch.iter().rev().find_map(|job| match job {
                Job::Event { at, .. } => Some(*at),
                Job::Flush(_) => None,
            })
        };
        let mut work = admit(&mut debounce, batch.drain(..), now, horizon);
        Metrics::add(&metrics.webhooks_collapsed, work.collapsed);
        let flushes = std::mem::take(&mut work.flushes);
        if !work.rows.is_empty() || !work.cancels.is_empty() {
            let events = (work.rows.len() + work.cancels.len()) as u64;
            match store_batch(&store, work, settings.max_pending).await {
                Ok(done) => {
                    Metrics::add(&metrics.webhooks_collapsed, 2 * done.cancelled as u64);
                    Metrics::add(&metrics.webhooks_dropped, done.refused as u64);
                    losses.over_limit += done.refused as u64;
                    wake.notify_one();
                }
                Err(error) => {
                    Metrics::add(&metrics.webhooks_dropped, events);
                    losses.store_failed += events;
                    losses.last_error = Some(error);
                }
            }
        }
        let dropped = metrics.webhooks_dropped.get();
        if let Some(report) = losses.due(now, dropped) {
            report.log(settings.max_pending);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Applies the settle windows to a batch of jobs, then releases the held additions whose
/// window ended by `horizon` (`None`: jobs emitted earlier may still be queued, and one of
/// them may cancel an addition); a flush releases every held addition.
fn admit(
    debounce: &mut Debounce,
    jobs: impl Iterator<Item = Job>,
    now: Instant,
    horizon: Option<Instant>,
) -> Work {
    let now_ms = now_ms();
    let mut work = Work::default();
    for job in jobs {
        let (app_id, url, event, at) = match job {
            Job::Flush(done) => {
                work.flushes.push(done);
                continue;
            }
            Job::Event {
                app_id,
                url,
                event,
                at,
            } => (app_id, url, event, at),
        };
        let at_ms = now_ms.saturating_sub(now.saturating_duration_since(at).as_millis() as u64);
        match debounce.admit(&app_id, &url, &event, at, at_ms) {
            Admitted::Store(row) => work.rows.push(row),
            Admitted::Held => {}
            Admitted::Collapsed => work.collapsed += 2,
            Admitted::Cancel { removal, addition } => work.cancels.push((removal, addition)),
            Admitted::StoreAfter { released, event } => {
                work.rows.extend(released);
                work.rows.push(event);
            }
        }
    }
    let released = if work.flushes.is_empty() {
        horizon.map(|h| debounce.release(h)).unwrap_or_default()
    } else {
        debounce.release_all()
    };
    // Released additions were emitted before this batch: they go first.
    work.rows.splice(0..0, released);
    work
}

/// One transaction on a blocking thread; the error says why it failed.
async fn store_batch(
    store: &Arc<Mutex<Store>>,
    work: Work,
    max_pending: usize,
) -> Result<Inserted, String> {
    let store = store.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
        store.insert(work.rows, work.cancels, max_pending)
    })
    .await;
    match stored {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the store task failed: {e}")),
    }
}

/// Events lost on the way to the outbox, reported at once the first time, then at most once
/// per [`LOG_EVERY`], each report summing what happened since the last.
#[derive(Default)]
struct Losses {
    /// Totals so far of the causes the ingest task sees; the rest of the drop counter is
    /// queue overflow, counted by `emit`.
    over_limit: u64,
    store_failed: u64,
    last_error: Option<String>,
    /// The totals at the last report.
    reported: (u64, u64, u64),
    last: Option<Instant>,
}

/// One report of [`Losses`].
#[derive(Debug, PartialEq, Eq)]
struct LossReport {
    queue_full: u64,
    over_limit: u64,
    store_failed: u64,
    last_error: Option<String>,
}

impl Losses {
    /// What was lost since the last report, when a report is due.
    fn due(&mut self, now: Instant, dropped_total: u64) -> Option<LossReport> {
        let (total, over_limit, store_failed) = self.reported;
        let quiet = self.last.is_none_or(|t| now - t >= LOG_EVERY);
        if dropped_total == total || !quiet {
            return None;
        }
        let over_limit = self.over_limit - over_limit;
        let store_failed = self.store_failed - store_failed;
        self.reported = (dropped_total, self.over_limit, self.store_failed);
        self.last = Some(now);
        Some(LossReport {
            queue_full: (dropped_total - total).saturating_sub(over_limit + store_failed),
            over_limit,
            store_failed,
            last_error: self.last_error.take(),
        })
    }
}

impl LossReport {
    fn log(&self, max_pending: usize) {
        let Self {
            queue_full,
            over_limit,
            store_failed,
            last_error,
        } = self;
        let message = "webhook events dropped: the queue was full, an app had max_pending \
                       events waiting, or the outbox could not be written (next report in a \
                       minute at the earliest)";
        match last_error {
            Some(error) => tracing::error!(
                queue_full,
                over_limit,
                store_failed,
                max_pending,
                %error,
                "{message}"
            ),
            None => tracing::warn!(queue_full, over_limit, max_pending, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use herald_protocol::webhook::WebhookEvent;

    #[test]
    fn losses_are_reported_at_once_then_at_most_once_a_minute() {
        let start = Instant::now();
        let mut losses = Losses::default();
        assert_eq!(losses.due(start, 0), None, "nothing dropped");
        let first = losses.due(start, 3).expect("the first drops at once");
        assert_eq!((first.queue_full, first.over_limit), (3, 0));
        losses.over_limit = 5;
        losses.store_failed = 10;
        losses.last_error = Some("database is locked".into());
        assert_eq!(losses.due(start + Duration::from_secs(30), 1_000), None);
        let report = losses.due(start + Duration::from_secs(60), 2_000);
        assert_eq!(
            report,
            Some(LossReport {
                queue_full: 1_982,
                over_limit: 5,
                store_failed: 10,
                last_error: Some("database is locked".into()),
            })
        );
        assert_eq!(losses.due(start + Duration::from_secs(200), 2_000), None);
    }

    fn event(app: &str, event: WebhookEvent) -> Job {
        Job::Event {
            app_id: app.into(),
            url: "http://sink".into(),
            event,
            at: Instant::now(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_stores_held_additions_and_pairs_within_a_batch_collapse() {
        let mut debounce = Debounce::new(Duration::from_secs(1), Duration::from_secs(3));
        let occupied = |c: &str| WebhookEvent::ChannelOccupied { channel: c.into() };
        let vacated = |c: &str| WebhookEvent::ChannelVacated { channel: c.into() };
        let jobs = vec![
            event("1", occupied("a")),
            event("1", vacated("a")),
            event("1", occupied("b")),
        ];
        let now = Instant::now();
        let work = admit(&mut debounce, jobs.into_iter(), now, Some(now));
        assert_eq!((work.rows.len(), work.collapsed), (0, 2));
        tokio::time::advance(Duration::from_millis(500)).await;
        let (done, _answer) = oneshot::channel();
        let flush = vec![Job::Flush(done)].into_iter();
        let work = admit(&mut debounce, flush, Instant::now(), None);
        assert_eq!(work.rows.len(), 1, "b is stored at the flush");
        assert_eq!(work.flushes.len(), 1);
        assert_eq!(debounce.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_released_while_older_jobs_may_still_be_queued() {
        let mut debounce = Debounce::new(Duration::from_secs(1), Duration::from_secs(3));
        let occupied = WebhookEvent::ChannelOccupied {
            channel: "a".into(),
        };
        let start = Instant::now();
        admit(
            &mut debounce,
            vec![event("1", occupied)].into_iter(),
            start,
            Some(start),
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        let late = admit(&mut debounce, std::iter::empty(), Instant::now(), None);
        assert!(late.rows.is_empty(), "its removal may be next in the queue");
        let done = admit(
            &mut debounce,
            std::iter::empty(),
            Instant::now(),
            Some(Instant::now()),
        );
        assert_eq!(done.rows.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ingest_task_stores_an_addition_when_its_window_ends_and_a_pair_never() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Mutex::new(Store::open(dir.path()).expect("open")));
        let settings = Arc::new(WebhookSettings::default());
        let metrics = Arc::new(Metrics::default());
        let (jobs, receiver) = mpsc::channel(16);
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            receiver,
            store.clone(),
            settings,
            wake,
            metrics.clone(),
        ));
        let occupied = |c: &str| WebhookEvent::ChannelOccupied { channel: c.into() };
        let vacated = |c: &str| WebhookEvent::ChannelVacated { channel: c.into() };
        let rows = || {
            let store = store.lock().expect("lock");
            store.due(u64::MAX / 2, 10).expect("due").len()
        };
        jobs.send(event("1", occupied("kept"))).await.expect("send");
        jobs.send(event("1", occupied("flapping")))
            .await
            .expect("send");
        tokio::time::advance(Duration::from_millis(300)).await;
        jobs.send(event("1", vacated("flapping")))
            .await
            .expect("send");
        tokio::time::advance(Duration::from_millis(600)).await;
        tokio::task::yield_now().await;
        assert_eq!(rows(), 0, "still inside the window");
        // The window of "kept" ends at 1 s; the task's own timer stores it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while rows() == 0 {
            assert!(Instant::now() < deadline, "never stored");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stored = store
            .lock()
            .expect("lock")
            .due(u64::MAX / 2, 10)
            .expect("due");
        assert_eq!(stored.len(), 1);
        assert!(stored[0].event.contains("\"kept\""), "{stored:?}");
        assert_eq!(metrics.webhooks_collapsed.get(), 2);
        drop(jobs);
        task.await.expect("ingest ends when the queue closes");
    }
}
