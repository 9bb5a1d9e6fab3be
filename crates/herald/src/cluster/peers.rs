//! The other nodes as this one sees them: when each was last heard from, which of its
//! changes were applied, whether its facts are known (synced), whether it is leaving, and
//! which incarnations were declared dead. Also who owns a key: rendezvous hashing over the
//! live, synced nodes, so every node that sees the same members picks the same owner.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::view::NodeKey;

/// Dead incarnations remembered, so their late messages are recognised.
const TOMBSTONES: usize = 1_024;

#[derive(Debug)]
pub struct Peer {
    pub key: NodeKey,
    pub last_seen: Instant,
    /// The last change number applied from it.
    pub seq: u64,
    /// Its facts are in the view (a snapshot arrived).
    pub synced: bool,
    /// It says it is ready to own keys.
    pub eligible: bool,
    pub connections: HashMap<String, usize>,
    /// Shutting down: its facts stay until then.
    pub leaving_until: Option<Instant>,
    /// When a snapshot was last asked of it.
    pub requested_at: Option<Instant>,
    /// It has a debug console viewer: it wants every node's debug events.
    pub watching: bool,
}

/// What to do about a message's sender.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// A known, live incarnation.
    Known,
    /// First heard of: ask for its snapshot.
    New,
    /// A new incarnation of a known node id: drop the old one's facts, ask for a snapshot.
    Replaced(NodeKey),
    /// Declared dead: tell it to rejoin, ignore the message.
    Dead,
}

#[derive(Debug, Default)]
pub struct Peers {
    peers: HashMap<String, Peer>,
    dead: VecDeque<NodeKey>,
}

impl Peers {
    /// Records that `from` was heard from.
    pub fn seen(&mut self, from: &NodeKey, now: Instant) -> Seen {
        if self.dead.contains(from) {
            return Seen::Dead;
        }
        match self.peers.get_mut(&from.id) {
            Some(peer) if peer.key == *from => {
                peer.last_seen = now;
                Seen::Known
            }
            Some(peer) if peer.key.epoch > from.epoch => Seen::Dead,
            Some(peer) => {
                let old = std::mem::replace(peer, Peer::new(from.clone(), now));
                Seen::Replaced(old.key)
            }
            None => {
                self.peers
                    .insert(from.id.clone(), Peer::new(from.clone(), now));
                Seen::New
            }
        }
    }

    pub fn get_mut(&mut self, key: &NodeKey) -> Option<&mut Peer> {
        self.peers.get_mut(&key.id).filter(|p| p.key == *key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// Removes a peer and remembers it as dead.
    pub fn bury(&mut self, key: &NodeKey) {
        if self.peers.get(&key.id).is_some_and(|p| p.key == *key) {
            self.peers.remove(&key.id);
        }
        if self.dead.len() == TOMBSTONES {
            self.dead.pop_front();
        }
        self.dead.push_back(key.clone());
    }

    /// Peers silent for longer than `timeout`, or whose leaving grace is over.
    pub fn expired(&self, now: Instant, timeout: Duration) -> Vec<NodeKey> {
        self.peers
            .values()
            .filter(|p| {
                now.duration_since(p.last_seen) > timeout
                    || p.leaving_until.is_some_and(|until| now >= until)
            })
            .map(|p| p.key.clone())
            .collect()
    }

    /// After this node's own outage nobody could be heard: start their clocks again.
    pub fn forgive(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            peer.last_seen = now;
        }
    }

    /// Open connections of an app on the other nodes.
    pub fn connections(&self, app: &str) -> usize {
        self.peers
            .values()
            .filter_map(|p| p.connections.get(app))
            .sum()
    }

    /// The nodes that may own keys: synced, eligible, not leaving; `me` if eligible.
    pub fn owners<'a>(&'a self, me: &'a NodeKey, me_eligible: bool) -> Vec<&'a NodeKey> {
        let mut owners: Vec<&NodeKey> = self
            .peers
            .values()
            .filter(|p| p.synced && p.eligible && p.leaving_until.is_none())
            .map(|p| &p.key)
            .collect();
        if me_eligible || owners.is_empty() {
            owners.push(me);
        }
        owners
    }
}

impl Peer {
    fn new(key: NodeKey, now: Instant) -> Self {
        Self {
            key,
            last_seen: now,
            seq: 0,
            synced: false,
            eligible: false,
            connections: HashMap::new(),
            leaving_until: None,
            requested_at: None,
            watching: false,
        }
    }
}

/// The owner of `key` among `nodes`: the highest hash of (node, key). Stable across nodes
/// and builds (FNV-1a, not the randomly seeded std hasher).
pub fn owner<'a>(nodes: &[&'a NodeKey], key: &str) -> Option<&'a NodeKey> {
    nodes.iter().copied().max_by_key(|node| {
        let mut hash = Fnv::default();
        hash.write(node.id.as_bytes());
        hash.write(&node.epoch.to_le_bytes());
        hash.write(key.as_bytes());
        (mix(hash.0), &node.id)
    })
}

/// The splitmix64 finaliser: FNV alone spreads similar keys poorly over few nodes.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// 64-bit FNV-1a.
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, epoch: u64) -> NodeKey {
        NodeKey {
            id: id.into(),
            epoch,
        }
    }

    #[test]
    fn owners_are_spread_and_agree_whatever_the_order() {
        let (a, b, c) = (key("a", 1), key("b", 1), key("c", 1));
        let one = [&a, &b, &c];
        let other = [&c, &a, &b];
        let mut counts = HashMap::new();
        for n in 0..300 {
            let channel = format!("1/channel-{n}");
            let chosen = owner(&one, &channel).expect("an owner");
            assert_eq!(Some(chosen), owner(&other, &channel));
            *counts.entry(chosen.id.clone()).or_insert(0) += 1;
        }
        assert!(counts.values().all(|n| *n > 60), "{counts:?}");
        // Removing a node only moves the keys it owned.
        let two = [&a, &b];
        for n in 0..300 {
            let channel = format!("1/channel-{n}");
            let before = owner(&one, &channel).expect("owner");
            if before.id != "c" {
                assert_eq!(owner(&two, &channel), Some(before));
            }
        }
    }

    #[test]
    fn incarnations_are_new_replaced_known_or_dead() {
        let now = Instant::now();
        let mut peers = Peers::default();
        assert_eq!(peers.seen(&key("a", 1), now), Seen::New);
        assert_eq!(peers.seen(&key("a", 1), now), Seen::Known);
        assert_eq!(peers.seen(&key("a", 2), now), Seen::Replaced(key("a", 1)));
        assert_eq!(peers.seen(&key("a", 1), now), Seen::Dead, "an older epoch");
        peers.bury(&key("a", 2));
        assert_eq!(peers.seen(&key("a", 2), now), Seen::Dead);
        assert_eq!(peers.seen(&key("a", 3), now), Seen::New);
    }

    #[test]
    fn silent_and_departed_peers_expire() {
        let start = Instant::now();
        let mut peers = Peers::default();
        peers.seen(&key("a", 1), start);
        peers.seen(&key("b", 1), start);
        let timeout = Duration::from_secs(10);
        assert!(peers.expired(start + timeout, timeout).is_empty());
        peers.seen(&key("b", 1), start + Duration::from_secs(5));
        assert_eq!(
            peers.expired(start + Duration::from_secs(11), timeout),
            vec![key("a", 1)]
        );
        peers.forgive(start + Duration::from_secs(11));
        assert!(
            peers
                .expired(start + Duration::from_secs(12), timeout)
                .is_empty()
        );
    }
}
