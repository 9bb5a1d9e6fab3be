//! Subscriber processes: the parent re-executes itself as `herald-bench worker`, sends a
//! [`Plan`] on stdin, and drives it with one-line commands (`snap`, `reset`, `stop`).

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
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    disconnected: AtomicU64,
    latency: AtomicHist,
    last_disconnect: std::sync::Mutex<Option<String>>,
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
        let reset = match cmd.trim() {
            "snap" => false,
            "reset" => true,
            _ => break,
        };
        let snap = Snap {
            received: take(&counters.received, reset),
            latency: counters.latency.snapshot(reset),
            disconnected: counters.disconnected.load(Relaxed),
            last_disconnect: counters.last_disconnect.lock().ok().and_then(|l| l.clone()),
            cpu_seconds: cpu_seconds(None).unwrap_or(0.0),
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
    let mut attempts = Vec::with_capacity(plan.count as usize);
    for i in plan.first..plan.first + plan.count {
        let channel_index = i % plan.channels.max(1);
        let channel = format!("{}{channel_index}", plan.prefix);
        let (gate, target, hist) = (gate.clone(), target.clone(), connect_hist.clone());
        let (secret, source, counters) = (plan.secret.clone(), plan.source, counters.clone());
        attempts.push(tokio::spawn(async move {
            let opened = {
                let _permit = gate.acquire().await;
                let t0 = Instant::now();
                let result = async {
                    let mut conn = WsConn::connect(&target, Some(source)).await?;
                    conn.subscribe(&channel, &target, &secret).await?;
                    anyhow::Ok(conn)
                }
                .await;
                hist.record(t0.elapsed().as_micros() as u64);
                result
            };
            match opened {
                Ok(conn) => {
                    tokio::spawn(listen(conn, counters));
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

/// Counts every stamped frame and its latency until the server closes the socket.
async fn listen(mut conn: WsConn, counters: Arc<Counters>) {
    let reason = loop {
        match conn.next_frame().await {
            Ok(frame) if frame.opcode == OP_TEXT => {
                if let Some(sent) = stamp(frame.text()) {
                    counters.received.fetch_add(1, Relaxed);
                    counters.latency.record(now_micros().saturating_sub(sent));
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
/// [`PER_WORKER`] each).
pub fn plans(base: &Plan, total: u64, workers: usize) -> Vec<Plan> {
    let workers = workers
        .max(total.div_ceil(PER_WORKER as u64) as usize)
        .max(1);
    let share = total.div_ceil(workers as u64);
    (0..workers)
        .map(|k| {
            let first = k as u64 * share;
            Plan {
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
        if s.last_disconnect.is_some() {
            total.last_disconnect.clone_from(&s.last_disconnect);
        }
    }
    total
}
