//! Retention policies: which snapshots `kura forget` keeps, and why.
//!
//! The policy (`apply`) and the plan (`plan`, `plan_named`) are pure: no I/O and no
//! clock; `execute` alone deletes, and only what a plan names. The same snapshots
//! and policy always give the same decision, so `forget --dry-run` shows exactly what a real run would do, and the
//! caller can compute every group's decision before it deletes anything.
//!
//! The rules are restic's (docs/RETENTION.md). Snapshots are grouped (by default by
//! host and sorted path list) and each group is decided on its own, newest first:
//! * `last N` keeps the N newest snapshots;
//! * `hourly`/`daily`/`weekly`/`monthly`/`yearly N` keep the newest snapshot of each
//!   of the N newest buckets that hold a snapshot. Buckets are in UTC, so that the
//!   decision does not depend on the machine's time zone or on daylight saving;
//!   weeks are ISO weeks (Monday to Sunday);
//! * `within D` keeps every snapshot newer than D before the group's *newest*
//!   snapshot, not before now: a backup schedule that stopped does not make the
//!   policy eat its last snapshots;
//! * `tag T` keeps every snapshot that has tag T.
//!
//! A snapshot is kept if any rule keeps it, and carries every reason that applies.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, Months, TimeDelta, Utc};
use serde::{Serialize, Serializer};

use crate::error::{Error, Result};
use crate::repo::snapshot::Snapshot;
use crate::types::FileId;

mod execute;
mod plan;

pub use execute::{execute, ForgetOutcome};
pub use plan::{plan, plan_named, ForgetPlan, Held};

/// A calendar bucket of the time-based rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Span {
    pub const ALL: [Span; 5] = [Span::Hourly, Span::Daily, Span::Weekly, Span::Monthly, Span::Yearly];

    pub fn name(self) -> &'static str {
        match self {
            Span::Hourly => "hourly",
            Span::Daily => "daily",
            Span::Weekly => "weekly",
            Span::Monthly => "monthly",
            Span::Yearly => "yearly",
        }
    }

    /// The UTC bucket `t` falls in, as people read it: `2026-11-25 14:00`,
    /// `2026-11-25`, `2026-W48` (ISO week-year and week), `2026-11`, `2026`.
    /// Buckets only grow with time, so in a newest-first list equal buckets are adjacent.
    pub fn bucket(self, t: DateTime<Utc>) -> String {
        let format = match self {
            Span::Hourly => "%Y-%m-%d %H:00",
            Span::Daily => "%Y-%m-%d",
            Span::Weekly => "%G-W%V",
            Span::Monthly => "%Y-%m",
            Span::Yearly => "%Y",
        };
        t.format(format).to_string()
    }
}

/// A `--keep-within` duration: calendar years, months and days, then hours, written
/// as restic writes them (`2d`, `36h`, `1y2m3d`; `m` is months, not minutes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Within {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Within {
    /// Snapshots strictly newer than this are kept. Months are calendar months: one
    /// month before March 31 is February 28 (or 29). `None` when the duration reaches
    /// past the representable time range: every snapshot is within it.
    pub fn cutoff(&self, newest: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let months = self.years.checked_mul(12)?.checked_add(self.months)?;
        newest
            .checked_sub_months(Months::new(months))?
            .checked_sub_days(Days::new(self.days.into()))?
            .checked_sub_signed(TimeDelta::try_hours(self.hours.into())?)
    }

    pub fn is_zero(&self) -> bool {
        *self == Within::default()
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [(self.years, 'y'), (self.months, 'm'), (self.days, 'd'), (self.hours, 'h')] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        if self.is_zero() {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

impl FromStr for Within {
    type Err = Error;

    /// Numbers each followed by a unit: `y` years, `m` months, `d` days, `h` hours.
    /// A unit may repeat (`1d12h1d` is `2d12h`). Zero is refused: it would keep nothing.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| {
            Error::invalid(
                format!("duration {s:?}"),
                format!("{reason}; write numbers with units y (years), m (months), d (days), h (hours), as in 2d, 36h or 1y2m3d"),
            )
        };
        let mut w = Within::default();
        let mut rest = s;
        if rest.is_empty() {
            return Err(bad("it is empty".into()));
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            let (num, after) = rest.split_at(digits);
            let Some(unit) = after.chars().next() else {
                return Err(bad(format!("{num:?} has no unit")));
            };
            if num.is_empty() {
                return Err(bad(format!("expected a number before {unit:?}")));
            }
            let n: u32 = num.parse().map_err(|_| bad(format!("{num} is too large")))?;
            let field = match unit {
                'y' => &mut w.years,
                'm' => &mut w.months,
                'd' => &mut w.days,
                'h' => &mut w.hours,
                other => return Err(bad(format!("unknown unit {other:?}"))),
            };
            *field = field.checked_add(n).ok_or_else(|| bad(format!("{num}{unit} is too large")))?;
            rest = &after[unit.len_utf8()..];
        }
        if w.is_zero() {
            return Err(bad("it is zero, which would keep nothing".into()));
        }
        Ok(w)
    }
}

/// What makes two snapshots share a policy: same host, same sorted paths, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
}

impl Default for GroupBy {
    /// Host and paths: the same grouping that picks a backup's parent.
    fn default() -> Self {
        GroupBy { host: true, paths: true }
    }
}

impl FromStr for GroupBy {
    type Err = Error;

    /// `host`, `paths`, or both separated by a comma, in either order.
    fn from_str(s: &str) -> Result<Self> {
        let mut g = GroupBy { host: false, paths: false };
        for part in s.split(',') {
            match part.trim() {
                "host" => g.host = true,
                "paths" => g.paths = true,
                other => {
                    return Err(Error::invalid(
                        "--group-by",
                        format!("{other:?} is not a grouping: use host, paths or host,paths"),
                    ))
                }
            }
        }
        Ok(g)
    }
}

impl GroupBy {
    fn key(&self, s: &Snapshot) -> GroupKey {
        GroupKey {
            host: self.host.then(|| s.host.clone()),
            paths: self.paths.then(|| {
                let mut p = s.paths.clone();
                p.sort();
                p
            }),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    host: Option<String>,
    paths: Option<Vec<String>>,
}

/// A retention policy. Counts of 0 and `within: None` mean "rule not given".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<Within>,
    /// Keep snapshots that have any of these tags.
    pub tags: Vec<String>,
    pub group_by: GroupBy,
}

impl Policy {
    /// True when no rule would keep anything: applying it would remove every snapshot.
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && Span::ALL.iter().all(|&s| self.count(s) == 0)
            && self.within.is_none_or(|w| w.is_zero())
            && self.tags.is_empty()
    }

    pub fn count(&self, span: Span) -> u32 {
        match span {
            Span::Hourly => self.hourly,
            Span::Daily => self.daily,
            Span::Weekly => self.weekly,
            Span::Monthly => self.monthly,
            Span::Yearly => self.yearly,
        }
    }
}

/// Why a snapshot is kept; shown as `last`, `daily 2026-11-25`, `within 2d`, `tag monthly`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Last,
    /// The newest snapshot of this bucket.
    Bucket(Span, String),
    Within(Within),
    Tag(String),
    /// Held (kura_recovery::detect: a system's last clean snapshot after a suspect
    /// one), whatever the policy says, until an operator releases it.
    Held(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Last => f.write_str("last"),
            Reason::Bucket(span, bucket) => write!(f, "{} {bucket}", span.name()),
            Reason::Within(w) => write!(f, "within {w}"),
            Reason::Tag(t) => write!(f, "tag {t}"),
            Reason::Held(why) => write!(f, "held: {why}"),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A kept snapshot: its position in the slice given to `apply`, and why it stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub index: usize,
    /// Never empty.
    pub reasons: Vec<Reason>,
}

/// The decision for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDecision {
    /// The group's host, when grouping by host.
    pub host: Option<String>,
    /// The group's sorted paths, when grouping by paths.
    pub paths: Option<Vec<String>>,
    /// Newest first.
    pub keep: Vec<Kept>,
    /// Positions in the slice given to `apply`, newest first.
    pub remove: Vec<usize>,
}

/// Decides, group by group, which snapshots the policy keeps and which it removes.
/// Groups come sorted by host, then paths. Every input snapshot lands in exactly one
/// group's `keep` or `remove`. A policy without any rule is refused: it would remove
/// every snapshot, which is never what someone who forgot an option meant.
pub fn apply(snapshots: &[(FileId, Snapshot)], policy: &Policy) -> Result<Vec<GroupDecision>> {
    if policy.is_empty() {
        return Err(Error::invalid("retention policy", "no --keep-* rule given; refusing to remove every snapshot"));
    }
    let mut groups: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, (_, s)) in snapshots.iter().enumerate() {
        groups.entry(policy.group_by.key(s)).or_default().push(i);
    }
    let decisions = groups
        .into_iter()
        .map(|(key, mut members)| {
            // Newest first; equal times by id, so that the input order never matters.
            members.sort_by(|&a, &b| {
                let ((ia, sa), (ib, sb)) = (&snapshots[a], &snapshots[b]);
                sb.time.cmp(&sa.time).then(ib.cmp(ia))
            });
            decide(key, &members, snapshots, policy)
        })
        .collect();
    Ok(decisions)
}

/// One group; `members` are indexes into `snapshots`, newest first, never empty.
fn decide(key: GroupKey, members: &[usize], snapshots: &[(FileId, Snapshot)], policy: &Policy) -> GroupDecision {
    let snap = |pos: usize| &snapshots[members[pos]].1;
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); members.len()];

    for r in reasons.iter_mut().take(policy.last as usize) {
        r.push(Reason::Last);
    }
    for span in Span::ALL {
        let mut left = policy.count(span);
        let mut previous: Option<String> = None;
        for (pos, r) in reasons.iter_mut().enumerate() {
            if left == 0 {
                break;
            }
            let bucket = span.bucket(snap(pos).time);
            if previous.as_ref() != Some(&bucket) {
                previous = Some(bucket.clone());
                r.push(Reason::Bucket(span, bucket));
                left -= 1;
            }
        }
    }
    if let Some(w) = policy.within.filter(|w| !w.is_zero()) {
        let cutoff = w.cutoff(snap(0).time);
        for (pos, r) in reasons.iter_mut().enumerate() {
            if cutoff.is_none_or(|c| snap(pos).time > c) {
                r.push(Reason::Within(w));
            }
        }
    }
    for (k, tag) in policy.tags.iter().enumerate() {
        if policy.tags[..k].contains(tag) {
            continue;
        }
        for (pos, r) in reasons.iter_mut().enumerate() {
            if snap(pos).has_tag(tag) {
                r.push(Reason::Tag(tag.clone()));
            }
        }
    }

    let mut keep = Vec::new();
    let mut remove = Vec::new();
    for (pos, r) in reasons.into_iter().enumerate() {
        if r.is_empty() {
            remove.push(members[pos]);
        } else {
            keep.push(Kept { index: members[pos], reasons: r });
        }
    }
    GroupDecision { host: key.host, paths: key.paths, keep, remove }
}

#[cfg(test)]
mod tests;
