//! Keeps dead letters from filling the disk: once a minute (or once per retention period,
//! if shorter), deletes those older than
//! `dead_letter_retention` and the oldest beyond `max_dead_letters` per app. Delivered events
//! need nothing here: the sender deletes them on the receiver's 2xx.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::store::Store;
use super::{WebhookSettings, now_ms};

/// How often dead letters are pruned at most (the first time at start).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub(super) async fn run(
    store: Arc<Mutex<Store>>,
    settings: Arc<WebhookSettings>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(PRUNE_EVERY.min(settings.dead_letter_retention));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let (store, settings) = (store.clone(), settings.clone());
        let pruned = tokio::task::spawn_blocking(move || {
            let died_before =
                now_ms().saturating_sub(settings.dead_letter_retention.as_millis() as u64);
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            store.prune_dead_letters(died_before, settings.max_dead_letters)
        })
        .await;
        match pruned {
            Ok(Ok(0)) | Err(_) => {}
            Ok(Ok(deleted)) => tracing::info!(
                deleted,
                "deleted dead letters past dead_letter_retention or max_dead_letters"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "cannot prune webhook dead letters"),
        }
    }
}
