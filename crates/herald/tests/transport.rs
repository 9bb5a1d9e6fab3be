//! The transport scenario suite, written once and run against the memory broker (under paused
//! time), Redis and NATS; then what only real brokers have: passwords, TLS, Sentinel, server
//! lists, unreachable brokers and degraded starts.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald::cluster::transport::{
    self, Driver, Inbound, Link, MemoryBroker, Settings, Transport, TransportError,
};
use support::brokers::{self, PrivateBroker};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long anything that should happen may take.
const WAIT: Duration = Duration::from_secs(10);
/// Inbound channel size: large enough for the 10,000-message scenario without reading.
const INBOUND: usize = 32_768;
/// Payloads starting with this are settling probes, which scenarios skip.
const PROBE: &[u8] = b"probe";

/// One node: its transport and what it receives.
struct Node {
    transport: Arc<dyn Transport>,
    inbound: mpsc::Receiver<Inbound>,
}

enum Broker {
    Memory(MemoryBroker),
    Redis(Option<PrivateBroker>),
    Nats(Option<PrivateBroker>),
}

/// A broker, the settings to reach it and the lifetime of the nodes joined to it.
struct Rig {
    broker: Broker,
    settings: Settings,
    prefix: String,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Tasks alive in the runtime before any node: all must be gone after `finish`.
    baseline: usize,
}

impl Rig {
    fn new(broker: Broker, url: &str) -> Self {
        let prefix = format!("herald.test.t{:016x}", rand::random::<u64>());
        Self {
            broker,
            settings: Settings::new(url),
            prefix,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            baseline: tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
        }
    }

    fn memory() -> Self {
        Self::new(Broker::Memory(MemoryBroker::new()), "memory")
    }

    fn shared_redis() -> Self {
        Self::new(Broker::Redis(None), brokers::require_shared_redis())
    }

    fn shared_nats() -> Self {
        Self::new(Broker::Nats(None), brokers::require_shared_nats())
    }

    fn private_redis() -> Self {
        let redis = PrivateBroker::redis(&[]);
        let url = redis.url("redis");
        Self::new(Broker::Redis(Some(redis)), &url)
    }

    fn private_nats() -> Self {
        let nats = PrivateBroker::nats(&[]);
        let url = nats.url("nats");
        Self::new(Broker::Nats(Some(nats)), &url)
    }

    fn driver(&self) -> Driver {
        match &self.broker {
            Broker::Memory(broker) => Driver::Memory(broker.clone()),
            Broker::Redis(_) => Driver::Redis,
            Broker::Nats(_) => Driver::Nats,
        }
    }

    fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    async fn try_node(&self) -> Result<Node, TransportError> {
        let (tx, inbound) = mpsc::channel(INBOUND);
        let driver = self.driver();
        let started = transport::connect(&driver, &self.settings, tx, &self.shutdown, &self.tasks);
        let transport = started.await?;
        Ok(Node { transport, inbound })
    }

    async fn node(&self) -> Node {
        self.try_node().await.expect("transport connects")
    }

    async fn nodes(&self, n: usize) -> Vec<Node> {
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(self.node().await);
        }
        nodes
    }

    /// Fails the broker: the memory broker's switch, or SIGKILL of the private process.
    fn take_down(&mut self) {
        match &mut self.broker {
            Broker::Memory(broker) => broker.take_down(),
            Broker::Redis(Some(process)) | Broker::Nats(Some(process)) => process.stop(),
            _ => panic!("outage scenarios need a private broker"),
        }
    }

    fn bring_up(&mut self) {
        match &mut self.broker {
            Broker::Memory(broker) => broker.bring_up(),
            Broker::Redis(Some(process)) | Broker::Nats(Some(process)) => process.start(),
            _ => panic!("outage scenarios need a private broker"),
        }
    }

    /// Stops every node and checks that all their tasks ended, the drivers' own included.
    async fn finish(self, nodes: Vec<Node>) {
        self.shutdown.cancel();
        drop(nodes);
        self.tasks.close();
        timeout(WAIT, self.tasks.wait())
            .await
            .expect("transport tasks end on shutdown");
        let metrics = tokio::runtime::Handle::current().metrics();
        let deadline = Instant::now() + WAIT;
        while metrics.num_alive_tasks() > self.baseline {
            assert!(
                Instant::now() < deadline,
                "{} tasks still alive after shutdown, {} before the test",
                metrics.num_alive_tasks(),
                self.baseline
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Publishes probes from `nodes[from]` until every node in `to` has received one on
/// `topic`: subscribing takes effect asynchronously.
async fn settle(nodes: &mut [Node], from: usize, topic: &str, to: &[usize]) {
    let mut waiting: Vec<usize> = to.to_vec();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !waiting.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriptions of {waiting:?} never took effect"
        );
        nodes[from]
            .transport
            .publish(topic, Bytes::from_static(PROBE));
        tokio::time::sleep(Duration::from_millis(50)).await;
        waiting.retain(|&i| {
            let mut got = false;
            while let Ok(message) = nodes[i].inbound.try_recv() {
                got |= message.topic == topic && message.payload.starts_with(PROBE);
            }
            !got
        });
    }
}

/// The next message that is not a probe.
async fn recv(node: &mut Node) -> Inbound {
    loop {
        let message = timeout(WAIT, node.inbound.recv())
            .await
            .expect("a message arrives in time")
            .expect("inbound open");
        if !message.payload.starts_with(PROBE) {
            return message;
        }
    }
}

async fn wait_link(node: &Node, want: Link) {
    let mut link = node.transport.link();
    timeout(WAIT, link.wait_for(|now| *now == want))
        .await
        .unwrap_or_else(|_| panic!("link never went {want:?}"))
        .expect("link sender alive");
}

async fn pub_sub_reaches_every_node_including_the_publisher(rig: Rig) {
    let mut nodes = rig.nodes(3).await;
    let topic = rig.topic("room");
    nodes.iter().for_each(|n| n.transport.subscribe(&topic));
    settle(&mut nodes, 0, &topic, &[0, 1, 2]).await;
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            node.transport
                .publish(&topic, Bytes::from(format!("from-{i}")))
        );
    }
    for node in &mut nodes {
        let mut got = Vec::new();
        for _ in 0..3 {
            let message = recv(node).await;
            assert_eq!(message.topic, topic);
            got.push(message.payload);
        }
        got.sort();
        assert_eq!(got, ["from-0", "from-1", "from-2"]);
    }
    rig.finish(nodes).await;
}

async fn one_publishers_order_holds_for_10000_messages(rig: Rig) {
    let mut nodes = rig.nodes(3).await;
    let topic = rig.topic("ordered");
    nodes.iter().for_each(|n| n.transport.subscribe(&topic));
    settle(&mut nodes, 0, &topic, &[0, 1, 2]).await;
    for seq in 0..10_000u64 {
        let sent = nodes[0]
            .transport
            .publish(&topic, Bytes::copy_from_slice(&seq.to_be_bytes()));
        assert!(sent, "publish {seq} refused");
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        for want in 0..10_000u64 {
            let message = recv(node).await;
            let got = u64::from_be_bytes(message.payload.as_ref().try_into().unwrap());
            assert_eq!(got, want, "node {i} out of order");
        }
    }
    assert_eq!(nodes[0].transport.stats().counts().publish_dropped, 0);
    rig.finish(nodes).await;
}

async fn unsubscribe_stops_delivery(rig: Rig) {
    let mut nodes = rig.nodes(2).await;
    let (topic, fence) = (rig.topic("leaving"), rig.topic("fence"));
    for node in &nodes {
        node.transport.subscribe(&topic);
        node.transport.subscribe(&fence);
    }
    settle(&mut nodes, 0, &topic, &[0, 1]).await;
    settle(&mut nodes, 0, &fence, &[0, 1]).await;
    nodes[1].transport.unsubscribe(&topic);
    // Node 0's messages arrive in order, so once node 1 gets a fence with nothing on `topic`
    // before it, the unsubscribe has reached the broker.
    let deadline = tokio::time::Instant::now() + WAIT;
    for round in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "unsubscribe never took effect"
        );
        nodes[0]
            .transport
            .publish(&topic, Bytes::from(format!("early-{round}")));
        nodes[0]
            .transport
            .publish(&fence, Bytes::from(format!("fence-{round}")));
        let leaked = loop {
            let message = recv(&mut nodes[1]).await;
            if message.topic == fence {
                break false;
            }
            if message.topic == topic {
                // Keep reading up to this round's fence.
                while recv(&mut nodes[1]).await.topic != fence {}
                break true;
            }
        };
        if !leaked {
            break;
        }
    }
    for seq in 0..100 {
        nodes[0]
            .transport
            .publish(&topic, Bytes::from(format!("late-{seq}")));
    }
    nodes[0]
        .transport
        .publish(&fence, Bytes::from_static(b"last"));
    let last = recv(&mut nodes[1]).await;
    assert_eq!(
        (last.topic.as_str(), last.payload.as_ref()),
        (fence.as_str(), &b"last"[..])
    );
    // Node 0 still gets everything.
    let mut late = 0;
    while late < 100 {
        let message = recv(&mut nodes[0]).await;
        late += usize::from(message.payload.starts_with(b"late-"));
    }
    rig.finish(nodes).await;
}

async fn large_payload_arrives_intact(rig: Rig) {
    let mut nodes = rig.nodes(2).await;
    let topic = rig.topic("large");
    nodes.iter().for_each(|n| n.transport.subscribe(&topic));
    settle(&mut nodes, 0, &topic, &[0, 1]).await;
    let payload: Bytes = (0..64 * 1024)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect::<Vec<_>>()
        .into();
    assert!(nodes[1].transport.publish(&topic, payload.clone()));
    for node in &mut nodes {
        assert_eq!(recv(node).await.payload, payload);
    }
    let received = nodes[0].transport.stats().counts().received_bytes;
    assert!(
        received >= payload.len() as u64,
        "received bytes counted: {received}"
    );
    rig.finish(nodes).await;
}

async fn publish_while_down_fails_and_is_counted(mut rig: Rig) {
    let nodes = rig.nodes(2).await;
    rig.take_down();
    for node in &nodes {
        wait_link(node, Link::Down).await;
    }
    let before = nodes[0].transport.stats().counts().publish_dropped;
    assert!(
        !nodes[0]
            .transport
            .publish(&rig.topic("void"), Bytes::from_static(b"x"))
    );
    assert_eq!(
        nodes[0].transport.stats().counts().publish_dropped,
        before + 1
    );
    rig.bring_up();
    wait_link(&nodes[0], Link::Up).await;
    assert!(
        nodes[0]
            .transport
            .publish(&rig.topic("void"), Bytes::from_static(b"x"))
    );
    rig.finish(nodes).await;
}

async fn outage_recovers_links_and_subscriptions_without_help(mut rig: Rig) {
    let mut nodes = rig.nodes(3).await;
    let topic = rig.topic("survivor");
    nodes.iter().for_each(|n| n.transport.subscribe(&topic));
    settle(&mut nodes, 0, &topic, &[0, 1, 2]).await;
    rig.take_down();
    for node in &nodes {
        wait_link(node, Link::Down).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    rig.bring_up();
    for node in &nodes {
        wait_link(node, Link::Up).await;
    }
    // Up means resubscribed: no settling, the first message must arrive everywhere.
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            node.transport
                .publish(&topic, Bytes::from(format!("after-{i}")))
        );
    }
    for node in &mut nodes {
        let mut got: Vec<Bytes> = Vec::new();
        for _ in 0..3 {
            got.push(recv(node).await.payload);
        }
        got.sort();
        assert_eq!(got, ["after-0", "after-1", "after-2"]);
        assert!(node.transport.stats().counts().reconnects >= 1);
    }
    rig.finish(nodes).await;
}

/// Runs each scenario on every transport: the memory broker under paused time, Redis and
/// NATS for real. `$shared` scenarios use the machine's brokers, `$outage` ones a private
/// process they may kill.
macro_rules! suite {
    (shared: [$($shared:ident),*], outage: [$($outage:ident),*]) => {
        mod memory {
            $(#[tokio::test(start_paused = true)]
            async fn $shared() { super::$shared(super::Rig::memory()).await })*
            $(#[tokio::test(start_paused = true)]
            async fn $outage() { super::$outage(super::Rig::memory()).await })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $shared() { super::$shared(super::Rig::shared_redis()).await })*
            $(#[tokio::test]
            async fn $outage() { super::$outage(super::Rig::private_redis()).await })*
        }
        mod nats {
            $(#[tokio::test]
            async fn $shared() { super::$shared(super::Rig::shared_nats()).await })*
            $(#[tokio::test]
            async fn $outage() { super::$outage(super::Rig::private_nats()).await })*
        }
    };
}

suite!(
    shared: [
        pub_sub_reaches_every_node_including_the_publisher,
        one_publishers_order_holds_for_10000_messages,
        unsubscribe_stops_delivery,
        large_payload_arrives_intact
    ],
    outage: [
        publish_while_down_fails_and_is_counted,
        outage_recovers_links_and_subscriptions_without_help
    ]
);
