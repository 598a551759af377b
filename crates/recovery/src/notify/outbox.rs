//! The outbox: table `outbox` of the state database (MIGRATIONS[2]). Every event is
//! written here first, one row per channel, in the same transaction as whatever
//! records the event where there is one (a failed run's end). The daemon's delivery
//! worker sends due rows, one at a time, and marks a row `delivered` only after
//! the channel accepted it (a 2xx answer, exit 0); a failure sets the next attempt
//! with exponential backoff.
//!
//! Deduplication: an event whose key already has a row younger than
//! `repeat_after` is not written again, so a daemon that restarts does not
//! announce a system that is still late a second time.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::Event;
use crate::error::Result;
use crate::state::codec::{RowRef, Stored};
use crate::state::jobs::{ts, RunEnd};
use crate::state::{db_err, State};

/// Where an event goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Webhook,
    Command,
}

/// Where a row stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Delivered,
    /// Its channel is no longer configured.
    Dropped,
}

/// An event to write to the outbox.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub event: Event,
    /// Deduplicates: e.g. `system_late:web@2026-05-01T12:00:00.000Z`, `job_failed:backup:web:17`.
    pub key: String,
    pub channels: Vec<Channel>,
    pub repeat_after: std::time::Duration,
}

/// A row waiting for delivery.
#[derive(Clone, Debug)]
pub struct Pending {
    pub row: i64,
    pub event_id: String,
    pub key: String,
    pub channel: Channel,
    pub kind: String,
    pub body: String,
    pub attempts: u32,
}

/// The outbox at a glance: rows per status, and the oldest pending one.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub pending: u64,
    pub delivered: u64,
    pub dropped: u64,
    /// When the oldest pending event was written.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// Why its last attempt failed.
    pub last_error: Option<String>,
}

/// A new event id: 128 random bits, UUID-shaped (version 4).
pub fn new_event_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// The delay before attempt `attempts + 1`: `initial`, doubled per failure, at most `max`.
pub fn backoff(attempts: u32, initial: std::time::Duration, max: std::time::Duration) -> std::time::Duration {
    let factor = 1u32.checked_shl(attempts.saturating_sub(1).min(30)).unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// Writes `o` (one row per channel) unless its key was written within
/// `repeat_after`. Returns the event id, or None when deduplicated or no channel.
pub(crate) fn enqueue(conn: &Connection, o: &Outgoing, now: DateTime<Utc>) -> rusqlite::Result<Option<String>> {
    if o.channels.is_empty() {
        return Ok(None);
    }
    let window = chrono::Duration::from_std(o.repeat_after).unwrap_or(chrono::Duration::MAX);
    let since = now.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let recent: Option<i64> = conn
        .query_row(
            "SELECT id FROM outbox WHERE dedup_key = ?1 AND created_at > ?2 LIMIT 1",
            params![o.key, ts(since)],
            |r| r.get(0),
        )
        .optional()?;
    if recent.is_some() {
        return Ok(None);
    }
    let mut ev = o.event.clone();
    ev.id = new_event_id();
    ev.key = o.key.clone();
    let body = serde_json::to_string(&ev).expect("events serialize");
    for c in &o.channels {
        conn.execute(
            "INSERT INTO outbox (event_id, dedup_key, channel, kind, body, created_at, next_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 'pending')",
            params![ev.id, o.key, c.stored(), ev.event.as_str(), body, ts(now)],
        )?;
    }
    Ok(Some(ev.id))
}

impl State {
    /// Writes an event to the outbox (see [`enqueue`]); returns its id, or None
    /// when an event with the same key was written within `repeat_after`.
    pub fn enqueue(&mut self, o: &Outgoing, now: DateTime<Utc>) -> Result<Option<String>> {
        let path = self.path().to_path_buf();
        let tx = self.write_tx()?;
        let id = enqueue(&tx, o, now).map_err(|e| db_err(&path, e))?;
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(id)
    }

    /// Records a run's end and, in the same transaction, its event.
    pub fn finish_run_with_event(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
        end: &RunEnd,
        event: Option<&Outgoing>,
    ) -> Result<Option<String>> {
        let path = self.path().to_path_buf();
        let tx = self.write_tx()?;
        crate::state::jobs::finish_run_on(&tx, &path, id, at, end)?;
        let ev = match event {
            Some(o) => enqueue(&tx, o, at).map_err(|e| db_err(&path, e))?,
            None => None,
        };
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(ev)
    }

    /// Pending rows due at `now`, oldest first, at most `limit`.
    pub fn outbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Pending>> {
        self.pending_where("next_at <= ?1 ORDER BY next_at, id LIMIT ?2", params![ts(now), limit as i64])
    }

    /// The pending rows of one event.
    pub fn outbox_pending_of(&self, event_id: &str) -> Result<Vec<Pending>> {
        self.pending_where("event_id = ?1 ORDER BY id", params![event_id])
    }

    fn pending_where(&self, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<Pending>> {
        let sql = format!(
            "SELECT id, event_id, dedup_key, channel, kind, body, attempts FROM outbox WHERE status = 'pending' AND {filter}"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| db_err(self.path(), e))?;
        let rows = st
            .query_map(args, |r| {
                let row: i64 = r.get(0)?;
                let channel: String = r.get(3)?;
                Ok((row, channel, r.get(1)?, r.get(2)?, r.get(4)?, r.get(5)?, r.get::<_, i64>(6)?))
            })
            .map_err(|e| db_err(self.path(), e))?;
        let mut out = Vec::new();
        for r in rows {
            let (row, channel, event_id, key, kind, body, attempts) = r.map_err(|e| db_err(self.path(), e))?;
            let channel = RowRef { table: "outbox", row }.parse("channel", &channel)?;
            out.push(Pending { row, event_id, key, channel, kind, body, attempts: attempts.max(0) as u32 });
        }
        Ok(out)
    }

    /// When the next pending row is due, if any.
    pub fn outbox_next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<String> = self
            .conn
            .query_row("SELECT min(next_at) FROM outbox WHERE status = 'pending'", [], |r| r.get(0))
            .map_err(|e| db_err(self.path(), e))?;
        next.map(|t| RowRef { table: "outbox", row: 0 }.time("next_at", &t)).transpose()
    }

    /// Records an attempt: delivered, dropped, or failed with `error` and tried
    /// again at `retry_at`.
    pub fn outbox_record(
        &self,
        row: i64,
        at: DateTime<Utc>,
        status: Status,
        error: Option<&str>,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, status = ?2, last_error = ?3, next_at = ?4,
                 delivered_at = CASE WHEN ?2 = 'delivered' THEN ?5 ELSE delivered_at END
                 WHERE id = ?1",
                params![row, status.stored(), error, ts(retry_at), ts(at)],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    /// Removes delivered and dropped rows written before `before` (pending rows are
    /// kept whatever their age). Returns how many were removed.
    pub fn outbox_prune(&self, before: DateTime<Utc>) -> Result<usize> {
        self.conn
            .execute("DELETE FROM outbox WHERE status != 'pending' AND created_at < ?1", params![ts(before)])
            .map_err(|e| db_err(self.path(), e))
    }

    /// The outbox at a glance, for `kura status`.
    pub fn outbox_summary(&self) -> Result<Summary> {
        let (pending, delivered, dropped) = self.outbox_counts()?;
        let oldest: Option<(String, Option<String>, i64)> = self
            .conn
            .query_row(
                "SELECT created_at, last_error, id FROM outbox WHERE status = 'pending' ORDER BY created_at, id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| db_err(self.path(), e))?;
        let (oldest_pending, last_error) = match oldest {
            Some((t, err, row)) => (Some(RowRef { table: "outbox", row }.time("created_at", &t)?), err),
            None => (None, None),
        };
        Ok(Summary { pending, delivered, dropped, oldest_pending, last_error })
    }

    /// How many rows are in each status: (pending, delivered, dropped).
    pub fn outbox_counts(&self) -> Result<(u64, u64, u64)> {
        self.conn
            .query_row(
                "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'delivered'),
                        count(*) FILTER (WHERE status = 'dropped') FROM outbox",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)),
            )
            .map_err(|e| db_err(self.path(), e))
    }
}

/// For processes other than the daemon (a recovery's deadline alerts): writes the
/// event to the outbox and tries each channel once right away. What fails stays
/// pending for the daemon's worker, when one runs on this state database.
pub fn send_through(
    state: &mut State,
    notify: &crate::config::Notify,
    o: &Outgoing,
    now: DateTime<Utc>,
) -> Result<Vec<(Channel, std::result::Result<(), super::DeliveryError>)>> {
    let Some(id) = state.enqueue(o, now)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for p in state.outbox_pending_of(&id)? {
        let res = super::deliver(notify, p.channel, &p.kind, &p.event_id, &p.body);
        let (status, err, retry) = match &res {
            Ok(()) => (Status::Delivered, None, now),
            Err(e) => {
                let delay = backoff(1, notify.retry_initial, notify.retry_max);
                (Status::Pending, Some(e.to_string()), now + chrono::Duration::from_std(delay).unwrap_or_default())
            }
        };
        state.outbox_record(p.row, now, status, err.as_deref(), retry)?;
        out.push((p.channel, res));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::EventKind;
    use std::time::Duration;

    fn outgoing(key: &str) -> Outgoing {
        Outgoing {
            event: Event::new(EventKind::SystemLate, Utc::now(), "late".into()),
            key: key.into(),
            channels: vec![Channel::Webhook, Channel::Command],
            repeat_after: Duration::from_secs(3600),
        }
    }

    #[test]
    fn dedup_within_repeat_after_then_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("state.db")).unwrap();
        let t0 = Utc::now();
        let id = s.enqueue(&outgoing("system_late:web"), t0).unwrap().unwrap();
        assert_eq!(id.len(), 36);
        assert!(s.enqueue(&outgoing("system_late:web"), t0 + chrono::Duration::minutes(59)).unwrap().is_none());
        assert!(s.enqueue(&outgoing("system_late:db"), t0).unwrap().is_some());
        let again = s.enqueue(&outgoing("system_late:web"), t0 + chrono::Duration::minutes(61)).unwrap().unwrap();
        assert_ne!(again, id);
        let due = s.outbox_due(t0 + chrono::Duration::hours(2), 100).unwrap();
        assert_eq!(due.len(), 6, "one row per channel");
        let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["key"], "system_late:web");
    }

    #[test]
    fn failures_back_off_and_delivered_rows_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("state.db")).unwrap();
        let t0 = Utc::now();
        let mut o = outgoing("job_failed:backup:web:1");
        o.channels = vec![Channel::Webhook];
        s.enqueue(&o, t0).unwrap().unwrap();
        let p = s.outbox_due(t0, 10).unwrap().remove(0);
        let retry = t0 + chrono::Duration::seconds(4);
        s.outbox_record(p.row, t0, Status::Pending, Some("answered 500"), retry).unwrap();
        assert!(s.outbox_due(t0 + chrono::Duration::seconds(3), 10).unwrap().is_empty());
        assert_eq!(s.outbox_next_due().unwrap().map(|t| t.timestamp_millis()), Some(retry.timestamp_millis()));
        let p = s.outbox_due(retry, 10).unwrap().remove(0);
        assert_eq!(p.attempts, 1);
        s.outbox_record(p.row, retry, Status::Delivered, None, retry).unwrap();
        assert!(s.outbox_due(retry + chrono::Duration::days(1), 10).unwrap().is_empty());
        assert_eq!(s.outbox_counts().unwrap(), (0, 1, 0));
        assert_eq!(s.outbox_summary().unwrap(), Summary { delivered: 1, ..Summary::default() });
        // Pruning keeps pending rows and rows written since the bound.
        s.enqueue(&outgoing("job_failed:backup:web:2"), t0).unwrap().unwrap();
        assert_eq!(s.outbox_prune(t0).unwrap(), 0);
        assert_eq!(s.outbox_prune(t0 + chrono::Duration::days(40)).unwrap(), 1);
        assert_eq!(s.outbox_counts().unwrap(), (2, 0, 0));
    }

    #[test]
    fn send_through_delivers_at_once_and_keeps_failures_pending() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("state.db")).unwrap();
        let out = dir.path().join("ev.json");
        let n = crate::config::Notify {
            command: Some(format!("cat > '{}'", out.display())),
            webhook: Some("http://127.0.0.1:1/".into()),
            ..Default::default()
        };
        let mut o = outgoing("deadline_breach:1:dns");
        o.channels = crate::notify::channels(&n);
        let now = Utc::now();
        let res = send_through(&mut s, &n, &o, now).unwrap();
        assert_eq!(res.len(), 2);
        assert!(res[0].1.is_err() && res[1].1.is_ok(), "{res:?}");
        assert!(std::fs::read_to_string(&out).unwrap().contains("deadline_breach:1:dns"));
        assert_eq!(s.outbox_counts().unwrap(), (1, 1, 0), "the webhook stays pending for the daemon");
        assert!(send_through(&mut s, &n, &o, now).unwrap().is_empty(), "once per key");
        let sum = s.outbox_summary().unwrap();
        assert_eq!((sum.pending, sum.oldest_pending.map(|t| t.timestamp_millis())), (1, Some(now.timestamp_millis())));
        assert!(sum.last_error.unwrap().contains("127.0.0.1:1"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(300));
        let got: Vec<u64> = (1..=11).map(|a| backoff(a, i, m).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(1000, i, m), m);
    }
}
