//! Incident detection in the backups (docs/DETECTION.md).
//!
//! * `rules`: pure; a system's signal history -> a verdict per snapshot.
//! * here: the series a snapshot belongs to (the snapshots with its host and paths,
//!   the same rule by which a backup picks its parent), the last clean snapshot, and
//!   what happens after a backup: the verdict is stored, and a suspect one holds the
//!   last clean snapshot, opens a draft incident and notifies (`after_backup`, which
//!   the daemon's backup job calls).

pub mod clean;
pub mod indicators;
pub mod quarantine;
pub mod rules;
pub mod scan;
pub mod scope;
#[cfg(test)]
mod tests;
pub mod yara;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use kura_store::repo::snapshot::{same_paths, Snapshot};
use kura_store::repo::Repository;
use kura_store::signals::Signals;
use kura_store::types::FileId;
use serde::Serialize;

use crate::error::Result;
use crate::incident::{Event, Fields};
use crate::state::State;
pub use rules::{Reason, RuleKind, Rules, Verdict};

/// One snapshot with its verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Assessed {
    #[serde(serialize_with = "hex")]
    pub id: FileId,
    pub time: DateTime<Utc>,
    pub host: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub signals: Option<Signals>,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// An operator marked it a false positive.
    pub false_positive: bool,
}

fn hex<S: serde::Serializer>(id: &FileId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_hex())
}

impl Assessed {
    /// Clean for recovery: not suspect, or suspect and called a false positive.
    pub fn is_clean(&self) -> bool {
        !self.verdict.is_suspect() || self.false_positive
    }
    pub fn is_suspect(&self) -> bool {
        self.verdict.is_suspect() && !self.false_positive
    }
}

/// Whether two snapshots belong to one series (host and paths, as a backup's parent).
pub fn same_series(a: &Snapshot, b: &Snapshot) -> bool {
    a.host == b.host && same_paths(&a.paths, &b.paths)
}

/// Verdicts for every snapshot of `all` (sorted by time, oldest first), each judged
/// within its own series. `false_positives` holds snapshot ids in hex.
pub fn assess_all(all: &[(FileId, Snapshot)], false_positives: &HashSet<String>, rules: &Rules) -> Vec<Assessed> {
    // One pass to group the series (host and paths as `same_series` compares them).
    let mut groups: std::collections::BTreeMap<(String, Vec<String>), Vec<usize>> = Default::default();
    for (j, (_, s)) in all.iter().enumerate() {
        groups.entry(series_key(s)).or_default().push(j);
    }
    let mut out: Vec<Option<Assessed>> = vec![None; all.len()];
    for members in groups.into_values() {
        let fp: Vec<bool> = members.iter().map(|&j| false_positives.contains(&all[j].0.to_hex())).collect();
        let points: Vec<rules::Point> = members
            .iter()
            .zip(&fp)
            .map(|(&j, &f)| rules::Point { signals: all[j].1.signals.as_ref(), false_positive: f })
            .collect();
        let verdicts = rules::assess_series(&points, rules);
        for ((&j, v), f) in members.iter().zip(verdicts).zip(fp) {
            let (id, s) = &all[j];
            out[j] = Some(Assessed {
                id: *id,
                time: s.time,
                host: s.host.clone(),
                paths: s.paths.clone(),
                tags: s.tags.clone(),
                signals: s.signals.clone(),
                verdict: v,
                false_positive: f,
            });
        }
    }
    out.into_iter().flatten().collect()
}

/// Host and the set of paths, each without trailing slashes (`same_series`' rule).
fn series_key(s: &Snapshot) -> (String, Vec<String>) {
    let mut paths: Vec<String> = s
        .paths
        .iter()
        .map(|p| {
            let t = p.trim_end_matches('/');
            if t.is_empty() && p.starts_with('/') {
                "/".to_string()
            } else {
                t.to_string()
            }
        })
        .collect();
    paths.sort();
    paths.dedup();
    (s.host.clone(), paths)
}

/// The newest clean snapshot of `id`'s series older than `id`.
pub fn last_clean_before<'a>(assessed: &'a [Assessed], id: &FileId) -> Option<&'a Assessed> {
    let me = assessed.iter().find(|a| a.id == *id)?;
    assessed
        .iter()
        .filter(|a| a.host == me.host && same_paths(&a.paths, &me.paths) && a.time < me.time && a.is_clean())
        .max_by_key(|a| a.time)
}

/// What `after_backup` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AfterBackup {
    pub verdict: Option<Verdict>,
    /// The snapshot now held (the series' last clean one).
    pub held: Option<String>,
    /// The draft incident opened, or the open one the alarm was added to.
    pub incident: Option<i64>,
    /// The notification's event id, when one was written.
    pub notified: Option<String>,
}

/// Where an alarm goes: the system's name and the config's notification channels.
pub struct Alarm<'a> {
    pub system: Option<&'a str>,
    pub notify: Option<&'a crate::config::Notify>,
}

/// After a backup wrote `id`: judges it against its series, stores the verdict and,
/// when it is suspect, holds the last clean snapshot, opens a draft incident (or adds
/// to the one an earlier suspect snapshot of the series opened) and notifies.
pub fn after_backup(
    state: &mut State,
    repo: &Repository,
    id: &FileId,
    rules: &Rules,
    alarm: &Alarm<'_>,
    now: DateTime<Utc>,
) -> Result<AfterBackup> {
    let repo_id = repo.config().id.clone();
    let all = repo.snapshots()?;
    let fps = state.false_positives(&repo_id)?;
    let assessed = assess_all(&all, &fps, rules);
    let Some(me) = assessed.iter().find(|a| a.id == *id) else { return Ok(AfterBackup::default()) };
    state.record_verdict(&repo_id, alarm.system, me, now)?;
    let mut out = AfterBackup { verdict: Some(me.verdict.clone()), ..Default::default() };
    // The alarms to raise: this snapshot's, and those of suspect snapshots of its
    // series that a crash interrupted (a stored suspect verdict without its
    // incident). Raising is idempotent: holds and notifications are deduplicated.
    let unraised: HashSet<String> = state
        .verdicts(&repo_id)?
        .into_iter()
        .filter(|v| v.verdict.is_suspect() && v.incident.is_none() && v.false_positive_at.is_none())
        .map(|v| v.snapshot)
        .collect();
    let series = |a: &&Assessed| a.host == me.host && same_paths(&a.paths, &me.paths);
    let pending: Vec<&Assessed> =
        assessed.iter().filter(series).filter(|a| a.is_suspect() && unraised.contains(&a.id.to_hex())).collect();
    for a in pending {
        let raised = raise(state, repo, &assessed, a, alarm, now)?;
        if a.id == *id {
            out = AfterBackup { verdict: out.verdict, ..raised };
        }
    }
    // Each backup of the repository renews the object lock of its held snapshots
    // (a new hold included). A failure here must not fail the backup: it is logged
    // and the next backup tries again.
    if let Err(e) = extend_holds(state, repo, now) {
        tracing::warn!("held snapshots' object lock could not be extended: {e}");
    }
    Ok(out)
}

/// Extends the object lock of every snapshot held in `repo` to at least `now` +
/// the repository's lock period (kura_store::retain). Nothing where the
/// repository has no object lock; released holds are no longer extended, so their
/// retention lapses on its own. Returns (snapshot, what was extended).
pub fn extend_holds(
    state: &State,
    repo: &Repository,
    now: DateTime<Utc>,
) -> Result<Vec<(String, kura_store::retain::Extended)>> {
    if repo.backend().lock_period().is_none() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for h in state.active_holds(&repo.config().id)? {
        let Ok(id) = FileId::from_hex(&h.snapshot) else { continue };
        if let Some(x) = kura_store::retain::extend_snapshot(repo, &id, now)? {
            out.push((h.snapshot, x));
        }
    }
    Ok(out)
}

/// A suspect snapshot's alarm: hold the clean point, open (or add to) the draft
/// incident, link it, notify. The link is written after the incident, so a crash
/// before it leaves the alarm to the next backup's `after_backup`.
fn raise(
    state: &mut State,
    repo: &Repository,
    assessed: &[Assessed],
    me: &Assessed,
    alarm: &Alarm<'_>,
    now: DateTime<Utc>,
) -> Result<AfterBackup> {
    let repo_id = repo.config().id.clone();
    let mut out = AfterBackup::default();
    let clean = last_clean_before(assessed, &me.id);
    if let Some(c) = clean {
        let why = format!("last clean snapshot before suspect snapshot {}", me.id.short());
        state.add_hold(&repo_id, &c.id.to_hex(), alarm.system, &why, now)?;
        out.held = Some(c.id.to_hex());
    }
    let incident = open_or_add(state, repo, assessed, me, clean, alarm, now)?;
    if let Some(n) = alarm.notify {
        out.notified = notify(state, n, me, clean, alarm.system, incident, now)?;
    }
    state.set_verdict_incident(&repo_id, &me.id.to_hex(), incident)?;
    out.incident = Some(incident);
    Ok(out)
}

/// The series' open alarm incident (opened by an earlier suspect snapshot and not
/// closed) gets a note; otherwise a draft incident is opened. Either way the
/// timeline is keyed with the repository's key and anchored (best effort).
fn open_or_add(
    state: &mut State,
    repo: &Repository,
    assessed: &[Assessed],
    me: &Assessed,
    clean: Option<&Assessed>,
    alarm: &Alarm<'_>,
    now: DateTime<Utc>,
) -> Result<i64> {
    state.set_chain_key(repo.key());
    let repo_id = repo.config().id.clone();
    let series: HashSet<String> = assessed
        .iter()
        .filter(|a| a.host == me.host && same_paths(&a.paths, &me.paths) && a.id != me.id)
        .map(|a| a.id.to_hex())
        .collect();
    let earlier =
        state.verdicts(&repo_id)?.into_iter().rev().filter(|v| series.contains(&v.snapshot)).find_map(|v| v.incident);
    let still_open = match earlier {
        Some(i) => state.incident(i)?.closed_at.is_none(),
        None => false,
    };
    let what = describe(me, clean, alarm.system);
    let id = match earlier.filter(|_| still_open) {
        Some(i) => {
            state.append_event(i, now, &Event::Note { text: what })?;
            i
        }
        None => {
            let who = alarm.system.map_or_else(|| format!("{} {}", me.host, me.paths.join(" ")), str::to_string);
            let fields = Fields {
                title: Some(format!("Suspect backup of {who}: signs of ransomware")),
                category: Some("suspected ransomware (detected in the backups)".into()),
                discovered_at: Some(now),
                ..Default::default()
            };
            let i = state.open_incident(now, Event::Opened { fields })?;
            state.append_event(i, now, &Event::Note { text: what })?;
            i
        }
    };
    if let Err(e) = crate::incident::chain::anchor(repo, &state.db_id()?, id, &state.chain_rows(id)?, now) {
        tracing::warn!("incident {id} could not be anchored in the repository: {e}");
    }
    Ok(id)
}

/// The evidence in one paragraph: the snapshot, the rules that fired, the clean point.
pub fn describe(me: &Assessed, clean: Option<&Assessed>, system: Option<&str>) -> String {
    let mut s = format!(
        "Snapshot {} of {} ({}) is suspect:",
        me.id.short(),
        system.unwrap_or(&me.host),
        me.time.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if let Verdict::Suspect { reasons } = &me.verdict {
        for r in reasons {
            s.push_str(&format!(" [{}] {}.", r.rule.as_str(), r.detail));
        }
    }
    if let Some(sig) = &me.signals {
        if !sig.examples.is_empty() {
            s.push_str(&format!(" Examples: {}.", sig.examples.join(", ")));
        }
    }
    match clean {
        Some(c) => s.push_str(&format!(
            " Last clean snapshot: {} ({}), held from forget and prune until released.",
            c.id.short(),
            c.time.format("%Y-%m-%d %H:%M:%S UTC")
        )),
        None => s.push_str(" No clean snapshot precedes it."),
    }
    s.push_str(" Open question: real incident or false alarm?");
    s
}

fn notify(
    state: &mut State,
    n: &crate::config::Notify,
    me: &Assessed,
    clean: Option<&Assessed>,
    system: Option<&str>,
    incident: i64,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    use crate::notify::{self, EventKind, Outgoing};
    let mut ev = notify::Event::new(EventKind::SnapshotSuspect, now, describe(me, clean, system));
    ev.system = system.map(str::to_string);
    ev.error = Some(format!("incident {incident}"));
    let o = Outgoing {
        event: ev,
        key: format!("snapshot_suspect:{}", me.id.to_hex()),
        channels: notify::channels(n),
        repeat_after: n.repeat_after,
    };
    state.enqueue(&o, now)
}

/// The active holds of a repository as the forget plan takes them.
pub fn holds_for_forget(state: &State, repo_id: &str) -> Result<Vec<kura_store::forget::Held>> {
    let mut out = Vec::new();
    for h in state.active_holds(repo_id)? {
        let Ok(id) = FileId::from_hex(&h.snapshot) else { continue };
        out.push(kura_store::forget::Held { id, reason: h.reason });
    }
    Ok(out)
}

/// The clean point of the snapshots `mine` selects (one system), from the
/// repository's snapshots, the state's false-positive marks and scan results.
pub fn clean_point_of(
    state: Option<&State>,
    repo: &Repository,
    mine: &dyn Fn(&Snapshot) -> bool,
    rules: &Rules,
    before: Option<DateTime<Utc>>,
) -> Result<clean::CleanPoint> {
    let repo_id = repo.config().id.clone();
    let (fps, scans) = match state {
        Some(s) => (s.false_positives(&repo_id)?, s.scans(&repo_id)?),
        None => Default::default(),
    };
    let all = repo.snapshots()?;
    let assessed = assess_all(&all, &fps, rules);
    let series: Vec<&Assessed> = all.iter().zip(&assessed).filter(|((_, s), _)| mine(s)).map(|(_, a)| a).collect();
    Ok(clean::clean_point(&series, &scans, before))
}

/// What a recovery without a compromised-since restores for each system: the clean
/// point where the detection found something, else the newest snapshot.
pub struct RecoveryChooser {
    assessed: Vec<Assessed>,
    scans: scan::ScanIndex,
}

impl RecoveryChooser {
    /// `all`: the repository's snapshots, oldest first.
    pub fn new(state: &State, repo_id: &str, all: &[(FileId, Snapshot)]) -> Result<RecoveryChooser> {
        let fps = state.false_positives(repo_id)?;
        Ok(RecoveryChooser { assessed: assess_all(all, &fps, &Rules::default()), scans: state.scans(repo_id)? })
    }

    /// The snapshot to restore among those `mine` selects, and a note for the
    /// timeline when it is not the newest one.
    pub fn choose<'a>(
        &self,
        all: &'a [(FileId, Snapshot)],
        mine: &dyn Fn(&Snapshot) -> bool,
        system: &str,
    ) -> (Option<&'a (FileId, Snapshot)>, Option<String>) {
        let series: Vec<&Assessed> =
            all.iter().zip(&self.assessed).filter(|((_, s), _)| mine(s)).map(|(_, a)| a).collect();
        let newest = all.iter().rev().find(|(_, s)| mine(s));
        let cp = clean::clean_point(&series, &self.scans, None);
        let Some(id) = cp.clean_id() else {
            let note = newest.is_some().then(|| {
                format!("system {system}: no clean snapshot (every one is suspect, infected or after one); restoring the newest")
            });
            return (newest, note);
        };
        let chosen = all.iter().find(|(i, _)| *i == id);
        let note = match (chosen, newest) {
            (Some(c), Some(n)) if c.0 != n.0 => Some(format!(
                "system {system}: the incident has no compromised-since; restoring the clean point {} ({}) instead of \
                 the newest snapshot {} (first suspect snapshot at {}); set compromised-since to choose otherwise",
                c.0.short(),
                c.1.time.format("%Y-%m-%d %H:%M:%S UTC"),
                n.0.short(),
                cp.first_suspect.map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            )),
            _ => None,
        };
        (chosen, note)
    }
}

/// When an incident the detection opened is confirmed real: `down_since` and
/// `compromised_since`, where not given, default to the first suspect snapshot's
/// time (the damage was in the backups then; a recovery restores what was taken
/// before it, the clean point). Returns the fields to record and a note saying
/// they are defaults, or `None` when the incident was not opened by detection.
pub fn confirmed_defaults(state: &State, incident: i64, given: &Fields) -> Result<Option<(Fields, String)>> {
    let times = state.suspect_times_of_incident(incident)?;
    let Some((snapshot, first)) = times.first() else { return Ok(None) };
    let current = state.incident(incident)?.fields;
    let mut f = Fields::default();
    let mut named = Vec::new();
    if given.compromised_since.is_none() && current.compromised_since.is_none() {
        f.compromised_since = Some(*first);
        named.push("compromised-since");
    }
    if given.down_since.is_none() {
        f.down_since = Some(*first);
        named.push("down-since");
    }
    if named.is_empty() {
        return Ok(None);
    }
    let note = format!(
        "defaults from the evidence: {} = {} (the first suspect snapshot, {}); change them with `kura incident update`",
        named.join(" and "),
        first.format("%Y-%m-%d %H:%M:%S UTC"),
        &snapshot[..8]
    );
    Ok(Some((f, note)))
}
