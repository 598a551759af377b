//! The daemon as a real process: schedules that fire every 2 seconds on a temp
//! repository, checked through the real CLI and socket. Long periods (hourly slots,
//! hours or days of downtime, lateness) are covered with a manual clock: in the unit
//! tests (crates/recovery/src/schedule/tests.rs, crates/daemon/src/tests.rs) and with
//! the daemon served in-process (crates/daemon/tests/serve.rs: a restart three hours
//! later catches up once).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

pub struct Setup {
    pub repo: TestRepo,
    pub config: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
}

impl Setup {
    /// A repository and a passphrase file; the config is written by `configure`.
    pub fn new() -> Setup {
        let repo = TestRepo::new();
        let base = repo.base().to_path_buf();
        write(&base.join("pass"), PASSWORD);
        chmod(&base.join("pass"), 0o600);
        Setup {
            state: base.join("state/state.db"),
            socket: base.join("run/kura.sock"),
            config: base.join("kura.toml"),
            repo,
        }
    }

    /// Writes the config: `top` (top-level keys), the repository, then `tables`.
    pub fn configure(&self, top: &str, tables: &str) {
        self.configure_at(s(&self.repo.path), top, tables)
    }

    /// Writes the config with the repository at `location` (a path or `s3:` location).
    pub fn configure_at(&self, location: &str, top: &str, tables: &str) {
        let text = format!(
            "{top}\n[repository]\nlocation = \"{location}\"\npassword_file = \"{}\"\n\n{tables}",
            s(&self.repo.base().join("pass"))
        );
        write(&self.config, text);
    }

    pub fn src(&self, name: &str) -> PathBuf {
        let p = self.repo.base().join("src").join(name);
        write(&p.join("file.txt"), format!("data of {name}\n"));
        p
    }

    pub fn daemon_with(&self, env: &[(&str, &str)], extra: &[&str]) -> DaemonProc {
        let log = self.repo.base().join(format!("daemon-{}.log", rand_suffix()));
        let mut c = bare_kura();
        c.args(["daemon", "--config", s(&self.config), "--state", s(&self.state), "--socket", s(&self.socket)])
            .args(extra)
            .env("KURA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().expect("start kura daemon");
        let d = DaemonProc { child: Some(child), log };
        d.wait_for_socket(&self.socket);
        d
    }

    pub fn daemon(&self) -> DaemonProc {
        self.daemon_with(&[], &[])
    }

    /// `kura ARGS --socket SOCK`.
    pub fn cli(&self, args: &[&str]) -> Out {
        run(bare_kura().args(args).args(["--socket", s(&self.socket)]))
    }

    pub fn status(&self) -> Value {
        let o = self.cli(&["--json", "status"]);
        assert!(o.code == 0 || o.code == 1, "{o}");
        o.json()
    }

    pub fn jobs(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["--json", "jobs", "--limit", "1000"];
        args.extend_from_slice(extra);
        match self.cli(&args).ok().json() {
            Value::Array(a) => a,
            v => panic!("jobs --json is not a list: {v}"),
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// A running `kura daemon`; killed (-9) on drop if still running.
pub struct DaemonProc {
    child: Option<Child>,
    log: PathBuf,
}

impl DaemonProc {
    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    fn wait_for_socket(&self, socket: &Path) {
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the daemon did not listen on {socket:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: the pid is our own child's.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the exit; returns the exit code (negative: killed by that signal).
    #[track_caller]
    pub fn wait(&mut self, within: Duration) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        let start = Instant::now();
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st.code().unwrap_or_else(|| -st.signal().unwrap_or(0));
            }
            assert!(start.elapsed() < within, "the daemon did not exit within {within:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(10));
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `f` until it returns Some, up to `secs`.
#[track_caller]
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn runs_of<'a>(runs: &'a [Value], system: &str) -> Vec<&'a Value> {
    runs.iter().filter(|r| r["system"] == system).collect()
}

#[test]
fn scheduled_backups_status_jobs_run_reload_and_sigterm() {
    let setup = Setup::new();
    let web = setup.src("web");
    let tables = format!(
        "[max_backup_age]\np2 = \"1h\"\n\n[[system]]\nname = \"web\"\npriority = 2\npaths = [\"{}\"]\nschedule = \"*/2 * * * * *\"\n",
        s(&web)
    );
    setup.configure("", &tables);
    let mut d = setup.daemon();

    // The control socket is owner-only.
    let mode = std::fs::metadata(&setup.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");

    // A second daemon on the same socket refuses to start.
    let second = run(bare_kura().args([
        "daemon",
        "--config",
        s(&setup.config),
        "--state",
        s(&setup.repo.base().join("other.db")),
        "--socket",
        s(&setup.socket),
    ]));
    second.code(2).stderr_has("another kura daemon is listening");

    // Scheduled backups appear as snapshots tagged with the system.
    let st = eventually(40, "two scheduled backups of web", || {
        let runs = setup.jobs(&["--system", "web"]);
        (runs.iter().filter(|r| r["outcome"] == "ok").count() >= 2).then_some(runs)
    });
    let snaps = setup.repo.snapshots(&["--tag", "system:web"]);
    assert!(snaps.len() >= 2, "{snaps:?}");
    let ok = st.iter().find(|r| r["outcome"] == "ok").unwrap();
    assert_eq!(ok["job"], "backup");
    assert_eq!(ok["trigger"], "schedule");
    let snap = text(ok, "snapshot");
    assert!(snaps.iter().any(|s| s["id"] == snap), "run snapshot {snap} not in {snaps:?}");

    // Status: priority, last backup, its age, not late, next run.
    let status = setup.status();
    let sys = &status["systems"][0];
    assert_eq!(sys["name"], "web");
    assert_eq!(sys["priority"], 2);
    assert!(sys["last_backup"].is_string(), "{status:#}");
    assert!(sys["age_secs"].as_i64().unwrap() < 30, "{status:#}");
    assert_eq!(sys["max_age_secs"], 3600);
    assert_eq!(sys["late"], false);
    assert!(sys["next_run"].is_string(), "{status:#}");
    let human = setup.cli(&["status"]);
    human.ok().stdout_has("web").stdout_has("LAST BACKUP");

    // Run now, waiting for the result. A scheduled run (every 2 s) may hold the job
    // at that moment: that refusal is documented ("already running"); try again.
    let v = eventually(30, "a manual run of web", || {
        let r = setup.cli(&["--json", "run", "web"]);
        if r.code == 2 && r.stderr.contains("already running") {
            return None;
        }
        Some(r.ok().json())
    });
    assert_eq!(v["trigger"], "manual");
    assert_eq!(v["outcome"], "ok");
    let r = setup.cli(&["run", "nope"]);
    r.code(2).stderr_has("no job or system named \"nope\"");
    setup.cli(&["jobs"]).ok().stdout_has("manual");

    // SIGHUP reloads: a new system appears; a broken config is refused, the old kept.
    let db = setup.src("db");
    let cfg_now = std::fs::read_to_string(&setup.config).unwrap();
    write(&setup.config, format!("{cfg_now}\n[[system]]\nname = \"db\"\npriority = 3\npaths = [\"{}\"]\n", s(&db)));
    d.signal(libc::SIGHUP);
    eventually(10, "db in status after SIGHUP", || {
        let st = setup.status();
        st["systems"].as_array().unwrap().iter().any(|s| s["name"] == "db").then_some(())
    });
    setup.configure("", &format!("{tables}\n[[system]]\nname = \"bad\"\npriority = 7\npaths = [\"/\"]\n"));
    d.signal(libc::SIGHUP);
    eventually(10, "the reload error in the log", || d.log().contains("keeping the old one").then_some(()));
    let st = setup.status();
    let names: Vec<&str> = st["systems"].as_array().unwrap().iter().map(|s| text(s, "name")).collect();
    assert_eq!(names, vec!["web", "db"], "the old config stays");

    // SIGTERM: clean exit, socket gone, nothing left running.
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(30)), 0, "{}", d.log());
    assert!(!setup.socket.exists());
    let state = kura::state::State::open(&setup.state).unwrap();
    assert!(state.running_runs().unwrap().is_empty());
    assert!(d.log().contains("kura daemon stopped"), "{}", d.log());
    setup.cli(&["status"]).code(2).stderr_has("no kura daemon is listening on");
}

/// Collects the bodies of HTTP POSTs, answering 200.
fn webhook_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/kura", l.local_addr().unwrap().port());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            let body = loop {
                let n = s.read(&mut buf).unwrap_or(0);
                req.extend_from_slice(&buf[..n]);
                let t = String::from_utf8_lossy(&req).to_string();
                if let Some(i) = t.find("\r\n\r\n") {
                    let len: usize = t
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if req.len() >= i + 4 + len {
                        break t[i + 4..i + 4 + len].to_string();
                    }
                }
                if n == 0 {
                    break String::new();
                }
            };
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            if let Ok(v) = serde_json::from_str(&body) {
                g.lock().unwrap().push(v);
            }
        }
    });
    (url, got)
}

#[test]
fn failing_job_is_recorded_scheduler_continues_and_notifications_fire() {
    let (url, posted) = webhook_server();
    let base = TestRepo::uninit();
    let events = base.base().join("events");
    std::fs::create_dir(&events).unwrap();
    let setup = Setup::new();
    let good = setup.src("good");
    let gone = setup.src("gone");
    setup.configure(
        "",
        &format!(
            "[max_backup_age]\np1 = \"3s\"\n\n\
             [[system]]\nname = \"good\"\npriority = 2\npaths = [\"{}\"]\nschedule = \"*/2 * * * * *\"\n\n\
             [[system]]\nname = \"gone\"\npriority = 1\npaths = [\"{}\"]\nschedule = \"*/2 * * * * *\"\n\n\
             [notify]\nwebhook = \"{url}\"\ncommand = \"cat > \\\"$(mktemp '{}/ev.XXXXXX')\\\"\"\n",
            s(&good),
            s(&gone),
            s(&events)
        ),
    );
    // The path exists when the config is checked, and vanishes afterwards.
    let mut d = setup.daemon_with(&[], &["--log-format", "json"]);
    std::fs::remove_dir_all(&gone).unwrap();
    let runs = eventually(40, "a failed run of gone and later good runs", || {
        let runs = setup.jobs(&[]);
        let failed = runs_of(&runs, "gone").into_iter().filter(|r| r["outcome"] == "failed").count();
        let first_fail = runs
            .iter()
            .filter(|r| r["system"] == "gone" && r["outcome"] == "failed")
            .map(|r| r["id"].as_i64().unwrap())
            .min()?;
        let good_after = runs_of(&runs, "good")
            .into_iter()
            .filter(|r| r["outcome"] == "ok" && r["id"].as_i64().unwrap() > first_fail)
            .count();
        (failed >= 2 && good_after >= 2).then_some(runs)
    });
    let fail = runs.iter().find(|r| r["system"] == "gone" && r["outcome"] == "failed").unwrap();
    assert!(text(fail, "error").contains("No such file"), "{fail:#}");
    // Late once 3 s have passed with no good backup (the failures can come sooner).
    eventually(15, "gone late in status", || {
        let status = setup.status();
        let gone_st = status["systems"].as_array().unwrap().iter().find(|s| s["name"] == "gone").unwrap().clone();
        (gone_st["late"] == true).then_some(())
    });
    assert_eq!(setup.cli(&["status"]).code, 1, "status exits 1 when a system is late");

    // Webhook and command both got job_failed (per failure) and system_late (once).
    let check = |list: &[Value], who: &str| {
        assert!(
            list.iter().any(|e| e["event"] == "job_failed" && e["system"] == "gone" && e["job"] == "backup"),
            "{who}: {list:#?}"
        );
        let late: Vec<_> = list.iter().filter(|e| e["event"] == "system_late").collect();
        assert_eq!(late.len(), 1, "{who}: {list:#?}");
        assert_eq!(late[0]["system"], "gone");
        assert!(!list.iter().any(|e| e["system"] == "good"), "{who}: {list:#?}");
    };
    eventually(10, "webhook events", || {
        let p = posted.lock().unwrap();
        (p.iter().any(|e| e["event"] == "system_late") && p.iter().any(|e| e["event"] == "job_failed")).then_some(())
    });
    check(&posted.lock().unwrap(), "webhook");
    // The command channel is delivered on its own (its outbox rows), maybe later.
    let from_cmd = eventually(10, "command events", || {
        let list: Vec<Value> = std::fs::read_dir(&events)
            .unwrap()
            .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).ok())
            .collect();
        (list.iter().any(|e| e["event"] == "system_late") && list.iter().any(|e| e["event"] == "job_failed"))
            .then_some(list)
    });
    check(&from_cmd, "command");

    // JSON logs: every line is an object.
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(30)), 0);
    let log = d.log();
    assert!(log.lines().count() > 3);
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(log.contains("job failed"), "{log}");
}

/// A daemon killed with -9 leaves its socket file and maybe a run `running`; the
/// next one replaces the stale socket, marks the run interrupted and goes on. (A
/// restart hours later, which catches up once, is driven with a manual clock in
/// crates/daemon/tests/serve.rs.)
#[test]
fn killed_daemon_restarts_on_its_stale_socket() {
    let setup = Setup::new();
    let web = setup.src("web");
    setup.configure(
        "catch_up = \"once\"\n",
        &format!("[[system]]\nname = \"web\"\npriority = 2\npaths = [\"{}\"]\nschedule = \"*/2 * * * * *\"\n", s(&web)),
    );
    let mut d = setup.daemon();
    eventually(40, "a scheduled backup", || setup.jobs(&[]).iter().any(|r| r["outcome"] == "ok").then_some(()));
    d.kill9();
    assert!(setup.socket.exists(), "kill -9 leaves the socket file behind");

    let mut d = setup.daemon();
    let before = setup.jobs(&[]).iter().filter_map(|r| r["id"].as_i64()).max().unwrap();
    eventually(40, "two scheduled runs after the restart", || {
        let runs = setup.jobs(&[]);
        let after = runs.iter().filter(|r| r["id"].as_i64() > Some(before) && r["outcome"] == "ok").count();
        (after >= 2).then_some(())
    });
    let runs = setup.jobs(&[]);
    assert!(runs.iter().all(|r| r["outcome"] != "running" || r["id"].as_i64() > Some(before)), "{runs:#?}");

    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(30)), 0);
    let state = kura::state::State::open(&setup.state).unwrap();
    assert!(state.running_runs().unwrap().is_empty(), "a run was left running");
}

#[test]
fn daemon_stop_waits_for_the_exit() {
    let setup = Setup::new();
    let web = setup.src("web");
    setup.configure("", &format!("[[system]]\nname = \"web\"\npriority = 1\npaths = [\"{}\"]\n", s(&web)));
    let mut d = setup.daemon();
    // On demand only: nothing runs until asked.
    let st = setup.status();
    assert!(st["systems"][0]["next_run"].is_null(), "{st:#}");
    let r = setup.cli(&["--json", "run", "--no-wait", "web"]).ok().json();
    assert_eq!(r["job"], "backup:web");
    run(bare_kura().args(["daemon", "stop", "--socket", s(&setup.socket)])).ok().stdout_has("stopped");
    assert_eq!(d.wait(Duration::from_secs(10)), 0);
    let state = kura::state::State::open(&setup.state).unwrap();
    let runs = state.list_runs(&Default::default()).unwrap();
    assert_eq!(runs.len(), 1);
    assert_ne!(runs[0].outcome, kura::state::jobs::Outcome::Running);
}

#[test]
fn commands_without_a_daemon_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    for args in [&["status"][..], &["jobs"], &["run", "web"], &["daemon", "stop"]] {
        let o = run(bare_kura().args(args).args(["--socket", s(&sock)]));
        o.code(2).stderr_has("no kura daemon is listening on").stderr_has("kura daemon --config");
    }
    // And through KURA_SOCKET.
    run(bare_kura().arg("status").env("KURA_SOCKET", s(&sock))).code(2).stderr_has(s(&sock));
    // Starting needs a valid config; nothing starts on a bad one.
    run(bare_kura().arg("daemon")).code(2).stderr_has("no config given");
    let setup = Setup::new();
    setup.configure("", "[[system]]\nname = \"web\"\npriority = 1\npaths = [\"/\"]\nschedule = \"61 * * * *\"\n");
    let o = run(bare_kura().args([
        "daemon",
        "--config",
        s(&setup.config),
        "--socket",
        s(&setup.socket),
        "--state",
        s(&setup.state),
    ]));
    o.code(2).stderr_has("kura.toml:").stderr_has("schedule").stderr_has("the daemon did not start");
    assert!(!setup.socket.exists() && !setup.state.exists());
}

#[test]
fn sigterm_records_a_run_that_outlives_the_timeout_as_interrupted() {
    let setup = Setup::new();
    let big = setup.repo.base().join("src/big");
    std::fs::create_dir_all(&big).unwrap();
    write_random(&big.join("blob.bin"), 96 << 20, 7);
    setup.configure("", &format!("[[system]]\nname = \"big\"\npriority = 1\npaths = [\"{}\"]\n", s(&big)));
    let mut d = setup.daemon_with(&[], &["--shutdown-timeout", "0"]);
    let r = setup.cli(&["--json", "run", "--no-wait", "big"]).ok().json();
    let id = r["started"].as_i64().unwrap();
    let st = setup.status();
    assert_eq!(st["running"][0]["run"], id, "the backup should still run: {st:#}");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(20)), 0, "{}", d.log());
    let state = kura::state::State::open(&setup.state).unwrap();
    let run = state.run(id).unwrap().unwrap();
    assert_eq!(run.outcome, kura::state::jobs::Outcome::Interrupted, "{run:?}");
    assert!(run.error.unwrap().contains("did not end within 0 s"));
    assert!(d.log().contains("recorded as interrupted"), "{}", d.log());
}

#[test]
fn scheduled_drill_job_runs_the_recovery_engine_into_a_sandbox() {
    let setup = Setup::new();
    let web = setup.src("web");
    setup.repo.backup(&[&web], &["--tag", "system:web"]);
    let plan = setup.repo.base().join("plan.toml");
    let target = setup.repo.base().join("real-target/web");
    write(&plan, format!("name = \"drill-plan\"\n\n[[system]]\nname = \"web\"\ntarget = \"{}\"\n", s(&target)));
    let tables = format!(
        "[[system]]\nname = \"web\"\npriority = 2\npaths = [\"{}\"]\n\n[jobs.drill]\nschedule = \"0 0 1 1 *\"\nplan = \"{}\"\n",
        s(&web),
        s(&plan)
    );
    setup.configure("catch_up = \"skip\"", &tables);
    let _d = setup.daemon();
    setup.cli(&["run", "drill"]).ok();
    let runs = setup.jobs(&[]);
    let drill = runs.iter().find(|r| r["job"] == "drill").expect("a drill run");
    assert_eq!(drill["outcome"], "ok", "{drill}");
    // The drill is recorded like one run by hand, and the real target was not touched.
    let list = run(bare_kura().args(["--json", "--state", s(&setup.state), "drill", "list"])).ok().json();
    assert_eq!(list[0]["systems"][0]["state"], "done", "{list}");
    assert_eq!(list[0]["systems"][0]["verdict"], "met", "{list}");
    assert!(!target.exists());
}

#[test]
fn cron_schedules_are_evaluated_in_the_local_time_zone() {
    // docs/CONFIG.md and docs/DAEMON.md: cron fields are local time (the TZ
    // variable). 03:30 at UTC+05:30 is 22:00 UTC the day before.
    let setup = Setup::new();
    let web = setup.src("web");
    let tables =
        format!("[[system]]\nname = \"web\"\npriority = 1\npaths = [\"{}\"]\nschedule = \"30 3 * * *\"\n", s(&web));
    setup.configure("", &tables);
    let mut d = setup.daemon_with(&[("TZ", "XYZ-5:30")], &[]);
    let st = setup.status();
    let next: chrono::DateTime<chrono::Utc> =
        text(&st["systems"][0], "next_run").parse().unwrap_or_else(|e| panic!("{e}: {st:#}"));
    assert_eq!(next.format("%H:%M:%S").to_string(), "22:00:00", "{st:#}");
    let now = chrono::Utc::now();
    assert!(next > now && next - now <= chrono::Duration::hours(24), "the next slot, within a day: {next}");
    run(bare_kura().args(["daemon", "stop", "--socket", s(&setup.socket)])).ok();
    assert_eq!(d.wait(Duration::from_secs(10)), 0);
}
