//! What a node does with what it hears: messages from other nodes, the passing of time
//! (heartbeats, dead nodes, throttled counts) and changes of its own link to the broker.

use herald_protocol::SocketId;
use tokio::time::Instant;

use super::message::Message;
use super::peers::Seen;
use super::transport::{Inbound, Link};
use super::view::{NodeKey, Transition};
use super::{Action, Cluster, REQUEST_INTERVAL, State, new_epoch};
use crate::outbox::Frame;

impl Cluster {
    /// Handles one message from the broker.
    pub fn receive(&self, inbound: &Inbound) -> Vec<Action> {
        let Some((message, body)) = Message::decode(&inbound.payload) else {
            tracing::debug!(topic = %inbound.topic, "ignored an undecodable cluster message");
            return Vec::new();
        };
        let now = Instant::now();
        let mut state = self.lock();
        let from = message.from().clone();
        if from.id == state.me.id {
            if let Message::Probe { nonce, .. } = message {
                drop(state);
                self.probed(&inbound.topic, nonce);
            }
            return Vec::new(); // our own echo
        }
        let mut transitions = Vec::new();
        match state.peers.seen(&from, now) {
            Seen::Dead => {
                let me = state.me.clone();
                self.send(&Message::Rejoin { from: me, to: from }, &[]);
                return Vec::new();
            }
            Seen::Replaced(old) => {
                transitions.extend(state.view.replace(&old, None));
                self.request_snapshot(&mut state, &from, now);
            }
            Seen::New => self.request_snapshot(&mut state, &from, now),
            Seen::Known => {}
        }
        let mut actions = Vec::new();
        match message {
            Message::Event {
                app,
                target,
                except,
                cache,
                member_added,
                ..
            } => {
                if let Some(frame) = Frame::from_utf8(body) {
                    actions.push(Action::Deliver {
                        app,
                        target,
                        frame,
                        except: except.as_deref().and_then(SocketId::parse),
                        cache,
                        member_added,
                    });
                }
            }
            Message::Hello { .. } => self.send_snapshot(&state),
            Message::Probe { .. } => {}
            Message::SnapshotRequest { to, .. } if to == state.me => self.send_snapshot(&state),
            Message::SnapshotRequest { .. } => {}
            Message::Snapshot {
                seq,
                eligible,
                facts,
                ..
            } => transitions.extend(self.apply_snapshot(&mut state, &from, seq, eligible, facts)),
            Message::Change { seq, change, .. } => {
                let Some(peer) = state.peers.get_mut(&from) else {
                    return Vec::new();
                };
                if !peer.synced || peer.leaving_until.is_some() || seq <= peer.seq {
                    // Unknown facts (a snapshot will bring them), frozen, or already applied.
                } else if seq != peer.seq + 1 {
                    peer.synced = false;
                    self.request_snapshot(&mut state, &from, now);
                } else {
                    peer.seq = seq;
                    transitions.extend(state.view.apply(&from, &change));
                }
            }
            Message::Heartbeat {
                seq,
                eligible,
                connections,
                sent_ms,
                watching,
                ..
            } => {
                let before = Self::remote_watching(&state);
                let hop = crate::webhooks::now_ms().saturating_sub(sent_ms);
                if sent_ms > 0 {
                    self.latency.observe(std::time::Duration::from_millis(hop));
                }
                let Some(peer) = state.peers.get_mut(&from) else {
                    return Vec::new();
                };
                peer.eligible = eligible;
                peer.watching = watching;
                peer.connections = connections.into_iter().collect();
                if peer.synced && seq > peer.seq {
                    // Changes were lost on the way: start again from a snapshot.
                    peer.synced = false;
                    self.request_snapshot(&mut state, &from, now);
                }
                let after = Self::remote_watching(&state);
                if after != before {
                    actions.push(Action::Watching(after));
                }
            }
            Message::Leaving { .. } => {
                if let Some(peer) = state.peers.get_mut(&from) {
                    peer.leaving_until = Some(now + self.timing.removal_delay);
                }
            }
            Message::Rejoin { to, .. } if to == state.me => self.rejoin(&mut state),
            Message::Rejoin { .. } => {}
            Message::Terminate { app, user, .. } => actions.push(Action::Terminate { app, user }),
            Message::Debug { event, .. } => actions.push(Action::Debug(event)),
        }
        let owned = self.owned(&mut state, transitions, now);
        actions.extend(owned.into_iter().map(Action::Announce));
        self.tell_eligibility(&mut state, now);
        actions
    }

    fn apply_snapshot(
        &self,
        state: &mut State,
        from: &NodeKey,
        seq: u64,
        eligible: bool,
        facts: super::view::Facts,
    ) -> Vec<Transition> {
        let Some(peer) = state.peers.get_mut(from) else {
            return Vec::new();
        };
        if peer.leaving_until.is_some() {
            return Vec::new();
        }
        peer.synced = true;
        peer.seq = seq;
        peer.eligible = eligible;
        peer.requested_at = None;
        state.view.replace(from, Some(facts))
    }

    fn request_snapshot(&self, state: &mut State, from: &NodeKey, now: Instant) {
        let me = state.me.clone();
        let Some(peer) = state.peers.get_mut(from) else {
            return;
        };
        if peer
            .requested_at
            .is_some_and(|at| now.duration_since(at) < REQUEST_INTERVAL)
        {
            return;
        }
        peer.requested_at = Some(now);
        let to = from.clone();
        self.send(&Message::SnapshotRequest { from: me, to }, &[]);
    }

    /// Declared dead by the others: come back under a new epoch, with the same facts.
    fn rejoin(&self, state: &mut State) {
        let old = state.me.clone();
        let new = NodeKey {
            id: old.id.clone(),
            epoch: new_epoch(old.epoch),
        };
        tracing::warn!(node = %old.id, "rejoining the cluster under a new epoch");
        state.view.rekey(&old, &new);
        state.me = new;
        // A new incarnation owns keys only once it has everyone's facts again.
        state.eligibility_told = false;
        self.greet(state);
    }

    /// Heartbeat, dead nodes, departed nodes whose grace is over, throttled counts.
    /// `connections` are this node's open connections per app.
    pub fn tick(&self, connections: Vec<(String, usize)>) -> Vec<Action> {
        let now = Instant::now();
        let mut state = self.lock();
        state.connections = connections;
        let heartbeat = self.heartbeat(&state, now);
        self.send(&heartbeat, &[]);
        self.tell_eligibility(&mut state, now);
        let mut transitions = Vec::new();
        // While our own link is down nobody can be heard: that proves nothing about them.
        if state.link == Link::Up {
            for dead in state.peers.expired(now, self.timing.node_timeout) {
                tracing::warn!(node = %dead.id, "node left the cluster or stopped answering");
                transitions.extend(state.view.replace(&dead, None));
                state.peers.bury(&dead);
            }
        }
        let mut actions: Vec<Action> = self
            .owned(&mut state, transitions, now)
            .into_iter()
            .map(Action::Announce)
            .collect();
        actions.extend(
            due_counts(&mut state, now)
                .into_iter()
                .map(Action::Announce),
        );
        actions.push(Action::Watching(Self::remote_watching(&state)));
        state
            .unannounced
            .retain(|_, since| now.duration_since(*since) < super::ANNOUNCE_WAIT);
        state
            .announced_early
            .retain(|_, since| now.duration_since(*since) < super::ANNOUNCE_WAIT);
        actions
    }

    /// The broker link went up or down. After an outage long enough for the others to have
    /// declared this node dead, it rejoins under a new epoch; either way it resynchronises.
    pub fn link_changed(&self, link: Link) {
        let now = Instant::now();
        let mut state = self.lock();
        if state.link == link {
            return;
        }
        state.link = link;
        match link {
            Link::Down => {
                tracing::warn!("cluster broker unreachable: serving local clients only");
                state.down_since = Some(now);
            }
            Link::Up => {
                let outage = state
                    .down_since
                    .take()
                    .map(|since| now.duration_since(since));
                tracing::info!(?outage, "cluster broker reachable again: resynchronising");
                state.peers.forgive(now);
                if outage.is_some_and(|o| o >= self.timing.node_timeout) {
                    self.rejoin(&mut state);
                } else {
                    self.greet(&mut state);
                }
                drop(state);
                self.send_unsent();
            }
        }
    }
}

/// Throttled counts whose interval is over.
fn due_counts(state: &mut State, now: Instant) -> Vec<Transition> {
    let mut due = Vec::new();
    for (channel, count) in state.counts.iter_mut() {
        let ready = count
            .announced_at
            .is_none_or(|at| now.duration_since(at) >= super::COUNT_INTERVAL);
        if ready && let Some(pending) = count.pending.take() {
            count.announced_at = Some(now);
            due.push(Transition::Count {
                channel: channel.clone(),
                count: pending,
            });
        }
    }
    due
}
