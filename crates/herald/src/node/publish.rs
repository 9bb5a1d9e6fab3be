//! Delivery: every event, whatever its source (HTTP API, client event, presence change,
//! watchlist change), is encoded once here and handed to the hub; cache channels keep the
//! last HTTP-triggered event (spec §3.8).

use std::time::Duration;

use herald_protocol::{ChannelName, ServerMessage, SocketId};

use super::Node;
use crate::apps::App;
use crate::hub::CachedEvent;
use crate::metrics::Metrics;
use crate::outbox::Frame;

/// Who an event is for.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// A channel's subscribers; `#server-to-user-{id}` means the user's signed-in sockets.
    Channel(&'a ChannelName),
    /// The sockets whose watchlist holds this user id (spec §5.4).
    Watchers(&'a str),
}

impl Node {
    /// Encodes `message` once and delivers it to `audience`, except the socket `except`.
    /// An HTTP-triggered event on a cache channel is also kept for later subscribers.
    /// Returns how many local outboxes took it.
    pub fn publish(
        &self,
        app: &App,
        audience: Audience<'_>,
        message: &ServerMessage<'_>,
        except: Option<&SocketId>,
    ) -> usize {
        let frame = Frame::from(message.encode());
        if let (Audience::Channel(channel), ServerMessage::ChannelEvent { event, data, .. }) =
            (audience, message)
            && channel.is_cache()
        {
            let ttl = Duration::from_secs(app.cache_ttl);
            let cached = CachedEvent::new(frame.clone(), event, data, ttl);
            self.hub.remember(&app.id, channel, cached);
        }
        self.deliver(&app.id, audience, &frame, except)
    }

    /// Queues an encoded frame to the local sockets of `audience`.
    fn deliver(
        &self,
        app_id: &str,
        audience: Audience<'_>,
        frame: &Frame,
        except: Option<&SocketId>,
    ) -> usize {
        let queued = match audience {
            Audience::Channel(channel) => self.hub.broadcast(app_id, channel, frame, except),
            Audience::Watchers(user_id) => self.hub.users.send_watchers(app_id, user_id, frame),
        };
        Metrics::add(&self.metrics.frames_queued, queued as u64);
        queued
    }
}
