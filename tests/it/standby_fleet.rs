//! Standbys on agent hosts (docs/STANDBY.md, docs/FLEET.md), with real processes
//! and mutual TLS: a coordinator, an agent for the primary host `app1`, an agent
//! for the standby host `dr1`. Backups keep the standby on dr1 current byte for
//! byte; a failover rolls it back and promotes it there; a failback brings the
//! standby's data to the primary on app1; a kill -9 of dr1's agent mid-apply never
//! shows a standby holding what it does not hold; detection runs after agent-hosted
//! backups and a suspect snapshot never reaches the standby. Also: one operation on
//! a standby at a time.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fleet_util::*;
use crate::util::*;

/// A coordinator and its two agents, a system `db` on app1 with its standby on dr1.
struct Site {
    _base: tempfile::TempDir,
    fleet: Fleet,
    src: PathBuf,
    sb: PathBuf,
    _d: crate::daemon::DaemonProc,
    app1: AgentProc,
    dr1: AgentProc,
}

impl Site {
    fn new(priority: u8, standby_extra: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let (src, sb) = (base.join("app1/db"), base.join("dr1/standby/db"));
        fs::create_dir_all(&src).unwrap();
        let systems = format!(
            "{}[system.standby]\nhost = \"dr1\"\npath = \"{}\"\n{standby_extra}\n",
            system("db", priority, "app1", &src),
            s(&sb)
        );
        let fleet = Fleet::new(&systems);
        let d = fleet.daemon();
        let (app1, dr1) = (fleet.agent("app1"), fleet.agent("dr1"));
        Site { _base: dir, fleet, src, sb, _d: d, app1, dr1 }
    }

    fn kura(&self, args: &[&str]) -> std::process::Command {
        let mut c = bare_kura();
        c.arg("--state").arg(self.fleet.state()).env("KURA_CONFIG", &self.fleet.setup.config).args(args);
        c
    }

    /// `kura run db` through the daemon: the agent's backup, then detection and the standby.
    #[track_caller]
    fn backup(&self) -> Value {
        self.fleet.setup.cli(&["--json", "run", "db"]).json()
    }

    fn status(&self) -> Value {
        run(&mut self.kura(&["--json", "standby", "status"])).json()[0].clone()
    }

    fn marker(&self) -> Option<Value> {
        let m = self.sb.with_file_name(".db.kura-standby");
        fs::read(m).ok().map(|b| serde_json::from_slice(&b).unwrap())
    }

    fn snapshot_time(&self, id: &str) -> String {
        let snaps = self.fleet.host_snapshots("app1");
        let snap = snaps.iter().find(|x| x["id"] == id).unwrap_or_else(|| panic!("no {id}: {snaps:?}"));
        snap["time"].as_str().unwrap().to_string()
    }
}

/// `write_random` into a directory made first.
fn rand_file(p: &std::path::Path, len: usize, seed: u64) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    write_random(p, len, seed);
}

fn snap_of(run: &Value) -> String {
    run["snapshot"].as_str().unwrap_or_else(|| panic!("no snapshot: {run:#}")).to_string()
}

#[test]
fn a_standby_on_an_agent_host_is_kept_current_failed_over_and_failed_back_there() {
    let hooks = "fence = 'echo fenced > fence.marker'\n\
                 promote = 'echo \"$KURA_SNAPSHOT\" > promote.marker'\n\
                 verify = ['test -f \"$KURA_STANDBY/ok.txt\"', 'echo verified >> verify.marker']\n\
                 demote = 'echo demoted > demote.marker'\n\
                 unfence = 'echo unfenced > unfence.marker'\n";
    let site = Site::new(3, hooks);
    write(&site.src.join("ok.txt"), "service config\n");
    write(&site.src.join("keep/notes.txt"), "notes\n");
    write(&site.src.join("gone.txt"), "to be deleted\n");
    rand_file(&site.src.join("data/blob.bin"), 300_000, 1);

    let first = site.backup();
    assert_eq!(first["outcome"], "ok", "{first:#}");
    let id1 = snap_of(&first);
    assert_same_tree(&site.src, &site.sb, FULL);
    let st = site.status();
    assert_eq!(st["snapshot"].as_str(), Some(id1.as_str()), "{st}");
    assert_eq!(st["path"].as_str().unwrap(), format!("dr1:{}", s(&site.sb)));
    assert_eq!((st["state"].as_str(), st["verify_ok"].as_bool()), (Some("current"), Some(true)), "{st}");
    // The verify hooks ran on the standby host (in its agent's directory), not here.
    assert!(site.dr1.dir.join("verify.marker").exists(), "{}", site.dr1.log());
    assert!(!site.app1.dir.join("verify.marker").exists());

    // A deletion, a change, a new file: the standby follows byte for byte.
    fs::remove_file(site.src.join("gone.txt")).unwrap();
    rand_file(&site.src.join("data/blob.bin"), 300_000, 2);
    write(&site.src.join("keep/new.txt"), "new\n");
    let second = site.backup();
    assert_eq!(second["outcome"], "ok", "{second:#}");
    let id2 = snap_of(&second);
    assert_same_tree(&site.src, &site.sb, FULL);
    assert!(!site.sb.join("gone.txt").exists());
    let applied = &second["detail"]["standby"];
    assert_eq!((applied["outcome"].as_str(), applied["host"].as_str()), (Some("applied"), Some("dr1")), "{applied}");
    assert_eq!(applied["sync"]["holds"].as_str(), Some(id2.as_str()), "{applied}");
    assert!(num(&applied["sync"], "removed") >= 1 && num(&applied["sync"], "files_unchanged") >= 2, "{applied}");

    // The compromise begins: the third snapshot is after it.
    std::thread::sleep(Duration::from_millis(1100));
    write(&site.src.join("encrypted.locked"), "ransom\n");
    let id3 = snap_of(&site.backup());
    assert_eq!(site.status()["snapshot"].as_str(), Some(id3.as_str()));
    let since = site.snapshot_time(&id3);
    run(&mut site.kura(&["incident", "open", "--title", "ransomware", "--compromised-since", &since])).ok();

    let failover = run(&mut site.kura(&["--json", "failover", "db", "--incident", "1"]));
    // The incident's chain is keyed and anchored with the config's repository, not
    // the system's host repository.
    assert!(!failover.ok().stderr.contains("not anchored"), "{failover}");
    let out = failover.json();
    assert_eq!(out["phase"], "done", "{out}");
    assert_eq!(out["snapshot"].as_str(), Some(id2.as_str()), "not rolled back to the clean point: {out}");
    assert!(!site.sb.join("encrypted.locked").exists(), "the roll-back left the compromised file");
    assert!(site.sb.join("keep/new.txt").exists() && !site.sb.join("gone.txt").exists());
    // Fence on the primary's host, promote on the standby's.
    assert_eq!(fs::read_to_string(site.app1.dir.join("fence.marker")).unwrap(), "fenced\n");
    assert_eq!(fs::read_to_string(site.dr1.dir.join("promote.marker")).unwrap().trim(), id2);
    assert!(!site.app1.dir.join("promote.marker").exists() && !site.dr1.dir.join("fence.marker").exists());
    let st = site.status();
    assert_eq!((st["state"].as_str(), st["snapshot"].as_str()), (Some("serving"), Some(id2.as_str())), "{st}");

    // The standby serves and takes writes; failback brings them to the rebuilt primary.
    write(&site.sb.join("written-on-standby.txt"), "order 4711\n");
    fs::remove_dir_all(&site.src).unwrap();
    fs::create_dir_all(&site.src).unwrap();
    let back = run(&mut site.kura(&["--json", "failback", "db"])).ok().json();
    assert_eq!(back["phase"], "done", "{back}");
    assert_eq!(fs::read_to_string(site.src.join("written-on-standby.txt")).unwrap(), "order 4711\n");
    assert_same_tree(&site.sb, &site.src, FULL);
    assert!(site.dr1.dir.join("demote.marker").exists() && site.app1.dir.join("unfence.marker").exists());
    assert_eq!(site.status()["state"], "current");

    // A failover drill on the standby host: a copy in the sandbox there, verified.
    let sandbox = site.sb.parent().unwrap().parent().unwrap().join("drill");
    let drill = run(&mut site.kura(&["--json", "standby", "drill", "--sandbox", s(&sandbox), "--keep"])).ok().json();
    assert_eq!(drill[0]["phase"], "done", "{drill}");
    assert_same_tree(&site.sb, &sandbox.join("db"), FULL);

    // A recovery run fails db over to its standby on dr1 instead of restoring it.
    write(
        &site.src.join("after-failback.txt"),
        "newest
",
    );
    let id_new = snap_of(&site.backup());
    fs::remove_file(site.dr1.dir.join("promote.marker")).unwrap();
    let plan = site.sb.parent().unwrap().parent().unwrap().join("plan.toml");
    let restore_to = site.sb.parent().unwrap().parent().unwrap().join("restore/db");
    write(
        &plan,
        format!(
            "name = 'dr'
config = '{}'

[[system]]
name = 'db'
target = '{}'
",
            s(&site.fleet.setup.config),
            s(&restore_to)
        ),
    );
    run(&mut site.kura(&["incident", "open", "--title", "site down"])).ok();
    run(&mut site.kura(&["incident", "resolve-cause", "2", "--note", "fixed"])).ok();
    let rec = run(&mut site.kura(&["--json", "recover", "--incident", "2", "--plan", s(&plan)])).ok().json();
    let db = &rec["systems"][0];
    assert_eq!((db["failover"].as_bool(), db["verdict"].as_str()), (Some(true), Some("met")), "{rec:#}");
    assert_eq!((db["ran_on"].as_str(), db["target"].as_str()), (Some("dr1"), Some(s(&site.sb))), "{db}");
    assert_same_tree(&site.src, &site.sb, FULL);
    assert!(!restore_to.exists(), "db was restored although it failed over");
    assert_eq!(fs::read_to_string(site.dr1.dir.join("promote.marker")).unwrap().trim(), id_new);
    let st = site.status();
    assert_eq!((st["state"].as_str(), st["snapshot"].as_str()), (Some("serving"), Some(id_new.as_str())), "{st}");
    // Every standby task ran on dr1, and the passphrase never reached a file there.
    let log = site.dr1.log();
    assert!(log.contains("standby_apply"), "{log}");
    let pass = fs::read_to_string(site.fleet.host_repo("app1").1).unwrap();
    for f in files_under(&site.dr1.dir) {
        let body = fs::read(site.dr1.dir.join(&f)).unwrap();
        assert!(!String::from_utf8_lossy(&body).contains(pass.trim()), "passphrase stored in {}", f.display());
    }
}

#[test]
fn kill_9_of_the_standby_agent_mid_apply_never_shows_a_snapshot_it_does_not_hold() {
    let mut site = Site::new(2, "");
    write(&site.src.join("small.txt"), "v1\n");
    let id1 = snap_of(&site.backup());
    assert_eq!(site.status()["snapshot"].as_str(), Some(id1.as_str()));

    // Enough new data that the apply on dr1 takes a while.
    for i in 0..24 {
        rand_file(&site.src.join(format!("big/{i:02}.bin")), 4_000_000, 100 + i);
    }
    let job = bare_kura()
        .args(["--json", "run", "db", "--socket", s(&site.fleet.setup.socket)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(Value::Object(m)) = site.marker() {
            if m.get("state").and_then(|v| v.as_str()) == Some("applying") {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the apply never started: {}", site.dr1.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    site.dr1.kill9();
    // Half applied: neither the marker nor the coordinator says it holds anything.
    assert_eq!(site.marker().unwrap()["state"], "applying");
    let st = site.status();
    assert!(st["snapshot"].is_null(), "a half-updated standby claims a snapshot: {st}");
    assert_eq!(st["state"], "applying", "{st}");

    // The agent comes back, gets its held task again and finishes it.
    site.dr1.restart();
    let out = job.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
    assert_eq!(v["outcome"], "ok", "{v:#}");
    let id2 = snap_of(&v);
    assert_same_tree(&site.src, &site.sb, FULL);
    assert_eq!(site.marker().unwrap()["snapshot"].as_str(), Some(id2.as_str()));
    let st = site.status();
    assert_eq!((st["state"].as_str(), st["snapshot"].as_str()), (Some("current"), Some(id2.as_str())), "{st}");
}

#[test]
fn detection_runs_after_agent_backups_and_a_suspect_snapshot_never_reaches_the_standby() {
    let site = Site::new(2, "");
    crate::detect::text_tree(&site.src, 80);
    // The baseline: the default rules judge nothing before 5 comparable snapshots.
    let mut last = String::new();
    for _ in 0..6 {
        let r = site.backup();
        assert_eq!(r["outcome"], "ok", "{r:#}");
        assert!(r["detail"]["detect"]["verdict"].is_object(), "detection did not run: {r:#}");
        last = snap_of(&r);
    }
    assert_eq!(site.status()["snapshot"].as_str(), Some(last.as_str()));
    assert_same_tree(&site.src, &site.sb, FULL);
    let clean_copy = site.sb.parent().unwrap().join("clean-copy");
    assert!(std::process::Command::new("cp").arg("-a").arg(&site.sb).arg(&clean_copy).status().unwrap().success());

    assert_eq!(crate::detect::ransomware(&site.src, 0.6), 48);
    let hit = site.backup();
    assert_eq!(hit["outcome"], "partial", "{hit:#}");
    assert!(text(&hit, "error").contains("suspect"), "{hit:#}");
    assert_eq!(hit["detail"]["detect"]["verdict"]["verdict"], "suspect", "{hit:#}");
    assert_eq!(hit["detail"]["detect"]["held"].as_str(), Some(last.as_str()), "the clean point is not held: {hit:#}");

    // A draft incident names the system; the standby still holds the clean data.
    let inc = run(&mut site.kura(&["--json", "incident", "list"])).ok().json();
    let list = inc.as_array().unwrap();
    assert_eq!(list.len(), 1, "{inc:#}");
    assert!(text(&list[0], "title").contains("db"), "{inc:#}");
    let st = site.status();
    assert_eq!(st["snapshot"].as_str(), Some(last.as_str()), "the standby moved to a suspect snapshot: {st}");
    assert_same_tree(&clean_copy, &site.sb, FULL);
    assert_eq!(site.marker().unwrap()["snapshot"].as_str(), Some(last.as_str()));
}

/// A local site for the lock test: one system with a standby whose verify hook is slow.
fn local_site(r: &TestRepo, verify: &str) -> (PathBuf, PathBuf, PathBuf) {
    let base = r.base();
    let pw = base.join("pw");
    write(&pw, PASSWORD);
    chmod(&pw, 0o600);
    let r = &r.path;
    let (src, sb, cfg) = (base.join("src"), base.join("standby/db"), base.join("kura.toml"));
    write(&src.join("data.txt"), "v1\n");
    write(
        &cfg,
        format!(
            "[repository]\nlocation = '{}'\npassword_file = '{}'\n\n[[system]]\nname = 'db'\npriority = 3\npaths = ['{}']\n\n[system.standby]\npath = '{}'\n{verify}\n",
            s(r),
            s(&pw),
            s(&src),
            s(&sb)
        ),
    );
    (cfg, src, sb)
}

#[test]
fn a_second_operation_on_a_standby_waits_for_the_first_and_then_decides_afresh() {
    let repo = TestRepo::new();
    let base = repo.base();
    let log = base.join("steps.log");
    let flag = base.join("slow");
    let verify = format!(
        "verify = ['if [ -e {f} ]; then rm {f}; echo verify-start >> {l}; sleep 3; fi; echo verify-end >> {l}']\n\
         fence = 'echo fence >> {l}'\npromote = 'echo promote >> {l}'",
        f = s(&flag),
        l = s(&log)
    );
    let (cfg, src, sb) = local_site(&repo, &verify);
    let state = base.join("state.db");
    let kura = |args: &[&str]| {
        let mut c = bare_kura();
        c.arg("--state").arg(&state).env("KURA_CONFIG", &cfg).args(args);
        c
    };
    let id1 =
        run(&mut kura(&["--json", "backup", "--system", "db"])).ok().json()["snapshot"].as_str().unwrap().to_string();
    write(&src.join("data.txt"), "v2\n");
    let id2 =
        run(&mut kura(&["--json", "backup", "--system", "db"])).ok().json()["snapshot"].as_str().unwrap().to_string();
    run(&mut kura(&["incident", "open", "--title", "test"])).ok();

    // A keep-current whose verification is slow holds the standby...
    write(&flag, "");
    let mut first = kura(&["standby", "apply", "db"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while !fs::read_to_string(&log).unwrap_or_default().contains("verify-start") {
        assert!(started.elapsed() < Duration::from_secs(60), "the slow verify never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...so a failover started meanwhile waits, says why, then rolls back to snapshot 1.
    let out = run(&mut kura(&["--json", "failover", "db", "--incident", "1", "--snapshot", &id1]));
    let out = out.ok();
    assert!(out.stderr.contains("the standby of db is busy"), "{out}");
    assert!(out.stderr.contains("keeping it current"), "the message names the holder: {out}");
    assert!(first.wait().unwrap().success());
    let steps: Vec<String> = fs::read_to_string(&log).unwrap().lines().map(String::from).collect();
    let pos = |w: &str| steps.iter().position(|l| l == w).unwrap_or_else(|| panic!("no {w}: {steps:?}"));
    assert!(pos("verify-end") < pos("fence"), "the failover did not wait for the apply: {steps:?}");
    assert_eq!(fs::read_to_string(sb.join("data.txt")).unwrap(), "v1\n");
    let st = run(&mut kura(&["--json", "standby", "status"])).json()[0].clone();
    assert_eq!((st["state"].as_str(), st["snapshot"].as_str()), (Some("serving"), Some(id1.as_str())), "{st}");
    // A keep-current after it finds the standby serving and leaves it alone.
    let again = run(&mut kura(&["--json", "standby", "apply", "db"])).ok().json();
    assert_eq!(again["outcome"], "skipped", "{again}");
    assert_ne!(id1, id2);
}

/// Bad input: a standby host without the fleet, a relative path on another host,
/// and a standby host whose agent never connected: each named, nothing claimed.
#[test]
fn a_standby_host_without_the_fleet_or_its_agent_is_refused_clearly() {
    let repo = TestRepo::new();
    let (cfg, _src, sb) = local_site(&repo, "host = 'dr1'");
    let check = run(bare_kura().args(["config", "check", s(&cfg)]));
    let check = check.code(2);
    check.stderr_has("standby.host").stderr_has("needs the fleet").stderr_has("kura.toml:");

    let text = fs::read_to_string(&cfg).unwrap();
    let fleet = format!("[fleet]\nlisten = '127.0.0.1:{}'\nname = 'coord'\n\n", crate::servers::free_port());
    write(&cfg, format!("{fleet}{}", text.replace(&format!("path = '{}'", s(&sb)), "path = 'relative/db'")));
    run(bare_kura().args(["config", "check", s(&cfg)])).code(2).stderr_has("absolute path");

    // With the fleet, but dr1's agent never connected: the backup is kept, the
    // standby is not claimed to hold it, and the error says what to do.
    write(&cfg, format!("{fleet}{text}"));
    let state = repo.base().join("state.db");
    let kura = |args: &[&str]| {
        let mut c = bare_kura();
        c.arg("--state").arg(&state).env("KURA_CONFIG", &cfg).args(args);
        c
    };
    let out = run(&mut kura(&["backup", "--system", "db"]));
    out.code(2).stderr_has("agent dr1 has never connected").stderr_has("kura agent enroll dr1");
    assert_eq!(repo.snapshots(&[]).len(), 1, "the backup itself is kept");
    let st = run(&mut kura(&["--json", "standby", "status"])).json()[0].clone();
    assert!(st["snapshot"].is_null(), "{st}");
    assert_eq!((st["state"].as_str(), st["path"].as_str()), (Some("failed"), Some(format!("dr1:{}", s(&sb)).as_str())));
    assert!(!sb.exists(), "nothing was written here for a standby on dr1");
}

/// kill -9 of `kura failover` while its fence runs on app1's agent: run again, it
/// waits for the same fence task (not a second one) and completes on dr1.
#[test]
fn a_failover_killed_during_its_remote_fence_resumes_without_fencing_twice() {
    let site = Site::new(2, "fence = 'echo fence >> fence.log; sleep 4'\npromote = 'echo promoted > promote.marker'\n");
    write(&site.src.join("data.txt"), "v1\n");
    let id1 = snap_of(&site.backup());
    write(&site.src.join("data.txt"), "v2\n");
    write(&site.src.join("later.txt"), "later\n");
    snap_of(&site.backup());
    run(&mut site.kura(&["incident", "open", "--title", "test"])).ok();

    let args = ["--json", "failover", "db", "--incident", "1", "--snapshot", &id1];
    let mut first = site.kura(&args).stdout(std::process::Stdio::null()).spawn().unwrap();
    let fence_log = site.app1.dir.join("fence.log");
    let started = Instant::now();
    while !fence_log.exists() {
        assert!(first.try_wait().unwrap().is_none(), "the failover ended before its fence ran");
        assert!(started.elapsed() < Duration::from_secs(60), "the fence never ran: {}", site.app1.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let out = run(&mut site.kura(&args)).ok().json();
    assert_eq!((out["phase"].as_str(), out["snapshot"].as_str()), (Some("done"), Some(id1.as_str())), "{out}");
    assert_eq!(fs::read_to_string(&fence_log).unwrap(), "fence\n", "fenced twice");
    assert_eq!(fs::read_to_string(site.sb.join("data.txt")).unwrap(), "v1\n");
    assert!(!site.sb.join("later.txt").exists());
    assert!(site.dr1.dir.join("promote.marker").exists());
    assert_eq!(site.status()["state"], "serving");
}
