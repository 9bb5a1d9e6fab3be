//! The replicated facts of every live node, and the cluster view they add up to.
//! Each node owns its own facts ("k sockets of user U in channel C"), keyed by node and
//! epoch; the view is their union. Every change returns the transitions it caused
//! (channel occupied or vacated, member added or removed, count changed, user online or
//! offline), computed from the totals before and after, so a snapshot that replaces a
//! node's facts announces only what really changed. Who announces them is decided elsewhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// A node incarnation: its id and the epoch it started (or rejoined) under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeKey {
    pub id: String,
    pub epoch: u64,
}

/// (app id, channel name).
pub type ChannelKey = (String, String);
/// (app id, user id).
pub type UserKey = (String, String);

/// One node's sockets in one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelFacts {
    pub subscribers: u32,
    /// Presence users: sockets, and the info the first of them joined with (raw JSON).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, MemberFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberFacts {
    pub sockets: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
}

/// Everything one node knows about its own sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    #[serde(default, with = "pairs")]
    pub channels: HashMap<ChannelKey, ChannelFacts>,
    /// Sockets signed in per user.
    #[serde(default, with = "pairs")]
    pub users: HashMap<UserKey, u32>,
}

/// One change a node makes to its own facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Change {
    Joined {
        app: String,
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        info: Option<String>,
        /// The joining socket, spared the `member_added` about itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        socket: Option<String>,
    },
    Left {
        app: String,
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    SignedIn {
        app: String,
        user: String,
    },
    SignedOut {
        app: String,
        user: String,
    },
}

/// What a change did to the cluster view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Occupied(ChannelKey),
    Vacated(ChannelKey),
    MemberAdded {
        channel: ChannelKey,
        user: String,
        info: Option<String>,
        except: Option<String>,
    },
    MemberRemoved {
        channel: ChannelKey,
        user: String,
    },
    /// The channel's subscriber count is now this (not sent for presence channels).
    Count {
        channel: ChannelKey,
        count: usize,
    },
    Online(UserKey),
    Offline(UserKey),
}

impl Transition {
    /// The key whose owner announces this transition.
    pub fn owner_key(&self) -> (&str, &str, bool) {
        match self {
            Self::Occupied((app, channel))
            | Self::Vacated((app, channel))
            | Self::MemberAdded {
                channel: (app, channel),
                ..
            }
            | Self::MemberRemoved {
                channel: (app, channel),
                ..
            }
            | Self::Count {
                channel: (app, channel),
                ..
            } => (app, channel, false),
            Self::Online((app, user)) | Self::Offline((app, user)) => (app, user, true),
        }
    }
}

/// The union of every live node's facts.
#[derive(Debug, Default)]
pub struct View {
    nodes: HashMap<NodeKey, Facts>,
}

/// Totals of one channel across nodes: subscribers and users with their info.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    subscribers: usize,
    members: BTreeMap<String, Option<String>>,
}

impl View {
    pub fn facts(&self, node: &NodeKey) -> Option<&Facts> {
        self.nodes.get(node)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeKey> {
        self.nodes.keys()
    }

    /// Moves a node's facts to a new incarnation of it, announcing nothing.
    pub fn rekey(&mut self, old: &NodeKey, new: &NodeKey) {
        if let Some(facts) = self.nodes.remove(old) {
            self.nodes.insert(new.clone(), facts);
        }
    }

    /// Applies one node's change.
    pub fn apply(&mut self, node: &NodeKey, change: &Change) -> Vec<Transition> {
        let except = match change {
            Change::Joined { socket, .. } => socket.clone(),
            _ => None,
        };
        let (channels, users) = touched(change);
        self.transition(&channels, &users, except, |nodes| {
            let facts = nodes.entry(node.clone()).or_default();
            facts.change(change);
        })
    }

    /// Replaces a node's facts (a snapshot, or `None` when the node is gone).
    pub fn replace(&mut self, node: &NodeKey, facts: Option<Facts>) -> Vec<Transition> {
        let old = self.nodes.get(node);
        let mut channels: BTreeSet<ChannelKey> = BTreeSet::new();
        let mut users: BTreeSet<UserKey> = BTreeSet::new();
        for f in old.into_iter().chain(facts.as_ref()) {
            channels.extend(f.channels.keys().cloned());
            users.extend(f.users.keys().cloned());
        }
        self.transition(&channels, &users, None, |nodes| match facts {
            Some(facts) => {
                nodes.insert(node.clone(), facts);
            }
            None => {
                nodes.remove(node);
            }
        })
    }

    fn transition(
        &mut self,
        channels: &BTreeSet<ChannelKey>,
        users: &BTreeSet<UserKey>,
        except: Option<String>,
        mutate: impl FnOnce(&mut HashMap<NodeKey, Facts>),
    ) -> Vec<Transition> {
        let before: Vec<Totals> = channels.iter().map(|key| self.totals(key)).collect();
        let online: Vec<bool> = users.iter().map(|key| self.signed_in(key) > 0).collect();
        mutate(&mut self.nodes);
        let mut out = Vec::new();
        for (key, before) in channels.iter().zip(before) {
            let after = self.totals(key);
            compare(key, &before, &after, except.as_deref(), &mut out);
        }
        for (key, was) in users.iter().zip(online) {
            match (was, self.signed_in(key) > 0) {
                (false, true) => out.push(Transition::Online(key.clone())),
                (true, false) => out.push(Transition::Offline(key.clone())),
                _ => {}
            }
        }
        out
    }

    fn totals(&self, key: &ChannelKey) -> Totals {
        let mut totals = Totals::default();
        // Sorted by node, so every node picks the same user info.
        let mut nodes: Vec<_> = self.nodes.iter().collect();
        nodes.sort_by(|a, b| a.0.cmp(b.0));
        for (_, facts) in nodes {
            if let Some(channel) = facts.channels.get(key) {
                totals.subscribers += channel.subscribers as usize;
                for (user, member) in &channel.members {
                    totals
                        .members
                        .entry(user.clone())
                        .or_insert_with(|| member.info.clone());
                }
            }
        }
        totals
    }

    /// Sockets signed in as the user, cluster-wide.
    pub fn signed_in(&self, key: &UserKey) -> u32 {
        self.nodes
            .values()
            .filter_map(|facts| facts.users.get(key))
            .sum()
    }

    /// Subscribers and distinct users of a channel, `None` when unoccupied.
    pub fn channel(&self, app: &str, channel: &str) -> Option<(usize, usize)> {
        let totals = self.totals(&(app.to_owned(), channel.to_owned()));
        (totals.subscribers > 0).then_some((totals.subscribers, totals.members.len()))
    }

    /// Occupied channels of an app whose names start with `prefix`, with their totals.
    pub fn channels(&self, app: &str, prefix: &str) -> Vec<(String, usize, usize)> {
        let names: BTreeSet<&String> = self
            .nodes
            .values()
            .flat_map(|facts| facts.channels.keys())
            .filter(|(a, c)| a == app && c.starts_with(prefix))
            .map(|(_, c)| c)
            .collect();
        names
            .into_iter()
            .filter_map(|name| {
                let (subscribers, users) = self.channel(app, name)?;
                Some((name.clone(), subscribers, users))
            })
            .collect()
    }

    /// A presence channel's users with their info, sorted by user id.
    pub fn members(&self, app: &str, channel: &str) -> Vec<(String, Option<String>)> {
        let totals = self.totals(&(app.to_owned(), channel.to_owned()));
        totals.members.into_iter().collect()
    }
}

impl Facts {
    fn change(&mut self, change: &Change) {
        match change {
            Change::Joined {
                app,
                channel,
                user,
                info,
                ..
            } => {
                let facts = self
                    .channels
                    .entry((app.clone(), channel.clone()))
                    .or_default();
                facts.subscribers += 1;
                if let Some(user) = user {
                    let member = facts.members.entry(user.clone()).or_insert(MemberFacts {
                        sockets: 0,
                        info: info.clone(),
                    });
                    member.sockets += 1;
                }
            }
            Change::Left { app, channel, user } => {
                let key = (app.clone(), channel.clone());
                let Some(facts) = self.channels.get_mut(&key) else {
                    return;
                };
                facts.subscribers = facts.subscribers.saturating_sub(1);
                if let Some(user) = user
                    && let Some(member) = facts.members.get_mut(user)
                {
                    member.sockets = member.sockets.saturating_sub(1);
                    if member.sockets == 0 {
                        facts.members.remove(user);
                    }
                }
                if facts.subscribers == 0 {
                    self.channels.remove(&key);
                }
            }
            Change::SignedIn { app, user } => {
                *self.users.entry((app.clone(), user.clone())).or_default() += 1;
            }
            Change::SignedOut { app, user } => {
                let key = (app.clone(), user.clone());
                if let Some(count) = self.users.get_mut(&key) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.users.remove(&key);
                    }
                }
            }
        }
    }
}

/// The channel and user keys a change touches.
fn touched(change: &Change) -> (BTreeSet<ChannelKey>, BTreeSet<UserKey>) {
    let mut channels = BTreeSet::new();
    let mut users = BTreeSet::new();
    match change {
        Change::Joined { app, channel, .. } | Change::Left { app, channel, .. } => {
            channels.insert((app.clone(), channel.clone()));
        }
        Change::SignedIn { app, user } | Change::SignedOut { app, user } => {
            users.insert((app.clone(), user.clone()));
        }
    }
    (channels, users)
}

fn compare(
    key: &ChannelKey,
    before: &Totals,
    after: &Totals,
    except: Option<&str>,
    out: &mut Vec<Transition>,
) {
    if before.subscribers == 0 && after.subscribers > 0 {
        out.push(Transition::Occupied(key.clone()));
    }
    for (user, info) in &after.members {
        if !before.members.contains_key(user) {
            out.push(Transition::MemberAdded {
                channel: key.clone(),
                user: user.clone(),
                info: info.clone(),
                except: except.map(str::to_owned),
            });
        }
    }
    for user in before.members.keys() {
        if !after.members.contains_key(user) {
            out.push(Transition::MemberRemoved {
                channel: key.clone(),
                user: user.clone(),
            });
        }
    }
    if before.subscribers > 0 && after.subscribers == 0 {
        out.push(Transition::Vacated(key.clone()));
    }
    if before.subscribers != after.subscribers && after.subscribers > 0 {
        out.push(Transition::Count {
            channel: key.clone(),
            count: after.subscribers,
        });
    }
}

/// Maps with tuple keys travel as lists of pairs (JSON object keys must be strings).
mod pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &HashMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let pairs: Vec<(K, V)> = Vec::deserialize(deserializer)?;
        Ok(pairs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
