//! Live connections by socket id, for the dashboard's connection inspector: which app, from
//! where, since when, signed in as whom, and the outbox to measure or kick. One entry per
//! connection, added when it is established and removed when it ends. Entries are kept
//! small (shared id and app, no copies of strings): every idle connection has one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_protocol::SocketId;

use crate::apps::App;
use crate::outbox::Outbox;

/// What the inspector shows of one connection, in 56 bytes (every connection has one).
#[derive(Clone, Debug)]
pub struct SocketEntry {
    pub app: Arc<App>,
    pub outbox: Outbox,
    pub user: Option<Box<str>>,
    /// The remote IP (IPv4 as IPv4-mapped IPv6), its port, and whether it is known.
    ip: [u8; 16],
    port: u16,
    known: bool,
    /// Unix seconds.
    opened: u32,
}

impl SocketEntry {
    pub fn new(app: Arc<App>, remote: Option<SocketAddr>, outbox: Outbox) -> Self {
        let (ip, port) = remote.map_or(([0; 16], 0), |addr| {
            let ip = match addr.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            (ip.octets(), addr.port())
        });
        Self {
            app,
            outbox,
            user: None,
            ip,
            port,
            known: remote.is_some(),
            opened: u32::try_from(crate::webhooks::now_ms() / 1000).unwrap_or(u32::MAX),
        }
    }

    /// The client's address, as accepted.
    pub fn remote(&self) -> Option<SocketAddr> {
        let ip = Ipv6Addr::from(self.ip);
        let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
        self.known.then(|| SocketAddr::new(ip, self.port))
    }

    /// How long the connection has been open.
    pub fn age(&self) -> Duration {
        let now = crate::webhooks::now_ms() / 1000;
        Duration::from_secs(now.saturating_sub(u64::from(self.opened)))
    }
}

/// The registry.
#[derive(Default)]
pub struct Sockets(Mutex<HashMap<SocketId, SocketEntry>>);

impl Sockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketId, SocketEntry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, socket: &SocketId, entry: SocketEntry) {
        self.lock().insert(socket.clone(), entry);
    }

    pub fn remove(&self, socket: &SocketId) {
        self.lock().remove(socket);
    }

    pub fn signed_in(&self, socket: &SocketId, user: Option<&str>) {
        if let Some(entry) = self.lock().get_mut(socket) {
            entry.user = user.map(Box::from);
        }
    }

    pub fn get(&self, socket: &SocketId) -> Option<SocketEntry> {
        self.lock().get(socket).cloned()
    }

    /// Up to `limit` socket ids of an app, sorted.
    pub fn of_app(&self, app_id: &str, limit: usize) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.app.id == app_id)
            .map(|(id, _)| id.as_str().to_owned())
            .collect();
        ids.sort();
        ids.truncate(limit);
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_small_and_keep_the_remote_address() {
        assert!(std::mem::size_of::<SocketEntry>() <= 56);
        let app = Arc::new(App::new("1", "key", "secret"));
        let (outbox, _receiver) = crate::outbox::outbox(1);
        for remote in ["127.0.0.1:5000", "[2001:db8::1]:443"] {
            let remote: SocketAddr = remote.parse().expect("address");
            let entry = SocketEntry::new(app.clone(), Some(remote), outbox.clone());
            assert_eq!(entry.remote(), Some(remote));
            assert!(entry.age() < Duration::from_secs(2));
        }
        assert_eq!(SocketEntry::new(app, None, outbox).remote(), None);
    }
}
