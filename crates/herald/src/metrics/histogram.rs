//! A histogram of durations on plain atomics: observing is three relaxed adds and no lock
//! (prometheus-client's own `Histogram` takes a mutex per observation, too much for a
//! per-frame measurement on the delivery path).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds in seconds, ascending; an implicit `+Inf` bucket follows.
pub type Bounds = &'static [f64];

/// Sub-millisecond to seconds: frames, HTTP requests, cluster hops.
pub const FAST: Bounds = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Milliseconds to a minute: one webhook request.
pub const REQUEST: Bounds = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Tenths of a second to an hour: a webhook event from its creation to its receiver's 2xx
/// (settle windows and retries included).
pub const SLOW: Bounds = &[
    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

#[derive(Debug)]
struct Inner {
    bounds: Bounds,
    /// One per bound, then `+Inf`; not cumulative.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// Cheap to clone: clones share the counts.
#[derive(Debug, Clone)]
pub struct DurationHistogram(Arc<Inner>);

impl DurationHistogram {
    pub fn new(bounds: Bounds) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(Inner {
            bounds,
            counts,
            sum_nanos: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = self.0.bounds.partition_point(|bound| *bound < seconds);
        self.0.counts[bucket].fetch_add(1, Relaxed);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The sum of observations, in seconds.
    pub fn sum(&self) -> f64 {
        self.0.sum_nanos.load(Relaxed) as f64 / 1e9
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &self.0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .zip(inner.counts.iter())
            .map(|(bound, count)| (*bound, count.load(Relaxed)))
            .collect();
        // The count comes from the same loads, so `+Inf` equals it under concurrent writes.
        let count = buckets.iter().map(|(_, c)| c).sum();
        encoder.encode_histogram::<NoLabelSet>(
            self.sum(),
            count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_add_up() {
        let histogram = DurationHistogram::new(&[0.001, 0.01]);
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_secs(2));
        let counts: Vec<u64> = histogram.0.counts.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(counts, [2, 1, 1]);
        assert_eq!(histogram.count(), 4);
        assert!((histogram.sum() - 2.0065).abs() < 1e-9);
    }
}
