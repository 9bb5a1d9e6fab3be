//! Usage per app per UTC day, counted as Pusher bills: messages (one per message delivered
//! to each connection plus one per API publish), peak concurrent connections, webhook
//! calls. Counted by the metrics' atomics; every 10 s (and on shutdown) the differences are
//! added to `usage.sqlite3` next to the webhook outbox, so the figures survive restarts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

const EVERY: Duration = Duration::from_secs(10);

/// One app's usage on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayUsage {
    pub date: String,
    pub messages: u64,
    pub peak_connections: u64,
    pub webhook_calls: u64,
}

/// The usage database.
pub struct UsageStore {
    db: Mutex<Connection>,
    /// Totals already written, per app: (messages, webhook calls).
    written: Mutex<HashMap<String, (u64, u64)>>,
}

impl UsageStore {
    pub fn open(dir: &Path) -> rusqlite::Result<Self> {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
        }
        let db = Connection::open(dir.join("usage.sqlite3"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS usage (
                app_id TEXT NOT NULL, date TEXT NOT NULL,
                messages INTEGER NOT NULL DEFAULT 0,
                peak_connections INTEGER NOT NULL DEFAULT 0,
                webhook_calls INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (app_id, date))",
        )?;
        Ok(Self {
            db: Mutex::new(db),
            written: Mutex::default(),
        })
    }

    /// Adds what the metrics counted since the last flush to today's rows.
    pub fn flush(&self, metrics: &Metrics) -> rusqlite::Result<()> {
        let date = utc_date(crate::webhooks::now_ms() / 1000);
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let tx = db.transaction()?;
        for (app_id, app) in metrics.apps() {
            let now = (app.billable_messages(), app.webhook_requests.get());
            let before = written.get(app_id).copied().unwrap_or_default();
            let peak = app.take_peak();
            tx.execute(
                "INSERT INTO usage (app_id, date, messages, peak_connections, webhook_calls)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (app_id, date) DO UPDATE SET
                   messages = messages + excluded.messages,
                   peak_connections = MAX(peak_connections, excluded.peak_connections),
                   webhook_calls = webhook_calls + excluded.webhook_calls",
                params![
                    app_id,
                    date,
                    now.0.saturating_sub(before.0) as i64,
                    peak as i64,
                    now.1.saturating_sub(before.1) as i64
                ],
            )?;
            written.insert(app_id.to_owned(), now);
        }
        tx.commit()
    }

    /// Days of `app_id` from `from` to `to` (`YYYY-MM-DD`, inclusive).
    pub fn days(&self, app_id: &str, from: &str, to: &str) -> rusqlite::Result<Vec<DayUsage>> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let mut statement = db.prepare(
            "SELECT date, messages, peak_connections, webhook_calls FROM usage
             WHERE app_id = ?1 AND date >= ?2 AND date <= ?3 ORDER BY date",
        )?;
        let rows = statement.query_map(params![app_id, from, to], |r| {
            Ok(DayUsage {
                date: r.get(0)?,
                messages: r.get::<_, i64>(1)? as u64,
                peak_connections: r.get::<_, i64>(2)? as u64,
                webhook_calls: r.get::<_, i64>(3)? as u64,
            })
        })?;
        rows.collect()
    }
}

/// Flushes every [`EVERY`] until shutdown, then once more.
pub async fn run(store: Arc<UsageStore>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        let stop = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = ticks.tick() => false,
        };
        let (store, metrics) = (store.clone(), metrics.clone());
        let flushed = tokio::task::spawn_blocking(move || store.flush(&metrics)).await;
        if let Ok(Err(e)) = flushed {
            tracing::error!(error = %e, "cannot write usage");
        }
        if stop {
            return;
        }
    }
}

/// `YYYY-MM-DD` of a Unix time, in UTC (Howard Hinnant's civil-from-days).
pub fn utc_date(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A valid `YYYY-MM-DD`.
pub fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_767_225_599), "2025-12-31");
        assert!(is_date("2026-01-31") && !is_date("2026-1-31") && !is_date("2026-01-3x"));
    }

    #[test]
    fn flushes_add_differences_and_keep_the_peak() {
        let dir = tempfile::tempdir().expect("dir");
        let metrics = Metrics::new(&["1"]);
        let store = UsageStore::open(dir.path()).expect("open");
        let app = metrics.app("1");
        app.delivered(crate::metrics::MessageKind::ApiEvent, 3, 10);
        app.received(crate::metrics::MessageKind::ApiEvent, 10);
        app.connections.set(5);
        app.note_peak(5);
        store.flush(&metrics).expect("flush");
        app.delivered(crate::metrics::MessageKind::ClientEvent, 2, 10);
        app.webhook_requests.inc();
        app.note_peak(2);
        store.flush(&metrics).expect("flush");
        let today = utc_date(crate::webhooks::now_ms() / 1000);
        let days = store.days("1", "2000-01-01", "2999-12-31").expect("days");
        assert_eq!(
            days,
            [DayUsage {
                date: today,
                messages: 6,
                peak_connections: 5,
                webhook_calls: 1
            }]
        );
    }
}
