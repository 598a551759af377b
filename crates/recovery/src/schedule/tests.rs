use std::str::FromStr;

use chrono::{Duration, TimeZone, Utc};

use super::*;
use kura_store::clock::{Clock, ManualClock};

fn cron(expr: &str) -> cron::Schedule {
    cron::Schedule::from_str(expr).unwrap()
}

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, h, m, s).unwrap()
}

/// Drives `decide` like the daemon does: ticks every `step`, records every run,
/// and remembers the slot of each run as the last slot.
fn simulate(
    expr: &str,
    last_slot: Option<DateTime<Utc>>,
    start: DateTime<Utc>,
    policy: CatchUp,
    until: DateTime<Utc>,
    step: Duration,
) -> Vec<(DateTime<Utc>, Trigger, u64)> {
    let c = cron(expr);
    let clock = ManualClock::new(start);
    let mut last = last_slot;
    let mut runs = Vec::new();
    while clock.now() <= until {
        match decide(&c, last, start, policy, clock.now(), &Utc) {
            Decision::Run { slot, trigger, missed } => {
                runs.push((slot, trigger, missed));
                last = Some(slot);
            }
            Decision::Skip { slot, .. } => last = Some(slot),
            Decision::Wait { .. } => {}
        }
        clock.advance(step);
    }
    runs
}

#[test]
fn hourly_job_down_for_a_day_catches_up_once() {
    // Last ran for the 08:00 slot; the daemon comes back the next day at 09:30.
    let last = at(8, 0, 0);
    let start = at(9, 30, 0) + Duration::days(1);
    let runs =
        simulate("0 0 * * * *", Some(last), start, CatchUp::Once, start + Duration::minutes(45), Duration::minutes(1));
    assert_eq!(runs.len(), 2, "{runs:?}");
    // Once at start for the latest missed slot (09:00 the next day), 25 slots missed...
    assert_eq!(runs[0], (at(9, 0, 0) + Duration::days(1), Trigger::CatchUp, 25));
    // ...then the regular 10:00 slot.
    assert_eq!(runs[1], (at(10, 0, 0) + Duration::days(1), Trigger::Schedule, 1));
}

#[test]
fn skip_policy_waits_for_the_next_slot() {
    let last = at(8, 0, 0);
    let start = at(11, 30, 0);
    let c = cron("0 0 * * * *");
    assert_eq!(
        decide(&c, Some(last), start, CatchUp::Skip, start, &Utc),
        Decision::Skip { slot: at(11, 0, 0), missed: 3 }
    );
    let runs = simulate("0 0 * * * *", Some(last), start, CatchUp::Skip, at(12, 30, 0), Duration::minutes(1));
    assert_eq!(runs, vec![(at(12, 0, 0), Trigger::Schedule, 1)]);
}

#[test]
fn a_job_that_never_ran_does_not_catch_up() {
    let start = at(11, 30, 0);
    let c = cron("0 0 * * * *");
    assert_eq!(decide(&c, None, start, CatchUp::Once, start, &Utc), Decision::Wait { next: Some(at(12, 0, 0)) });
    let runs = simulate("0 0 * * * *", None, start, CatchUp::Once, at(13, 0, 0), Duration::seconds(30));
    assert_eq!(runs, vec![(at(12, 0, 0), Trigger::Schedule, 1), (at(13, 0, 0), Trigger::Schedule, 1)]);
}

#[test]
fn no_catch_up_when_nothing_was_missed() {
    // Down from 08:10 to 08:50: the 08:00 slot had run, 09:00 is still ahead.
    let c = cron("0 0 * * * *");
    assert_eq!(
        decide(&c, Some(at(8, 0, 0)), at(8, 50, 0), CatchUp::Once, at(8, 50, 0), &Utc),
        Decision::Wait { next: Some(at(9, 0, 0)) }
    );
}

#[test]
fn slots_passed_during_a_long_run_collapse_into_one_deferred_run() {
    // Every 10 s; the run for 12:00:00 takes 35 s. The daemon does not ask while it
    // runs (no overlap); when it ends, one run follows for the latest slot.
    let c = cron("*/10 * * * * *");
    let start = at(11, 59, 55);
    let clock = ManualClock::new(start);
    clock.set(at(12, 0, 0));
    let d = decide(&c, None, start, CatchUp::Once, clock.now(), &Utc);
    assert_eq!(d, Decision::Run { slot: at(12, 0, 0), trigger: Trigger::Schedule, missed: 1 });
    clock.advance(Duration::seconds(35));
    let d = decide(&c, Some(at(12, 0, 0)), start, CatchUp::Once, clock.now(), &Utc);
    assert_eq!(d, Decision::Run { slot: at(12, 0, 30), trigger: Trigger::Schedule, missed: 3 });
}

#[test]
fn seconds_schedules_and_slot_helpers() {
    let c = cron("*/2 * * * * *");
    assert_eq!(latest_slot(&c, at(12, 0, 3), &Utc), Some(at(12, 0, 2)));
    assert_eq!(latest_slot(&c, at(12, 0, 4), &Utc), Some(at(12, 0, 4)));
    assert_eq!(next_slot(&c, at(12, 0, 4), &Utc), Some(at(12, 0, 6)));
    // Fractions of a second (the real clock has them).
    let ms = Duration::milliseconds(291);
    assert_eq!(latest_slot(&c, at(12, 0, 3) + ms, &Utc), Some(at(12, 0, 2)));
    assert_eq!(latest_slot(&c, at(12, 0, 4) + ms, &Utc), Some(at(12, 0, 4)));
    assert_eq!(next_slot(&c, at(12, 0, 4) + ms, &Utc), Some(at(12, 0, 6)));
    let h = cron("0 0 * * * *");
    assert_eq!(latest_slot(&h, at(12, 59, 59) + ms, &Utc), Some(at(12, 0, 0)));
    assert_eq!(
        decide(&c, Some(at(2, 0, 0)), at(5, 0, 3) + ms, CatchUp::Once, at(5, 0, 3) + ms, &Utc),
        Decision::Run { slot: at(5, 0, 2), trigger: Trigger::CatchUp, missed: 5401 }
    );
    let runs = simulate("*/2 * * * * *", None, at(12, 0, 0), CatchUp::Once, at(12, 0, 10), Duration::milliseconds(500));
    let slots: Vec<_> = runs.iter().map(|r| r.0).collect();
    assert_eq!(slots, vec![at(12, 0, 2), at(12, 0, 4), at(12, 0, 6), at(12, 0, 8), at(12, 0, 10)]);
    assert!(runs.iter().all(|r| r.1 == Trigger::Schedule && r.2 == 1));
}

#[test]
fn missed_slots_are_counted_up_to_a_cap() {
    let c = cron("* * * * * *");
    let last = at(0, 0, 0);
    let start = at(0, 0, 0) + Duration::days(7);
    match decide(&c, Some(last), start, CatchUp::Once, start, &Utc) {
        Decision::Run { slot, trigger, missed } => {
            assert_eq!(slot, start);
            assert_eq!(trigger, Trigger::CatchUp);
            assert_eq!(missed, MAX_COUNTED);
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn cron_in_a_fixed_offset_zone() {
    // 02:00 daily at UTC+2 is 00:00 UTC.
    let tz = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
    let c = cron("0 0 2 * * *");
    assert_eq!(next_slot(&c, at(12, 0, 0), &tz), Some(at(0, 0, 0) + Duration::days(1)));
}

#[test]
fn rpo_lateness_by_priority_age() {
    let now = at(12, 0, 0);
    let since = at(0, 0, 0);
    let max = Some(Duration::hours(1));
    let r = rpo(Some(at(11, 30, 0)), max, since, now);
    assert_eq!(r.age, Some(Duration::minutes(30)));
    assert!(!r.late);
    assert!(rpo(Some(at(10, 59, 59)), max, since, now).late);
    // Never backed up: late once watched for longer than the allowed age.
    assert!(rpo(None, max, since, now).late);
    assert!(!rpo(None, max, at(11, 30, 0), now).late);
    // Not watched.
    assert!(!rpo(Some(at(0, 0, 0)), None, since, now).late);
}

#[test]
fn late_notifications_fire_once_per_transition() {
    let clock = ManualClock::new(at(12, 0, 0));
    let mut t = LateTracker::default();
    let last_good = at(11, 0, 0);
    let mut transitions = Vec::new();
    for _ in 0..180 {
        let r = rpo(Some(last_good), Some(Duration::hours(2)), at(0, 0, 0), clock.now());
        if let Some(x) = t.update("web", r.late) {
            transitions.push((clock.now(), x));
        }
        clock.advance(Duration::minutes(1));
    }
    assert_eq!(transitions, vec![(at(13, 0, 0) + Duration::minutes(1), Transition::BecameLate)]);
    assert_eq!(t.update("web", false), Some(Transition::BackOnTime));
    assert_eq!(t.update("web", false), None);
}

mod props {
    use proptest::prelude::*;

    use super::*;

    const CRONS: [&str; 5] = ["0 */5 * * * *", "0 0 * * * *", "0 15,45 * * * *", "0 30 2 * * *", "0 0 0 1 * *"];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Drives `decide` as the daemon does, with ticks of random length and runs
        /// that outlast some ticks (the daemon does not ask while the job runs):
        /// a decided slot is never in the future, never repeats, is the latest due
        /// one (deferred slots coalesce), catch-up happens at most once and only for
        /// a job that ran before, skipping only drops slots missed before watching.
        #[test]
        fn decisions_follow_the_schedule_rules(
            expr in 0usize..CRONS.len(),
            ran_before in prop::option::of(0i64..(3 * 24 * 60)),
            start_min in 0i64..(24 * 60),
            skip in any::<bool>(),
            ticks in prop::collection::vec((1i64..(6 * 60), any::<bool>()), 1..25),
        ) {
            let c = cron(CRONS[expr]);
            let policy = if skip { CatchUp::Skip } else { CatchUp::Once };
            let start = at(0, 0, 0) + Duration::minutes(start_min);
            let mut last = ran_before.and_then(|m| latest_slot(&c, start - Duration::minutes(m), &Utc));
            let mut now = start;
            let mut catch_ups = 0;
            let mut busy = false;
            for (step, runs_long) in ticks {
                if !busy {
                    let d = decide(&c, last, start, policy, now, &Utc);
                    match d {
                        Decision::Run { slot, trigger, missed } => {
                            prop_assert!(slot <= now, "a slot in the future");
                            prop_assert!(last.is_none_or(|l| slot > l), "a slot ran twice");
                            prop_assert_eq!(latest_slot(&c, slot, &Utc), Some(slot), "not a slot of the schedule");
                            prop_assert!(next_slot(&c, slot, &Utc).is_none_or(|n| n > now), "an older slot ran, not the latest");
                            prop_assert!(missed >= 1);
                            match trigger {
                                Trigger::CatchUp => {
                                    catch_ups += 1;
                                    prop_assert!(ran_before.is_some() && policy == CatchUp::Once);
                                }
                                Trigger::Schedule => {
                                    prop_assert!(slot > start, "a slot missed while down ran as scheduled");
                                }
                                Trigger::Manual => prop_assert!(false, "decide never says manual"),
                            }
                            last = Some(slot);
                            busy = runs_long;
                        }
                        Decision::Skip { slot, .. } => {
                            prop_assert_eq!(policy, CatchUp::Skip);
                            prop_assert!(slot <= start, "only slots missed before watching are skipped");
                            prop_assert!(last.is_none_or(|l| slot > l));
                            last = Some(slot);
                        }
                        Decision::Wait { next } => {
                            prop_assert!(next.is_none_or(|n| n > now), "waiting although a slot is due");
                        }
                    }
                    if !matches!(d, Decision::Wait { .. }) {
                        // One decision covers every slot up to now.
                        let again = decide(&c, last, start, policy, now, &Utc);
                        prop_assert!(matches!(again, Decision::Wait { .. }), "{:?}", again);
                    }
                } else {
                    busy = false;
                }
                now += Duration::minutes(step);
            }
            prop_assert!(catch_ups <= 1, "caught up {} times", catch_ups);
        }
    }
}
