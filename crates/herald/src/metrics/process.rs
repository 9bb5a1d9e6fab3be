//! The process's own resources, read from `/proc/self` at each scrape under the standard
//! `process_*` names (so stock Grafana panels work). Elsewhere than Linux nothing is exported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::catalog::help;

/// Clock ticks per second of `/proc/self/stat` times: 100 on every Linux platform Herald
/// targets (`sysconf(_SC_CLK_TCK)` needs libc, which this crate does not use).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc/self` says now.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub cpu_seconds: f64,
    pub threads: u64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// `None` where `/proc` is missing.
    pub fn read() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |k| k * 1024)
        };
        let threads = status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0);
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| {
            fields
                .get(n)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of stat(5), starttime 22; `fields` starts at 3.
        let cpu_seconds = (field(11) + field(12)) / TICKS_PER_SECOND;
        let start_time_seconds =
            boot_time().map_or(0.0, |boot| boot + field(19) / TICKS_PER_SECOND);
        Some(Self {
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            open_fds,
            max_fds: max_fds(),
            cpu_seconds,
            threads,
            start_time_seconds,
        })
    }
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn max_fds() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Registered once; reads `/proc` on every scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = ProcessStats::read() else {
            return Ok(());
        };
        let gauges = [
            ("process_resident_memory_bytes", stats.resident_bytes as f64),
            ("process_virtual_memory_bytes", stats.virtual_bytes as f64),
            ("process_open_fds", stats.open_fds as f64),
            ("process_max_fds", stats.max_fds as f64),
            ("process_threads", stats.threads as f64),
            ("process_start_time_seconds", stats.start_time_seconds),
        ];
        for (name, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(
                name,
                help(name),
                None,
                gauge.metric_type(),
            )?)?;
        }
        let name = "process_cpu_seconds";
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            name,
            help("process_cpu_seconds_total"),
            None,
            cpu.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_gives_plausible_numbers() {
        let Some(stats) = ProcessStats::read() else {
            return; // not Linux
        };
        assert!(stats.resident_bytes > 1 << 20, "{stats:?}");
        assert!(
            stats.open_fds >= 3 && stats.max_fds >= stats.open_fds,
            "{stats:?}"
        );
        assert!(
            stats.threads >= 1 && stats.start_time_seconds > 1.0e9,
            "{stats:?}"
        );
    }
}
