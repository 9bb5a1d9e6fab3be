//! Subscriber processes: the parent re-executes itself as `herald-bench worker`, sends a
//! [`Plan`] on stdin, and drives it with one-line commands (`snap`, `reset`, `mark <µs>`,
//! `stop`). A plan either subscribes public channels (fan-out) or joins presence channels
//! as distinct users and counts member events ([`PresencePlan`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use crate::hist::{AtomicHist, Hist};
use crate::procstat::{cpu_seconds, now_micros};
use crate::ws::{OP_CLOSE, OP_TEXT, Target, WsConn, close_reason, stamp};

/// Connections per worker process: the process fd limit here is 20,000.
pub const PER_WORKER: usize = 9_000;
/// Concurrent connection attempts per worker (larger batches hit SYN retries on loopback).
pub const CONNECT_BATCH: usize = 50;

/// What one worker does: connections `first..first+count`, connection `i` subscribed to
/// `{prefix}{i % channels}`, all bound to `source`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub addr: SocketAddr,
    pub key: String,
    pub secret: String,
    pub source: IpAddr,
    pub first: u64,
    pub count: u64,
    pub channels: u64,
    pub prefix: String,
    /// Join presence channels instead (then `first`/`count` are unused).
    #[serde(default)]
    pub presence: Option<PresencePlan>,
}

/// Presence members: for every slot in `slots` and every channel `c`, one connection joins
/// `presence-{prefix}{c}` as user `user-n{node}-s{slot}-c{c}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresencePlan {
    pub node: usize,
    pub slots: Vec<u64>,
    /// `member_removed` events for users whose id contains this are timed from the mark.
    pub watch: String,
}

impl PresencePlan {
    pub fn user_id(node: usize, slot: u64, channel: u64) -> String {
        format!("user-n{node}-s{slot}-c{channel}")
    }

    /// The marker in the user ids of every member on `node`.
    pub fn node_marker(node: usize) -> String {
        format!("user-n{node}-")
    }
}

/// Sent once all connection attempts are done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ready {
    pub connected: u64,
    pub failed: u64,
    /// Channel index of each failed connection, so the parent can expect fewer deliveries.
    pub failed_channels: Vec<u64>,
    pub first_error: Option<String>,
    pub connect: Hist,
    pub seconds: f64,
}

/// Counters since the last `reset`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snap {
    pub received: u64,
    pub latency: Hist,
    pub disconnected: u64,
    pub last_disconnect: Option<String>,
    pub cpu_seconds: f64,
    /// Presence: `member_added` / `member_removed` frames received (since the last reset).
    #[serde(default)]
    pub member_added: u64,
    #[serde(default)]
    pub member_removed: u64,
    /// Presence: `member_removed` of watched users since the mark; their delay after the
    /// mark (µs) and the wall-clock time of the last one.
    #[serde(default)]
    pub watched_removed: u64,
    #[serde(default)]
    pub watched: Hist,
    #[serde(default)]
    pub watched_last: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    disconnected: AtomicU64,
    latency: AtomicHist,
    last_disconnect: std::sync::Mutex<Option<String>>,
    member_added: AtomicU64,
    member_removed: AtomicU64,
    mark: AtomicU64,
    watched_removed: AtomicU64,
    watched: AtomicHist,
    watched_last: AtomicU64,
}

impl Counters {
    /// Counts a presence member event; times it when it removes a watched user.
    fn member_event(&self, text: &[u8], watch: Option<&[u8]>) {
        let find = |needle: &[u8]| memchr::memmem::find(text, needle).is_some();
        if find(b"pusher_internal:member_added") {
            self.member_added.fetch_add(1, Relaxed);
        } else if find(b"pusher_internal:member_removed") {
            self.member_removed.fetch_add(1, Relaxed);
            let mark = self.mark.load(Relaxed);
            if mark > 0 && watch.is_some_and(find) {
                let now = now_micros();
                self.watched_removed.fetch_add(1, Relaxed);
                self.watched.record(now.saturating_sub(mark));
                self.watched_last.fetch_max(now, Relaxed);
            }
        }
    }
}

/// The worker process: reads its plan, connects, then answers commands until `stop`.
pub async fn run_worker() -> Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let line = lines.next_line().await?.context("no plan on stdin")?;
    let plan: Plan = serde_json::from_str(&line)?;
    let counters = Arc::new(Counters::default());
    let ready = connect_all(&plan, &counters).await;
    let mut out = tokio::io::stdout();
    let mut say = async |text: String| -> Result<()> {
        out.write_all(text.as_bytes()).await?;
        out.write_all(b"\n").await?;
        out.flush().await?;
        Ok(())
    };
    say(serde_json::to_string(&ready)?).await?;
    while let Some(cmd) = lines.next_line().await? {
        let reset = match cmd.trim().split_once(' ') {
            _ if cmd.trim() == "snap" => false,
            _ if cmd.trim() == "reset" => true,
            Some(("mark", micros)) => {
                let Ok(micros) = micros.trim().parse::<u64>() else {
                    break;
                };
                counters.watched_removed.store(0, Relaxed);
                counters.watched.snapshot(true);
                counters.watched_last.store(0, Relaxed);
                counters.mark.store(micros, Relaxed);
                false
            }
            _ => break,
        };
        let snap = Snap {
            received: take(&counters.received, reset),
            latency: counters.latency.snapshot(reset),
            disconnected: counters.disconnected.load(Relaxed),
            last_disconnect: counters.last_disconnect.lock().ok().and_then(|l| l.clone()),
            cpu_seconds: cpu_seconds(None).unwrap_or(0.0),
            member_added: take(&counters.member_added, reset),
            member_removed: take(&counters.member_removed, reset),
            watched_removed: counters.watched_removed.load(Relaxed),
            watched: counters.watched.snapshot(false),
            watched_last: counters.watched_last.load(Relaxed),
        };
        say(serde_json::to_string(&snap)?).await?;
    }
    Ok(())
}

fn take(counter: &AtomicU64, reset: bool) -> u64 {
    if reset {
        counter.swap(0, Relaxed)
    } else {
        counter.load(Relaxed)
    }
}

async fn connect_all(plan: &Plan, counters: &Arc<Counters>) -> Ready {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(CONNECT_BATCH));
    let connect_hist = Arc::new(AtomicHist::default());
    let target = Target {
        addr: plan.addr,
        key: plan.key.clone(),
    };
    let watch: Option<Arc<[u8]>> = plan
        .presence
        .as_ref()
        .map(|p| Arc::from(p.watch.as_bytes()));
    let mut attempts = Vec::with_capacity(plan.count as usize);
    for (channel_index, channel, user) in members(plan) {
        let (gate, target, hist) = (gate.clone(), target.clone(), connect_hist.clone());
        let (secret, source, counters) = (plan.secret.clone(), plan.source, counters.clone());
        let watch = watch.clone();
        attempts.push(tokio::spawn(async move {
            let opened = {
                let _permit = gate.acquire().await;
                let t0 = Instant::now();
                let result = async {
                    let mut conn = WsConn::connect(&target, Some(source)).await?;
                    conn.subscribe_as(&channel, &target, &secret, user.as_deref())
                        .await?;
                    anyhow::Ok(conn)
                }
                .await;
                hist.record(t0.elapsed().as_micros() as u64);
                result
            };
            match opened {
                Ok(conn) => {
                    tokio::spawn(listen(conn, counters, watch));
                    Ok(())
                }
                Err(e) => Err((channel_index, e.to_string())),
            }
        }));
    }
    let mut ready = Ready::default();
    for attempt in attempts {
        match attempt.await {
            Ok(Ok(())) => ready.connected += 1,
            Ok(Err((channel, error))) => {
                ready.failed += 1;
                ready.failed_channels.push(channel);
                ready.first_error.get_or_insert(error);
            }
            Err(e) => {
                ready.failed += 1;
                ready.first_error.get_or_insert(e.to_string());
            }
        }
    }
    ready.connect = connect_hist.snapshot(false);
    ready.seconds = started.elapsed().as_secs_f64();
    ready
}

/// `(channel index, channel, presence user id)` of every connection a plan opens.
fn members(plan: &Plan) -> Vec<(u64, String, Option<String>)> {
    let channels = plan.channels.max(1);
    match &plan.presence {
        None => (plan.first..plan.first + plan.count)
            .map(|i| {
                (
                    i % channels,
                    format!("{}{}", plan.prefix, i % channels),
                    None,
                )
            })
            .collect(),
        Some(p) => p
            .slots
            .iter()
            .flat_map(|slot| {
                (0..channels).map(move |c| {
                    let user = PresencePlan::user_id(p.node, *slot, c);
                    (c, format!("presence-{}{c}", plan.prefix), Some(user))
                })
            })
            .collect(),
    }
}

/// Counts every stamped frame and its latency (and presence member events) until the
/// server closes the socket.
async fn listen(mut conn: WsConn, counters: Arc<Counters>, watch: Option<Arc<[u8]>>) {
    let reason = loop {
        match conn.next_frame().await {
            Ok(frame) if frame.opcode == OP_TEXT => {
                if let Some(sent) = stamp(frame.text()) {
                    counters.received.fetch_add(1, Relaxed);
                    counters.latency.record(now_micros().saturating_sub(sent));
                } else if memchr::memmem::find(frame.text(), b"pusher_internal:member_").is_some() {
                    counters.member_event(frame.text(), watch.as_deref());
                } else if memchr::memmem::find(frame.text(), b"pusher:ping").is_some() {
                    let pong = r#"{"event":"pusher:pong","data":{}}"#;
                    if let Err(e) = conn.send_text(pong).await {
                        break e.to_string();
                    }
                }
            }
            Ok(frame) if frame.opcode == OP_CLOSE => break close_reason(&frame.payload),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    counters.disconnected.fetch_add(1, Relaxed);
    if let Ok(mut last) = counters.last_disconnect.lock() {
        *last = Some(reason);
    }
}

/// The parent's handle on its worker processes.
pub struct Pool {
    workers: Vec<Worker>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

/// Source address of worker `k`: 127.0.0.2, 127.0.0.3, …
pub fn source_ip(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (k % 250) as u8))
}

/// Splits `total` connections over `workers` plans (at least enough to stay under
/// [`PER_WORKER`] each, and at least one per server); plan `k` connects to server
/// `k % servers.len()` (`base.addr` when `servers` is empty).
pub fn plans(base: &Plan, total: u64, workers: usize, servers: &[SocketAddr]) -> Vec<Plan> {
    let workers = workers
        .max(total.div_ceil(PER_WORKER as u64) as usize)
        .max(servers.len())
        .max(1);
    let share = total.div_ceil(workers as u64);
    (0..workers)
        .map(|k| {
            let first = k as u64 * share;
            Plan {
                addr: servers
                    .get(k % servers.len().max(1))
                    .copied()
                    .unwrap_or(base.addr),
                source: source_ip(k),
                first,
                count: share.min(total.saturating_sub(first)),
                ..base.clone()
            }
        })
        .filter(|p| p.count > 0)
        .collect()
}

impl Pool {
    /// Starts one worker per plan and waits (at most `timeout`) until all have connected.
    pub async fn start(plans: &[Plan], timeout: Duration) -> Result<(Self, Vec<Ready>)> {
        let exe = std::env::current_exe().context("locate own binary")?;
        let mut workers = Vec::new();
        for plan in plans {
            let mut child = Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("start worker")?;
            let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
            let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
            stdin
                .write_all(format!("{}\n", serde_json::to_string(plan)?).as_bytes())
                .await?;
            stdin.flush().await?;
            let lines = BufReader::new(stdout).lines();
            workers.push(Worker {
                child,
                stdin,
                lines,
            });
        }
        let mut pool = Self { workers };
        let ready = tokio::time::timeout(timeout, pool.read_all::<Ready>())
            .await
            .map_err(|_| anyhow!("workers did not connect within {timeout:?}"))??;
        Ok((pool, ready))
    }

    async fn read_all<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for worker in &mut self.workers {
            let Some(line) = worker.lines.next_line().await? else {
                bail!("a worker exited early");
            };
            out.push(serde_json::from_str(&line)?);
        }
        Ok(out)
    }

    async fn command(&mut self, cmd: &str) -> Result<Vec<Snap>> {
        for worker in &mut self.workers {
            worker
                .stdin
                .write_all(format!("{cmd}\n").as_bytes())
                .await?;
            worker.stdin.flush().await?;
        }
        tokio::time::timeout(Duration::from_secs(30), self.read_all::<Snap>())
            .await
            .map_err(|_| anyhow!("workers stopped answering"))?
    }

    /// Counters since the last reset, per worker.
    pub async fn snap(&mut self) -> Result<Vec<Snap>> {
        self.command("snap").await
    }

    /// Starts the watched-removal clock at `micros` (wall clock) in every worker.
    pub async fn mark(&mut self, micros: u64) -> Result<Vec<Snap>> {
        self.command(&format!("mark {micros}")).await
    }

    /// Counters since the last reset, per worker; then zero them.
    pub async fn reset(&mut self) -> Result<Vec<Snap>> {
        self.command("reset").await
    }

    /// Tells every worker to close its sockets and exit; waits for them.
    pub async fn stop(mut self) {
        for worker in &mut self.workers {
            let _ = worker.stdin.write_all(b"stop\n").await;
        }
        for mut worker in self.workers.drain(..) {
            drop(worker.stdin);
            if tokio::time::timeout(Duration::from_secs(10), worker.child.wait())
                .await
                .is_err()
            {
                let _ = worker.child.kill().await;
            }
        }
    }
}

/// Sums the snaps of all workers.
pub fn merge(snaps: &[Snap]) -> Snap {
    let mut total = Snap::default();
    for s in snaps {
        total.received += s.received;
        total.latency.merge(&s.latency);
        total.disconnected += s.disconnected;
        total.cpu_seconds += s.cpu_seconds;
        total.member_added += s.member_added;
        total.member_removed += s.member_removed;
        total.watched_removed += s.watched_removed;
        total.watched.merge(&s.watched);
        total.watched_last = total.watched_last.max(s.watched_last);
        if s.last_disconnect.is_some() {
            total.last_disconnect.clone_from(&s.last_disconnect);
        }
    }
    total
}
