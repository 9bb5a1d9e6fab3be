//! Moves emitted events into the outbox, in batches, and applies the removal delay
//! (spec §9.3): `channel_vacated`/`member_removed` wait, and a matching re-add within the
//! window cancels both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use herald_protocol::webhook::WebhookEvent;
use tokio::sync::{Notify, mpsc};

use super::store::{NewEvent, Store};
use super::{Job, WebhookSettings, now_ms};

/// Jobs taken from the queue per transaction.
const BATCH: usize = 1_000;

/// A delayed removal that a re-add may still cancel.
struct Delayed {
    id: String,
    until_ms: u64,
}

/// `(app, url, channel, user)` identifies a removal and the re-add that cancels it.
type RemovalKey = (String, String, String, Option<String>);

pub(super) async fn run(
    mut jobs: mpsc::UnboundedReceiver<Job>,
    store: Arc<Mutex<Store>>,
    settings: Arc<WebhookSettings>,
    wake: Arc<Notify>,
) {
    let mut delayed: HashMap<RemovalKey, Delayed> = HashMap::new();
    let mut batch = Vec::with_capacity(BATCH);
    while jobs.recv_many(&mut batch, BATCH).await > 0 {
        let now = now_ms();
        delayed.retain(|_, d| d.until_ms > now);
        let mut rows: Vec<(String, String, String, String, u64)> = Vec::new();
        let mut cancels = Vec::new();
        let mut flushes = Vec::new();
        for job in batch.drain(..) {
            match job {
                Job::Flush(done) => flushes.push(done),
                Job::Event { app_id, url, event } => {
                    let removal = removal_key(&app_id, &url, &event);
                    if let Some((key, is_removal)) = removal {
                        if !is_removal && let Some(pending) = delayed.remove(&key) {
                            // Re-added within the window: neither webhook is sent.
                            cancels.push(pending.id);
                            continue;
                        }
                        if is_removal {
                            let id = new_id();
                            let until_ms = now + settings.removal_delay.as_millis() as u64;
                            delayed.insert(
                                key,
                                Delayed {
                                    id: id.clone(),
                                    until_ms,
                                },
                            );
                            rows.push((
                                id.clone(),
                                app_id,
                                url,
                                event.to_json_with_id(&id),
                                until_ms,
                            ));
                            continue;
                        }
                    }
                    let id = new_id();
                    rows.push((id.clone(), app_id, url, event.to_json_with_id(&id), now));
                }
            }
        }
        let store = store.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            let events: Vec<NewEvent<'_>> = rows
                .iter()
                .map(|(id, app_id, url, event, not_before_ms)| NewEvent {
                    id,
                    app_id,
                    url,
                    event,
                    not_before_ms: *not_before_ms,
                })
                .collect();
            store.insert(&events, now)?;
            for id in &cancels {
                store.cancel(id)?;
            }
            Ok::<_, rusqlite::Error>(())
        })
        .await;
        match stored {
            Ok(Ok(())) => wake.notify_one(),
            Ok(Err(e)) => tracing::error!(error = %e, "cannot store webhook events"),
            Err(e) => tracing::error!(error = %e, "webhook store task failed"),
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// For removals and the re-adds that cancel them: the key, and whether it is the removal.
fn removal_key(app_id: &str, url: &str, event: &WebhookEvent) -> Option<(RemovalKey, bool)> {
    let (channel, user, is_removal) = match event {
        WebhookEvent::ChannelVacated { channel } => (channel, None, true),
        WebhookEvent::ChannelOccupied { channel } => (channel, None, false),
        WebhookEvent::MemberRemoved { channel, user_id } => (channel, Some(user_id), true),
        WebhookEvent::MemberAdded { channel, user_id } => (channel, Some(user_id), false),
        _ => return None,
    };
    let key = (
        app_id.to_owned(),
        url.to_owned(),
        channel.clone(),
        user.cloned(),
    );
    Some((key, is_removal))
}

/// A unique event id: 128 random bits in hex.
fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
