//! The last HTTP-triggered event of a cache channel, with its expiry (spec §3.8).

use std::time::{Duration, Instant};

use crate::outbox::Frame;

/// A cached event: the frame to replay, and what `info=cache` reports.
#[derive(Debug, Clone)]
pub struct CachedEvent {
    pub frame: Frame,
    pub event: String,
    pub data: String,
    pub expires_at: Instant,
}

impl CachedEvent {
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires_at
    }

    /// Whole seconds left, for `info=cache`.
    pub fn ttl(&self, now: Instant) -> u64 {
        self.expires_at
            .saturating_duration_since(now)
            .as_secs_f64()
            .ceil() as u64
    }

    pub fn new(frame: Frame, event: &str, data: &str, ttl: Duration) -> Self {
        Self {
            frame,
            event: event.to_owned(),
            data: data.to_owned(),
            expires_at: Instant::now() + ttl,
        }
    }
}
