//! Live connections by socket id, for the dashboard's connection inspector: which app, from
//! where, since when, signed in as whom, and the outbox to measure or kick. One entry per
//! connection, added when it is established and removed when it ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::outbox::Outbox;

/// What the inspector shows of one connection.
#[derive(Clone, Debug)]
pub struct SocketEntry {
    pub app_id: String,
    pub remote: Option<SocketAddr>,
    pub opened: SystemTime,
    pub user: Option<String>,
    pub outbox: Outbox,
}

/// The registry.
#[derive(Default)]
pub struct Sockets(Mutex<HashMap<String, SocketEntry>>);

impl Sockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SocketEntry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, socket_id: &str, entry: SocketEntry) {
        self.lock().insert(socket_id.to_owned(), entry);
    }

    pub fn remove(&self, socket_id: &str) {
        self.lock().remove(socket_id);
    }

    pub fn signed_in(&self, socket_id: &str, user: Option<&str>) {
        if let Some(entry) = self.lock().get_mut(socket_id) {
            entry.user = user.map(str::to_owned);
        }
    }

    pub fn get(&self, socket_id: &str) -> Option<SocketEntry> {
        self.lock().get(socket_id).cloned()
    }

    /// Up to `limit` socket ids of an app, sorted.
    pub fn of_app(&self, app_id: &str, limit: usize) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.app_id == app_id)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids.truncate(limit);
        ids
    }
}
