//! When jobs are due, and which systems are late: pure decisions, no I/O.
//!
//! The daemon asks [`decide`] on every tick with the job's cron schedule, the slot
//! its last run was for (persisted in the state database), the moment the daemon
//! started watching the job, the catch-up policy and the clock's `now`:
//!
//! * slots that passed while the daemon was watching are *live*: the job runs once
//!   for the latest of them (several live slots collapse into one run when the
//!   previous run was still going: runs of one job never overlap, they are
//!   deferred and coalesced);
//! * slots that passed before the daemon started watching were *missed* (the daemon
//!   was down): with [`CatchUp::Once`] the job runs once for the latest of them,
//!   however many there were; with [`CatchUp::Skip`] they are skipped and the job
//!   waits for its next slot;
//! * a job that never ran has no missed slots: it starts with its first slot after
//!   the daemon saw it.
//!
//! Cron expressions are evaluated in the time zone passed in (the daemon passes the
//! machine's local zone), so that `0 0 2 * * *` means 02:00 on the wall clock.

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};

pub use crate::config::CatchUp;

/// Why a run started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Its slot came while the daemon was running.
    Schedule,
    /// Its slot passed while the daemon was down (once for all missed slots).
    CatchUp,
    /// `kura run`.
    Manual,
}

impl Trigger {
    /// Its stored text (`state::codec`, the one mapping), for logs.
    pub fn as_str(self) -> &'static str {
        crate::state::codec::Stored::stored(self)
    }
}

/// The kinds of job the daemon schedules and `job_runs` records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backup,
    Replicate,
    Prune,
    Check,
    Drill,
}

impl JobKind {
    pub const ALL: [JobKind; 5] = [JobKind::Backup, JobKind::Replicate, JobKind::Prune, JobKind::Check, JobKind::Drill];

    /// Its stored text (`state::codec`, the one mapping): `backup`, `prune`, ...
    pub fn as_str(self) -> &'static str {
        crate::state::codec::Stored::stored(self)
    }

    /// What the job needs from the repository it works on.
    ///
    /// Backups only add objects and announce themselves with shared lock objects; check
    /// and drill read; replicate reads this repository. All of these run side by side.
    /// Prune removes and repacks data under the exclusive lock: the daemon runs it
    /// apart from checks, copies and drills on the same repository. Backups only add
    /// new objects and prune's two-phase deletion keeps what they may use, so they run
    /// beside prune as beside each other (as many hosts' backups do; docs/RETENTION.md).
    pub fn access(self) -> Access {
        match self {
            JobKind::Prune => Access::Exclusive,
            JobKind::Backup => Access::Free,
            _ => Access::Shared,
        }
    }
}

/// What a job needs from the repository it works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Not gated: runs beside anything (backups).
    Free,
    Shared,
    Exclusive,
}

/// What to do with one job now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is due; `next` is the next slot (none if the expression has no future slot).
    Wait { next: Option<DateTime<Utc>> },
    /// Run once, for `slot`; `missed` slots passed since the last run (1 for a plain
    /// scheduled run; counted up to [`MAX_COUNTED`]).
    Run { slot: DateTime<Utc>, trigger: Trigger, missed: u64 },
    /// Missed slots are dropped (policy `Skip`): remember `slot` as handled, do not run.
    Skip { slot: DateTime<Utc>, missed: u64 },
}

/// Missed slots are counted up to this many (a per-second schedule down for a week
/// has 600 000 of them; the exact number does not matter, only that it ran once).
pub const MAX_COUNTED: u64 = 10_000;

/// The slots of `cron` strictly after `after` (UTC results, evaluated in `tz`).
pub fn slots_after<Tz: TimeZone>(
    cron: &cron::Schedule,
    after: DateTime<Utc>,
    tz: &Tz,
) -> impl Iterator<Item = DateTime<Utc>> {
    cron.after_owned(after.with_timezone(tz)).map(|t| t.with_timezone(&Utc))
}

/// The next slot strictly after `t`.
pub fn next_slot<Tz: TimeZone>(cron: &cron::Schedule, t: DateTime<Utc>, tz: &Tz) -> Option<DateTime<Utc>> {
    slots_after(cron, t, tz).next()
}

/// The latest slot at or before `t`.
pub fn latest_slot<Tz: TimeZone>(cron: &cron::Schedule, t: DateTime<Utc>, tz: &Tz) -> Option<DateTime<Utc>> {
    // Cron works in whole seconds (and misbehaves with fractions): step back from
    // the whole second after `t`, skipping anything later than `t`.
    let probe = t.trunc_subsecs(0) + Duration::seconds(1);
    let mut back = cron.after_owned(probe.with_timezone(tz));
    for _ in 0..3 {
        match back.next_back().map(|x| x.with_timezone(&Utc)) {
            Some(x) if x <= t => return Some(x),
            Some(_) => continue,
            None => return None,
        }
    }
    None
}

/// Decides what one job does at `now`. `last_slot` is the slot its last run was for
/// (`None` if it never ran); `watching_since` is when the daemon started watching this
/// job (its start, or the reload that added the job).
pub fn decide<Tz: TimeZone>(
    cron: &cron::Schedule,
    last_slot: Option<DateTime<Utc>>,
    watching_since: DateTime<Utc>,
    policy: CatchUp,
    now: DateTime<Utc>,
    tz: &Tz,
) -> Decision {
    // A job that never ran starts from the moment it was first watched.
    let baseline = last_slot.unwrap_or(watching_since);
    let first = match next_slot(cron, baseline, tz) {
        Some(f) if f <= now => f,
        other => return Decision::Wait { next: other },
    };
    let latest = latest_slot(cron, now, tz).unwrap_or(first).max(first);
    let missed = slots_after(cron, baseline, tz).take_while(|t| *t <= now).take(MAX_COUNTED as usize).count() as u64;
    if first > watching_since {
        // Every slot since the last run passed while the daemon watched.
        return Decision::Run { slot: latest, trigger: Trigger::Schedule, missed };
    }
    match policy {
        CatchUp::Once => Decision::Run { slot: latest, trigger: Trigger::CatchUp, missed },
        CatchUp::Skip if latest > watching_since => {
            // Slots were missed while down, but the latest came while watching: it is live.
            Decision::Run { slot: latest, trigger: Trigger::Schedule, missed }
        }
        CatchUp::Skip => Decision::Skip { slot: latest, missed },
    }
}

/// A system's recovery point as the RPO watch sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rpo {
    /// Age of the last good backup; `None` if there never was one.
    pub age: Option<Duration>,
    /// The allowed age for the system's priority; `None` = not watched.
    pub max_age: Option<Duration>,
    pub late: bool,
}

/// Is a system late? Its last good backup (ended at `last_good`) is older than
/// `max_age`. A system never backed up counts from `watching_since`: it becomes late
/// once the daemon has watched it for longer than `max_age` without a good backup.
pub fn rpo(
    last_good: Option<DateTime<Utc>>,
    max_age: Option<Duration>,
    watching_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Rpo {
    let age = last_good.map(|t| (now - t).max(Duration::zero()));
    let late = match max_age {
        None => false,
        Some(max) => now - last_good.unwrap_or(watching_since) > max,
    };
    Rpo { age, max_age, late }
}

/// Remembers which systems are late, so that a notification goes out once per
/// transition and not on every tick.
#[derive(Debug, Default)]
pub struct LateTracker {
    late: std::collections::BTreeSet<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    BecameLate,
    BackOnTime,
}

impl LateTracker {
    /// Records the system's current lateness; returns the transition, if any.
    pub fn update(&mut self, system: &str, late: bool) -> Option<Transition> {
        match (late, self.late.contains(system)) {
            (true, false) => {
                self.late.insert(system.to_string());
                Some(Transition::BecameLate)
            }
            (false, true) => {
                self.late.remove(system);
                Some(Transition::BackOnTime)
            }
            _ => None,
        }
    }

    /// Forgets systems no longer configured.
    pub fn retain(&mut self, names: &[&str]) {
        self.late.retain(|n| names.contains(&n.as_str()));
    }
}

#[cfg(test)]
mod tests;
