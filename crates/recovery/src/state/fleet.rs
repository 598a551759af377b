//! The fleet's tables (docs/FLEET.md): the certificate registry, enrolment tokens,
//! and the task queue. The database is the queue: the recovery engine and the
//! daemon's scheduler insert tasks, the daemon's agent routes hand them out and
//! record reports, and the inserter polls for the result.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::jobs::ts;
use super::{db_err, State};
use crate::error::{Error, Result};
use kura_fleet::proto::{Report, TaskSpec};
use kura_fleet::role::{Role, RoleKind};

/// A registered certificate.
#[derive(Clone, Debug, Serialize)]
pub struct AgentRecord {
    pub name: String,
    pub role: RoleKind,
    pub fingerprint: String,
    pub enrolled_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl AgentRecord {
    pub fn role(&self) -> Role {
        Role::from_kind(self.role, &self.name)
    }
}

/// Why a join was refused. The text is what the joining host prints.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    #[error("this enrolment token is not known to the coordinator: ask for a new one (`kura agent enroll HOST`)")]
    Unknown,
    #[error(
        "this enrolment token was already used (at {0}): a token works once; ask for a new one (`kura agent enroll HOST`)"
    )]
    Used(String),
    #[error("this enrolment token expired at {0}: ask for a new one (`kura agent enroll HOST --ttl ...`)")]
    Expired(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> Option<TaskState> {
        [TaskState::Queued, TaskState::Running, TaskState::Done, TaskState::Failed, TaskState::Cancelled]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Done | TaskState::Failed | TaskState::Cancelled)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TaskRecord {
    pub id: i64,
    pub host: String,
    pub spec: TaskSpec,
    pub state: TaskState,
    pub created_at: DateTime<Utc>,
    pub progress: Option<serde_json::Value>,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}

fn time(col: &'static str, s: Option<String>) -> Result<Option<DateTime<Utc>>> {
    s.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Error::invalid(format!("fleet table, column {col}"), format!("{s:?}: {e}")))
    })
    .transpose()
}

/// A stored role name, or an error naming it.
fn role_kind(s: &str) -> Result<RoleKind> {
    RoleKind::from_name(s).ok_or_else(|| Error::invalid("fleet registry", format!("unknown role {s:?}")))
}

impl State {
    /// Stores a token's hash for `name` with `role`, valid until `expires`.
    pub fn fleet_add_token(
        &mut self,
        hash: &str,
        name: &str,
        role: RoleKind,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<()> {
        let p = self.path().to_path_buf();
        self.conn
            .execute(
                "INSERT INTO fleet_tokens (hash, name, role, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![hash, name, role.as_str(), ts(now), ts(expires)],
            )
            .map_err(|e| db_err(&p, e))?;
        Ok(())
    }

    /// Redeems a token and registers the certificate the caller will issue, in one
    /// transaction: a token is used once, even by two joins at the same moment.
    /// Returns the name and role the certificate must carry.
    pub fn fleet_redeem_token(
        &mut self,
        hash: &str,
        now: DateTime<Utc>,
        fingerprint_of: impl FnOnce(&str, RoleKind) -> Result<String>,
    ) -> Result<std::result::Result<(String, RoleKind), TokenRefused>> {
        let p = self.path().to_path_buf();
        let tx = self.write_tx()?;
        let row: Option<(String, String, String, Option<String>)> = tx
            .query_row("SELECT name, role, expires_at, used_at FROM fleet_tokens WHERE hash = ?1", params![hash], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(|e| db_err(&p, e))?;
        let Some((name, role, expires, used)) = row else { return Ok(Err(TokenRefused::Unknown)) };
        if let Some(u) = used {
            return Ok(Err(TokenRefused::Used(u)));
        }
        let exp = time("expires_at", Some(expires.clone()))?.unwrap_or(now);
        if exp <= now {
            return Ok(Err(TokenRefused::Expired(expires)));
        }
        let role = role_kind(&role)?;
        let fp = fingerprint_of(&name, role)?;
        tx.execute("UPDATE fleet_tokens SET used_at = ?2 WHERE hash = ?1", params![hash, ts(now)])
            .map_err(|e| db_err(&p, e))?;
        tx.execute(
            "INSERT INTO fleet_agents (fingerprint, name, role, enrolled_at) VALUES (?1, ?2, ?3, ?4)",
            params![fp, name, role.as_str(), ts(now)],
        )
        .map_err(|e| db_err(&p, e))?;
        tx.commit().map_err(|e| db_err(&p, e))?;
        Ok(Ok((name, role)))
    }

    pub fn fleet_agent(&self, fingerprint: &str) -> Result<Option<AgentRecord>> {
        Ok(self.fleet_agents_where("fingerprint = ?1", fingerprint)?.pop())
    }

    /// Every registered certificate, by name then enrolment.
    pub fn fleet_agents(&self) -> Result<Vec<AgentRecord>> {
        self.fleet_agents_where("1 = 1 OR ?1 = ''", "")
    }

    fn fleet_agents_where(&self, cond: &str, arg: &str) -> Result<Vec<AgentRecord>> {
        let p = self.path().to_path_buf();
        let sql = format!(
            "SELECT name, role, fingerprint, enrolled_at, last_seen, revoked_at FROM fleet_agents WHERE {cond} \
             ORDER BY name, enrolled_at"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| db_err(&p, e))?;
        let rows = st
            .query_map(params![arg], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(|e| db_err(&p, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, role, fingerprint, enrolled, seen, revoked) = row.map_err(|e| db_err(&p, e))?;
            out.push(AgentRecord {
                name,
                role: role_kind(&role)?,
                fingerprint,
                enrolled_at: time("enrolled_at", Some(enrolled))?.unwrap_or_default(),
                last_seen: time("last_seen", seen)?,
                revoked_at: time("revoked_at", revoked)?,
            });
        }
        Ok(out)
    }

    pub fn fleet_seen(&mut self, fingerprint: &str, now: DateTime<Utc>) -> Result<()> {
        let p = self.path().to_path_buf();
        self.conn
            .execute("UPDATE fleet_agents SET last_seen = ?2 WHERE fingerprint = ?1", params![fingerprint, ts(now)])
            .map_err(|e| db_err(&p, e))?;
        Ok(())
    }

    /// Revokes every certificate of `name`; returns how many were still valid.
    pub fn fleet_revoke(&mut self, name: &str, now: DateTime<Utc>) -> Result<usize> {
        let p = self.path().to_path_buf();
        self.conn
            .execute(
                "UPDATE fleet_agents SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, ts(now)],
            )
            .map_err(|e| db_err(&p, e))
    }

    /// The most recent `last_seen` of a host's valid agent certificates.
    pub fn fleet_last_seen(&self, host: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .fleet_agents_where("name = ?1 AND role = 'agent' AND revoked_at IS NULL", host)?
            .into_iter()
            .filter_map(|a| a.last_seen)
            .max())
    }

    pub fn fleet_insert_task(&mut self, host: &str, spec: &TaskSpec, now: DateTime<Utc>) -> Result<i64> {
        let p = self.path().to_path_buf();
        let json = serde_json::to_string(spec).map_err(|e| Error::invalid("task spec", e.to_string()))?;
        self.conn
            .execute(
                "INSERT INTO fleet_tasks (host, kind, system, spec, state, created_at) VALUES (?1, ?2, ?3, ?4, 'queued', ?5)",
                params![host, spec.kind(), spec.system(), json, ts(now)],
            )
            .map_err(|e| db_err(&p, e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn fleet_task(&self, id: i64) -> Result<Option<TaskRecord>> {
        Ok(self.fleet_tasks_where("id = ?1", &id.to_string())?.pop())
    }

    /// The newest task of `host` with exactly this spec, in any state.
    pub fn fleet_find_task(&self, host: &str, spec: &TaskSpec) -> Result<Option<TaskRecord>> {
        let json = serde_json::to_string(spec).map_err(|e| Error::invalid("task spec", e.to_string()))?;
        let p = self.path().to_path_buf();
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM fleet_tasks WHERE host = ?1 AND spec = ?2 ORDER BY id DESC LIMIT 1",
                params![host, json],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_err(&p, e))?;
        id.map(|id| self.fleet_task(id)).transpose().map(Option::flatten)
    }

    /// The tasks with these ids (the process's task waiter reads them all at once).
    pub fn fleet_tasks_by_id(&self, ids: &[i64]) -> Result<Vec<TaskRecord>> {
        // Integers only, so written into the statement.
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        self.fleet_tasks_where(&format!("id IN ({}) AND ?1 = ''", list.join(",")), "")
    }

    /// A host's tasks still to do (queued or running), oldest first.
    pub fn fleet_open_tasks(&self, host: &str) -> Result<Vec<TaskRecord>> {
        self.fleet_tasks_where("host = ?1 AND state IN ('queued', 'running')", host)
    }

    fn fleet_tasks_where(&self, cond: &str, arg: &str) -> Result<Vec<TaskRecord>> {
        let p = self.path().to_path_buf();
        let sql = format!(
            "SELECT id, host, spec, state, created_at, progress, result, error FROM fleet_tasks WHERE {cond} ORDER BY id"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| db_err(&p, e))?;
        type Row = (i64, String, String, String, String, Option<String>, Option<String>, Option<String>);
        let rows = st
            .query_map(params![arg], |r| -> rusqlite::Result<Row> {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
            })
            .map_err(|e| db_err(&p, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, host, spec, state, created, progress, result, error) = row.map_err(|e| db_err(&p, e))?;
            let bad = |col: &str, e: String| Error::invalid(format!("fleet_tasks row {id}, column {col}"), e);
            let json = |col: &str, s: Option<String>| -> Result<Option<serde_json::Value>> {
                s.map(|s| serde_json::from_str(&s).map_err(|e| bad(col, e.to_string()))).transpose()
            };
            out.push(TaskRecord {
                id,
                host,
                spec: serde_json::from_str(&spec).map_err(|e| bad("spec", e.to_string()))?,
                state: TaskState::parse(&state).ok_or_else(|| bad("state", format!("unknown state {state:?}")))?,
                created_at: time("created_at", Some(created))?.unwrap_or_default(),
                progress: json("progress", progress)?,
                result: json("result", result)?,
                error,
            });
        }
        Ok(out)
    }

    /// Marks the tasks of one poll running, in one transaction: one commit (and one
    /// fsync) per poll, not one per task (a recovery hands out many at once).
    pub fn fleet_tasks_started(&mut self, ids: &[i64], now: DateTime<Utc>) -> Result<()> {
        let p = self.path().to_path_buf();
        let tx = self.write_tx()?;
        for id in ids {
            tx.execute(
                "UPDATE fleet_tasks SET state = 'running', started_at = COALESCE(started_at, ?2) \
                 WHERE id = ?1 AND state = 'queued'",
                params![id, ts(now)],
            )
            .map_err(|e| db_err(&p, e))?;
        }
        tx.commit().map_err(|e| db_err(&p, e))
    }

    /// Records a report. A report on a finished task changes nothing (a second
    /// "done" after a reconnect is harmless).
    pub fn fleet_report(&mut self, id: i64, report: &Report, now: DateTime<Utc>) -> Result<()> {
        let p = self.path().to_path_buf();
        let r = match report {
            Report::Progress { done, total } => self.conn.execute(
                "UPDATE fleet_tasks SET progress = ?2, state = 'running' WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id, serde_json::json!({ "done": done, "total": total }).to_string()],
            ),
            Report::Done { result } => self.conn.execute(
                "UPDATE fleet_tasks SET state = 'done', result = ?2, ended_at = ?3 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id, serde_json::to_string(result).unwrap_or_default(), ts(now)],
            ),
            Report::Failed { error } => self.conn.execute(
                "UPDATE fleet_tasks SET state = 'failed', error = ?2, ended_at = ?3 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id, error, ts(now)],
            ),
        };
        r.map_err(|e| db_err(&p, e))?;
        Ok(())
    }

    /// Cancels a task nobody waits for any more (its inserter gave up).
    pub fn fleet_cancel(&mut self, id: i64, now: DateTime<Utc>) -> Result<()> {
        let p = self.path().to_path_buf();
        self.conn
            .execute(
                "UPDATE fleet_tasks SET state = 'cancelled', ended_at = ?2 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id, ts(now)],
            )
            .map_err(|e| db_err(&p, e))?;
        Ok(())
    }
}
