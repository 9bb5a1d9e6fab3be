//! HTTP-published load on WebSocket subscribers: `fanout` (one channel), `channels` (many
//! small channels), and `--ramp`, which raises the rate until latency or delivery breaks.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};

use crate::Common;
use crate::http::Api;
use crate::procstat::rss_total;
use crate::report::{Report, round2};
use crate::step::{StepResult, step};
use crate::worker::{Plan, Pool, Ready, plans};

#[derive(Args, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: u64,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub ramp: RampArgs,
}

#[derive(Args, Debug)]
pub struct ChannelsArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 10_000)]
    pub connections: u64,
    /// Channels (default: one per connection).
    #[arg(long)]
    pub channels: Option<u64>,
    /// Events per HTTP request (more than 1 uses /batch_events, at most 10).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub ramp: RampArgs,
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Events published per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of publishing (per ramp step).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes of event data (carries the send timestamp).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Concurrent keep-alive HTTP connections publishing.
    #[arg(long, default_value_t = 8)]
    pub publishers: usize,
}

#[derive(Args, Debug, Clone)]
pub struct RampArgs {
    /// Raise the rate step by step until p99 or delivery breaks; report the last rate held.
    #[arg(long)]
    pub ramp: bool,
    #[arg(long, default_value_t = 20.0)]
    pub ramp_start: f64,
    #[arg(long, default_value_t = 1.5)]
    pub ramp_factor: f64,
    #[arg(long, default_value_t = 14)]
    pub max_steps: usize,
    /// A step fails when its p99 latency exceeds this.
    #[arg(long, default_value_t = 50.0)]
    pub p99_bound_ms: f64,
    /// A step fails when fewer than this share of expected deliveries arrive.
    #[arg(long, default_value_t = 0.999)]
    pub min_delivery: f64,
    /// Instead of a ramp: one step at each of these rates (events/s, comma-separated),
    /// in order, on the same subscribers; the report's `steps` has each.
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<f64>,
}

pub(crate) struct Setup {
    pub api: Api,
    pub load: LoadArgs,
    pub ramp: RampArgs,
    pub channels: u64,
    pub batch: usize,
    /// Connected subscribers per channel index.
    pub subs: Vec<u64>,
    /// Channel `i` is `{prefix}{i}`.
    pub prefix: String,
    pub server_pid: Vec<u32>,
    pub broker_port: Vec<u16>,
}

pub async fn fanout(a: FanoutArgs) -> Result<Report> {
    run(&a.common, "fanout", a.subscribers, 1, 1, a.load, a.ramp).await
}

pub async fn channels(a: ChannelsArgs) -> Result<Report> {
    let channels = a.channels.unwrap_or(a.connections).max(1);
    let batch = a.batch.clamp(1, 10);
    run(
        &a.common,
        "channels",
        a.connections,
        channels,
        batch,
        a.load,
        a.ramp,
    )
    .await
}

async fn run(
    common: &Common,
    scenario: &str,
    subscribers: u64,
    channels: u64,
    batch: usize,
    load: LoadArgs,
    ramp: RampArgs,
) -> Result<Report> {
    let mut report = Report::new(common.json, scenario, &common.url);
    let api = common.api()?;
    let rss_before = rss_total(&common.server_pid);
    let base = Plan {
        addr: common.addr()?,
        key: common.key.clone(),
        secret: common.secret.clone(),
        source: crate::worker::source_ip(0),
        first: 0,
        count: 0,
        channels,
        prefix: format!("bench-{}-", std::process::id()),
        presence: None,
    };
    let servers = common.subscriber_addrs()?;
    let plans = plans(&base, subscribers, common.workers, &servers);
    let timeout = Duration::from_secs(60 + subscribers / 200);
    let started = Instant::now();
    let (mut pool, ready) = Pool::start(&plans, timeout).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    let subs = per_channel(subscribers, channels, &ready);
    let connected: u64 = ready.iter().map(|r| r.connected).sum();
    let failed: u64 = ready.iter().map(|r| r.failed).sum();
    let first_error = ready.iter().find_map(|r| r.first_error.clone());
    report.set(
        "params",
        json!({"subscribers": subscribers, "channels": channels, "batch": batch,
               "rate": load.rate, "duration": load.duration, "payload": load.payload,
               "publishers": load.publishers, "ramp": ramp.ramp, "rates": ramp.rates,
               "processes": plans.len(),
               "subscribe_to": servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
               "publish_to": api.addr.to_string()}),
    );
    report.set(
        "connect",
        json!({"connected": connected, "failed": failed, "seconds": round2(connect_secs),
               "first_error": first_error,
               "rss_before": rss_before, "rss_after": rss_total(&common.server_pid)}),
    );
    report.line(format!(
        "{connected} subscribers on {channels} channel(s) over {} processes in {connect_secs:.1} s ({failed} failed)",
        plans.len()
    ));
    let setup = Setup {
        api,
        load,
        ramp,
        channels,
        batch,
        subs,
        prefix: base.prefix.clone(),
        server_pid: common.server_pid.clone(),
        broker_port: common.broker_port.clone(),
    };
    let outcome = if !setup.ramp.rates.is_empty() {
        fixed_steps(&setup, &mut pool, &mut report).await
    } else if setup.ramp.ramp {
        ramp_steps(&setup, &mut pool, &mut report).await
    } else {
        let step = step(&setup, &mut pool, setup.load.rate).await;
        step.map(|s| {
            report.lines.extend(s.lines());
            report.set("result", s.json.clone());
        })
    };
    pool.stop().await;
    outcome?;
    Ok(report)
}

fn per_channel(total: u64, channels: u64, ready: &[Ready]) -> Vec<u64> {
    let mut subs: Vec<u64> = (0..channels)
        .map(|c| total / channels + u64::from(c < total % channels))
        .collect();
    for c in ready.iter().flat_map(|r| &r.failed_channels) {
        if let Some(n) = subs.get_mut(*c as usize) {
            *n = n.saturating_sub(1);
        }
    }
    subs
}

/// One step at each `--rates` rate, whatever the previous one did.
async fn fixed_steps(setup: &Setup, pool: &mut Pool, report: &mut Report) -> Result<()> {
    let mut steps: Vec<Value> = Vec::new();
    for (k, rate) in setup.ramp.rates.iter().enumerate() {
        if k > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let s = step(setup, pool, *rate).await?;
        report.line(s.short());
        report.line(format!(
            "  latency: {}",
            s.json["latency_text"].as_str().unwrap_or("")
        ));
        steps.push(s.json.clone());
        if s.disconnected > 0 {
            report.line("subscribers were disconnected: stopping");
            break;
        }
    }
    report.set("steps", Value::Array(steps));
    Ok(())
}

/// Raises the rate by `ramp_factor` while deliveries hold (>= `min_delivery`, no publish
/// failures, no disconnects). `knee` is the last rate that also kept p99 under the bound
/// (before it first broke); `sustained` the last rate whose deliveries held at any latency,
/// refined by two bisection steps. The first step to miss the latency bound is run twice.
/// Then one step at half the knee (or of `sustained` when no
/// rate kept the latency bound).
async fn ramp_steps(setup: &Setup, pool: &mut Pool, report: &mut Report) -> Result<()> {
    let r = &setup.ramp;
    let mut steps: Vec<Value> = Vec::new();
    let (mut knee, mut sustained): (Option<StepResult>, Option<StepResult>) = (None, None);
    let mut latency_broke = false;
    let mut fail_rate = None;
    let mut rate = r.ramp_start;
    let mut broken = false;
    for _ in 0..r.max_steps {
        let mut s = step(setup, pool, rate).await?;
        report.line(s.short());
        steps.push(s.json.clone());
        if !s.pass && s.delivery_held && !latency_broke {
            // A latency miss is run once more, so that a burst from another process
            // on a shared machine does not end the search early.
            tokio::time::sleep(Duration::from_secs(1)).await;
            s = step(setup, pool, rate).await?;
            report.line(format!("retry: {}", s.short()));
            steps.push(s.json.clone());
        }
        broken = s.disconnected > 0;
        if s.pass && !latency_broke {
            knee = Some(s.clone());
        }
        latency_broke |= !s.pass;
        if s.delivery_held {
            sustained = Some(s);
            rate *= r.ramp_factor;
        } else {
            fail_rate = Some(rate);
            break;
        }
        if broken {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if let (Some(mut hi), false) = (fail_rate, broken) {
        for _ in 0..2 {
            let Some(lo) = sustained.as_ref().map(|k| k.rate) else {
                break;
            };
            let mid = (lo + hi) / 2.0;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = step(setup, pool, mid).await?;
            report.line(s.short());
            steps.push(s.json.clone());
            if s.pass && !latency_broke {
                knee = Some(s.clone());
            }
            if s.disconnected > 0 {
                break;
            }
            if s.delivery_held {
                sustained = Some(s);
            } else {
                hi = mid;
            }
        }
    }
    let (half_of, base) = match (&knee, &sustained) {
        (Some(k), _) => ("knee", Some(k.rate)),
        (None, Some(s)) => ("sustained", Some(s.rate)),
        _ => ("none", None),
    };
    let half = match base {
        Some(base) if !broken => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = step(setup, pool, base / 2.0).await?;
            report.line(format!("half the {half_of}: {}", s.short()));
            Some(s)
        }
        _ => None,
    };
    let describe = |name: &str, s: &Option<StepResult>| match s {
        Some(k) => format!(
            "{name}: {:.1} events/s = {:.0} deliveries/s, p99 {:.2} ms",
            k.rate, k.deliveries_per_sec, k.p99_ms
        ),
        None => format!("{name}: none (the first step already broke)"),
    };
    report.line(describe(
        &format!("knee (p99 <= {} ms)", r.p99_bound_ms),
        &knee,
    ));
    report.line(describe("sustained (any latency)", &sustained));
    report.set("steps", Value::Array(steps));
    report.set("knee", knee.map_or(Value::Null, |k| k.json));
    report.set("sustained", sustained.map_or(Value::Null, |k| k.json));
    report.set("half_of", json!(half_of));
    report.set("half_knee", half.map_or(Value::Null, |h| h.json));
    Ok(())
}
