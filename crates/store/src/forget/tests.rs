//! Unit and property tests of the retention policies.
use std::collections::BTreeSet;

use super::*;
use crate::repo::snapshot::Filter;
use crate::types::BlobId;
use proptest::prelude::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Built from JSON so that fields added to `Snapshot` later take their defaults.
fn snap(n: u8, time: DateTime<Utc>, host: &str, paths: &[&str], tags: &[&str]) -> (FileId, Snapshot) {
    let s = serde_json::from_value(serde_json::json!({
        "time": time,
        "host": host,
        "paths": paths,
        "tags": tags,
        "tree": BlobId([0; 32]),
        "program_version": "t",
    }))
    .unwrap();
    (FileId([n; 32]), s)
}

/// One host and path, at the given times; ids are the positions + 1.
fn series(times: &[&str]) -> Vec<(FileId, Snapshot)> {
    times.iter().enumerate().map(|(i, t)| snap(i as u8 + 1, at(t), "h", &["/x"], &[])).collect()
}

fn one_group(list: &[(FileId, Snapshot)], policy: &Policy) -> GroupDecision {
    let mut d = apply(list, policy).unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    d.remove(0)
}

fn kept(d: &GroupDecision) -> Vec<usize> {
    d.keep.iter().map(|k| k.index).collect()
}

fn reasons(d: &GroupDecision, index: usize) -> Vec<String> {
    d.keep.iter().find(|k| k.index == index).unwrap().reasons.iter().map(|r| r.to_string()).collect()
}

#[test]
fn empty_policy_is_refused() {
    let list = series(&["2026-11-25T10:00:00Z"]);
    let err = apply(&list, &Policy::default()).unwrap_err();
    assert!(err.to_string().contains("refusing to remove every snapshot"), "{err}");
    // A zero duration is as empty as no duration.
    let zero = Policy { within: Some(Within::default()), ..Policy::default() };
    assert!(zero.is_empty());
    assert!(apply(&list, &zero).is_err());
    assert!(!Policy { tags: vec!["x".into()], ..Policy::default() }.is_empty());
}

#[test]
fn keep_last_keeps_the_newest_whatever_the_input_order() {
    let list = series(&["2026-11-23T10:00:00Z", "2026-11-25T10:00:00Z", "2026-11-24T10:00:00Z"]);
    let d = one_group(&list, &Policy { last: 2, ..Policy::default() });
    assert_eq!(kept(&d), vec![1, 2]);
    assert_eq!(d.remove, vec![0]);
    assert_eq!(reasons(&d, 1), vec!["last"]);
    // More than there are: all kept.
    let d = one_group(&list, &Policy { last: 10, ..Policy::default() });
    assert!(d.remove.is_empty());
}

#[test]
fn daily_keeps_the_newest_of_each_day_that_has_one() {
    let list = series(&[
        "2026-11-20T08:00:00Z", // 0: day 20
        "2026-11-22T08:00:00Z", // 1: day 22, older
        "2026-11-22T23:59:59Z", // 2: day 22, newest
        "2026-11-25T00:00:00Z", // 3: day 25
        "2026-11-25T12:00:00Z", // 4: day 25, newest
    ]);
    let d = one_group(&list, &Policy { daily: 2, ..Policy::default() });
    // Days without snapshots (23, 24) do not count.
    assert_eq!(kept(&d), vec![4, 2]);
    assert_eq!(d.remove, vec![3, 1, 0]);
    assert_eq!(reasons(&d, 4), vec!["daily 2026-11-25"]);
    assert_eq!(reasons(&d, 2), vec!["daily 2026-11-22"]);
    let d = one_group(&list, &Policy { daily: 3, ..Policy::default() });
    assert_eq!(kept(&d), vec![4, 2, 0]);
}

#[test]
fn buckets_are_utc() {
    // 23:30 at UTC-5 is 04:30 UTC the next day.
    let local = DateTime::parse_from_rfc3339("2026-11-24T23:30:00-05:00").unwrap().with_timezone(&Utc);
    assert_eq!(Span::Daily.bucket(local), "2026-11-25");
    assert_eq!(Span::Hourly.bucket(local), "2026-11-25 04:00");
}

#[test]
fn bucket_labels() {
    let t = at("2026-11-25T14:35:10Z");
    let labels: Vec<String> = Span::ALL.iter().map(|s| s.bucket(t)).collect();
    assert_eq!(labels, ["2026-11-25 14:00", "2026-11-25", "2026-W48", "2026-11", "2026"]);
    // ISO weeks: 2027-01-01 is a Friday in week 53 of 2026; Monday 2027-01-04 starts week 1.
    assert_eq!(Span::Weekly.bucket(at("2027-01-01T00:00:00Z")), "2026-W53");
    assert_eq!(Span::Weekly.bucket(at("2027-01-03T23:59:59Z")), "2026-W53");
    assert_eq!(Span::Weekly.bucket(at("2027-01-04T00:00:00Z")), "2027-W01");
}

#[test]
fn weekly_monthly_yearly_and_hourly() {
    let list = series(&[
        "2025-06-01T10:00:00Z", // 0
        "2026-10-31T10:00:00Z", // 1: Saturday, week 44
        "2026-11-01T10:00:00Z", // 2: Sunday, week 44
        "2026-11-02T10:00:00Z", // 3: Monday, week 45
        "2026-11-02T10:59:00Z", // 4: same hour as 3
        "2026-11-02T11:00:00Z", // 5
    ]);
    let d = one_group(&list, &Policy { weekly: 2, ..Policy::default() });
    assert_eq!(kept(&d), vec![5, 2]);
    assert_eq!(reasons(&d, 2), vec!["weekly 2026-W44"]);
    let d = one_group(&list, &Policy { monthly: 3, ..Policy::default() });
    assert_eq!(kept(&d), vec![5, 1, 0]);
    let d = one_group(&list, &Policy { yearly: 5, ..Policy::default() });
    assert_eq!(kept(&d), vec![5, 0]);
    assert_eq!(reasons(&d, 0), vec!["yearly 2025"]);
    let d = one_group(&list, &Policy { hourly: 2, ..Policy::default() });
    assert_eq!(kept(&d), vec![5, 4]);
    assert_eq!(reasons(&d, 4), vec!["hourly 2026-11-02 10:00"]);
}

#[test]
fn within_is_relative_to_the_newest_snapshot_and_strict() {
    let list = series(&[
        "2020-01-01T00:00:00Z", // 0: years before; "now" does not matter
        "2020-03-01T11:00:00Z", // 1: exactly 2d before the newest: not within
        "2020-03-01T11:00:01Z", // 2
        "2020-03-03T11:00:00Z", // 3: newest
    ]);
    let d = one_group(&list, &Policy { within: Some("2d".parse().unwrap()), ..Policy::default() });
    assert_eq!(kept(&d), vec![3, 2]);
    assert_eq!(reasons(&d, 2), vec!["within 2d"]);
    let d = one_group(&list, &Policy { within: Some("1y".parse().unwrap()), ..Policy::default() });
    assert_eq!(kept(&d), vec![3, 2, 1, 0]);
    // A duration beyond the calendar keeps everything instead of failing.
    let huge = Within { years: u32::MAX, ..Within::default() };
    assert_eq!(huge.cutoff(at("2020-01-01T00:00:00Z")), None);
    let d = one_group(&list, &Policy { within: Some(huge), ..Policy::default() });
    assert!(d.remove.is_empty());
}

#[test]
fn within_uses_calendar_months() {
    let w: Within = "1m".parse().unwrap();
    assert_eq!(w.cutoff(at("2026-03-31T12:00:00Z")), Some(at("2026-02-28T12:00:00Z")));
    let w: Within = "1y2m3d4h".parse().unwrap();
    assert_eq!(w.cutoff(at("2026-06-10T12:00:00Z")), Some(at("2025-04-07T08:00:00Z")));
}

#[test]
fn parse_within() {
    let w: Within = "1y2m3d".parse().unwrap();
    assert_eq!(w, Within { years: 1, months: 2, days: 3, hours: 0 });
    assert_eq!(w.to_string(), "1y2m3d");
    assert_eq!("36h".parse::<Within>().unwrap().to_string(), "36h");
    assert_eq!("1d12h1d".parse::<Within>().unwrap().to_string(), "2d12h");
    for (bad, why) in [
        ("", "empty"),
        ("2", "no unit"),
        ("2x", "unknown unit 'x'"),
        ("d", "expected a number"),
        ("2 d", "unknown unit ' '"),
        ("-2d", "expected a number"),
        ("0d", "zero"),
        ("99999999999d", "too large"),
        ("4294967295d1d", "too large"),
        ("2dé", "expected a number"),
    ] {
        let err = bad.parse::<Within>().unwrap_err().to_string();
        assert!(err.contains(why) && err.contains("1y2m3d"), "{bad:?}: {err}");
    }
}

#[test]
fn parse_group_by() {
    assert_eq!("host".parse::<GroupBy>().unwrap(), GroupBy { host: true, paths: false });
    assert_eq!("paths".parse::<GroupBy>().unwrap(), GroupBy { host: false, paths: true });
    assert_eq!("paths,host".parse::<GroupBy>().unwrap(), GroupBy::default());
    assert_eq!("host,paths".parse::<GroupBy>().unwrap(), GroupBy::default());
    for bad in ["", "tags", "host,", "host;paths"] {
        assert!(bad.parse::<GroupBy>().is_err(), "{bad:?}");
    }
}

#[test]
fn tags_keep_any_match_once() {
    let t = at("2026-11-25T10:00:00Z");
    let list = vec![
        snap(1, t, "h", &["/x"], &["monthly"]),
        snap(2, t + TimeDelta::hours(1), "h", &["/x"], &["daily"]),
        snap(3, t + TimeDelta::hours(2), "h", &["/x"], &["daily", "monthly"]),
        snap(4, t + TimeDelta::hours(3), "h", &["/x"], &[]),
    ];
    let policy = Policy { tags: vec!["monthly".into(), "yearly".into(), "monthly".into()], ..Policy::default() };
    let d = one_group(&list, &policy);
    assert_eq!(kept(&d), vec![2, 0]);
    assert_eq!(d.remove, vec![3, 1]);
    assert_eq!(reasons(&d, 2), vec!["tag monthly"]);
}

#[test]
fn every_reason_is_listed() {
    let t = at("2026-11-25T10:00:00Z");
    let list = vec![snap(1, t, "h", &["/x"], &["keep"])];
    let policy = Policy {
        last: 1,
        hourly: 1,
        daily: 1,
        weekly: 1,
        monthly: 1,
        yearly: 1,
        within: Some("1h".parse().unwrap()),
        tags: vec!["keep".into()],
        group_by: GroupBy::default(),
    };
    let d = one_group(&list, &policy);
    assert_eq!(
        reasons(&d, 0),
        vec![
            "last",
            "hourly 2026-11-25 10:00",
            "daily 2026-11-25",
            "weekly 2026-W48",
            "monthly 2026-11",
            "yearly 2026",
            "within 1h",
            "tag keep"
        ]
    );
    assert_eq!(serde_json::to_string(&d.keep[0].reasons[1]).unwrap(), r#""hourly 2026-11-25 10:00""#);
}

#[test]
fn groups_by_host_and_sorted_paths() {
    let t = at("2026-11-25T10:00:00Z");
    let list = vec![
        snap(1, t, "a", &["/x", "/y"], &[]),
        snap(2, t + TimeDelta::hours(1), "a", &["/y", "/x"], &[]),
        snap(3, t + TimeDelta::hours(2), "b", &["/x", "/y"], &[]),
        snap(4, t + TimeDelta::hours(3), "a", &["/z"], &[]),
    ];
    let last1 = Policy { last: 1, ..Policy::default() };
    let d = apply(&list, &last1).unwrap();
    let summary: Vec<_> = d.iter().map(|g| (g.host.clone(), g.paths.clone(), kept(g), g.remove.clone())).collect();
    let paths = |p: &[&str]| Some(p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        summary,
        vec![
            (Some("a".into()), paths(&["/x", "/y"]), vec![1], vec![0]),
            (Some("a".into()), paths(&["/z"]), vec![3], vec![]),
            (Some("b".into()), paths(&["/x", "/y"]), vec![2], vec![]),
        ]
    );
    let by_host = Policy { group_by: "host".parse().unwrap(), ..last1.clone() };
    let d = apply(&list, &by_host).unwrap();
    let summary: Vec<_> = d.iter().map(|g| (g.host.clone(), g.paths.clone(), kept(g))).collect();
    assert_eq!(summary, vec![(Some("a".into()), None, vec![3]), (Some("b".into()), None, vec![2])]);
    let by_paths = Policy { group_by: "paths".parse().unwrap(), ..last1 };
    let d = apply(&list, &by_paths).unwrap();
    let summary: Vec<_> = d.iter().map(|g| (g.host.clone(), g.paths.clone(), kept(g))).collect();
    assert_eq!(summary, vec![(None, paths(&["/x", "/y"]), vec![2]), (None, paths(&["/z"]), vec![3])]);
}

#[test]
fn nothing_in_nothing_out() {
    assert!(apply(&[], &Policy { last: 1, ..Policy::default() }).unwrap().is_empty());
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    (
        prop::array::uniform6(0u32..4),
        prop::option::of((0u32..2, 0u32..3, 0u32..10, 0u32..30)),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..2),
        prop::sample::select(vec!["host", "paths", "host,paths"]),
    )
        .prop_map(|(n, within, tags, group_by)| Policy {
            last: n[0],
            hourly: n[1],
            daily: n[2],
            weekly: n[3],
            monthly: n[4],
            yearly: n[5],
            within: within.map(|(years, months, days, hours)| Within { years, months, days, hours }),
            tags: tags.into_iter().map(String::from).collect(),
            group_by: group_by.parse().unwrap(),
        })
}

fn snapshots_strategy() -> impl Strategy<Value = Vec<(FileId, Snapshot)>> {
    // Times within about three years, often close together so buckets collide.
    let one = (
        0i64..100_000_000,
        prop::sample::select(vec!["h1", "h2"]),
        prop::sample::select(vec![vec!["/a"], vec!["/b"], vec!["/b", "/a"], vec!["/a", "/b"]]),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..3),
        prop::bool::ANY,
    );
    prop::collection::vec(one, 0..40).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (secs, host, paths, tags, coarse))| {
                // Half of the times are rounded to whole hours: equal times happen.
                let secs = if coarse { secs / 3600 * 3600 } else { secs };
                let time = DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap();
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                (FileId(id), snap(0, time, host, &paths, &tags).1)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn decisions_are_sound(list in snapshots_strategy(), policy in policy_strategy()) {
        prop_assume!(!policy.is_empty());
        let decisions = apply(&list, &policy).unwrap();
        let mut seen = BTreeSet::new();
        for g in &decisions {
            let keep: BTreeSet<usize> = g.keep.iter().map(|k| k.index).collect();
            let remove: BTreeSet<usize> = g.remove.iter().copied().collect();
            prop_assert!(keep.is_disjoint(&remove));
            for &i in keep.iter().chain(&remove) {
                prop_assert!(seen.insert(i), "snapshot {} in two places", i);
            }
            prop_assert!(g.keep.iter().all(|k| !k.reasons.is_empty()));

            // The group's members, newest first.
            let mut members: Vec<usize> = keep.union(&remove).copied().collect();
            members.sort_by(|&a, &b| list[b].1.time.cmp(&list[a].1.time).then(list[b].0.cmp(&list[a].0)));
            for i in &members {
                let key = policy.group_by.key(&list[*i].1);
                prop_assert_eq!(key.host, g.host.clone());
                prop_assert_eq!(key.paths, g.paths.clone());
            }
            // Keep and remove are both newest first.
            let order: Vec<usize> = members.iter().copied().filter(|i| keep.contains(i)).collect();
            prop_assert_eq!(order, g.keep.iter().map(|k| k.index).collect::<Vec<_>>());
            let order: Vec<usize> = members.iter().copied().filter(|i| remove.contains(i)).collect();
            prop_assert_eq!(&order, &g.remove);
            // The last N are always kept; with N >= 1 the newest survives.
            for i in members.iter().take(policy.last as usize) {
                prop_assert!(keep.contains(i));
            }
            if policy.last >= 1 {
                prop_assert!(keep.contains(&members[0]));
            }
            // Each time rule keeps min(N, distinct buckets) snapshots.
            for span in Span::ALL {
                let buckets: BTreeSet<String> = members.iter().map(|&i| span.bucket(list[i].1.time)).collect();
                let by_rule = g.keep.iter().filter(|k| k.reasons.iter().any(|r| matches!(r, Reason::Bucket(s, _) if *s == span))).count();
                prop_assert_eq!(by_rule, buckets.len().min(policy.count(span) as usize));
            }
            // Tagged snapshots stay.
            for &i in &members {
                if policy.tags.iter().any(|t| list[i].1.has_tag(t)) {
                    prop_assert!(keep.contains(&i));
                }
            }
        }
        // kept ∪ removed is the input.
        prop_assert_eq!(seen, (0..list.len()).collect::<BTreeSet<_>>());

        // Forgetting again with the same policy removes nothing more.
        let survivors: Vec<(FileId, Snapshot)> =
            decisions.iter().flat_map(|g| g.keep.iter().map(|k| list[k.index].clone())).collect();
        for g in apply(&survivors, &policy).unwrap() {
            prop_assert!(g.remove.is_empty(), "second run removes {:?}", g.remove);
        }
    }
}

#[test]
fn plan_removes_only_what_the_filter_selects_and_the_policy_drops() {
    let list = vec![
        snap(1, at("2026-11-20T08:00:00Z"), "h", &["/x"], &["sys"]),
        snap(2, at("2026-11-21T08:00:00Z"), "h", &["/x"], &["sys"]),
        snap(3, at("2026-11-19T08:00:00Z"), "h", &["/x"], &[]),
    ];
    let policy = Policy { last: 1, ..Default::default() };
    let filter = crate::repo::snapshot::Filter { any_tag: vec!["sys".into()], ..Default::default() };
    let p = plan(list.clone(), &filter, &policy).unwrap();
    assert_eq!(p.considered.len(), 2);
    assert_eq!(p.to_remove(), [FileId([1; 32])]);
    // Without the filter, the untagged one is older still and goes too.
    let p = plan(list, &Default::default(), &policy).unwrap();
    assert_eq!(p.to_remove(), [FileId([1; 32]), FileId([3; 32])]);
}

#[test]
fn plan_named_keeps_the_named_order_once_each() {
    let list = series(&["2026-11-20T08:00:00Z", "2026-11-21T08:00:00Z"]);
    let hex = |n: u8| FileId([n; 32]).to_hex();
    let none = Filter::default();
    let p = plan_named(list.clone(), &[hex(2), hex(1)[..10].to_string(), hex(2)], &none).unwrap();
    assert_eq!(p.to_remove(), [FileId([2; 32]), FileId([1; 32])]);
    assert!(p.groups.is_empty());
    assert!(plan_named(list.clone(), &["ff".into()], &none).is_err());
    // `latest` among the filtered snapshots only; an id outside the filter is refused.
    let mut list = list;
    list[1].1.host = "db1".into();
    let web = Filter { host: Some(list[0].1.host.clone()), ..Default::default() };
    assert_eq!(plan_named(list.clone(), &["latest".into()], &web).unwrap().to_remove(), [FileId([1; 32])]);
    assert!(plan_named(list, &[hex(2)], &web).is_err());
}

#[test]
fn a_held_snapshot_is_kept_whatever_the_policy() {
    use crate::forget::{plan, Held};
    let all = series(&[
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
        "2026-01-03T00:00:00Z",
        "2026-01-04T00:00:00Z",
        "2026-01-05T00:00:00Z",
    ]);
    let policy = Policy { last: 1, ..Default::default() };
    let p = plan(all.clone(), &crate::repo::snapshot::Filter::default(), &policy).unwrap();
    assert_eq!(p.to_remove().len(), 4);
    let held = Held { id: all[1].0, reason: "last clean before a suspect snapshot".into() };
    // A hold on a snapshot the policy keeps anyway changes nothing.
    let p = p.hold(&[held.clone(), Held { id: all[4].0, reason: "kept anyway".into() }]);
    assert_eq!(p.to_remove().len(), 3);
    assert!(!p.to_remove().contains(&all[1].0));
    assert_eq!(p.held, vec![held]);
    let g = &p.groups[0];
    assert_eq!(g.keep.len(), 2);
    assert_eq!(g.keep[1].index, 1, "newest first: the policy's one, then the held one");
    assert_eq!(g.keep[1].reasons[0].to_string(), "held: last clean before a suspect snapshot");
}
