//! The state database shared by several processes: writers wait for each other
//! instead of failing, a recovery is never aborted by another command, and a
//! database the user cannot write still serves the commands that only read.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

/// A repository with one backup per system, a config and a plan whose hooks take a
/// little time, so that a recovery lasts a few seconds.
pub struct Site {
    pub repo: TestRepo,
    pub plan: PathBuf,
    pub state: PathBuf,
}

impl Site {
    pub fn new(systems: &[&str], hook: &str, plan_top: &str) -> Site {
        let repo = TestRepo::new();
        let base = repo.base().to_path_buf();
        let pw = base.join("password");
        write(&pw, PASSWORD);
        chmod(&pw, 0o600);
        let mut config =
            format!("[repository]\nlocation = '{}'\npassword_file = '{}'\n\n", repo.path.display(), pw.display());
        let mut plan = format!("name = 'p'\nconfig = '{}'\n{plan_top}\n\n", base.join("kura.toml").display());
        for name in systems {
            let src = base.join("src").join(name);
            write(&src.join("file.txt"), format!("data of {name}\n"));
            write_random(&src.join("data.bin"), 200 << 10, name.len() as u64);
            config += &format!("[[system]]\nname = '{name}'\npriority = 1\npaths = ['{}']\n\n", src.display());
            plan += &format!(
                "[[system]]\nname = '{name}'\ntarget = '{}'\n[[system.pre]]\ncommand = '''{hook}'''\n\
                 [[system.verify]]\ncommand = '''{hook}'''\n[[system.post]]\ncommand = '''{hook}'''\n\n",
                base.join("restore").join(name).display()
            );
            repo.backup(&[&src], &["--tag", &format!("system:{name}")]);
        }
        write(&base.join("kura.toml"), config);
        let plan_path = base.join("plan.toml");
        write(&plan_path, plan);
        Site { state: base.join("state/state.db"), plan: plan_path, repo }
    }

    pub fn base(&self) -> &Path {
        self.repo.base()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bare_kura();
        c.arg("--state").arg(&self.state).args(args).env("KURA_PASSWORD", PASSWORD);
        // Incident commands key and anchor the timeline with the config's repository.
        c.env("KURA_CONFIG", self.repo.base().join("kura.toml"));
        c
    }

    #[track_caller]
    pub fn kura(&self, args: &[&str]) -> Out {
        run(&mut self.cmd(args))
    }

    /// A new incident whose cause is resolved: ready for `recover`.
    pub fn ready_incident(&self) -> String {
        let id = self.kura(&["--json", "incident", "open", "--title", "outage"]).ok().json()["id"]
            .as_i64()
            .expect("incident id")
            .to_string();
        self.kura(&["incident", "resolve-cause", &id, "--note", "fixed"]).ok();
        id
    }

    pub fn recover_cmd(&self, id: &str) -> Command {
        self.cmd(&["--json", "recover", "--incident", id, "--plan", s(&self.plan), "--parallel", "2"])
    }
}

#[test]
fn concurrent_writers_during_a_recovery_all_succeed() {
    let site = Site::new(&["a", "b", "c", "d"], "sleep 0.4", "");
    let id = site.ready_incident();
    let other = site.ready_incident();

    let recovery = site.recover_cmd(&id).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut cmds: Vec<Command> = Vec::new();
        let (done, failures) = (done.clone(), failures.clone());
        // Two writers on the incident being recovered (its timeline is appended to by
        // the recovery too), one on another incident, one opening new incidents.
        for n in 0..1000 {
            let note = format!("writer {w} note {n}");
            cmds.push(match w {
                0 | 1 => site.cmd(&["incident", "update", &id, "--note", &note]),
                2 => site.cmd(&["incident", "update", &other, "--scope", &note, "--note", &note]),
                _ => site.cmd(&["incident", "open", "--title", &note]),
            });
        }
        writers.push(std::thread::spawn(move || {
            let mut ok = 0u32;
            for mut c in cmds {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let out = run(&mut c);
                if out.code == 0 {
                    ok += 1;
                } else {
                    failures.lock().unwrap().push(format!("writer {w}: {out}"));
                }
            }
            ok
        }));
    }
    // Bounded: the recovery takes a few seconds; give a slow machine two minutes.
    let started = Instant::now();
    let mut recovery = recovery;
    let status = loop {
        if let Some(st) = recovery.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = recovery.kill();
            done.store(true, Ordering::SeqCst);
            panic!("the recovery did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    done.store(true, Ordering::SeqCst);
    let counts: Vec<u32> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    let out = recovery.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{} writes failed, e.g.:\n{}", failures.len(), failures[0]);
    assert!(status.success(), "the recovery failed ({status}):\n{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["outcome"]["done"], 4, "{v}");
    assert!(counts.iter().all(|&n| n > 0), "every writer wrote during the recovery: {counts:?}");

    // Every note is on the timeline exactly once, and the hash chain is intact.
    let shown = site.kura(&["--json", "incident", "show", &id]).ok().json();
    let notes = shown["timeline"].as_array().unwrap().iter().filter(|e| e["event"]["kind"] == "note").count();
    assert_eq!(notes as u32, counts[0] + counts[1], "{shown:#}");
    site.kura(&["incident", "verify", &id]).ok();
    site.kura(&["incident", "verify", &other]).ok();
    let list = site.kura(&["--json", "incident", "list"]).ok().json();
    assert_eq!(list.as_array().unwrap().len() as u32, 2 + counts[3]);
}

const NOBODY: u32 = 65534;

/// `kura` as a user that cannot write the state database: uid 65534 when we are root
/// (root writes whatever the mode), else ourselves. The binary is linked into `base`
/// so that the user can run it whatever the build directory's permissions.
fn reader_kura(base: &Path) -> Command {
    let mut c = if is_root() {
        let exe = base.join("kura");
        if !exe.exists() && fs::hard_link(KURA, &exe).is_err() {
            fs::copy(KURA, &exe).unwrap();
        }
        let mut c = Command::new(&exe);
        c.uid(NOBODY).gid(NOBODY);
        c
    } else {
        Command::new(KURA)
    };
    c.env_clear().stdin(Stdio::null());
    c
}

/// Restores write permission at the end so that the temp dir can be removed.
struct Unlock(Vec<PathBuf>);
impl Drop for Unlock {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        }
    }
}

#[test]
fn a_read_only_state_database_serves_reads_and_refuses_writes_clearly() {
    let base = tempfile::Builder::new().prefix("kura-it-").tempdir().unwrap();
    let dir = base.path().join("state");
    let db = dir.join("state.db");
    let st = s(&db);
    let opened = run(bare_kura().args(["--json", "--state", st, "incident", "open", "--title", "disk failure"]));
    let id = opened.ok().json()["id"].to_string();
    run(bare_kura().args(["--state", st, "incident", "update", &id, "--note", "replaced"])).ok();
    assert!(!dir.join("state.db-wal").exists(), "the last writer removed its WAL");
    if is_root() {
        for d in base.path().ancestors().skip(1) {
            let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(d).unwrap().permissions());
            if mode & 0o001 == 0 {
                eprintln!("skipped: {} is not searchable by others, so uid {NOBODY} cannot run there", d.display());
                return;
            }
        }
        chmod(base.path(), 0o755);
    }
    // Readable, not writable: neither the file nor its directory.
    chmod(&db, 0o444);
    chmod(&dir, 0o555);
    let _unlock = Unlock(vec![dir.clone(), db.clone()]);

    let list = run(reader_kura(base.path()).args(["--json", "--state", st, "incident", "list"]));
    let v = list.ok().json();
    assert_eq!(v[0]["title"], "disk failure", "{v}");
    run(reader_kura(base.path()).args(["--state", st, "incident", "show", &id])).ok().stdout_has("replaced");
    // verify reads too, but needs the repository that holds the chain's key.
    run(reader_kura(base.path()).args(["--state", st, "incident", "verify", &id]))
        .code(2)
        .stderr_has("without the repository");
    run(reader_kura(base.path()).args(["--state", st, "incident", "export", &id])).ok().stdout_has("disk failure");
    run(reader_kura(base.path()).args(["--state", st, "drill", "list"])).ok();
    run(reader_kura(base.path()).args(["--state", st, "report", "--incident", &id])).ok();

    // A write names the file and says what to do; nothing is recorded.
    for args in [&["incident", "open", "--title", "x"][..], &["incident", "update", &id, "--note", "more"][..]] {
        let out = run(reader_kura(base.path()).args(["--state", st]).args(args));
        out.code(2).stderr_has(st).stderr_has("cannot be written").stderr_has("--state");
    }
    assert!(!dir.join("state.db-wal").exists());
    drop(_unlock);
    let v = run(bare_kura().args(["--json", "--state", st, "incident", "show", &id])).ok().json();
    assert_eq!(v["timeline"].as_array().unwrap().len(), 2, "{v}");
    let list = run(bare_kura().args(["--json", "--state", st, "incident", "list"])).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}
