//! The coordinator's state database at the remote site (issue #14): pushed by the
//! CLI and by the daemon when it changes, brought back on a "fresh machine" after
//! the state file and the local repository are gone, and a recovery that goes on
//! from the remote site. Versions survive a push killed with -9.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::daemon::{eventually, Setup};
use crate::servers::Garage;
use crate::util::*;

struct Site {
    _g: Garage,
    dir: tempfile::TempDir,
    local: PathBuf,
    remote: String,
    config: PathBuf,
    plan: PathBuf,
    state: PathBuf,
    mark: PathBuf,
}

impl Site {
    /// Two systems backed up locally and copied to a Garage remote; `web`'s pre hook
    /// waits 30 s the first time it runs (a recovery to kill in the middle).
    fn new() -> Site {
        let g = Garage::start();
        let dir = tempfile::Builder::new().prefix("kura-it-coord-").tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let (local, remote) = (base.join("repo"), g.location("offsite/site", ""));
        let pw = base.join("pass");
        write(&pw, PASSWORD);
        chmod(&pw, 0o600);
        let mark = base.join("web-pre-started");
        let (config, plan, state) = (base.join("kura.toml"), base.join("plan.toml"), base.join("state/state.db"));
        write(
            &config,
            format!(
                "state = '{}'\n[repository]\nlocation = '{}'\npassword_file = '{}'\n[remote]\nlocation = '{remote}'\n\
                 password_file = '{}'\n\n[[system]]\nname = 'db'\npriority = 2\npaths = ['{}']\n\n\
                 [[system]]\nname = 'web'\npriority = 1\npaths = ['{}']\n",
                state.display(),
                local.display(),
                pw.display(),
                pw.display(),
                base.join("src/db").display(),
                base.join("src/web").display(),
            ),
        );
        let hook = format!("if [ ! -e {m} ]; then touch {m}; sleep 30; fi", m = mark.display());
        write(
            &plan,
            format!(
                "name = 'site'\nconfig = '{}'\n\n[[system]]\nname = 'db'\ntarget = '{}'\n\n[[system]]\nname = 'web'\n\
                 target = '{}'\ndepends_on = ['db']\n[[system.pre]]\ncommand = '{hook}'\ntimeout = '1m'\n",
                config.display(),
                base.join("restore/db").display(),
                base.join("restore/web").display(),
            ),
        );
        let site = Site { _g: g, dir, local, remote, config, plan, state, mark };
        site.kura(&["--repo", s(&site.local), "init"]).ok();
        for name in ["db", "web"] {
            let src = site.src(name);
            sample_tree(&src, 50_000);
            let tag = format!("system:{name}");
            site.kura(&["--repo", s(&site.local), "backup", s(&src), "--tag", &tag]).ok();
        }
        site.kura(&["--repo", s(&site.local), "copy", "--to", &site.remote]).ok();
        site
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    fn src(&self, name: &str) -> PathBuf {
        self.base().join("src").join(name)
    }

    /// `kura ARGS` with the passphrase and the config in the environment; no --state:
    /// the config's `state` is used.
    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_at(&self.state, args)
    }

    fn cmd_at(&self, state: &Path, args: &[&str]) -> Command {
        let mut c = bare_kura();
        c.args(args).env("KURA_PASSWORD", PASSWORD).env("KURA_CONFIG", &self.config);
        c.arg("--state").arg(state);
        c
    }

    #[track_caller]
    fn kura(&self, args: &[&str]) -> Out {
        run(&mut self.cmd(args))
    }

    fn versions(&self) -> Vec<Value> {
        match self.kura(&["--json", "coordinator", "versions"]).ok().json() {
            Value::Array(v) => v,
            v => panic!("versions --json is not a list: {v}"),
        }
    }
}

fn taken_at(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text(v, "taken_at")).unwrap().with_timezone(&chrono::Utc)
}

#[test]
fn a_fresh_coordinator_restores_incidents_and_runs_from_the_remote_and_recovery_goes_on() {
    let site = Site::new();
    let opened = site.kura(&["--json", "incident", "open", "--title", "ransomware on the coordinator too"]).ok().json();
    let id = opened["id"].as_i64().unwrap().to_string();
    site.kura(&["incident", "resolve-cause", &id, "--note", "reimaged"]).ok();
    assert!(!site.versions().is_empty(), "the incident commands pushed nothing");

    // A recovery from the local repository, killed while web's pre hook runs: db is
    // done, web is in its pre phase.
    let mut child = site
        .cmd(&["recover", "--incident", &id, "--plan", s(&site.plan), "--parallel", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !site.mark.exists() {
        assert!(t.elapsed() < Duration::from_secs(60), "web's pre hook never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let marked = chrono::DateTime::<chrono::Utc>::from(SystemTime::now());
    // The recovery pushes while it runs: wait for a version taken after web started.
    eventually(60, "a version pushed during the recovery", || {
        site.versions().last().filter(|v| taken_at(v) > marked).cloned()
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let pushed = site.versions();

    // The coordinator's machine is lost: its state database and its repository.
    fs::remove_dir_all(site.state.parent().unwrap()).unwrap();
    fs::remove_dir_all(&site.local).unwrap();

    let r = site.kura(&["--json", "coordinator", "restore"]).ok().json();
    assert_eq!(r["version"]["name"], pushed.last().unwrap()["name"], "{r:#}");
    assert_eq!((num(&r, "incidents"), num(&r, "runs")), (1, 1), "{r:#}");
    assert_eq!(fs::metadata(&site.state).unwrap().permissions().mode() & 0o777, 0o600);
    site.kura(&["coordinator", "restore"]).code(2).stderr_has("already holds a state database").stderr_has("--force");
    let human = site.kura(&["coordinator", "restore", "--force"]).ok().stdout.clone();
    assert!(human.contains("restored") && human.contains(text(pushed.last().unwrap(), "name")), "{human}");

    let shown = site.kura(&["--json", "incident", "show", &id]).ok().json();
    assert_eq!(shown["incident"]["title"], "ransomware on the coordinator too", "{shown:#}");
    let status = site.kura(&["--json", "recover", "status", "--incident", &id]).ok().json();
    let state_of = |v: &Value, name: &str| {
        v["systems"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["state"].clone()
    };
    assert_eq!(state_of(&status, "db"), "done", "{status:#}");
    assert_ne!(state_of(&status, "web"), "done", "{status:#}");

    // The recovery goes on, from the remote site: db is not redone.
    let done =
        site.kura(&["--json", "recover", "--incident", &id, "--plan", s(&site.plan), "--from", "remote"]).ok().json();
    assert_eq!(done["outcome"]["done"], 2, "{done:#}");
    for name in ["db", "web"] {
        assert_same_tree(&site.src(name), &site.base().join("restore").join(name), FULL);
    }
    let status = site.kura(&["--json", "recover", "status", "--incident", &id]).ok().json();
    assert_eq!(status["run"]["status"], "done", "{status:#}");
    assert!(site.versions().len() > pushed.len(), "the finished recovery was not pushed");
}

#[test]
fn a_push_killed_midway_leaves_the_earlier_versions_intact() {
    let site = Site::new();
    for i in 0..3 {
        site.kura(&["incident", "open", "--title", &format!("incident {i}")]).ok();
    }
    let before = site.versions();
    assert!(before.len() >= 3, "{before:#?}");
    for delay_ms in [0u64, 30, 100, 250, 600] {
        let mut c = site.cmd(&["coordinator", "push"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        c.kill().unwrap();
        c.wait().unwrap();
        let now = site.versions();
        for v in &before {
            assert!(now.iter().any(|n| n["name"] == v["name"]), "version {} went after a killed push", v["name"]);
        }
    }
    // Every version on the remote site restores whole; each holds the incidents
    // opened before it was taken.
    let mut last = 0;
    for (i, v) in site.versions().iter().enumerate() {
        let state = site.base().join(format!("check{i}/state.db"));
        let r = run(&mut site.cmd_at(&state, &["--json", "coordinator", "restore", "--version", text(v, "name")]));
        r.ok();
        let n = num(&r.json(), "incidents");
        assert!(n >= last.max(1), "{}", r.json());
        last = n;
    }
    assert_eq!(last, 3);
    site.kura(&["coordinator", "push"]).ok().stdout_has("pushed");

    // A coordinator started afresh by mistake (a new, empty database) pushes a
    // database of its own: it cannot push the real one's versions out, and a restore
    // must then be told which database it wants.
    let real_db = text(site.versions().last().unwrap(), "db").to_string();
    let stray = site.base().join("stray/state.db");
    for _ in 0..3 {
        run(&mut site.cmd_at(&stray, &["incident", "open", "--title", "stray"])).ok();
    }
    assert!(site.versions().iter().any(|v| v["db"] != real_db.as_str()));
    let fresh = site.base().join("fresh/state.db");
    run(&mut site.cmd_at(&fresh, &["coordinator", "restore"])).code(2).stderr_has("copies of 2 state databases");
    let r = run(&mut site.cmd_at(&fresh, &["--json", "coordinator", "restore", "--db", &real_db])).ok().json();
    assert_eq!((num(&r, "incidents"), r["version"]["db"].as_str()), (3, Some(real_db.as_str())), "{r:#}");
    site.kura(&["coordinator", "restore", "--version", "20200101T000000.000000Z-00000000", "--force"])
        .code(2)
        .stderr_has("no such version");
}

#[test]
fn the_daemon_pushes_each_change_and_the_copy_reads_back_with_the_config_alone() {
    let g = Garage::start();
    let setup = Setup::new();
    let remote = g.location("offsite/daemon", "");
    run(bare_kura().args(["--repo", &remote, "init"]).env("KURA_PASSWORD", PASSWORD)).ok();
    let pass = setup.repo.base().join("pass");
    setup.configure("", &format!("[remote]\nlocation = '{remote}'\npassword_file = '{}'\n", s(&pass)));
    let versions = || -> Vec<Value> {
        let o = run(bare_kura().args(["--json", "coordinator", "versions", "--config", s(&setup.config)]));
        match o.ok().json() {
            Value::Array(v) => v,
            v => panic!("{v}"),
        }
    };
    let _d = setup.daemon();
    // The first step pushes what the daemon starts with.
    eventually(60, "the daemon's first push", || (!versions().is_empty()).then_some(()));
    let first = versions().len();
    // An incident recorded by a CLI that knows no config (so it pushes nothing itself):
    // the daemon sees the database change and pushes.
    run(bare_kura()
        .args(["incident", "open", "--title", "seen by the daemon", "--state", s(&setup.state)])
        .env_remove("KURA_CONFIG"))
    .ok();
    eventually(60, "the daemon's push of the change", || (versions().len() > first).then_some(()));
    // Nothing changes: nothing more is pushed.
    let n = versions().len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(versions().len(), n, "the daemon pushed an unchanged database");

    // A fresh machine: the config alone (and the remote's credentials in it).
    let fresh = setup.repo.base().join("fresh/state.db");
    let r =
        run(bare_kura().args(["--json", "coordinator", "restore", "--config", s(&setup.config), "--state", s(&fresh)]))
            .ok()
            .json();
    assert_eq!(num(&r, "incidents"), 1, "{r:#}");
    let list = run(bare_kura().args(["--json", "incident", "list", "--state", s(&fresh)])).ok().json();
    assert!(list.to_string().contains("seen by the daemon"), "{list:#}");
}

/// Object lock on the remote (moto): every version is uploaded under retention, and
/// the trimming beyond the newest 20 keeps what retention protects.
#[test]
fn versions_under_object_lock_are_retained_not_deleted() {
    let m = crate::servers::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let loc = m.location("kura-coord-locked/site", "&object_lock_days=1&object_lock_mode=governance");
    // The bucket is made with object lock by a first repository; this one is made
    // without retention, so that its key can be swapped for a cheap one.
    let other = m.location("kura-coord-locked/other", "&object_lock_days=1&object_lock_mode=governance");
    run(bare_kura().args(["--repo", &other, "init"]).env("KURA_PASSWORD", PASSWORD)).ok();
    let plain = m.location("kura-coord-locked/site", "");
    run(bare_kura().args(["--repo", &plain, "init"]).env("KURA_PASSWORD", PASSWORD)).ok();
    crate::shared_bucket::cheap_key(&plain);
    let state = dir.path().join("state.db");
    run(bare_kura().args(["incident", "open", "--title", "locked", "--state", s(&state)])).ok();
    let push = || {
        let o = run(bare_kura()
            .args(["--json", "coordinator", "push", "--from", &loc, "--state", s(&state)])
            .env("KURA_PASSWORD", PASSWORD));
        o.ok();
        o.json()
    };
    let mut last = Value::Null;
    for _ in 0..21 {
        last = push();
    }
    assert_eq!((num(&last, "removed"), num(&last, "retained")), (0, 1), "{last:#}");
    let b = kura::backend::s3::S3Backend::open(&loc).unwrap();
    let names = kura::backend::Backend::list(&b, kura::backend::Kind::Coordinator).unwrap();
    assert_eq!(names.len(), 21);
    for (n, _) in &names {
        assert!(b.retained_until(kura::backend::Kind::Coordinator, n).unwrap().is_some(), "{n} is not retained");
    }
}

#[test]
fn coordinator_commands_without_a_remote_or_with_a_wrong_passphrase_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    run(bare_kura().args(["coordinator", "restore", "--state", s(&state)]))
        .code(2)
        .stderr_has("no remote site: give --from REMOTE");
    let cfg = dir.path().join("kura.toml");
    write(
        &cfg,
        format!("[repository]\nlocation = '{}'\npassword_file = '/nonexistent'\n", dir.path().join("r").display()),
    );
    run(bare_kura().args(["coordinator", "push", "--config", s(&cfg), "--state", s(&state)]))
        .code(2)
        .stderr_has("has none");
    // A remote that exists, opened with the wrong passphrase: named, nothing written.
    let remote = TestRepo::new();
    run(bare_kura()
        .args(["coordinator", "restore", "--from", s(&remote.path), "--state", s(&state)])
        .env("KURA_PASSWORD", "wrong"))
    .code(2)
    .stderr_has("wrong passphrase")
    .stderr_has(s(&remote.path));
    assert!(!state.exists());
    // An empty remote: nothing was pushed there yet.
    run(bare_kura()
        .args(["coordinator", "restore", "--from", s(&remote.path), "--state", s(&state)])
        .env("KURA_PASSWORD", PASSWORD))
    .code(2)
    .stderr_has("nothing was pushed there yet");
    assert!(!state.exists());
}
