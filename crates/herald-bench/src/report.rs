//! Scenario results: one JSON object (`--json`) or a human summary, plus the CPU figures
//! that say whether the tool or the machine was the limit.

use std::io::Write;

use serde_json::{Value, json};

use crate::procstat::{CpuMeter, NodeUse, ServerMeter, cores};

/// A tool process above this share of one core is taken as saturated.
pub const SATURATED: f64 = 0.9;

pub struct Report {
    pub json: bool,
    pub body: Value,
    pub lines: Vec<String>,
}

impl Report {
    pub fn new(json: bool, scenario: &str, url: &str) -> Self {
        Self {
            json,
            body: json!({ "scenario": scenario, "url": url, "cores": cores() }),
            lines: vec![format!("herald-bench {scenario} against {url}")],
        }
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.body[key] = value;
    }

    pub fn line(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }

    pub fn print(&self) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{}", self.body)?;
        } else {
            for line in &self.lines {
                writeln!(out, "{line}")?;
            }
        }
        Ok(())
    }
}

/// CPU use over one measured interval: the parent, each worker, the server.
#[derive(Debug, Clone, Default)]
pub struct CpuUse {
    pub parent: f64,
    pub workers: Vec<f64>,
    pub server: Option<f64>,
    /// Each server process (the nodes of a cluster), when several were given or the broker
    /// traffic was measured.
    pub nodes: Vec<NodeUse>,
}

impl CpuUse {
    pub fn measure(parent: &CpuMeter, server: Option<&ServerMeter>, workers: Vec<f64>) -> Self {
        let nodes = server.map_or_else(Vec::new, ServerMeter::each);
        Self {
            parent: parent.cores_used(),
            workers,
            server: server.map(|_| nodes.iter().map(|n| n.cores).sum()),
            nodes,
        }
    }

    pub fn tool_total(&self) -> f64 {
        self.parent + self.workers.iter().sum::<f64>()
    }

    /// A single-threaded worker near a full core, or the parent near all of its threads.
    pub fn tool_saturated(&self) -> bool {
        self.workers.iter().any(|w| *w >= SATURATED)
            || self.parent >= SATURATED * cores().min(4) as f64
    }

    /// Tool and server together used nearly every core: they competed for CPU.
    pub fn machine_saturated(&self) -> bool {
        self.server
            .is_some_and(|s| s + self.tool_total() >= SATURATED * cores() as f64)
    }

    pub fn json(&self) -> Value {
        let r = |x: f64| (x * 100.0).round() / 100.0;
        json!({
            "tool_cores": r(self.tool_total()),
            "tool_parent_cores": r(self.parent),
            "tool_worker_cores": self.workers.iter().map(|w| r(*w)).collect::<Vec<_>>(),
            "server_cores": self.server.map(r),
            "nodes": nodes_json(&self.nodes),
            "tool_saturated": self.tool_saturated(),
            "machine_saturated": self.machine_saturated(),
        })
    }

    pub fn brief(&self) -> String {
        let mut text = format!("CPU: tool {:.2} cores", self.tool_total());
        if let Some(server) = self.server {
            text.push_str(&format!(", server {server:.2} cores"));
        }
        if self.tool_saturated() {
            text.push_str(" — WARNING: the tool itself saturated; figures are a floor");
        } else if self.machine_saturated() {
            text.push_str(" — tool and server shared all cores");
        }
        text
    }
}

/// Per server process: pid, cores, broker bytes per second out and in.
pub fn nodes_json(nodes: &[NodeUse]) -> Value {
    // Four decimals: a node at rest uses well under 1 % of a core.
    let r = round4;
    nodes
        .iter()
        .map(|n| {
            json!({"pid": n.pid, "cores": r(n.cores),
                   "broker_out_bytes_per_sec": n.broker_out.map(f64::round),
                   "broker_in_bytes_per_sec": n.broker_in.map(f64::round)})
        })
        .collect()
}

pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
