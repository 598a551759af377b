//! Coordinator-side commands from another machine (`--coordinator URL --identity
//! DIR`): a real coordinator, a real agent, real mutual TLS. An operator opens and
//! updates an incident, starts a recovery and follows it to its end, and reads the
//! report; a viewer reads but changes nothing; an agent's certificate is refused all.

use std::path::Path;

use serde_json::Value;

use crate::daemon::eventually;
use crate::fleet_util::*;
use crate::util::*;

#[test]
fn operators_run_viewers_read_and_agents_are_refused_coordinator_commands() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("h1/db");
    sample_tree(&src, 30_000);
    // `web` has a standby on its host: the operator fails it over from afar.
    let web = base.path().join("h1/web");
    sample_tree(&web, 5_000);
    let standby = base.path().join("h1/standby/web");
    let web_conf =
        format!("{}[system.standby]\nhost = \"h1\"\npath = \"{}\"\n\n", system("web", 3, "h1", &web), s(&standby));
    let fleet = Fleet::new(&format!("{}{web_conf}", system("db", 2, "h1", &src)));
    let target = base.path().join("restore/db");
    // Plans named remotely are the coordinator's, in its config's directory.
    let plan = fleet.setup.config.parent().unwrap().join("plans/remote.toml");
    write(
        &plan,
        format!(
            "name = 'remote plan'\nconfig = '{}'\n\n[[system]]\nname = 'db'\ntarget = '{}'\n",
            s(&fleet.setup.config),
            s(&target)
        ),
    );
    let _d = fleet.daemon();
    let agent = fleet.agent("h1");
    fleet.setup.cli(&["run", "db"]).ok();
    fleet.setup.cli(&["run", "web"]).ok();

    let url = fleet.url();
    let remote =
        |dir: &Path, args: &[&str]| run(bare_kura().args(["--coordinator", &url, "--identity", s(dir)]).args(args));
    let ops = base.path().join("ops");
    fleet.join(&fleet.enroll("ops", &["--role", "operator"]), &ops).ok();
    let eve = base.path().join("eve");
    fleet.join(&fleet.enroll("eve", &["--role", "viewer"]), &eve).ok();

    // The operator opens, updates and resolves an incident from afar.
    let id = remote(&ops, &["--json", "incident", "open", "--title", "disk died"]).ok().json()["id"].to_string();
    remote(&ops, &["incident", "update", &id, "--cause", "a failed disk"]).ok();
    remote(&ops, &["incident", "resolve-cause", &id, "--note", "disk replaced"]).ok();
    // It is the coordinator's incident: a local command there sees it.
    let shown = fleet.kura(&["--json", "incident", "show", &id]).ok().json();
    assert_eq!(shown["incident"]["cause"], "a failed disk", "{shown}");

    // A viewer reads the list and a report, and changes nothing.
    let list = remote(&eve, &["--json", "incident", "list"]).ok().json();
    assert!(list.as_array().unwrap().iter().any(|i| i["title"] == "disk died"), "{list}");
    remote(&eve, &["report", "--incident", &id]).ok().stdout_has("disk died");
    remote(&eve, &["incident", "update", &id, "--cause", "x"])
        .code(2)
        .stderr_has("viewer certificate may not run `kura incident update`");
    remote(&eve, &["recover", "--incident", &id, "--plan", s(&plan)]).code(2).stderr_has("viewer certificate may not");
    // Options naming the operator's files, and commands without a remote form.
    remote(&eve, &["report", "--incident", &id, "--output", "/tmp/r.md"]).code(2).stderr_has("--output is not allowed");
    remote(&ops, &["backup", s(&src)]).code(2).stderr_has("no remote form");
    // A plan elsewhere on the coordinator is not read (its errors could echo any file).
    let stray = base.path().join("stray.toml");
    std::fs::copy(&plan, &stray).unwrap();
    remote(&ops, &["plan", "show", s(&stray)]).code(2).stderr_has("outside the coordinator's config directory");
    // A stolen agent certificate reads and starts nothing.
    for args in [
        vec!["incident", "list"],
        vec!["report", "--incident", &id],
        vec!["recover", "--incident", &id, "--plan", s(&plan)],
        vec!["recover", "status"],
    ] {
        remote(&agent.dir, &args).code(2).stderr_has("agent certificate may not");
    }

    // The operator starts the recovery: the answer comes once the run is recorded.
    let started = remote(&ops, &["--json", "recover", "--incident", &id, "--plan", s(&plan)]).ok().json();
    assert_eq!(started["started"], "recovery", "{started}");
    let run_id = started["run"].as_i64().unwrap_or_else(|| panic!("{started}")).to_string();
    let done = eventually(120, "the remote recovery to end", || {
        let st = remote(&ops, &["--json", "recover", "status", "--run", &run_id]).ok().json();
        (st["run"]["status"] != "running").then_some(st)
    });
    assert_eq!(done["run"]["status"], "done", "{done}");
    assert_eq!(done["systems"][0]["ran_on"], "h1", "{done}");
    assert_same_tree(&src, &target, Compare { times: true, root_meta: false });
    // The same JSON as a local run at the coordinator.
    let local = fleet.kura(&["--json", "recover", "status", "--run", &run_id]).ok().json();
    assert_eq!(done, local);

    // Reports in every format, the viewer included.
    let rep: Value =
        serde_json::from_str(&remote(&eve, &["report", "--incident", &id, "--format", "json"]).ok().stdout).unwrap();
    assert!(rep["systems"].as_array().unwrap().iter().any(|s| s["name"] == "db"), "{rep}");
    remote(&ops, &["report", "--incident", &id, "--format", "csv"]).ok().stdout_has("db");
    remote(&ops, &["report", "--incident", &id, "--format", "html"]).ok().stdout_has("<html");
    remote(&eve, &["plan", "show", s(&plan)]).ok().stdout_has("db");
    remote(&eve, &["--json", "drill", "list"]).ok();
    // The coordinator's own repository (its config's [repository]), read by a viewer.
    let main = remote(&eve, &["--json", "snapshots"]).ok().json();
    let pass = fleet.setup.repo.base().join("pass");
    let here = fleet.kura(&["--json", "--repo", s(&fleet.setup.repo.path), "--password-file", s(&pass), "snapshots"]);
    assert_eq!(main, here.ok().json());

    // Standbys: a viewer reads their state and switches nothing; an operator fails
    // one over (a switch ends within the remote timeout here, so its output comes back).
    let st = remote(&eve, &["--json", "standby", "status"]).ok().json();
    assert_eq!(st[0]["system"], "web", "{st}");
    remote(&eve, &["failover", "web", "--incident", &id]).code(2).stderr_has("viewer certificate may not");
    let over = remote(&ops, &["--json", "failover", "web", "--incident", &id]).ok().json();
    assert_eq!(over["phase"], "done", "{over}");
    assert_same_tree(&web, &standby, Compare { times: true, root_meta: false });
}
