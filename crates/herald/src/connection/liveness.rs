//! When a connection is checked: silence for `activity_timeout` sends a probe, silence for
//! `pong_timeout` more closes with 4201 (spec §2.3); with authorized connections on, one
//! check at the deadline closes an unauthorized socket with 4009 (spec §5.5). Receiving only
//! records a time, so the hot path does no timer work.

use std::time::Duration;

use herald_protocol::ErrorCode;
use tokio::time::Instant;

use crate::config::ServerConfig;

/// What the timer found.
pub(super) enum Check {
    Fine,
    /// Send a `pusher:ping`.
    Probe,
    Close(ErrorCode, &'static str),
}

pub(super) struct Liveness {
    activity: Duration,
    pong_timeout: Duration,
    last_received: Instant,
    /// When a probe was sent and not yet answered.
    probed_at: Option<Instant>,
    auth_deadline: Option<Instant>,
}

impl Liveness {
    /// Time is passed in (as `RateWindow` does) so the rules are tested without a clock.
    pub(super) fn new(
        server: &ServerConfig,
        authorized_connections_timeout: u64,
        now: Instant,
    ) -> Self {
        Self {
            activity: Duration::from_secs(server.activity_timeout),
            pong_timeout: Duration::from_secs(server.pong_timeout),
            last_received: now,
            probed_at: None,
            auth_deadline: (authorized_connections_timeout > 0)
                .then(|| now + Duration::from_secs(authorized_connections_timeout)),
        }
    }

    /// Any frame from the client (pongs included) proves it is alive.
    pub(super) fn received(&mut self, now: Instant) {
        self.last_received = now;
        self.probed_at = None;
    }

    /// The next instant worth checking.
    pub(super) fn next_check(&self) -> Instant {
        let liveness = match self.probed_at {
            Some(probed) => probed + self.pong_timeout,
            None => self.last_received + self.activity,
        };
        self.auth_deadline
            .map_or(liveness, |auth| auth.min(liveness))
    }

    pub(super) fn check(&mut self, is_authorized: bool, now: Instant) -> Check {
        if self.auth_deadline.is_some_and(|deadline| now >= deadline) {
            self.auth_deadline = None;
            if !is_authorized {
                return Check::Close(
                    ErrorCode::Unauthorized,
                    "Connection not authorized within timeout.",
                );
            }
        }
        match self.probed_at {
            Some(probed) if now >= probed + self.pong_timeout => {
                let code = ErrorCode::PongNotReceived;
                Check::Close(code, code.message())
            }
            None if now >= self.last_received + self.activity => {
                self.probed_at = Some(now);
                Check::Probe
            }
            _ => Check::Fine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerConfig {
        ServerConfig {
            activity_timeout: 120,
            pong_timeout: 30,
            ..ServerConfig::default()
        }
    }

    fn is_close(check: &Check, code: ErrorCode) -> bool {
        matches!(check, Check::Close(c, _) if *c == code)
    }

    #[test]
    fn silence_probes_then_closes_with_4201_unless_anything_arrives() {
        let start = Instant::now();
        let secs = |s| start + Duration::from_secs(s);
        let mut liveness = Liveness::new(&server(), 0, start);
        assert_eq!(liveness.next_check(), secs(120));
        assert!(matches!(liveness.check(true, secs(119)), Check::Fine));
        assert!(matches!(liveness.check(true, secs(120)), Check::Probe));
        assert_eq!(
            liveness.next_check(),
            secs(150),
            "pong_timeout after the probe"
        );
        assert!(matches!(liveness.check(true, secs(149)), Check::Fine));
        liveness.received(secs(149));
        assert_eq!(
            liveness.next_check(),
            secs(269),
            "an answer restarts the activity wait"
        );
        assert!(matches!(liveness.check(true, secs(269)), Check::Probe));
        assert!(is_close(
            &liveness.check(true, secs(299)),
            ErrorCode::PongNotReceived
        ));
    }

    #[test]
    fn unauthorized_connections_close_with_4009_at_the_deadline_only() {
        let start = Instant::now();
        let mut liveness = Liveness::new(&server(), 10, start);
        assert_eq!(liveness.next_check(), start + Duration::from_secs(10));
        let at = start + Duration::from_secs(10);
        assert!(is_close(
            &liveness.check(false, at),
            ErrorCode::Unauthorized
        ));
        let mut authorized = Liveness::new(&server(), 10, start);
        assert!(matches!(authorized.check(true, at), Check::Fine));
        assert_eq!(
            authorized.next_check(),
            start + Duration::from_secs(120),
            "checked once; then only liveness"
        );
    }
}
