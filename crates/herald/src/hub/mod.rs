//! Who listens to what: a sharded map from (app, channel) to its subscribers' outboxes and,
//! for presence channels, its [`Roster`]. Subscribe and unsubscribe report occupancy and
//! member changes; the hub never decides what to do about them.

mod roster;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use herald_protocol::{ChannelKind, ChannelName, ServerMessage, SocketId};

use crate::connection::outbox::{Frame, Outbox};
pub use roster::{Member, Roster};

const SHARDS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChannelKey {
    app: Box<str>,
    channel: ChannelName,
}

#[derive(Debug, Default)]
struct Channel {
    subscribers: HashMap<SocketId, Outbox>,
    roster: Option<Roster>,
}

/// What a subscribe changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    pub subscription_count: usize,
    /// The channel went from no subscribers to one.
    pub occupied: bool,
    /// The presence user went from no sockets to one.
    pub member_added: bool,
}

/// What an unsubscribe changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribed {
    pub subscription_count: usize,
    pub vacated: bool,
    /// The presence user's last socket left.
    pub member_removed: bool,
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

/// The sharded registry of channels.
pub struct Hub {
    shards: Box<[Mutex<HashMap<ChannelKey, Channel>>]>,
    hasher: RandomState,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Hub {
    fn shard(&self, key: &ChannelKey) -> MutexGuard<'_, HashMap<ChannelKey, Channel>> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        // A poisoned shard still holds consistent maps: every mutation is a single insert/remove.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a socket to a channel and, under the same lock, queues its
    /// `subscription_succeeded` so no channel event can overtake it.
    pub fn subscribe(
        &self,
        app: &str,
        channel: &ChannelName,
        socket: &SocketId,
        outbox: &Outbox,
        member: Option<&Member>,
        max_members: usize,
    ) -> Result<Subscribed, Refused> {
        let key = key(app, channel);
        let mut shard = self.shard(&key);
        let entry = shard.entry(key.clone()).or_default();
        let is_presence = channel.kind() == ChannelKind::Presence;
        if let Some(member) = member.filter(|_| is_presence) {
            let roster = entry.roster.get_or_insert_with(Roster::default);
            if !roster.contains(&member.user_id) && roster.user_count() >= max_members {
                if entry.subscribers.is_empty() {
                    shard.remove(&key);
                }
                return Err(Refused::PresenceFull { max: max_members });
            }
        }
        let occupied = entry.subscribers.is_empty();
        entry.subscribers.insert(socket.clone(), outbox.clone());
        let member_added = match (member, entry.roster.as_mut()) {
            (Some(member), Some(roster)) => roster.add(member),
            _ => false,
        };
        let presence = entry.roster.as_ref().map(Roster::encode_presence);
        let succeeded = ServerMessage::SubscriptionSucceeded {
            channel: channel.as_str(),
            presence: presence.as_deref(),
        };
        outbox.send(succeeded.encode().into());
        Ok(Subscribed {
            subscription_count: entry.subscribers.len(),
            occupied,
            member_added,
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
        let entry = shard.get_mut(&key)?;
        entry.subscribers.remove(socket)?;
        let member_removed = match (user_id, entry.roster.as_mut()) {
            (Some(user_id), Some(roster)) => roster.remove(user_id),
            _ => false,
        };
        let subscription_count = entry.subscribers.len();
        if subscription_count == 0 {
            shard.remove(&key);
        }
        Some(Unsubscribed {
            subscription_count,
            vacated: subscription_count == 0,
            member_removed,
        })
    }

    /// Queues one shared frame to every subscriber but `except`; never waits.
    /// Returns how many outboxes took it.
    pub fn broadcast(
        &self,
        app: &str,
        channel: &ChannelName,
        frame: &Frame,
        except: Option<&SocketId>,
    ) -> usize {
        let key = key(app, channel);
        let shard = self.shard(&key);
        let Some(entry) = shard.get(&key) else {
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
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            found.extend(
                shard
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
        shard.get(&key).map(|entry| summary(channel, entry))
    }

    /// The distinct user ids of a presence channel, in join order.
    pub fn user_ids(&self, app: &str, channel: &ChannelName) -> Vec<String> {
        let key = key(app, channel);
        let shard = self.shard(&key);
        shard
            .get(&key)
            .and_then(|entry| entry.roster.as_ref())
            .map(|roster| roster.user_ids().into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
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
