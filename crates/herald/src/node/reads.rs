//! What the HTTP API reads: occupied channels with their counts, one channel, a presence
//! channel's users, and a cache channel's current event.

use herald_protocol::ChannelName;

use super::Node;
use crate::hub::{CachedEvent, ChannelSummary};

impl Node {
    /// The app's occupied channels whose names start with `prefix`, sorted by name.
    pub fn channels(&self, app_id: &str, prefix: &str) -> Vec<ChannelSummary> {
        self.hub.channels(app_id, prefix)
    }

    /// Counts for one channel, `None` when nobody is subscribed.
    pub fn channel(&self, app_id: &str, channel: &ChannelName) -> Option<ChannelSummary> {
        self.hub.channel(app_id, channel)
    }

    /// The distinct user ids of a presence channel, in join order.
    pub fn user_ids(&self, app_id: &str, channel: &ChannelName) -> Vec<String> {
        self.hub.user_ids(app_id, channel)
    }

    /// The cache channel's current event, unless expired.
    pub fn cached(&self, app_id: &str, channel: &ChannelName) -> Option<CachedEvent> {
        self.hub.cached(app_id, channel)
    }
}
