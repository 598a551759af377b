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
    sample_tree(&site.src, 24 << 20);
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
    // The cut file is rebuilt from its old blocks: at most the two chunks around the
    // cut (chunks are at most 4 MiB; where they fall depends on the repository's
    // chunker seed) are fetched, the rest of its 24 MiB is reused.
    assert!(num(sync, "files_reused") >= 1, "{sync}");
    assert!(num(sync, "bytes_reused") > 14_000_000, "{sync}");
    assert!(num(sync, "bytes_written") < 9_500_000, "fetched too much: {sync}");
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

/// Hooks that log each step to `log`; the verify hook requires `ok.txt` in the standby.
fn hooks(log: &Path, slow: &str) -> String {
    let l = log.display();
    format!(
        "fence = 'echo fence >> {l}'\npromote = 'echo promote $KURA_SNAPSHOT >> {l}{slow}'\n\
         demote = 'echo demote >> {l}'\nunfence = 'echo unfence >> {l}{slow}'\n\
         verify = ['test -f \"$KURA_STANDBY/ok.txt\"']\n"
    )
}

/// The first time it runs, a hook with this tail records its shell's pid and sleeps
/// (to be killed in); later runs go straight through.
fn slow_once(flag: &Path) -> String {
    let f = flag.display();
    format!("; if [ ! -e {f} ]; then echo $$ > {f}; exec sleep 30; fi")
}

/// Four snapshots: two clean, then two taken after the compromise began. Returns
/// their ids and the compromise time (the third snapshot's).
fn four_snapshots(site: &Site) -> (Vec<String>, String) {
    fs::create_dir_all(&site.src).unwrap();
    write(&site.src.join("ok.txt"), "service config\n");
    let mut ids = Vec::new();
    for v in 1..=4 {
        write(&site.src.join("data.txt"), format!("version {v}\n"));
        if v >= 3 {
            write(&site.src.join(format!("encrypted-{v}.locked")), "ransom\n");
        }
        ids.push(site.backup()["snapshot"].as_str().unwrap().to_string());
    }
    let snaps = site.r.snapshots(&[]);
    let third = snaps.iter().find(|s| s["id"] == ids[2].as_str()).unwrap();
    (ids, third["time"].as_str().unwrap().to_string())
}

fn open_incident(site: &Site, compromised: &str) {
    site.kura(["incident", "open", "--title", "ransomware", "--compromised-since", compromised]).ok();
}

fn restore_of(site: &Site, snap: &str) -> PathBuf {
    let to = site.r.base().join(format!("restore-{}", &snap[..8]));
    site.r.restore(&format!("{snap}:{}", site.src.display()), &to, &[]).ok();
    to
}

#[test]
fn failover_rolls_back_to_the_clean_snapshot_and_failback_returns_the_standbys_data() {
    let base = tempfile::tempdir().unwrap();
    let log = base.path().join("hooks.log");
    let site = Site::new(&hooks(&log, ""));
    let (ids, compromised) = four_snapshots(&site);
    assert_eq!(site.status()["snapshot"].as_str(), Some(ids[3].as_str()));
    open_incident(&site, &compromised);

    let out = site.kura(["--json", "failover", "db", "--incident", "1"]).ok().json();
    assert_eq!(out["phase"], "done", "{out}");
    assert_eq!(out["snapshot"].as_str(), Some(ids[1].as_str()), "not rolled back to the clean snapshot: {out}");
    assert_eq!(out["met"], true, "{out}");
    assert_same_tree(&restore_of(&site, &ids[1]), &site.sb, FULL);
    assert!(!site.sb.join("encrypted-3.locked").exists());
    let st = site.status();
    assert_eq!((st["state"].as_str(), st["health"].as_str()), (Some("serving"), Some("serving")), "{st}");
    site.kura(["incident", "show", "1"]).ok().stdout_has("db: standby serving snapshot");
    // A backup now leaves the serving standby alone.
    let b = site.backup();
    assert_eq!(b["standby"]["outcome"], "skipped", "{b}");

    // The standby serves and takes writes; the rebuilt primary gets them back.
    write(&site.sb.join("written-on-standby.txt"), "new order 4711\n");
    fs::remove_dir_all(&site.src).unwrap();
    fs::create_dir_all(&site.src).unwrap();
    let back = site.kura(["--json", "failback", "db"]).ok().json();
    assert_eq!(back["phase"], "done", "{back}");
    assert_eq!(fs::read_to_string(site.src.join("written-on-standby.txt")).unwrap(), "new order 4711\n");
    assert_same_tree(&site.sb, &site.src, FULL);
    assert_eq!(site.status()["state"], "current");
    site.kura(["incident", "show", "1"]).ok().stdout_has("db: primary serving again");
    let steps = fs::read_to_string(&log).unwrap();
    let order: Vec<&str> = steps.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(order, ["fence", "promote", "demote", "unfence"], "{steps}");
    assert!(steps.contains(&format!("promote {}", ids[1])), "{steps}");
}

/// Waits for the hook's flag (its pid inside), then kills kura and the hook.
fn kill_in_hook(mut child: std::process::Child, flag: &Path) {
    let started = Instant::now();
    while fs::read_to_string(flag).map_or(true, |s| !s.ends_with('\n')) {
        assert!(child.try_wait().unwrap().is_none(), "kura ended before the hook ran");
        assert!(started.elapsed() < Duration::from_secs(60), "the hook never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let pid: i32 = fs::read_to_string(flag).unwrap().trim().parse().unwrap();
    // SAFETY: kill has no memory preconditions; the pid is the hook's sleep.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[test]
fn kill_9_during_a_failover_and_a_failback_then_each_completes() {
    let base = tempfile::tempdir().unwrap();
    let (log, flag) = (base.path().join("hooks.log"), base.path().join("slow"));
    let site = Site::new(&hooks(&log, &slow_once(&flag)));
    let (ids, compromised) = four_snapshots(&site);
    open_incident(&site, &compromised);

    // Killed in the promote hook, after the roll-back: the same command resumes there.
    kill_in_hook(site.cmd(["failover", "db", "--incident", "1"]).spawn().unwrap(), &flag);
    let out = site.kura(["--json", "failover", "db", "--incident", "1"]).ok().json();
    assert_eq!((out["id"].as_i64(), out["phase"].as_str()), (Some(1), Some("done")), "{out}");
    assert_eq!(out["snapshot"].as_str(), Some(ids[1].as_str()));
    assert_same_tree(&restore_of(&site, &ids[1]), &site.sb, FULL);
    let show = site.kura(["incident", "show", "1"]).ok().stdout.clone();
    assert_eq!(show.matches("standby serving snapshot").count(), 1, "{show}");
    let steps = fs::read_to_string(&log).unwrap();
    assert_eq!(steps.matches("fence").count(), 1, "the fence ran again after the roll-back: {steps}");

    // Killed in the unfence hook of the failback: resumed, the primary holds the data.
    fs::remove_file(&flag).unwrap();
    write(&site.sb.join("written-on-standby.txt"), "after the failover\n");
    kill_in_hook(site.cmd(["failback", "db"]).spawn().unwrap(), &flag);
    let back = site.kura(["--json", "failback", "db"]).ok().json();
    assert_eq!(back["phase"], "done", "{back}");
    assert_eq!(fs::read_to_string(site.src.join("written-on-standby.txt")).unwrap(), "after the failover\n");
    assert_same_tree(&site.sb, &site.src, FULL);
    // Only one backup of the standby was taken, though the failback ran twice.
    let failbacks = site.r.snapshots(&["--tag", "failback"]);
    assert_eq!(failbacks.len(), 1, "{failbacks:?}");
}

/// In a recovery, a priority-3 system with a healthy standby fails over instead of
/// being restored, and meets its tolerance; one without a standby is restored and
/// misses "must not stop".
#[test]
fn a_recovery_fails_over_instead_of_restoring_and_judges_priority_3_on_the_measures() {
    let base = tempfile::tempdir().unwrap();
    let log = base.path().join("hooks.log");
    let site = Site::new(&hooks(&log, ""));
    let root = site.r.base().to_path_buf();
    let dns = root.join("dns");
    write(&dns.join("zone"), "example. 3600 IN SOA ns1\n");
    let cfg = fs::read_to_string(&site.cfg).unwrap();
    write(&site.cfg, format!("{cfg}\n[[system]]\nname = 'dns'\npriority = 3\npaths = ['{}']\n", dns.display()));
    let plan = root.join("plan.toml");
    write(
        &plan,
        format!(
            "name = 'site'\nconfig = '{}'\n\n[[system]]\nname = 'db'\ntarget = '{}'\n\n[[system]]\nname = 'dns'\ntarget = '{}'\n",
            site.cfg.display(),
            root.join("restore/db").display(),
            root.join("restore/dns").display()
        ),
    );
    fs::create_dir_all(&site.src).unwrap();
    write(&site.src.join("ok.txt"), "service config\n");
    write(&site.src.join("data.txt"), "orders\n");
    let snap = site.backup()["snapshot"].as_str().unwrap().to_string();
    site.r.backup(&[&dns], &["--tag", "system:dns"]);
    site.kura(["incident", "open", "--title", "power loss"]).ok();
    site.kura(["incident", "resolve-cause", "1", "--note", "power back"]).ok();

    let out = site.kura(["--json", "recover", "--incident", "1", "--plan", s(&plan)]);
    out.code(1); // dns was restored: "must not stop" is missed
    let v = out.json();
    let sys = |n: &str| v["systems"].as_array().unwrap().iter().find(|x| x["name"] == n).unwrap().clone();
    let (db, dns_rec) = (sys("db"), sys("dns"));
    assert_eq!((db["failover"].as_bool(), db["verdict"].as_str()), (Some(true), Some("met")), "{v}");
    assert_eq!(db["target"].as_str(), Some(s(&site.sb)), "{db}");
    assert_eq!((dns_rec["failover"].as_bool(), dns_rec["verdict"].as_str()), (Some(false), Some("missed")), "{v}");
    assert_same_tree(&site.src, &site.sb, FULL);
    assert!(!root.join("restore/db").exists(), "db was restored although it failed over");
    assert_eq!(site.status()["state"], "serving");
    let steps = fs::read_to_string(&log).unwrap();
    assert!(steps.contains("fence") && steps.contains(&format!("promote {snap}")), "{steps}");
    site.kura(["incident", "show", "1"]).ok().stdout_has("db: standby serving snapshot");
    // The report says which system failed over and which was restored.
    let rep = site.kura(["report", "--incident", "1", "--format", "md"]).ok().stdout.clone();
    assert!(rep.contains("failover") && rep.contains("restore"), "{rep}");
    let html = site.kura(["report", "--incident", "1", "--format", "html"]).ok().stdout.clone();
    assert!(html.contains(r#"<td class="how">failover to its standby</td>"#), "{html}");
    assert!(html.contains(r#"<td class="how">restore</td>"#), "{html}");
    let csv = site.kura(["report", "--incident", "1", "--format", "csv"]).ok().stdout.clone();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(header.last(), Some(&"failover"), "{csv}");
    let system = header.iter().position(|h| *h == "system").unwrap();
    // `failover` is the last column; `system` comes before any quoted field.
    let failed_over: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter(|l| l.rsplit(',').next() == Some("true"))
        .filter_map(|l| l.split(',').nth(system))
        .collect();
    assert_eq!(failed_over, ["db"], "{csv}");
}

/// A failover drill promotes nothing: a copy of the standby in the sandbox is
/// brought to the newest snapshot and verified, timed against the tolerance; the
/// forecast then uses that measured failover.
#[test]
fn a_failover_drill_measures_on_a_copy_and_the_forecast_uses_it() {
    let base = tempfile::tempdir().unwrap();
    let log = base.path().join("hooks.log");
    let extra = hooks(&log, "").replace(
        "verify = ['test -f \"$KURA_STANDBY/ok.txt\"']",
        &format!(
            "verify = ['test -f \"$KURA_STANDBY/ok.txt\" && echo verify drill=$KURA_DRILL $KURA_STANDBY >> {}']",
            log.display()
        ),
    );
    let site = Site::new(&extra);
    fs::create_dir_all(&site.src).unwrap();
    write(&site.src.join("ok.txt"), "service config\n");
    write(&site.src.join("data.txt"), "v1\n");
    let held = site.backup()["snapshot"].as_str().unwrap().to_string();
    write(&site.src.join("data.txt"), "v2\n");
    let newest = site.plain_backup();
    let before = listing(&site.sb);

    let sandbox = site.r.base().join("drill-sandbox");
    let out = site.kura(["--json", "standby", "drill", "db", "--sandbox", s(&sandbox)]).ok().json();
    let row = &out[0];
    assert_eq!((row["kind"].as_str(), row["phase"].as_str()), (Some("drill"), Some("done")), "{out}");
    assert_eq!(row["snapshot"].as_str(), Some(newest.as_str()));
    assert_eq!(row["met"], true, "{out}");
    assert!(row["apply_ms"].is_u64(), "{out}");
    // The standby itself is untouched and nothing was promoted or fenced.
    assert_eq!(listing(&site.sb), before);
    assert_eq!(site.status()["snapshot"].as_str(), Some(held.as_str()));
    let steps = fs::read_to_string(&log).unwrap();
    assert!(steps.contains(&format!("verify drill=1 {}", sandbox.join("db").display())), "{steps}");
    assert!(!steps.contains("promote") && !steps.contains("fence"), "{steps}");
    assert!(!sandbox.join("db").exists(), "the sandbox copy was not removed");
    site.kura(["standby", "drill"]).ok().stdout_has("within the tolerance");

    let plan = site.r.base().join("plan.toml");
    write(
        &plan,
        format!(
            "name = 'p'\nconfig = '{}'\n\n[[system]]\nname = 'db'\ntarget = '{}'\n",
            site.cfg.display(),
            site.r.base().join("restore/db").display()
        ),
    );
    let f = site.kura(["--json", "plan", "forecast", s(&plan)]).json();
    let sys = &f["systems"][0];
    assert_eq!(sys["throughput_source"]["kind"], "failovers", "{f}");
    assert_eq!(sys["throughput_source"]["count"], 2, "{f}");
    assert_eq!(sys["fits"], true, "{f}");
}

/// Bad input: each error names what is wrong and what to do, exits 2, and changes nothing.
#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let site = Site::new("");
    fs::create_dir_all(&site.src).unwrap();
    write(&site.src.join("a"), "a\n");
    site.backup();
    let before = listing(&site.sb);
    site.kura(["standby", "apply", "nosuch"]).code(2).stderr_has("no system \"nosuch\"").stderr_has("it declares: db");
    site.kura(["failover", "db", "--incident", "99"]).code(2).stderr_has("incident 99");
    let cfg = fs::read_to_string(&site.cfg).unwrap();
    write(&site.cfg, format!("{cfg}\n[[system]]\nname = 'web'\npriority = 2\npaths = ['{}']\n", site.src.display()));
    site.kura(["failback", "web"]).code(2).stderr_has("has no standby: add a [system.standby]");
    // A marker that is not kura's is named, with what to do.
    let marker = site.sb.with_file_name(".db.kura-standby");
    write(&marker, "garbage");
    site.kura(["standby", "apply", "db"]).code(2).stderr_has(".db.kura-standby").stderr_has("remove it");
    assert_eq!(listing(&site.sb), before);
    // Removed as told, the next apply puts it right.
    fs::remove_file(&marker).unwrap();
    site.kura(["standby", "apply", "db"]).ok();
    assert_same_tree(&site.src, &site.sb, FULL);
}

/// An incident without compromised-since: the failover takes the system's clean
/// point (the newest snapshot before the first suspect one), says so on the
/// timeline, and an operator can name another snapshot instead.
#[test]
fn failover_without_compromised_since_takes_the_clean_point_and_can_be_overridden() {
    let site = Site::new("");
    crate::detect::text_tree(&site.src, 60);
    let mut ids = Vec::new();
    for i in 0..6 {
        write(&site.src.join(format!("dept0/log_{i}.txt")), format!("round {i}\n"));
        ids.push(site.backup()["snapshot"].as_str().unwrap().to_string());
    }
    // Half the documents renamed to a new extension at once: the next backup is suspect.
    for p in files_under(&site.src).into_iter().map(|p| site.src.join(p)) {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("doc_") && name[4..7].parse::<u32>().unwrap() % 2 == 0 {
            fs::rename(&p, p.with_file_name(format!("{name}.locked"))).unwrap();
        }
    }
    ids.push(site.backup()["snapshot"].as_str().unwrap().to_string());
    write(&site.src.join("dept1/after.txt"), "after the attack\n");
    ids.push(site.backup()["snapshot"].as_str().unwrap().to_string());
    assert_eq!(site.status()["snapshot"].as_str(), Some(ids[7].as_str()));
    site.kura(["clean-point", "db"]).ok().stdout_has(&ids[5][..8]);

    site.kura(["incident", "open", "--title", "files renamed"]).ok();
    site.kura(["failover", "db", "--incident", "1"]).ok().stdout_has("clean point").stdout_has(&ids[5][..8]);
    let inc = site.kura(["--json", "incident", "show", "1"]).ok().stdout.clone();
    assert!(inc.contains("restoring the clean point") && inc.contains(&ids[5][..8]), "{inc}");
    let st = site.status();
    assert_eq!(st["snapshot"].as_str(), Some(ids[5].as_str()), "{st}");
    assert_same_tree(&restore_of(&site, &ids[5]), &site.sb, FULL);

    // Back to the primary, then a second incident: the operator names snapshot 3.
    site.kura(["failback", "db"]).ok();
    site.kura(["incident", "open", "--title", "again"]).ok();
    site.kura(["failover", "db", "--incident", "2", "--snapshot", "nonexistent"]).code(2);
    let other = site.r.backup(&[&site.src], &[])["snapshot"].as_str().unwrap().to_string();
    site.kura(["failover", "db", "--incident", "2", "--snapshot", &other[..10]])
        .code(2)
        .stderr_has("is not a complete snapshot tagged system:db");
    let v = site.kura(["--json", "failover", "db", "--incident", "2", "--snapshot", &ids[2][..10]]).ok().json();
    assert_eq!(v["snapshot"].as_str(), Some(ids[2].as_str()), "{v}");
    assert!(v["choice"].as_str().is_some_and(|c| c.contains("named by the operator")), "{v}");
    assert_same_tree(&restore_of(&site, &ids[2]), &site.sb, FULL);
    site.kura(["incident", "show", "2"]).ok().stdout_has("named by the operator");
}
