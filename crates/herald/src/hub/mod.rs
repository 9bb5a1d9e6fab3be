//! Who listens to what: a sharded map from (app, channel) to its subscribers' outboxes and,
//! for presence channels, its [`Roster`]. Subscribe and unsubscribe report occupancy and
//! member changes; the hub never decides what to do about them.

mod cache;
mod roster;
mod shards;
mod users;

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use herald_protocol::channel::SERVER_TO_USER_PREFIX;
use herald_protocol::{ChannelKind, ChannelName, ServerMessage, SocketId};

use crate::outbox::{Frame, Outbox};
pub use cache::CachedEvent;
pub use roster::{Member, Roster};
use shards::Shards;
pub use users::Users;

const SHARDS: usize = 64;
/// Above this many subscribers, subscription counts are announced at most every
/// [`COUNT_INTERVAL`] (spec §3.9).
const COUNT_THROTTLE_ABOVE: usize = 100;
const COUNT_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChannelKey {
    app: Box<str>,
    channel: ChannelName,
}

#[derive(Debug, Default)]
struct Channel {
    subscribers: HashMap<SocketId, Outbox>,
    roster: Option<Roster>,
    count_announced_at: Option<Instant>,
    count_pending: bool,
}

impl Channel {
    /// Whether to announce the subscription count now, under the throttle of spec §3.9.
    fn count_due(&mut self, name: &ChannelName, now: Instant) -> bool {
        if matches!(
            name.kind(),
            ChannelKind::Presence | ChannelKind::ServerToUser
        ) {
            return false;
        }
        let throttled = self.subscribers.len() > COUNT_THROTTLE_ABOVE
            && self
                .count_announced_at
                .is_some_and(|at| now.duration_since(at) < COUNT_INTERVAL);
        self.count_pending = throttled;
        if !throttled {
            self.count_announced_at = Some(now);
        }
        !throttled
    }
}

#[derive(Debug, Default)]
struct Shard {
    channels: HashMap<ChannelKey, Channel>,
    caches: HashMap<ChannelKey, CachedEvent>,
}

/// A socket asking to join a channel.
pub struct Subscription<'a> {
    pub app: &'a str,
    pub channel: &'a ChannelName,
    pub socket: &'a SocketId,
    pub outbox: &'a Outbox,
    /// The presence identity, for presence channels.
    pub member: Option<&'a Member>,
    pub max_members: usize,
    /// In a cluster: decides presence capacity and the roster from every node's members.
    pub roster: Option<&'a RosterFn<'a>>,
}

/// Given the joining member: the `subscription_succeeded` presence data, or a refusal.
pub type RosterFn<'a> = dyn Fn(&Member) -> Result<String, Refused> + 'a;

/// What a subscribe changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    pub subscription_count: usize,
    /// The channel went from no subscribers to one.
    pub occupied: bool,
    /// The presence user went from no sockets to one.
    pub member_added: bool,
    /// A cache channel had nothing cached; the subscriber got `pusher:cache_miss`.
    pub cache_miss: bool,
    /// The new count should be announced now (otherwise it is throttled or not applicable).
    pub count_due: bool,
}

/// What an unsubscribe changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribed {
    pub subscription_count: usize,
    pub vacated: bool,
    /// The presence user's last socket left.
    pub member_removed: bool,
    pub count_due: bool,
}

/// A subscribe the hub refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The presence channel already has the maximum number of distinct users.
    PresenceFull { max: usize },
}

/// Counts for one occupied channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    pub name: ChannelName,
    pub subscription_count: usize,
    /// Distinct users, presence channels only.
    pub user_count: Option<usize>,
}

/// The sharded registry of channels, their caches, and the signed-in users.
pub struct Hub {
    shards: Shards<Shard>,
    pub users: Users,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            shards: Shards::new(SHARDS),
            users: Users::default(),
        }
    }
}

impl Hub {
    fn shard(&self, key: &ChannelKey) -> MutexGuard<'_, Shard> {
        self.shards.lock(key)
    }

    /// Adds a socket to a channel and, under the same lock, queues its
    /// `subscription_succeeded` (and, on cache channels, the cached event or
    /// `pusher:cache_miss`) so no channel event can overtake them.
    pub fn subscribe(&self, request: Subscription<'_>) -> Result<Subscribed, Refused> {
        let Subscription {
            app,
            channel,
            socket,
            outbox,
            member,
            max_members,
            roster: cluster_roster,
        } = request;
        let key = key(app, channel);
        let mut guard = self.shard(&key);
        let shard = &mut *guard;
        let entry = shard.channels.entry(key.clone()).or_default();
        let is_presence = channel.kind() == ChannelKind::Presence;
        let mut presence = None;
        if let Some(member) = member.filter(|_| is_presence) {
            let roster = entry.roster.get_or_insert_with(Roster::default);
            let decided = match cluster_roster {
                Some(decide) => decide(member).map(Some),
                None if !roster.contains(&member.user_id) && roster.user_count() >= max_members => {
                    Err(Refused::PresenceFull { max: max_members })
                }
                None => Ok(None),
            };
            match decided {
                Ok(cluster_presence) => presence = cluster_presence,
                Err(refused) => {
                    if entry.subscribers.is_empty() {
                        shard.channels.remove(&key);
                    }
                    return Err(refused);
                }
            }
        }
        let occupied = entry.subscribers.is_empty();
        entry.subscribers.insert(socket.clone(), outbox.clone());
        let member_added = match (member, entry.roster.as_mut()) {
            (Some(member), Some(roster)) => roster.add(member),
            _ => false,
        };
        let presence = presence.or_else(|| entry.roster.as_ref().map(Roster::encode_presence));
        let succeeded = ServerMessage::SubscriptionSucceeded {
            channel: channel.as_str(),
            presence: presence.as_deref(),
        };
        outbox.send(succeeded.encode().into());
        let now = Instant::now();
        let count_due = entry.count_due(channel, now);
        let subscription_count = entry.subscribers.len();
        let mut cache_miss = false;
        if channel.is_cache() {
            match shard
                .caches
                .get(&key)
                .filter(|cached| !cached.is_expired(now))
            {
                Some(cached) => outbox.send(cached.frame.clone()),
                None => {
                    cache_miss = true;
                    let miss = ServerMessage::CacheMiss {
                        channel: channel.as_str(),
                    };
                    outbox.send(miss.encode().into())
                }
            };
        }
        Ok(Subscribed {
            subscription_count,
            occupied,
            member_added,
            cache_miss,
            count_due,
        })
    }

    /// Removes a socket; `user_id` is its presence identity in that channel, if any.
    /// Returns `None` when the socket was not subscribed.
    pub fn unsubscribe(
        &self,
        app: &str,
        channel: &ChannelName,
        socket: &SocketId,
        user_id: Option<&str>,
    ) -> Option<Unsubscribed> {
        let key = key(app, channel);
        let mut shard = self.shard(&key);
        let entry = shard.channels.get_mut(&key)?;
        entry.subscribers.remove(socket)?;
        let member_removed = match (user_id, entry.roster.as_mut()) {
            (Some(user_id), Some(roster)) => roster.remove(user_id),
            _ => false,
        };
        let subscription_count = entry.subscribers.len();
        let count_due = subscription_count > 0 && entry.count_due(channel, Instant::now());
        if subscription_count == 0 {
            shard.channels.remove(&key);
        }
        Some(Unsubscribed {
            subscription_count,
            vacated: subscription_count == 0,
            member_removed,
            count_due,
        })
    }

    /// Queues one shared frame to every subscriber but `except`; never waits.
    /// `#server-to-user-{id}` reaches every socket signed in as that user (spec §5.3).
    /// Returns how many outboxes took it.
    pub fn broadcast(
        &self,
        app: &str,
        channel: &ChannelName,
        frame: &Frame,
        except: Option<&SocketId>,
    ) -> usize {
        self.broadcast_then(app, channel, frame, except, &|| {})
    }

    /// [`Hub::broadcast`], running `first` under the channel's lock before anyone gets the
    /// frame: a subscriber joining meanwhile sees the world either entirely before `first`
    /// and the frame, or entirely after both.
    pub fn broadcast_then(
        &self,
        app: &str,
        channel: &ChannelName,
        frame: &Frame,
        except: Option<&SocketId>,
        first: &dyn Fn(),
    ) -> usize {
        if let Some(user) = channel.as_str().strip_prefix(SERVER_TO_USER_PREFIX) {
            return self.users.send(app, user, frame, except);
        }
        let key = key(app, channel);
        let shard = self.shard(&key);
        first();
        let Some(entry) = shard.channels.get(&key) else {
            return 0;
        };
        entry
            .subscribers
            .iter()
            .filter(|(socket, _)| Some(*socket) != except)
            .filter(|(_, outbox)| outbox.send(frame.clone()))
            .count()
    }

    /// The app's occupied channels whose names start with `prefix`.
    pub fn channels(&self, app: &str, prefix: &str) -> Vec<ChannelSummary> {
        let mut found = Vec::new();
        for shard in self.shards.each() {
            found.extend(
                shard
                    .channels
                    .iter()
                    .filter(|(key, _)| &*key.app == app && key.channel.as_str().starts_with(prefix))
                    .map(|(key, channel)| summary(&key.channel, channel)),
            );
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    /// Counts for one channel, `None` when nobody is subscribed.
    pub fn channel(&self, app: &str, channel: &ChannelName) -> Option<ChannelSummary> {
        let key = key(app, channel);
        let shard = self.shard(&key);
        shard
            .channels
            .get(&key)
            .map(|entry| summary(channel, entry))
    }

    /// The distinct user ids of a presence channel, in join order.
    pub fn user_ids(&self, app: &str, channel: &ChannelName) -> Vec<String> {
        let key = key(app, channel);
        let shard = self.shard(&key);
        shard
            .channels
            .get(&key)
            .and_then(|entry| entry.roster.as_ref())
            .map(|roster| roster.user_ids().into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

impl Hub {
    /// The local subscribers of a channel (for the dashboard).
    pub fn subscribers(&self, app: &str, channel: &ChannelName) -> Vec<String> {
        let key = key(app, channel);
        let shard = self.shard(&key);
        let mut ids: Vec<String> = shard
            .channels
            .get(&key)
            .map(|entry| entry.subscribers.keys().map(ToString::to_string).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The channels a socket is subscribed to (for the dashboard: walks every shard).
    pub fn channels_of(&self, app: &str, socket: &SocketId) -> Vec<String> {
        let mut found = Vec::new();
        for shard in self.shards.each() {
            found.extend(
                shard
                    .channels
                    .iter()
                    .filter(|(key, entry)| {
                        &*key.app == app && entry.subscribers.contains_key(socket)
                    })
                    .map(|(key, _)| key.channel.to_string()),
            );
        }
        found.sort();
        found
    }

    /// Keeps an HTTP-triggered event of a cache channel for `ttl` (spec §3.8).
    pub fn remember(&self, app: &str, channel: &ChannelName, cached: CachedEvent) {
        let key = key(app, channel);
        self.shard(&key).caches.insert(key, cached);
    }

    /// The cache channel's current event, unless expired.
    pub fn cached(&self, app: &str, channel: &ChannelName) -> Option<CachedEvent> {
        let key = key(app, channel);
        let shard = self.shard(&key);
        shard
            .caches
            .get(&key)
            .filter(|cached| !cached.is_expired(Instant::now()))
            .cloned()
    }

    /// Drops expired caches and returns the throttled subscription counts now due, as
    /// `(app, channel, count)`. Called about once a second.
    pub fn tick(&self, now: Instant) -> Vec<(String, ChannelName, usize)> {
        let mut due = Vec::new();
        for mut shard in self.shards.each() {
            shard.caches.retain(|_, cached| !cached.is_expired(now));
            for (key, channel) in shard.channels.iter_mut() {
                if channel.count_pending && channel.count_due(&key.channel, now) {
                    let count = channel.subscribers.len();
                    due.push((key.app.to_string(), key.channel.clone(), count));
                }
            }
        }
        due
    }
}

fn key(app: &str, channel: &ChannelName) -> ChannelKey {
    ChannelKey {
        app: app.into(),
        channel: channel.clone(),
    }
}

fn summary(name: &ChannelName, channel: &Channel) -> ChannelSummary {
    ChannelSummary {
        name: name.clone(),
        subscription_count: channel.subscribers.len(),
        user_count: channel.roster.as_ref().map(Roster::user_count),
    }
}

#[cfg(test)]
mod tests;
