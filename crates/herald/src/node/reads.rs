//! What the HTTP API reads: occupied channels with their counts, one channel, a presence
//! channel's users, and a cache channel's current event. In a cluster the counts and users
//! are every node's, from the replicated view.

use herald_protocol::{ChannelKind, ChannelName};

use super::Node;
use crate::hub::{CachedEvent, ChannelSummary};

impl Node {
    /// The app's occupied channels whose names start with `prefix`, sorted by name.
    pub fn channels(&self, app_id: &str, prefix: &str) -> Vec<ChannelSummary> {
        let Some(cluster) = &self.cluster else {
            return self.hub.channels(app_id, prefix);
        };
        cluster
            .channels(app_id, prefix)
            .into_iter()
            .filter_map(|(name, subscribers, users)| summary(&name, subscribers, users))
            .collect()
    }

    /// Counts for one channel, `None` when nobody is subscribed.
    pub fn channel(&self, app_id: &str, channel: &ChannelName) -> Option<ChannelSummary> {
        let Some(cluster) = &self.cluster else {
            return self.hub.channel(app_id, channel);
        };
        let (subscribers, users) = cluster.channel(app_id, channel.as_str())?;
        summary(channel.as_str(), subscribers, users)
    }

    /// The distinct user ids of a presence channel (join order on one node; by id in a
    /// cluster).
    pub fn user_ids(&self, app_id: &str, channel: &ChannelName) -> Vec<String> {
        match &self.cluster {
            Some(cluster) => cluster.user_ids(app_id, channel.as_str()),
            None => self.hub.user_ids(app_id, channel),
        }
    }

    /// A channel's subscribers on this node (socket ids).
    pub fn local_subscribers(&self, app_id: &str, channel: &ChannelName) -> Vec<String> {
        self.hub.subscribers(app_id, channel)
    }

    /// The channels a socket of this node holds.
    pub fn channels_of(&self, app_id: &str, socket: &herald_protocol::SocketId) -> Vec<String> {
        self.hub.channels_of(app_id, socket)
    }

    /// The cache channel's current event, unless expired.
    pub fn cached(&self, app_id: &str, channel: &ChannelName) -> Option<CachedEvent> {
        self.hub.cached(app_id, channel)
    }
}

fn summary(name: &str, subscribers: usize, users: usize) -> Option<ChannelSummary> {
    let name = ChannelName::parse(name, usize::MAX).ok()?;
    let user_count = (name.kind() == ChannelKind::Presence).then_some(users);
    Some(ChannelSummary {
        name,
        subscription_count: subscribers,
        user_count,
    })
}
