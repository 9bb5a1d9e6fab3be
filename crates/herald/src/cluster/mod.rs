//! Horizontal scaling, written once above a [`transport::Transport`] that only moves bytes.
//! Events travel as envelopes naming their origin (echoes are dropped); a node listens to a
//! channel's topic only while it has a local subscriber. Shared state follows one rule: each
//! node owns its own facts and announces every change to them, every node keeps the union
//! (the [`view::View`]), and each transition (member added, channel vacated...) is announced
//! by the one node that owns its key (rendezvous hashing over live nodes). See
//! ARCHITECTURE.md, "Cluster".

mod inbound;
pub mod message;
pub mod peers;
pub mod transport;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herald_protocol::SocketId;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::{Member, Refused};
use crate::metrics::DurationHistogram;
use crate::outbox::Frame;
use message::{CacheMeta, Message, Target};
use peers::{Fnv, Peers};
use transport::{Link, Transport};
use view::{Change, NodeKey, Transition, View};

/// Messages received but not yet handled before the transport drops more (and counts).
const INBOUND_CAPACITY: usize = 65_536;

/// Connects to the broker and joins the cluster. Returns the cluster and what the transport
/// receives (for [`crate::node::Node::run_cluster`]). The transport's tasks stop when
/// `stop` is cancelled.
pub async fn start(
    settings: &ClusterSettings,
    removal_delay: Duration,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<(Arc<Cluster>, mpsc::Receiver<transport::Inbound>), transport::TransportError> {
    let (inbound, received) = mpsc::channel(INBOUND_CAPACITY);
    let mut transport_settings = transport::Settings::new(settings.url.clone());
    transport_settings.start_degraded = settings.start_degraded;
    let transport =
        transport::connect(&settings.driver, &transport_settings, inbound, stop, tasks).await?;
    let node_id = settings.node_id.clone().unwrap_or_else(default_node_id);
    tracing::info!(node = %node_id, prefix = %settings.prefix, "joining the cluster");
    let timing = Timing {
        heartbeat_interval: settings.heartbeat_interval,
        node_timeout: settings.node_timeout,
        removal_delay,
    };
    let cluster = Cluster::new(node_id, settings.prefix.clone(), transport, timing);
    Ok((Arc::new(cluster), received))
}

/// Subscription counts above this are announced at most every [`COUNT_INTERVAL`] (§3.9).
const COUNT_THROTTLE_ABOVE: usize = 100;
const COUNT_INTERVAL: Duration = Duration::from_secs(5);
/// Announcements kept for other nodes while the broker is unreachable.
const UNSENT_CAPACITY: usize = 10_000;
/// A snapshot is asked of one node at most this often.
const REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// `[cluster]`, when the node is one of several.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub driver: transport::Driver,
    /// Broker URL; may hold a password, never logged.
    pub url: String,
    /// Namespace of every topic: clusters may share a broker.
    pub prefix: String,
    /// `None`: the host name and a random suffix.
    pub node_id: Option<String>,
    pub heartbeat_interval: Duration,
    pub node_timeout: Duration,
    /// Start with the broker unreachable instead of failing, and keep connecting.
    pub start_degraded: bool,
}

/// Timings of the cluster protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    /// Silence after which a node is dead.
    pub node_timeout: Duration,
    /// How long a leaving node's facts are kept, so its clients can reconnect elsewhere
    /// without a `member_removed`/`member_added` pair (the webhook removal delay).
    pub removal_delay: Duration,
}

/// The longest a first subscriber waits for its channel's topic to be confirmed.
const LISTEN_WAIT: Duration = Duration::from_secs(1);
/// How often a probe is sent until it comes back.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// A topic this node listens to.
struct Listened {
    /// Local needs (subscribed sockets, signed-in users).
    count: usize,
    /// The probe whose return confirms the subscription.
    nonce: u64,
    confirm: tokio::sync::watch::Sender<bool>,
    confirmed: tokio::sync::watch::Receiver<bool>,
}

/// Ends when the broker delivers a just-subscribed topic to this node, or after
/// [`LISTEN_WAIT`].
pub struct Listening(tokio::sync::watch::Receiver<bool>);

impl Listening {
    pub async fn ready(&mut self) {
        let _ = tokio::time::timeout(LISTEN_WAIT, self.0.wait_for(|done| *done)).await;
    }
}

/// How an event travels beyond its channel's topic.
#[derive(Debug, Default)]
pub struct Forward {
    /// A cache channel's event: every node remembers it.
    pub cache: Option<CacheMeta>,
    /// Presence and count events: on the control topic, so every node gets them.
    pub every_node: bool,
    /// A `member_added` for this user.
    pub member_added: Option<String>,
}

/// How long a member announced by another node's change may stay out of the rosters this
/// node sends while its `member_added` is on its way (then it is listed anyway).
const ANNOUNCE_WAIT: Duration = Duration::from_secs(2);

/// What the node must do after the cluster heard something.
#[derive(Debug)]
pub enum Action {
    /// Deliver an event from another node to this node's sockets.
    Deliver {
        app: String,
        target: Target,
        frame: Frame,
        except: Option<SocketId>,
        cache: Option<CacheMeta>,
        /// A `member_added` for this user: mark it announced as it is delivered.
        member_added: Option<String>,
    },
    /// Announce a transition this node owns.
    Announce(Transition),
    /// Close the user's sockets on this node.
    Terminate { app: String, user: String },
    /// Another node's debug event, for this node's console viewers.
    Debug(crate::debug::DebugEvent),
    /// Whether some other node has a console viewer now.
    Watching(bool),
}

/// One node's membership in the cluster.
pub struct Cluster {
    prefix: String,
    transport: Arc<dyn Transport>,
    timing: Timing,
    state: Mutex<State>,
    /// Topics listened to, with how many local reasons each has.
    topics: Mutex<HashMap<String, Listened>>,
    /// Presence and count announcements this node made while the broker was unreachable:
    /// the other nodes get them when it is back (they would never compute them themselves,
    /// since the owner already applied the change).
    unsent: Mutex<std::collections::VecDeque<bytes::Bytes>>,
    /// Heartbeat hops from other nodes to this one.
    latency: DurationHistogram,
}

struct State {
    me: NodeKey,
    /// The number of this node's last change.
    seq: u64,
    view: View,
    peers: Peers,
    /// When this incarnation said hello; it owns keys once it has heard everyone.
    hello_at: Instant,
    link: Link,
    down_since: Option<Instant>,
    counts: HashMap<(String, String), CountState>,
    /// The others were told this incarnation owns keys now.
    eligibility_told: bool,
    /// Shutting down: the others own everything now and keep this node's facts a while.
    leaving: bool,
    /// This node's open connections per app, as last counted.
    connections: Vec<(String, usize)>,
    /// This node has a debug console viewer.
    watching: bool,
    /// Members in the view whose `member_added` this node has not seen yet, with when they
    /// appeared: a roster sent meanwhile leaves them out, so the subscriber's first news of
    /// them is that `member_added`, not a duplicate of its roster.
    unannounced: HashMap<(String, String, String), Instant>,
    /// `member_added` events seen before the change that caused them (they come from
    /// different nodes, so the broker may deliver them in either order).
    announced_early: HashMap<(String, String, String), Instant>,
}

#[derive(Debug, Default)]
struct CountState {
    announced_at: Option<Instant>,
    pending: Option<usize>,
}

impl Cluster {
    /// Joins the cluster as `node_id` through `transport`, under `prefix`.
    pub fn new(
        node_id: String,
        prefix: String,
        transport: Arc<dyn Transport>,
        timing: Timing,
    ) -> Self {
        let now = Instant::now();
        let link = *transport.link().borrow();
        let me = NodeKey {
            id: node_id,
            epoch: new_epoch(0),
        };
        let cluster = Self {
            prefix,
            transport,
            timing,
            state: Mutex::new(State {
                me,
                seq: 0,
                view: View::default(),
                peers: Peers::default(),
                hello_at: now,
                link,
                down_since: (link == Link::Down).then_some(now),
                counts: HashMap::new(),
                eligibility_told: false,
                leaving: false,
                connections: Vec::new(),
                watching: false,
                unannounced: HashMap::new(),
                announced_early: HashMap::new(),
            }),
            topics: Mutex::default(),
            unsent: Mutex::default(),
            latency: DurationHistogram::new(crate::metrics::histogram::FAST),
        };
        cluster.transport.subscribe(&cluster.control_topic());
        cluster.greet(&mut cluster.lock());
        cluster
    }

    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Heartbeat hop latencies seen so far.
    pub fn latency(&self) -> &DurationHistogram {
        &self.latency
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn me(&self) -> NodeKey {
        self.lock().me.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn control_topic(&self) -> String {
        format!("{}.ctl", self.prefix)
    }

    fn channel_topic(&self, app: &str, channel: &str) -> String {
        let mut hash = Fnv::default();
        hash.write(app.as_bytes());
        hash.write(channel.as_bytes());
        format!("{}.c.{:016x}", self.prefix, hash.0)
    }

    /// Sends on the control topic, which every node always listens to.
    fn send(&self, message: &Message, body: &[u8]) -> bool {
        self.transport
            .publish(&self.control_topic(), message.encode(body))
    }

    /// Sends an event to the other nodes' sockets. Channel events go only to the nodes
    /// listening to the channel, unless `every_node`: cache events (each node remembers
    /// them), watchlist events (each node checks its watchers) and presence and count
    /// events, which must reach a node whose first subscriber joined a moment ago, before
    /// its subscription to the channel's topic took effect.
    pub fn forward(
        &self,
        app: &str,
        target: Target,
        frame: &Frame,
        except: Option<&SocketId>,
        extra: Forward,
    ) {
        let Forward {
            cache,
            every_node,
            member_added,
        } = extra;
        let topic = match &target {
            Target::Channel(channel) if !every_node && cache.is_none() => {
                self.channel_topic(app, channel)
            }
            _ => self.control_topic(),
        };
        let message = Message::Event {
            from: self.me(),
            app: app.to_owned(),
            target,
            except: except.map(ToString::to_string),
            cache,
            member_added,
        };
        let payload = message.encode(frame.as_bytes());
        if !self.transport.publish(&topic, payload.clone()) && every_node {
            let mut unsent = self.unsent.lock().unwrap_or_else(|p| p.into_inner());
            if unsent.len() == UNSENT_CAPACITY {
                unsent.pop_front();
            }
            unsent.push_back(payload);
        }
    }

    /// Sends what was announced while the broker was unreachable.
    fn send_unsent(&self) {
        let unsent = std::mem::take(&mut *self.unsent.lock().unwrap_or_else(|p| p.into_inner()));
        for payload in unsent {
            self.transport.publish(&self.control_topic(), payload);
        }
    }

    /// Starts receiving a channel's events (a local socket needs them; counted per need).
    /// When this is the first need, returns a wait that ends once the broker delivers the
    /// channel's topic to this node (or after [`LISTEN_WAIT`]): a subscriber told
    /// `subscription_succeeded` before that could miss what other nodes publish meanwhile.
    pub fn listen(&self, app: &str, channel: &str) -> Option<Listening> {
        let topic = self.channel_topic(app, channel);
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(listened) = topics.get_mut(&topic) {
            listened.count += 1;
            return (!*listened.confirmed.borrow()).then(|| Listening(listened.confirmed.clone()));
        }
        self.transport.subscribe(&topic);
        let (confirm, confirmed) = tokio::sync::watch::channel(false);
        let nonce = rand::random::<u64>();
        topics.insert(
            topic.clone(),
            Listened {
                count: 1,
                nonce,
                confirm,
                confirmed: confirmed.clone(),
            },
        );
        drop(topics);
        if *self.transport.link().borrow() == Link::Down {
            return None; // nothing to wait for: nothing crosses until the link is back
        }
        let probe = Message::Probe {
            from: self.me(),
            nonce,
        }
        .encode(&[]);
        let transport = self.transport.clone();
        let mut done = confirmed.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + LISTEN_WAIT;
            while Instant::now() < deadline && !*done.borrow() {
                transport.publish(&topic, probe.clone());
                let _ = tokio::time::timeout(PROBE_INTERVAL, done.changed()).await;
            }
        });
        Some(Listening(confirmed))
    }

    /// Stops receiving a channel's events once no local socket needs them.
    pub fn unlisten(&self, app: &str, channel: &str) {
        let topic = self.channel_topic(app, channel);
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(listened) = topics.get_mut(&topic) {
            listened.count -= 1;
            if listened.count == 0 {
                topics.remove(&topic);
                self.transport.unsubscribe(&topic);
            }
        }
    }

    /// Our own probe came back on `topic`: the broker delivers it to us.
    fn probed(&self, topic: &str, nonce: u64) {
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(listened) = topics.get(topic).filter(|l| l.nonce == nonce) {
            let _ = listened.confirm.send(true);
        }
    }

    /// Records a change to this node's facts, tells the others, and returns the
    /// transitions this node must announce.
    pub fn change(&self, change: Change) -> Vec<Transition> {
        let mut state = self.lock();
        let me = state.me.clone();
        let transitions = state.view.apply(&me, &change);
        state.seq += 1;
        let message = Message::Change {
            from: me,
            seq: state.seq,
            change,
        };
        self.send(&message, &[]);
        self.owned(&mut state, transitions, Instant::now())
    }

    fn debug_topic(&self) -> String {
        format!("{}.dbg", self.prefix)
    }

    /// This node's console has a viewer, or no longer has one: listen on the debug topic
    /// accordingly, and tell the others at once (they forward their events only meanwhile).
    pub fn set_watching(&self, watching: bool) {
        let mut state = self.lock();
        if state.watching == watching {
            return;
        }
        state.watching = watching;
        if watching {
            self.transport.subscribe(&self.debug_topic());
        } else {
            self.transport.unsubscribe(&self.debug_topic());
        }
        let heartbeat = self.heartbeat(&state, Instant::now());
        self.send(&heartbeat, &[]);
    }

    /// Sends a debug event to the nodes whose console has a viewer.
    pub fn forward_debug(&self, event: &crate::debug::DebugEvent) {
        let message = Message::Debug {
            from: self.me(),
            event: event.clone(),
        };
        self.transport
            .publish(&self.debug_topic(), message.encode(&[]));
    }

    /// Whether any other node has a console viewer.
    fn remote_watching(state: &State) -> bool {
        state.peers.iter().any(|peer| peer.watching)
    }

    /// Closes the user's sockets on the other nodes.
    pub fn terminate(&self, app: &str, user: &str) {
        let message = Message::Terminate {
            from: self.me(),
            app: app.to_owned(),
            user: user.to_owned(),
        };
        self.send(&message, &[]);
    }

    /// This node is shutting down: the others keep its facts for the removal delay, and
    /// it announces nothing more (its clients' departures are not departures yet).
    pub fn leave(&self) {
        let mut state = self.lock();
        state.leaving = true;
        let message = Message::Leaving {
            from: state.me.clone(),
        };
        self.send(&message, &[]);
    }

    /// The `subscription_succeeded` presence data for `joining`, from every node's members,
    /// or a refusal when the channel already has `max` users (spec §3.4).
    pub fn presence(
        &self,
        app: &str,
        channel: &str,
        joining: &Member,
        max: usize,
    ) -> Result<String, Refused> {
        let state = self.lock();
        let now = Instant::now();
        let all = state.view.members(app, channel);
        // Capacity counts every member; the roster lists those already announced.
        if all.len() >= max && !all.iter().any(|(id, _)| *id == joining.user_id) {
            return Err(Refused::PresenceFull { max });
        }
        let mut members: Vec<(String, Option<String>)> = all
            .into_iter()
            .filter(|(id, _)| {
                let key = (app.to_owned(), channel.to_owned(), id.clone());
                state
                    .unannounced
                    .get(&key)
                    .is_none_or(|since| now.duration_since(*since) >= ANNOUNCE_WAIT)
            })
            .collect();
        drop(state);
        if !members.iter().any(|(id, _)| *id == joining.user_id) {
            if members.len() >= max {
                return Err(Refused::PresenceFull { max });
            }
            let info = joining.user_info.as_ref().map(|raw| raw.get().to_owned());
            members.push((joining.user_id.clone(), info));
        }
        Ok(encode_presence(&members))
    }

    /// Subscribers and users of a channel on every node; `None` when unoccupied.
    pub fn channel(&self, app: &str, channel: &str) -> Option<(usize, usize)> {
        self.lock().view.channel(app, channel)
    }

    /// Occupied channels on every node: `(name, subscribers, users)`.
    pub fn channels(&self, app: &str, prefix: &str) -> Vec<(String, usize, usize)> {
        self.lock().view.channels(app, prefix)
    }

    /// A presence channel's user ids on every node.
    pub fn user_ids(&self, app: &str, channel: &str) -> Vec<String> {
        let members = self.lock().view.members(app, channel);
        members.into_iter().map(|(id, _)| id).collect()
    }

    /// Whether the user has a signed-in socket on any node.
    pub fn is_online(&self, app: &str, user: &str) -> bool {
        let key = (app.to_owned(), user.to_owned());
        self.lock().view.signed_in(&key) > 0
    }

    /// Other nodes this one hears from.
    pub fn peer_count(&self) -> usize {
        self.lock().peers.iter().count()
    }

    /// Open connections of the app on the other nodes (as of their last heartbeat).
    pub fn remote_connections(&self, app: &str) -> usize {
        self.lock().peers.connections(app)
    }

    /// `Ok` when connected and in sync, and the others know it; otherwise why not.
    pub fn ready(&self) -> Result<(), &'static str> {
        let mut state = self.lock();
        if state.link == Link::Down {
            return Err("the cluster broker is unreachable");
        }
        self.tell_eligibility(&mut state, Instant::now());
        if !state.eligibility_told {
            return Err("joining the cluster");
        }
        Ok(())
    }

    /// A heartbeat as soon as this node becomes eligible, so the others count it as an
    /// owner at once rather than at the next heartbeat.
    fn tell_eligibility(&self, state: &mut State, now: Instant) {
        if !state.eligibility_told && self.is_eligible(state, now) {
            state.eligibility_told = true;
            self.send(&self.heartbeat(state, now), &[]);
        }
    }

    fn heartbeat(&self, state: &State, now: Instant) -> Message {
        Message::Heartbeat {
            from: state.me.clone(),
            seq: state.seq,
            eligible: self.is_eligible(state, now) && !state.leaving,
            sent_ms: crate::webhooks::now_ms(),
            watching: state.watching,
            connections: state.connections.clone(),
        }
    }

    /// Says hello under the current epoch: everyone answers with a snapshot, and ours
    /// follows the hello.
    fn greet(&self, state: &mut State) {
        state.hello_at = Instant::now();
        self.send(
            &Message::Hello {
                from: state.me.clone(),
            },
            &[],
        );
        self.send_snapshot(state);
    }

    fn send_snapshot(&self, state: &State) {
        let message = Message::Snapshot {
            from: state.me.clone(),
            seq: state.seq,
            eligible: self.is_eligible(state, Instant::now()),
            facts: state.view.facts(&state.me).cloned().unwrap_or_default(),
        };
        self.send(&message, &[]);
    }

    /// Owns keys once every known node's facts arrived, a moment after saying hello, and
    /// from then on for this incarnation: a newcomer's arrival must not make the others
    /// disagree about who owns what while its snapshot is on its way.
    fn is_eligible(&self, state: &State, now: Instant) -> bool {
        let settle = (self.timing.heartbeat_interval / 2).min(Duration::from_millis(500));
        state.eligibility_told
            || (now.duration_since(state.hello_at) >= settle
                && state.peers.iter().all(|p| p.synced))
    }

    /// Keeps the transitions whose key this node owns; counts pass the §3.9 throttle.
    fn owned(
        &self,
        state: &mut State,
        transitions: Vec<Transition>,
        now: Instant,
    ) -> Vec<Transition> {
        if transitions.is_empty() || state.leaving {
            return Vec::new();
        }
        let eligible = self.is_eligible(state, now);
        track_announcements(state, &transitions, now);
        let owners = state.peers.owners(&state.me, eligible);
        let mine: Vec<Transition> = transitions
            .into_iter()
            .filter(|t| {
                let (app, name, is_user) = t.owner_key();
                let key = if is_user {
                    format!("u/{app}/{name}")
                } else {
                    format!("c/{app}/{name}")
                };
                peers::owner(&owners, &key) == Some(&state.me)
            })
            .collect();

        mine.into_iter()
            .filter_map(|t| throttle(&mut state.counts, t, now))
            .collect()
    }
}

impl Cluster {
    /// A `member_added` for `user` is being delivered here (called under the channel's hub
    /// lock, just before): rosters may list the user from now on.
    pub fn announced(&self, app: &str, channel: &str, user: &str) {
        let key = (app.to_owned(), channel.to_owned(), user.to_owned());
        announced(&mut self.lock(), key, Instant::now());
    }
}

/// The member may be listed in rosters now (or as soon as the change that caused it
/// arrives: the two come from different nodes).
fn announced(state: &mut State, key: (String, String, String), now: Instant) {
    if state.unannounced.remove(&key).is_none() {
        state.announced_early.insert(key, now);
    }
}

/// Members added to the view wait for their announcement; members removed need none.
fn track_announcements(state: &mut State, transitions: &[Transition], now: Instant) {
    for transition in transitions {
        match transition {
            Transition::MemberAdded {
                channel: (app, channel),
                user,
                ..
            } => {
                let key = (app.clone(), channel.clone(), user.clone());
                if state.announced_early.remove(&key).is_none() {
                    state.unannounced.insert(key, now);
                }
            }
            Transition::MemberRemoved {
                channel: (app, channel),
                user,
            } => {
                let key = (app.clone(), channel.clone(), user.clone());
                state.unannounced.remove(&key);
            }
            _ => {}
        }
    }
}

/// Lets a count through unless announced less than [`COUNT_INTERVAL`] ago above the
/// threshold (then it waits for the tick); forgets a vacated channel.
fn throttle(
    counts: &mut HashMap<(String, String), CountState>,
    transition: Transition,
    now: Instant,
) -> Option<Transition> {
    match &transition {
        Transition::Count { channel, count } => {
            let state = counts.entry(channel.clone()).or_default();
            let recent = state
                .announced_at
                .is_some_and(|at| now.duration_since(at) < COUNT_INTERVAL);
            if *count > COUNT_THROTTLE_ABOVE && recent {
                state.pending = Some(*count);
                return None;
            }
            state.announced_at = Some(now);
            state.pending = None;
        }
        Transition::Vacated(channel) => {
            counts.remove(channel);
        }
        _ => {}
    }
    Some(transition)
}

/// `{"presence":{"ids":[..],"hash":{id: info},"count":n}}`.
fn encode_presence(members: &[(String, Option<String>)]) -> String {
    let ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
    let hash: serde_json::Map<String, serde_json::Value> = members
        .iter()
        .map(|(id, info)| {
            let info = info
                .as_deref()
                .and_then(|raw| serde_json::from_str(raw).ok())
                .unwrap_or(serde_json::Value::Null);
            (id.clone(), info)
        })
        .collect();
    serde_json::json!({ "presence": { "ids": ids, "hash": hash, "count": ids.len() } }).to_string()
}

/// Epochs grow: the time in milliseconds, and always above the previous one.
fn new_epoch(previous: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    now.max(previous + 1)
}

/// A node id for this process: the host name and a random suffix.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "herald".into());
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}
