//! The Pusher error and close codes (spec §1.4) and what each asks the client to do.

/// A numeric Pusher error code, sent in `pusher:error` frames and as a WebSocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 4001: no app with that key.
    AppNotFound,
    /// 4003: the app is disabled.
    AppDisabled,
    /// 4004: the app is over its concurrent-connection quota.
    OverConnectionQuota,
    /// 4005: the WebSocket path is not `/app/{key}`.
    PathNotFound,
    /// 4007: the `protocol` query parameter is not a supported version.
    UnsupportedProtocol,
    /// 4009: the connection is not authorized (failed sign-in, terminated user).
    Unauthorized,
    /// 4100: the server cannot keep up with this connection (outbox overflow) or is full.
    OverCapacity,
    /// 4200: reconnect now (graceful shutdown).
    ReconnectImmediately,
    /// 4201: the client did not answer a liveness probe.
    PongNotReceived,
    /// 4301: client event over the per-connection rate.
    ClientEventRateLimit,
    /// 4301 as a close code: this client IP opens WebSockets faster than the server allows.
    /// pusher-js treats codes from 4300 as "refused" and stops reconnecting.
    ConnectionRateLimit,
    /// 4302: watchlist longer than allowed; the first ids were kept.
    WatchlistLimit,
}

impl ErrorCode {
    /// The wire number, also used as the close code.
    pub const fn code(self) -> u16 {
        match self {
            Self::AppNotFound => 4001,
            Self::AppDisabled => 4003,
            Self::OverConnectionQuota => 4004,
            Self::PathNotFound => 4005,
            Self::UnsupportedProtocol => 4007,
            Self::Unauthorized => 4009,
            Self::OverCapacity => 4100,
            Self::ReconnectImmediately => 4200,
            Self::PongNotReceived => 4201,
            Self::ClientEventRateLimit | Self::ConnectionRateLimit => 4301,
            Self::WatchlistLimit => 4302,
        }
    }

    /// The human text sent beside the code.
    pub const fn message(self) -> &'static str {
        match self {
            Self::AppNotFound => "Application does not exist",
            Self::AppDisabled => "Application disabled",
            Self::OverConnectionQuota => "Application is over connection quota",
            Self::PathNotFound => "Path not found",
            Self::UnsupportedProtocol => "Unsupported protocol version",
            Self::Unauthorized => "Connection not authorized",
            Self::OverCapacity => "Over capacity",
            Self::ReconnectImmediately => "Server is shutting down, reconnect",
            Self::PongNotReceived => "Pong reply not received",
            Self::ClientEventRateLimit => "Client event rejected due to rate limit",
            Self::ConnectionRateLimit => "Too many new connections from this address; try later",
            Self::WatchlistLimit => {
                "Watchlist limit exceeded. Only the first 100 user IDs are accepted."
            }
        }
    }

    /// What pusher-js does when the connection closes with this code (spec §1.4).
    pub const fn reconnect(self) -> Reconnect {
        match self.code() {
            4000..=4099 => Reconnect::Never,
            4100..=4199 => Reconnect::AfterBackoff,
            4200..=4299 => Reconnect::Immediately,
            _ => Reconnect::Never,
        }
    }
}

/// A client's reaction to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    Never,
    AfterBackoff,
    Immediately,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_map_to_client_reactions() {
        assert_eq!(ErrorCode::AppNotFound.reconnect(), Reconnect::Never);
        assert_eq!(ErrorCode::OverCapacity.reconnect(), Reconnect::AfterBackoff);
        assert_eq!(
            ErrorCode::ReconnectImmediately.reconnect(),
            Reconnect::Immediately
        );
        assert_eq!(ErrorCode::PongNotReceived.code(), 4201);
    }
}
