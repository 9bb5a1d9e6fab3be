//! Joining and leaving channels, and what each change announces: `member_added` /
//! `member_removed` to the channel, occupancy and member webhooks, subscription counts
//! (spec §3.7, §3.9, §9). The hub reports what changed; this decides what to say about it.

use herald_protocol::{ChannelKind, ChannelName, ServerMessage, SocketId};
use serde_json::value::RawValue;

use super::{Audience, Node};
use crate::apps::App;
use crate::cluster::Listening;
use crate::cluster::view::{Change, Transition};
use crate::debug::DebugEvent;
use crate::hub::{Member, Refused, Subscribed, Subscription, Unsubscribed};
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
    /// In a cluster, before [`Node::join`]: this socket needs the channel's events from the
    /// other nodes. A wait comes back when this node only now starts receiving them: the
    /// join (and its `subscription_succeeded`) should follow the wait, so nothing other
    /// nodes publish after it can be missed. Undone by [`Node::leave`] or [`Node::unlisten`].
    pub fn listen(&self, app: &App, channel: &ChannelName) -> Option<Listening> {
        self.cluster.as_ref()?.listen(&app.id, channel.as_str())
    }

    /// Undoes a [`Node::listen`] whose join did not happen.
    pub fn unlisten(&self, app: &App, channel: &ChannelName) {
        if let Some(cluster) = &self.cluster {
            cluster.unlisten(&app.id, channel.as_str());
        }
    }

    /// Adds the socket to the channel; its `subscription_succeeded` (and cached event) is
    /// queued before any later event. Announces a new member and a newly occupied channel
    /// (in a cluster: the node that owns the channel does, from every node's members).
    pub fn join(&self, app: &App, join: Join<'_>) -> Result<(), Refused> {
        let Join {
            channel,
            socket,
            outbox,
            member,
        } = join;
        let max_members = app.limits.max_presence_members;
        let cluster_roster = self.cluster.as_ref().map(|cluster| {
            move |joining: &Member| {
                cluster.presence(&app.id, channel.as_str(), joining, max_members)
            }
        });
        let change = self.hub.subscribe(Subscription {
            app: &app.id,
            channel,
            socket,
            outbox,
            member,
            max_members,
            roster: cluster_roster
                .as_ref()
                .map(|f| f as &crate::hub::RosterFn<'_>),
        })?;
        self.count_join(app, channel, &change, socket);
        let name = channel.as_str();
        if change.cache_miss {
            self.webhook(
                app,
                WebhookEvent::CacheMiss {
                    channel: name.into(),
                },
            );
        }
        let key = || (app.id.clone(), name.to_owned());
        let Some(cluster) = &self.cluster else {
            let mut transitions = Vec::new();
            if change.occupied {
                transitions.push(Transition::Occupied(key()));
            }
            if let Some(member) = member.filter(|_| change.member_added) {
                transitions.push(Transition::MemberAdded {
                    channel: key(),
                    user: member.user_id.clone(),
                    info: member.user_info.as_ref().map(|raw| raw.get().to_owned()),
                    except: Some(socket.to_string()),
                });
            }
            if change.count_due {
                transitions.push(Transition::Count {
                    channel: key(),
                    count: change.subscription_count,
                });
            }
            self.announce_all(app, transitions);
            return Ok(());
        };
        let transitions = cluster.change(Change::Joined {
            app: app.id.clone(),
            channel: name.to_owned(),
            user: member.map(|m| m.user_id.clone()),
            info: member.and_then(|m| m.user_info.as_ref().map(|raw| raw.get().to_owned())),
            socket: Some(socket.to_string()),
        });
        self.announce_all(app, transitions);
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
        self.count_leave(app, channel, &change, socket);
        let name = channel.as_str();
        let key = || (app.id.clone(), name.to_owned());
        let Some(cluster) = &self.cluster else {
            let mut transitions = Vec::new();
            if let Some(user) = user_id.filter(|_| change.member_removed) {
                transitions.push(Transition::MemberRemoved {
                    channel: key(),
                    user: user.to_owned(),
                });
            }
            if change.vacated {
                transitions.push(Transition::Vacated(key()));
            }
            if change.count_due {
                transitions.push(Transition::Count {
                    channel: key(),
                    count: change.subscription_count,
                });
            }
            self.announce_all(app, transitions);
            return;
        };
        cluster.unlisten(&app.id, name);
        let transitions = cluster.change(Change::Left {
            app: app.id.clone(),
            channel: name.to_owned(),
            user: user_id.map(str::to_owned),
        });
        self.announce_all(app, transitions);
    }

    /// This node's subscription, channel and member gauges.
    fn count_join(&self, app: &App, channel: &ChannelName, change: &Subscribed, socket: &SocketId) {
        self.debug.record(|| {
            DebugEvent::new(&app.id, "subscribed")
                .channel(channel.as_str())
                .socket(socket)
        });
        let metrics = self.metrics.app(&app.id);
        metrics.subscription(channel.kind(), 1);
        metrics.occupied.inc_by(i64::from(change.occupied));
        metrics.members.inc_by(i64::from(change.member_added));
    }

    fn count_leave(
        &self,
        app: &App,
        channel: &ChannelName,
        change: &Unsubscribed,
        socket: &SocketId,
    ) {
        self.debug.record(|| {
            DebugEvent::new(&app.id, "unsubscribed")
                .channel(channel.as_str())
                .socket(socket)
        });
        let metrics = self.metrics.app(&app.id);
        metrics.subscription(channel.kind(), -1);
        metrics.occupied.dec_by(i64::from(change.vacated));
        metrics.members.dec_by(i64::from(change.member_removed));
    }

    pub(super) fn announce_all(&self, app: &App, transitions: Vec<Transition>) {
        for transition in transitions {
            self.announce(app, transition);
        }
    }

    /// Says what a transition means: presence events to the channel, webhooks, counts,
    /// watchlist events.
    pub(super) fn announce(&self, app: &App, transition: Transition) {
        match transition {
            Transition::Occupied((_, channel)) => {
                self.webhook(app, WebhookEvent::ChannelOccupied { channel });
            }
            Transition::Vacated((_, channel)) => {
                self.webhook(app, WebhookEvent::ChannelVacated { channel });
            }
            Transition::MemberAdded {
                channel: (_, channel),
                user,
                info,
                except,
            } => {
                let Some(name) = channel_name(&channel) else {
                    return;
                };
                let info = info.and_then(|raw| RawValue::from_string(raw).ok());
                let added = ServerMessage::MemberAdded {
                    channel: &channel,
                    user_id: &user,
                    user_info: info.as_deref(),
                };
                let except = except.as_deref().and_then(SocketId::parse);
                self.publish(app, Audience::Channel(&name), &added, except.as_ref());
                self.webhook(
                    app,
                    WebhookEvent::MemberAdded {
                        channel,
                        user_id: user,
                    },
                );
            }
            Transition::MemberRemoved {
                channel: (_, channel),
                user,
            } => {
                let Some(name) = channel_name(&channel) else {
                    return;
                };
                let removed = ServerMessage::MemberRemoved {
                    channel: &channel,
                    user_id: &user,
                };
                self.publish(app, Audience::Channel(&name), &removed, None);
                self.webhook(
                    app,
                    WebhookEvent::MemberRemoved {
                        channel,
                        user_id: user,
                    },
                );
            }
            Transition::Count {
                channel: (_, channel),
                count,
            } => {
                if let Some(name) = channel_name(&channel).filter(has_count) {
                    self.announce_count(app, &name, count);
                }
            }
            Transition::Online((_, user)) => self.announce_presence(app, &user, true),
            Transition::Offline((_, user)) => self.announce_presence(app, &user, false),
        }
    }

    /// Subscription count events and webhooks (spec §3.9).
    pub(super) fn announce_count(&self, app: &App, channel: &ChannelName, count: usize) {
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

/// A channel name that came from a validated subscription (here or on another node).
fn channel_name(name: &str) -> Option<ChannelName> {
    ChannelName::parse(name, usize::MAX).ok()
}

/// Presence and per-user channels have no subscription counts (spec §3.9).
fn has_count(channel: &ChannelName) -> bool {
    !matches!(
        channel.kind(),
        ChannelKind::Presence | ChannelKind::ServerToUser
    )
}
