//! What to do when `accept` fails: go on at once after a connection's own error, back off
//! (10 ms doubling to 1 s) while the process is out of descriptors or memory, and log once
//! per such episode rather than once per attempt.

use std::io::{self, ErrorKind};
use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// The state of the current episode of failed accepts.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    delay: Option<Duration>,
    errors: u64,
}

/// The answer to one failed accept.
#[derive(Debug, PartialEq, Eq)]
pub enum Retry {
    /// The error belonged to one connection (it was reset before we took it).
    Now,
    /// The process lacks a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM...): wait `delay`.
    /// `first` is true for the episode's first error, the one worth logging.
    After { delay: Duration, first: bool },
}

impl AcceptBackoff {
    pub fn on_error(&mut self, error: &io::Error) -> Retry {
        if is_connection_error(error) {
            return Retry::Now;
        }
        self.errors += 1;
        let delay = next_delay(self.delay);
        self.delay = Some(delay);
        Retry::After {
            delay,
            first: self.errors == 1,
        }
    }

    /// A connection was accepted: ends the episode, returning how many accepts failed in it.
    pub fn on_success(&mut self) -> Option<u64> {
        self.delay = None;
        (self.errors > 0).then(|| std::mem::take(&mut self.errors))
    }
}

/// 10 ms, then doubling, at most 1 s.
pub fn next_delay(previous: Option<Duration>) -> Duration {
    previous.map_or(FIRST_DELAY, |delay| (delay * 2).min(MAX_DELAY))
}

/// Errors about the one connection being accepted, not about the process.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
            | ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_10_ms_up_to_one_second() {
        let mut delays = Vec::new();
        let mut delay = None;
        for _ in 0..10 {
            delay = Some(next_delay(delay));
            delays.extend(delay.map(|d| d.as_millis()));
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn too_many_open_files_backs_off_and_logs_once_per_episode() {
        const EMFILE: i32 = 24;
        const ENFILE: i32 = 23;
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(EMFILE);
        assert_eq!(
            backoff.on_error(&emfile),
            Retry::After {
                delay: FIRST_DELAY,
                first: true
            }
        );
        for _ in 0..20 {
            assert!(matches!(
                backoff.on_error(&io::Error::from_raw_os_error(ENFILE)),
                Retry::After { first: false, .. }
            ));
        }
        assert_eq!(
            backoff.on_error(&emfile),
            Retry::After {
                delay: MAX_DELAY,
                first: false
            }
        );
        assert_eq!(backoff.on_success(), Some(22));
        assert_eq!(backoff.on_success(), None);
        assert_eq!(
            backoff.on_error(&emfile),
            Retry::After {
                delay: FIRST_DELAY,
                first: true
            },
            "a new episode starts over"
        );
    }

    #[test]
    fn a_reset_connection_is_skipped_without_waiting() {
        let mut backoff = AcceptBackoff::default();
        let reset = io::Error::from(ErrorKind::ConnectionAborted);
        assert_eq!(backoff.on_error(&reset), Retry::Now);
        assert_eq!(backoff.on_success(), None);
    }
}
