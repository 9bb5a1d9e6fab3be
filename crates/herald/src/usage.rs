//! Usage per app per UTC day, counted as Pusher bills: messages (one per message delivered
//! to each connection plus one per API publish), peak concurrent connections, webhook
//! calls. Counted by the metrics' atomics; every 10 s (and on shutdown) the differences are
//! added to `usage.sqlite3` in the data directory, beside the webhook outbox, so the figures
//! survive restarts. Without a data directory in use (no webhooks and no `data_dir`
//! configured: the development default) the same tables live in memory for this run only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::{AppMetrics, Metrics};

const EVERY: Duration = Duration::from_secs(10);
const FILE: &str = "usage.sqlite3";

/// One app's usage on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DayUsage {
    pub date: String,
    pub messages: u64,
    pub peak_connections: u64,
    pub webhook_calls: u64,
}

/// What was written for one app: the counters' totals at the last flush.
#[derive(Debug, Clone, Copy, Default)]
struct Written {
    messages: u64,
    webhook_calls: u64,
}

/// The usage database.
pub struct UsageStore {
    db: Mutex<Connection>,
    durable: bool,
    written: Mutex<HashMap<String, Written>>,
    /// Today's stored rows (as of the last flush), for scrapes that must not query SQLite.
    stored_today: Mutex<HashMap<String, DayUsage>>,
}

impl std::fmt::Debug for UsageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageStore")
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

impl UsageStore {
    /// Opens (or creates) `usage.sqlite3` in `dir`, creating `dir` if needed.
    pub fn open(dir: &Path) -> rusqlite::Result<Self> {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
        }
        let db = Connection::open(dir.join(FILE))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.busy_timeout(Duration::from_secs(5))?;
        Self::with(db, true)
    }

    /// A store that lives as long as this process and writes no file.
    pub fn in_memory() -> rusqlite::Result<Self> {
        Self::with(Connection::open_in_memory()?, false)
    }

    /// The store for a server: durable in `dir` when there is one, else in memory.
    pub fn for_dir(dir: Option<&Path>) -> rusqlite::Result<Self> {
        dir.map_or_else(Self::in_memory, Self::open)
    }

    fn with(db: Connection, durable: bool) -> rusqlite::Result<Self> {
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS usage (
                app_id TEXT NOT NULL, date TEXT NOT NULL,
                messages INTEGER NOT NULL DEFAULT 0,
                peak_connections INTEGER NOT NULL DEFAULT 0,
                webhook_calls INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (app_id, date))",
        )?;
        let store = Self {
            db: Mutex::new(db),
            durable,
            written: Mutex::default(),
            stored_today: Mutex::default(),
        };
        store.reload_today(&today())?;
        Ok(store)
    }

    /// True when the figures survive a restart.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Adds what the metrics counted since the last flush to today's rows.
    pub fn flush(&self, metrics: &Metrics) -> rusqlite::Result<()> {
        let date = today();
        {
            let mut written = lock(&self.written);
            let mut db = lock(&self.db);
            let tx = db.transaction()?;
            for (app_id, app) in metrics.apps() {
                let now = counted(app);
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
                        now.messages.saturating_sub(before.messages) as i64,
                        peak as i64,
                        now.webhook_calls.saturating_sub(before.webhook_calls) as i64
                    ],
                )?;
                written.insert(app_id.to_owned(), now);
            }
            tx.commit()?;
        }
        self.reload_today(&date)
    }

    fn reload_today(&self, date: &str) -> rusqlite::Result<()> {
        let rows = {
            let db = lock(&self.db);
            let mut statement = db.prepare(
                "SELECT app_id, date, messages, peak_connections, webhook_calls FROM usage
                 WHERE date = ?1",
            )?;
            let rows = statement.query_map(params![date], |r| Ok((r.get(0)?, day(r, 1)?)))?;
            rows.collect::<rusqlite::Result<HashMap<String, DayUsage>>>()?
        };
        *lock(&self.stored_today) = rows;
        Ok(())
    }

    /// Today's usage of `app_id` so far: what is stored plus what was counted since the last
    /// flush. Reads memory only (scrapes and the dashboard call it).
    pub fn today_of(&self, app_id: &str, app: &AppMetrics) -> DayUsage {
        let date = today();
        let stored = lock(&self.stored_today)
            .get(app_id)
            .filter(|row| row.date == date)
            .cloned()
            .unwrap_or_default();
        let before = lock(&self.written).get(app_id).copied().unwrap_or_default();
        let now = counted(app);
        DayUsage {
            messages: stored.messages + now.messages.saturating_sub(before.messages),
            peak_connections: stored.peak_connections.max(app.peak_so_far()),
            webhook_calls: stored.webhook_calls
                + now.webhook_calls.saturating_sub(before.webhook_calls),
            date,
        }
    }

    /// Days of `app_id` from `from` to `to` (`YYYY-MM-DD`, inclusive).
    pub fn days(&self, app_id: &str, from: &str, to: &str) -> rusqlite::Result<Vec<DayUsage>> {
        let db = lock(&self.db);
        let mut statement = db.prepare(
            "SELECT date, messages, peak_connections, webhook_calls FROM usage
             WHERE app_id = ?1 AND date >= ?2 AND date <= ?3 ORDER BY date",
        )?;
        let rows = statement.query_map(params![app_id, from, to], |r| day(r, 0))?;
        rows.collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn counted(app: &AppMetrics) -> Written {
    Written {
        messages: app.billable_messages(),
        webhook_calls: app.webhook_requests.get(),
    }
}

/// A `DayUsage` from the columns date, messages, peak, webhook calls starting at `first`.
fn day(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<DayUsage> {
    Ok(DayUsage {
        date: row.get(first)?,
        messages: row.get::<_, i64>(first + 1)? as u64,
        peak_connections: row.get::<_, i64>(first + 2)? as u64,
        webhook_calls: row.get::<_, i64>(first + 3)? as u64,
    })
}

/// Today's date in UTC.
pub fn today() -> String {
    utc_date(crate::webhooks::now_ms() / 1000)
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
        let today = today();
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
