//! Reconnect delays: 100 ms doubling to 5 s, each jittered down by up to half.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(5);

/// The delay before reconnect attempt `attempt` (1-based). Jitter spreads the nodes of a
/// cluster so they don't all hit a restarted broker in the same millisecond.
pub(crate) fn delay(attempt: usize) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16) as u32;
    let full = FIRST.saturating_mul(1 << doublings).min(MAX);
    let jitter = f64::from(rand::random::<u32>()) / f64::from(u32::MAX) / 2.0;
    full.mul_f64(1.0 - jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_a_tenth_of_a_second_and_stays_under_five_seconds() {
        for _ in 0..100 {
            let first = delay(1);
            assert!(first <= FIRST && first >= FIRST / 2, "{first:?}");
            let late = delay(50);
            assert!(late <= MAX && late >= MAX / 2, "{late:?}");
        }
        assert!(delay(4) > FIRST * 3, "fourth attempt waits about 800 ms");
    }
}
