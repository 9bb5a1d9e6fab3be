//! Signed-in users (spec §5): sign-in and sign-out with the watchlist online/offline events
//! they cause, watching, and terminating a user's connections.

use herald_protocol::ServerMessage;
use herald_protocol::{ErrorCode, SocketId};

use super::{Audience, Node};
use crate::apps::App;
use crate::outbox::Outbox;

/// The close message of a terminated connection.
const TERMINATED: &str = "You got disconnected by the app.";

impl Node {
    /// Records `socket` as signed in as `user_id`; watchers hear when the user comes online.
    pub fn sign_in(&self, app: &App, user_id: &str, socket: &SocketId, outbox: &Outbox) {
        if self.hub.users.sign_in(&app.id, user_id, socket, outbox) {
            self.announce_presence(app, user_id, true);
        }
    }

    /// Forgets a signed-in socket; watchers hear when the user's last socket went.
    pub fn sign_out(&self, app: &App, user_id: &str, socket: &SocketId) {
        if self.hub.users.sign_out(&app.id, user_id, socket) {
            self.announce_presence(app, user_id, false);
        }
    }

    /// Registers `socket` as a watcher of each id; returns which of them are online.
    pub fn watch(
        &self,
        app: &App,
        ids: &[String],
        socket: &SocketId,
        outbox: &Outbox,
    ) -> Vec<bool> {
        self.hub.users.watch(&app.id, ids, socket, outbox)
    }

    pub fn unwatch(&self, app: &App, ids: &[String], socket: &SocketId) {
        self.hub.users.unwatch(&app.id, ids, socket);
    }

    /// Closes every socket signed in as the user with 4009 (spec §5.5). Returns how many.
    pub fn terminate(&self, app: &App, user_id: &str) -> usize {
        let sockets = self.hub.users.sockets(&app.id, user_id);
        for outbox in &sockets {
            outbox.kick(ErrorCode::Unauthorized, TERMINATED);
        }
        sockets.len()
    }

    /// `pusher_internal:watchlist_events` to the user's watchers.
    fn announce_presence(&self, app: &App, user_id: &str, online: bool) {
        if !app.enable_watchlist_events {
            return;
        }
        let ids = [user_id];
        let (online, offline): (&[&str], &[&str]) = if online { (&ids, &[]) } else { (&[], &ids) };
        let frame = ServerMessage::WatchlistEvents { online, offline };
        self.publish(app, Audience::Watchers(user_id), &frame, None);
    }
}
