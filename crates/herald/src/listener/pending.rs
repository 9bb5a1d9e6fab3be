//! Connections per client IP that have not become WebSockets: counted from accept until
//! they upgrade or close, and refused at accept beyond `max_pending_connections_per_ip`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The counts of one listener; only addresses with a pending connection have an entry.
#[derive(Debug)]
pub struct PendingConnections {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it (upgrade or close) releases the count.
#[derive(Debug)]
pub struct PendingSlot {
    owner: Arc<PendingConnections>,
    ip: IpAddr,
}

impl PendingConnections {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            counts: Mutex::default(),
        })
    }

    /// Counts a new connection from `ip`; `None` when `ip` already has `limit` pending.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PendingSlot> {
        // An IPv4 client on a dual-stack socket is the same client as over IPv4.
        let ip = ip.to_canonical();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(PendingSlot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn refuses_beyond_the_limit_per_address_until_a_slot_is_released() {
        let pending = PendingConnections::new(2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = pending.admit(a).expect("first");
        let _second = pending.admit(a).expect("second");
        assert!(pending.admit(a).is_none());
        assert!(pending.admit(b).is_some(), "other addresses are unaffected");
        drop(first);
        assert!(pending.admit(a).is_some());
    }

    #[test]
    fn forgets_an_address_without_pending_connections() {
        let pending = PendingConnections::new(1);
        let a: IpAddr = [10, 0, 0, 1].into();
        let slot = pending.admit(a);
        assert_eq!(pending.counts.lock().expect("lock").get(&a), Some(&1));
        drop(slot);
        assert!(pending.counts.lock().expect("lock").is_empty());
    }

    #[test]
    fn an_ipv4_mapped_address_counts_as_its_ipv4_address() {
        let pending = PendingConnections::new(1);
        let v4 = Ipv4Addr::new(192, 0, 2, 1);
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        let _slot = pending.admit(v4.into()).expect("first");
        assert!(pending.admit(mapped).is_none());
    }
}
