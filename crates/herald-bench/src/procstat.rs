//! Process figures from /proc: CPU seconds (this tool's and the server's) and resident memory.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Clock ticks per second of /proc/*/stat times; 100 on every Linux build in practice.
const TICKS: f64 = 100.0;

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// User + system CPU seconds used so far by `pid` (this process when `None`).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    // Fields after the `(comm)` field, which may itself contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

/// Resident set size of `pid` in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(proc_path(Some(pid), "status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Microseconds since the Unix epoch: the clock both sides of a latency sample read.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// CPU use of one process over an interval, as a fraction of one core.
#[derive(Clone, Copy)]
pub struct CpuMeter {
    pid: Option<u32>,
    start_cpu: f64,
    start: Instant,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> Self {
        Self {
            pid,
            start_cpu: cpu_seconds(pid).unwrap_or(0.0),
            start: Instant::now(),
        }
    }

    /// CPU seconds (user + system) used since `start`.
    pub fn seconds_used(&self) -> f64 {
        cpu_seconds(self.pid).unwrap_or(self.start_cpu) - self.start_cpu
    }

    /// Cores used on average since `start` (1.0 = one core fully busy).
    pub fn cores_used(&self) -> f64 {
        let wall = self.start.elapsed().as_secs_f64().max(1e-6);
        let cpu = cpu_seconds(self.pid).unwrap_or(self.start_cpu) - self.start_cpu;
        cpu / wall
    }
}

/// Summed RSS of several processes (the nodes of a cluster); `None` when none is readable.
pub fn rss_total(pids: &[u32]) -> Option<u64> {
    let each: Vec<u64> = pids.iter().filter_map(|p| rss_bytes(*p)).collect();
    (!each.is_empty()).then(|| each.iter().sum())
}

/// CPU (and, with a broker port, broker traffic) of the server processes over one interval.
pub struct ServerMeter {
    pids: Vec<u32>,
    cpu: Vec<CpuMeter>,
    broker_ports: Vec<u16>,
    bytes: Vec<crate::brokerbytes::Bytes>,
}

/// What one server process used over an interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeUse {
    pub pid: u32,
    pub cores: f64,
    /// Bytes per second this process sent to / received from the broker, when measured.
    pub broker_out: Option<f64>,
    pub broker_in: Option<f64>,
}

impl ServerMeter {
    /// `None` without pids.
    pub fn start(pids: &[u32], broker_ports: &[u16]) -> Option<Self> {
        if pids.is_empty() {
            return None;
        }
        let bytes = crate::brokerbytes::per_pid(broker_ports, pids).unwrap_or_default();
        Some(Self {
            pids: pids.to_vec(),
            cpu: pids.iter().map(|p| CpuMeter::start(Some(*p))).collect(),
            broker_ports: broker_ports.to_vec(),
            bytes,
        })
    }

    /// Cores used by all the server processes together.
    pub fn cores_used(&self) -> f64 {
        self.cpu.iter().map(CpuMeter::cores_used).sum()
    }

    /// CPU seconds (user + system) used by all the server processes together since `start`.
    pub fn seconds_used(&self) -> f64 {
        self.cpu.iter().map(CpuMeter::seconds_used).sum()
    }

    /// Per process: cores and broker bytes per second since `start`.
    pub fn each(&self) -> Vec<NodeUse> {
        let wall = self
            .cpu
            .first()
            .map_or(1.0, |m| m.start.elapsed().as_secs_f64().max(1e-6));
        let now = crate::brokerbytes::per_pid(&self.broker_ports, &self.pids).unwrap_or_default();
        self.pids
            .iter()
            .zip(&self.cpu)
            .enumerate()
            .map(|(k, (pid, cpu))| {
                let delta = |f: fn(&crate::brokerbytes::Bytes) -> u64| {
                    let (Some(a), Some(b)) = (self.bytes.get(k), now.get(k)) else {
                        return None;
                    };
                    Some(f(b).saturating_sub(f(a)) as f64 / wall)
                };
                NodeUse {
                    pid: *pid,
                    cores: cpu.cores_used(),
                    broker_out: delta(|b| b.sent),
                    broker_in: delta(|b| b.received),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_memory() {
        assert!(cpu_seconds(None).is_some());
        assert!(rss_bytes(std::process::id()).unwrap_or(0) > 0);
        assert!(now_micros() > 1_600_000_000_000_000);
    }
}
