use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex as StdMutex;

use chrono::TimeZone;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::oneshot;

use super::*;
use crate::daemon::Daemon;
use kura_recovery::config::{CatchUp, CheckJob, Jobs, Notify, PruneJob, RepoSpec, Schedule, SystemConfig};
use kura_recovery::config::{Config, Problems};
use kura_recovery::error::Error;
use kura_recovery::error::Result;
use kura_recovery::schedule::Trigger;
use kura_recovery::state::jobs::{JobRun, Outcome, RunFilter};
use kura_recovery::state::State;
use kura_store::backend::Location;
use kura_store::clock::ManualClock;
use kura_store::types::Priority;

fn sched(expr: &str) -> Schedule {
    Schedule { expr: expr.into(), cron: cron::Schedule::from_str(expr).unwrap() }
}

fn system(name: &str, priority: u8, expr: Option<&str>) -> SystemConfig {
    SystemConfig {
        name: name.into(),
        priority: Priority::new(priority).unwrap(),
        host: None,
        paths: vec![format!("/srv/{name}").into()],
        excludes: vec![],
        schedule: expr.map(sched),
        stream: None,
        standby: None,
        tolerance: None,
    }
}

fn config(systems: Vec<SystemConfig>) -> Config {
    Config {
        path: "/etc/kura/kura.toml".into(),
        repository: RepoSpec {
            location: Location::Local("/backup/repo".into()),
            password_file: "/etc/kura/pass".into(),
        },
        remote: None,
        state: None,
        deadlines: [None; 4],
        max_backup_age: [None; 4],
        catch_up: CatchUp::Once,
        systems,
        jobs: Jobs::default(),
        notify: Notify::default(),
        http: None,
        fleet: None,
        detect: Default::default(),
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap()
}

type Behaviour = dyn Fn(&RunRequest) -> Result<RunOutput> + Send + Sync;

/// Counts executions per job key and the largest number running at once.
struct TestExec {
    f: Box<Behaviour>,
    runs: StdMutex<Vec<String>>,
    now_running: StdMutex<Vec<JobKind>>,
    max_backups_together: AtomicUsize,
    /// Prune ran beside a job other than a backup.
    prune_overlapped: AtomicUsize,
    /// Prune ran beside a backup.
    prune_beside_backup: AtomicUsize,
}

impl TestExec {
    fn new(f: impl Fn(&RunRequest) -> Result<RunOutput> + Send + Sync + 'static) -> Arc<TestExec> {
        Arc::new(TestExec {
            f: Box::new(f),
            runs: StdMutex::new(vec![]),
            now_running: StdMutex::new(vec![]),
            max_backups_together: AtomicUsize::new(0),
            prune_overlapped: AtomicUsize::new(0),
            prune_beside_backup: AtomicUsize::new(0),
        })
    }
    fn runs_of(&self, key: &str) -> usize {
        self.runs.lock().unwrap().iter().filter(|k| *k == key).count()
    }
}

impl Executor for TestExec {
    fn execute(&self, _cfg: &Config, req: &RunRequest, _p: &JobProgress) -> Result<RunOutput> {
        self.runs.lock().unwrap().push(req.spec.key.clone());
        {
            let mut r = self.now_running.lock().unwrap();
            r.push(req.spec.kind);
            let backups = r.iter().filter(|k| **k == JobKind::Backup).count();
            self.max_backups_together.fetch_max(backups, Ordering::SeqCst);
            if r.contains(&JobKind::Prune) && r.iter().any(|k| !matches!(k, JobKind::Prune | JobKind::Backup)) {
                self.prune_overlapped.fetch_add(1, Ordering::SeqCst);
            }
            if r.contains(&JobKind::Prune) && r.contains(&JobKind::Backup) {
                self.prune_beside_backup.fetch_add(1, Ordering::SeqCst);
            }
        }
        let out = (self.f)(req);
        let mut r = self.now_running.lock().unwrap();
        let i = r.iter().position(|k| *k == req.spec.kind).unwrap();
        r.remove(i);
        out
    }
}

fn ok_output() -> Result<RunOutput> {
    Ok(RunOutput { outcome: Some(Outcome::Ok), bytes: Some(10), snapshot: Some("abcd".into()), ..Default::default() })
}

async fn daemon(cfg: Config, clock: &ManualClock, exec: Arc<TestExec>, dir: &Path) -> Arc<Daemon> {
    let options = Options {
        config: cfg,
        loader: Arc::new(|p: &Path| {
            Err(Problems(vec![kura_recovery::config::Problem {
                file: p.to_path_buf(),
                line: None,
                field: "-".into(),
                message: "no loader in tests".into(),
                severity: kura_recovery::plan::problems::Severity::Error,
            }]))
        }),
        state: dir.join("state.db"),
        shutdown_timeout: StdDuration::from_secs(5),
        clock: Arc::new(clock.clone()),
        executor: exec,
        reload: None,
        http: None,
        fleet: None,
    };
    Daemon::new(options, dir.join("kura.sock")).await.unwrap()
}

async fn settle(d: &Daemon) {
    for _ in 0..500 {
        if d.active_count() == 0 {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    panic!("jobs did not finish");
}

/// The events the notify command wrote, one file each.
fn events(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        if let Ok(v) = serde_json::from_str(&text) {
            out.push(v);
        }
    }
    out
}

async fn runs(d: &Daemon) -> Vec<JobRun> {
    d.db.query(|st| st.list_runs(&RunFilter::default())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_never_overlaps_itself_and_deferred_slots_collapse() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let released = Arc::new(AtomicBool::new(false));
    let r2 = released.clone();
    let exec = TestExec::new(move |_| {
        while !r2.load(Ordering::SeqCst) {
            std::thread::sleep(StdDuration::from_millis(5));
        }
        ok_output()
    });
    // Releases the blocked job even when an assertion fails, so a failure ends the
    // test instead of leaving the runtime waiting for the job forever.
    struct Release(Arc<AtomicBool>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _release = Release(released.clone());
    let d = daemon(config(vec![system("web", 2, Some("* * * * * *"))]), &clock, exec.clone(), dir.path()).await;
    d.tick().await; // starts watching at t0
    clock.advance(Duration::seconds(1));
    d.tick().await; // slot t0+1 runs and blocks
    for _ in 0..5 {
        clock.advance(Duration::seconds(1));
        d.tick().await; // slots come while it runs: deferred
    }
    // The job thread starts when the machine gets to it: wait for it (bounded).
    for _ in 0..1000 {
        if exec.runs_of("backup:web") == 1 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    assert_eq!(exec.runs_of("backup:web"), 1);
    assert_eq!(d.running_ids().len(), 1);
    let st = d.status().await.unwrap();
    assert_eq!(st.running.len(), 1);
    assert_eq!(st.running[0].job, "backup:web");
    assert_eq!(st.running[0].state, RunState::Running);
    // Its start is stamped when the job thread starts, which a busy machine may delay
    // past some of the clock's steps above.
    assert!(matches!(st.running[0].elapsed_secs, Some(0..=5)), "{:?}", st.running[0].elapsed_secs);
    assert!(st.systems[0].running);
    // `kura run` of the running job is refused.
    let e =
        d.dispatch(JobSpec::backup("web"), Trigger::Manual, None, serde_json::json!({}), None).unwrap_err().to_string();
    assert!(e.contains("already running (run 1)"), "{e}");
    released.store(true, Ordering::SeqCst);
    settle(&d).await;
    d.tick().await; // one run for the latest slot (t0+6), however many passed
    settle(&d).await;
    d.tick().await;
    settle(&d).await;
    assert_eq!(exec.runs_of("backup:web"), 2);
    let all = runs(&d).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].detail.as_ref().unwrap()["missed_slots"], 5);
    assert!(all.iter().all(|r| r.outcome == Outcome::Ok && r.trigger == Trigger::Schedule));
    let st = d.db.query(|st| st.schedule_state("backup:web")).await.unwrap().unwrap();
    assert_eq!(st.last_slot, Some(t0() + Duration::seconds(6)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_panics_are_recorded_and_the_scheduler_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let exec = TestExec::new(|req| match req.spec.system.as_deref() {
        Some("bad") => panic!("simulated bug"),
        Some("err") => Err(Error::invalid("backup", "simulated failure")),
        _ => ok_output(),
    });
    let mut cfg = config(vec![
        system("bad", 1, Some("*/10 * * * * *")),
        system("err", 1, Some("*/10 * * * * *")),
        system("good", 1, Some("*/10 * * * * *")),
    ]);
    let out = dir.path().join("events");
    cfg.notify.command = Some(format!("cat > \"$(mktemp '{}/ev.XXXXXX')\"", out.display()));
    std::fs::create_dir(&out).unwrap();
    let d = daemon(cfg, &clock, exec.clone(), dir.path()).await;
    d.tick().await;
    for _ in 0..2 {
        clock.advance(Duration::seconds(10));
        d.tick().await;
        settle(&d).await;
    }
    assert_eq!(exec.runs_of("backup:bad"), 2);
    assert_eq!(exec.runs_of("backup:good"), 2);
    let all = runs(&d).await;
    let bad: Vec<_> = all.iter().filter(|r| r.system.as_deref() == Some("bad")).collect();
    assert!(bad.iter().all(|r| r.outcome == Outcome::Failed));
    assert!(bad[0].error.as_deref().unwrap().contains("panicked: simulated bug"), "{:?}", bad[0]);
    let err = all.iter().find(|r| r.system.as_deref() == Some("err")).unwrap();
    assert!(err.error.as_deref().unwrap().contains("simulated failure"));
    // Four failures, four job_failed events, written to the outbox and delivered by
    // one pass of the worker (the command runs on a blocking thread).
    assert_eq!(d.deliver_due().await, None, "nothing is left pending");
    let got = events(&out);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|e| e["event"] == "job_failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_runs_apart_from_checks_backups_run_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    // Backups outlast a check followed by a prune: whichever of those two the gate
    // lets in first, the prune starts while backups still run.
    let exec = TestExec::new(|req| {
        let ms = if req.spec.kind == JobKind::Backup { 600 } else { 150 };
        std::thread::sleep(StdDuration::from_millis(ms));
        ok_output()
    });
    let mut cfg = config(vec![system("a", 1, None), system("b", 1, None), system("c", 1, None)]);
    cfg.jobs.prune = Some(PruneJob {
        schedule: sched("0 0 3 * * *"),
        keep_last: Some(3),
        keep_daily: None,
        keep_weekly: None,
        keep_monthly: None,
    });
    cfg.jobs.check = Some(CheckJob { schedule: sched("0 0 4 * * *"), read_data_subset: 4 });
    let d = daemon(cfg, &clock, exec.clone(), dir.path()).await;
    let mut rxs = vec![];
    for t in ["a", "prune", "b", "check", "c", "prune"] {
        if let Ok(rx) =
            d.dispatch(jobs::resolve(&d.config(), t).unwrap(), Trigger::Manual, None, serde_json::json!({}), None)
        {
            rxs.push(rx);
        }
    }
    // The second prune was refused: it was already queued.
    assert_eq!(rxs.len(), 5);
    for rx in rxs {
        assert_eq!(rx.await.unwrap().unwrap().outcome, Outcome::Ok);
    }
    assert_eq!(exec.prune_overlapped.load(Ordering::SeqCst), 0, "prune ran beside a check");
    assert!(exec.prune_beside_backup.load(Ordering::SeqCst) >= 1, "backups waited for prune");
    assert!(exec.max_backups_together.load(Ordering::SeqCst) >= 2, "backups did not run in parallel");
    assert_eq!(exec.runs_of("prune"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_once_after_downtime_and_check_rotation() {
    let dir = tempfile::tempdir().unwrap();
    // The library executor's check: the store's rotation decides and advances the part.
    let rotation = kura_store::check::rotation::Rotation::at(dir.path().join("rotation"));
    let exec = TestExec::new(move |req| {
        let Some(m) = req.check_parts else { return ok_output() };
        let turn = rotation.next(m)?;
        let part = turn.part;
        turn.finish(&kura_store::check::CheckReport::default())?;
        Ok(RunOutput { detail: serde_json::json!({"part": part.n, "of": part.of}), ..ok_output()? })
    });
    let mut cfg = config(vec![system("web", 2, Some("0 0 * * * *"))]);
    cfg.jobs.check = Some(CheckJob { schedule: sched("0 30 * * * *"), read_data_subset: 3 });
    // A previous daemon ran the 09:00 slot, then was killed during a check.
    {
        let st = State::open(&dir.path().join("state.db")).unwrap();
        st.set_schedule_state("backup:web", t0() - Duration::hours(3), Some(t0() - Duration::hours(3))).unwrap();
        st.set_schedule_state("check", t0() - Duration::hours(3) + Duration::minutes(30), None).unwrap();
        st.start_run(JobKind::Check, None, Trigger::Schedule, t0() - Duration::minutes(10)).unwrap();
    }
    let clock = ManualClock::new(t0() + Duration::minutes(40));
    let d = daemon(cfg, &clock, exec.clone(), dir.path()).await;
    let left = runs(&d).await;
    assert_eq!(left[0].outcome, Outcome::Interrupted, "a run left running by a killed daemon is interrupted");
    d.tick().await;
    settle(&d).await;
    for _ in 0..10 {
        clock.advance(Duration::minutes(1));
        d.tick().await;
        settle(&d).await;
    }
    assert_eq!(exec.runs_of("backup:web"), 1);
    assert_eq!(exec.runs_of("check"), 1);
    let all = runs(&d).await;
    let web = all.iter().find(|r| r.system.as_deref() == Some("web")).unwrap();
    assert_eq!(web.trigger, Trigger::CatchUp);
    assert_eq!(web.detail.as_ref().unwrap()["missed_slots"], 3);
    // Check reads part 1 of 3, then 2, then 3, then 1 again.
    let mut parts = vec![];
    for _ in 0..4 {
        let rx =
            d.dispatch(JobSpec::repo_wide(JobKind::Check), Trigger::Manual, None, serde_json::json!({}), None).unwrap();
        let r = rx.await.unwrap().unwrap();
        parts.push(r.detail.unwrap()["part"].as_u64().unwrap());
    }
    assert_eq!(parts, vec![2, 3, 1, 2], "the catch-up check read part 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_becoming_late_notifies_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let fail = Arc::new(AtomicBool::new(false));
    let f2 = fail.clone();
    let exec =
        TestExec::new(
            move |_| {
                if f2.load(Ordering::SeqCst) {
                    Err(Error::invalid("backup", "disk gone"))
                } else {
                    ok_output()
                }
            },
        );
    let mut cfg = config(vec![system("db", 3, Some("0 0 * * * *")), system("wiki", 0, Some("0 0 * * * *"))]);
    cfg.max_backup_age[3] = Some(Duration::hours(2));
    let out = dir.path().join("events");
    cfg.notify.command = Some(format!("cat > \"$(mktemp '{}/ev.XXXXXX')\"", out.display()));
    std::fs::create_dir(&out).unwrap();
    let d = daemon(cfg, &clock, exec.clone(), dir.path()).await;
    d.tick().await;
    clock.advance(Duration::hours(1));
    d.tick().await;
    settle(&d).await;
    fail.store(true, Ordering::SeqCst);
    // Hourly failures from 14:00; the last good backup ended at 13:00: late after 15:00.
    for _ in 0..(6 * 60) {
        clock.advance(Duration::minutes(1));
        d.tick().await;
        settle(&d).await;
    }
    let st = d.status().await.unwrap();
    let db = st.systems.iter().find(|s| s.name == "db").unwrap();
    assert!(db.late);
    assert_eq!(db.age_secs, Some(6 * 3600));
    assert_eq!(db.max_age_secs, Some(2 * 3600));
    assert!(!st.systems.iter().find(|s| s.name == "wiki").unwrap().late, "priority 0 is not watched here");
    d.deliver_due().await;
    let all = events(&out);
    let late: Vec<_> = all.iter().filter(|e| e["event"] == "system_late").collect();
    assert_eq!(late.len(), 1, "{all:?}");
    assert_eq!(late[0]["system"], "db");
    assert_eq!(late[0]["max_age_secs"], 7200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_status_and_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let mut cfg = config(vec![system("db", 3, Some("0 0 * * * *")), system("wiki", 1, None)]);
    cfg.max_backup_age[3] = Some(Duration::hours(2));
    let d = daemon(cfg, &clock, TestExec::new(|_| ok_output()), dir.path()).await;
    d.tick().await;
    clock.advance(Duration::hours(1));
    d.tick().await;
    settle(&d).await;
    let text = |v: &crate::http::view::View| crate::http::metrics::render(v).unwrap();
    let m = text(&crate::http::view::gather(&d).await.unwrap());
    for line in [
        "kura_system_priority{system=\"db\"} 3",
        "kura_system_priority{system=\"wiki\"} 1",
        "kura_system_late{system=\"db\"} 0",
        "kura_system_backup_age_seconds{system=\"db\"} 0",
        "kura_system_backup_max_age_seconds{system=\"db\"} 7200",
        "kura_system_last_backup_bytes{system=\"db\"} 10",
        "kura_job_runs_total{kind=\"backup\",outcome=\"ok\"} 1",
        "kura_recovery_running 0",
        "# EOF",
    ] {
        assert!(m.lines().any(|l| l == line), "{line:?} missing:\n{m}");
    }
    assert!(!m.contains("kura_system_backup_max_age_seconds{system=\"wiki\"}"), "not watched: no sample\n{m}");
    // Three hours without a backup (no schedule fires: the clock jumps past the ticks).
    clock.advance(Duration::hours(3));
    let m = text(&crate::http::view::gather(&d).await.unwrap());
    assert!(m.lines().any(|l| l == "kura_system_late{system=\"db\"} 1"), "{m}");
    assert!(m.lines().any(|l| l == "kura_system_backup_age_seconds{system=\"db\"} 10800"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_then_marks_the_rest_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let exec = TestExec::new(|req| {
        if req.spec.system.as_deref() == Some("slow") {
            std::thread::sleep(StdDuration::from_secs(3));
        }
        ok_output()
    });
    let d = daemon(config(vec![system("slow", 1, None), system("fast", 1, None)]), &clock, exec, dir.path()).await;
    let (s1, r1) = oneshot::channel();
    let (s2, r2) = oneshot::channel();
    d.dispatch(JobSpec::backup("slow"), Trigger::Manual, None, serde_json::json!({}), Some(s1)).unwrap();
    d.dispatch(JobSpec::backup("fast"), Trigger::Manual, None, serde_json::json!({}), Some(s2)).unwrap();
    let slow = r1.await.unwrap().unwrap();
    r2.await.unwrap().unwrap();
    d.request_stop();
    assert!(d.dispatch(JobSpec::backup("fast"), Trigger::Manual, None, serde_json::json!({}), None).is_err());
    assert_eq!(d.drain(StdDuration::from_millis(300)).await, 1);
    let all = runs(&d).await;
    let r = all.iter().find(|r| r.id == slow).unwrap();
    assert_eq!(r.outcome, Outcome::Interrupted);
    assert!(all.iter().any(|r| r.system.as_deref() == Some("fast") && r.outcome == Outcome::Ok));
}

#[test]
fn resolve_targets() {
    let mut cfg = config(vec![system("web", 1, None)]);
    cfg.jobs.check = Some(CheckJob { schedule: sched("0 0 4 * * *"), read_data_subset: 4 });
    assert_eq!(jobs::resolve(&cfg, "web").unwrap(), JobSpec::backup("web"));
    assert_eq!(jobs::resolve(&cfg, "backup:web").unwrap(), JobSpec::backup("web"));
    assert_eq!(jobs::resolve(&cfg, "check").unwrap().kind, JobKind::Check);
    let e = jobs::resolve(&cfg, "prune").unwrap_err().to_string();
    assert!(e.contains("known jobs are backup:web, check"), "{e}");
    assert_eq!(human_duration(Duration::seconds(3 * 3600 + 125)), "3 h 2 min");
    assert_eq!(human_duration(Duration::seconds(45)), "45 s");
}

/// The reply shapes are untagged on the wire: each must come back as the variant
/// the daemon sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_reads_back_as_the_variant_sent() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let d =
        daemon(config(vec![system("web", 2, Some("0 0 * * * *"))]), &clock, TestExec::new(|_| ok_output()), dir.path())
            .await;
    let run = d.dispatch(JobSpec::backup("web"), Trigger::Manual, None, serde_json::json!({}), None).unwrap();
    let run = run.await.unwrap().unwrap();
    let back = |r: Reply| -> Reply {
        let resp = Response::from(Ok(r));
        let line = serde_json::to_string(&resp).unwrap();
        serde_json::from_str::<Response>(&line).unwrap().data.unwrap()
    };
    let status = d.status().await.unwrap();
    assert!(matches!(back(Reply::Status(Box::new(status))), Reply::Status(s) if s.systems[0].name == "web"));
    assert!(matches!(back(Reply::Runs { runs: vec![run.clone()] }), Reply::Runs { runs } if runs[0].id == run.id));
    assert!(matches!(back(Reply::Runs { runs: vec![] }), Reply::Runs { runs } if runs.is_empty()));
    assert!(matches!(back(Reply::Ended { run: run.clone() }), Reply::Ended { run: r } if r.outcome == Outcome::Ok));
    assert!(matches!(back(Reply::Started { job: "backup:web".into(), started: 3 }), Reply::Started { started: 3, .. }));
    assert!(matches!(back(Reply::Stopping { stopping: true, pid: 7 }), Reply::Stopping { pid: 7, .. }));
    let refused: Response =
        serde_json::from_str(&serde_json::to_string(&Response::from(Err(DaemonError::ShuttingDown))).unwrap()).unwrap();
    assert_eq!((refused.ok, refused.error.as_deref()), (false, Some("the daemon is shutting down")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_back_off_and_are_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let exec = TestExec::new(|_| Err(Error::invalid("backup", "simulated failure")));
    let mut cfg = config(vec![system("err", 1, None)]);
    let (tries, flag, out) = (dir.path().join("tries"), dir.path().join("up"), dir.path().join("events"));
    std::fs::create_dir(&out).unwrap();
    cfg.notify.command = Some(format!(
        "echo x >> '{}'; test -e '{}' && cat > \"$(mktemp '{}/ev.XXXXXX')\"",
        tries.display(),
        flag.display(),
        out.display()
    ));
    cfg.notify.retry_initial = StdDuration::from_secs(10);
    cfg.notify.retry_max = StdDuration::from_secs(40);
    let d = daemon(cfg, &clock, exec.clone(), dir.path()).await;
    let spec = jobs::resolve(&d.config(), "err").unwrap();
    let done = d.dispatch(spec, Trigger::Manual, None, serde_json::json!({}), None).unwrap();
    assert_eq!(done.await.unwrap().unwrap().outcome, Outcome::Failed);
    let attempts = || std::fs::read_to_string(&tries).unwrap_or_default().lines().count();

    // Attempt 1 fails: the next is due 10 s later, then 20 s after attempt 2.
    assert_eq!(d.deliver_due().await, Some(t0() + Duration::seconds(10)));
    assert_eq!(d.deliver_due().await, Some(t0() + Duration::seconds(10)), "not due yet: no attempt");
    assert_eq!(attempts(), 1);
    clock.advance(Duration::seconds(10));
    assert_eq!(d.deliver_due().await, Some(t0() + Duration::seconds(30)));
    assert_eq!(attempts(), 2);
    std::fs::write(&flag, "").unwrap();
    clock.advance(Duration::seconds(19));
    d.deliver_due().await;
    assert_eq!(attempts(), 2);
    clock.advance(Duration::seconds(1));
    assert_eq!(d.deliver_due().await, None, "delivered: nothing pending");
    assert_eq!(attempts(), 3);
    let got = events(&out);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0]["event"].as_str(), got[0]["system"].as_str()), (Some("job_failed"), Some("err")));
    clock.advance(Duration::hours(1));
    assert_eq!(d.deliver_due().await, None);
    assert_eq!(attempts(), 3, "a delivered event is not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_system_is_announced_again_after_repeat_after_not_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let mut cfg = config(vec![system("db", 3, None)]);
    cfg.max_backup_age[3] = Some(Duration::hours(2));
    cfg.notify.repeat_after = StdDuration::from_secs(3 * 3600);
    let out = dir.path().join("events");
    std::fs::create_dir(&out).unwrap();
    cfg.notify.command = Some(format!("cat > \"$(mktemp '{}/ev.XXXXXX')\"", out.display()));
    let late = |out: &Path| events(out).into_iter().filter(|e| e["event"] == "system_late").count();
    let step = |d: Arc<Daemon>, by: Duration| {
        clock.advance(by);
        async move {
            d.tick().await;
            d.deliver_due().await;
        }
    };

    let d = daemon(cfg.clone(), &clock, TestExec::new(|_| ok_output()), dir.path()).await;
    step(d.clone(), Duration::zero()).await;
    step(d.clone(), Duration::minutes(121)).await;
    assert_eq!(late(&out), 1, "late after 2 h without a backup");
    step(d.clone(), Duration::minutes(30)).await;
    assert_eq!(late(&out), 1, "not again on every tick");
    drop(d);

    // A new daemon on the same state: late again 2 h after its own start, but the
    // system was announced less than repeat_after (3 h) ago: not again.
    let d = daemon(cfg.clone(), &clock, TestExec::new(|_| ok_output()), dir.path()).await;
    step(d.clone(), Duration::zero()).await;
    step(d.clone(), Duration::minutes(121)).await;
    assert!(d.status().await.unwrap().systems[0].late);
    assert_eq!(late(&out), 1, "a restart does not announce a still-late system again");
    // While it stays late, it is announced again repeat_after later.
    step(d.clone(), Duration::minutes(179)).await;
    assert_eq!(late(&out), 1);
    step(d.clone(), Duration::minutes(2)).await;
    assert_eq!(late(&out), 2, "still late 3 h later: announced again");
    let keys: Vec<String> = events(&out).iter().map(|e| e["key"].as_str().unwrap().to_string()).collect();
    assert!(keys.iter().all(|k| k == "system_late:db@never"), "{keys:?}");
}
