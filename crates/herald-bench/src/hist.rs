//! Latency histograms in microseconds: log-linear buckets (64 per power of two, ~1.6 %
//! precision), lock-free recording, and a sparse form that workers send to the parent.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Values up to 2^40 µs (~12 days) have their own bucket; larger ones land in the last.
const BUCKETS: usize = (40 - SUB_BITS as usize + 1) * SUB + SUB;

fn index(value: u64) -> usize {
    if value < (2 * SUB) as u64 {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    let idx = (shift as usize + 1) * SUB + ((value >> shift) as usize - SUB);
    idx.min(BUCKETS - 1)
}

/// The middle of the range that bucket `idx` covers.
fn value_of(idx: usize) -> u64 {
    if idx < 2 * SUB {
        return idx as u64;
    }
    let shift = (idx / SUB - 1) as u32;
    let low = ((idx % SUB + SUB) as u64) << shift;
    low + (1u64 << shift) / 2
}

/// A histogram many tasks record into at once.
pub struct AtomicHist {
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for AtomicHist {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl AtomicHist {
    pub fn record(&self, micros: u64) {
        self.buckets[index(micros)].fetch_add(1, Relaxed);
        self.sum.fetch_add(micros, Relaxed);
        self.max.fetch_max(micros, Relaxed);
    }

    /// A copy of the counts; with `reset`, the counts start again from zero.
    pub fn snapshot(&self, reset: bool) -> Hist {
        let take = |a: &AtomicU64| {
            if reset {
                a.swap(0, Relaxed)
            } else {
                a.load(Relaxed)
            }
        };
        let counts: Vec<(u32, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let n = take(b);
                (n > 0).then_some((i as u32, n))
            })
            .collect();
        Hist {
            counts,
            sum: take(&self.sum),
            max: take(&self.max),
        }
    }
}

/// A sparse histogram: `(bucket, count)` pairs in bucket order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hist {
    pub counts: Vec<(u32, u64)>,
    pub sum: u64,
    pub max: u64,
}

impl Hist {
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }

    pub fn merge(&mut self, other: &Hist) {
        let mut dense = vec![0u64; BUCKETS];
        for &(i, n) in self.counts.iter().chain(&other.counts) {
            if let Some(slot) = dense.get_mut(i as usize) {
                *slot += n;
            }
        }
        self.counts = dense
            .into_iter()
            .enumerate()
            .filter(|(_, n)| *n > 0)
            .map(|(i, n)| (i as u32, n))
            .collect();
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// The value (µs) at quantile `q` in 0..=1; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for &(i, n) in &self.counts {
            seen += n;
            if seen >= rank {
                return value_of(i as usize).min(self.max);
            }
        }
        self.max
    }

    /// p50/p90/p99/p99.9/max/mean in milliseconds, as JSON.
    pub fn summary_ms(&self) -> serde_json::Value {
        let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        let mean = if self.count() == 0 {
            0.0
        } else {
            self.sum as f64 / self.count() as f64
        };
        serde_json::json!({
            "count": self.count(),
            "p50": ms(self.quantile(0.5)),
            "p90": ms(self.quantile(0.9)),
            "p99": ms(self.quantile(0.99)),
            "p999": ms(self.quantile(0.999)),
            "max": ms(self.max),
            "mean": ms(mean as u64),
        })
    }

    /// `p50 a / p99 b / max c ms`, for human summaries.
    pub fn brief(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "p50 {:.2} / p90 {:.2} / p99 {:.2} / p99.9 {:.2} / max {:.2} ms",
            ms(self.quantile(0.5)),
            ms(self.quantile(0.9)),
            ms(self.quantile(0.99)),
            ms(self.quantile(0.999)),
            ms(self.max)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_precise() {
        let mut last = 0;
        for v in (0..5_000_000u64).step_by(7) {
            let i = index(v);
            assert!(i >= last);
            last = i;
            let back = value_of(i);
            assert!(
                back.abs_diff(v) as f64 <= 1.0 + v as f64 * 0.016,
                "{v} -> {back}"
            );
        }
    }

    #[test]
    fn quantiles_and_merge() {
        let a = AtomicHist::default();
        for v in 1..=1000 {
            a.record(v);
        }
        let mut h = a.snapshot(true);
        assert_eq!(h.count(), 1000);
        assert!(h.quantile(0.5).abs_diff(500) <= 8);
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(a.snapshot(false).count(), 0);
        let b = AtomicHist::default();
        b.record(5000);
        h.merge(&b.snapshot(false));
        assert_eq!(h.count(), 1001);
        assert_eq!(h.max, 5000);
    }
}
