//! The HTTP publisher of `fanout` and `channels`: keep-alive connections sharing one
//! schedule, each event stamped with its send time and counted toward expected deliveries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::hist::{AtomicHist, Hist};
use crate::http::Event;
use crate::publish::Setup;
use crate::ws::payload;

pub struct Published {
    pub ok: u64,
    pub failed: u64,
    pub expected: u64,
    pub window: f64,
    pub http: Hist,
    pub first_error: Option<String>,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    expected: AtomicU64,
    http: AtomicHist,
    first_error: std::sync::Mutex<Option<String>>,
}

/// `publishers` tasks share the schedule: request `n` is due at `start + n * interval`.
pub async fn publish(setup: &Setup, rate: f64) -> Published {
    let load = &setup.load;
    let requests = ((rate * load.duration) / setup.batch as f64)
        .round()
        .max(1.0) as u64;
    let interval = Duration::from_secs_f64(setup.batch as f64 / rate.max(1e-3));
    let deadline = Duration::from_secs_f64(load.duration + 5.0);
    let tally = Arc::new(Tally::default());
    let subs = Arc::new(setup.subs.clone());
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for first in 0..load.publishers.max(1) as u64 {
        let (api, tally, subs) = (setup.api.clone(), tally.clone(), subs.clone());
        let prefix = setup.prefix.clone();
        let (channels, batch, size, step) = (
            setup.channels,
            setup.batch as u64,
            load.payload,
            load.publishers.max(1) as u64,
        );
        tasks.push(tokio::spawn(async move {
            let fail = |e: anyhow::Error, n: u64| {
                tally.failed.fetch_add(n, Relaxed);
                if let Ok(mut first) = tally.first_error.lock() {
                    first.get_or_insert(e.to_string());
                }
            };
            let mut conn = None;
            let mut n = first;
            while n < requests && start.elapsed() < deadline {
                tokio::time::sleep_until(start + interval.mul_f64(n as f64)).await;
                if conn.is_none() {
                    match api.connect().await {
                        Ok(c) => conn = Some(c),
                        Err(e) => fail(e, batch),
                    }
                }
                let Some(c) = conn.as_mut() else {
                    n += step;
                    continue;
                };
                let targets: Vec<u64> = (0..batch).map(|b| (n * batch + b) % channels).collect();
                let names: Vec<String> = targets.iter().map(|t| format!("{prefix}{t}")).collect();
                let datas: Vec<String> = (0..batch).map(|b| payload(size, n * batch + b)).collect();
                let events: Vec<Event<'_>> = names
                    .iter()
                    .zip(&datas)
                    .map(|(channel, data)| Event {
                        name: "bench",
                        channel,
                        data,
                    })
                    .collect();
                let (path, body) = api.trigger_body(&events);
                match c.post(&api, &path, body).await {
                    Ok((_, micros)) => {
                        tally.http.record(micros);
                        tally.ok.fetch_add(batch, Relaxed);
                        let expect: u64 = targets.iter().map(|t| subs[*t as usize]).sum();
                        tally.expected.fetch_add(expect, Relaxed);
                    }
                    Err(e) => {
                        fail(e, batch);
                        conn = None;
                    }
                }
                n += step;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let first_error = tally.first_error.lock().ok().and_then(|e| e.clone());
    Published {
        ok: tally.ok.load(Relaxed),
        failed: tally.failed.load(Relaxed),
        expected: tally.expected.load(Relaxed),
        window: start.elapsed().as_secs_f64(),
        http: tally.http.snapshot(false),
        first_error,
    }
}
