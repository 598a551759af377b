//! The report's arithmetic: times from the clock start, met/missed and margins,
//! RPO, tier summaries and the monthly trend. Pure functions, no I/O.

use chrono::{DateTime, Datelike, TimeZone, Utc};

use super::{PeriodEntry, Summary, SystemRow, SystemState, TierSummary, TrendPoint, Verdict};
use crate::orchestrate::deadline;
use kura_store::types::Priority;

/// Met or missed, and the margin (deadline minus time; positive = early).
///
/// * No deadline (priority 0): `NoDeadline`, no margin.
/// * A time (restored, unaffected = 0, or predicted): met when `time <= deadline`.
///   With the priority-3 deadline of 0 this means met only if it never went down.
/// * Failed or skipped: missed (it was not restored by this run), no margin.
/// * Still in progress (or done without an end time): missed once `elapsed`
///   exceeds the deadline, else pending; the margin is deadline minus elapsed
///   (time left, or how far past the deadline it already is).
pub fn deadline_verdict(
    deadline_secs: Option<i64>,
    state: SystemState,
    time_secs: Option<i64>,
    elapsed_secs: Option<i64>,
) -> (Verdict, Option<i64>) {
    let Some(deadline) = deadline_secs else {
        return (Verdict::NoDeadline, None);
    };
    if let Some(t) = time_secs {
        return deadline::verdict_for_time(Some(deadline), t);
    }
    match state {
        SystemState::Failed | SystemState::Skipped => (Verdict::Missed, None),
        _ => match elapsed_secs {
            Some(e) if e > deadline => (Verdict::Missed, Some(deadline - e)),
            Some(e) => (Verdict::Pending, Some(deadline - e)),
            None => (Verdict::Pending, None),
        },
    }
}

fn secs_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_seconds()
}

/// Fills a row's computed fields, with deadlines counted from `clock_start` and
/// `now` as the time for systems still in progress.
pub(super) fn derive_row(row: &mut SystemRow, clock_start: Option<DateTime<Utc>>, now: DateTime<Utc>) {
    if !row.predicted {
        row.start_secs = match (clock_start, row.started_at) {
            (Some(c), Some(s)) => Some(secs_between(c, s)),
            _ => None,
        };
        row.time_secs = match row.state {
            SystemState::Unaffected => Some(0),
            SystemState::Done => match (clock_start, row.ended_at) {
                (Some(c), Some(e)) => Some(deadline::time_secs(c, e)),
                _ => None,
            },
            _ => None,
        };
    }
    row.restore_secs = match (row.started_at, row.ended_at) {
        (Some(s), Some(e)) => Some(secs_between(s, e).max(0)),
        _ => None,
    };
    row.throughput_bps = match (row.bytes, row.restore_secs) {
        (Some(b), Some(d)) if d > 0 => Some(b / d as u64),
        _ => None,
    };
    let elapsed = if row.predicted { None } else { clock_start.map(|c| secs_between(c, now)) };
    let (verdict, margin) = deadline_verdict(row.deadline_secs, row.state, row.time_secs, elapsed);
    row.verdict = verdict;
    row.margin_secs = margin;
    row.rpo_secs = match (clock_start, row.snapshot_time) {
        (Some(c), Some(s)) => Some(secs_between(s, c).max(0)),
        _ => None,
    };
    // A failover is judged on the data lost too: both within the tolerance.
    if let (true, Some(tol), Some(lost)) = (row.failover, row.deadline_secs, row.rpo_secs) {
        if row.verdict == Verdict::Met && lost > tol {
            row.verdict = Verdict::Missed;
            row.margin_secs = Some(tol - lost);
        }
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn combine_verdict(met: usize, missed: usize, pending: usize) -> Verdict {
    if missed > 0 {
        Verdict::Missed
    } else if pending > 0 {
        Verdict::Pending
    } else if met > 0 {
        Verdict::Met
    } else {
        Verdict::NoDeadline
    }
}

/// Counts and extremes over `rows` (whose computed fields are filled).
pub fn overall_summary(rows: &[SystemRow]) -> Summary {
    let mut s = Summary { systems: rows.len(), ..Summary::default() };
    for r in rows {
        match r.verdict {
            Verdict::Met => s.met += 1,
            Verdict::Missed => s.missed += 1,
            Verdict::Pending => s.pending += 1,
            Verdict::NoDeadline => s.no_deadline += 1,
        }
        match r.state {
            SystemState::Failed => s.failed += 1,
            SystemState::Skipped => s.skipped += 1,
            _ => {}
        }
        s.predicted |= r.predicted;
        if r.deadline_secs.is_some() {
            s.worst_margin_secs = min_opt(s.worst_margin_secs, r.margin_secs);
        }
        s.longest_time_secs = max_opt(s.longest_time_secs, r.time_secs);
        s.worst_rpo_secs = max_opt(s.worst_rpo_secs, r.rpo_secs);
        s.bytes += r.bytes.unwrap_or(0);
    }
    s.verdict = combine_verdict(s.met, s.missed, s.pending);
    s
}

/// One summary per priority present in `rows`, highest priority first.
pub fn tier_summary(rows: &[SystemRow]) -> Vec<TierSummary> {
    let mut out = Vec::new();
    for p in Priority::ALL {
        let tier: Vec<SystemRow> = rows.iter().filter(|r| r.priority == p).cloned().collect();
        if tier.is_empty() {
            continue;
        }
        let s = overall_summary(&tier);
        let deadline_secs = tier.iter().filter_map(|r| r.deadline_secs).min();
        out.push(TierSummary {
            priority: p,
            deadline_secs,
            verdict: s.verdict,
            systems: s.systems,
            met: s.met,
            missed: s.missed,
            pending: s.pending,
            no_deadline: s.no_deadline,
            failed: s.failed,
            skipped: s.skipped,
            predicted: s.predicted,
            worst_margin_secs: s.worst_margin_secs,
            longest_time_secs: s.longest_time_secs,
        });
    }
    out
}

fn month_start(year: i32, month: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single().expect("the first of a month at midnight UTC exists")
}

fn next_month(year: i32, month: u32) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

/// One point per calendar month (UTC) from `since`'s month to the month of the
/// last second before `until` (`until` is exclusive), empty months included, over the entries whose clock start falls in it. `entries`
/// must have their computed fields filled.
pub fn trend(since: DateTime<Utc>, until: DateTime<Utc>, entries: &[PeriodEntry]) -> Vec<TrendPoint> {
    let mut out = Vec::new();
    if until <= since {
        return out;
    }
    let (mut y, mut m) = (since.year(), since.month());
    let last_second = until - chrono::Duration::seconds(1);
    let last = (last_second.year(), last_second.month());
    loop {
        let start = month_start(y, m);
        let (ny, nm) = next_month(y, m);
        let end = month_start(ny, nm);
        let mut p = TrendPoint {
            month: format!("{y:04}-{m:02}"),
            runs: 0,
            incidents: 0,
            drills: 0,
            met: 0,
            missed: 0,
            met_pct: None,
            worst_margin_secs: None,
        };
        for e in entries.iter().filter(|e| e.at >= start && e.at < end) {
            p.runs += 1;
            match e.kind {
                super::EntryKind::Incident => p.incidents += 1,
                super::EntryKind::Drill => p.drills += 1,
            }
            p.met += e.summary.met;
            p.missed += e.summary.missed;
            p.worst_margin_secs = min_opt(p.worst_margin_secs, e.summary.worst_margin_secs);
        }
        if p.met + p.missed > 0 {
            p.met_pct = Some(p.met as f64 * 100.0 / (p.met + p.missed) as f64);
        }
        out.push(p);
        if (y, m) == last {
            break;
        }
        (y, m) = (ny, nm);
    }
    out
}
