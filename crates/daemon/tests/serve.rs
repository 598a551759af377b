//! The daemon driven in-process through `serve(listener, options, shutdown)`, on a
//! temp socket, with a manual clock, and talked to with the CLI's own client.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, TimeZone, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use kura_daemon::{Client, Executor, JobProgress, RunOutput, RunRequest};
use kura_recovery::config::Config;
use kura_recovery::schedule::Trigger;
use kura_recovery::state::jobs::{JobRun, Outcome};
use kura_store::clock::ManualClock;

/// Every job succeeds at once.
struct Quick;

impl Executor for Quick {
    fn execute(&self, _: &Config, _: &RunRequest, _: &JobProgress) -> kura_recovery::error::Result<RunOutput> {
        Ok(RunOutput { outcome: Some(Outcome::Ok), bytes: Some(1), ..Default::default() })
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap()
}

/// A config with systems `names`, each backed up by `schedule`.
fn write_config(dir: &Path, names: &[&str], schedule: &str) -> PathBuf {
    let mut text = format!(
        "catch_up = \"once\"\n\n[repository]\nlocation = \"{}\"\npassword_file = \"{}\"\n",
        dir.join("repo").display(),
        dir.join("pass").display()
    );
    for n in names {
        text += &format!(
            "\n[[system]]\nname = \"{n}\"\npriority = 2\npaths = [\"{}\"]\nschedule = \"{schedule}\"\n",
            dir.display()
        );
    }
    let path = dir.join("kura.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Running {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    reload: mpsc::Sender<()>,
    served: JoinHandle<Result<(), kura_daemon::DaemonError>>,
}

impl Running {
    /// Stops through the shutdown future and waits for `serve` to return.
    async fn shut_down(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(StdDuration::from_secs(20), self.served).await.expect("serve returned").unwrap().unwrap();
    }
}

fn start(dir: &Path, config: &Path, clock: &ManualClock) -> Running {
    let socket = dir.join("run/kura.sock");
    let listener = kura_daemon::api::bind(&socket).unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let options = kura_daemon::Options {
        config: kura_recovery::config::load(config).unwrap(),
        loader: Arc::new(|p: &Path| kura_recovery::config::load(p)),
        state: dir.join("state.db"),
        shutdown_timeout: StdDuration::from_secs(5),
        clock: Arc::new(clock.clone()),
        executor: Arc::new(Quick),
        reload: Some(reload_rx),
        http: None,
        fleet: None,
    };
    let served = tokio::spawn(kura_daemon::serve(listener, options, async move {
        let _ = stop_rx.await;
    }));
    Running { socket, stop: Some(stop_tx), reload: reload_tx, served }
}

/// The run history, asked like `kura jobs` asks it (on a blocking thread: the client blocks).
async fn jobs(socket: &Path) -> Vec<JobRun> {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || Client::connect(&socket).unwrap().jobs(None, None, Some(100_000)).unwrap())
        .await
        .unwrap()
}

/// Moves the clock on by `step` until `f` accepts the history, for at most 30 s.
async fn advance_until<T>(
    clock: &ManualClock,
    socket: &Path,
    step: Duration,
    what: &str,
    f: impl Fn(&[JobRun]) -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f(&jobs(socket).await) {
            return v;
        }
        assert!(start.elapsed() < StdDuration::from_secs(30), "timed out waiting for {what}");
        clock.advance(step);
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_three_hours_catches_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &["web"], "*/2 * * * * *");
    let clock = ManualClock::new(t0());
    let d = start(dir.path(), &config, &clock);
    advance_until(&clock, &d.socket, Duration::seconds(2), "a scheduled backup", |runs| {
        runs.iter().any(|r| r.outcome == Outcome::Ok).then_some(())
    })
    .await;
    d.shut_down().await;
    assert!(!dir.path().join("run/kura.sock").exists(), "serve removes its socket");

    // Three hours later: 5400 slots were missed.
    clock.advance(Duration::hours(3));
    let d = start(dir.path(), &config, &clock);
    let runs = advance_until(&clock, &d.socket, Duration::seconds(2), "a catch-up and two scheduled runs", |runs| {
        let cu = runs.iter().find(|r| r.trigger == Trigger::CatchUp && r.outcome != Outcome::Running)?;
        let after =
            runs.iter().filter(|r| r.trigger == Trigger::Schedule && r.id > cu.id && r.outcome == Outcome::Ok).count();
        (after >= 2).then(|| runs.to_vec())
    })
    .await;
    let catch_up: Vec<_> = runs.iter().filter(|r| r.trigger == Trigger::CatchUp).collect();
    assert_eq!(catch_up.len(), 1, "catch-up runs once, not once per missed slot: {runs:#?}");
    assert_eq!(catch_up[0].outcome, Outcome::Ok);
    let missed = catch_up[0].detail.as_ref().unwrap()["missed_slots"].as_u64().unwrap();
    assert!((5000..=10_000).contains(&missed), "missed {missed}");
    let socket = d.socket.clone();
    let pid = tokio::task::spawn_blocking(move || Client::connect(&socket).unwrap().stop().unwrap()).await.unwrap();
    assert_eq!(pid, std::process::id());
    tokio::time::timeout(StdDuration::from_secs(20), d.served).await.unwrap().unwrap().unwrap();
    let state = kura_recovery::state::State::open(&dir.path().join("state.db")).unwrap();
    assert!(state.running_runs().unwrap().is_empty(), "a run was left running");
}

/// `status` answers (and never hangs) while the scheduler ticks every few
/// milliseconds, jobs start and end, and the config is reloaded over and over: the
/// daemon's state has one owner, so no two paths can take its locks in opposite
/// orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_never_hangs_beside_ticks_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &["a", "b", "c"], "* * * * * *");
    let clock = ManualClock::new(t0());
    let d = start(dir.path(), &config, &clock);
    let (done_tx, done_rx) = std_mpsc::channel();
    let socket = d.socket.clone();
    // The CLI's client on a plain thread: a hang cannot stall the runtime's shutdown.
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut answers = 0;
        let mut client = Client::connect(&socket).unwrap();
        while start.elapsed() < StdDuration::from_secs(3) {
            let st = client.status().unwrap();
            assert_eq!(st.systems.len(), 3);
            // A fresh connection now and then, as each `kura status` makes one.
            if answers % 10 == 0 {
                Client::connect(&socket).unwrap().status().unwrap();
            }
            answers += 1;
        }
        let _ = done_tx.send(answers);
    });
    let stress_until = Instant::now() + StdDuration::from_secs(3);
    while Instant::now() < stress_until {
        clock.advance(Duration::seconds(1));
        let _ = d.reload.try_send(());
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    let answers = match tokio::task::spawn_blocking(move || done_rx.recv_timeout(StdDuration::from_secs(10))).await {
        Ok(Ok(n)) => n,
        _ => {
            // A hung daemon would also hang the runtime's shutdown: end the process.
            eprintln!("status did not answer within 10 s beside ticks and reloads: the daemon hangs");
            std::process::exit(101);
        }
    };
    assert!(answers > 10, "only {answers} status answers in 3 s");
    let runs = jobs(&d.socket).await;
    assert!(runs.iter().filter(|r| r.trigger == Trigger::Schedule).count() >= 3, "the scheduler ran: {runs:#?}");
    d.shut_down().await;
}
