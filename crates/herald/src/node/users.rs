//! Signed-in users (spec §5): sign-in and sign-out with the watchlist online/offline events
//! they cause, watching, and terminating a user's connections.

use herald_protocol::channel::SERVER_TO_USER_PREFIX;
use herald_protocol::{ErrorCode, ServerMessage, SocketId};

use super::{Audience, Node};
use crate::apps::App;
use crate::cluster::view::Change;
use crate::outbox::Outbox;

/// The close message of a terminated connection.
const TERMINATED: &str = "You got disconnected by the app.";

impl Node {
    /// Records `socket` as signed in as `user_id`; watchers hear when the user comes online
    /// (in a cluster: online on any node).
    pub fn sign_in(&self, app: &App, user_id: &str, socket: &SocketId, outbox: &Outbox) {
        let first_here = self.hub.users.sign_in(&app.id, user_id, socket, outbox);
        self.sockets.signed_in(socket, Some(user_id));
        let Some(cluster) = &self.cluster else {
            if first_here {
                self.announce_presence(app, user_id, true);
            }
            return;
        };
        if first_here {
            // Server-to-user events sent in the next moment may be missed; a sign-in does
            // not promise them (unlike subscription_succeeded for a channel).
            drop(cluster.listen(&app.id, &user_channel(user_id)));
        }
        let transitions = cluster.change(Change::SignedIn {
            app: app.id.clone(),
            user: user_id.to_owned(),
        });
        self.announce_all(app, transitions);
    }

    /// Forgets a signed-in socket; watchers hear when the user's last socket went.
    pub fn sign_out(&self, app: &App, user_id: &str, socket: &SocketId) {
        let last_here = self.hub.users.sign_out(&app.id, user_id, socket);
        let Some(cluster) = &self.cluster else {
            if last_here {
                self.announce_presence(app, user_id, false);
            }
            return;
        };
        if last_here {
            cluster.unlisten(&app.id, &user_channel(user_id));
        }
        let transitions = cluster.change(Change::SignedOut {
            app: app.id.clone(),
            user: user_id.to_owned(),
        });
        self.announce_all(app, transitions);
    }

    /// Registers `socket` as a watcher of each id; returns which of them are online.
    pub fn watch(
        &self,
        app: &App,
        ids: &[String],
        socket: &SocketId,
        outbox: &Outbox,
    ) -> Vec<bool> {
        let online_here = self.hub.users.watch(&app.id, ids, socket, outbox);
        match &self.cluster {
            Some(cluster) => ids
                .iter()
                .map(|id| cluster.is_online(&app.id, id))
                .collect(),
            None => online_here,
        }
    }

    pub fn unwatch(&self, app: &App, ids: &[String], socket: &SocketId) {
        self.hub.users.unwatch(&app.id, ids, socket);
    }

    /// Closes every socket signed in as the user with 4009 (spec §5.5), on every node.
    /// Returns how many were on this node.
    pub fn terminate(&self, app: &App, user_id: &str) -> usize {
        if let Some(cluster) = &self.cluster {
            cluster.terminate(&app.id, user_id);
        }
        self.terminate_here(&app.id, user_id)
    }

    pub(super) fn terminate_here(&self, app_id: &str, user_id: &str) -> usize {
        let sockets = self.hub.users.sockets(app_id, user_id);
        for outbox in &sockets {
            outbox.kick(ErrorCode::Unauthorized, TERMINATED);
        }
        sockets.len()
    }

    /// `pusher_internal:watchlist_events` to the user's watchers.
    pub(super) fn announce_presence(&self, app: &App, user_id: &str, online: bool) {
        if !app.enable_watchlist_events {
            return;
        }
        let ids = [user_id];
        let (online, offline): (&[&str], &[&str]) = if online { (&ids, &[]) } else { (&[], &ids) };
        let frame = ServerMessage::WatchlistEvents { online, offline };
        self.publish(app, Audience::Watchers(user_id), &frame, None);
    }
}

/// The per-user channel a node listens to while the user has a socket there (spec §5.3).
fn user_channel(user_id: &str) -> String {
    format!("{SERVER_TO_USER_PREFIX}{user_id}")
}
