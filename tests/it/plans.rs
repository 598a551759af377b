//! `kura plan validate` and `kura plan show`: every shipped plan validates; every
//! rejection is reported with its line and field; the order is printed.

use std::path::{Path, PathBuf};

use crate::util::*;

fn kura_cmd() -> std::process::Command {
    let mut c = bare_kura();
    c.env_remove("KURA_CONFIG");
    c
}

const CONFIG: &str = r#"[repository]
location = "/r"
password_file = "/p"

[deadlines]
p1 = "2d"

[[system]]
name = "dc"
priority = 3
paths = ["/srv/dc"]

[[system]]
name = "db"
priority = 3
paths = ["/srv/db"]

[[system]]
name = "app"
priority = 2
paths = ["/srv/app"]

[[system]]
name = "files"
priority = 1
paths = ["/srv/files"]

[[system]]
name = "wiki"
priority = 0
paths = ["/srv/wiki"]
"#;

/// A temp dir with `etc/kura.toml` and the plan at `plans/p.toml`.
fn setup(plan: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("etc/kura.toml");
    let p = dir.path().join("plans/p.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    write(&cfg, CONFIG);
    write(&p, plan);
    (dir, cfg, p)
}

const GOOD: &str = r#"name = "office"
config = "../etc/kura.toml"

[[system]]
name = "app"
target = "/restore/app"
depends_on = ["db", "dc"]

[[system.verify]]
command = "true"

[[system]]
name = "db"
target = "/restore/db"

[[system.pre]]
command = "true"

[[system.post]]
command = "true"

[[system]]
name = "dc"
target = "/restore/dc"

[[system]]
name = "files"
target = "/restore/files"
depends_on = ["app"]

[[system]]
name = "wiki"
target = "/restore/wiki"
depends_on = ["files"]
"#;

#[test]
fn every_shipped_plan_validates_with_its_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut seen = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        // Through the library...
        let config_path = kura::plan::resolve_config(&p, None);
        let config = kura::config::load(&config_path).unwrap_or_else(|e| panic!("{}:\n{e}", config_path.display()));
        let (plan, warnings) = kura::plan::load(&p, Some(&config)).unwrap_or_else(|e| panic!("{}:\n{e}", p.display()));
        assert!(warnings.is_empty(), "{}: {warnings:?}", p.display());
        let order = kura::plan::order(&plan);
        assert_eq!(order.flat().count(), plan.systems.len());
        assert_eq!(order.tiers.len(), 4, "{} should cover all four priorities", p.display());
        // ...and through the binary.
        run(kura_cmd().args(["plan", "validate", s(&p)])).ok().stdout_has("OK:");
        seen += 1;
    }
    assert!(seen >= 2, "expected at least two plans in plans/");
    let large = kura::plan::load(
        &root.join("large-site.toml"),
        Some(&kura::config::load(&kura::plan::resolve_config(&root.join("large-site.toml"), None)).unwrap()),
    )
    .unwrap()
    .0;
    assert!(large.systems.len() >= 20);
}

#[test]
fn validate_and_show_a_good_plan() {
    let (_d, cfg, p) = setup(GOOD);
    let out = run(kura_cmd().args(["plan", "validate", s(&p)]));
    out.ok().stdout_has("plan \"office\" OK: 5 systems in 4 tiers and 4 waves").stdout_has(s(&cfg));
    let out = run(kura_cmd().args(["plan", "show", s(&p)]));
    out.ok()
        .stdout_has("tier 3 (priority 3, deadline 0 (must not stop))")
        .stdout_has("tier 2 (priority 2, deadline 24h)")
        .stdout_has("tier 1 (priority 1, deadline 2d)")
        .stdout_has("tier 0 (priority 0, deadline none)")
        .stdout_has("depends on: db, dc; hooks: 0 pre, 1 verify, 0 post")
        .stdout_has("target /restore/wiki");
    // db and dc share a wave, db first by name.
    let db = out.stdout.find("    db ").unwrap();
    let dc = out.stdout.find("    dc ").unwrap();
    let app = out.stdout.find("    app ").unwrap();
    let wiki = out.stdout.find("    wiki ").unwrap();
    assert!(db < dc && dc < app && app < wiki, "{out}");

    let v = run(kura_cmd().args(["plan", "show", s(&p), "--json"])).ok().json();
    assert_eq!(v["plan"], "office");
    assert_eq!(v["systems"], 5);
    let tiers = v["tiers"].as_array().unwrap();
    let prios: Vec<u64> = tiers.iter().map(|t| t["priority"].as_u64().unwrap()).collect();
    assert_eq!(prios, vec![3, 2, 1, 0]);
    let wave0: Vec<&str> =
        tiers[0]["waves"][0].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(wave0, vec!["db", "dc"]);
    assert_eq!(tiers[0]["waves"][0][0]["deadline_secs"], 0);
    assert_eq!(tiers[0]["waves"][0][0]["hooks"]["pre"], 1);
    assert_eq!(tiers[1]["waves"][0][0]["deadline"], "24h");
    assert_eq!(tiers[1]["waves"][0][0]["source"], "tag system:app");
    assert_eq!(tiers[2]["waves"][0][0]["deadline_secs"], 2 * 86_400);
    assert!(tiers[3]["waves"][0][0]["deadline_secs"].is_null());
}

#[test]
fn config_comes_from_flag_env_or_plan() {
    let (d, cfg, p) = setup(&GOOD.replace("config = \"../etc/kura.toml\"\n", ""));
    // No `config` key, no ./kura.toml in the working directory, no /etc/kura: a hint.
    let out = run(kura_cmd().current_dir(d.path()).args(["plan", "validate", s(&p)]));
    if !Path::new("/etc/kura/kura.toml").exists() {
        out.code(2).stderr_has("no config at /etc/kura/kura.toml: pass --config PATH, set KURA_CONFIG");
    }
    run(kura_cmd().args(["plan", "validate", s(&p), "--config", s(&cfg)])).ok();
    run(kura_cmd().env("KURA_CONFIG", &cfg).args(["plan", "validate", s(&p)])).ok();
    // ./kura.toml in the working directory.
    std::fs::copy(&cfg, d.path().join("kura.toml")).unwrap();
    run(kura_cmd().current_dir(d.path()).args(["plan", "validate", s(&p)])).ok();
    // A broken config is reported as such.
    write(&cfg, "[repository]\nlocation = 1\n");
    let out = run(kura_cmd().args(["plan", "validate", s(&p), "--config", s(&cfg)]));
    out.code(2).stderr_has("kura.toml:2: error: repository.location: expected a string");
}

#[test]
fn every_rejection_is_reported_with_line_and_field() {
    let plan = r#"name = "bad"
colour = "red"

[[system]]
name = "app"
priority = 2
target = "/restore/app"
depends_on = ["ghost", "app"]

[[system]]
name = "app"
target = "/restore/app2"

[[system]]
name = "db"
target = "/restore/db"
depends_on = ["files"]

[[system]]
name = "files"
target = "/restore/app/files"

[[system]]
name = "dc"
target = "/restore/dc"
depends_on = ["wiki"]

[[system]]
name = "wiki"
target = "/restore/wiki"
depends_on = ["dc"]

[[system]]
name = "mystery"
target = "/restore/mystery"
"#;
    let (_d, cfg, p) = setup(plan);
    let out = run(kura_cmd().args(["plan", "validate", s(&p), "--config", s(&cfg)]));
    out.code(2);
    let f = s(&p).to_string();
    let cfg = s(&cfg).to_string();
    for line in [
        format!("{f}:2: error: colour: unknown field `colour`"),
        format!("{f}:6: error: system[0].priority: priorities live in the config ({cfg}), not in plans"),
        format!("{f}:8: error: system[0].depends_on[0]: unknown dependency \"ghost\""),
        format!("{f}:8: error: system[0].depends_on[1]: system \"app\" depends on itself"),
        format!("{f}:11: error: system[1].name: duplicate system \"app\" (first on line 5)"),
        format!("{f}:17: error: system[2].depends_on[0]: \"db\" (priority 3) depends on \"files\" (priority 1)"),
        format!("{f}:21: error: system[3].target: target \"/restore/app/files\" of \"files\" overlaps target \"/restore/app\" of \"app\" (line 7)"),
        format!("{f}:26: error: system[4].depends_on: dependency cycle: dc -> wiki -> dc"),
        format!("{f}:34: error: system[6].name: system \"mystery\" is not declared in the config {cfg}"),
    ] {
        out.stderr_has(&line);
    }
    out.stderr_has("10 errors found");
    // A dependency on a higher priority is fine: remove the errors one by one.
    let v = run(kura_cmd().args(["plan", "validate", s(&p), "--config", &cfg, "--json"])).code(2).json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 10);
    assert!(v["problems"].as_array().unwrap().iter().all(|p| p["line"].is_u64() && p["field"].is_string()));
}

#[test]
fn same_target_and_cycles_across_three() {
    let plan = r#"name = "x"
config = "../etc/kura.toml"

[[system]]
name = "dc"
target = "/restore/same"
depends_on = ["db"]

[[system]]
name = "db"
target = "/restore/./same"
depends_on = ["dc"]

[[system]]
name = "app"
target = "/restore/app"
"#;
    let (_d, _cfg, p) = setup(plan);
    let out = run(kura_cmd().args(["plan", "validate", s(&p)]));
    out.code(2)
        .stderr_has(":11: error: system[1].target: target \"/restore/./same\" of \"db\" is the same directory as target \"/restore/same\" of \"dc\" (line 6)")
        .stderr_has(":7: error: system[0].depends_on: dependency cycle: dc -> db -> dc");
    let out = run(kura_cmd().args(["plan", "show", s(&p)]));
    out.code(2).stderr_has("2 errors found");
}

#[test]
fn syntax_error_and_missing_plan() {
    let (_d, _cfg, p) = setup("name = \"x\"\nconfig = \"../etc/kura.toml\"\n[[system]\n");
    run(kura_cmd().args(["plan", "validate", s(&p)])).code(2).stderr_has("p.toml:3: error: (syntax): invalid TOML");
    let (_d, cfg, _p) = setup(GOOD);
    run(kura_cmd().args(["plan", "validate", "/no/such/plan.toml", "--config", s(&cfg)]))
        .code(2)
        .stderr_has("/no/such/plan.toml: error: (file): cannot read the plan file");
}

#[test]
fn warnings_are_printed_but_do_not_fail() {
    let (_d, _cfg, p) = setup(&GOOD.replace("depends_on = [\"db\", \"dc\"]", "depends_on = [\"db\", \"dc\", \"db\"]"));
    let out = run(kura_cmd().args(["plan", "validate", s(&p)]));
    out.ok().stderr_has("p.toml:7: warning: system[0].depends_on[2]: \"db\" is listed twice").stdout_has("OK:");
    let v = run(kura_cmd().args(["plan", "show", s(&p), "--json"])).ok().json();
    assert_eq!(v["warnings"][0]["severity"], "warning");
}
