//! The node's own ceilings: open WebSocket connections (`max_connections`) and resident
//! memory (`max_memory_mb`, sampled once a second). Above either, new connections are
//! refused and `/ready` says so; the connections already open are left alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Why the node takes no more connections (also `/ready`'s reason).
pub const AT_MAX_CONNECTIONS: &str = "over capacity: max_connections reached";
pub const ABOVE_MAX_MEMORY: &str = "over capacity: resident memory above max_memory_mb";

/// Open connections and the last memory sample against their limits (0 = none).
#[derive(Debug, Default)]
pub struct Capacity {
    max_connections: usize,
    max_resident_bytes: u64,
    open: AtomicUsize,
    resident_bytes: AtomicU64,
}

/// One open WebSocket connection, counted until dropped.
#[derive(Debug)]
pub struct NodeSlot(Arc<Capacity>);

impl Capacity {
    pub fn new(max_connections: usize, max_memory_mb: u64) -> Arc<Self> {
        let capacity = Arc::new(Self {
            max_connections,
            max_resident_bytes: max_memory_mb.saturating_mul(1 << 20),
            ..Self::default()
        });
        capacity.sample();
        capacity
    }

    /// Counts a new connection; `Err` with the reason when the node is full.
    pub fn admit(self: &Arc<Self>) -> Result<NodeSlot, &'static str> {
        self.memory_ok()?;
        let max = self.max_connections;
        self.open
            .fetch_update(Relaxed, Relaxed, |open| {
                (max == 0 || open < max).then_some(open + 1)
            })
            .map_err(|_| AT_MAX_CONNECTIONS)?;
        Ok(NodeSlot(self.clone()))
    }

    /// Whether new connections are taken now.
    pub fn check(&self) -> Result<(), &'static str> {
        self.memory_ok()?;
        let max = self.max_connections;
        if max != 0 && self.open.load(Relaxed) >= max {
            return Err(AT_MAX_CONNECTIONS);
        }
        Ok(())
    }

    fn memory_ok(&self) -> Result<(), &'static str> {
        let max = self.max_resident_bytes;
        if max != 0 && self.resident_bytes.load(Relaxed) > max {
            return Err(ABOVE_MAX_MEMORY);
        }
        Ok(())
    }

    /// Reads the process's resident memory, when a limit asks for it.
    pub fn sample(&self) {
        if self.max_resident_bytes != 0 {
            self.record_resident(resident_bytes().unwrap_or(0));
        }
    }

    fn record_resident(&self, bytes: u64) {
        self.resident_bytes.store(bytes, Relaxed);
    }

    /// Connections open on this node.
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }
}

impl Drop for NodeSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// `VmRSS` from `/proc/self/status` (in KiB there, so no page size is needed); `None`
/// where there is no `/proc`, which leaves `max_memory_mb` without effect.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_at_max_connections_until_one_closes() {
        let capacity = Capacity::new(2, 0);
        let first = capacity.admit().expect("first");
        let _second = capacity.admit().expect("second");
        assert_eq!(capacity.admit().err(), Some(AT_MAX_CONNECTIONS));
        assert_eq!(capacity.check(), Err(AT_MAX_CONNECTIONS));
        drop(first);
        assert_eq!(capacity.open(), 1);
        assert!(capacity.check().is_ok());
        assert!(capacity.admit().is_ok());
    }

    #[test]
    fn above_max_memory_refuses_new_connections_and_keeps_open_ones() {
        let capacity = Capacity::new(0, 100);
        capacity.record_resident(50 << 20);
        let open = capacity.admit().expect("below the limit");
        capacity.record_resident(101 << 20);
        assert_eq!(capacity.admit().err(), Some(ABOVE_MAX_MEMORY));
        assert_eq!(capacity.check(), Err(ABOVE_MAX_MEMORY));
        assert_eq!(capacity.open(), 1, "the open connection still counts");
        drop(open);
        capacity.record_resident(99 << 20);
        assert!(capacity.admit().is_ok());
    }

    #[test]
    fn no_limits_admit_everyone() {
        let capacity = Capacity::new(0, 0);
        let slots: Vec<_> = (0..1000)
            .map(|_| capacity.admit().expect("admitted"))
            .collect();
        assert_eq!(capacity.open(), 1000);
        drop(slots);
        assert_eq!(capacity.open(), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process_resident_memory() {
        let bytes = resident_bytes().expect("/proc/self/status");
        assert!(bytes > 1 << 20, "{bytes}");
        let capacity = Capacity::new(0, 1);
        assert_eq!(capacity.check(), Err(ABOVE_MAX_MEMORY), "sampled at start");
    }
}
