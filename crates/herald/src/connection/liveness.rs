//! When a connection is checked: silence for `activity_timeout` sends a probe, silence for
//! `pong_timeout` more closes with 4201 (spec §2.3); with authorized connections on, one
//! check at the deadline closes an unauthorized socket with 4009 (spec §5.5). Receiving only
//! records a time, so the hot path does no timer work.

use std::time::Duration;

use herald_protocol::ErrorCode;
use tokio::time::Instant;

use super::session::Session;
use crate::node::Node;

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
    pub(super) fn new(node: &Node, authorized_connections_timeout: u64) -> Self {
        let now = Instant::now();
        Self {
            activity: Duration::from_secs(node.server.activity_timeout),
            pong_timeout: Duration::from_secs(node.server.pong_timeout),
            last_received: now,
            probed_at: None,
            auth_deadline: (authorized_connections_timeout > 0)
                .then(|| now + Duration::from_secs(authorized_connections_timeout)),
        }
    }

    /// Any frame from the client (pongs included) proves it is alive.
    pub(super) fn received(&mut self) {
        self.last_received = Instant::now();
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

    pub(super) fn check(&mut self, session: &Session) -> Check {
        let now = Instant::now();
        if self.auth_deadline.is_some_and(|deadline| now >= deadline) {
            self.auth_deadline = None;
            if !session.is_authorized() {
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
