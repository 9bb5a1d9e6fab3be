//! The node's side of the cluster: one task that carries out what the cluster hears
//! (events to deliver here, transitions this node owns, terminations), keeps the cluster's
//! clock (heartbeats, dead nodes) and follows the broker link.

use std::sync::Arc;

use herald_protocol::ChannelName;
use tokio::sync::mpsc;

use super::{Audience, Node};
use crate::cluster::Action;
use crate::cluster::message::Target;
use crate::cluster::transport::Inbound;

impl Node {
    /// Runs until shutdown; `inbound` is what the transport received.
    pub async fn run_cluster(self: Arc<Self>, mut inbound: mpsc::Receiver<Inbound>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let mut link = cluster.transport().link();
        let mut ticks = tokio::time::interval(cluster.timing().heartbeat_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                message = inbound.recv() => match message {
                    Some(message) => self.act(cluster.receive(&message)),
                    None => return,
                },
                changed = link.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let state = *link.borrow_and_update();
                    cluster.link_changed(state);
                }
                _ = ticks.tick() => {
                    cluster.set_watching(self.debug.viewers() > 0);
                    self.act(cluster.tick(self.connection_counts()));
                }
            }
        }
    }

    fn act(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Deliver {
                    app,
                    target,
                    frame,
                    except,
                    cache,
                    member_added,
                } => match (target, frame.stamped()) {
                    // Delivery latency on this node counts from the event's arrival.
                    (Target::Channel(name), frame) => {
                        let Ok(channel) = ChannelName::parse(&name, usize::MAX) else {
                            continue;
                        };
                        if let Some(meta) = &cache {
                            self.remember(&app, &channel, &frame, meta);
                        }
                        let added = member_added.as_deref();
                        let audience = Audience::Channel(&channel);
                        self.deliver(&app, audience, &frame, except.as_ref(), added);
                    }
                    (Target::Watchers(user), frame) => {
                        self.deliver(&app, Audience::Watchers(&user), &frame, None, None);
                    }
                },
                Action::Announce(transition) => {
                    let (app_id, _, _) = transition.owner_key();
                    if let Some(app) = self.apps.find_by_id(app_id) {
                        self.announce(&app, transition);
                    }
                }
                Action::Terminate { app, user } => {
                    self.terminate_here(&app, &user);
                }
                Action::Debug(event) => self.debug.relay(event),
                Action::Watching(watching) => self.debug.set_remote_watching(watching),
            }
        }
    }
}
