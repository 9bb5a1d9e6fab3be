//! The durable webhook outbox in SQLite: every event waits here until its receiver answered
//! 2xx, then it is deleted; events that ran out of retries stay as dead letters.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use herald_protocol::webhook::WebhookEvent;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

/// One stored webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: String,
    pub app_id: String,
    pub url: String,
    /// The event JSON, `id` included.
    pub event: String,
    pub created_ms: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// The outbox database.
pub struct Store {
    db: Connection,
}

/// A new event to store; `not_before_ms` delays its first attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: String,
    pub app_id: String,
    pub url: String,
    /// The event JSON, `id` included.
    pub event: String,
    /// When the change happened (the `time_ms` receivers see).
    pub created_ms: u64,
    pub not_before_ms: u64,
}

impl NewEvent {
    /// `event` for the target `url` of `app_id` with a fresh unique id.
    pub fn new(
        app_id: &str,
        url: &str,
        event: &WebhookEvent,
        created_ms: u64,
        not_before_ms: u64,
    ) -> Self {
        let id = format!("{:032x}", rand::random::<u128>());
        Self {
            event: event.to_json_with_id(&id),
            id,
            app_id: app_id.into(),
            url: url.into(),
            created_ms,
            not_before_ms,
        }
    }
}

/// What [`Store::insert`] did besides storing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Events refused because their app already had `max_pending` waiting.
    pub refused: usize,
    /// Cancellations that removed a stored removal (the rest stored their addition).
    pub cancelled: usize,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_events (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS webhook_events_due ON webhook_events (dead, next_attempt_ms);
CREATE INDEX IF NOT EXISTS webhook_events_app ON webhook_events (app_id, dead);
";

const COLUMNS: &str = "id, app_id, url, event, created_ms, attempts, last_error";

/// Seconds before retry `attempt` (1-based): 1 s doubling, capped at 60 s.
pub fn backoff_ms(attempt: u32) -> u64 {
    let exponent = attempt.saturating_sub(1).min(6);
    (1_000u64 << exponent).min(60_000)
}

impl Store {
    /// A write transaction that takes the write lock at once, so another process holding it
    /// (the CLI's replay) is waited for (busy timeout); a deferred transaction that read
    /// first would fail at once with "database is locked" instead.
    fn write(&mut self) -> rusqlite::Result<Transaction<'_>> {
        self.db
            .transaction_with_behavior(TransactionBehavior::Immediate)
    }

    /// The database file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("webhooks.sqlite3")
    }

    /// Opens (creating) `webhooks.sqlite3` in `dir`.
    pub fn open(dir: &Path) -> rusqlite::Result<Self> {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
        }
        let db = Connection::open(Self::path(dir))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Self { db })
    }

    /// Opens the outbox in `dir` if there is one; `None` when nothing was ever stored there
    /// (and nothing is created).
    pub fn open_existing(dir: &Path) -> rusqlite::Result<Option<Self>> {
        if !Self::path(dir).exists() {
            return Ok(None);
        }
        Self::open(dir).map(Some)
    }

    /// In one transaction: deletes each cancelled removal (storing its addition instead
    /// when the removal is gone already), then stores `events`, refusing those of an app
    /// that already has `max_pending` events waiting.
    pub fn insert(
        &mut self,
        events: Vec<NewEvent>,
        cancels: Vec<(String, NewEvent)>,
        max_pending: usize,
    ) -> rusqlite::Result<Inserted> {
        let tx = self.write()?;
        let mut done = Inserted::default();
        let mut events = events;
        {
            let mut delete =
                tx.prepare_cached("DELETE FROM webhook_events WHERE id = ?1 AND dead = 0")?;
            for (removal, addition) in cancels {
                // The removal may be in this very batch, not yet in the table.
                if let Some(at) = events.iter().position(|e| e.id == removal) {
                    events.remove(at);
                    done.cancelled += 1;
                } else if delete.execute([removal])? > 0 {
                    done.cancelled += 1;
                } else {
                    events.push(addition);
                }
            }
            let mut count = tx.prepare_cached(
                "SELECT COUNT(*) FROM webhook_events WHERE app_id = ?1 AND dead = 0",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO webhook_events (id, app_id, url, event, created_ms, next_attempt_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut pending: HashMap<String, usize> = HashMap::new();
            for e in &events {
                let waiting = match pending.get_mut(&e.app_id) {
                    Some(waiting) => waiting,
                    None => {
                        let n: i64 = count.query_row([&e.app_id], |r| r.get(0))?;
                        pending.entry(e.app_id.clone()).or_insert(n as usize)
                    }
                };
                if *waiting >= max_pending {
                    done.refused += 1;
                    continue;
                }
                *waiting += insert.execute(params![
                    e.id,
                    e.app_id,
                    e.url,
                    e.event,
                    e.created_ms as i64,
                    e.not_before_ms as i64
                ])?;
            }
        }
        tx.commit()?;
        Ok(done)
    }

    /// Pending events due at `now_ms`, oldest first.
    pub fn due(&self, now_ms: u64, limit: usize) -> rusqlite::Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM webhook_events WHERE dead = 0 AND next_attempt_ms <= ?1
             ORDER BY next_attempt_ms, created_ms LIMIT ?2"
        );
        let mut query = self.db.prepare_cached(&sql)?;
        let rows = query.query_map(params![now_ms as i64, limit as i64], row_to_event)?;
        rows.collect()
    }

    /// The receiver answered 2xx: forget the events.
    pub fn delivered(&mut self, ids: &[String]) -> rusqlite::Result<()> {
        let tx = self.write()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM webhook_events WHERE id = ?1")?;
            for id in ids {
                delete.execute([id])?;
            }
        }
        tx.commit()
    }

    /// A failed attempt: schedule the next one, or make the event a dead letter once it has
    /// been retried for `retry_for_ms`. Returns how many became dead.
    pub fn failed(
        &mut self,
        ids: &[String],
        error: &str,
        now_ms: u64,
        retry_for_ms: u64,
    ) -> rusqlite::Result<usize> {
        let tx = self.write()?;
        let mut dead = 0;
        {
            let mut read =
                tx.prepare_cached("SELECT attempts, created_ms FROM webhook_events WHERE id = ?1")?;
            let mut update = tx.prepare_cached(
                "UPDATE webhook_events SET attempts = ?2, next_attempt_ms = ?3, dead = ?4, last_error = ?5 WHERE id = ?1",
            )?;
            for id in ids {
                let Ok((attempts, created_ms)) =
                    read.query_row([id], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?)))
                else {
                    continue;
                };
                let attempts = attempts + 1;
                let is_dead = now_ms.saturating_sub(created_ms as u64) >= retry_for_ms;
                // A dead letter is never due; its next_attempt_ms records when it died,
                // which is what its retention counts from.
                let next = if is_dead {
                    now_ms
                } else {
                    now_ms + backoff_ms(attempts)
                };
                dead += usize::from(is_dead);
                update.execute(params![id, attempts, next as i64, is_dead, error])?;
            }
        }
        tx.commit()?;
        Ok(dead)
    }

    /// Dead letters, oldest first.
    pub fn dead_letters(&self) -> rusqlite::Result<Vec<StoredEvent>> {
        let sql =
            format!("SELECT {COLUMNS} FROM webhook_events WHERE dead = 1 ORDER BY created_ms");
        let mut query = self.db.prepare(&sql)?;
        let rows = query.query_map([], row_to_event)?;
        rows.collect()
    }

    /// Deletes dead letters that died before `died_before_ms`, then the oldest of any app
    /// holding more than `max_per_app`. Returns how many went.
    pub fn prune_dead_letters(
        &mut self,
        died_before_ms: u64,
        max_per_app: usize,
    ) -> rusqlite::Result<usize> {
        let tx = self.write()?;
        let mut deleted = tx.execute(
            "DELETE FROM webhook_events WHERE dead = 1 AND next_attempt_ms < ?1",
            [died_before_ms as i64],
        )?;
        {
            let mut crowded = tx.prepare_cached(
                "SELECT app_id FROM webhook_events WHERE dead = 1 GROUP BY app_id HAVING COUNT(*) > ?1",
            )?;
            let apps: Vec<String> = crowded
                .query_map([max_per_app as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut trim = tx.prepare_cached(
                "DELETE FROM webhook_events WHERE id IN (SELECT id FROM webhook_events
                 WHERE app_id = ?1 AND dead = 1 ORDER BY next_attempt_ms DESC LIMIT -1 OFFSET ?2)",
            )?;
            for app in apps {
                deleted += trim.execute(params![app, max_per_app as i64])?;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Events of `app_id` waiting for delivery (dead letters not included).
    pub fn pending(&self, app_id: &str) -> rusqlite::Result<usize> {
        let n: i64 = self.db.query_row(
            "SELECT COUNT(*) FROM webhook_events WHERE app_id = ?1 AND dead = 0",
            [app_id],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    /// Per app: events waiting for delivery and the creation time of the oldest.
    pub fn pending_summary(&self) -> rusqlite::Result<Vec<(String, usize, u64)>> {
        let mut statement = self.db.prepare_cached(
            "SELECT app_id, COUNT(*), MIN(created_ms) FROM webhook_events WHERE dead = 0 GROUP BY app_id",
        )?;
        let rows = statement.query_map([], |r| {
            let count: i64 = r.get(1)?;
            let oldest: i64 = r.get(2)?;
            Ok((r.get(0)?, count as usize, oldest as u64))
        })?;
        rows.collect()
    }

    /// Puts dead letters back in the queue with a fresh retry window; `None` replays all.
    /// Returns how many were requeued.
    pub fn replay(&mut self, ids: Option<&[String]>, now_ms: u64) -> rusqlite::Result<usize> {
        let sql = "UPDATE webhook_events SET dead = 0, attempts = 0, created_ms = ?1, next_attempt_ms = ?1
                   WHERE dead = 1";
        match ids {
            None => self.db.execute(sql, [now_ms as i64]),
            Some(ids) => {
                let tx = self.write()?;
                let mut count = 0;
                {
                    let mut one = tx.prepare_cached(&format!("{sql} AND id = ?2"))?;
                    for id in ids {
                        count += one.execute(params![now_ms as i64, id])?;
                    }
                }
                tx.commit()?;
                Ok(count)
            }
        }
    }
}

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        id: row.get(0)?,
        app_id: row.get(1)?,
        url: row.get(2)?,
        event: row.get(3)?,
        created_ms: row.get::<_, i64>(4)? as u64,
        attempts: row.get(5)?,
        last_error: row.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, not_before_ms: u64) -> NewEvent {
        event_of("1", id, not_before_ms)
    }

    fn event_of(app_id: &str, id: &str, not_before_ms: u64) -> NewEvent {
        NewEvent {
            id: id.into(),
            app_id: app_id.into(),
            url: "http://sink".into(),
            event: "{}".into(),
            created_ms: 0,
            not_before_ms,
        }
    }

    fn ids(events: Vec<StoredEvent>) -> Vec<String> {
        events.into_iter().map(|e| e.id).collect()
    }

    #[test]
    fn a_readd_cancels_a_removal_stored_in_the_same_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let done = store
            .insert(
                vec![event("removal", 5_000)],
                vec![("removal".into(), event("readd", 0))],
                10,
            )
            .expect("insert");
        assert_eq!(done.cancelled, 1);
        assert!(
            store.due(u64::MAX / 2, 10).expect("due").is_empty(),
            "neither the removal nor the re-add is sent"
        );
    }

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let delays: Vec<u64> = (1..=8).map(backoff_ms).collect();
        assert_eq!(
            delays,
            vec![1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
    }

    #[test]
    fn events_wait_until_delivered_then_go_and_failures_become_dead_letters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        store
            .insert(vec![event("a", 0), event("b", 5_000)], vec![], 10)
            .expect("insert");
        assert_eq!(ids(store.due(1_000, 10).expect("due")), vec!["a"]);
        assert_eq!(
            store
                .failed(&["a".into()], "HTTP 500", 1_000, 300_000)
                .expect("failed"),
            0
        );
        assert!(store.due(1_500, 10).expect("due").is_empty(), "backing off");
        let retry = store.due(2_000, 10).expect("due");
        assert_eq!(
            (retry[0].attempts, retry[0].last_error.as_deref()),
            (1, Some("HTTP 500"))
        );
        assert_eq!(
            store
                .failed(&["a".into()], "timeout", 300_000, 300_000)
                .expect("failed"),
            1
        );
        assert_eq!(store.dead_letters().expect("dead").len(), 1);
        let cancelled = store
            .insert(vec![], vec![("b".into(), event("b2", 0))], 10)
            .expect("cancel");
        assert_eq!(cancelled.cancelled, 1);
        assert!(store.due(u64::MAX / 2, 10).expect("due").is_empty());

        // Reopening keeps everything; replay requeues the dead letter.
        drop(store);
        let mut store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.replay(None, 400_000).expect("replay"), 1);
        assert_eq!(store.due(400_000, 10).expect("due")[0].id, "a");
        store.delivered(&["a".into()]).expect("delivered");
        assert!(store.due(u64::MAX / 2, 10).expect("due").is_empty());
        assert!(store.dead_letters().expect("dead").is_empty());
    }

    #[test]
    fn a_cancel_that_finds_no_removal_stores_its_addition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let done = store
            .insert(vec![], vec![("gone".into(), event("re-add", 0))], 10)
            .expect("insert");
        assert_eq!(done, Inserted::default());
        assert_eq!(ids(store.due(0, 10).expect("due")), vec!["re-add"]);
    }

    #[test]
    fn an_app_with_max_pending_events_waiting_gets_no_more() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let first: Vec<NewEvent> = (0..3).map(|n| event(&format!("a{n}"), 0)).collect();
        assert_eq!(store.insert(first, vec![], 2).expect("insert").refused, 1);
        let more = vec![event("a9", 0), event_of("2", "b0", 0)];
        assert_eq!(store.insert(more, vec![], 2).expect("insert").refused, 1);
        assert_eq!(store.pending("1").expect("pending"), 2);
        assert_eq!(store.pending("2").expect("pending"), 1);
        // Dead letters do not count: their app may queue again.
        store
            .failed(&["a0".into(), "a1".into()], "HTTP 500", 10, 0)
            .expect("failed");
        let again = store
            .insert(vec![event("a10", 0)], vec![], 2)
            .expect("insert");
        assert_eq!(again.refused, 0);
    }

    #[test]
    fn dead_letters_go_after_their_retention_or_beyond_the_per_app_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let events: Vec<NewEvent> = (0..4).map(|n| event(&format!("d{n}"), 0)).collect();
        store.insert(events, vec![], 10).expect("insert");
        // d0 dies at 1 000, d1 at 2 000, d2 and d3 at 3 000.
        for (id, died) in [("d0", 1_000), ("d1", 2_000), ("d2", 3_000), ("d3", 3_000)] {
            store
                .failed(&[id.into()], "HTTP 500", died, 0)
                .expect("fail");
        }
        assert_eq!(store.prune_dead_letters(1_000, 10).expect("prune"), 0);
        assert_eq!(store.prune_dead_letters(1_500, 10).expect("prune"), 1);
        assert_eq!(
            ids(store.dead_letters().expect("dead")),
            vec!["d1", "d2", "d3"]
        );
        // At most two per app: the oldest death goes.
        assert_eq!(store.prune_dead_letters(0, 2).expect("prune"), 1);
        let mut left = ids(store.dead_letters().expect("dead"));
        left.sort();
        assert_eq!(left, vec!["d2", "d3"]);
    }

    #[test]
    fn open_existing_creates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("herald-data");
        assert!(Store::open_existing(&data).expect("open").is_none());
        assert!(!data.exists());
        Store::open(&data).expect("create");
        assert!(Store::open_existing(&data).expect("open").is_some());
    }
}
