//! Client events under the rules of spec §6.2, in order, and their per-connection rate.

use std::time::{Duration, Instant};

use herald_protocol::message::ClientEvent;
use herald_protocol::{ChannelKind, ErrorCode, ServerMessage};

use super::Session;
use crate::node::Audience;
use crate::webhooks::WebhookEvent;

impl Session {
    pub(super) fn client_event(&mut self, event: ClientEvent) {
        if let Err((code, message)) = self.check_client_event(&event) {
            self.error(code, &message);
            return;
        }
        if let Err(limited) = self.node.edge.apps.client_event(&self.app) {
            self.node.metrics.app_daily_quota_refused.inc();
            let code = ErrorCode::ClientEventRateLimit.code();
            self.error(
                Some(code),
                &format!("Client event rejected: {}", limited.message()),
            );
            return;
        }
        let Some((channel, user_id)) = self.channels.get_key_value(event.channel.as_str()) else {
            return;
        };
        let frame = ServerMessage::ClientEvent {
            event: &event.event,
            channel: channel.as_str(),
            data: event.data.as_deref(),
            user_id: user_id.as_deref(),
        };
        self.node.publish(
            &self.app,
            Audience::Channel(channel),
            &frame,
            Some(&self.socket_id),
        );
        self.webhook(WebhookEvent::ClientEvent {
            channel: event.channel.clone(),
            event: event.event.clone(),
            data: event.data_text(),
            socket_id: self.socket_id.to_string(),
            user_id: user_id.clone(),
        });
    }

    fn check_client_event(&mut self, event: &ClientEvent) -> Result<(), (Option<u16>, String)> {
        let limits = &self.app.limits;
        let reject = |message: String| Err((None, message));
        if !self.app.enable_client_messages {
            return reject("Client events are disabled for this app: set enable_client_messages = true in its [[apps]] configuration".into());
        }
        let kind = ChannelKind::of(&event.channel);
        if kind == ChannelKind::Encrypted {
            return reject(
                "Client event rejected - not supported on encrypted channels (spec §4.5)".into(),
            );
        }
        if !kind.allows_client_events() {
            return reject(
                "Client event rejected - only supported on private and presence channels".into(),
            );
        }
        if !self.channels.contains_key(event.channel.as_str()) {
            return reject(format!(
                "Client event rejected - you are not subscribed to channel {}",
                event.channel
            ));
        }
        if event.event.len() > limits.max_event_name_length {
            return reject(format!(
                "Client event rejected - event name is longer than {} characters",
                limits.max_event_name_length
            ));
        }
        if event.data_len() > limits.max_event_payload_bytes {
            return reject(format!(
                "Client event rejected - data is larger than {} bytes",
                limits.max_event_payload_bytes
            ));
        }
        if !self.client_events.allow(Instant::now()) {
            let code = ErrorCode::ClientEventRateLimit;
            self.node.metrics.app(&self.app.id).rate_limited.inc();
            return Err((Some(code.code()), code.message().into()));
        }
        Ok(())
    }
}

/// A fixed one-second window counting client events.
pub(super) struct RateWindow {
    limit: u32,
    started: Option<Instant>,
    count: u32,
}

impl RateWindow {
    pub(super) fn new(limit: u32) -> Self {
        Self {
            limit,
            started: None,
            count: 0,
        }
    }

    pub(super) fn allow(&mut self, now: Instant) -> bool {
        let expired = self
            .started
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if expired {
            self.started = Some(now);
            self.count = 0;
        }
        if self.count >= self.limit {
            return false;
        }
        self.count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_allows_the_limit_per_second() {
        let mut window = RateWindow::new(10);
        let start = Instant::now();
        assert!((0..10).all(|_| window.allow(start)));
        assert!(!window.allow(start + Duration::from_millis(900)));
        assert!(window.allow(start + Duration::from_millis(1000)));
    }
}
