use kura_store::signals::Signals;

use super::rules::{assess_series, median_mad, Point, RuleKind, Rules, Verdict};

/// An ordinary backup of a 1,000-file system: a few files changed, compressible data.
fn ordinary(seed: u64) -> Signals {
    Signals {
        has_parent: true,
        files: 1000,
        parent_files: 1000,
        added: 3 + seed % 4,
        modified: 15 + seed % 7,
        deleted: seed % 3,
        bytes_new: 2_000_000,
        bytes_incompressible: 100_000 + (seed % 5) * 50_000,
        ..Default::default()
    }
}

fn ransomware() -> Signals {
    Signals {
        has_parent: true,
        files: 1003,
        parent_files: 1000,
        ext_changed: 600,
        added: 3,
        bytes_new: 50_000_000,
        bytes_incompressible: 49_900_000,
        note_names: 3,
        ..Default::default()
    }
}

fn verdicts(series: &[Signals], fp: &[usize]) -> Vec<Verdict> {
    let points: Vec<Point> =
        series.iter().enumerate().map(|(i, s)| Point { signals: Some(s), false_positive: fp.contains(&i) }).collect();
    assess_series(&points, &Rules::default())
}

fn rules_of(v: &Verdict) -> Vec<RuleKind> {
    match v {
        Verdict::Suspect { reasons } => reasons.iter().map(|r| r.rule).collect(),
        _ => vec![],
    }
}

#[test]
fn median_and_mad() {
    assert_eq!(median_mad(&[]), (0.0, 0.0));
    let (m, d) = median_mad(&[1.0, 2.0, 3.0, 4.0, 100.0]);
    assert_eq!(m, 3.0);
    assert!((d - 1.4826).abs() < 1e-9);
}

#[test]
fn a_new_system_learns_first() {
    let mut s: Vec<Signals> = (0..3).map(ordinary).collect();
    s.push(ransomware());
    let v = verdicts(&s, &[]);
    assert!(matches!(v[3], Verdict::Learning { have: 3, need: 5 }), "{v:?}");
}

#[test]
fn ransomware_is_suspect_after_a_baseline_and_ordinary_change_is_not() {
    let mut s: Vec<Signals> = (0..10).map(ordinary).collect();
    s.push(ransomware());
    s.push(ordinary(99));
    let v = verdicts(&s, &[]);
    assert!(v[5..10].iter().all(|v| *v == Verdict::Clean), "{v:?}");
    let fired = rules_of(&v[10]);
    assert!(fired.contains(&RuleKind::ExtensionRenames), "{fired:?}");
    assert!(fired.contains(&RuleKind::RansomNotes), "{fired:?}");
    assert!(fired.contains(&RuleKind::EncryptedChange), "{fired:?}");
    assert_eq!(v[11], Verdict::Clean, "the suspect snapshot stays out of the baseline");
}

#[test]
fn a_large_incompressible_file_alone_is_not_suspect() {
    let mut s: Vec<Signals> = (0..10).map(ordinary).collect();
    let mut big = ordinary(3);
    big.added += 2;
    big.bytes_new = 500_000_000;
    big.bytes_incompressible = 499_000_000;
    s.push(big);
    assert_eq!(verdicts(&s, &[])[10], Verdict::Clean);
}

#[test]
fn a_false_positive_teaches_the_baseline() {
    // A monthly job that renames many files: suspect the first time...
    let mut renames = ordinary(1);
    renames.ext_changed = 200;
    let mut s: Vec<Signals> = (0..10).map(ordinary).collect();
    s.push(renames.clone());
    s.push(ordinary(2));
    s.push(renames.clone());
    let v = verdicts(&s, &[]);
    assert!(v[10].is_suspect() && v[12].is_suspect(), "{v:?}");
    // ...and no more once an operator called it a false positive.
    let v = verdicts(&s, &[10]);
    assert!(v[10].is_suspect(), "the verdict itself stays; the mark is beside it");
    assert_eq!(v[12], Verdict::Clean, "{v:?}");
    // Far more than the false positive still alarms.
    renames.ext_changed = 700;
    s.push(renames);
    assert!(verdicts(&s, &[10])[13].is_suspect());
}

#[test]
fn snapshots_without_signals_are_unmeasured() {
    let points = vec![Point { signals: None, false_positive: false }];
    assert_eq!(assess_series(&points, &Rules::default()), vec![Verdict::Unmeasured]);
}

mod clean_point {
    use std::collections::HashMap;

    use chrono::{DateTime, Utc};
    use kura_store::types::FileId;

    use crate::detect::clean::{clean_point, Status};
    use crate::detect::scan::Hit;
    use crate::detect::{Assessed, Reason, RuleKind, Verdict};

    fn at(i: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + i * 3600, 0).unwrap()
    }

    fn a(i: u8, v: Verdict) -> Assessed {
        Assessed {
            id: FileId([i; 32]),
            time: at(i.into()),
            host: "h".into(),
            paths: vec!["/x".into()],
            tags: vec![],
            signals: None,
            verdict: v,
            false_positive: false,
        }
    }

    fn suspect() -> Verdict {
        Verdict::Suspect {
            reasons: vec![Reason { rule: RuleKind::RansomNotes, value: 3.0, threshold: 1.5, detail: "3 notes".into() }],
        }
    }

    #[test]
    fn the_newest_clean_before_the_newest_suspect() {
        let list = [a(1, Verdict::Clean), a(2, Verdict::Clean), a(3, suspect()), a(4, Verdict::Clean)];
        let refs: Vec<&Assessed> = list.iter().collect();
        let cp = clean_point(&refs, &HashMap::new(), None);
        assert_eq!(cp.clean_id(), Some(FileId([2; 32])));
        assert_eq!(cp.first_suspect, Some(at(3)));
        let statuses: Vec<Status> = cp.ranked.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![Status::After, Status::Suspect, Status::Clean, Status::Clean]);
        // --before the attack: the newest before it.
        let cp = clean_point(&refs, &HashMap::new(), Some(at(2)));
        assert_eq!(cp.clean_id(), Some(FileId([1; 32])));
        assert_eq!(cp.first_suspect, None);
    }

    #[test]
    fn scan_hits_make_a_snapshot_infected() {
        let list = [a(1, Verdict::Clean), a(2, Verdict::Clean), a(3, Verdict::Clean)];
        let refs: Vec<&Assessed> = list.iter().collect();
        let hit = Hit { path: "/x/evil".into(), by: "hash".into(), indicator: "dropper".into() };
        let scans = HashMap::from([(FileId([2; 32]).to_hex(), (at(9), vec![hit]))]);
        let cp = clean_point(&refs, &scans, None);
        assert_eq!(cp.clean_id(), Some(FileId([1; 32])));
        assert_eq!(cp.ranked[1].status, Status::Infected);
        assert!(cp.ranked[1].evidence[0].contains("dropper"));
        // Nothing bad: the newest is the clean point.
        assert_eq!(clean_point(&refs, &HashMap::new(), None).clean_id(), Some(FileId([3; 32])));
    }
}

/// kill -9 between storing a suspect verdict and raising its alarm: the next
/// backup's `after_backup` raises it (hold, draft incident, link).
#[test]
fn after_backup_raises_an_alarm_a_crash_interrupted() {
    use kura_store::backend::memory::MemoryBackend;
    use kura_store::backup::{self, BackupOptions};
    use kura_store::progress::NoProgress;

    use crate::detect::{after_backup, assess_all, Alarm};
    use crate::state::State;

    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t");
    for i in 0..40 {
        let p = tree.join(format!("d{}/f{i}.txt", i % 3));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("ordinary text {i} ").repeat(200)).unwrap();
    }
    let repo = std::sync::Arc::new(
        kura_store::repo::Repository::init(std::sync::Arc::new(MemoryBackend::new()), b"pw").unwrap(),
    );
    let opts = BackupOptions { paths: vec![tree.clone()], threads: Some(1), ..Default::default() };
    let mut state = State::open(&dir.path().join("state.db")).unwrap();
    let alarm = Alarm { system: Some("files"), notify: None };
    let rules = Rules::default();
    let mut last = None;
    for _ in 0..7 {
        let out = backup::run(&repo, &opts, &NoProgress).unwrap();
        after_backup(&mut state, &repo, &out.id, &rules, &alarm, chrono::Utc::now()).unwrap();
        last = Some(out.id);
    }
    // The attack: every file replaced by an encrypted-looking .locked copy, notes dropped.
    for i in 0..40 {
        let p = tree.join(format!("d{}/f{i}.txt", i % 3));
        let noise: Vec<u8> =
            (0..4000u32).map(|x| (x.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8).collect();
        std::fs::write(p.with_file_name(format!("f{i}.txt.locked")), noise).unwrap();
        std::fs::remove_file(p).unwrap();
    }
    for d in 0..3 {
        std::fs::write(tree.join(format!("d{d}/HOW_TO_DECRYPT.txt")), "pay").unwrap();
    }
    let hit = backup::run(&repo, &opts, &NoProgress).unwrap();
    // The crash: the verdict is stored, nothing else happened.
    let repo_id = repo.config().id.clone();
    let assessed = assess_all(&repo.snapshots().unwrap(), &Default::default(), &rules);
    let me = assessed.iter().find(|a| a.id == hit.id).unwrap();
    assert!(me.is_suspect(), "{:?}", me.verdict);
    state.record_verdict(&repo_id, Some("files"), me, chrono::Utc::now()).unwrap();
    assert!(state.active_holds(&repo_id).unwrap().is_empty());

    let next = backup::run(&repo, &opts, &NoProgress).unwrap();
    let out = after_backup(&mut state, &repo, &next.id, &rules, &alarm, chrono::Utc::now()).unwrap();
    assert!(!out.verdict.unwrap().is_suspect(), "the tree stays encrypted, nothing new changed");
    let holds = state.active_holds(&repo_id).unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].snapshot, last.unwrap().to_hex(), "the snapshot before the attack is held");
    let row = state.verdicts(&repo_id).unwrap().into_iter().find(|v| v.snapshot == hit.id.to_hex()).unwrap();
    assert_eq!(row.incident, Some(1));
    assert_eq!(state.incident_ids().unwrap(), vec![1]);
    // Once raised, never again.
    let again = backup::run(&repo, &opts, &NoProgress).unwrap();
    after_backup(&mut state, &repo, &again.id, &rules, &alarm, chrono::Utc::now()).unwrap();
    assert_eq!(state.incident_ids().unwrap(), vec![1]);
    assert_eq!(state.timeline(1).unwrap().len(), 2, "opened + the evidence note");
}
