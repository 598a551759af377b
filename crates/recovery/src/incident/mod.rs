//! Incidents as the standard records them, kept as an append-only timeline.
//!
//! Nothing is overwritten: every change is an `Event` appended with its time, and
//! the current view (`Incident`) is a fold over the events. Each stored entry
//! carries the MAC of the previous one, keyed with a key derived from the
//! repository's master key, and the chain's head is anchored in the repository
//! (see `chain`), so an edit, a removal or a recomputation made directly in the
//! database is found by `chain::verify`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::human::human_secs;

pub mod chain;
pub mod record;

/// The standard's fields. In `Event::Updated`, `None` means "unchanged".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Real incident (true) or false alarm (false); unknown until someone decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_at: Option<DateTime<Utc>>,
    /// When the systems stopped; the incident clock (and every deadline) starts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_since: Option<DateTime<Utc>>,
    /// When the intruder got in: recovery restores only backups taken before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compromised_since: Option<DateTime<Utc>>,
    /// How far it spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// An attack from outside in which the company is the victim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_attack: Option<bool>,
    /// Harm done to people or companies outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harm_to_outsiders: Option<bool>,
}

/// One entry of an incident's timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    Opened {
        #[serde(flatten)]
        fields: Fields,
    },
    Updated {
        #[serde(flatten)]
        fields: Fields,
    },
    CauseResolved {
        note: String,
    },
    /// Recovery started before the cause was resolved, with a reason.
    GateOverridden {
        reason: String,
        plan: String,
    },
    RecoveryStarted {
        run: i64,
        plan: String,
    },
    /// One system of a recovery finished (done, failed or skipped).
    SystemFinished {
        run: i64,
        system: String,
        priority: u8,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_secs: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        achieved_secs: Option<i64>,
        /// `None` when the system has no deadline or did not finish.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        met: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        margin_secs: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A system will miss (at-risk) or has missed (breach) its deadline.
    DeadlineAlert {
        run: i64,
        system: String,
        level: String,
        detail: String,
    },
    RecoveryFinished {
        run: i64,
        status: String,
        done: u32,
        failed: u32,
        skipped: u32,
        missed: u32,
    },
    Reviewed {
        findings: String,
        actions: Vec<String>,
    },
    PreventionPlan {
        technical: Vec<String>,
        organizational: Vec<String>,
    },
    Closed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Note {
        text: String,
    },
    /// A system's standby started serving in its place (docs/STANDBY.md).
    FailedOver {
        system: String,
        snapshot: String,
        /// From the incident clock to the standby serving.
        downtime_secs: i64,
        /// The age of the data served: the incident clock minus the snapshot's time.
        data_loss_secs: i64,
        tolerance_secs: i64,
        met: bool,
    },
    /// A system's primary serves again, brought to the standby's newest data.
    FailedBack {
        system: String,
        snapshot: String,
    },
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Opened { .. } => "opened",
            Event::Updated { .. } => "updated",
            Event::CauseResolved { .. } => "cause-resolved",
            Event::GateOverridden { .. } => "gate-overridden",
            Event::RecoveryStarted { .. } => "recovery-started",
            Event::SystemFinished { .. } => "system-finished",
            Event::DeadlineAlert { .. } => "deadline-alert",
            Event::RecoveryFinished { .. } => "recovery-finished",
            Event::Reviewed { .. } => "reviewed",
            Event::PreventionPlan { .. } => "prevention-plan",
            Event::Closed { .. } => "closed",
            Event::Note { .. } => "note",
            Event::FailedOver { .. } => "failed-over",
            Event::FailedBack { .. } => "failed-back",
        }
    }

    /// One line for humans (timelines in `incident show` and reports).
    pub fn describe(&self) -> String {
        match self {
            Event::Opened { fields } => format!("incident opened: {}", fields.title.as_deref().unwrap_or("")),
            Event::Updated { fields } => {
                let v = serde_json::to_value(fields).unwrap_or_default();
                let keys: Vec<String> = v
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={}", short_value(v))).collect())
                    .unwrap_or_default();
                format!("updated {}", keys.join(", "))
            }
            Event::CauseResolved { note } => format!("cause resolved: {note}"),
            Event::GateOverridden { reason, plan } => {
                format!("recovery gate overridden before the cause was resolved ({plan}): {reason}")
            }
            Event::RecoveryStarted { run, plan } => format!("recovery run {run} started with plan {plan}"),
            Event::SystemFinished { system, state, met, margin_secs, error, .. } => {
                let verdict = match (met, margin_secs) {
                    (Some(true), Some(m)) => format!(", deadline met with {} to spare", human_secs(*m)),
                    (Some(false), Some(m)) => format!(", deadline MISSED by {}", human_secs(-*m)),
                    _ => String::new(),
                };
                let err = error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
                format!("{system} {state}{verdict}{err}")
            }
            Event::DeadlineAlert { system, level, detail, .. } => format!("{level}: {system}: {detail}"),
            Event::RecoveryFinished { run, status, done, failed, skipped, missed } => format!(
                "recovery run {run} {status}: {done} restored, {failed} failed, {skipped} skipped, {missed} deadlines missed"
            ),
            Event::Reviewed { findings, actions } => {
                format!("post-incident review: {findings} ({} actions)", actions.len())
            }
            Event::PreventionPlan { technical, organizational } => format!(
                "recurrence-prevention plan: {} technical, {} organizational measures",
                technical.len(),
                organizational.len()
            ),
            Event::Closed { note } => format!("closed{}", note.as_ref().map(|n| format!(": {n}")).unwrap_or_default()),
            Event::Note { text } => text.clone(),
            Event::FailedOver { system, snapshot, downtime_secs, data_loss_secs, tolerance_secs, met } => format!(
                "{system}: standby serving snapshot {}, down {}, data lost {} (tolerance {}): {}",
                &snapshot[..snapshot.len().min(8)],
                human_secs(*downtime_secs),
                human_secs(*data_loss_secs),
                human_secs(*tolerance_secs),
                if *met { "met" } else { "MISSED" }
            ),
            Event::FailedBack { system, snapshot } => {
                format!("{system}: primary serving again at snapshot {}", &snapshot[..snapshot.len().min(8)])
            }
        }
    }
}

fn short_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) if s.chars().count() > 40 => {
            format!("{:?}", s.chars().take(40).collect::<String>() + "...")
        }
        other => other.to_string(),
    }
}

/// A stored timeline entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub event: Event,
    pub prev_hash: String,
    pub hash: String,
}

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of an entry: covers the previous hash, the position, the time, the
/// kind and the stored JSON text, so any edit of a row changes it.
pub fn chain_hash(prev: &str, incident: i64, seq: i64, at: &str, kind: &str, data: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [prev, &incident.to_string(), &seq.to_string(), at, kind, data] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Open,
    CauseResolved,
    Closed,
}

/// The current view of an incident: the fold of its timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    pub id: i64,
    pub status: Status,
    pub opened_at: DateTime<Utc>,
    #[serde(flatten)]
    pub fields: Fields,
    /// Derived: an outside attack on the company, or harm to outsiders.
    pub report_to_board: Option<bool>,
    pub cause_resolved_at: Option<DateTime<Utc>>,
    pub cause_resolution: Option<String>,
    pub gate_overrides: Vec<(DateTime<Utc>, String)>,
    pub reviews: Vec<(DateTime<Utc>, String, Vec<String>)>,
    pub prevention_plans: Vec<(DateTime<Utc>, Vec<String>, Vec<String>)>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl Incident {
    pub fn from_entries(id: i64, entries: &[Entry]) -> Option<Incident> {
        let first = entries.first()?;
        let mut inc = Incident {
            id,
            status: Status::Open,
            opened_at: first.at,
            fields: Fields::default(),
            report_to_board: None,
            cause_resolved_at: None,
            cause_resolution: None,
            gate_overrides: vec![],
            reviews: vec![],
            prevention_plans: vec![],
            closed_at: None,
        };
        for e in entries {
            inc.apply(e);
        }
        inc.report_to_board = match (inc.fields.outside_attack, inc.fields.harm_to_outsiders) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        };
        Some(inc)
    }

    fn apply(&mut self, e: &Entry) {
        match &e.event {
            Event::Opened { fields } | Event::Updated { fields } => merge(&mut self.fields, fields),
            Event::CauseResolved { note } => {
                self.cause_resolved_at = Some(e.at);
                self.cause_resolution = Some(note.clone());
                if self.status == Status::Open {
                    self.status = Status::CauseResolved;
                }
            }
            Event::GateOverridden { reason, .. } => self.gate_overrides.push((e.at, reason.clone())),
            Event::Reviewed { findings, actions } => self.reviews.push((e.at, findings.clone(), actions.clone())),
            Event::PreventionPlan { technical, organizational } => {
                self.prevention_plans.push((e.at, technical.clone(), organizational.clone()))
            }
            Event::Closed { .. } => {
                self.status = Status::Closed;
                self.closed_at = Some(e.at);
            }
            _ => {}
        }
    }

    /// The incident clock: down-since, else discovered-at, else when it was opened.
    pub fn clock_start(&self) -> DateTime<Utc> {
        self.fields.down_since.or(self.fields.discovered_at).unwrap_or(self.opened_at)
    }

    pub fn title(&self) -> &str {
        self.fields.title.as_deref().unwrap_or("")
    }
}

fn merge(into: &mut Fields, from: &Fields) {
    macro_rules! take {
        ($($f:ident),*) => { $( if from.$f.is_some() { into.$f = from.$f.clone(); } )* };
    }
    take!(
        title,
        category,
        real,
        discovered_at,
        down_since,
        compromised_since,
        scope,
        damage,
        cause,
        response,
        outside_attack,
        harm_to_outsiders
    );
}

/// Checks the chain: each entry's `prev_hash` is the previous entry's `hash`, and
/// each `hash` matches the stored row. Returns the first bad sequence number.
pub fn verify_chain(incident: i64, rows: &[RawEntry]) -> std::result::Result<(), (i64, String)> {
    let mut prev = GENESIS.to_string();
    for (i, r) in rows.iter().enumerate() {
        if r.seq != i as i64 + 1 {
            return Err((r.seq, format!("entry {} is missing or out of order", i + 1)));
        }
        if r.prev_hash != prev {
            return Err((r.seq, "its link to the previous entry is broken (an entry was removed or edited)".into()));
        }
        let h = chain_hash(&r.prev_hash, incident, r.seq, &r.at, &r.kind, &r.data);
        if h != r.hash {
            return Err((r.seq, "its content does not match its hash (the row was edited)".into()));
        }
        prev = r.hash.clone();
    }
    Ok(())
}

/// A timeline row exactly as stored.
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(incident: i64, events: &[Event]) -> Vec<RawEntry> {
        let mut prev = GENESIS.to_string();
        let mut out = vec![];
        for (i, e) in events.iter().enumerate() {
            let seq = i as i64 + 1;
            let at = format!("2026-01-01T00:00:{:02}Z", i);
            let data = serde_json::to_string(e).unwrap();
            let hash = chain_hash(&prev, incident, seq, &at, e.kind(), &data);
            out.push(RawEntry { seq, at, kind: e.kind().into(), data, prev_hash: prev.clone(), hash: hash.clone() });
            prev = hash;
        }
        out
    }

    #[test]
    fn chain_detects_edits_and_removals() {
        let events = vec![
            Event::Opened { fields: Fields { title: Some("ransomware".into()), ..Default::default() } },
            Event::CauseResolved { note: "patched".into() },
            Event::Closed { note: None },
        ];
        let rows = raw(7, &events);
        assert!(verify_chain(7, &rows).is_ok());
        assert!(verify_chain(8, &rows).is_err(), "a row moved to another incident is detected");
        let mut edited = rows.clone();
        edited[1].data = edited[1].data.replace("patched", "ignored");
        assert_eq!(verify_chain(7, &edited).unwrap_err().0, 2);
        let mut removed = rows.clone();
        removed.remove(1);
        assert!(verify_chain(7, &removed).is_err());
    }

    #[test]
    fn fold_takes_latest_values_and_derives_board_report() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let mk = |seq, event| Entry { seq, at: t0, event, prev_hash: String::new(), hash: String::new() };
        let entries = vec![
            mk(1, Event::Opened { fields: Fields { title: Some("a".into()), ..Default::default() } }),
            mk(2, Event::Updated { fields: Fields { outside_attack: Some(true), ..Default::default() } }),
            mk(3, Event::Updated { fields: Fields { title: Some("b".into()), ..Default::default() } }),
        ];
        let inc = Incident::from_entries(1, &entries).unwrap();
        assert_eq!(inc.title(), "b");
        assert_eq!(inc.report_to_board, Some(true));
        assert_eq!(inc.status, Status::Open);
        assert_eq!(inc.clock_start(), t0);
    }
}
