//! The overview's charts: totals sampled every 10 s for the last hour, in memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Console;

const EVERY: Duration = Duration::from_secs(10);
/// One hour of samples.
const KEEP: usize = 360;

/// Totals at one instant; the dashboard charts their differences.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    pub time_ms: u64,
    pub connections: i64,
    pub received: u64,
    pub delivered: u64,
    pub http_requests: u64,
    pub webhooks_delivered: u64,
    pub webhooks_failed: u64,
}

/// The ring of samples.
#[derive(Default)]
pub struct History(Mutex<VecDeque<Sample>>);

impl History {
    pub fn samples(&self) -> Vec<Sample> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    fn push(&self, sample: Sample) {
        let mut ring = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(sample);
    }
}

/// The totals now.
pub fn totals(console: &Console) -> Sample {
    let metrics = &console.node.metrics;
    let mut sample = Sample {
        time_ms: crate::webhooks::now_ms(),
        http_requests: metrics.http_total.get(),
        ..Sample::default()
    };
    for (_, app) in metrics.apps() {
        sample.connections += app.connections.get();
        sample.received += app.received_total();
        sample.delivered += app.delivered_total();
        sample.webhooks_delivered += app.webhooks_delivered.get();
        sample.webhooks_failed += app.webhooks_failed.get();
    }
    sample
}

/// Samples until shutdown.
pub async fn sample(console: Arc<Console>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => console.history.push(totals(&console)),
        }
    }
}
