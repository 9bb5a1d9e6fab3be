//! Joining and leaving channels, and what each change announces: `member_added` /
//! `member_removed` to the channel, occupancy and member webhooks, subscription counts
//! (spec §3.7, §3.9, §9). The hub reports what changed; this decides what to say about it.

use herald_protocol::{ChannelName, ServerMessage, SocketId};

use super::{Audience, Node};
use crate::apps::App;
use crate::hub::{Member, Refused, Subscription};
use crate::outbox::Outbox;
use crate::webhooks::WebhookEvent;

/// A socket asking to join a channel it was authorized for.
pub struct Join<'a> {
    pub channel: &'a ChannelName,
    pub socket: &'a SocketId,
    pub outbox: &'a Outbox,
    /// The presence identity, for presence channels.
    pub member: Option<&'a Member>,
}

impl Node {
    /// Adds the socket to the channel; its `subscription_succeeded` (and cached event) is
    /// queued before any later event. Announces a new member and a newly occupied channel.
    pub fn join(&self, app: &App, join: Join<'_>) -> Result<(), Refused> {
        let Join {
            channel,
            socket,
            outbox,
            member,
        } = join;
        let change = self.hub.subscribe(Subscription {
            app: &app.id,
            channel,
            socket,
            outbox,
            member,
            max_members: app.limits.max_presence_members,
        })?;
        let name = channel.as_str();
        if change.occupied {
            self.webhook(
                app,
                WebhookEvent::ChannelOccupied {
                    channel: name.into(),
                },
            );
        }
        if let Some(member) = member.filter(|_| change.member_added) {
            let added = ServerMessage::MemberAdded {
                channel: name,
                user_id: &member.user_id,
                user_info: member.user_info.as_deref(),
            };
            self.publish(app, Audience::Channel(channel), &added, Some(socket));
            self.webhook(
                app,
                WebhookEvent::MemberAdded {
                    channel: name.into(),
                    user_id: member.user_id.clone(),
                },
            );
        }
        if change.cache_miss {
            self.webhook(
                app,
                WebhookEvent::CacheMiss {
                    channel: name.into(),
                },
            );
        }
        self.announce_count(app, channel, change.count_due, change.subscription_count);
        Ok(())
    }

    /// Removes the socket from the channel; `user_id` is its presence identity there.
    /// Announces a member's last socket leaving and a channel left empty.
    pub fn leave(
        &self,
        app: &App,
        channel: &ChannelName,
        socket: &SocketId,
        user_id: Option<&str>,
    ) {
        let Some(change) = self.hub.unsubscribe(&app.id, channel, socket, user_id) else {
            return;
        };
        let name = channel.as_str();
        if let Some(user_id) = user_id.filter(|_| change.member_removed) {
            let removed = ServerMessage::MemberRemoved {
                channel: name,
                user_id,
            };
            self.publish(app, Audience::Channel(channel), &removed, None);
            self.webhook(
                app,
                WebhookEvent::MemberRemoved {
                    channel: name.into(),
                    user_id: user_id.into(),
                },
            );
        }
        if change.vacated {
            self.webhook(
                app,
                WebhookEvent::ChannelVacated {
                    channel: name.into(),
                },
            );
        }
        self.announce_count(app, channel, change.count_due, change.subscription_count);
    }

    /// Subscription count events and webhooks (spec §3.9), when due.
    pub(super) fn announce_count(&self, app: &App, channel: &ChannelName, due: bool, count: usize) {
        if !due {
            return;
        }
        if app.enable_subscription_count {
            let frame = ServerMessage::SubscriptionCount {
                channel: channel.as_str(),
                count,
            };
            self.publish(app, Audience::Channel(channel), &frame, None);
        }
        self.webhook(
            app,
            WebhookEvent::SubscriptionCount {
                channel: channel.to_string(),
                subscription_count: count,
            },
        );
    }
}
