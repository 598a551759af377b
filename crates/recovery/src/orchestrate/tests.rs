//! The engine's at-risk alert on real restores from an in-memory repository whose
//! reads move a manual clock: a restore is "slow" because its pack reads take
//! simulated hours, with no sleeping.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use rand::{RngCore, SeedableRng};

use super::{execute, prepare, Engine, Observer};
use crate::orchestrate::deadline::{Alert, Verdict};
use crate::orchestrate::hooks::ShellRunner;
use crate::plan::{Hooks, OnFailure, Plan, PlanSystem, Source};
use crate::state::recovery::{RunKind, RunOptions};
use crate::state::State;
use kura_store::backend::memory::MemoryBackend;
use kura_store::backend::{BResult, Backend, Kind};
use kura_store::backup::{self, BackupOptions};
use kura_store::clock::{Clock, ManualClock};
use kura_store::progress::NoProgress;
use kura_store::repo::Repository;
use kura_store::types::{BlobType, PackId, Priority};

/// Reading a data pack takes `step`; the first read of each pack in `slow` takes
/// `slow_step` (a server slow to start sending it).
struct TimedBackend {
    inner: MemoryBackend,
    clock: ManualClock,
    data_packs: Mutex<HashSet<String>>,
    slow: Mutex<HashSet<String>>,
    step: Duration,
    slow_step: Duration,
}

impl Backend for TimedBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> BResult<()> {
        self.inner.create()
    }
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()> {
        self.inner.put(kind, name, data)
    }
    fn get(&self, kind: Kind, name: &str) -> BResult<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> BResult<Vec<u8>> {
        if kind == Kind::Pack && self.data_packs.lock().unwrap().contains(name) {
            // The first read of a slow pack takes it out of the set.
            let slow = self.slow.lock().unwrap().remove(name);
            self.clock.advance(if slow { self.slow_step } else { self.step });
        }
        self.inner.get_range(kind, name, offset, len)
    }
    fn list(&self, kind: Kind) -> BResult<Vec<(String, u64)>> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: Kind, name: &str) -> BResult<()> {
        self.inner.delete(kind, name)
    }
}

#[derive(Default)]
struct Alerts(Mutex<Vec<(String, Alert)>>);

impl Observer for Alerts {
    fn alert(&self, system: &str, alert: Alert, _detail: &str) {
        self.0.lock().unwrap().push((system.to_string(), alert));
    }
}

fn random_file(path: &Path, len: usize, seed: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    std::fs::write(path, data).unwrap();
}

fn data_packs(repo: &Repository) -> HashSet<String> {
    let index = repo.load_index().unwrap();
    let packs: HashSet<PackId> =
        index.iter().filter(|(_, l)| l.blob_type == BlobType::Data).map(|(_, l)| l.pack).collect();
    packs.iter().map(|p| p.to_hex()).collect()
}

fn system(name: &str, priority: u8, deadline: Duration, target: &Path) -> PlanSystem {
    PlanSystem {
        name: name.into(),
        priority: Priority::new(priority).unwrap(),
        deadline: Some(deadline),
        source: Source::Tag(format!("system:{name}")),
        subpath: None,
        target: target.join(name),
        depends_on: vec![],
        hooks: Hooks::default(),
        agent: None,
        replacement_host: None,
        scan: None,
        standby: None,
        tolerance: chrono::Duration::minutes(5),
        snapshot: None,
    }
}

#[test]
fn deduplicated_systems_raise_no_alert_and_a_really_slow_one_is_at_risk() {
    let dir = tempfile::tempdir().unwrap();
    let start = "2026-03-01T00:00:00Z".parse().unwrap();
    let clock = ManualClock::new(start);
    let backend = Arc::new(TimedBackend {
        inner: MemoryBackend::new(),
        clock: clock.clone(),
        data_packs: Mutex::default(),
        slow: Mutex::default(),
        step: Duration::seconds(20),
        slow_step: Duration::minutes(30),
    });
    let repo = Arc::new(Repository::init(backend.clone(), b"pace").unwrap());
    let src = dir.path().join("src");
    // db holds 8 MiB; replica the same 8 MiB (deduplicated: nothing new stored)
    // and a 4-byte file of its own; slow 32 MiB of its own.
    random_file(&src.join("db/data.bin"), 8 << 20, 1);
    random_file(&src.join("replica/data.bin"), 8 << 20, 1);
    std::fs::write(src.join("replica/name"), "repl").unwrap();
    random_file(&src.join("slow/data.bin"), 32 << 20, 2);
    let mut before_slow = HashSet::new();
    for name in ["db", "replica", "slow"] {
        let opts = BackupOptions {
            paths: vec![src.join(name)],
            tags: vec![format!("system:{name}")],
            threads: Some(1),
            ..Default::default()
        };
        backup::run(&repo, &opts, &NoProgress).unwrap();
        if name == "replica" {
            before_slow = data_packs(&repo);
        }
    }
    let all = data_packs(&repo);
    let slow: HashSet<String> = all.difference(&before_slow).cloned().collect();
    assert!(!slow.is_empty());
    *backend.slow.lock().unwrap() = slow;
    *backend.data_packs.lock().unwrap() = all;

    let target = dir.path().join("restore");
    let plan = Plan {
        path: dir.path().join("plan.toml"),
        name: "pace".into(),
        description: String::new(),
        allow_overlap: false,
        hook_env: vec![],
        on_failure: OnFailure::Continue,
        systems: vec![
            system("db", 2, Duration::hours(24), &target),
            system("replica", 2, Duration::hours(24), &target),
            // Its packs take half an hour to start: at that pace, 32 MiB take hours.
            system("slow", 1, Duration::hours(2), &target),
        ],
    };
    let mut state = State::open(&dir.path().join("state.db")).unwrap();
    let options = RunOptions { parallel: 1, ..Default::default() };
    let run = prepare(&mut state, &repo, &plan, RunKind::Recovery, None, start, start, &options).unwrap();
    let alerts = Arc::new(Alerts::default());
    let engine = Engine {
        repo: repo.clone(),
        clock: Arc::new(clock.clone()),
        runner: Arc::new(ShellRunner),
        observer: alerts.clone(),
        restore_threads: Some(1),
        fleet: None,
    };
    let out = execute(&mut state, &engine, &plan, run).unwrap();
    assert_eq!(out.done, 3, "{out:?}");
    let got = alerts.0.lock().unwrap().clone();
    assert_eq!(got, vec![("slow".to_string(), Alert::AtRisk)], "only the slow system is at risk");
    let rows = state.run_systems(run).unwrap();
    for r in &rows {
        assert_eq!(r.verdict, Some(Verdict::Met), "{}", r.name);
        assert_eq!(r.alert, (r.name == "slow").then_some(Alert::AtRisk), "{}", r.name);
    }
    assert!(clock.now() < start + Duration::hours(2), "the slow restore still met its deadline");
}

/// A plan's `paths` name snapshots by the store's path rule: a trailing slash does
/// not count, and the order of the paths does not matter.
#[test]
fn host_paths_choose_snapshots_by_the_store_path_rule() {
    let snap = |n: u8, secs: i64, paths: &[&str]| {
        let s: kura_store::repo::snapshot::Snapshot = serde_json::from_value(serde_json::json!({
            "time": chrono::DateTime::from_timestamp(secs, 0).unwrap(),
            "host": "h",
            "paths": paths,
            "tree": kura_store::types::BlobId([0; 32]),
            "program_version": "t",
        }))
        .unwrap();
        (kura_store::types::FileId([n; 32]), s)
    };
    let list = vec![snap(1, 10, &["/srv/www", "/etc"]), snap(2, 20, &["/srv/www"]), snap(3, 30, &["/other"])];
    let source =
        |paths: &[&str]| Source::HostPaths { host: "h".into(), paths: paths.iter().map(|p| p.to_string()).collect() };
    let chosen = |paths: &[&str]| super::choose_snapshot(&list, &source(paths), None).map(|(id, _)| id.0[0]);
    assert_eq!(chosen(&["/srv/www/"]), Some(2));
    assert_eq!(chosen(&["/etc/", "/srv/www//"]), Some(1));
    assert_eq!(chosen(&["/srv"]), None);
}

/// A system backed up from a command's output (a dump stored as `/db.dump`) is
/// recovered like any other: the engine restores the file into its target.
#[test]
fn a_stream_backed_system_recovers_its_dump_file() {
    use kura_store::backup::{StreamInput, StreamSource};
    let dir = tempfile::tempdir().unwrap();
    let start = "2026-03-01T00:00:00Z".parse().unwrap();
    let clock = ManualClock::new(start);
    let repo = Arc::new(Repository::init(Arc::new(MemoryBackend::new()), b"stream").unwrap());
    let argv = ["sh", "-c", "echo dump; seq 1 50000"].map(String::from).to_vec();
    let opts = BackupOptions {
        tags: vec!["system:pg".into()],
        threads: Some(1),
        stream: Some(StreamSource { filename: "db.dump".into(), input: StreamInput::Command(argv), timeout: None }),
        ..Default::default()
    };
    backup::run(&repo, &opts, &NoProgress).unwrap();
    let target = dir.path().join("restore");
    let plan = Plan {
        path: dir.path().join("plan.toml"),
        name: "streams".into(),
        description: String::new(),
        allow_overlap: false,
        hook_env: vec![],
        on_failure: OnFailure::Continue,
        systems: vec![system("pg", 3, Duration::hours(1), &target)],
    };
    let mut state = State::open(&dir.path().join("state.db")).unwrap();
    let options = RunOptions { parallel: 1, ..Default::default() };
    let run = prepare(&mut state, &repo, &plan, RunKind::Recovery, None, start, start, &options).unwrap();
    let engine = Engine {
        repo: repo.clone(),
        clock: Arc::new(clock),
        runner: Arc::new(ShellRunner),
        observer: Arc::new(Alerts::default()),
        restore_threads: Some(1),
        fleet: None,
    };
    let out = execute(&mut state, &engine, &plan, run).unwrap();
    assert_eq!(out.done, 1, "{out:?}");
    let mut want = String::from("dump\n");
    (1..=50000).for_each(|i| want.push_str(&format!("{i}\n")));
    assert_eq!(std::fs::read_to_string(target.join("pg/db.dump")).unwrap(), want);
}
