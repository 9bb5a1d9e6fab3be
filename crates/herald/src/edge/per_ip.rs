//! A per-second rate per client IP (governor's keyed GCRA limiter), bounded in memory: an
//! address is forgotten once its bucket is full again, and IPv6 clients count per /64, the
//! block one subscriber usually holds, so rotating through it buys nothing.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// One rate, for every client IP; `None` when the limit is off (0).
#[derive(Debug)]
pub struct IpRate {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl IpRate {
    /// `per_second` events per client, in bursts of up to `per_second`; 0 turns it off.
    pub fn new(per_second: u32) -> Self {
        let limiter: Option<DefaultKeyedRateLimiter<IpAddr>> =
            NonZeroU32::new(per_second).map(|rate| RateLimiter::keyed(Quota::per_second(rate)));
        Self {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Counts one event from `ip`; over the rate, how long until one would be allowed.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&key(ip))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the addresses whose budget is full again (they would start afresh anyway) and
    /// returns the memory. Called every few seconds.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Addresses currently remembered.
    pub fn tracked(&self) -> usize {
        self.limiter.as_ref().map_or(0, |limiter| limiter.len())
    }
}

/// IPv4 addresses as they are, IPv6 ones by their /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// A `Retry-After` value: whole seconds, rounded up, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn each_address_gets_its_own_budget() {
        let rate = IpRate::new(2);
        let a = ip("192.0.2.1");
        assert!(rate.check(a).is_ok() && rate.check(a).is_ok());
        let wait = rate.check(a).expect_err("third within the second");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500));
        assert!(rate.check(ip("192.0.2.2")).is_ok(), "others are unaffected");
        assert_eq!(rate.tracked(), 2);
    }

    #[test]
    fn off_means_no_limit_and_no_memory() {
        let rate = IpRate::new(0);
        assert!((0..1000).all(|_| rate.check(ip("192.0.2.1")).is_ok()));
        assert_eq!(rate.tracked(), 0);
    }

    #[test]
    fn an_ipv6_client_counts_per_slash_64() {
        let rate = IpRate::new(1);
        assert!(rate.check(ip("2001:db8:1:2::1")).is_ok());
        assert!(rate.check(ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(rate.check(ip("2001:db8:1:3::1")).is_ok());
        assert!(rate.check(ip("::ffff:192.0.2.1")).is_ok());
        assert!(rate.check(ip("192.0.2.1")).is_err(), "mapped IPv4 is IPv4");
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let rate = IpRate::new(1_000);
        for n in 0..=255u8 {
            assert!(rate.check(IpAddr::from([198, 51, 100, n])).is_ok());
        }
        assert_eq!(rate.tracked(), 256);
        // One event out of a burst of 1,000 is back within a millisecond.
        std::thread::sleep(Duration::from_millis(5));
        rate.forget_idle();
        assert_eq!(rate.tracked(), 0);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3_600)), 3_600);
    }
}
