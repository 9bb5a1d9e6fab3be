//! An in-process broker for tests: N nodes in one process, with switches to fail the broker or
//! cut one node off. Delivery is asynchronous (one task per node) and keeps per-publisher
//! order; it never sleeps, so it runs under `tokio::time::pause()`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::endpoint::{Endpoint, Outgoing};
use super::{Inbound, Link, Transport, TransportStats};

/// Messages one node task moves per turn; bounds how long it holds the broker's lock.
const BATCH: usize = 64;

/// Identifies a node of a [`MemoryBroker`], for [`MemoryBroker::cut_off`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryNodeId(u64);

/// The shared broker. Clones are handles to the same broker.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    registry: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    down: bool,
    next_id: u64,
    members: HashMap<MemoryNodeId, Member>,
}

/// A node as the broker sees it: its subscriptions live in the broker, so a broker outage
/// loses them and the node must subscribe again, as with Redis and NATS.
struct Member {
    endpoint: Arc<Endpoint>,
    topics: HashSet<String>,
    cut: bool,
    wake: Arc<Notify>,
}

/// One node's transport on a [`MemoryBroker`].
pub struct MemoryTransport {
    endpoint: Arc<Endpoint>,
    id: MemoryNodeId,
}

impl MemoryBroker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node. Its task ends when `shutdown` is cancelled, and the node leaves.
    pub fn join(
        &self,
        queue_capacity: usize,
        inbound: mpsc::Sender<Inbound>,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Arc<MemoryTransport> {
        let mut registry = self.lock();
        let link = if registry.down { Link::Down } else { Link::Up };
        let (endpoint, queue) = Endpoint::new(queue_capacity, inbound, link);
        let id = MemoryNodeId(registry.next_id);
        registry.next_id += 1;
        let wake = Arc::new(Notify::new());
        registry.members.insert(
            id,
            Member {
                endpoint: endpoint.clone(),
                topics: HashSet::new(),
                cut: false,
                wake: wake.clone(),
            },
        );
        drop(registry);
        let node = NodeTask {
            broker: self.clone(),
            id,
            endpoint: endpoint.clone(),
            wake,
        };
        tasks.spawn(node.run(queue, shutdown.clone()));
        Arc::new(MemoryTransport { endpoint, id })
    }

    /// Fails the broker: every link goes Down, subscriptions are lost, publishes fail.
    pub fn take_down(&self) {
        let mut registry = self.lock();
        registry.down = true;
        for member in registry.members.values_mut() {
            member.topics.clear();
            member.wake.notify_one();
        }
    }

    /// Brings the broker back: nodes subscribe again, then their links go Up.
    pub fn bring_up(&self) {
        let mut registry = self.lock();
        registry.down = false;
        registry.members.values().for_each(|m| m.wake.notify_one());
    }

    /// Cuts one node off (a network partition): its link goes Down, it receives nothing and
    /// nothing it published reaches anyone.
    /// The nodes that joined, in the order they joined.
    pub fn node_ids(&self) -> Vec<MemoryNodeId> {
        let mut ids: Vec<MemoryNodeId> = self.lock().members.keys().copied().collect();
        ids.sort_by_key(|id| id.0);
        ids
    }

    pub fn cut_off(&self, id: MemoryNodeId) {
        self.set_cut(id, true);
    }

    /// Reconnects a node cut off by [`MemoryBroker::cut_off`].
    pub fn restore(&self, id: MemoryNodeId) {
        self.set_cut(id, false);
    }

    fn set_cut(&self, id: MemoryNodeId, cut: bool) {
        if let Some(member) = self.lock().members.get_mut(&id) {
            member.cut = cut;
            member.topics.clear();
            member.wake.notify_one();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_reachable(&self, id: MemoryNodeId) -> bool {
        let registry = self.lock();
        !registry.down && registry.members.get(&id).is_some_and(|m| !m.cut)
    }

    /// Applies subscription changes; false when the node is unreachable (they are lost).
    fn resubscribe(&self, id: MemoryNodeId, add: Vec<String>, remove: &[String]) -> bool {
        let mut registry = self.lock();
        let down = registry.down;
        match registry.members.get_mut(&id) {
            Some(member) if !down && !member.cut => {
                member.topics.extend(add);
                remove.iter().for_each(|topic| {
                    member.topics.remove(topic);
                });
                true
            }
            _ => false,
        }
    }

    /// Delivers a batch from `from` to every subscribed node; returns how many were sent.
    fn deliver(&self, from: MemoryNodeId, batch: &mut Vec<Outgoing>) -> usize {
        let registry = self.lock();
        let reachable = !registry.down && registry.members.get(&from).is_some_and(|m| !m.cut);
        if !reachable {
            batch.clear();
            return 0;
        }
        let sent = batch.len();
        for message in batch.drain(..) {
            let receivers = registry.members.values();
            for member in receivers.filter(|m| !m.cut && m.topics.contains(&message.topic)) {
                member
                    .endpoint
                    .deliver(message.topic.clone(), message.payload.clone());
            }
        }
        sent
    }
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registry = self.lock();
        f.debug_struct("MemoryBroker")
            .field("down", &registry.down)
            .field("nodes", &registry.members.len())
            .finish()
    }
}

/// The task of one node: moves its queue into the broker and keeps its link and
/// subscriptions in line with the broker's state.
struct NodeTask {
    broker: MemoryBroker,
    id: MemoryNodeId,
    endpoint: Arc<Endpoint>,
    wake: Arc<Notify>,
}

impl NodeTask {
    async fn run(self, mut queue: mpsc::Receiver<Outgoing>, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        // What the broker holds for us; an outage empties it.
        let mut registered = HashSet::new();
        loop {
            self.sync(&mut registered, &mut queue);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = self.endpoint.wanted_changed() => {}
                n = queue.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let sent = self.broker.deliver(self.id, &mut batch);
                    let stats = self.endpoint.counters();
                    stats.add_published(sent as u64);
                    stats.add_publish_dropped((n - sent) as u64);
                }
            }
        }
        self.broker.lock().members.remove(&self.id);
    }

    /// Brings subscriptions and link in line with the broker: subscribe everything before
    /// going Up, drop the queue when going Down.
    fn sync(&self, registered: &mut HashSet<String>, queue: &mut mpsc::Receiver<Outgoing>) {
        if !self.broker.is_reachable(self.id) {
            registered.clear();
            if self.endpoint.set_link(Link::Down) {
                self.endpoint.drop_queued(queue);
            }
            return;
        }
        let (add, remove) = self.endpoint.changes(registered);
        if self.broker.resubscribe(self.id, add.clone(), &remove) {
            registered.extend(add);
            remove.iter().for_each(|topic| {
                registered.remove(topic);
            });
            self.endpoint.set_link(Link::Up);
        }
    }
}

impl MemoryTransport {
    /// This node's id, for [`MemoryBroker::cut_off`] and [`MemoryBroker::restore`].
    pub fn id(&self) -> MemoryNodeId {
        self.id
    }
}

impl Transport for MemoryTransport {
    fn publish(&self, topic: &str, payload: Bytes) -> bool {
        self.endpoint.publish(topic, payload)
    }

    fn subscribe(&self, topic: &str) {
        self.endpoint.subscribe(topic);
    }

    fn unsubscribe(&self, topic: &str) {
        self.endpoint.unsubscribe(topic);
    }

    fn link(&self) -> watch::Receiver<Link> {
        self.endpoint.link()
    }

    fn stats(&self) -> &TransportStats {
        self.endpoint.stats()
    }
}
