//! Warm standbys (docs/STANDBY.md): kept current by `kura backup --system`, byte for
//! byte through deletions, renames and a file cut in the middle; crash-safe under
//! kill -9; failover to a clean point, failback of the standby's data.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// A site: a repository, a system `db` (priority 3) with a data directory and a standby.
struct Site {
    r: TestRepo,
    src: PathBuf,
    sb: PathBuf,
    cfg: PathBuf,
    state: PathBuf,
}

impl Site {
    fn new(standby_extra: &str) -> Site {
        let r = TestRepo::new();
        let base = r.base().to_path_buf();
        let pw = base.join("pw");
        write(&pw, PASSWORD);
        chmod(&pw, 0o600);
        let (src, sb) = (base.join("src"), base.join("standby/db"));
        let cfg = base.join("kura.toml");
        write(
            &cfg,
            format!(
                "[repository]\nlocation = '{}'\npassword_file = '{}'\n\n[[system]]\nname = 'db'\npriority = 3\npaths = ['{}']\n\n[system.standby]\npath = '{}'\n{standby_extra}\n",
                r.path.display(),
                pw.display(),
                src.display(),
                sb.display()
            ),
        );
        Site { state: base.join("state.db"), r, src, sb, cfg }
    }

    fn cmd<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Command {
        let mut c = bare_kura();
        c.arg("--state").arg(&self.state).env("KURA_CONFIG", &self.cfg).args(args);
        c
    }

    #[track_caller]
    fn kura<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Out {
        run(&mut self.cmd(args))
    }

    /// `kura backup --system db`: the backup, then the standby brought to it.
    #[track_caller]
    fn backup(&self) -> Value {
        self.kura(["--json", "backup", "--system", "db"]).ok().json()
    }

    /// A backup that leaves the standby alone (a plain backup with the system's tag).
    #[track_caller]
    fn plain_backup(&self) -> String {
        let v = self.r.backup(&[&self.src], &["--tag", "system:db"]);
        v["snapshot"].as_str().unwrap().to_string()
    }

    fn status(&self) -> Value {
        self.kura(["--json", "standby", "status"]).json()[0].clone()
    }

    fn marker(&self) -> Value {
        let m = self.sb.with_file_name(".db.kura-standby");
        serde_json::from_slice(&fs::read(m).unwrap()).unwrap()
    }
}

/// Cuts `cut` bytes out of the middle of a file: it keeps its head and its tail.
fn cut_middle(p: &Path, cut: usize) {
    let data = fs::read(p).unwrap();
    let mid = data.len() / 2;
    let mut out = data[..mid - cut / 2].to_vec();
    out.extend_from_slice(&data[mid + cut / 2..]);
    fs::write(p, out).unwrap();
}

#[test]
fn backups_keep_the_standby_current_byte_for_byte() {
    let site = Site::new("");
    sample_tree(&site.src, 12 << 20);
    let first = site.backup();
    let sb1 = &first["standby"];
    assert_eq!(sb1["outcome"], "applied", "{first}");
    assert_eq!(sb1["snapshot"], first["snapshot"]);
    assert_same_tree(&site.src, &site.sb, FULL);
    assert_eq!(site.marker()["state"], "holds");

    // Deletions, a rename (into another directory), a file cut in the middle, a new
    // file, a file that became a directory, a changed mode.
    let src = &site.src;
    fs::remove_file(src.join("notes/todo.txt")).unwrap();
    fs::remove_dir_all(src.join("notes/deep")).unwrap();
    fs::rename(src.join("hello.txt"), src.join("empty_dir/hello-renamed.txt")).unwrap();
    cut_middle(&src.join("data/random.bin"), 100_000);
    write_random(&src.join("data/new.bin"), 200_000, 7);
    fs::remove_file(src.join("script.sh")).unwrap();
    write(&src.join("script.sh/inside"), "now a directory\n");
    chmod(&src.join("notes/readme.md"), 0o640);
    let second = site.backup();
    let up = &second["standby"];
    assert_eq!(up["outcome"], "applied", "{second}");
    assert_same_tree(&site.src, &site.sb, FULL);
    let sync = &up["sync"];
    // The cut file is rebuilt from its old blocks (chunks average 1 MiB): most of
    // its 12 MiB is not fetched.
    assert!(num(sync, "files_reused") >= 1, "{sync}");
    assert!(num(sync, "bytes_reused") > 8_000_000, "{sync}");
    assert!(num(sync, "bytes_written") < 4_500_000, "fetched too much: {sync}");
    assert!(num(sync, "removed") >= 3, "{sync}");
    assert!(num(sync, "files_unchanged") >= 4, "{sync}");

    let st = site.status();
    assert_eq!(st["state"], "current", "{st}");
    assert_eq!(st["snapshot"], second["snapshot"]);
    assert_eq!(st["health"], "healthy", "{st}");

    // Someone changed the standby behind kura's back: the next apply puts it right.
    write(&site.sb.join("stray.txt"), "not in any snapshot\n");
    site.kura(["standby", "apply", "db"]).ok();
    assert_same_tree(&site.src, &site.sb, FULL);
}

/// Kill -9 in the middle of a standby update: it is not reported as holding any
/// snapshot, and the next run completes it.
#[test]
fn kill_9_during_a_standby_update_then_it_completes() {
    let site = Site::new("");
    fs::create_dir_all(&site.src).unwrap();
    for i in 0..48 {
        write_random(&site.src.join(format!("f{i:02}.bin")), 1 << 20, i);
    }
    let first = site.backup();
    let held = first["snapshot"].as_str().unwrap().to_string();
    for i in 0..48 {
        write_random(&site.src.join(format!("f{i:02}.bin")), 1 << 20, 1000 + i);
    }
    let newest = site.plain_backup();
    let mut killed = false;
    for attempt in 0..3 {
        let mut child = site.cmd(["standby", "apply", "db"]).spawn().unwrap();
        let started = Instant::now();
        // Wait until it writes into the standby (a temp file appears), then kill.
        loop {
            let busy = fs::read_dir(&site.sb)
                .unwrap()
                .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".kura-tmp-"));
            if busy {
                child.kill().unwrap();
                child.wait().unwrap();
                killed = true;
                break;
            }
            if child.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if killed {
            break;
        }
        // It finished first: roll the standby back to the old snapshot and try again.
        site.kura(["standby", "apply", "db", "--snapshot", &held]).ok();
        assert!(attempt < 2, "the update always finished before it could be killed");
    }
    assert!(killed);
    let st = site.status();
    assert_eq!(st["state"], "applying", "{st}");
    assert!(st["snapshot"].is_null(), "a half-updated standby claims a snapshot: {st}");
    assert_eq!(site.marker()["state"], "applying");
    assert_ne!(st["health"], "healthy");

    let out = site.kura(["--json", "standby", "apply", "db"]).ok().json();
    assert_eq!(out["snapshot"].as_str(), Some(newest.as_str()), "{out}");
    assert_same_tree(&site.src, &site.sb, FULL);
    assert_eq!(site.status()["state"], "current");
}

/// A bad standby section is refused with the file, line and field.
#[test]
fn a_standby_inside_the_system_paths_is_refused() {
    let site = Site::new("");
    let text = fs::read_to_string(&site.cfg).unwrap();
    let inside = format!("path = '{}'", site.src.join("sb").display());
    let bad = text.replace(&format!("path = '{}'", site.sb.display()), &inside);
    write(&site.cfg, bad);
    site.kura(["config", "check", s(&site.cfg)]).code(2).stderr_has("standby.path");
}
