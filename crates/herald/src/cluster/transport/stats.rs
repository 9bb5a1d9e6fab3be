//! Counters every transport keeps, read by the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters of one transport. All monotonic.
#[derive(Debug, Default)]
pub struct TransportStats {
    published: AtomicU64,
    queued_bytes: AtomicU64,
    publish_dropped: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
    inbound_dropped: AtomicU64,
    reconnects: AtomicU64,
}

/// A copy of [`TransportStats`] at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportCounts {
    /// Messages handed to the broker.
    pub published: u64,
    /// Payload bytes accepted for sending (a few may still be lost with a failing link).
    pub published_bytes: u64,
    /// Messages never sent: refused by `publish` (queue full, link down) or queued when the
    /// link failed.
    pub publish_dropped: u64,
    /// Messages received from the broker (including those then dropped).
    pub received: u64,
    /// Payload bytes of `received`.
    pub received_bytes: u64,
    /// Received messages dropped because the inbound channel was full.
    pub inbound_dropped: u64,
    /// Times the link came back Up after going Down.
    pub reconnects: u64,
}

impl TransportStats {
    pub fn counts(&self) -> TransportCounts {
        TransportCounts {
            published: self.published.load(Relaxed),
            published_bytes: self.queued_bytes.load(Relaxed),
            publish_dropped: self.publish_dropped.load(Relaxed),
            received: self.received.load(Relaxed),
            received_bytes: self.received_bytes.load(Relaxed),
            inbound_dropped: self.inbound_dropped.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
        }
    }

    pub(crate) fn add_published(&self, n: u64) {
        self.published.fetch_add(n, Relaxed);
    }

    pub(crate) fn add_queued_bytes(&self, bytes: usize) {
        self.queued_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn add_publish_dropped(&self, n: u64) {
        self.publish_dropped.fetch_add(n, Relaxed);
    }

    pub(crate) fn add_received(&self, bytes: usize) {
        self.received.fetch_add(1, Relaxed);
        self.received_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn add_inbound_dropped(&self) {
        self.inbound_dropped.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_reconnect(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }
}
