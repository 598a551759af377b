//! The clean point: a system's snapshots ranked clean, suspect or infected with the
//! evidence, and the newest clean one. Pure.
//!
//! A snapshot is infected when an indicator scan found something in it, suspect when
//! its signals made it suspect (and no operator called that a false positive), clean
//! otherwise. Snapshots taken after a suspect or infected one descend from the
//! damaged state even when their own change is small (encrypted files stay
//! encrypted), so the clean point is the newest clean snapshot older than the newest
//! suspect or infected one; with none of those, the newest snapshot.

use chrono::{DateTime, Utc};
use kura_store::types::FileId;
use serde::Serialize;

use super::scan::ScanIndex;
use super::{Assessed, Verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Clean,
    Suspect,
    Infected,
    /// Clean by its own signals, but taken after a suspect or infected snapshot.
    After,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ranked {
    pub id: String,
    pub time: DateTime<Utc>,
    pub status: Status,
    pub evidence: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CleanPoint {
    /// Newest first.
    pub ranked: Vec<Ranked>,
    /// The newest clean snapshot (hex id), if any.
    pub clean: Option<String>,
    pub clean_time: Option<DateTime<Utc>>,
    /// The oldest suspect or infected snapshot after the clean point.
    pub first_suspect: Option<DateTime<Utc>>,
}

impl CleanPoint {
    pub fn clean_id(&self) -> Option<FileId> {
        self.clean.as_deref().and_then(|h| FileId::from_hex(h).ok())
    }
}

/// `series`: one system's assessed snapshots, oldest first; `scans`: snapshot id ->
/// (scanned at, hits); `before`: only snapshots taken strictly before it count.
pub fn clean_point(series: &[&Assessed], scans: &ScanIndex, before: Option<DateTime<Utc>>) -> CleanPoint {
    let in_range: Vec<&&Assessed> = series.iter().filter(|a| before.is_none_or(|b| a.time < b)).collect();
    let mut ranked: Vec<Ranked> = in_range
        .iter()
        .map(|a| {
            let id = a.id.to_hex();
            let mut evidence = Vec::new();
            let hits = scans.get(&id).map(|(_, h)| h.as_slice()).unwrap_or_default();
            for h in hits.iter().take(5) {
                evidence.push(format!("scan: {} matches {} ({})", h.path, h.indicator, h.by));
            }
            if hits.len() > 5 {
                evidence.push(format!("scan: {} more hits", hits.len() - 5));
            }
            if !scans.contains_key(&id) {
                evidence.push("not scanned".into());
            }
            match &a.verdict {
                Verdict::Suspect { reasons } => {
                    evidence.extend(reasons.iter().map(|r| format!("signals: [{}] {}", r.rule.as_str(), r.detail)));
                    if a.false_positive {
                        evidence.push("marked a false positive".into());
                    }
                }
                Verdict::Learning { have, need } => evidence.push(format!("signals: learning ({have} of {need})")),
                Verdict::Unmeasured => evidence.push("signals: not measured".into()),
                Verdict::Clean => evidence.push("signals: within the baseline".into()),
            }
            let status = if !hits.is_empty() {
                Status::Infected
            } else if a.is_suspect() {
                Status::Suspect
            } else {
                Status::Clean
            };
            Ranked { id, time: a.time, status, evidence }
        })
        .collect();
    let newest_bad = ranked.iter().rposition(|r| r.status != Status::Clean);
    if let Some(bad) = newest_bad {
        for r in &mut ranked[bad + 1..] {
            r.status = Status::After;
            r.evidence.push("taken after a suspect or infected snapshot".into());
        }
    }
    let clean_at = match newest_bad {
        Some(bad) => ranked[..bad].iter().rposition(|r| r.status == Status::Clean),
        None => ranked.len().checked_sub(1),
    };
    let first_suspect = clean_at
        .map_or(Some(0), |c| Some(c + 1))
        .and_then(|from| ranked.get(from..).and_then(|r| r.iter().find(|r| r.status != Status::Clean)))
        .map(|r| r.time);
    let (clean, clean_time) = match clean_at {
        Some(i) => (Some(ranked[i].id.clone()), Some(ranked[i].time)),
        None => (None, None),
    };
    ranked.reverse();
    CleanPoint { ranked, clean, clean_time, first_suspect }
}
