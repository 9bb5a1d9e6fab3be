//! The `churn` scenario: connect, subscribe, close, over and over; closed loop (as fast as
//! `--concurrency` tasks go) or open loop at `--rate` cycles per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::Common;
use crate::hist::AtomicHist;
use crate::procstat::CpuMeter;
use crate::report::{CpuUse, Report, round2};
use crate::worker::source_ip;
use crate::ws::{Target, WsConn};

#[derive(Args, Debug)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,
    /// Cycles started per second (open loop); without it, each task starts its next cycle
    /// when the last one ends (closed loop: the server's maximum).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Closed loop: tasks cycling at once. Open loop: cycles in flight at most (starts
    /// beyond it are counted as skipped).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

#[derive(Default)]
struct Tally {
    /// connect, subscribe, close
    steps: [AtomicHist; 3],
    ok: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Tally {
    async fn run_cycle(&self, target: &Target, secret: &str, i: u64) {
        match cycle(target, secret, i, &self.steps).await {
            Ok(()) => self.ok.fetch_add(1, Relaxed),
            Err(e) => {
                if let Ok(mut f) = self.first_error.lock() {
                    f.get_or_insert(e.to_string());
                }
                self.failed.fetch_add(1, Relaxed)
            }
        };
    }
}

pub async fn churn(a: ChurnArgs) -> Result<Report> {
    let c = &a.common;
    let mut report = Report::new(c.json, "churn", &c.url);
    let target = c.target()?;
    let tally = Arc::new(Tally::default());
    let parent = CpuMeter::start(None);
    let server = c.meter();
    let run_for = Duration::from_secs_f64(a.duration);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    let counter = Arc::new(AtomicU64::new(0));
    if let Some(rate) = a.rate {
        let gate = Arc::new(Semaphore::new(a.concurrency.max(1)));
        let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
        for i in 0..(rate * a.duration).round() as u64 {
            tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
            let Ok(permit) = gate.clone().try_acquire_owned() else {
                tally.skipped.fetch_add(1, Relaxed);
                continue;
            };
            let (target, secret, tally) = (target.clone(), c.secret.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                tally.run_cycle(&target, &secret, i).await;
            }));
        }
    } else {
        for _ in 0..a.concurrency.max(1) {
            let (target, secret, tally) = (target.clone(), c.secret.clone(), tally.clone());
            let counter = counter.clone();
            tasks.push(tokio::spawn(async move {
                while start.elapsed() < run_for {
                    let i = counter.fetch_add(1, Relaxed);
                    tally.run_cycle(&target, &secret, i).await;
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = CpuUse::measure(&parent, server.as_ref(), Vec::new());
    let (ok, failed) = (tally.ok.load(Relaxed), tally.failed.load(Relaxed));
    let skipped = tally.skipped.load(Relaxed);
    let attempted = ok + failed + skipped;
    let ratio = ok as f64 / attempted.max(1) as f64;
    let [connect, subscribe, close] = [0, 1, 2].map(|k| tally.steps[k].snapshot(false));
    let first_error = tally.first_error.lock().ok().and_then(|f| f.clone());
    report.set(
        "params",
        json!({"rate": a.rate, "duration": a.duration, "concurrency": a.concurrency}),
    );
    report.set(
        "result",
        json!({"attempted": attempted, "ok": ok, "failed": failed, "skipped": skipped,
               "first_error": first_error,
               "success_ratio": (ratio * 1e5).round() / 1e5,
               "cycles_per_sec": round2(ok as f64 / secs),
               "connect_ms": connect.summary_ms(), "subscribe_ms": subscribe.summary_ms(),
               "close_ms": close.summary_ms(), "cpu": cpu.json(), "cpu_text": cpu.brief()}),
    );
    report.line(format!(
        "{ok} of {attempted} cycles succeeded ({ratio:.4}), {:.0} cycles/s; {failed} failed, {skipped} skipped",
        ok as f64 / secs
    ));
    report.line(format!("connect:   {}", connect.brief()));
    report.line(format!("subscribe: {}", subscribe.brief()));
    report.line(format!("close:     {}", close.brief()));
    report.line(cpu.brief());
    Ok(report)
}

async fn cycle(target: &Target, secret: &str, i: u64, steps: &[AtomicHist; 3]) -> Result<()> {
    let t0 = Instant::now();
    // Sixteen source addresses keep TIME_WAIT sockets from exhausting one address's ports.
    let mut conn = WsConn::connect(target, Some(source_ip(i as usize % 16))).await?;
    steps[0].record(t0.elapsed().as_micros() as u64);
    let t1 = Instant::now();
    conn.subscribe(&format!("churn-{}", i % 100), target, secret)
        .await?;
    steps[1].record(t1.elapsed().as_micros() as u64);
    let t2 = Instant::now();
    conn.close().await?;
    steps[2].record(t2.elapsed().as_micros() as u64);
    Ok(())
}
