//! Signed-in users (spec §5): which sockets are signed in as each user of an app, and which
//! sockets watch each user id. A user is online while at least one socket is signed in.

use std::collections::HashMap;

use herald_protocol::SocketId;

use super::shards::Shards;
use crate::outbox::{Frame, Outbox};

const SHARDS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct UserKey {
    app: Box<str>,
    user: Box<str>,
}

#[derive(Debug, Default)]
struct UserEntry {
    /// Sockets signed in as this user.
    sockets: HashMap<SocketId, Outbox>,
    /// Sockets whose watchlist holds this user id.
    watchers: HashMap<SocketId, Outbox>,
}

/// The user registry, sharded by (app, user id).
pub struct Users {
    shards: Shards<HashMap<UserKey, UserEntry>>,
}

impl Default for Users {
    fn default() -> Self {
        Self {
            shards: Shards::new(SHARDS),
        }
    }
}

impl Users {
    fn with_entry<T>(&self, app: &str, user: &str, f: impl FnOnce(&mut UserEntry) -> T) -> T {
        let key = UserKey {
            app: app.into(),
            user: user.into(),
        };
        let mut shard = self.shards.lock(&key);
        let entry = shard.entry(key.clone()).or_default();
        let result = f(entry);
        if entry.sockets.is_empty() && entry.watchers.is_empty() {
            shard.remove(&key);
        }
        result
    }

    /// Records a socket signed in as `user`; true when the user just came online.
    pub fn sign_in(&self, app: &str, user: &str, socket: &SocketId, outbox: &Outbox) -> bool {
        self.with_entry(app, user, |entry| {
            let was_online = !entry.sockets.is_empty();
            entry.sockets.insert(socket.clone(), outbox.clone());
            !was_online
        })
    }

    /// Forgets a signed-in socket; true when the user went offline.
    pub fn sign_out(&self, app: &str, user: &str, socket: &SocketId) -> bool {
        self.with_entry(app, user, |entry| {
            entry.sockets.remove(socket).is_some() && entry.sockets.is_empty()
        })
    }

    /// Registers `socket` as a watcher of each id; returns which of them are online.
    pub fn watch(
        &self,
        app: &str,
        ids: &[String],
        socket: &SocketId,
        outbox: &Outbox,
    ) -> Vec<bool> {
        ids.iter()
            .map(|id| {
                self.with_entry(app, id, |entry| {
                    entry.watchers.insert(socket.clone(), outbox.clone());
                    !entry.sockets.is_empty()
                })
            })
            .collect()
    }

    pub fn unwatch(&self, app: &str, ids: &[String], socket: &SocketId) {
        for id in ids {
            self.with_entry(app, id, |entry| entry.watchers.remove(socket));
        }
    }

    /// Queues a frame to every socket signed in as `user` but `except`.
    pub fn send(&self, app: &str, user: &str, frame: &Frame, except: Option<&SocketId>) -> usize {
        self.with_entry(app, user, |entry| {
            entry
                .sockets
                .iter()
                .filter(|(socket, _)| Some(*socket) != except)
                .filter(|(_, outbox)| outbox.send(frame.clone()))
                .count()
        })
    }

    /// Queues a frame to every socket watching `user`.
    pub fn send_watchers(&self, app: &str, user: &str, frame: &Frame) -> usize {
        self.with_entry(app, user, |entry| {
            entry
                .watchers
                .values()
                .filter(|outbox| outbox.send(frame.clone()))
                .count()
        })
    }

    /// The outboxes of every socket signed in as `user`.
    pub fn sockets(&self, app: &str, user: &str) -> Vec<Outbox> {
        self.with_entry(app, user, |entry| entry.sockets.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::outbox;

    #[test]
    fn online_while_any_socket_is_signed_in_and_watchers_hear_of_it() {
        let users = Users::default();
        let (watcher, watcher_rx) = outbox(8);
        let watcher_id = SocketId::from_parts(9, 9);
        assert_eq!(
            users.watch("1", &["42".into()], &watcher_id, &watcher),
            vec![false]
        );
        let (a, _a_rx) = outbox(8);
        let (b, _b_rx) = outbox(8);
        let (sa, sb) = (SocketId::from_parts(1, 1), SocketId::from_parts(2, 2));
        assert!(users.sign_in("1", "42", &sa, &a), "came online");
        assert!(!users.sign_in("1", "42", &sb, &b), "already online");
        assert_eq!(
            users.watch("1", &["42".into()], &watcher_id, &watcher),
            vec![true]
        );
        assert_eq!(users.send_watchers("1", "42", &Frame::from("online")), 1);
        assert_eq!(watcher_rx.pop().as_deref(), Some("online"));
        assert!(!users.sign_out("1", "42", &sa));
        assert!(users.sign_out("1", "42", &sb), "went offline");
        assert!(!users.sign_out("1", "42", &sb), "not signed in twice");
        users.unwatch("1", &["42".into()], &watcher_id);
        assert_eq!(users.send_watchers("1", "42", &Frame::from("x")), 0);
        assert!(users.sockets("1", "42").is_empty());
        assert!(users.shards.each().all(|shard| shard.is_empty()));
    }
}
