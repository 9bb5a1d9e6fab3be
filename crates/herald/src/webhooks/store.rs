//! The durable webhook outbox in SQLite: every event waits here until its receiver answered
//! 2xx, then it is deleted; events that ran out of retries stay as dead letters.

use std::path::Path;

use rusqlite::{Connection, params};

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
pub struct NewEvent<'a> {
    pub id: &'a str,
    pub app_id: &'a str,
    pub url: &'a str,
    pub event: &'a str,
    pub not_before_ms: u64,
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
";

const COLUMNS: &str = "id, app_id, url, event, created_ms, attempts, last_error";

/// Seconds before retry `attempt` (1-based): 1 s doubling, capped at 60 s.
pub fn backoff_ms(attempt: u32) -> u64 {
    let exponent = attempt.saturating_sub(1).min(6);
    (1_000u64 << exponent).min(60_000)
}

impl Store {
    /// Opens (creating) `webhooks.sqlite3` in `dir`.
    pub fn open(dir: &Path) -> rusqlite::Result<Self> {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
        }
        let db = Connection::open(dir.join("webhooks.sqlite3"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Self { db })
    }

    /// Stores events in one transaction.
    pub fn insert(&mut self, events: &[NewEvent<'_>], now_ms: u64) -> rusqlite::Result<()> {
        let tx = self.db.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO webhook_events (id, app_id, url, event, created_ms, next_attempt_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for e in events {
                insert.execute(params![
                    e.id,
                    e.app_id,
                    e.url,
                    e.event,
                    now_ms as i64,
                    e.not_before_ms as i64
                ])?;
            }
        }
        tx.commit()
    }

    /// Removes a pending event (a delayed removal cancelled by a re-add).
    pub fn cancel(&mut self, id: &str) -> rusqlite::Result<bool> {
        Ok(self.db.execute(
            "DELETE FROM webhook_events WHERE id = ?1 AND dead = 0",
            [id],
        )? > 0)
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
        let tx = self.db.transaction()?;
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
        let tx = self.db.transaction()?;
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
                let next = now_ms + backoff_ms(attempts);
                let is_dead = now_ms.saturating_sub(created_ms as u64) >= retry_for_ms;
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

    /// Puts dead letters back in the queue with a fresh retry window; `None` replays all.
    /// Returns how many were requeued.
    pub fn replay(&mut self, ids: Option<&[String]>, now_ms: u64) -> rusqlite::Result<usize> {
        let sql = "UPDATE webhook_events SET dead = 0, attempts = 0, created_ms = ?1, next_attempt_ms = ?1
                   WHERE dead = 1";
        match ids {
            None => self.db.execute(sql, [now_ms as i64]),
            Some(ids) => {
                let tx = self.db.transaction()?;
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

    fn event<'a>(id: &'a str, not_before_ms: u64) -> NewEvent<'a> {
        NewEvent {
            id,
            app_id: "1",
            url: "http://sink",
            event: "{}",
            not_before_ms,
        }
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
            .insert(&[event("a", 0), event("b", 5_000)], 0)
            .expect("insert");
        let due: Vec<String> = store
            .due(1_000, 10)
            .expect("due")
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(due, vec!["a"]);
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
        assert!(store.cancel("b").expect("cancel"));
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
}
