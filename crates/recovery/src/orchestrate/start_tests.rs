//! The gate, the run lock and resumed drills: the rules every caller (CLI and
//! daemon) gets from `gate` and `drill`.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::drill::{self, DrillRequest};
use super::gate::{self, GateError, RecoveryRequest};
use super::runlock::RunLock;
use crate::error::Error;
use crate::incident::{Event, Fields};
use crate::plan::{Hooks, OnFailure, Plan, PlanSystem, Source};
use crate::state::recovery::Site;
use crate::state::State;
use kura_store::backend::memory::MemoryBackend;
use kura_store::repo::Repository;
use kura_store::types::Priority;

fn now() -> DateTime<Utc> {
    "2026-03-01T00:00:00Z".parse().unwrap()
}

fn plan(dir: &std::path::Path) -> Plan {
    Plan {
        path: dir.join("plan.toml"),
        name: "p".into(),
        description: String::new(),
        allow_overlap: false,
        hook_env: vec![],
        on_failure: OnFailure::Continue,
        systems: vec![PlanSystem {
            name: "db".into(),
            priority: Priority::new(2).unwrap(),
            deadline: Some(Duration::hours(24)),
            source: Source::Tag("system:db".into()),
            subpath: None,
            target: dir.join("srv/db"),
            depends_on: vec![],
            hooks: Hooks::default(),
            agent: None,
            replacement_host: None,
            scan: None,
            standby: None,
            tolerance: chrono::Duration::minutes(5),
            snapshot: None,
        }],
    }
}

fn request(incident: i64, force: bool, reason: Option<&str>) -> RecoveryRequest {
    RecoveryRequest {
        on: Default::default(),
        incident,
        from: Site::Local,
        location: "memory".into(),
        parallel: 2,
        force,
        reason: reason.map(String::from),
        config: None,
    }
}

#[test]
fn recovery_waits_for_the_cause_unless_forced_with_a_reason_on_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(Arc::new(MemoryBackend::new()), b"gate").unwrap();
    let plan = plan(dir.path());
    let mut state = State::open(&dir.path().join("state.db")).unwrap();
    let id = state.open_incident(now(), Event::Opened { fields: Fields::default() }).unwrap();
    let lock = RunLock::acquire(state.path()).unwrap();
    let inc = gate::admit(&state, &lock, id).unwrap();

    let refused = gate::start_recovery(&mut state, &lock, &repo, &plan, &inc, request(id, false, None), now());
    assert!(matches!(refused, Err(Error::Gate(GateError::CauseNotResolved(i))) if i == id));
    let blank = gate::start_recovery(&mut state, &lock, &repo, &plan, &inc, request(id, true, Some(" ")), now());
    assert!(matches!(blank, Err(Error::Gate(GateError::NoReason))));
    assert!(state.recovery_runs(None, None).unwrap().is_empty(), "a refused start stores no run");

    let req = request(id, true, Some("payroll is due"));
    let started = gate::start_recovery(&mut state, &lock, &repo, &plan, &inc, req, now()).unwrap();
    assert!(started.resumed_from.is_none());
    let kinds: Vec<&str> = state.timeline(id).unwrap().iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds, ["opened", "gate-overridden", "recovery-started"]);

    // The same command again resumes the run: no second override, no second run.
    let again = gate::start_recovery(&mut state, &lock, &repo, &plan, &inc, request(id, false, None), now()).unwrap();
    assert_eq!((again.run, again.resumed_from.is_some()), (started.run, true));
    assert_eq!(state.timeline(id).unwrap().len(), 3);
}

#[test]
fn a_run_lock_guards_only_its_own_state_database() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state.db")).unwrap();
    let other = RunLock::acquire(&dir.path().join("other.db")).unwrap();
    let plan = plan(dir.path());
    assert!(drill::source(&state, &other, &plan, None, false).is_err());
    let mine = RunLock::acquire(state.path()).unwrap();
    assert!(RunLock::acquire(state.path()).is_err(), "a second run is refused while the first holds it");
    assert_eq!(drill::source(&state, &mine, &plan, None, true).unwrap(), Site::Remote);
}

#[test]
fn a_resumed_drill_keeps_the_site_and_the_sandbox_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(Arc::new(MemoryBackend::new()), b"drill").unwrap();
    let plan = plan(dir.path());
    let mut state = State::open(&dir.path().join("state.db")).unwrap();
    let lock = RunLock::acquire(state.path()).unwrap();
    let sandbox = dir.path().join("sandbox");
    let req = |from, keep| DrillRequest {
        from,
        location: "memory",
        sandbox: Some(sandbox.clone()),
        keep,
        parallel: 1,
        config: None,
    };
    let first = drill::start_or_resume(&mut state, &lock, &repo, &plan, req(Site::Local, true), now()).unwrap();
    assert!(!first.resumed);
    // A later start (the daemon's, which asks for no keep and would pick the remote site).
    assert_eq!(drill::source(&state, &lock, &plan, None, true).unwrap(), Site::Local);
    let resumed = drill::start_or_resume(&mut state, &lock, &repo, &plan, req(Site::Remote, false), now()).unwrap();
    assert_eq!((resumed.run, resumed.resumed, resumed.keep), (first.run, true, true));
    resumed.clean_up();
    assert!(sandbox.is_dir(), "a sandbox started with keep is not removed");
}
