//! What the log says about webhook targets: URLs without credentials or query ([`redact`]),
//! one line when a target starts failing and one when it has stayed healthy for
//! [`RECOVERED_AFTER`], and in between a summary at most once a minute, however many
//! attempts fail: a target that flips between failing and succeeding stays "failing".

use std::collections::HashMap;

use tokio::time::Instant;

use super::LOG_EVERY;

/// How long a failing target must succeed without a failure before it counts as recovered.
const RECOVERED_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// `url` as it may be logged: scheme, host, port and path; user, password, query and
/// fragment (where tokens live) are left out.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => {
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            let host = url.host_str().unwrap_or_default();
            format!("{}://{host}{port}{}", url.scheme(), url.path())
        }
        Err(_) => "(not a valid URL)".into(),
    }
}

/// A line to log about one target.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Report {
    /// The first failure after success (or after start).
    Failing { error: String },
    /// Failures since the last report, at most once per [`LOG_EVERY`].
    Summary {
        attempts: u64,
        dead: u64,
        last_error: String,
    },
    /// A success after failures.
    Recovered { failed_attempts: u64 },
}

/// A failing target's tally.
struct Failing {
    /// Failed attempts since the target started failing.
    total: u64,
    /// Failed attempts and new dead letters since the last report.
    attempts: u64,
    dead: u64,
    last_error: String,
    reported: Instant,
    /// Succeeding since then, with no failure.
    healthy_since: Option<Instant>,
}

/// The failing targets, keyed by `(app id, url)`; a target that succeeds is forgotten.
#[derive(Default)]
pub(super) struct TargetHealth {
    failing: HashMap<(String, String), Failing>,
}

impl TargetHealth {
    /// An attempt failed with `error`; `dead` of its events became dead letters.
    pub(super) fn failed(
        &mut self,
        app_id: &str,
        url: &str,
        error: &str,
        dead: u64,
        now: Instant,
    ) -> Option<Report> {
        let key = (app_id.to_owned(), url.to_owned());
        if let Some(failing) = self.failing.get_mut(&key) {
            failing.healthy_since = None;
            failing.total += 1;
            failing.attempts += 1;
            failing.dead += dead;
            error.clone_into(&mut failing.last_error);
            return None;
        }
        self.failing.insert(
            key,
            Failing {
                total: 1,
                attempts: 0,
                dead,
                last_error: error.to_owned(),
                reported: now,
                healthy_since: None,
            },
        );
        Some(Report::Failing {
            error: error.to_owned(),
        })
    }

    /// An attempt succeeded: a failing target starts its way to recovery (reported by
    /// [`TargetHealth::summaries`] once it lasted).
    pub(super) fn succeeded(&mut self, app_id: &str, url: &str, now: Instant) {
        if let Some(failing) = self.failing.get_mut(&(app_id.to_owned(), url.to_owned())) {
            failing.healthy_since.get_or_insert(now);
        }
    }

    /// Summaries of the targets whose last report is at least [`LOG_EVERY`] old and that
    /// failed (or lost events) since.
    pub(super) fn summaries(&mut self, now: Instant) -> Vec<((String, String), Report)> {
        let mut due = Vec::new();
        let recovered: Vec<(String, String)> = self
            .failing
            .iter()
            .filter(|(_, f)| f.healthy_since.is_some_and(|t| now - t >= RECOVERED_AFTER))
            .map(|(key, _)| key.clone())
            .collect();
        for key in recovered {
            if let Some(failing) = self.failing.remove(&key) {
                let failed_attempts = failing.total;
                due.push((key, Report::Recovered { failed_attempts }));
            }
        }
        for (key, failing) in &mut self.failing {
            if now - failing.reported < LOG_EVERY || failing.attempts + failing.dead == 0 {
                continue;
            }
            due.push((
                key.clone(),
                Report::Summary {
                    attempts: std::mem::take(&mut failing.attempts),
                    dead: std::mem::take(&mut failing.dead),
                    last_error: failing.last_error.clone(),
                },
            ));
            failing.reported = now;
        }
        due
    }
}

/// Writes `report` about the target `url` of `app_id`, with the URL redacted.
pub(super) fn log(app_id: &str, url: &str, report: &Report) {
    let url = redact(url);
    match report {
        Report::Failing { error } => tracing::warn!(
            app_id,
            %url,
            %error,
            "webhook target failing; retrying with backoff (failures summarised once a minute)"
        ),
        Report::Summary {
            attempts,
            dead,
            last_error,
        } => tracing::warn!(
            app_id,
            %url,
            failed_attempts = attempts,
            dead_lettered = dead,
            %last_error,
            "webhook target still failing: {attempts} attempts failed in the last minute"
        ),
        Report::Recovered { failed_attempts } => tracing::info!(
            app_id,
            %url,
            failed_attempts,
            "webhook target recovered"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn redact_keeps_scheme_host_port_and_path_only() {
        assert_eq!(
            redact("http://user:PASS@hooks.example:8080/pusher/hook?token=SECRET#frag"),
            "http://hooks.example:8080/pusher/hook"
        );
        assert_eq!(redact("https://hooks.example/a"), "https://hooks.example/a");
        assert_eq!(redact("http://[::1]:9/x"), "http://[::1]:9/x");
        assert_eq!(redact("not a url with pass@word"), "(not a valid URL)");
    }

    #[test]
    fn one_line_when_failing_starts_a_summary_a_minute_and_one_on_recovery() {
        let start = Instant::now();
        let mut health = TargetHealth::default();
        let fail = |h: &mut TargetHealth, at: u64, dead: u64| {
            h.failed(
                "1",
                "http://x/h",
                "HTTP 500",
                dead,
                start + Duration::from_secs(at),
            )
        };
        assert_eq!(
            fail(&mut health, 0, 0),
            Some(Report::Failing {
                error: "HTTP 500".into()
            })
        );
        for at in 1..=59 {
            assert_eq!(fail(&mut health, at, u64::from(at == 30)), None);
        }
        assert!(health.summaries(start + Duration::from_secs(59)).is_empty());
        let summaries = health.summaries(start + Duration::from_secs(60));
        assert_eq!(
            summaries[0].1,
            Report::Summary {
                attempts: 59,
                dead: 1,
                last_error: "HTTP 500".into()
            }
        );
        assert!(
            health
                .summaries(start + Duration::from_secs(200))
                .is_empty(),
            "nothing failed since"
        );
        // Flapping: a success, then a failure within RECOVERED_AFTER, is still failing.
        health.succeeded("1", "http://x/h", start + Duration::from_secs(201));
        assert_eq!(fail(&mut health, 205, 0), None, "no new 'failing' line");
        health.succeeded("1", "http://x/h", start + Duration::from_secs(206));
        assert_eq!(
            health.summaries(start + Duration::from_secs(210)),
            vec![(
                ("1".to_owned(), "http://x/h".to_owned()),
                Report::Summary {
                    attempts: 1,
                    dead: 0,
                    last_error: "HTTP 500".into()
                }
            )],
            "still failing (the flap is in the summary), not recovered yet"
        );
        let recovered = health.summaries(start + Duration::from_secs(216));
        assert_eq!(
            recovered[0].1,
            Report::Recovered {
                failed_attempts: 61
            }
        );
        health.succeeded("1", "http://x/h", start + Duration::from_secs(217));
        assert!(
            health
                .summaries(start + Duration::from_secs(300))
                .is_empty()
        );
        assert!(fail(&mut health, 300, 0).is_some(), "failing again is news");
    }
}
