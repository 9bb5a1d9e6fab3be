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
use support::brokers::{self, PrivateBroker, TlsFiles};
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
    /// Processes the broker depends on (a Sentinel), kept alive with the rig.
    keep: Vec<PrivateBroker>,
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
            keep: Vec::new(),
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
        self.node_with_inbound(INBOUND).await
    }

    async fn node_with_inbound(&self, capacity: usize) -> Result<Node, TransportError> {
        let (tx, inbound) = mpsc::channel(capacity);
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

async fn full_inbound_drops_and_counts_without_blocking_the_reader(rig: Rig) {
    let mut nodes = rig.nodes(1).await;
    nodes.push(rig.node_with_inbound(1).await.expect("transport connects"));
    let topic = rig.topic("flood");
    nodes.iter().for_each(|n| n.transport.subscribe(&topic));
    settle(&mut nodes, 0, &topic, &[0, 1]).await;
    // Node 0's messages arrive in order: after this fence no probe is still on its way.
    assert!(
        nodes[0]
            .transport
            .publish(&topic, Bytes::from_static(b"fence"))
    );
    while recv(&mut nodes[1]).await.payload != "fence" {}
    let stats = || nodes[1].transport.stats().counts();
    let before = stats();
    for seq in 0..100 {
        assert!(
            nodes[0]
                .transport
                .publish(&topic, Bytes::from(format!("flood-{seq}")))
        );
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while stats().received < before.received + 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {:?} received",
            stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The one slot holds the first message; the other 99 were dropped and counted.
    assert_eq!(stats().inbound_dropped, before.inbound_dropped + 99);
    assert_eq!(recv(&mut nodes[1]).await.payload, "flood-0");
    assert!(
        nodes[0]
            .transport
            .publish(&topic, Bytes::from_static(b"after"))
    );
    assert_eq!(recv(&mut nodes[1]).await.payload, "after");
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

async fn outage_resubscribes_thousands_of_topics(mut rig: Rig) {
    let mut nodes = rig.nodes(2).await;
    let topics: Vec<String> = (0..2_500).map(|i| rig.topic(&format!("c.{i}"))).collect();
    topics.iter().for_each(|t| nodes[0].transport.subscribe(t));
    rig.take_down();
    for node in &nodes {
        wait_link(node, Link::Down).await;
    }
    rig.bring_up();
    for node in &nodes {
        wait_link(node, Link::Up).await;
    }
    for topic in &topics {
        assert!(
            nodes[1]
                .transport
                .publish(topic, Bytes::from(topic.clone()))
        );
    }
    let mut missing: std::collections::HashSet<String> = topics.iter().cloned().collect();
    while !missing.is_empty() {
        let message = recv(&mut nodes[0]).await;
        assert_eq!(message.payload, message.topic.as_bytes());
        missing.remove(&message.topic);
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
        large_payload_arrives_intact,
        full_inbound_drops_and_counts_without_blocking_the_reader
    ],
    outage: [
        publish_while_down_fails_and_is_counted,
        outage_recovers_links_and_subscriptions_without_help,
        outage_resubscribes_thousands_of_topics
    ]
);

// What only some transports have.

#[tokio::test(start_paused = true)]
async fn memory_node_cut_off_neither_sends_nor_receives_until_restored() {
    let broker = MemoryBroker::new();
    let rig = Rig::new(Broker::Memory(broker.clone()), "memory");
    let (tx, inbound) = mpsc::channel(INBOUND);
    let cut = broker.join(1024, tx, &rig.shutdown, &rig.tasks);
    let mut nodes = rig.nodes(2).await;
    nodes.push(Node {
        transport: cut.clone(),
        inbound,
    });
    let topic = rig.topic("partition");
    nodes.iter().for_each(|n| n.transport.subscribe(&topic));
    settle(&mut nodes, 0, &topic, &[0, 1, 2]).await;
    broker.cut_off(cut.id());
    wait_link(&nodes[2], Link::Down).await;
    assert_eq!(
        *nodes[0].transport.link().borrow(),
        Link::Up,
        "others stay Up"
    );
    assert!(
        !nodes[2]
            .transport
            .publish(&topic, Bytes::from_static(b"from-the-island"))
    );
    assert!(
        nodes[0]
            .transport
            .publish(&topic, Bytes::from_static(b"while-cut"))
    );
    for node in &mut nodes[..2] {
        assert_eq!(recv(node).await.payload, "while-cut");
    }
    broker.restore(cut.id());
    wait_link(&nodes[2], Link::Up).await;
    assert!(
        nodes[2]
            .transport
            .publish(&topic, Bytes::from_static(b"back"))
    );
    for node in &mut nodes {
        // The cut node never sees "while-cut": its first message is its own "back".
        assert_eq!(recv(node).await.payload, "back");
    }
    rig.finish(nodes).await;
}

fn private_redis_with_password() -> (PrivateBroker, String) {
    let redis = PrivateBroker::redis(&["--requirepass", "s3cr3t-pw"]);
    let url = format!("redis://:s3cr3t-pw@127.0.0.1:{}/0", redis.port);
    (redis, url)
}

#[tokio::test]
async fn redis_with_a_password_carries_messages() {
    let (redis, url) = private_redis_with_password();
    pub_sub_reaches_every_node_including_the_publisher(Rig::new(Broker::Redis(Some(redis)), &url))
        .await;
}

/// The startup error names the broker (redacted) and the cause, and never the password.
async fn assert_refused_without_secret(rig: Rig, secret: &str) {
    let error = match rig.try_node().await {
        Ok(_) => panic!("connect succeeded"),
        Err(error) => error.to_string(),
    };
    assert!(matches!(
        rig.try_node().await,
        Err(TransportError::Unreachable { .. })
    ));
    assert!(!error.contains(secret), "password leaked: {error}");
    assert!(
        error.contains("***@127.0.0.1"),
        "redacted URL missing: {error}"
    );
    rig.finish(Vec::new()).await;
}

#[tokio::test]
async fn redis_wrong_password_fails_startup_without_showing_it() {
    let (redis, url) = private_redis_with_password();
    let wrong = url.replace("s3cr3t-pw", "wr0ng-pw");
    assert_refused_without_secret(Rig::new(Broker::Redis(Some(redis)), &wrong), "wr0ng-pw").await;
}

#[tokio::test]
async fn redis_unreachable_fails_startup_within_the_timeout() {
    let url = format!("redis://:s3cr3t-pw@127.0.0.1:{}", brokers::free_port());
    let mut rig = Rig::new(Broker::Redis(None), &url);
    rig.settings.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    assert_refused_without_secret(rig, "s3cr3t-pw").await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn nats_unreachable_fails_startup_within_the_timeout() {
    let url = format!("nats://herald:s3cr3t-pw@127.0.0.1:{}", brokers::free_port());
    let mut rig = Rig::new(Broker::Nats(None), &url);
    rig.settings.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    assert_refused_without_secret(rig, "s3cr3t-pw").await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn private_nats_with_password() -> (PrivateBroker, String) {
    let nats = PrivateBroker::nats(&["--user", "herald", "--pass", "s3cr3t-pw"]);
    let url = format!("nats://herald:s3cr3t-pw@127.0.0.1:{}", nats.port);
    (nats, url)
}

#[tokio::test]
async fn nats_with_user_and_password_carries_messages() {
    let (nats, url) = private_nats_with_password();
    pub_sub_reaches_every_node_including_the_publisher(Rig::new(Broker::Nats(Some(nats)), &url))
        .await;
}

#[tokio::test]
async fn nats_wrong_password_fails_startup_without_showing_it() {
    let (nats, url) = private_nats_with_password();
    let wrong = url.replace("s3cr3t-pw", "wr0ng-pw");
    assert_refused_without_secret(Rig::new(Broker::Nats(Some(nats)), &wrong), "wr0ng-pw").await;
}

#[tokio::test]
async fn nats_server_list_skips_a_dead_server() {
    let nats = PrivateBroker::nats(&[]);
    let url = format!(
        "nats://127.0.0.1:{},{}",
        brokers::free_port(),
        nats.url("nats")
    );
    pub_sub_reaches_every_node_including_the_publisher(Rig::new(Broker::Nats(Some(nats)), &url))
        .await;
}

/// Starting degraded: Down while the broker is away, Up (not counted as a reconnect) once it
/// appears, then messages flow.
async fn degraded_start_comes_up_when_the_broker_appears(mut rig: Rig) {
    rig.take_down();
    rig.settings.start_degraded = true;
    let mut nodes = rig.nodes(2).await;
    let topic = rig.topic("late");
    nodes.iter().for_each(|n| n.transport.subscribe(&topic));
    for node in &nodes {
        assert_eq!(*node.transport.link().borrow(), Link::Down);
    }
    assert!(
        !nodes[0]
            .transport
            .publish(&topic, Bytes::from_static(b"too-early"))
    );
    rig.bring_up();
    for node in &nodes {
        wait_link(node, Link::Up).await;
    }
    assert!(
        nodes[0]
            .transport
            .publish(&topic, Bytes::from_static(b"first"))
    );
    for node in &mut nodes {
        assert_eq!(recv(node).await.payload, "first");
        assert_eq!(node.transport.stats().counts().reconnects, 0);
    }
    rig.finish(nodes).await;
}

#[tokio::test]
async fn redis_degraded_start_comes_up_when_the_broker_appears() {
    degraded_start_comes_up_when_the_broker_appears(Rig::private_redis()).await;
}

#[tokio::test]
async fn nats_degraded_start_comes_up_when_the_broker_appears() {
    degraded_start_comes_up_when_the_broker_appears(Rig::private_nats()).await;
}

#[tokio::test(start_paused = true)]
async fn memory_degraded_start_comes_up_when_the_broker_appears() {
    degraded_start_comes_up_when_the_broker_appears(Rig::memory()).await;
}

fn tls_rig(tls: &TlsFiles, broker: Broker, url: &str, trusted: bool) -> Rig {
    let mut rig = Rig::new(broker, url);
    rig.settings.tls_ca = trusted.then(|| tls.ca.clone());
    rig.settings.connect_timeout = Duration::from_secs(2);
    rig
}

#[tokio::test]
async fn rediss_with_a_private_ca_carries_messages_and_refuses_unknown_certificates() {
    let tls = TlsFiles::generate();
    let redis = PrivateBroker::redis_tls(&tls);
    let url = redis.url("rediss");
    let untrusted = tls_rig(&tls, Broker::Redis(None), &url, false);
    assert!(matches!(
        untrusted.try_node().await,
        Err(TransportError::Unreachable { .. })
    ));
    untrusted.finish(Vec::new()).await;
    let rig = tls_rig(&tls, Broker::Redis(Some(redis)), &url, true);
    pub_sub_reaches_every_node_including_the_publisher(rig).await;
}

#[tokio::test]
async fn nats_tls_with_a_private_ca_carries_messages_and_refuses_unknown_certificates() {
    let tls = TlsFiles::generate();
    let nats = PrivateBroker::nats_tls(&tls);
    let url = nats.url("tls");
    let untrusted = tls_rig(&tls, Broker::Nats(None), &url, false);
    assert!(matches!(
        untrusted.try_node().await,
        Err(TransportError::Unreachable { .. })
    ));
    untrusted.finish(Vec::new()).await;
    let rig = tls_rig(&tls, Broker::Nats(Some(nats)), &url, true);
    pub_sub_reaches_every_node_including_the_publisher(rig).await;
}

/// A private master watched by a private Sentinel; the rig's outage kills the master.
fn sentinel_rig() -> Rig {
    let master = PrivateBroker::redis(&[]);
    let sentinel = PrivateBroker::sentinel(&master);
    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port);
    let mut rig = Rig::new(Broker::Redis(Some(master)), &url);
    rig.keep.push(sentinel);
    rig
}

#[tokio::test]
async fn redis_sentinel_finds_the_master() {
    pub_sub_reaches_every_node_including_the_publisher(sentinel_rig()).await;
}

#[tokio::test]
async fn redis_sentinel_resolves_the_master_again_after_an_outage() {
    outage_recovers_links_and_subscriptions_without_help(sentinel_rig()).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_sentinel_failover_moves_the_link_to_the_promoted_replica() {
    let mut master = PrivateBroker::redis(&[]);
    let master_port = master.port.to_string();
    let replica = PrivateBroker::redis(&["--replicaof", "127.0.0.1", &master_port]);
    let sentinel = PrivateBroker::sentinel(&master);
    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port);
    let mut rig = Rig::new(Broker::Redis(None), &url);
    rig.keep.extend([replica, sentinel]);
    let mut nodes = rig.nodes(2).await;
    let topic = rig.topic("failover");
    nodes.iter().for_each(|n| n.transport.subscribe(&topic));
    settle(&mut nodes, 0, &topic, &[0, 1]).await;
    // The Sentinel learns about the replica from the master's INFO; only then can it promote.
    wait_until_sentinel_knows_a_replica(&rig.keep[1]).await;
    master.stop();
    for node in &nodes {
        wait_link(node, Link::Down).await;
    }
    // The old master stays dead: Up again means the Sentinel was asked again and named the
    // promoted replica.
    for node in &nodes {
        let mut link = node.transport.link();
        timeout(
            Duration::from_secs(30),
            link.wait_for(|now| *now == Link::Up),
        )
        .await
        .expect("link Up on the promoted replica")
        .expect("link sender alive");
    }
    assert!(
        nodes[1]
            .transport
            .publish(&topic, Bytes::from_static(b"promoted"))
    );
    for node in &mut nodes {
        assert_eq!(recv(node).await.payload, "promoted");
    }
    rig.finish(nodes).await;
}

#[cfg(feature = "redis")]
async fn wait_until_sentinel_knows_a_replica(sentinel: &PrivateBroker) {
    let client = ::redis::Client::open(sentinel.url("redis")).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let replicas: Vec<::redis::Value> = ::redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg("mymaster")
            .query_async(&mut connection)
            .await
            .unwrap();
        if !replicas.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the Sentinel never saw the replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Not a test: figures for the report. `cargo test --release -p herald --test transport --
/// --ignored measure --nocapture` prints, per transport, saturated throughput of 100,000
/// 200-byte messages from one node to another, then publish -> receive latency at a
/// steady 10,000 messages/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand"]
async fn measure_throughput_and_latency() {
    for rig in [Rig::memory(), Rig::shared_redis(), Rig::shared_nats()] {
        let name = rig.driver().name();
        let mut nodes = rig.nodes(2).await;
        let topic = rig.topic("bench");
        nodes[1].transport.subscribe(&topic);
        settle(&mut nodes, 0, &topic, &[1]).await;
        let (sent_at, rate) = measure_throughput(&mut nodes, &topic, 100_000).await;
        let latencies = measure_latency(&mut nodes, &topic, 20_000, sent_at).await;
        let pct =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        eprintln!(
            "{name}: {rate:.0} msg/s saturated; latency at 10k msg/s ({} samples) p50 {:?} p99 {:?} max {:?}",
            latencies.len(),
            pct(0.50),
            pct(0.99),
            latencies[latencies.len() - 1]
        );
        rig.finish(nodes).await;
    }
}

/// Publishes `n` messages as fast as the queue takes them; returns the clock base and the
/// receive rate.
async fn measure_throughput(nodes: &mut [Node], topic: &str, n: usize) -> (Instant, f64) {
    let payload = Bytes::from(vec![b'x'; 200]);
    let started = Instant::now();
    let publisher = nodes[0].transport.clone();
    let topic_owned = topic.to_owned();
    let publishing = tokio::spawn(async move {
        let mut full = 0u64;
        for _ in 0..n {
            while !publisher.publish(&topic_owned, payload.clone()) {
                full += 1;
                tokio::task::yield_now().await;
            }
        }
        full
    });
    let received = recv_for_measure(&mut nodes[1], n, |_| ()).await;
    let elapsed = started.elapsed();
    let full = publishing.await.unwrap();
    let dropped = nodes[1].transport.stats().counts().inbound_dropped;
    eprintln!(
        "  {received} of {n} received in {elapsed:?} ({dropped} dropped by a full inbound, \
         publish refused {full} times while the queue was full)"
    );
    (started, received as f64 / elapsed.as_secs_f64())
}

/// Receives up to `n` data messages, stopping early after a second of silence (pub/sub is
/// at-most-once: a full inbound channel drops). Returns how many arrived.
async fn recv_for_measure(node: &mut Node, n: usize, mut each: impl FnMut(Inbound)) -> usize {
    let mut received = 0;
    while received < n {
        match timeout(Duration::from_secs(1), node.inbound.recv()).await {
            Ok(Some(message)) if !message.payload.starts_with(PROBE) => {
                received += 1;
                each(message);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    received
}

/// Publishes `n` messages at 10 per millisecond, each stamped with its send time; returns
/// the sorted latencies.
async fn measure_latency(
    nodes: &mut [Node],
    topic: &str,
    n: usize,
    base: Instant,
) -> Vec<Duration> {
    let publisher = nodes[0].transport.clone();
    let topic_owned = topic.to_owned();
    let publishing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for _ in 0..n / 10 {
            tick.tick().await;
            for _ in 0..10 {
                let mut payload = vec![b'x'; 200];
                let nanos = base.elapsed().as_nanos() as u64;
                payload[..8].copy_from_slice(&nanos.to_be_bytes());
                assert!(publisher.publish(&topic_owned, payload.into()));
            }
        }
    });
    let mut latencies = Vec::with_capacity(n);
    recv_for_measure(&mut nodes[1], n, |message| {
        let sent = u64::from_be_bytes(message.payload[..8].try_into().unwrap());
        latencies.push(base.elapsed() - Duration::from_nanos(sent));
    })
    .await;
    publishing.await.unwrap();
    latencies.sort();
    latencies
}
