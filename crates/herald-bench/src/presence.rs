//! The `presence` scenario, for a cluster: `--channels` presence channels × `--members`
//! members, member slot `s` of every channel on node `s % nodes` (one WebSocket per member,
//! each a distinct user). Then, in order:
//!
//! 1. **rest**: nothing happens for `--rest` seconds; each node's CPU and the bytes it
//!    exchanges with the broker (`--broker-port`) are what heartbeats cost;
//! 2. **churn**: `--churners` extra connections on the nodes that will survive join and
//!    leave presence channels at `--churn-rate` joins (and as many leaves) per second for
//!    `--churn` seconds; the same figures under churn;
//! 3. **kill** (with `--kill-node`): SIGKILL to that node's `--server-pid`; every member on
//!    the surviving nodes must then see one `member_removed` for each member of its
//!    channel that lived on the killed node. Reported: when the first and the last arrived
//!    after the kill, how many of the expected arrived, and whether the last came within
//!    `--node-timeout` + 5 s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::Common;
use crate::hist::AtomicHist;
use crate::procstat::{CpuMeter, ServerMeter, now_micros};
use crate::report::{CpuUse, Report, nodes_json, round2, round4};
use crate::worker::{PER_WORKER, Plan, Pool, PresencePlan, Ready, merge, source_ip};
use crate::ws::{Target, WsConn};

#[derive(Args, Debug)]
pub struct PresenceArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub channels: u64,
    /// Members per channel, spread over the nodes (`--subscribe-to`) round robin.
    #[arg(long, default_value_t = 20)]
    pub members: u64,
    /// Seconds to wait after every member joined before measuring.
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// Seconds measured at rest.
    #[arg(long, default_value_t = 20.0)]
    pub rest: f64,
    /// Churn: joins per second (each followed by a leave).
    #[arg(long, default_value_t = 100.0)]
    pub churn_rate: f64,
    /// Churn: connections cycling through the channels.
    #[arg(long, default_value_t = 100)]
    pub churners: usize,
    /// Seconds measured under churn (0: no churn).
    #[arg(long, default_value_t = 20.0)]
    pub churn: f64,
    /// Keep churning while the killed node's members are being removed.
    #[arg(long)]
    pub churn_through_kill: bool,
    /// Index (in `--subscribe-to` and `--server-pid`) of the node to SIGKILL at the end.
    #[arg(long)]
    pub kill_node: Option<usize>,
    /// Seconds to wait for the removals after the kill.
    #[arg(long, default_value_t = 40.0)]
    pub kill_wait: f64,
    /// The cluster's node_timeout (s), for the verdict: the last removal must come
    /// within node_timeout + 5 s of the kill.
    #[arg(long, default_value_t = 10.0)]
    pub node_timeout: f64,
    /// The broker's process id: its CPU is reported per phase too.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

pub async fn presence(a: PresenceArgs) -> Result<Report> {
    let c = &a.common;
    let mut report = Report::new(c.json, "presence", &c.url);
    let nodes = c.subscriber_addrs()?;
    if let Some(k) = a.kill_node
        && (k >= nodes.len() || c.server_pid.len() != nodes.len())
    {
        bail!("--kill-node {k} needs one --server-pid per --subscribe-to node, in the same order");
    }
    if a.channels == 0 || a.members == 0 {
        bail!("--channels and --members must be at least 1");
    }
    let prefix = format!("bench-{}-", std::process::id());
    let plans = member_plans(c, &nodes, &a, &prefix)?;
    report.set(
        "params",
        json!({"channels": a.channels, "members": a.members, "nodes": nodes.len(),
               "subscribe_to": nodes.iter().map(ToString::to_string).collect::<Vec<_>>(),
               "server_pids": c.server_pid, "broker_port": c.broker_port,
               "rest": a.rest, "churn": a.churn, "churn_rate": a.churn_rate,
               "churners": a.churners, "churn_through_kill": a.churn_through_kill,
               "kill_node": a.kill_node, "node_timeout": a.node_timeout,
               "processes": plans.len()}),
    );
    let total = a.channels * a.members;
    let started = std::time::Instant::now();
    let (mut pool, ready) = Pool::start(&plans, Duration::from_secs(60 + total / 100)).await?;
    let connected: u64 = ready.iter().map(|r| r.connected).sum();
    let failed: u64 = ready.iter().map(|r| r.failed).sum();
    let seconds = started.elapsed().as_secs_f64();
    report.set(
        "connect",
        json!({"connected": connected, "failed": failed, "seconds": round2(seconds),
               "joins_per_sec": round2(connected as f64 / seconds.max(1e-3)),
               "first_error": ready.iter().find_map(|r| r.first_error.clone())}),
    );
    report.line(format!(
        "{connected} presence members on {} channels over {} nodes in {seconds:.1} s ({failed} failed)",
        a.channels,
        nodes.len()
    ));
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;

    let rest = phase(c, &a, &mut pool, a.rest, "rest").await?;
    report.line(phase_line("rest", &rest));
    report.set("rest", rest);

    let churn_nodes: Vec<SocketAddr> = nodes
        .iter()
        .enumerate()
        .filter(|(k, _)| Some(*k) != a.kill_node)
        .map(|(_, n)| *n)
        .collect();
    let mut churn = Some(Churn::start(c, &a, &churn_nodes, &prefix));
    if let (Some(churn), true) = (&churn, a.churn > 0.0) {
        let mut measured = phase(c, &a, &mut pool, a.churn, "churn").await?;
        measured["churn"] = churn.tally.json(a.churn);
        report.line(phase_line("churn", &measured));
        report.set("churn", measured);
    }
    if !a.churn_through_kill
        && let Some(churn) = churn.take()
    {
        churn.stop().await;
    }
    let outcome = match a.kill_node {
        Some(k) => kill(c, &a, k, &plans, &ready, &mut pool, &mut report).await,
        None => Ok(()),
    };
    if let Some(churn) = churn {
        churn.stop().await;
    }
    pool.stop().await;
    outcome?;
    Ok(report)
}

/// One plan per node (more when a node's members exceed [`PER_WORKER`]): the slots of
/// that node, every channel.
fn member_plans(
    c: &Common,
    nodes: &[SocketAddr],
    a: &PresenceArgs,
    prefix: &str,
) -> Result<Vec<Plan>> {
    let per_slot = a.channels.max(1);
    let slots_per_worker = (PER_WORKER as u64 / per_slot).max(1) as usize;
    if per_slot > PER_WORKER as u64 {
        bail!("at most {PER_WORKER} channels (one worker process holds one slot of each)");
    }
    let mut plans = Vec::new();
    for (node, addr) in nodes.iter().enumerate() {
        let slots: Vec<u64> = (0..a.members)
            .filter(|s| *s as usize % nodes.len() == node)
            .collect();
        for chunk in slots.chunks(slots_per_worker) {
            plans.push(Plan {
                addr: *addr,
                key: c.key.clone(),
                secret: c.secret.clone(),
                source: source_ip(plans.len()),
                first: 0,
                count: chunk.len() as u64 * per_slot,
                channels: per_slot,
                prefix: prefix.to_owned(),
                presence: Some(PresencePlan {
                    node,
                    slots: chunk.to_vec(),
                    watch: PresencePlan::node_marker(a.kill_node.unwrap_or(usize::MAX)),
                }),
            });
        }
    }
    Ok(plans)
}

/// Measures `seconds` of whatever is going on: per node CPU and broker bytes, the broker's
/// CPU, the tool's CPU, and the member events the workers received.
async fn phase(
    c: &Common,
    a: &PresenceArgs,
    pool: &mut Pool,
    seconds: f64,
    name: &str,
) -> Result<Value> {
    let baseline = pool.reset().await?;
    let servers = c.meter();
    let broker = a.broker_pid.map(|pid| CpuMeter::start(Some(pid)));
    let parent = CpuMeter::start(None);
    let wall = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let snaps = pool.snap().await?;
    let secs = wall.elapsed().as_secs_f64();
    let workers = snaps
        .iter()
        .zip(&baseline)
        .map(|(s, b)| (s.cpu_seconds - b.cpu_seconds) / secs)
        .collect();
    let cpu = CpuUse::measure(&parent, servers.as_ref(), workers);
    let total = merge(&snaps);
    Ok(json!({
        "phase": name,
        "seconds": round2(secs),
        "nodes": nodes_json(&cpu.nodes),
        "server_cores": cpu.server.map(round4),
        "broker_cores": broker.map(|b| round4(b.cores_used())),
        "tool_cores": round2(cpu.tool_total()),
        "member_added": total.member_added,
        "member_removed": total.member_removed,
        "disconnected": total.disconnected - merge(&baseline).disconnected,
    }))
}

fn phase_line(name: &str, v: &Value) -> String {
    let nodes: Vec<String> = v["nodes"]
        .as_array()
        .map(|ns| {
            ns.iter()
                .map(|n| {
                    format!(
                        "pid {} {} cores, broker out {} B/s in {} B/s",
                        n["pid"],
                        n["cores"],
                        n["broker_out_bytes_per_sec"],
                        n["broker_in_bytes_per_sec"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{name}: {} s, member events added {} removed {}, broker {} cores; {}",
        v["seconds"],
        v["member_added"],
        v["member_removed"],
        v["broker_cores"],
        nodes.join("; ")
    )
}

/// SIGKILLs node `k` and waits until every surviving member saw the removal of every
/// member of its channel that lived there.
async fn kill(
    c: &Common,
    a: &PresenceArgs,
    k: usize,
    plans: &[Plan],
    ready: &[Ready],
    pool: &mut Pool,
    report: &mut Report,
) -> Result<()> {
    let expected = expected_removals(plans, ready, k, a.channels);
    let pid = c.server_pid[k];
    // The mark is the planned kill time, sent ahead so the workers time from the kill.
    let planned = now_micros() + 200_000;
    pool.mark(planned).await?;
    let wait = Duration::from_micros(planned.saturating_sub(now_micros()));
    tokio::time::sleep(wait).await;
    let killed_at = now_micros();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -KILL {pid} failed");
    }
    let survivors: Vec<u32> = c
        .server_pid
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != k)
        .map(|(_, p)| *p)
        .collect();
    let meter = ServerMeter::start(&survivors, &c.broker_port);
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(a.kill_wait);
    let mut done_at = None;
    let snaps = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let snaps = pool.snap().await?;
        let got = merge(&snaps).watched_removed;
        let now = tokio::time::Instant::now();
        if got >= expected && done_at.is_none() {
            // Two more seconds to catch duplicates.
            done_at = Some(now);
        }
        if done_at.is_some_and(|d| now >= d + Duration::from_secs(2)) || now >= deadline {
            break snaps;
        }
    };
    let total = merge(&snaps);
    let ms = |us: u64| round2(us as f64 / 1000.0);
    let last_ms = total.watched_last.saturating_sub(killed_at) as f64 / 1000.0;
    let bound_ms = (a.node_timeout + 5.0) * 1000.0;
    let complete = total.watched_removed >= expected;
    let surviving = meter.map_or_else(Vec::new, |m| m.each());
    report.set(
        "kill",
        json!({"node": k, "pid": pid, "expected": expected, "observed": total.watched_removed,
               "complete": complete, "duplicates": total.watched_removed.saturating_sub(expected),
               "first_ms": ms(total.watched.quantile(0.0)),
               "p50_ms": ms(total.watched.quantile(0.5)),
               "p99_ms": ms(total.watched.quantile(0.99)),
               "last_ms": round2(last_ms),
               "kill_skew_ms": round2(killed_at.saturating_sub(planned) as f64 / 1000.0),
               "bound_ms": bound_ms, "within_bound": complete && last_ms <= bound_ms,
               "surviving_nodes": nodes_json(&surviving)}),
    );
    report.line(format!(
        "kill node {k} (pid {pid}): {} of {expected} member_removed seen; first {:.0} ms, p50 {:.0} ms, last {last_ms:.0} ms after SIGKILL ({}within node_timeout + 5 s = {bound_ms:.0} ms)",
        total.watched_removed,
        total.watched.quantile(0.0) as f64 / 1000.0,
        total.watched.quantile(0.5) as f64 / 1000.0,
        if complete && last_ms <= bound_ms { "" } else { "NOT " }
    ));
    Ok(())
}

/// Σ over channels of (members on node `k`) × (members elsewhere): one `member_removed`
/// per pair, counting only members that joined.
fn expected_removals(plans: &[Plan], ready: &[Ready], k: usize, channels: u64) -> u64 {
    let mut killed = vec![0u64; channels as usize];
    let mut others = vec![0u64; channels as usize];
    for (plan, r) in plans.iter().zip(ready) {
        let Some(p) = &plan.presence else { continue };
        let side = if p.node == k {
            &mut killed
        } else {
            &mut others
        };
        for n in side.iter_mut() {
            *n += p.slots.len() as u64;
        }
        for c in &r.failed_channels {
            if let Some(n) = side.get_mut(*c as usize) {
                *n = n.saturating_sub(1);
            }
        }
    }
    killed.iter().zip(&others).map(|(a, b)| a * b).sum()
}

#[derive(Default)]
struct ChurnTally {
    joins: AtomicU64,
    failed: AtomicU64,
    join_latency: AtomicHist,
    first_error: std::sync::Mutex<Option<String>>,
}

impl ChurnTally {
    fn json(&self, seconds: f64) -> Value {
        let joins = self.joins.load(Relaxed);
        json!({"joins": joins, "failed": self.failed.load(Relaxed),
               "joins_per_sec": round2(joins as f64 / seconds.max(1e-3)),
               "join_ms": self.join_latency.snapshot(false).summary_ms(),
               "first_error": self.first_error.lock().ok().and_then(|e| e.clone())})
    }

    fn fail(&self, e: &anyhow::Error) {
        self.failed.fetch_add(1, Relaxed);
        if let Ok(mut f) = self.first_error.lock() {
            f.get_or_insert(e.to_string());
        }
    }
}

/// Churners: connection `k` joins channel `(k + i·K) % channels` as user `churn-k` at
/// `(i·K + k) / rate` seconds and leaves half a cycle later.
struct Churn {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tally: Arc<ChurnTally>,
}

impl Churn {
    fn start(c: &Common, a: &PresenceArgs, nodes: &[SocketAddr], prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(ChurnTally::default());
        let mut tasks = Vec::new();
        if a.churn > 0.0 && a.churn_rate > 0.0 && !nodes.is_empty() {
            let count = a.churners.max(1);
            let cycle = Duration::from_secs_f64(count as f64 / a.churn_rate);
            let start = tokio::time::Instant::now();
            for k in 0..count {
                let target = Target {
                    addr: nodes[k % nodes.len()],
                    key: c.key.clone(),
                };
                let churner = Churner {
                    k,
                    count,
                    channels: a.channels,
                    prefix: prefix.to_owned(),
                    secret: c.secret.clone(),
                    first_join: start + cycle.mul_f64(k as f64 / count as f64),
                    cycle,
                };
                let (stop, tally) = (stop.clone(), tally.clone());
                tasks.push(tokio::spawn(async move {
                    churner.run(target, &stop, &tally).await;
                }));
            }
        }
        Self { stop, tasks, tally }
    }

    async fn stop(self) {
        self.stop.store(true, Relaxed);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

struct Churner {
    k: usize,
    count: usize,
    channels: u64,
    prefix: String,
    secret: String,
    first_join: tokio::time::Instant,
    cycle: Duration,
}

impl Churner {
    async fn run(self, target: Target, stop: &AtomicBool, tally: &ChurnTally) {
        let user = format!("churn-{}", self.k);
        let source = source_ip(100 + self.k % 16);
        let mut conn: Option<WsConn> = None;
        let mut i = 0u64;
        while !stop.load(Relaxed) {
            let join_at = self.first_join + self.cycle.mul_f64(i as f64);
            let channel_index = (self.k as u64 + i * self.count as u64) % self.channels;
            let channel = format!("presence-{}{channel_index}", self.prefix);
            i += 1;
            drain_until(&mut conn, join_at).await;
            if stop.load(Relaxed) {
                break;
            }
            if conn.is_none() {
                match WsConn::connect(&target, Some(source)).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tally.fail(&e);
                        continue;
                    }
                }
            }
            let Some(ws) = conn.as_mut() else { continue };
            let t0 = std::time::Instant::now();
            match ws
                .subscribe_as(&channel, &target, &self.secret, Some(&user))
                .await
            {
                Ok(()) => {
                    tally.join_latency.record(t0.elapsed().as_micros() as u64);
                    tally.joins.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    tally.fail(&e);
                    conn = None;
                    continue;
                }
            }
            drain_until(&mut conn, join_at + self.cycle / 2).await;
            if let Some(ws) = conn.as_mut()
                && ws.unsubscribe(&channel).await.is_err()
            {
                conn = None;
            }
        }
        if let Some(ws) = conn {
            let _ = ws.close().await;
        }
    }
}

/// Reads (and drops) whatever the server sends until `until`; a broken connection is
/// dropped so the next cycle opens a new one.
async fn drain_until(conn: &mut Option<WsConn>, until: tokio::time::Instant) {
    let Some(ws) = conn.as_mut() else {
        tokio::time::sleep_until(until).await;
        return;
    };
    loop {
        match tokio::time::timeout_at(until, ws.next_frame()).await {
            Err(_) => return,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                *conn = None;
                tokio::time::sleep_until(until).await;
                return;
            }
        }
    }
}
