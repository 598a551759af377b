//! The fleet with real processes and real mutual TLS: a coordinator (`kura daemon`
//! with `[fleet]` on a loopback port) and agents (`kura agent run`), each agent with
//! its own directory and host name, enrolled with `kura agent enroll` + `join`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::daemon::eventually;
use crate::fleet_util::*;
use crate::util::*;

#[test]
fn scheduled_and_manual_backups_on_agent_hosts_land_in_their_own_repositories() {
    let base = tempfile::tempdir().unwrap();
    let mut systems = String::new();
    let mut srcs = Vec::new();
    for (i, host) in ["h1", "h2", "h3"].iter().enumerate() {
        let src = base.path().join(host).join("data");
        std::fs::create_dir_all(&src).unwrap();
        write_random(&src.join("blob.bin"), 200_000 + i * 1000, i as u64);
        write(&src.join("sub/note.txt"), format!("host {host}\n"));
        systems += &system(&format!("sys{}", i + 1), 3 - i as u8, host, &src);
        srcs.push(src);
    }
    // A scheduled system on h2, every 2 seconds on the coordinator's clock.
    let sched = base.path().join("h2/sched");
    write(&sched.join("f.txt"), "scheduled\n");
    systems += &system("sched", 1, "h2", &sched).replace("paths =", "schedule = \"*/2 * * * * *\"\npaths =");
    let fleet = Fleet::new(&systems);
    let _d = fleet.daemon();
    let agents: Vec<AgentProc> = ["h1", "h2", "h3"].iter().map(|h| fleet.agent(h)).collect();
    for (i, a) in agents.iter().enumerate() {
        let name = format!("sys{}", i + 1);
        fleet.setup.cli(&["run", &name]).ok();
        let tag = format!("system:{name}");
        let snaps: Vec<Value> = fleet
            .host_snapshots(&a.host)
            .into_iter()
            .filter(|s| s["tags"].as_array().unwrap().iter().any(|t| t == &tag))
            .collect();
        assert_eq!(snaps.len(), 1, "{}", a.log());
        assert_eq!(snaps[0]["host"], a.host.as_str());
        assert!(snaps[0]["tags"].as_array().unwrap().iter().any(|t| t == &format!("system:{name}")), "{}", snaps[0]);
        // Byte-identical when restored from the host's repository.
        let (repo, key) = fleet.host_repo(&a.host);
        let target = base.path().join(format!("restored-{}", a.host));
        run(bare_kura().args([
            "--repo",
            s(&repo),
            "--password-file",
            s(&key),
            "restore",
            snaps[0]["id"].as_str().unwrap(),
            "--target",
            s(&target),
        ]))
        .ok();
        assert_same_tree(&srcs[i], &restored(&target, &srcs[i]), Compare { times: true, root_meta: false });
    }
    // The main repository holds none of them; the job history names the snapshots.
    assert!(fleet.setup.repo.snapshots(&[]).is_empty());
    let jobs = fleet.setup.jobs(&[]);
    let manual_ok = jobs.iter().filter(|j| j["outcome"] == "ok" && j["trigger"] == "manual").count();
    assert_eq!(manual_ok, 3, "{jobs:?}");
    // The scheduled system's slots are dispatched to h2 and land in h2's repository.
    eventually(30, "a scheduled backup on h2", || {
        let runs = fleet.setup.jobs(&["--system", "sched"]);
        runs.iter().any(|r| r["trigger"] == "schedule" && r["outcome"] == "ok").then_some(())
    });
    let on_h2 = fleet.host_snapshots("h2");
    assert!(on_h2.iter().any(|s| s["tags"].as_array().unwrap().iter().any(|t| t == "system:sched")), "{on_h2:?}");

    // Remote operators and viewers use the same commands over mutual TLS.
    let remote = |dir: &Path, args: &[&str]| {
        run(bare_kura().args(args).args(["--coordinator", &fleet.url(), "--identity", s(dir)]))
    };
    let ops = base.path().join("ops");
    fleet.join(&fleet.enroll("ops", &["--role", "operator"]), &ops).ok();
    let eve = base.path().join("eve");
    fleet.join(&fleet.enroll("eve", &["--role", "viewer"]), &eve).ok();
    let st = remote(&eve, &["--json", "status"]);
    assert!(st.code == 0 || st.code == 1, "{st}");
    assert_eq!(st.json()["systems"].as_array().unwrap().len(), 4);
    remote(&eve, &["--json", "jobs"]).ok();
    remote(&eve, &["run", "sys1"]).code(2).stderr_has("viewer certificate may not");
    remote(&ops, &["--json", "run", "sys1"]).ok();
    assert_eq!(fleet.host_snapshots("h1").len(), 2);
    // A stolen agent certificate reads no status and starts nothing.
    remote(&agents[0].dir, &["status"]).code(2).stderr_has("agent certificate may not");
    remote(&agents[0].dir, &["run", "sys2"]).code(2).stderr_has("agent certificate may not");

    // An agent that stopped: its system's backup fails at once, naming it and since when.
    let mut agents = agents;
    agents[2].kill9();
    std::thread::sleep(std::time::Duration::from_secs(7));
    fleet.setup.cli(&["run", "sys3"]).code(2).stdout_has("agent h3 unreachable since");
    let failed = fleet.setup.jobs(&["--system", "sys3"]);
    assert!(failed[0]["error"].as_str().unwrap_or("").contains("agent h3 unreachable since"), "{failed:?}");
    let st = fleet.setup.status();
    let sys3 = st["systems"].as_array().unwrap().iter().find(|x| x["name"] == "sys3").unwrap().clone();
    assert_eq!(sys3["late"], true, "{sys3}");
    assert_eq!(sys3["host"], "h3");
    assert!(sys3["late_reason"].as_str().unwrap().starts_with("agent h3 unreachable since"), "{sys3}");
    fleet.setup.cli(&["status"]).code(1).stdout_has("LATE: agent h3 unreachable since");
}

/// Three hosts, one system each: dns (p3, h1), db (p2, h2), web (p1, h3, needs db).
struct Site {
    fleet: Fleet,
    base: tempfile::TempDir,
    srcs: Vec<(String, String, PathBuf)>,
    plan: PathBuf,
    global_log: PathBuf,
}

impl Site {
    fn new(sizes: [usize; 3]) -> Site {
        let base = tempfile::tempdir().unwrap();
        let global_log = base.path().join("global.log");
        let defs = [("dns", 3u8, "h1", ""), ("db", 2, "h2", ""), ("web", 1, "h3", "db")];
        let mut systems = String::new();
        let mut plan = String::new();
        let mut srcs = Vec::new();
        for ((name, prio, host, dep), size) in defs.into_iter().zip(sizes) {
            let src = base.path().join(host).join(name);
            sample_tree(&src, 20_000);
            // Many files, so that a restore takes a while and can be cut in the middle.
            std::fs::create_dir_all(src.join("big")).unwrap();
            for f in 0..size / 1_000_000 {
                write_random(&src.join(format!("big/{f:03}.bin")), 1_000_000, prio as u64 * 1000 + f as u64);
            }
            write_random(&src.join("small.bin"), size % 1_000_000 + 1, prio as u64);
            systems += &system(name, prio, host, &src);
            let hook = |stage: &str| {
                format!(
                    "[[system.{stage}]]\ncommand = 'echo \"$KURA_PHASE $KURA_SYSTEM\" >> hooks.log; echo \"$KURA_PHASE $KURA_SYSTEM\" >> {}'\n",
                    global_log.display()
                )
            };
            let deps = if dep.is_empty() { String::new() } else { format!("'{dep}'") };
            plan += &format!(
                "[[system]]\nname = '{name}'\ntarget = '{}'\ndepends_on = [{deps}]\n{}{}{}\n",
                base.path().join("restore").join(name).display(),
                hook("pre"),
                hook("verify"),
                hook("post")
            );
            srcs.push((name.to_string(), host.to_string(), src));
        }
        let fleet = Fleet::new(&systems);
        let plan_path = base.path().join("plan.toml");
        write(&plan_path, format!("name = 'fleet plan'\nconfig = '{}'\n\n{plan}", s(&fleet.setup.config)));
        Site { fleet, base, srcs, plan: plan_path, global_log }
    }

    fn kura(&self, args: &[&str]) -> std::process::Command {
        let mut c = bare_kura();
        c.arg("--state").arg(self.fleet.state()).args(args).env("KURA_CONFIG", &self.fleet.setup.config);
        c
    }

    fn backups(&self) {
        for (name, _, _) in &self.srcs {
            self.fleet.setup.cli(&["run", name]).ok();
        }
    }

    /// An incident with its cause resolved; returns its id.
    fn incident(&self) -> String {
        let o = run(&mut self.kura(&["--json", "incident", "open", "--title", "site down"])).ok().json();
        let id = o["id"].as_i64().unwrap().to_string();
        run(&mut self.kura(&["incident", "resolve-cause", &id, "--note", "fixed"])).ok();
        id
    }

    fn recover(&self, id: &str) -> std::process::Command {
        self.kura(&["--json", "recover", "--incident", id, "--plan", s(&self.plan), "--parallel", "1"])
    }

    fn assert_restored(&self) {
        for (name, _, src) in &self.srcs {
            assert_same_tree(
                src,
                &self.base.path().join("restore").join(name),
                Compare { times: true, root_meta: false },
            );
        }
    }

    /// `recover status` (JSON and text) and the JSON report of incident `id` name
    /// the host each system ran on.
    fn assert_ran_on(&self, id: &str, want: &[(&str, &str)]) {
        let st = run(&mut self.kura(&["--json", "recover", "status", "--incident", id])).ok().json();
        let rep = run(&mut self.kura(&["report", "--incident", id, "--format", "json"]));
        rep.ok();
        let rep: Value = serde_json::from_str(&rep.stdout).unwrap();
        let text = run(&mut self.kura(&["recover", "status", "--incident", id])).ok().stdout.clone();
        for (doc, what) in [(&st, "status"), (&rep, "report")] {
            let systems = doc["systems"].as_array().unwrap_or_else(|| panic!("{what}: {doc}"));
            for (name, host) in want {
                let row = systems.iter().find(|s| s["name"] == *name).unwrap_or_else(|| panic!("{what}: {doc}"));
                assert_eq!(row["ran_on"], *host, "{what}: {name}: {row}");
            }
        }
        for (name, host) in want {
            let lines: Vec<&str> = text.lines().collect();
            let i = lines.iter().position(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{text}"));
            assert!(lines[i + 1..].iter().take(2).any(|l| l.trim() == format!("on host {host}")), "{name}: {text}");
        }
    }

    fn global_log(&self) -> Vec<String> {
        std::fs::read_to_string(&self.global_log).unwrap_or_default().lines().map(String::from).collect()
    }

    /// (kind, system, state) of every task in the coordinator's table.
    fn tasks(&self) -> Vec<(String, String, String)> {
        let db = rusqlite::Connection::open(self.fleet.state()).unwrap();
        let mut st = db.prepare("SELECT kind, system, state FROM fleet_tasks ORDER BY id").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    }
}

#[test]
fn recovery_across_three_hosts_in_priority_order_with_hooks_on_each_host() {
    let site = Site::new([300_000, 300_000, 300_000]);
    let _d = site.fleet.daemon();
    let agents: Vec<AgentProc> = ["h1", "h2", "h3"].iter().map(|h| site.fleet.agent(h)).collect();
    site.backups();
    let id = site.incident();
    let out = run(&mut site.recover(&id));
    out.ok();
    site.assert_restored();
    // Priority order across hosts: every stage of dns, then db, then web.
    let expected: Vec<String> =
        ["dns", "db", "web"].iter().flat_map(|s| ["pre", "verify", "post"].map(|st| format!("{st} {s}"))).collect();
    assert_eq!(site.global_log(), expected);
    // Each system's hooks ran on its own host (in that agent's directory).
    for ((name, host, _), a) in site.srcs.iter().zip(&agents) {
        assert_eq!(&a.host, host);
        let local = std::fs::read_to_string(a.dir.join("hooks.log")).unwrap_or_default();
        assert_eq!(local, format!("pre {name}\nverify {name}\npost {name}\n"), "{}", a.log());
    }
    let status = run(&mut site.kura(&["--json", "recover", "status", "--incident", &id])).ok().json();
    for sys in status["systems"].as_array().unwrap() {
        assert_eq!(sys["state"], "done", "{sys}");
        assert!(sys["bytes"].as_u64().unwrap_or(0) > 0 || sys["files"].as_u64().unwrap_or(0) > 0, "{sys}");
    }
    // A viewer elsewhere reads the same status from the coordinator over mutual TLS;
    // an agent's certificate may not.
    let eve = site.base.path().join("eve");
    site.fleet.join(&site.fleet.enroll("eve", &["--role", "viewer"]), &eve).ok();
    let remote = |dir: &Path, json: bool| {
        let mut c = bare_kura();
        if json {
            c.arg("--json");
        }
        run(c.args(["recover", "status", "--incident", &id, "--coordinator", &site.fleet.url(), "--identity", s(dir)]))
    };
    let far = remote(&eve, true).ok().json();
    let view = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["systems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["name"].clone(), x["state"].clone(), x["bytes"].clone()))
            .collect()
    };
    assert_eq!(view(&far), view(&status));
    remote(&eve, false).ok().stdout_has("dns").stdout_has("done");
    remote(&agents[0].dir, false).code(2).stderr_has("agent certificate may not");
}

/// Waits until `p` exists.
fn wait_for(p: &Path, secs: u64) {
    eventually(secs, &format!("{} to appear", p.display()), || p.exists().then_some(()));
}

#[test]
fn agent_and_coordinator_killed_mid_restore_resume_without_redoing_finished_systems() {
    let site = Site::new([300_000, 60_000_000, 60_000_000]);
    let mut d = site.fleet.daemon();
    let mut agents: Vec<AgentProc> = ["h1", "h2", "h3"].iter().map(|h| site.fleet.agent(h)).collect();
    site.backups();
    let id = site.incident();
    let mut first = site.recover(&id).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();

    // db's agent (h2) is killed as soon as its restore writes, then started again.
    wait_for(&site.base.path().join("restore/db"), 120);
    agents[1].kill9();
    std::thread::sleep(std::time::Duration::from_millis(500));
    agents[1].restart();

    // The coordinator (daemon and the recovering CLI) is killed during web's restore.
    wait_for(&site.base.path().join("restore/web"), 120);
    d.kill9();
    let _ = first.kill();
    let _ = first.wait();
    let _d2 = site.fleet.daemon();
    let out = run(&mut site.recover(&id));
    out.ok().stdout_has("\"done\": 3");
    site.assert_restored();

    // Nothing finished was done twice: each hook ran once, each system has one restore task.
    let log = site.global_log();
    for line in ["dns", "db", "web"].iter().flat_map(|s| ["pre", "verify", "post"].map(|st| format!("{st} {s}"))) {
        assert_eq!(log.iter().filter(|l| **l == line).count(), 1, "{line}: {log:?}");
    }
    let tasks = site.tasks();
    for sys in ["dns", "db", "web"] {
        let restores: Vec<_> = tasks.iter().filter(|t| t.0 == "restore" && t.1 == sys).collect();
        assert_eq!(restores.len(), 1, "{sys}: {tasks:?}");
        assert_eq!(restores[0].2, "done");
    }
    // h2 started db's restore twice (the second one skipped what was in place).
    assert!(agents[1].log().matches("task started").count() >= 2, "{}", agents[1].log());
}

#[test]
fn systems_restore_on_another_host_with_on_and_on_their_replacement_when_their_agent_is_lost() {
    let site = Site::new([300_000, 300_000, 300_000]);
    let plan = std::fs::read_to_string(&site.plan).unwrap();
    write(&site.plan, plan.replace("name = 'db'\n", "name = 'db'\nreplacement_host = 'h3'\n"));
    let cfg = std::fs::read_to_string(&site.fleet.setup.config).unwrap();
    let notified = site.base.path().join("notify.jsonl");
    let cfg = cfg.replace("agent_lost_after = \"20s\"", "agent_lost_after = \"3s\"");
    let cfg = format!("{cfg}\n[notify]\ncommand = 'cat >> {0}; echo >> {0}'\n", notified.display());
    write(&site.fleet.setup.config, cfg);
    let _d = site.fleet.daemon();
    let mut agents: Vec<AgentProc> = ["h1", "h2", "h3"].iter().map(|h| site.fleet.agent(h)).collect();
    site.backups();
    let hooks_of = |a: &AgentProc| std::fs::read_to_string(a.dir.join("hooks.log")).unwrap_or_default();

    // --on: dns (home h1) is restored on h2, from h1's repository.
    let id = site.incident();
    let mut c = site.recover(&id);
    run(c.args(["--on", "dns=h2"])).ok();
    site.assert_restored();
    assert!(hooks_of(&agents[1]).contains("pre dns"), "{}", hooks_of(&agents[1]));
    assert!(!hooks_of(&agents[0]).contains("dns"), "{}", hooks_of(&agents[0]));
    // Status and the report name the host each system ran on.
    site.assert_ran_on(&id, &[("dns", "h2"), ("db", "h2"), ("web", "h3")]);
    // --on names a system of the plan.
    run(site.recover(&id).args(["--on", "nope=h2"])).code(2).stderr_has("no system \"nope\"");

    // db's agent (h2) is lost past agent_lost_after: db goes to its replacement h3.
    agents[1].kill9();
    std::thread::sleep(std::time::Duration::from_secs(4));
    // Its systems are at risk in `kura status`, and a notification went out once.
    let st = eventually(10, "db at risk", || {
        let st = site.fleet.setup.status();
        let db = st["systems"].as_array()?.iter().find(|x| x["name"] == "db")?.clone();
        db["late_reason"].as_str()?.starts_with("agent h2 lost").then_some(db)
    });
    assert_eq!(st["late"], true, "{st}");
    let sent = eventually(10, "the agent_lost notification", || {
        let t = std::fs::read_to_string(&notified).ok()?;
        t.contains("agent_lost").then_some(t)
    });
    assert!(sent.contains("agent h2 lost") && sent.contains("db"), "{sent}");
    // Ticks go on every second: still one notification for this silence.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let sent = std::fs::read_to_string(&notified).unwrap();
    assert_eq!(sent.matches("\"event\":\"agent_lost\"").count(), 1, "{sent}");
    std::fs::remove_dir_all(site.base.path().join("restore")).unwrap();
    let id2 = site.incident();
    run(&mut site.recover(&id2)).ok();
    site.assert_restored();
    assert!(hooks_of(&agents[2]).contains("pre db"), "{}", hooks_of(&agents[2]));
    site.assert_ran_on(&id2, &[("dns", "h1"), ("db", "h3"), ("web", "h3")]);
}

#[test]
fn per_host_parallel_limits_the_systems_of_one_host_running_at_once() {
    let base = tempfile::tempdir().unwrap();
    let log = base.path().join("order.log");
    let mut systems = String::new();
    let mut plan = String::new();
    for name in ["a", "b", "c"] {
        let src = base.path().join(name);
        write(&src.join("f.txt"), format!("{name}\n"));
        systems += &system(name, 2, "h1", &src);
        let hook = |stage: &str| {
            format!(
                "[[system.{stage}]]\ncommand = 'echo \"$KURA_PHASE $KURA_SYSTEM\" >> {}; sleep 0.3'\n",
                log.display()
            )
        };
        plan += &format!(
            "[[system]]\nname = '{name}'\ntarget = '{}'\n{}{}\n",
            base.path().join("restore").join(name).display(),
            hook("pre"),
            hook("post")
        );
    }
    let fleet = Fleet::new(&systems);
    let cfg = std::fs::read_to_string(&fleet.setup.config).unwrap();
    write(&fleet.setup.config, cfg.replace("name = \"coord\"\n", "name = \"coord\"\nper_host_parallel = 1\n"));
    let plan_path = base.path().join("plan.toml");
    write(&plan_path, format!("name = 'one host'\nconfig = '{}'\n\n{plan}", s(&fleet.setup.config)));
    let _d = fleet.daemon();
    let _h1 = fleet.agent("h1");
    for name in ["a", "b", "c"] {
        fleet.setup.cli(&["run", name]).ok();
    }
    let kura = |args: &[&str]| {
        let mut c = bare_kura();
        c.arg("--state").arg(fleet.state()).args(args).env("KURA_CONFIG", &fleet.setup.config);
        run(&mut c)
    };
    let id = kura(&["--json", "incident", "open", "--title", "t"]).ok().json()["id"].as_i64().unwrap().to_string();
    kura(&["incident", "resolve-cause", &id, "--note", "fixed"]).ok();
    kura(&["recover", "--incident", &id, "--plan", s(&plan_path), "--parallel", "3"]).ok();
    // --parallel 3 would start all three at once; h1 runs one system at a time.
    let lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(String::from).collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    for pair in lines.chunks(2) {
        let sys = |l: &str| l.split(' ').nth(1).unwrap().to_string();
        assert!(pair[0].starts_with("pre") && pair[1].starts_with("post"), "{lines:?}");
        assert_eq!(sys(&pair[0]), sys(&pair[1]), "{lines:?}");
    }
}
