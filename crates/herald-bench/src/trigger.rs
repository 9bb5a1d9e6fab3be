//! The `http` scenario: signed trigger requests in a closed loop over C keep-alive
//! connections; requests/s and latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::Common;
use crate::hist::AtomicHist;
use crate::http::Event;
use crate::procstat::CpuMeter;
use crate::report::{CpuUse, Report, round2};
use crate::ws::payload;

#[derive(Args, Debug)]
pub struct HttpArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent keep-alive connections, each sending its next request on the last reply.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Channel triggered to (nobody needs to listen: this measures the API path).
    #[arg(long, default_value = "bench-http")]
    pub channel: String,
}

pub async fn http(a: HttpArgs) -> Result<Report> {
    let c = &a.common;
    let mut report = Report::new(c.json, "http", &c.url);
    let api = c.api()?;
    let latency = Arc::new(AtomicHist::default());
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let parent = CpuMeter::start(None);
    let server = c.meter();
    let run_for = Duration::from_secs_f64(a.duration);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency.max(1) {
        let (api, latency, ok, failed) = (api.clone(), latency.clone(), ok.clone(), failed.clone());
        let (first_error, channel, size) = (first_error.clone(), a.channel.clone(), a.payload);
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            let mut seq = 0;
            while start.elapsed() < run_for {
                if conn.is_none() {
                    conn = api.connect().await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    failed.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let data = payload(size, seq);
                seq += 1;
                let event = Event {
                    name: "bench",
                    channel: &channel,
                    data: &data,
                };
                let (path, body) = api.trigger_body(&[event]);
                match c.post(&api, &path, body).await {
                    Ok((_, micros)) => {
                        latency.record(micros);
                        ok.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert(e.to_string());
                        }
                        failed.fetch_add(1, Relaxed);
                        conn = None;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = CpuUse::measure(&parent, server.as_ref(), Vec::new());
    let latency = latency.snapshot(false);
    let (ok, failed) = (ok.load(Relaxed), failed.load(Relaxed));
    let rps = ok as f64 / secs;
    report.set(
        "params",
        json!({"concurrency": a.concurrency, "duration": a.duration, "payload": a.payload}),
    );
    report.set(
        "result",
        json!({"ok": ok, "failed": failed, "requests_per_sec": round2(rps),
               "first_error": first_error.lock().ok().and_then(|f| f.clone()),
               "latency_ms": latency.summary_ms(), "cpu": cpu.json()}),
    );
    report.line(format!(
        "{ok} triggers ({failed} failed): {rps:.0} requests/s"
    ));
    report.line(format!("latency: {}", latency.brief()));
    report.line(cpu.brief());
    Ok(report)
}
