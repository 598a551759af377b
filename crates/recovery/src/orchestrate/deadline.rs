//! Deadline arithmetic, pure: every figure counts from the incident clock (the
//! drill's start for a drill).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Whether a system met its deadline: the one verdict of the engine, the
/// reports and the CLI. Its JSON text (`none` for no deadline) is the reports'
/// documented field; the state database stores its own text (`state::codec`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Restored (or, predicted: would be restored) within its deadline.
    Met,
    /// Restored too late, not restored (failed or skipped), or still down past its deadline.
    Missed,
    /// Still in progress and its deadline has not passed yet.
    Pending,
    /// No deadline (priority 0, or none configured).
    #[default]
    #[serde(rename = "none")]
    NoDeadline,
}

impl Verdict {
    /// The reports' text (JSON, CSV, HTML classes): met, missed, pending, none.
    /// The state database stores its own text, mapped in `state::codec`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::Pending => "pending",
            Verdict::NoDeadline => "none",
        }
    }
}

/// Whole seconds from the clock start until a system was back, rounded up: back
/// 0.3 s after the clock started is not "back at once", and a fraction of a
/// second late is a second late. Every verdict and margin counts from this.
pub fn time_secs(clock_start: DateTime<Utc>, back_at: DateTime<Utc>) -> i64 {
    (back_at - clock_start).num_milliseconds().saturating_add(999).div_euclid(1000)
}

/// When a system's deadline falls: the clock start plus its deadline.
pub fn due_at(clock_start: DateTime<Utc>, deadline_secs: Option<i64>) -> Option<DateTime<Utc>> {
    deadline_secs.map(|d| clock_start + Duration::seconds(d))
}

/// Seconds until a system's deadline (negative: past it), only while it is not
/// finished (`finished`: done, failed or skipped) and has a deadline.
pub fn time_left_secs(
    clock_start: DateTime<Utc>,
    deadline_secs: Option<i64>,
    finished: bool,
    now: DateTime<Utc>,
) -> Option<i64> {
    due_at(clock_start, deadline_secs).filter(|_| !finished).map(|d| (d - now).num_seconds())
}

/// Met when back within the deadline (`time <= deadline`; with priority 3's
/// deadline of zero, only if it never went down), with the margin (deadline
/// minus time: positive = to spare, negative = how late).
pub fn verdict_for_time(deadline_secs: Option<i64>, time_secs: i64) -> (Verdict, Option<i64>) {
    match deadline_secs {
        None => (Verdict::NoDeadline, None),
        Some(d) => (if time_secs <= d { Verdict::Met } else { Verdict::Missed }, Some(d - time_secs)),
    }
}

/// The verdict of a system back at `back_at`: [`verdict_for_time`] of [`time_secs`].
pub fn verdict(
    clock_start: DateTime<Utc>,
    deadline: Option<Duration>,
    back_at: DateTime<Utc>,
) -> (Verdict, Option<i64>) {
    verdict_for_time(deadline.map(|d| d.num_seconds()), time_secs(clock_start, back_at))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alert {
    /// At the current pace, the system will be back after its deadline.
    AtRisk,
    /// The deadline has passed and the system is not back.
    Breach,
}

/// The alert for a system that is not back yet. `remaining` is the estimated time
/// still needed (None when unknown, e.g. not started and no estimate).
pub fn alert(
    now: DateTime<Utc>,
    clock_start: DateTime<Utc>,
    deadline: Option<Duration>,
    remaining: Option<Duration>,
) -> Option<Alert> {
    let due = clock_start + deadline?;
    if now > due {
        return Some(Alert::Breach);
    }
    match remaining {
        Some(r) if now + r > due => Some(Alert::AtRisk),
        _ => None,
    }
}

/// A restore's pace is projected only after this much restore time...
pub const PACE_MIN_ELAPSED_SECS: i64 = 10;
/// ...and once it has written this share of the restore plan's bytes (percent)...
pub const PACE_MIN_SHARE_PERCENT: u64 = 5;
/// ...or this many bytes, when that share is larger.
pub const PACE_MIN_BYTES: u64 = 64 << 20;

/// Bytes a restore of `total` bytes must have written before its pace means
/// something: 5% of the plan, at most 64 MiB (and at least one byte).
pub fn pace_min_bytes(total: u64) -> u64 {
    (total / 100 * PACE_MIN_SHARE_PERCENT + total % 100 * PACE_MIN_SHARE_PERCENT / 100).clamp(1, PACE_MIN_BYTES)
}

/// The time a running restore still needs, projected from its pace so far, or None
/// while the sample is too small to mean anything. `done` and `total` are bytes of
/// the restore plan (what this restore writes, not the snapshot's size), `elapsed`
/// the time since the restore itself began (pre hooks do not count). A restore
/// that deduplicates against data written earlier may write a few bytes first and
/// everything else a moment later: projecting from those few bytes would predict
/// it millions of times too slow. So the pace is projected only once at least
/// `PACE_MIN_ELAPSED_SECS` have passed and `pace_min_bytes(total)` were written.
pub fn projected(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    if total > 0 && done >= total {
        return Some(Duration::zero());
    }
    if elapsed < Duration::seconds(PACE_MIN_ELAPSED_SECS) || done < pace_min_bytes(total) {
        return None;
    }
    remaining(done, total, elapsed)
}

/// Remaining time at the current pace: bytes left over the rate so far.
pub fn remaining(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    if done == 0 || total <= done {
        return (total > 0 && done >= total).then(Duration::zero);
    }
    let ms = elapsed.num_milliseconds().max(1) as f64;
    let left = (total - done) as f64 * ms / done as f64;
    Some(Duration::milliseconds(left as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kura_store::clock::{Clock, ManualClock};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn met_missed_and_none() {
        let start = t("2026-03-01T00:00:00Z");
        let clock = ManualClock::new(start);
        clock.advance(Duration::hours(20));
        assert_eq!(verdict(start, Some(Duration::hours(24)), clock.now()), (Verdict::Met, Some(4 * 3600)));
        clock.advance(Duration::hours(5));
        assert_eq!(verdict(start, Some(Duration::hours(24)), clock.now()), (Verdict::Missed, Some(-3600)));
        assert_eq!(verdict(start, None, clock.now()), (Verdict::NoDeadline, None));
        // Priority 3: zero deadline, met only when never down.
        assert_eq!(verdict(start, Some(Duration::zero()), start).0, Verdict::Met);
        assert_eq!(verdict(start, Some(Duration::zero()), start + Duration::seconds(1)).0, Verdict::Missed);
        let late = verdict(start, Some(Duration::zero()), start + Duration::milliseconds(300));
        assert_eq!(late, (Verdict::Missed, Some(-1)), "a fraction of a second late is late");
    }

    #[test]
    fn due_at_and_time_left() {
        let start = t("2026-03-01T00:00:00Z");
        assert_eq!(due_at(start, Some(3600)), Some(t("2026-03-01T01:00:00Z")));
        assert_eq!(due_at(start, None), None);
        let now = t("2026-03-01T00:20:00Z");
        assert_eq!(time_left_secs(start, Some(3600), false, now), Some(2400));
        assert_eq!(time_left_secs(start, Some(600), false, now), Some(-600), "past the deadline: negative");
        assert_eq!(time_left_secs(start, Some(3600), true, now), None, "finished systems have none");
        assert_eq!(time_left_secs(start, None, false, now), None);
    }

    #[test]
    fn at_risk_and_breach() {
        let start = t("2026-03-01T00:00:00Z");
        let clock = ManualClock::new(start + Duration::hours(10));
        let d = Some(Duration::hours(24));
        assert_eq!(alert(clock.now(), start, d, Some(Duration::hours(2))), None);
        assert_eq!(alert(clock.now(), start, d, Some(Duration::hours(15))), Some(Alert::AtRisk));
        assert_eq!(alert(clock.now(), start, d, None), None);
        clock.advance(Duration::hours(15));
        assert_eq!(alert(clock.now(), start, d, None), Some(Alert::Breach));
        assert_eq!(alert(clock.now(), start, None, None), None);
    }

    #[test]
    fn no_projection_until_the_sample_means_something() {
        let start = t("2026-03-01T00:00:00Z");
        let clock = ManualClock::new(start);
        let restore_began = clock.now();
        let d = Some(Duration::hours(24));
        let gib = 1u64 << 30;
        // A deduplicating system: 4 bytes of a 1 GiB plan written first. Projected
        // from that it would need years; no projection, no alert.
        clock.advance(Duration::milliseconds(100));
        assert_eq!(projected(4, gib, clock.now() - restore_began), None);
        clock.advance(Duration::seconds(30));
        assert_eq!(projected(4, gib, clock.now() - restore_began), None, "4 bytes are no sample");
        assert_eq!(alert(clock.now(), start, d, projected(4, gib, clock.now() - restore_began)), None);
        // Done in 0.1 s: nothing left, whatever the elapsed time.
        assert_eq!(projected(gib, gib, Duration::milliseconds(100)), Some(Duration::zero()));
        // Enough bytes but too little time: startup costs dominate, no projection.
        assert_eq!(projected(gib / 2, gib, Duration::seconds(2)), None);

        // A really slow system: 64 MiB of 100 GiB in 10 minutes needs days more.
        let slow = ManualClock::new(start);
        slow.advance(Duration::minutes(10));
        let left = projected(64 << 20, 100 * gib, slow.now() - start).expect("enough sample to project");
        assert!(left > Duration::days(10), "{left}");
        assert_eq!(alert(slow.now(), start, d, Some(left)), Some(Alert::AtRisk));
        // Just under the sample: not yet.
        assert_eq!(projected((64 << 20) - 1, 100 * gib, slow.now() - start), None);
    }

    #[test]
    fn pace_sample_is_five_percent_of_the_plan_capped_at_64_mib() {
        assert_eq!(pace_min_bytes(1000), 50);
        assert_eq!(pace_min_bytes(10), 1);
        assert_eq!(pace_min_bytes(0), 1);
        assert_eq!(pace_min_bytes(1 << 40), PACE_MIN_BYTES);
        assert_eq!(pace_min_bytes(u64::MAX), PACE_MIN_BYTES);
        // A small plan is projected on 5% of it.
        assert_eq!(projected(50, 1000, Duration::seconds(10)), Some(Duration::seconds(190)));
        assert_eq!(projected(49, 1000, Duration::seconds(10)), None);
    }

    #[test]
    fn pace_estimate() {
        assert_eq!(remaining(25, 100, Duration::seconds(10)), Some(Duration::seconds(30)));
        assert_eq!(remaining(0, 100, Duration::seconds(10)), None);
        assert_eq!(remaining(100, 100, Duration::seconds(10)), Some(Duration::zero()));
    }
}
