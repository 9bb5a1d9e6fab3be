//! Bytes each server process exchanges with its cluster broker, from the kernel's own TCP
//! counters (`ss -tinp`: `bytes_sent` / `bytes_received` of every established socket to the
//! broker's port). Works the same for Redis and NATS and counts what really crossed the
//! wire, protocol framing included. A socket that closes between two readings takes its
//! bytes with it, so a reconnect makes a delta read low.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Totals of one process's broker sockets at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bytes {
    /// Bytes the process sent to the broker.
    pub sent: u64,
    /// Bytes the process received from the broker.
    pub received: u64,
    /// Sockets counted.
    pub sockets: u64,
}

/// Per pid (in the order given), the bytes of its established sockets to any of `ports`;
/// empty without ports.
pub fn per_pid(ports: &[u16], pids: &[u32]) -> Result<Vec<Bytes>> {
    if ports.is_empty() {
        return Ok(Vec::new());
    }
    let dports: Vec<String> = ports.iter().map(|p| format!("dport = :{p}")).collect();
    let filter = format!("( {} )", dports.join(" or "));
    let out = Command::new("ss")
        .args(["-tinpH", "state", "established", &filter])
        .output()
        .context("run ss (iproute2)")?;
    if !out.status.success() {
        bail!("ss failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(tally(&String::from_utf8_lossy(&out.stdout), pids))
}

/// Sums `ss -tinp` output per pid. A socket is a line naming its process
/// (`users:(("herald",pid=12,fd=9))`) followed by an indented line of TCP counters.
pub fn tally(text: &str, pids: &[u32]) -> Vec<Bytes> {
    let mut totals = vec![Bytes::default(); pids.len()];
    let mut owner: Option<usize> = None;
    for line in text.lines() {
        if line.contains("users:(") {
            owner = owner_pid(line).and_then(|pid| pids.iter().position(|p| *p == pid));
            continue;
        }
        let Some(k) = owner.take() else { continue };
        let (Some(sent), Some(received)) = (
            counter(line, "bytes_sent:"),
            counter(line, "bytes_received:"),
        ) else {
            continue;
        };
        totals[k].sent += sent;
        totals[k].received += received;
        totals[k].sockets += 1;
    }
    totals
}

fn owner_pid(line: &str) -> Option<u32> {
    let at = line.find("pid=")? + 4;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn counter(line: &str, name: &str) -> Option<u64> {
    let at = line.find(name)? + name.len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "0 0 127.0.0.1:53396 127.0.0.1:6379 users:((\"herald\",pid=41,fd=9))\n\
\t bbr wscale:10,10 rto:204 bytes_sent:600 bytes_acked:601 bytes_received:7000 segs_out:4\n\
0 0 127.0.0.1:53398 127.0.0.1:6379 users:((\"herald\",pid=41,fd=10))\n\
\t bbr bytes_sent:5 bytes_acked:6 bytes_received:9 segs_out:4\n\
0 0 127.0.0.1:53400 127.0.0.1:6379 users:((\"other\",pid=77,fd=3))\n\
\t bbr bytes_sent:1000 bytes_received:1000\n\
0 0 127.0.0.1:53402 127.0.0.1:6379 users:((\"herald\",pid=42,fd=3))\n\
\t bbr wscale:10,10 rto:204 segs_out:1\n";

    #[test]
    fn sums_sockets_per_pid_and_ignores_others() {
        let t = tally(SAMPLE, &[41, 42, 43]);
        assert_eq!(
            t[0],
            Bytes {
                sent: 605,
                received: 7009,
                sockets: 2
            }
        );
        // A socket that has sent nothing yet has no bytes_* fields: not counted.
        assert_eq!(t[1], Bytes::default());
        assert_eq!(t[2], Bytes::default());
    }

    #[test]
    fn garbage_and_truncated_output_count_nothing() {
        let t = tally(
            "users:((\"x\",pid=notanumber))\n\tbytes_sent:zz\n\tbytes_sent:1 bytes_received:2\nusers:((\"herald\",pid=41",
            &[41],
        );
        assert_eq!(t[0], Bytes::default());
        assert!(tally("", &[]).is_empty());
    }
}
