//! Incidents in the state database: an id row plus an append-only, MAC-chained
//! timeline (see `crate::incident::chain`).

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, OptionalExtension};

use super::{db_err, State};
use crate::error::{Error, Result};
use crate::incident::chain::{row_mac, Mac};
use crate::incident::{Entry, Event, Incident, RawEntry, GENESIS};

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::invalid("state database", format!("bad time {s:?}: {e}")))
}

impl State {
    /// Creates an incident whose first timeline entry is `opened`.
    pub fn open_incident(&mut self, at: DateTime<Utc>, opened: Event) -> Result<i64> {
        let path = self.path().to_path_buf();
        let key = self.chain_key;
        let tx = self.write_tx()?;
        tx.execute("INSERT INTO incidents (opened_at) VALUES (?1)", params![ts(at)]).map_err(|e| db_err(&path, e))?;
        let id = tx.last_insert_rowid();
        append_in(&tx, key.as_ref(), id, at, &opened).map_err(|e| db_err(&path, e))?;
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(id)
    }

    /// Appends one event to an incident's timeline (in its own transaction).
    pub fn append_event(&mut self, incident: i64, at: DateTime<Utc>, event: &Event) -> Result<i64> {
        self.require_incident(incident)?;
        let path = self.path().to_path_buf();
        let key = self.chain_key;
        let tx = self.write_tx()?;
        let seq = append_in(&tx, key.as_ref(), incident, at, event).map_err(|e| db_err(&path, e))?;
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(seq)
    }

    pub fn require_incident(&self, incident: i64) -> Result<()> {
        let found: Option<i64> = self
            .conn
            .query_row("SELECT id FROM incidents WHERE id = ?1", [incident], |r| r.get(0))
            .optional()
            .map_err(|e| db_err(self.path(), e))?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::invalid(
                format!("incident {incident}"),
                format!("no such incident in {}; `kura incident list` shows them", self.path().display()),
            )),
        }
    }

    pub fn raw_timeline(&self, incident: i64) -> Result<Vec<RawEntry>> {
        Ok(self.stored_rows(incident)?.into_iter().map(|(r, _)| r).collect())
    }

    /// The timeline rows as stored, with their `mac` column as text.
    fn stored_rows(&self, incident: i64) -> Result<Vec<(RawEntry, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT seq, at, kind, data, prev_hash, hash, mac FROM timeline WHERE incident = ?1 ORDER BY seq")
            .map_err(|e| db_err(self.path(), e))?;
        let rows = st
            .query_map([incident], |r| {
                Ok((
                    RawEntry {
                        seq: r.get(0)?,
                        at: r.get(1)?,
                        kind: r.get(2)?,
                        data: r.get(3)?,
                        prev_hash: r.get(4)?,
                        hash: r.get(5)?,
                    },
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(|e| db_err(self.path(), e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| db_err(self.path(), e))
    }

    /// The timeline rows as stored, each with how its hash was made.
    pub fn chain_rows(&self, incident: i64) -> Result<Vec<(RawEntry, Mac)>> {
        let rows = self.stored_rows(incident)?;
        rows.into_iter()
            .map(|(r, mac)| {
                let m = Mac::parse(&mac).ok_or_else(|| {
                    Error::invalid(
                        format!("incident {incident} timeline entry {}", r.seq),
                        format!("unknown mac {mac:?} (legacy, unkeyed or keyed)"),
                    )
                })?;
                Ok((r, m))
            })
            .collect()
    }

    /// This database's identity, which names its incidents' anchors.
    pub fn db_id(&self) -> Result<String> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'db_id'", [], |r| r.get(0))
            .map_err(|e| db_err(self.path(), e))
    }

    pub fn timeline(&self, incident: i64) -> Result<Vec<Entry>> {
        self.require_incident(incident)?;
        self.raw_timeline(incident)?
            .into_iter()
            .map(|r| {
                let event: Event = serde_json::from_str(&r.data).map_err(|e| {
                    Error::invalid(format!("incident {incident} timeline entry {}", r.seq), e.to_string())
                })?;
                Ok(Entry { seq: r.seq, at: parse_ts(&r.at)?, event, prev_hash: r.prev_hash, hash: r.hash })
            })
            .collect()
    }

    pub fn incident(&self, id: i64) -> Result<Incident> {
        let entries = self.timeline(id)?;
        Incident::from_entries(id, &entries)
            .ok_or_else(|| Error::invalid(format!("incident {id}"), "its timeline is empty"))
    }

    pub fn incident_ids(&self) -> Result<Vec<i64>> {
        let mut st = self.conn.prepare("SELECT id FROM incidents ORDER BY id").map_err(|e| db_err(self.path(), e))?;
        let ids = st.query_map([], |r| r.get(0)).map_err(|e| db_err(self.path(), e))?;
        ids.collect::<rusqlite::Result<Vec<i64>>>().map_err(|e| db_err(self.path(), e))
    }
}

fn append_in(
    tx: &rusqlite::Transaction<'_>,
    key: Option<&[u8; 32]>,
    incident: i64,
    at: DateTime<Utc>,
    event: &Event,
) -> rusqlite::Result<i64> {
    let last: Option<(i64, String)> = tx
        .query_row("SELECT seq, hash FROM timeline WHERE incident = ?1 ORDER BY seq DESC LIMIT 1", [incident], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (seq, prev) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_string()),
    };
    let at = ts(at);
    let data = serde_json::to_string(event).expect("events serialize");
    let (mac, hash) = row_mac(key, &prev, incident, seq, &at, event.kind(), &data);
    tx.execute(
        "INSERT INTO timeline (incident, seq, at, kind, data, prev_hash, hash, mac) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![incident, seq, at, event.kind(), data, prev, hash, mac.as_str()],
    )?;
    Ok(seq)
}
