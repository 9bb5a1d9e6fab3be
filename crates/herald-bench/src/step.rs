//! One step of a publish scenario: publish at a rate, wait for deliveries to settle, and
//! judge the step (delivery, publisher rate, disconnects, p99 bound).

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};

use crate::procstat::CpuMeter;
use crate::publish::Setup;
use crate::publisher::publish;
use crate::report::{CpuUse, round2};
use crate::worker::{Pool, Snap, merge};

#[derive(Clone)]
pub struct StepResult {
    pub rate: f64,
    pub pass: bool,
    /// Everything held except, perhaps, the latency bound.
    pub delivery_held: bool,
    pub deliveries_per_sec: f64,
    pub p99_ms: f64,
    pub disconnected: u64,
    pub json: Value,
}

impl StepResult {
    pub fn short(&self) -> String {
        format!(
            "rate {:>8.0}/s: {:>10.0} deliveries/s, delivered {:.4}, p99 {:>7.2} ms, tool {} cores, server {} cores ({} µs/delivery) -> {}",
            self.rate,
            self.deliveries_per_sec,
            self.json["delivery_ratio"].as_f64().unwrap_or(0.0),
            self.p99_ms,
            self.json["cpu"]["tool_cores"],
            self.json["cpu"]["server_cores"],
            self.json["server_cpu_us_per_delivery"],
            if self.pass { "held" } else { "broke" }
        ) + if self.json["cpu"]["tool_saturated"] == true {
            " (WARNING: herald-bench saturated a core; figures are a floor)"
        } else {
            ""
        }
    }

    pub fn lines(&self) -> Vec<String> {
        let j = &self.json;
        vec![
            format!(
                "published {} events ({} failed) at {}/s; {} of {} deliveries ({}), {}/s",
                j["events_ok"],
                j["events_failed"],
                j["publishes_per_sec"],
                j["delivered"],
                j["expected"],
                j["delivery_ratio"],
                j["deliveries_per_sec"]
            ),
            format!(
                "latency publish->receipt: {}",
                j["latency_text"].as_str().unwrap_or("")
            ),
            format!(
                "HTTP trigger latency: {}",
                j["http_text"].as_str().unwrap_or("")
            ),
            j["cpu_text"].as_str().unwrap_or("").to_owned(),
        ]
    }
}

/// Publishes at `rate` for the configured duration, waits for deliveries to settle, and
/// judges the step.
pub async fn step(setup: &Setup, pool: &mut Pool, rate: f64) -> Result<StepResult> {
    let baseline = pool.reset().await?;
    let wall = Instant::now();
    let parent = CpuMeter::start(None);
    let server = crate::procstat::ServerMeter::start(&setup.server_pid, &setup.broker_port);
    let published = publish(setup, rate).await;
    let settle_start = Instant::now();
    let mut last = 0;
    let snaps: Vec<Snap> = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let snaps = pool.snap().await?;
        let got = merge(&snaps).received;
        let waited = settle_start.elapsed();
        if got >= published.expected
            || (got == last && waited > Duration::from_millis(750))
            || waited > Duration::from_secs(5)
        {
            break snaps;
        }
        last = got;
    };
    let secs = wall.elapsed().as_secs_f64();
    let workers = snaps
        .iter()
        .zip(&baseline)
        .map(|(s, b)| (s.cpu_seconds - b.cpu_seconds) / secs)
        .collect();
    let cpu = CpuUse::measure(&parent, server.as_ref(), workers);
    let total = merge(&snaps);
    let server_cpu = server
        .as_ref()
        .map(crate::procstat::ServerMeter::seconds_used);
    let cost = server_cpu.and_then(|s| per_delivery_micros(s, total.received));
    let disconnected = total.disconnected - merge(&baseline).disconnected;
    let ratio = if published.expected == 0 {
        0.0
    } else {
        total.received as f64 / published.expected as f64
    };
    let window = published.window.max(1e-3);
    let deliveries_per_sec = total.received as f64 / window;
    let publish_rate = published.ok as f64 / window;
    let p99_ms = total.latency.quantile(0.99) as f64 / 1000.0;
    let r = &setup.ramp;
    let delivery_reason = if disconnected > 0 {
        Some(format!(
            "{disconnected} subscribers disconnected: {:?}",
            total.last_disconnect
        ))
    } else if published.failed > 0 {
        Some(format!(
            "{} publishes failed: {:?}",
            published.failed, published.first_error
        ))
    } else if publish_rate < 0.95 * rate {
        Some(format!("publishing reached only {publish_rate:.0}/s"))
    } else if ratio < r.min_delivery {
        Some(format!("delivered {ratio:.4} < {}", r.min_delivery))
    } else {
        None
    };
    let delivery_held = delivery_reason.is_none();
    let fail_reason = delivery_reason.or_else(|| {
        (p99_ms > r.p99_bound_ms).then(|| format!("p99 {p99_ms:.2} ms > {} ms", r.p99_bound_ms))
    });
    let json = json!({
        "rate": round2(rate),
        "events_ok": published.ok,
        "events_failed": published.failed,
        "first_error": published.first_error,
        "publishes_per_sec": round2(publish_rate),
        "expected": published.expected,
        "delivered": total.received,
        "delivery_ratio": (ratio * 1e5).round() / 1e5,
        "deliveries_per_sec": deliveries_per_sec.round(),
        "latency_ms": total.latency.summary_ms(),
        "latency_text": total.latency.brief(),
        "http_ms": published.http.summary_ms(),
        "http_text": published.http.brief(),
        "disconnected": disconnected,
        "cpu": cpu.json(),
        "cpu_text": cpu.brief(),
        "server_cpu_seconds": server_cpu.map(crate::report::round4),
        "server_cpu_us_per_delivery": cost.map(round2),
        "pass": fail_reason.is_none(),
        "delivery_held": delivery_held,
        "fail_reason": fail_reason,
    });
    Ok(StepResult {
        rate,
        pass: fail_reason.is_none(),
        delivery_held,
        deliveries_per_sec,
        p99_ms,
        disconnected,
        json,
    })
}

/// Server CPU microseconds per delivered message; `None` when nothing was delivered.
pub fn per_delivery_micros(cpu_seconds: f64, delivered: u64) -> Option<f64> {
    (delivered > 0).then(|| cpu_seconds * 1e6 / delivered as f64)
}

#[cfg(test)]
mod tests {
    use super::per_delivery_micros;

    #[test]
    fn cost_per_delivery_is_cpu_over_deliveries() {
        assert_eq!(per_delivery_micros(0.5, 50_000), Some(10.0));
        assert_eq!(per_delivery_micros(0.5, 0), None);
    }
}
