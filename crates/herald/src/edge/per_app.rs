//! Each app's budgets on this node: HTTP API events per second, HTTP API reads per second,
//! and messages per UTC day. Apps without any of these limits never reach the map.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::apps::App;

const DAY: u64 = 86_400;

/// Why an app's request or message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limited {
    /// Over a per-second rate (`limit` names the setting); a retry after `retry_after` fits.
    Rate {
        limit: &'static str,
        per_second: u32,
        retry_after: Duration,
    },
    /// More at once than the per-second rate ever allows (a batch or a many-channel trigger).
    TooLarge { cost: u32, per_second: u32 },
    /// `max_messages_per_day` is used up until the next UTC midnight.
    DailyQuota { per_day: u64, retry_after: Duration },
}

impl Limited {
    /// The text the HTTP API or the error frame carries.
    pub fn message(&self) -> String {
        match self {
            Self::Rate {
                limit, per_second, ..
            } => format!("Rate limit exceeded: this app allows {per_second} per second ({limit})"),
            Self::TooLarge { cost, per_second } => format!(
                "This request publishes {cost} messages (events x channels); the app allows \
                 {per_second} per second (max_api_events_per_second)"
            ),
            Self::DailyQuota { per_day, .. } => format!(
                "Daily message quota exceeded: this app may publish {per_day} messages per UTC \
                 day (max_messages_per_day)"
            ),
        }
    }
}

/// The limits a gate was built for; a changed app gets a new gate (its day's count kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    events_per_second: u32,
    reads_per_second: u32,
    messages_per_day: u64,
}

impl Budget {
    fn of(app: &App) -> Self {
        Self {
            events_per_second: app.limits.max_api_events_per_second,
            reads_per_second: app.limits.max_api_reads_per_second,
            messages_per_day: app.limits.max_messages_per_day,
        }
    }

    fn is_unlimited(&self) -> bool {
        self.events_per_second == 0 && self.reads_per_second == 0 && self.messages_per_day == 0
    }
}

/// One app's limiters.
#[derive(Debug)]
struct Gate {
    budget: Budget,
    events: Option<DefaultDirectRateLimiter>,
    reads: Option<DefaultDirectRateLimiter>,
    day: Arc<Mutex<DayCount>>,
}

impl Gate {
    fn new(budget: Budget, day: Arc<Mutex<DayCount>>) -> Self {
        let limiter =
            |rate: u32| NonZeroU32::new(rate).map(|r| RateLimiter::direct(Quota::per_second(r)));
        Self {
            budget,
            events: limiter(budget.events_per_second),
            reads: limiter(budget.reads_per_second),
            day,
        }
    }
}

/// Messages counted in one UTC day.
#[derive(Debug, Default)]
pub struct DayCount {
    day: u64,
    used: u64,
}

impl DayCount {
    /// Counts `n` messages at `now` (Unix seconds) unless that goes over `per_day`.
    pub fn take(&mut self, n: u64, per_day: u64, now: u64) -> Result<(), Duration> {
        let today = now / DAY;
        if today != self.day {
            self.day = today;
            self.used = 0;
        }
        if per_day != 0 && self.used + n > per_day {
            return Err(Duration::from_secs((today + 1) * DAY - now));
        }
        self.used += n;
        Ok(())
    }
}

/// The gates of every app with a limit, by app id.
#[derive(Debug, Default)]
pub struct AppGates {
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    clock: DefaultClock,
}

impl AppGates {
    /// `cost` messages published through the HTTP API (events x channels): the per-second
    /// rate first, then the daily quota. All or nothing.
    pub fn api_events(&self, app: &App, cost: u32) -> Result<(), Limited> {
        let Some(gate) = self.gate(app) else {
            return Ok(());
        };
        if let (Some(limiter), Some(n)) = (&gate.events, NonZeroU32::new(cost)) {
            let per_second = gate.budget.events_per_second;
            match limiter.check_n(n) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    return Err(Limited::Rate {
                        limit: "max_api_events_per_second",
                        per_second,
                        retry_after: not_until.wait_time_from(self.clock.now()),
                    });
                }
                Err(_) => return Err(Limited::TooLarge { cost, per_second }),
            }
        }
        self.count(&gate, u64::from(cost))
    }

    /// One read request (channel lists, channel info, presence users).
    pub fn api_read(&self, app: &App) -> Result<(), Limited> {
        let Some(gate) = self.gate(app) else {
            return Ok(());
        };
        let Some(limiter) = &gate.reads else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| Limited::Rate {
            limit: "max_api_reads_per_second",
            per_second: gate.budget.reads_per_second,
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
    }

    /// One client event, against the daily quota only (its rate is per connection).
    pub fn client_event(&self, app: &App) -> Result<(), Limited> {
        match self.gate(app) {
            Some(gate) => self.count(&gate, 1),
            None => Ok(()),
        }
    }

    fn count(&self, gate: &Gate, n: u64) -> Result<(), Limited> {
        let per_day = gate.budget.messages_per_day;
        if per_day == 0 {
            return Ok(());
        }
        let mut day = gate.day.lock().unwrap_or_else(|p| p.into_inner());
        day.take(n, per_day, unix_now())
            .map_err(|retry_after| Limited::DailyQuota {
                per_day,
                retry_after,
            })
    }

    /// The app's gate, built or rebuilt for its current limits; `None` without limits.
    fn gate(&self, app: &App) -> Option<Arc<Gate>> {
        let budget = Budget::of(app);
        if budget.is_unlimited() {
            return None;
        }
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        match gates.get(&app.id) {
            Some(gate) if gate.budget == budget => Some(gate.clone()),
            existing => {
                let day = existing.map(|gate| gate.day.clone()).unwrap_or_default();
                let gate = Arc::new(Gate::new(budget, day));
                gates.insert(app.id.clone(), gate.clone());
                Some(gate)
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, events: u32, reads: u32, per_day: u64) -> App {
        let mut app = App::new(id, &format!("key-{id}"), "secret");
        app.limits.max_api_events_per_second = events;
        app.limits.max_api_reads_per_second = reads;
        app.limits.max_messages_per_day = per_day;
        app
    }

    #[test]
    fn the_day_resets_at_utc_midnight() {
        let mut day = DayCount::default();
        let evening = 19_000 * DAY + DAY - 60;
        assert!(day.take(2, 3, evening).is_ok());
        assert_eq!(day.take(2, 3, evening), Err(Duration::from_secs(60)));
        assert!(day.take(1, 3, evening).is_ok(), "a refusal counts nothing");
        assert!(day.take(1, 3, evening + 59).is_err());
        assert!(day.take(3, 3, evening + 60).is_ok(), "midnight: a new day");
        assert!(day.take(1, 0, evening + 60).is_ok(), "0 is unlimited");
    }

    #[test]
    fn api_events_cost_per_message_and_other_apps_are_unaffected() {
        let gates = AppGates::default();
        let limited = app("1", 3, 0, 0);
        assert!(gates.api_events(&limited, 2).is_ok());
        match gates.api_events(&limited, 2) {
            Err(Limited::Rate { retry_after, .. }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
            }
            other => panic!("expected a rate refusal, got {other:?}"),
        }
        assert_eq!(
            gates.api_events(&limited, 4),
            Err(Limited::TooLarge {
                cost: 4,
                per_second: 3
            })
        );
        assert!(gates.api_events(&app("2", 3, 0, 0), 3).is_ok());
        assert!(gates.api_read(&limited).is_ok(), "reads are not limited");
    }

    #[test]
    fn reads_have_their_own_rate() {
        let gates = AppGates::default();
        let limited = app("1", 0, 1, 0);
        assert!(gates.api_read(&limited).is_ok());
        assert!(matches!(
            gates.api_read(&limited),
            Err(Limited::Rate {
                limit: "max_api_reads_per_second",
                ..
            })
        ));
        assert!(gates.api_events(&limited, 100).is_ok());
    }

    #[test]
    fn the_daily_quota_counts_api_messages_and_client_events_together() {
        let gates = AppGates::default();
        let limited = app("1", 0, 0, 3);
        assert!(gates.api_events(&limited, 2).is_ok());
        assert!(gates.client_event(&limited).is_ok());
        let refused = gates.client_event(&limited).expect_err("quota used up");
        let Limited::DailyQuota { retry_after, .. } = refused else {
            panic!("{refused:?}");
        };
        assert!(retry_after <= Duration::from_secs(DAY));
        assert!(gates.api_events(&app("2", 0, 0, 3), 3).is_ok());
    }

    #[test]
    fn changed_limits_take_effect_and_keep_the_days_count() {
        let gates = AppGates::default();
        assert!(gates.api_events(&app("1", 0, 0, 2), 2).is_ok());
        assert!(gates.api_events(&app("1", 100, 0, 3), 1).is_ok());
        assert!(gates.api_events(&app("1", 100, 0, 3), 1).is_err());
        assert!(gates.api_events(&app("1", 0, 0, 0), 1_000).is_ok());
        assert_eq!(
            gates.gates.lock().expect("lock").len(),
            1,
            "unlimited apps are not tracked"
        );
    }
}
