//! Scenarios about sockets themselves: `connections` (idle subscribed sockets and server
//! memory) and `client-events` (round trips between pairs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::Common;
use crate::hist::AtomicHist;
use crate::procstat::{CpuMeter, now_micros, rss_total};
use crate::report::{CpuUse, Report, round2};
use crate::worker::{Plan, Pool, merge, plans, source_ip};
use crate::ws::{OP_TEXT, WsConn, payload, stamp};

#[derive(Args, Debug)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub connections: u64,
    /// Channels the connections are spread over (each connection subscribes to one).
    #[arg(long, default_value_t = 100)]
    pub channels: u64,
    /// Seconds to hold the connections open after the last one subscribed.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
}

pub async fn connections(a: ConnectionsArgs) -> Result<Report> {
    let c = &a.common;
    let mut report = Report::new(c.json, "connections", &c.url);
    let rss_before = rss_total(&c.server_pid);
    let base = Plan {
        addr: c.addr()?,
        key: c.key.clone(),
        secret: c.secret.clone(),
        source: source_ip(0),
        first: 0,
        count: 0,
        channels: a.channels.max(1),
        prefix: format!("idle-{}-", std::process::id()),
        presence: None,
    };
    let plans = plans(&base, a.connections, c.workers, &c.subscriber_addrs()?);
    let server = c.meter();
    let started = Instant::now();
    let (mut pool, ready) =
        Pool::start(&plans, Duration::from_secs(60 + a.connections / 200)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let server_cores = server.map(|m| m.cores_used());
    // Let the server settle (allocator, lazily touched pages) before reading its RSS.
    tokio::time::sleep(Duration::from_secs_f64(a.hold.max(1.0))).await;
    let rss_after = rss_total(&c.server_pid);
    let snaps = pool.snap().await?;
    let disconnected = merge(&snaps).disconnected;
    pool.stop().await;
    let connected: u64 = ready.iter().map(|r| r.connected).sum();
    let failed: u64 = ready.iter().map(|r| r.failed).sum();
    let mut connect = crate::hist::Hist::default();
    ready.iter().for_each(|r| connect.merge(&r.connect));
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if connected > 0 => Some(a.saturating_sub(b) as f64 / connected as f64),
        _ => None,
    };
    let rate = connected as f64 / seconds.max(1e-3);
    report.set(
        "params",
        json!({"connections": a.connections, "channels": a.channels, "processes": plans.len()}),
    );
    report.set(
        "result",
        json!({"connected": connected, "failed": failed, "disconnected_while_held": disconnected,
               "first_error": ready.iter().find_map(|r| r.first_error.clone()),
               "seconds": round2(seconds), "connects_per_sec": rate.round(),
               "connect_ms": connect.summary_ms(),
               "server_cores_while_connecting": server_cores.map(round2),
               "rss_before": rss_before, "rss_after": rss_after,
               "rss_per_connection": per_conn.map(|b| b.round()),
               "rss_per_connection_kib": per_conn.map(|b| round2(b / 1024.0))}),
    );
    report.line(format!(
        "{connected} connected, {failed} failed, {disconnected} dropped while held; {rate:.0} connections/s"
    ));
    report.line(format!("connect+subscribe: {}", connect.brief()));
    if let (Some(b), Some(after), Some(per)) = (rss_before, rss_after, per_conn) {
        report.line(format!(
            "server RSS {:.1} MiB -> {:.1} MiB: {:.2} KiB per connection",
            b as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per / 1024.0
        ));
    }
    Ok(report)
}

#[derive(Args, Debug)]
pub struct PairsArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 100)]
    pub pairs: u64,
    /// Client events each pair's initiator sends per second (Pusher's limit is 10).
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
}

/// Each pair shares `private-rtt-<i>`: A sends `client-ping`, B answers `client-pong` with
/// the same data, A records the round trip.
pub async fn pairs(a: PairsArgs) -> Result<Report> {
    let c = &a.common;
    let mut report = Report::new(c.json, "client-events", &c.url);
    let target = c.target()?;
    let tag = std::process::id();
    let gate = Arc::new(Semaphore::new(crate::worker::CONNECT_BATCH));
    let mut opened = Vec::new();
    for i in 0..a.pairs {
        let (target, secret, gate) = (target.clone(), c.secret.clone(), gate.clone());
        opened.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let channel = format!("private-rtt-{tag}-{i}");
            let src = source_ip(i as usize % 4);
            let mut x = WsConn::connect(&target, Some(src)).await?;
            x.subscribe(&channel, &target, &secret).await?;
            let mut y = WsConn::connect(&target, Some(src)).await?;
            y.subscribe(&channel, &target, &secret).await?;
            anyhow::Ok((channel, x, y))
        }));
    }
    let mut ready = Vec::new();
    let mut first_error = None;
    for o in opened {
        match o.await.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(pair) => ready.push(pair),
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let pairs_ok = ready.len() as u64;
    let rtt = Arc::new(AtomicHist::default());
    let (sent, echoed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let parent = CpuMeter::start(None);
    let server = c.meter();
    let run_for = Duration::from_secs_f64(a.duration);
    let period = Duration::from_secs_f64(1.0 / a.rate.max(0.01));
    let mut tasks = Vec::new();
    for (k, (channel, x, y)) in ready.into_iter().enumerate() {
        let (rtt, sent, echoed, size) = (rtt.clone(), sent.clone(), echoed.clone(), a.payload);
        // Stagger the pairs over one period so sends do not arrive in bursts.
        let offset = period.mul_f64(k as f64 / pairs_ok.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            let echo = tokio::spawn(answer(y, channel.clone(), run_for + Duration::from_secs(3)));
            let _ = ping(
                x, &channel, offset, period, run_for, size, &rtt, &sent, &echoed,
            )
            .await;
            echo.abort();
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let cpu = CpuUse::measure(&parent, server.as_ref(), Vec::new());
    let rtt = rtt.snapshot(false);
    let (sent, echoed) = (sent.load(Relaxed), echoed.load(Relaxed));
    let ratio = if sent == 0 {
        0.0
    } else {
        echoed as f64 / sent as f64
    };
    report.set(
        "params",
        json!({"pairs": a.pairs, "rate": a.rate, "duration": a.duration, "payload": a.payload}),
    );
    report.set(
        "result",
        json!({"pairs_connected": pairs_ok, "first_error": first_error, "sent": sent, "echoed": echoed,
               "delivery_ratio": (ratio * 1e5).round() / 1e5,
               "round_trips_per_sec": (echoed as f64 / a.duration).round(),
               "rtt_ms": rtt.summary_ms(), "cpu": cpu.json()}),
    );
    report.line(format!(
        "{pairs_ok} pairs; {echoed} of {sent} client events came back ({ratio:.4})"
    ));
    report.line(format!("round trip: {}", rtt.brief()));
    report.line(cpu.brief());
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn ping(
    mut conn: WsConn,
    channel: &str,
    offset: Duration,
    period: Duration,
    run_for: Duration,
    size: usize,
    rtt: &AtomicHist,
    sent: &AtomicU64,
    echoed: &AtomicU64,
) -> Result<()> {
    let start = tokio::time::Instant::now() + offset;
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = start + run_for;
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = tick.tick(), if tokio::time::Instant::now() < end => {
                let frame = json!({"event": "client-ping", "channel": channel, "data": payload(size, seq)});
                conn.send_text(&frame.to_string()).await?;
                sent.fetch_add(1, Relaxed);
                seq += 1;
            }
            frame = conn.next_frame() => {
                let frame = frame?;
                if frame.opcode == OP_TEXT
                    && memchr::memmem::find(frame.text(), b"client-pong").is_some()
                    && let Some(t) = stamp(frame.text())
                {
                    rtt.record(now_micros().saturating_sub(t));
                    echoed.fetch_add(1, Relaxed);
                }
            }
            _ = tokio::time::sleep_until(end + Duration::from_secs(2)) => return Ok(()),
        }
    }
}

async fn answer(mut conn: WsConn, channel: String, run_for: Duration) -> Result<()> {
    let end = tokio::time::Instant::now() + run_for;
    while tokio::time::Instant::now() < end {
        let event = conn.next_event().await?;
        if event.event == "client-ping" {
            let data = event.data_text().unwrap_or_default();
            let frame = json!({"event": "client-pong", "channel": channel, "data": data});
            conn.send_text(&frame.to_string()).await?;
        }
    }
    Ok(())
}
