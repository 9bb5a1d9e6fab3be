//! The settle windows of occupancy and membership webhooks (spec §9.3). An addition
//! (`channel_occupied`, `member_added`) waits `addition_delay` in memory and a matching
//! removal within it cancels both, so a quick subscribe/unsubscribe stores nothing; a removal
//! waits `removal_delay` in the outbox and a re-add within it deletes the stored removal.
//! A client event shows its channel is in use: the channel's held additions go out first.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use herald_protocol::webhook::WebhookEvent;
use tokio::time::Instant;

use super::store::NewEvent;

/// Additions held at most; beyond it they are stored at once (and may be sent in pairs).
pub(super) const HELD_MAX: usize = 10_000;
/// Stored removals a re-add may still cancel; beyond it a re-add is simply sent.
pub(super) const REMOVALS_MAX: usize = 10_000;

/// `(app, url, channel, user)`: an addition and the removal that cancels it share it.
type Key = (String, String, String, Option<String>);

/// What to do with one admitted event.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admitted {
    /// Store it now (its `not_before_ms` may delay the first attempt).
    Store(NewEvent),
    /// An addition held back; [`Debounce::release`] hands it out when its window ends.
    Held,
    /// A removal that cancelled a held addition: neither is stored.
    Collapsed,
    /// A re-add within a stored removal's window: delete that removal and drop the re-add.
    /// Should the removal be gone already (sent), the addition is stored instead.
    Cancel { removal: String, addition: NewEvent },
    /// Store `released` held additions, then `event`: a client event releases those of its
    /// channel and sender, so no receiver hears of activity in a channel it was not told is
    /// occupied; a removal emitted after its addition's window releases that addition.
    StoreAfter {
        released: Vec<NewEvent>,
        event: NewEvent,
    },
}

/// A pending entry: when it ends, and its place in the order.
struct Pending<T> {
    until: Instant,
    seq: u64,
    value: T,
}

/// Entries by key, and their keys in the order their windows end. Every window has the same
/// length, so admission order is expiry order: no stale entries, no scans.
struct Window<T> {
    length: Duration,
    max: usize,
    by_key: HashMap<Key, Pending<T>>,
    order: BTreeMap<u64, Key>,
    seq: u64,
}

impl<T> Window<T> {
    fn new(length: Duration, max: usize) -> Self {
        Self {
            length,
            max,
            by_key: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Adds `value` unless the window is full or `key` is already waiting; gives it back
    /// when it was not added.
    fn insert(&mut self, key: Key, value: T, now: Instant) -> Result<(), T> {
        if self.by_key.len() >= self.max || self.by_key.contains_key(&key) {
            return Err(value);
        }
        self.seq += 1;
        self.order.insert(self.seq, key.clone());
        let until = now + self.length;
        let seq = self.seq;
        self.by_key.insert(key, Pending { until, seq, value });
        Ok(())
    }

    /// When the window of `key` ends, if it is waiting.
    fn until(&self, key: &Key) -> Option<Instant> {
        self.by_key.get(key).map(|p| p.until)
    }

    fn remove(&mut self, key: &Key) -> Option<T> {
        let pending = self.by_key.remove(key)?;
        self.order.remove(&pending.seq);
        Some(pending.value)
    }

    /// Removes and returns the entries whose window ended at `now`, oldest first.
    fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut expired = Vec::new();
        while let Some(entry) = self.order.first_entry() {
            let done = self.by_key.get(entry.get()).is_none_or(|p| p.until <= now);
            if !done {
                break;
            }
            let key = entry.remove();
            expired.extend(self.by_key.remove(&key).map(|p| p.value));
        }
        expired
    }

    fn drain(&mut self) -> Vec<T> {
        let order = std::mem::take(&mut self.order);
        order
            .into_values()
            .filter_map(|key| self.by_key.remove(&key).map(|p| p.value))
            .collect()
    }

    fn next_end(&self) -> Option<Instant> {
        let key = self.order.first_key_value()?.1;
        self.by_key.get(key).map(|p| p.until)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// The ingest task's memory of held additions and of stored removals that may be cancelled.
pub(super) struct Debounce {
    held: Window<NewEvent>,
    /// Ids of stored, not yet due removals.
    removals: Window<String>,
    removal_delay: Duration,
}

impl Debounce {
    pub(super) fn new(addition_delay: Duration, removal_delay: Duration) -> Self {
        Self {
            held: Window::new(addition_delay, HELD_MAX),
            removals: Window::new(removal_delay, REMOVALS_MAX),
            removal_delay,
        }
    }

    /// Decides what becomes of `event` for the target `url` of `app_id`, emitted at `at`
    /// (`at_ms` on the wall clock, for the outbox). Windows count from emission, not from
    /// when the ingest task gets to the event, so a backlog cannot split a quick pair.
    pub(super) fn admit(
        &mut self,
        app_id: &str,
        url: &str,
        event: &WebhookEvent,
        at: Instant,
        at_ms: u64,
    ) -> Admitted {
        self.removals.expire(at);
        let row = || NewEvent::new(app_id, url, event, at_ms, at_ms);
        if let WebhookEvent::ClientEvent {
            channel, user_id, ..
        } = event
        {
            let released = [None, user_id.as_ref()]
                .into_iter()
                .filter_map(|user| {
                    let key = (app_id.into(), url.into(), channel.clone(), user.cloned());
                    self.held.remove(&key)
                })
                .collect();
            return Admitted::StoreAfter {
                released,
                event: row(),
            };
        }
        let Some((key, is_removal)) = key_of(app_id, url, event) else {
            return Admitted::Store(row());
        };
        if is_removal {
            let not_before = at_ms + self.removal_delay.as_millis() as u64;
            let row = NewEvent::new(app_id, url, event, at_ms, not_before);
            return self.removal(key, row, at);
        }
        let row = row();
        if let Some(removal) = self.removals.remove(&key) {
            return Admitted::Cancel {
                removal,
                addition: row,
            };
        }
        if self.held.length.is_zero() {
            return Admitted::Store(row);
        }
        match self.held.insert(key, row, at) {
            Ok(()) => Admitted::Held,
            Err(row) => Admitted::Store(row),
        }
    }

    /// A removal emitted at `at`: cancels its held addition if that is still in its window,
    /// else is stored (after the addition, if one was still held) and may be cancelled.
    fn removal(&mut self, key: Key, row: NewEvent, at: Instant) -> Admitted {
        let held = self.held.until(&key);
        let released: Vec<NewEvent> = self.held.remove(&key).into_iter().collect();
        if held.is_some_and(|until| at < until) {
            return Admitted::Collapsed;
        }
        // Forget an older removal of the same key: the newest one is the one to cancel.
        self.removals.remove(&key);
        let _ = self.removals.insert(key, row.id.clone(), at);
        if released.is_empty() {
            Admitted::Store(row)
        } else {
            Admitted::StoreAfter {
                released,
                event: row,
            }
        }
    }

    /// Held additions whose window ended by `now` (every job emitted before it admitted):
    /// to be stored, due at once.
    pub(super) fn release(&mut self, now: Instant) -> Vec<NewEvent> {
        self.held.expire(now)
    }

    /// Every held addition, for a flush at shutdown.
    pub(super) fn release_all(&mut self) -> Vec<NewEvent> {
        self.held.drain()
    }

    /// When the next held addition is due.
    pub(super) fn next_release(&self) -> Option<Instant> {
        self.held.next_end()
    }

    /// Additions held right now.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }
}

/// For additions and removals: the key, and whether it is the removal.
fn key_of(app_id: &str, url: &str, event: &WebhookEvent) -> Option<(Key, bool)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const ADD: Duration = Duration::from_millis(1_000);
    const REMOVE: Duration = Duration::from_millis(3_000);

    fn occupied(channel: &str) -> WebhookEvent {
        WebhookEvent::ChannelOccupied {
            channel: channel.into(),
        }
    }

    fn vacated(channel: &str) -> WebhookEvent {
        WebhookEvent::ChannelVacated {
            channel: channel.into(),
        }
    }

    fn added(user: &str) -> WebhookEvent {
        WebhookEvent::MemberAdded {
            channel: "presence-room".into(),
            user_id: user.into(),
        }
    }

    fn removed(user: &str) -> WebhookEvent {
        WebhookEvent::MemberRemoved {
            channel: "presence-room".into(),
            user_id: user.into(),
        }
    }

    /// Admits `event` at `at` after `start` (wall clock: 1 000 000 ms + `at`).
    fn admit(d: &mut Debounce, start: Instant, at: u64, event: &WebhookEvent) -> Admitted {
        let now = start + Duration::from_millis(at);
        d.admit("1", "http://sink", event, now, 1_000_000 + at)
    }

    fn names(rows: &[NewEvent]) -> Vec<String> {
        rows.iter()
            .map(|r| {
                let json: serde_json::Value = serde_json::from_str(&r.event).expect("json");
                format!("{} {}", json["name"], json["channel"])
            })
            .collect()
    }

    #[test]
    fn occupied_then_vacated_within_the_window_stores_nothing() {
        let start = Instant::now();
        let mut d = Debounce::new(ADD, REMOVE);
        assert_eq!(admit(&mut d, start, 0, &occupied("a")), Admitted::Held);
        assert_eq!(admit(&mut d, start, 5, &vacated("a")), Admitted::Collapsed);
        assert_eq!(admit(&mut d, start, 6, &added("42")), Admitted::Held);
        assert_eq!(admit(&mut d, start, 7, &removed("42")), Admitted::Collapsed);
        assert_eq!(d.held(), 0);
        assert!(d.release(start + Duration::from_secs(10)).is_empty());
        assert_eq!(d.next_release(), None);
    }

    #[test]
    fn an_addition_that_lasts_is_released_with_its_creation_time_and_then_removal_is_delayed() {
        let start = Instant::now();
        let mut d = Debounce::new(ADD, REMOVE);
        assert_eq!(admit(&mut d, start, 0, &occupied("a")), Admitted::Held);
        assert_eq!(admit(&mut d, start, 400, &occupied("b")), Admitted::Held);
        assert_eq!(d.next_release(), Some(start + ADD));
        assert!(d.release(start + Duration::from_millis(999)).is_empty());
        let released = d.release(start + Duration::from_millis(1_000));
        assert_eq!(names(&released), vec![r#""channel_occupied" "a""#]);
        assert_eq!(released[0].created_ms, 1_000_000, "time of the change");
        assert_eq!(d.next_release(), Some(start + Duration::from_millis(1_400)));

        // After the window the removal is stored, delayed by removal_delay.
        let Admitted::Store(row) = admit(&mut d, start, 2_000, &vacated("a")) else {
            panic!("the removal is stored");
        };
        assert_eq!(row.not_before_ms, 1_002_000 + 3_000);
        let remaining = d.release_all();
        assert_eq!(names(&remaining), vec![r#""channel_occupied" "b""#]);
    }

    #[test]
    fn windows_count_from_emission_so_a_late_batch_neither_splits_nor_joins_a_pair() {
        let start = Instant::now();
        let mut d = Debounce::new(ADD, REMOVE);
        assert_eq!(admit(&mut d, start, 0, &occupied("quick")), Admitted::Held);
        assert_eq!(admit(&mut d, start, 0, &occupied("slow")), Admitted::Held);
        // Processed long after, but emitted inside the window: still a pair.
        assert_eq!(
            admit(&mut d, start, 999, &vacated("quick")),
            Admitted::Collapsed
        );
        // Emitted after the window, though the addition was not released yet: both go.
        let Admitted::StoreAfter { released, event } =
            admit(&mut d, start, 1_000, &vacated("slow"))
        else {
            panic!("the addition is stored before its removal");
        };
        assert_eq!(names(&released), vec![r#""channel_occupied" "slow""#]);
        assert_eq!(event.not_before_ms, 1_001_000 + 3_000);
        assert!(d.release_all().is_empty());
    }

    #[test]
    fn a_readd_within_the_removal_window_cancels_the_stored_removal() {
        let start = Instant::now();
        let mut d = Debounce::new(ADD, REMOVE);
        let Admitted::Store(removal) = admit(&mut d, start, 0, &removed("42")) else {
            panic!("stored");
        };
        let Admitted::Cancel {
            removal: cancelled, ..
        } = admit(&mut d, start, 2_999, &added("42"))
        else {
            panic!("the re-add cancels the removal");
        };
        assert_eq!(cancelled, removal.id);

        // Once the removal window has passed, a re-add is an addition again.
        assert!(matches!(
            admit(&mut d, start, 4_000, &removed("7")),
            Admitted::Store(_)
        ));
        assert_eq!(admit(&mut d, start, 7_000, &added("7")), Admitted::Held);
    }

    #[test]
    fn other_events_and_a_zero_delay_are_stored_at_once() {
        let start = Instant::now();
        let mut d = Debounce::new(Duration::ZERO, REMOVE);
        assert!(matches!(
            admit(&mut d, start, 0, &occupied("a")),
            Admitted::Store(_)
        ));
        let count = WebhookEvent::SubscriptionCount {
            channel: "a".into(),
            subscription_count: 1,
        };
        assert!(matches!(
            admit(&mut d, start, 0, &count),
            Admitted::Store(_)
        ));
    }

    #[test]
    fn a_client_event_releases_the_held_additions_of_its_channel_and_sender_first() {
        let start = Instant::now();
        let mut d = Debounce::new(ADD, REMOVE);
        let occupied = WebhookEvent::ChannelOccupied {
            channel: "presence-room".into(),
        };
        assert_eq!(admit(&mut d, start, 0, &occupied), Admitted::Held);
        assert_eq!(admit(&mut d, start, 0, &added("42")), Admitted::Held);
        assert_eq!(admit(&mut d, start, 0, &added("7")), Admitted::Held);
        let typing = WebhookEvent::ClientEvent {
            channel: "presence-room".into(),
            event: "client-typing".into(),
            data: None,
            socket_id: "1.1".into(),
            user_id: Some("42".into()),
        };
        let Admitted::StoreAfter { released, event } = admit(&mut d, start, 10, &typing) else {
            panic!("a client event is stored");
        };
        // The occupancy first, then the sender's membership.
        let names: Vec<String> = released.iter().map(|r| r.event.clone()).collect();
        assert_eq!(names.len(), 2);
        assert!(
            names[0].contains("channel_occupied") && names[1].contains("\"42\""),
            "{names:?}"
        );
        assert!(event.event.contains("client_event"));
        // The occupancy is out: a quick leave is a removal like any other now.
        assert!(matches!(
            admit(&mut d, start, 20, &removed("42")),
            Admitted::Store(_)
        ));
        assert_eq!(admit(&mut d, start, 20, &removed("7")), Admitted::Collapsed);
    }

    #[test]
    fn the_hold_is_bounded_and_overflow_is_stored_directly() {
        let start = Instant::now();
        let mut d = Debounce::new(ADD, REMOVE);
        for n in 0..HELD_MAX {
            assert_eq!(
                admit(&mut d, start, 0, &occupied(&n.to_string())),
                Admitted::Held
            );
        }
        assert!(matches!(
            admit(&mut d, start, 1, &occupied("one too many")),
            Admitted::Store(_)
        ));
        assert_eq!(d.held(), HELD_MAX);
        // A pair collapsed frees its place at once.
        assert_eq!(admit(&mut d, start, 2, &vacated("0")), Admitted::Collapsed);
        assert_eq!(admit(&mut d, start, 3, &occupied("next")), Admitted::Held);
        assert_eq!(d.release(start + ADD).len(), HELD_MAX - 1);
    }
}
