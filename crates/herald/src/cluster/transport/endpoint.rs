//! The node-side half every transport shares: the bounded publish queue, the topics this node
//! wants, the link state and the counters. Drivers only add the task that talks to a broker.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, watch};

use super::{Inbound, Link, Transport, TransportStats, is_valid_topic};

/// One queued publish.
pub(crate) struct Outgoing {
    pub topic: String,
    pub payload: Bytes,
}

pub(crate) struct Endpoint {
    queue: mpsc::Sender<Outgoing>,
    /// Mirrors `link` so `publish` reads one atomic instead of the watch's lock.
    up: AtomicBool,
    /// Whether the link was ever Up: a degraded start's first connect is not a reconnect.
    was_up: AtomicBool,
    link: watch::Sender<Link>,
    /// What the callers asked for; each driver's task reconciles the broker towards it.
    wanted: Mutex<HashSet<String>>,
    wanted_changed: Notify,
    inbound: mpsc::Sender<Inbound>,
    stats: TransportStats,
}

impl Endpoint {
    /// The endpoint and the receiving end of its publish queue, for the driver's writer.
    pub fn new(
        capacity: usize,
        inbound: mpsc::Sender<Inbound>,
        link: Link,
    ) -> (Arc<Self>, mpsc::Receiver<Outgoing>) {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        let endpoint = Self {
            queue,
            up: AtomicBool::new(link == Link::Up),
            was_up: AtomicBool::new(link == Link::Up),
            link: watch::Sender::new(link),
            wanted: Mutex::default(),
            wanted_changed: Notify::new(),
            inbound,
            stats: TransportStats::default(),
        };
        (Arc::new(endpoint), rx)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Sets the link; returns whether it changed. Down -> Up counts as a reconnect once the
    /// link has been Up before.
    pub fn set_link(&self, link: Link) -> bool {
        self.up.store(link == Link::Up, Ordering::Release);
        let changed = self.link.send_if_modified(|now| {
            let changed = *now != link;
            *now = link;
            changed
        });
        if changed && link == Link::Up && self.was_up.swap(true, Ordering::AcqRel) {
            self.stats.add_reconnect();
        }
        changed
    }

    /// Resolves when `subscribe`/`unsubscribe` changed the wanted set since the last call.
    pub async fn wanted_changed(&self) {
        self.wanted_changed.notified().await;
    }

    /// What to subscribe and unsubscribe so that `current` (what the broker has) becomes
    /// what the callers want.
    pub fn changes(&self, current: &HashSet<String>) -> (Vec<String>, Vec<String>) {
        let wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        let add = wanted.difference(current).cloned().collect();
        let remove = current.difference(&wanted).cloned().collect();
        (add, remove)
    }

    /// Hands a message from the broker to the node; never waits.
    pub fn deliver(&self, topic: String, payload: Bytes) {
        self.stats.add_received(payload.len());
        if self.inbound.try_send(Inbound { topic, payload }).is_err() {
            self.stats.add_inbound_dropped();
        }
    }

    /// Drops (and counts) what is still queued: it was meant for a link that failed.
    pub fn drop_queued(&self, queue: &mut mpsc::Receiver<Outgoing>) {
        let mut dropped = 0;
        while queue.try_recv().is_ok() {
            dropped += 1;
        }
        self.stats.add_publish_dropped(dropped);
    }

    pub fn counters(&self) -> &TransportStats {
        &self.stats
    }

    fn edit_wanted(&self, edit: impl FnOnce(&mut HashSet<String>) -> bool) {
        let changed = edit(&mut self.wanted.lock().unwrap_or_else(PoisonError::into_inner));
        if changed {
            self.wanted_changed.notify_one();
        }
    }
}

impl Transport for Endpoint {
    fn publish(&self, topic: &str, payload: Bytes) -> bool {
        debug_assert!(is_valid_topic(topic), "invalid topic {topic:?}");
        let bytes = payload.len();
        let sent = self.is_up()
            && self
                .queue
                .try_send(Outgoing {
                    topic: topic.to_owned(),
                    payload,
                })
                .is_ok();
        if sent {
            self.stats.add_queued_bytes(bytes);
        } else {
            self.stats.add_publish_dropped(1);
        }
        sent
    }

    fn subscribe(&self, topic: &str) {
        debug_assert!(is_valid_topic(topic), "invalid topic {topic:?}");
        self.edit_wanted(|wanted| wanted.insert(topic.to_owned()));
    }

    fn unsubscribe(&self, topic: &str) {
        self.edit_wanted(|wanted| wanted.remove(topic));
    }

    fn link(&self) -> watch::Receiver<Link> {
        self.link.subscribe()
    }

    fn stats(&self) -> &TransportStats {
        &self.stats
    }
}
