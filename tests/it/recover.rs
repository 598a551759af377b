//! Incidents and priority-ordered recovery, end to end: real backups, a real
//! config and plan, the real binary, hooks with side effects, kill -9 and resume.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// One system of a test site: name, priority, dependencies, extra plan lines.
struct Sys<'a> {
    name: &'a str,
    priority: u8,
    deps: &'a [&'a str],
    extra: String,
}

fn sys<'a>(name: &'a str, priority: u8, deps: &'a [&'a str]) -> Sys<'a> {
    Sys { name, priority, deps, extra: String::new() }
}

struct Site {
    repo: TestRepo,
    config: PathBuf,
    plan: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

/// A hook that appends "<stage> <system> drill=<0|1> <snapshot-prefix> <target>" to the log.
fn log_hook(stage: &str, log: &Path) -> String {
    format!(
        "[[system.{stage}]]\ncommand = 'echo \"$KURA_PHASE $KURA_SYSTEM drill=$KURA_DRILL ${{KURA_SNAPSHOT%${{KURA_SNAPSHOT#????????}}}} $KURA_TARGET\" >> {}'\n",
        log.display()
    )
}

impl Site {
    fn new(systems: &[Sys]) -> Site {
        let repo = TestRepo::new();
        let base = repo.base().to_path_buf();
        let log = base.join("hooks.log");
        let pw = base.join("password");
        write(&pw, PASSWORD);
        let mut config =
            format!("[repository]\nlocation = '{}'\npassword_file = '{}'\n\n", repo.path.display(), pw.display());
        let mut plan = format!("name = 'test plan'\nconfig = '{}'\n\n", base.join("kura.toml").display());
        for s in systems {
            let src = base.join("src").join(s.name);
            sample_tree(&src, 20_000);
            write(&src.join("system-name"), s.name);
            config += &format!(
                "[[system]]\nname = '{}'\npriority = {}\npaths = ['{}']\n\n",
                s.name,
                s.priority,
                src.display()
            );
            let deps: Vec<String> = s.deps.iter().map(|d| format!("'{d}'")).collect();
            plan += &format!(
                "[[system]]\nname = '{}'\ntarget = '{}'\ndepends_on = [{}]\n{}{}{}{}\n",
                s.name,
                base.join("restore").join(s.name).display(),
                deps.join(", "),
                s.extra,
                log_hook("pre", &log),
                log_hook("verify", &log),
                log_hook("post", &log),
            );
            repo.backup(&[&src], &["--tag", &format!("system:{}", s.name)]);
        }
        let config_path = base.join("kura.toml");
        write(&config_path, config);
        let plan_path = base.join("plan.toml");
        write(&plan_path, plan);
        Site { state: base.join("state.db"), config: config_path, plan: plan_path, log, repo }
    }

    fn base(&self) -> &Path {
        self.repo.base()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bare_kura();
        c.arg("--state").arg(&self.state).args(args).env("KURA_PASSWORD", PASSWORD);
        // Incident commands key and anchor the timeline in the config's repository.
        c.env("KURA_CONFIG", &self.config);
        c
    }

    #[track_caller]
    fn kura(&self, args: &[&str]) -> Out {
        run(&mut self.cmd(args))
    }

    fn open_incident(&self, extra: &[&str]) -> i64 {
        let mut args = vec!["--json", "incident", "open", "--title", "ransomware on the file server"];
        args.extend_from_slice(extra);
        self.kura(&args).ok().json()["id"].as_i64().expect("incident id")
    }

    fn recover(&self, id: i64) -> Out {
        self.kura(&["--json", "recover", "--incident", &id.to_string(), "--plan", s(&self.plan)])
    }

    fn log_lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log).unwrap_or_default().lines().map(String::from).collect()
    }

    fn restored(&self, name: &str) -> PathBuf {
        self.base().join("restore").join(name)
    }
}

fn system<'a>(out: &'a Value, name: &str) -> &'a Value {
    out["systems"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{name} in {out}"))
}

#[test]
fn recovery_follows_tiers_and_dependencies_and_restores_identical_trees() {
    let site = Site::new(&[
        sys("web", 1, &["app"]),
        sys("app", 2, &["db"]),
        sys("db", 2, &[]),
        sys("dns", 3, &[]),
        sys("wiki", 0, &[]),
    ]);
    let alerts = site.base().join("alerts.jsonl");
    let config = fs::read_to_string(&site.config).unwrap();
    write(&site.config, format!("{config}\n[notify]\ncommand = 'cat >> {0}; echo >> {0}'\n", alerts.display()));
    let id = site.open_incident(&[]);

    // The gate: refused before the cause is resolved, and nothing is restored.
    let refused = site.recover(id);
    refused.code(2).stderr_has("cause is not resolved").stderr_has("resolve-cause");
    assert!(!site.restored("dns").exists());

    site.kura(&["incident", "resolve-cause", &id.to_string(), "--note", "phishing account disabled"]).ok();
    let out = site.recover(id);
    // Priority 3's deadline is zero: it went down, so its deadline is missed (exit 1).
    out.code(1);
    let v = out.json();
    assert_eq!(v["outcome"]["done"], 5, "{v}");
    assert_eq!(system(&v, "dns")["verdict"], "missed");
    assert_eq!(system(&v, "db")["verdict"], "met");
    assert_eq!(system(&v, "wiki")["verdict"], "no-deadline");

    for name in ["web", "app", "db", "dns", "wiki"] {
        assert_same_tree(&site.base().join("src").join(name), &site.restored(name), FULL);
    }

    // Completion order from the post hooks: tiers, and dependencies inside a tier.
    let lines = site.log_lines();
    let posts: Vec<&str> =
        lines.iter().filter(|l| l.starts_with("post ")).map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(posts, ["dns", "db", "app", "web", "wiki"], "{lines:#?}");
    // Hooks run pre -> verify -> post per system, with the right environment.
    let db: Vec<&String> = lines.iter().filter(|l| l.split(' ').nth(1) == Some("db")).collect();
    assert_eq!(db.len(), 3);
    assert!(db[0].starts_with("pre db drill=0 ") && db[1].starts_with("verify db") && db[2].starts_with("post db"));
    let snap = system(&v, "db")["snapshot"].as_str().unwrap();
    assert!(db[0].contains(&snap[..8]), "{db:?}");
    assert!(db[0].ends_with(s(&site.restored("db"))), "{db:?}");

    // The status and the incident timeline hold the results.
    let st = site.kura(&["--json", "recover", "status", "--incident", &id.to_string()]).ok().json();
    assert_eq!(st["systems"].as_array().unwrap().len(), 5);
    let shown = site.kura(&["--json", "incident", "show", &id.to_string()]).ok().json();
    let kinds: Vec<&str> =
        shown["timeline"].as_array().unwrap().iter().map(|e| e["event"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "system-finished").count(), 5, "{kinds:?}");
    assert!(kinds.contains(&"recovery-finished") && kinds.contains(&"deadline-alert"), "{kinds:?}");
    site.kura(&["incident", "verify", &id.to_string()]).ok();
    // The breach of priority 3's zero deadline went to the configured notification command.
    let sent = fs::read_to_string(&alerts).unwrap_or_else(|_| panic!("a notification was sent: {out}"));
    let ev: Value = serde_json::from_str(sent.lines().next().unwrap()).unwrap();
    assert_eq!((ev["event"].as_str(), ev["system"].as_str()), (Some("deadline_breach"), Some("dns")), "{sent}");
}

#[test]
fn failing_verify_hook_is_retried_then_fails_and_dependents_are_skipped() {
    let counter = "verify-attempts";
    let mut db = sys("db", 2, &[]);
    db.extra = format!("[[system.verify]]\ncommand = 'echo x >> {counter}; exit 1'\nretries = 2\nretry_delay = '0s'\n");
    let site = Site::new(&[db, sys("app", 2, &["db"]), sys("web", 1, &["app"]), sys("mail", 2, &[])]);
    // The hook's working directory is not defined: use an absolute path.
    let plan = fs::read_to_string(&site.plan).unwrap().replace(counter, s(&site.base().join(counter)));
    write(&site.plan, plan);
    let id = site.open_incident(&[]);
    site.kura(&["incident", "resolve-cause", &id.to_string(), "--note", "fixed"]).ok();
    let out = site.recover(id);
    out.code(1);
    let v = out.json();
    assert_eq!(fs::read_to_string(site.base().join(counter)).unwrap().lines().count(), 3, "1 try + 2 retries");
    assert_eq!(system(&v, "db")["state"], "failed");
    assert!(system(&v, "db")["error"].as_str().unwrap().contains("verify hook"), "{v}");
    assert_eq!(system(&v, "app")["state"], "skipped");
    assert_eq!(system(&v, "web")["state"], "skipped");
    assert!(system(&v, "web")["error"].as_str().unwrap().contains("db failed"), "{v}");
    assert_eq!(system(&v, "mail")["state"], "done");
    assert!(!site.log_lines().iter().any(|l| l.contains(" app ") || l.contains(" web ")));
}

#[test]
fn compromised_since_restores_the_snapshot_taken_before_the_intrusion() {
    let site = Site::new(&[sys("files", 1, &[])]);
    let src = site.base().join("src/files");
    std::thread::sleep(Duration::from_millis(1100));
    let cut = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(1100));
    write(&src.join("system-name"), "encrypted by ransomware");
    site.repo.backup(&[&src], &["--tag", "system:files"]);

    let id = site.open_incident(&["--compromised-since", &cut.to_rfc3339()]);
    site.kura(&["incident", "resolve-cause", &id.to_string(), "--note", "fixed"]).ok();
    let v = site.recover(id).ok().json();
    let snaps = site.repo.snapshots(&[]);
    assert_eq!(snaps.len(), 2);
    assert_eq!(system(&v, "files")["snapshot"], snaps[0]["id"], "the older snapshot is chosen");
    assert_eq!(fs::read_to_string(site.restored("files").join("system-name")).unwrap(), "files");
}

#[test]
fn forced_recovery_is_recorded_on_the_timeline() {
    let site = Site::new(&[sys("files", 1, &[])]);
    let id = site.open_incident(&[]);
    site.kura(&["recover", "--incident", &id.to_string(), "--plan", s(&site.plan), "--force"]).code(2);
    site.kura(&["recover", "--incident", &id.to_string(), "--plan", s(&site.plan), "--force", "--reason", "payroll"])
        .ok();
    let shown = site.kura(&["--json", "incident", "show", &id.to_string()]).ok().json();
    assert_eq!(shown["incident"]["gate_overrides"][0][1], "payroll");
}

#[test]
fn kill_9_during_recovery_resumes_without_redoing_finished_systems() {
    let mut app = sys("app", 2, &["db"]);
    let marker = "app-pre-started";
    app.extra = "[[system.pre]]\ncommand = 'if [ ! -e MARK ]; then touch MARK; sleep 30; fi'\ntimeout = '1m'\n"
        .to_string()
        .replace("MARK", marker);
    let site = Site::new(&[sys("db", 2, &[]), sys("dns", 2, &[]), app, sys("web", 1, &["app"])]);
    let mark = site.base().join(marker);
    let plan = fs::read_to_string(&site.plan).unwrap().replace(marker, s(&mark));
    write(&site.plan, plan);
    let id = site.open_incident(&[]);
    site.kura(&["incident", "resolve-cause", &id.to_string(), "--note", "fixed"]).ok();

    let mut child = site
        .cmd(&["recover", "--incident", &id.to_string(), "--plan", s(&site.plan), "--parallel", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !mark.exists() {
        assert!(t.elapsed() < Duration::from_secs(60), "app's pre hook never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = site.log_lines();
    let finished: Vec<String> =
        before.iter().filter(|l| l.starts_with("post ")).map(|l| l.split(' ').nth(1).unwrap().to_string()).collect();
    assert!(finished.contains(&"db".to_string()), "db finishes before app starts: {before:#?}");

    let v = site.recover(id).ok().json();
    assert_eq!(v["outcome"]["done"], 4, "{v}");
    let lines = site.log_lines();
    for name in &finished {
        let runs = lines.iter().filter(|l| l.starts_with(&format!("pre {name} "))).count();
        assert_eq!(runs, 1, "{name} finished before the kill and must not be redone: {lines:#?}");
    }
    for name in ["db", "dns", "app", "web"] {
        assert_same_tree(&site.base().join("src").join(name), &site.restored(name), FULL);
    }
    let runs = site.kura(&["--json", "recover", "status", "--incident", &id.to_string()]).ok().json();
    assert_eq!(runs["run"]["status"], "done");
}

#[test]
fn drill_restores_into_the_sandbox_only_runs_drill_safe_hooks_and_is_reviewed() {
    let site = Site::new(&[sys("db", 2, &[]), sys("web", 1, &["db"])]);
    let sandbox = site.base().join("sandbox");
    let out = site.kura(&[
        "--json",
        "drill",
        "run",
        "--plan",
        s(&site.plan),
        "--config",
        s(&site.config),
        "--sandbox",
        s(&sandbox),
        "--keep",
    ]);
    let v = out.ok().json();
    assert!(!site.restored("db").exists() && !site.restored("web").exists(), "real targets untouched");
    for name in ["db", "web"] {
        assert_same_tree(&site.base().join("src").join(name), &sandbox.join(name), FULL);
        let row = system(&v, name);
        assert_eq!(row["verdict"], "met");
        assert_eq!(row["verify"]["ok"], true);
        assert!(row["restore_ms"].as_u64().is_some() && row["bytes"].as_u64().unwrap() > 0, "{row}");
        let hooks = row["hooks"].as_array().unwrap();
        assert!(hooks.iter().any(|h| h["stage"] == "pre" && h["skipped"] == true), "pre is not drill-safe: {row}");
    }
    // Only the drill-safe verify hooks ran, with KURA_DRILL=1.
    let lines = site.log_lines();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.starts_with("verify ") && l.contains("drill=1")), "{lines:#?}");

    let id = v["run"]["id"].as_i64().unwrap().to_string();
    site.kura(&["drill", "review", &id, "--evaluation", "db slow", "--action", "faster disk", "--action", "retest"])
        .ok();
    let shown = site.kura(&["--json", "drill", "show", &id]).ok().json();
    assert_eq!(shown["reviews"][0][1], "db slow");
    assert_eq!(shown["reviews"][0][2][1], "retest");
    assert_eq!(site.kura(&["--json", "drill", "list"]).ok().json().as_array().unwrap().len(), 1);

    // Without --keep the sandbox is removed.
    let sandbox2 = site.base().join("sandbox2");
    site.kura(&["drill", "run", "--plan", s(&site.plan), "--sandbox", s(&sandbox2)]).ok();
    assert!(!sandbox2.exists());
    // A sandbox inside a real target is refused.
    let bad = site.restored("db").join("x");
    site.kura(&["drill", "run", "--plan", s(&site.plan), "--sandbox", s(&bad)])
        .code(2)
        .stderr_has("overlaps the real target");
}

#[test]
fn drill_verification_catches_corrupted_backup_data() {
    let site = Site::new(&[sys("db", 2, &[]), sys("web", 1, &[])]);
    // Flip one byte in the middle of every data pack: restored content cannot match.
    for (pack, size) in site.repo.packs() {
        let mut bytes = fs::read(&pack).unwrap();
        let i = (size / 2) as usize;
        bytes[i] ^= 0x55;
        fs::write(&pack, bytes).unwrap();
    }
    let out = site.kura(&["--json", "drill", "run", "--plan", s(&site.plan), "--sandbox", s(&site.base().join("sb"))]);
    let v = out.code(1).json();
    let failed: Vec<&Value> = v["systems"].as_array().unwrap().iter().filter(|s| s["state"] == "failed").collect();
    assert!(!failed.is_empty(), "{v}");
    for f in failed {
        let e = f["error"].as_str().unwrap();
        assert!(e.contains("restore"), "{e}");
    }
}

#[test]
fn incident_record_review_prevention_export_and_tamper_detection() {
    let site = Site::new(&[sys("db", 2, &[])]);
    let id = site.open_incident(&["--category", "ransomware", "--down-since", "2026-01-05T01:00:00Z"]);
    let ids = id.to_string();
    site.kura(&["incident", "update", &ids, "--real", "true", "--scope", "one server", "--damage", "db encrypted"])
        .ok();
    site.kura(&["incident", "update", &ids, "--cause", "weak <password> & reuse", "--response", "isolated"]).ok();
    site.kura(&["incident", "update", &ids, "--outside-attack", "true"]).ok();
    site.kura(&["incident", "resolve-cause", &ids, "--note", "password rotated"]).ok();
    site.recover(id).code(1); // down since January: the 24 h deadline is missed
    site.kura(&["incident", "review", &ids, "--findings", "restore took 4 min", "--action", "drill monthly"]).ok();
    site.kura(&["incident", "prevention-plan", &ids, "--technical", "MFA", "--organizational", "training"]).ok();
    site.kura(&["incident", "close", &ids]).ok();

    let shown = site.kura(&["--json", "incident", "show", &ids]).ok().json();
    assert_eq!(shown["incident"]["status"], "closed");
    assert_eq!(shown["incident"]["report_to_board"], true);
    assert_eq!(shown["incident"]["cause"], "weak <password> & reuse", "the latest value wins");
    assert_eq!(shown["incident"]["reviews"][0][1], "restore took 4 min");
    assert_eq!(shown["incident"]["prevention_plans"][0][2][0], "training");

    let md = site.kura(&["incident", "export", &ids]).ok().stdout.clone();
    for part in [
        "## The standard's fields",
        "db encrypted",
        "## Recovery results",
        "| db | 2 | done",
        "## Post-incident review",
        "drill monthly",
        "## Recurrence-prevention plan",
        "MFA",
        "training",
        "## Timeline",
        "Hash chain: verified",
    ] {
        assert!(md.contains(part), "{part:?} missing from:\n{md}");
    }
    let json_path = site.base().join("record.json");
    site.kura(&["incident", "export", &ids, "--format", "json", "-o", s(&json_path)]).ok();
    let rec: Value = serde_json::from_str(&fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(rec["recoveries"][0]["systems"][0]["state"], "done");
    assert_eq!(rec["chain_verified"], true);

    site.kura(&["incident", "verify", &ids]).ok();
    // Edit one row directly in the database, as an attacker or a careless admin would.
    let conn = rusqlite::Connection::open(&site.state).unwrap();
    conn.execute("UPDATE timeline SET data = replace(data, 'isolated', 'nothing') WHERE incident = ?1", [id]).unwrap();
    drop(conn);
    site.kura(&["incident", "verify", &ids]).code(1).stdout_has("TAMPERED");
    let md = site.kura(&["incident", "export", &ids]).ok().stdout.clone();
    assert!(md.contains("BROKEN"), "{md}");
}

#[test]
fn recovery_errors_are_clear() {
    let site = Site::new(&[sys("db", 2, &[])]);
    site.kura(&["recover", "--incident", "42", "--plan", s(&site.plan)]).code(2).stderr_has("incident 42");
    let id = site.open_incident(&[]).to_string();
    site.kura(&["incident", "resolve-cause", &id, "--note", "x"]).ok();
    let missing = site.base().join("nope.toml");
    site.kura(&["recover", "--incident", &id, "--plan", s(&missing)]).code(2).stderr_has("nope.toml");
    // A plan with a typo: reported with its line, nothing restored.
    let plan = fs::read_to_string(&site.plan).unwrap().replace("depends_on", "depend_on");
    write(&site.plan, plan);
    site.kura(&["recover", "--incident", &id, "--plan", s(&site.plan)])
        .code(2)
        .stderr_has("depend_on")
        .stderr_has("plan.toml:");
    assert!(!site.restored("db").exists());
    site.kura(&["incident", "update", "99", "--scope", "x"]).code(2).stderr_has("no such incident");
    site.kura(&["incident", "open", "--title", "t", "--down-since", "yesterday-ish"]).code(2).stderr_has("not a time");
}

#[test]
fn reports_show_a_missed_deadline_as_missed_in_every_format() {
    let site = Site::new(&[sys("db", 2, &[]), sys("web", 1, &[])]);
    // Down for 30 hours already: db (24 h) misses, web (3 days) meets.
    let down = (chrono::Utc::now() - chrono::Duration::hours(30)).to_rfc3339();
    let id = site.open_incident(&["--down-since", &down]);
    let ids = id.to_string();
    site.kura(&["incident", "resolve-cause", &ids, "--note", "fixed"]).ok();
    site.recover(id).code(1);

    let json: Value =
        serde_json::from_str(&site.kura(&["report", "--incident", &ids, "--format", "json"]).ok().stdout).unwrap();
    let row = |n: &str| json["systems"].as_array().unwrap().iter().find(|s| s["name"] == n).unwrap().clone();
    assert_eq!(row("db")["verdict"], "missed");
    assert_eq!(row("web")["verdict"], "met");
    assert!(row("db")["margin_secs"].as_i64().unwrap() < -6 * 3600 + 60);
    assert!(row("db")["rpo_secs"].as_i64().is_some(), "the snapshot age (data lost) is reported");

    let csv = site.kura(&["report", "--incident", &ids, "--format", "csv"]).ok().stdout.clone();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "verdict").expect("verdict column");
    let db_line = csv.lines().find(|l| l.starts_with("db,") || l.contains(",db,")).expect("db row");
    assert_eq!(db_line.split(',').nth(col), Some("missed"), "{csv}");

    let md = site.kura(&["report", "--incident", &ids, "--format", "md"]).ok().stdout.clone();
    let db_md = md.lines().find(|l| l.starts_with("| db ")).expect("db row in markdown");
    assert!(db_md.to_lowercase().contains("missed"), "{db_md}");

    let html_path = site.base().join("report.html");
    site.kura(&["report", "--incident", &ids, "--format", "html", "--output", s(&html_path)]).ok();
    let html = fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("id=\"gantt\"") && html.contains("id=\"systems\""));
    let db_html = html.split("<tr").find(|r| r.contains(">db<")).expect("db row in html");
    assert!(db_html.to_lowercase().contains("missed"), "{db_html}");

    // Drill and period reports come from the same database.
    let drill =
        site.kura(&["--json", "drill", "run", "--plan", s(&site.plan), "--sandbox", s(&site.base().join("sb"))]);
    let drill_id = drill.ok().json()["run"]["id"].as_i64().unwrap().to_string();
    let d: Value =
        serde_json::from_str(&site.kura(&["report", "--drill", &drill_id, "--format", "json"]).ok().stdout).unwrap();
    assert_eq!(d["kind"], "drill");
    let p: Value =
        serde_json::from_str(&site.kura(&["report", "--since", "2020-01-01", "--format", "json"]).ok().stdout).unwrap();
    assert_eq!(p["period"]["entries"].as_array().unwrap().len(), 2, "one incident and one drill");
    site.kura(&["report", "--incident", "77", "--format", "md"]).code(2).stderr_has("incident 77");
    site.kura(&["report", "--incident", &ids, "--format", "pdf"]).code(2).stderr_has("md, html, json or csv");
}

#[test]
fn deduplicated_systems_restored_in_a_moment_raise_no_at_risk_alert() {
    // Every system of a site holds the same sample tree: all but the first
    // deduplicate against it, and each writes a tiny file of its own (its name). A
    // pre hook that takes a second (stopping a service) ran before the restore.
    let mut systems = Vec::new();
    for name in ["db", "wiki", "mail", "file"] {
        let mut sy = sys(name, 2, &[]);
        sy.extra = "[[system.pre]]\ncommand = 'sleep 1'\n".into();
        systems.push(sy);
    }
    let site = Site::new(&systems);
    let alerts = site.base().join("alerts.jsonl");
    let config = fs::read_to_string(&site.config).unwrap();
    write(&site.config, format!("{config}\n[notify]\ncommand = 'cat >> {0}; echo >> {0}'\n", alerts.display()));
    let id = site.open_incident(&[]);
    site.kura(&["incident", "resolve-cause", &id.to_string(), "--note", "fixed"]).ok();
    let v = site.recover(id).ok().json();
    assert_eq!(v["outcome"]["done"], 4, "{v}");
    for name in ["db", "wiki", "mail", "file"] {
        assert_eq!(system(&v, name)["verdict"], "met", "{v}");
    }

    let shown = site.kura(&["--json", "incident", "show", &id.to_string()]).ok().json();
    let alerts_on_timeline: Vec<&Value> =
        shown["timeline"].as_array().unwrap().iter().filter(|e| e["event"]["kind"] == "deadline-alert").collect();
    assert!(alerts_on_timeline.is_empty(), "no system was at risk: {alerts_on_timeline:#?}");
    let sent = fs::read_to_string(&alerts).unwrap_or_default();
    assert!(!sent.contains("deadline_at_risk") && !sent.contains("deadline_breach"), "{sent}");
    let st = site.kura(&["--json", "recover", "status", "--incident", &id.to_string()]).ok().json();
    for row in st["systems"].as_array().unwrap() {
        assert!(row["alert"].is_null(), "{row}");
    }
}

#[test]
fn reports_list_systems_in_execution_order() {
    // By name, alpha comes first; but alpha depends on zulu, so zulu runs first.
    let site = Site::new(&[sys("mail", 1, &[]), sys("alpha", 2, &["zulu"]), sys("zulu", 2, &[])]);
    let id = site.open_incident(&[]);
    let ids = id.to_string();
    site.kura(&["incident", "resolve-cause", &ids, "--note", "fixed"]).ok();
    let v = site.recover(id).ok().json();
    let expected = ["zulu", "alpha", "mail"];
    let names = |list: &Value| -> Vec<String> {
        list.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&v["systems"]), expected, "recover --json");
    // The order the engine ran them in (post hooks log completion).
    let posts: Vec<String> = site
        .log_lines()
        .iter()
        .filter(|l| l.starts_with("post "))
        .map(|l| l.split(' ').nth(1).unwrap().into())
        .collect();
    assert_eq!(posts, expected);

    let json: Value =
        serde_json::from_str(&site.kura(&["report", "--incident", &ids, "--format", "json"]).ok().stdout).unwrap();
    assert_eq!(names(&json["systems"]), expected, "report json");
    let csv = site.kura(&["report", "--incident", &ids, "--format", "csv"]).ok().stdout.clone();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "system" || *h == "name").expect("system column");
    let rows: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').nth(col).unwrap()).collect();
    assert_eq!(rows, expected, "report csv");
    let md = site.kura(&["report", "--incident", &ids, "--format", "md"]).ok().stdout.clone();
    let at = |n: &str| {
        md.lines().position(|l| l.starts_with(&format!("| {n} "))).unwrap_or_else(|| panic!("{n} row in {md}"))
    };
    assert!(at("zulu") < at("alpha") && at("alpha") < at("mail"), "{md}");
    let st = site.kura(&["--json", "recover", "status", "--incident", &ids]).ok().json();
    assert_eq!(names(&st["systems"]), expected, "recover status");
}

#[test]
fn a_forecast_renders_as_a_report_in_every_format() {
    let site = Site::new(&[sys("db", 2, &[]), sys("web", 1, &["db"])]);
    let forecast =
        |format: &str| site.kura(&["plan", "forecast", s(&site.plan), "--format", format]).ok().stdout.clone();
    let json: Value = serde_json::from_str(&forecast("json")).unwrap();
    assert_eq!(json["kind"], "forecast");
    let db = system(&json, "db");
    assert_eq!((db["state"].as_str(), db["predicted"].as_bool()), (Some("planned"), Some(true)), "{db}");
    assert_eq!(db["verdict"], "met", "a small system at 50 MiB/s is back well within 24 h");
    assert!(system(&json, "web")["time_secs"].as_i64() >= db["time_secs"].as_i64(), "web waits for db");

    let csv = forecast("csv");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "predicted").expect("predicted column");
    let db_line = csv.lines().find(|l| l.contains(",db,") || l.starts_with("db,")).expect("db row");
    assert_eq!(db_line.split(',').nth(col), Some("true"), "{csv}");
    let col = header.iter().position(|h| *h == "confidence").expect("confidence column");
    assert_eq!(db_line.split(',').nth(col), Some("low"), "never drilled: {csv}");
    assert_eq!(db["confidence"]["level"], "low", "{db}");

    let md = forecast("md");
    assert!(md.lines().any(|l| l.starts_with("| db ") && l.contains("(predicted)")), "{md}");
    assert!(md.contains("## Forecast confidence"), "{md}");
    assert!(md.lines().any(|l| l.starts_with("| db | low | never drilled | never drilled")), "{md}");

    let html_path = site.base().join("forecast.html");
    site.kura(&["plan", "forecast", s(&site.plan), "--format", "html", "--output", s(&html_path)]).ok();
    let html = fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("id=\"gantt\"") && html.contains("predicted"), "{html}");
    assert!(html.contains("<table id=\"confidence\">") && html.contains("never drilled"), "{html}");

    // Without --format: the table, and --json keeps its own shape.
    site.kura(&["plan", "forecast", s(&site.plan)]).ok().stdout_has("forecast (PREDICTED) for plan test plan");
    let own = site.kura(&["--json", "plan", "forecast", s(&site.plan)]).ok().json();
    assert_eq!((own["plan"].as_str(), own["predicted"].as_bool()), (Some("test plan"), Some(true)));
    site.kura(&["plan", "forecast", s(&site.plan), "--format", "pdf"]).code(2).stderr_has("md, html, json or csv");
}

#[test]
fn a_forecast_learns_from_the_drill_and_follows_a_change_in_the_data() {
    let site = Site::new(&[sys("db", 2, &[]), sys("web", 1, &["db"])]);
    let forecast = || site.kura(&["--json", "plan", "forecast", s(&site.plan)]).ok().json();
    let never = forecast();
    let db0 = system(&never, "db");
    assert_eq!((db0["confidence"]["drills"].as_u64(), db0["confidence"]["level"].as_str()), (Some(0), Some("low")));
    assert_eq!(db0["throughput_source"]["kind"], "default", "{db0}");

    site.kura(&["drill", "run", "--plan", s(&site.plan), "--sandbox", s(&site.base().join("sb"))]).ok();
    let before = forecast();
    let db = system(&before, "db").clone();
    let c = &db["confidence"];
    assert_eq!((c["drills"].as_u64(), c["level"].as_str()), (Some(1), Some("high")), "{db}");
    assert_eq!((c["bytes_ratio"].as_f64(), c["files_ratio"].as_f64()), (Some(1.0), Some(1.0)), "{db}");
    assert!(c["newest_drill_age_secs"].as_i64().is_some_and(|a| (0..3600).contains(&a)), "{db}");
    assert!(c["newest_drill_at"].is_string(), "{db}");
    assert_eq!(db["throughput_source"], serde_json::json!({"kind": "drills", "count": 1}));
    assert!(before["drills_learned_from"].as_u64() == Some(2), "{before}");
    let files0 = db["files"].as_u64().unwrap();
    assert!(db["dirs"].as_u64().unwrap() > 0 && db["objects"].as_u64().unwrap() > 0, "{db}");

    // db gains 3,000 small files (it had a dozen) and is backed up again.
    let src = site.base().join("src/db/many");
    for i in 0..3000 {
        write(&src.join(format!("d{}/f{i}", i / 50)), format!("small file {i}\n"));
    }
    site.repo.backup(&[&site.base().join("src/db")], &["--tag", "system:db"]);
    let after = forecast();
    let (db1, web0, web1) = (system(&after, "db"), system(&before, "web"), system(&after, "web"));
    assert_eq!(db1["files"].as_u64().unwrap(), files0 + 3000, "{db1}");
    let (t0, t1) = (db["restore_secs"].as_f64().unwrap(), db1["restore_secs"].as_f64().unwrap());
    assert!(t1 > t0 * 2.0, "more files take longer: {t0} then, {t1} now");
    assert_eq!(web1["restore_secs"], web0["restore_secs"], "an unchanged system keeps its figure");
    let c = &db1["confidence"];
    assert!(c["files_ratio"].as_f64().unwrap() > 3.0, "{c}");
    assert_eq!(c["level"], "medium", "{c}");
    assert!(c["warnings"][0].as_str().unwrap().contains("files changed"), "{c}");
    site.kura(&["plan", "forecast", s(&site.plan)])
        .ok()
        .stdout_has("confidence")
        .stdout_has("1 drill, newest")
        .stderr_has("db: files changed");
    // The report formats carry the same confidence and the reason.
    let md = site.kura(&["plan", "forecast", s(&site.plan), "--format", "md"]).ok().stdout.clone();
    assert!(
        md.lines().any(|l| l.starts_with("| db | medium | 1 drill, newest") && l.contains("files changed")),
        "{md}"
    );
    assert!(md.lines().any(|l| l.starts_with("| web | high | 1 drill, newest")), "{md}");
}
