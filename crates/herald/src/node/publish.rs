//! Delivery: every event, whatever its source (HTTP API, client event, presence change,
//! watchlist change), is encoded once here and handed to the hub; cache channels keep the
//! last HTTP-triggered event (spec §3.8).

use std::time::Duration;

use herald_protocol::{ChannelName, ServerMessage, SocketId};

use super::Node;
use crate::apps::App;
use crate::cluster::Forward;
use crate::cluster::message::{CacheMeta, Target};
use crate::debug::DebugEvent;
use crate::hub::CachedEvent;
use crate::metrics::MessageKind;
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
        self.debug
            .record(|| debug_event(app, audience, message, except));
        let frame = Frame::from(message.encode()).stamped();
        self.metrics
            .app(&app.id)
            .received(MessageKind::of_frame(&frame), frame.len());
        let mut cache = None;
        if let (Audience::Channel(channel), ServerMessage::ChannelEvent { event, data, .. }) =
            (audience, message)
            && channel.is_cache()
        {
            let meta = CacheMeta {
                event: (*event).to_owned(),
                data: (*data).to_owned(),
                ttl: app.cache_ttl,
            };
            self.remember(&app.id, channel, &frame, &meta);
            cache = Some(meta);
        }
        let member_added = match message {
            ServerMessage::MemberAdded { user_id, .. } => Some(*user_id),
            _ => None,
        };
        let queued = self.deliver(&app.id, audience, &frame, except, member_added);
        if let Some(cluster) = &self.cluster {
            let every_node = matches!(
                message,
                ServerMessage::MemberAdded { .. }
                    | ServerMessage::MemberRemoved { .. }
                    | ServerMessage::SubscriptionCount { .. }
            );
            let extra = Forward {
                cache,
                every_node,
                member_added: member_added.map(str::to_owned),
            };
            cluster.forward(&app.id, audience.target(), &frame, except, extra);
        }
        queued
    }

    /// Keeps a cache channel's event for later subscribers.
    pub(super) fn remember(
        &self,
        app_id: &str,
        channel: &ChannelName,
        frame: &Frame,
        meta: &CacheMeta,
    ) {
        let ttl = Duration::from_secs(meta.ttl);
        let cached = CachedEvent::new(frame.unstamped(), &meta.event, &meta.data, ttl);
        self.hub.remember(app_id, channel, cached);
    }

    /// Queues an encoded frame to the local sockets of `audience`.
    /// A `member_added` (`member_added` is its user) is marked announced in the cluster
    /// under the channel's lock, so a roster built meanwhile lists the user or the joiner
    /// gets the event, never both.
    pub(super) fn deliver(
        &self,
        app_id: &str,
        audience: Audience<'_>,
        frame: &Frame,
        except: Option<&SocketId>,
        member_added: Option<&str>,
    ) -> usize {
        let queued = match audience {
            Audience::Channel(channel) => match (&self.cluster, member_added) {
                (Some(cluster), Some(user)) => {
                    let mark = || cluster.announced(app_id, channel.as_str(), user);
                    self.hub
                        .broadcast_then(app_id, channel, frame, except, &mark)
                }
                _ => self.hub.broadcast(app_id, channel, frame, except),
            },
            Audience::Watchers(user_id) => self.hub.users.send_watchers(app_id, user_id, frame),
        };
        let kind = MessageKind::of_frame(frame);
        self.metrics
            .app(app_id)
            .delivered(kind, queued, frame.len());
        queued
    }
}

/// The console's view of a published event (presence and count events included).
fn debug_event(
    app: &App,
    audience: Audience<'_>,
    message: &ServerMessage<'_>,
    except: Option<&SocketId>,
) -> DebugEvent {
    let (kind, name, data) = match *message {
        ServerMessage::ChannelEvent { event, data, .. } => ("api_event", event, Some(data)),
        ServerMessage::ClientEvent { event, data, .. } => {
            ("client_event", event, data.map(|raw| raw.get()))
        }
        ServerMessage::MemberAdded { .. } => ("internal", "pusher_internal:member_added", None),
        ServerMessage::MemberRemoved { .. } => ("internal", "pusher_internal:member_removed", None),
        ServerMessage::SubscriptionCount { .. } => {
            ("internal", "pusher_internal:subscription_count", None)
        }
        _ => ("internal", "pusher_internal:watchlist_events", None),
    };
    let target = match audience {
        Audience::Channel(channel) => channel.as_str().to_owned(),
        Audience::Watchers(user) => format!("watchers of {user}"),
    };
    let mut event = DebugEvent::new(&app.id, kind).channel(&target).event(name);
    if let Some(data) = data {
        event = event.data(data);
    }
    if let Some(except) = except {
        event = event.socket(except);
    }
    event
}

impl Audience<'_> {
    /// The same audience, named for other nodes.
    fn target(self) -> Target {
        match self {
            Self::Channel(channel) => Target::Channel(channel.to_string()),
            Self::Watchers(user) => Target::Watchers(user.to_owned()),
        }
    }
}
