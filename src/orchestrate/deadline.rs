//! Deadline arithmetic, pure: every figure counts from the incident clock (the
//! drill's start for a drill).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// No deadline (priority 0).
    NoDeadline,
    Met,
    Missed,
}

/// Met or missed, and the margin in seconds (positive: time to spare; negative:
/// how late). Priority 3's deadline of zero is met only if the system never went
/// down, that is, it was back at the clock start itself.
pub fn verdict(
    clock_start: DateTime<Utc>,
    deadline: Option<Duration>,
    back_at: DateTime<Utc>,
) -> (Verdict, Option<i64>) {
    match deadline {
        None => (Verdict::NoDeadline, None),
        Some(d) => {
            let spare = clock_start + d - back_at;
            // Rounded down: a fraction of a second late is a second late, not "0 s to spare".
            let margin = spare.num_milliseconds().div_euclid(1000);
            (if spare >= Duration::zero() { Verdict::Met } else { Verdict::Missed }, Some(margin))
        }
    }
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
    use crate::clock::{Clock, ManualClock};

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
    fn pace_estimate() {
        assert_eq!(remaining(25, 100, Duration::seconds(10)), Some(Duration::seconds(30)));
        assert_eq!(remaining(0, 100, Duration::seconds(10)), None);
        assert_eq!(remaining(100, 100, Duration::seconds(10)), Some(Duration::zero()));
    }
}
