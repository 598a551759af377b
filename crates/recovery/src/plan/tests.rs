use std::path::Path;

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;
use crate::config::{self, Config};

/// A config declaring `systems` (name, priority), as if at /etc/kura/kura.toml.
fn config_with(systems: &[(&str, u8)], extra: &str) -> Config {
    let mut text = String::from("[repository]\nlocation = \"/r\"\npassword_file = \"/p\"\n");
    text += extra;
    for (n, p) in systems {
        text += &format!("[[system]]\nname = \"{n}\"\npriority = {p}\npaths = [\"/srv/{n}\"]\nhost = \"h-{n}\"\n");
    }
    config::parse_str(Path::new("/etc/kura/kura.toml"), &text).unwrap()
}

fn office() -> Config {
    config_with(&[("dc", 3), ("db", 3), ("app", 2), ("mail", 2), ("files", 1), ("wiki", 0)], "")
}

fn plan(text: &str, c: &Config) -> Result<(Plan, Vec<Problem>), Problems> {
    parse_str(Path::new("/plans/p.toml"), text, Some(c))
}

fn problems(text: &str, c: &Config) -> Vec<Problem> {
    match plan(text, c) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(p) => p.0,
    }
}

#[track_caller]
fn has(ps: &[Problem], line: usize, field: &str, msg: &str) {
    assert!(
        ps.iter().any(|p| p.line == Some(line) && p.field == field && p.message.contains(msg)),
        "no problem at line {line} field {field} containing {msg:?} in:\n{}",
        Problems(ps.to_vec())
    );
}

const GOOD: &str = r#"name = "office"
description = "Restore the office"
on_failure = "halt"

[[system]]
name = "app"
target = "/restore/app"
depends_on = ["db"]

[[system.pre]]
command = "systemctl stop app"

[[system.verify]]
command = "curl -fsS http://localhost/health"
timeout = "30s"
retry_delay = "5s"

[[system.post]]
command = "systemctl start app"
drill = true

[[system]]
name = "db"
target = "restore/db"
subpath = "/srv/db/data"

[[system]]
name = "dc"
target = "/restore/dc"

[[system]]
name = "mail"
target = "/restore/mail"
depends_on = ["dc", "db"]
host = "mx1"

[[system]]
name = "wiki"
target = "/restore/wiki"
paths = ["/var/www/wiki"]
depends_on = ["app"]
"#;

#[test]
fn a_good_plan_resolves_against_the_config() {
    let c = office();
    let (p, warnings) = plan(GOOD, &c).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(p.name, "office");
    assert_eq!(p.on_failure, OnFailure::Halt);
    assert!(!p.allow_overlap);
    let app = p.system("app").unwrap();
    assert_eq!(app.priority.get(), 2);
    assert_eq!(app.deadline, Some(chrono::Duration::hours(24)));
    assert_eq!(app.source, Source::Tag("system:app".into()));
    assert_eq!(app.hooks.pre.len(), 1);
    let pre = &app.hooks.pre[0];
    assert_eq!((pre.retries, pre.drill, pre.timeout), (0, false, DEFAULT_HOOK_TIMEOUT));
    let v = &app.hooks.verify[0];
    assert_eq!((v.retries, v.drill), (DEFAULT_VERIFY_RETRIES, true));
    assert_eq!(v.timeout.as_secs(), 30);
    assert_eq!(v.retry_delay.as_secs(), 5);
    assert!(app.hooks.post[0].drill);
    let db = p.system("db").unwrap();
    assert_eq!(db.target, Path::new("/plans/restore/db"));
    assert_eq!(db.subpath.as_deref(), Some("/srv/db/data"));
    assert_eq!(db.deadline, Some(chrono::Duration::zero()));
    // host alone: the config's paths; paths alone: the config's host.
    assert_eq!(
        p.system("mail").unwrap().source,
        Source::HostPaths { host: "mx1".into(), paths: vec!["/srv/mail".into()] }
    );
    assert_eq!(
        p.system("wiki").unwrap().source,
        Source::HostPaths { host: "h-wiki".into(), paths: vec!["/var/www/wiki".into()] }
    );
    assert_eq!(p.system("wiki").unwrap().deadline, None);

    let o = order(&p);
    let names = |w: &Vec<usize>| w.iter().map(|&i| p.systems[i].name.as_str()).collect::<Vec<_>>();
    assert_eq!(o.tiers.len(), 3);
    assert_eq!(o.tiers[0].priority.get(), 3);
    assert_eq!(o.tiers[0].waves.iter().map(names).collect::<Vec<_>>(), vec![vec!["db", "dc"]]);
    // app and mail depend only on tier 3: one wave.
    assert_eq!(o.tiers[1].waves.iter().map(names).collect::<Vec<_>>(), vec![vec!["app", "mail"]]);
    assert_eq!(o.tiers[2].priority.get(), 0);
    let r = rank(&p);
    let flat: Vec<usize> = o.flat().collect();
    for (pos, &i) in flat.iter().enumerate() {
        assert_eq!(r[i], pos);
    }
}

#[test]
fn config_deadlines_override_and_order_waves_by_deadline() {
    let c = config_with(&[("a", 2), ("b", 2), ("c", 2)], "");
    let mut c2 = c.clone();
    c2.deadlines[2] = Some(chrono::Duration::hours(6));
    let text =
        "name = \"x\"\n[[system]]\nname = \"c\"\ntarget = \"/t/c\"\n[[system]]\nname = \"a\"\ntarget = \"/t/a\"\n\
                depends_on = [\"c\"]\n[[system]]\nname = \"b\"\ntarget = \"/t/b\"\n";
    let (p, _) = plan(text, &c2).unwrap();
    assert!(p.systems.iter().all(|s| s.deadline == Some(chrono::Duration::hours(6))));
    let o = order(&p);
    let waves: Vec<Vec<&str>> =
        o.tiers[0].waves.iter().map(|w| w.iter().map(|&i| p.systems[i].name.as_str()).collect()).collect();
    assert_eq!(waves, vec![vec!["b", "c"], vec!["a"]]);
}

#[test]
fn within_a_wave_earliest_deadline_first() {
    // Same priority can't differ in deadline, so build the plan by hand.
    let c = office();
    let (mut p, _) = plan(GOOD, &c).unwrap();
    let i = p.systems.iter().position(|s| s.name == "dc").unwrap();
    p.systems[i].deadline = None;
    let o = order(&p);
    let first: Vec<&str> = o.tiers[0].waves[0].iter().map(|&i| p.systems[i].name.as_str()).collect();
    assert_eq!(first, vec!["db", "dc"]);
    let j = p.systems.iter().position(|s| s.name == "db").unwrap();
    p.systems[j].deadline = Some(chrono::Duration::hours(1));
    p.systems[i].deadline = Some(chrono::Duration::minutes(5));
    let o = order(&p);
    let first: Vec<&str> = o.tiers[0].waves[0].iter().map(|&i| p.systems[i].name.as_str()).collect();
    assert_eq!(first, vec!["dc", "db"]);
}

#[test]
fn every_rejection_is_reported_with_line_and_field() {
    let c = office();
    let text = r#"name = "bad"
colour = "red"

[[system]]
name = "app"
priority = 3
target = "/restore/app"
depends_on = ["db", "ghost", "app"]

[[system]]
name = "nosuch"
target = "/restore/nosuch"

[[system]]
name = "app"
target = "/restore/app2"

[[system]]
name = "db"
target = "/restore/app/db"
depends_on = ["files"]

[[system]]
name = "dc"
target = "/restore/dc"
depends_on = ["mail"]
colour = 1

[[system]]
name = "mail"
target = "/restore/dc"
depends_on = ["dc"]

[[system.verify]]
command = "true"
timeout = "forever"
retries = -1
"#;
    let ps = problems(text, &c);
    has(&ps, 2, "colour", "unknown field `colour`");
    has(&ps, 6, "system[0].priority", "priorities live in the config (/etc/kura/kura.toml)");
    has(&ps, 8, "system[0].depends_on[1]", "unknown dependency \"ghost\"");
    has(&ps, 8, "system[0].depends_on[2]", "depends on itself");
    has(&ps, 11, "system[1].name", "\"nosuch\" is not declared in the config /etc/kura/kura.toml");
    has(&ps, 15, "system[2].name", "duplicate system \"app\" (first on line 5)");
    has(&ps, 20, "system[3].target", "target \"/restore/app/db\" of \"db\" overlaps target \"/restore/app\"");
    has(&ps, 21, "system[3].depends_on[0]", "unknown dependency \"files\"");
    has(&ps, 26, "system[4].depends_on[0]", "\"dc\" (priority 3) depends on \"mail\" (priority 2)");
    has(&ps, 27, "system[4].colour", "unknown field `colour`");
    has(&ps, 26, "system[4].depends_on", "dependency cycle: dc -> mail -> dc");
    has(&ps, 31, "system[5].target", "is the same directory as target \"/restore/dc\" of \"dc\" (line 25)");
    has(&ps, 36, "system[5].verify[0].timeout", "\"forever\" is not a duration");
    has(&ps, 37, "system[5].verify[0].retries", "retries must be 0 to 100");
    assert_eq!(ps.len(), 14, "{}", Problems(ps.clone()));
    assert!(ps.iter().all(|p| p.line.is_some()));
}

#[test]
fn lower_priority_dependency_is_an_error_higher_is_fine() {
    let c = office();
    let low = "name = \"x\"\n[[system]]\nname = \"db\"\ntarget = \"/t/db\"\ndepends_on = [\"files\"]\n\
               [[system]]\nname = \"files\"\ntarget = \"/t/files\"\n";
    let ps = problems(low, &c);
    has(&ps, 5, "system[0].depends_on[0]", "\"db\" (priority 3) depends on \"files\" (priority 1)");
    assert_eq!(ps.len(), 1);
    let high = "name = \"x\"\n[[system]]\nname = \"files\"\ntarget = \"/t/files\"\ndepends_on = [\"db\"]\n\
                [[system]]\nname = \"db\"\ntarget = \"/t/db\"\n";
    plan(high, &c).unwrap();
}

#[test]
fn cycles_are_named() {
    let c = config_with(&[("a", 2), ("b", 2), ("c", 2), ("d", 2)], "");
    let text = "name = \"x\"\n[[system]]\nname = \"a\"\ntarget = \"/t/a\"\ndepends_on = [\"b\"]\n\
                [[system]]\nname = \"b\"\ntarget = \"/t/b\"\ndepends_on = [\"c\"]\n\
                [[system]]\nname = \"c\"\ntarget = \"/t/c\"\ndepends_on = [\"a\"]\n\
                [[system]]\nname = \"d\"\ntarget = \"/t/d\"\ndepends_on = [\"a\"]\n";
    let ps = problems(text, &c);
    has(&ps, 5, "system[0].depends_on", "dependency cycle: a -> b -> c -> a");
    assert_eq!(ps.len(), 1, "{}", Problems(ps.clone()));
    assert_eq!(load::find_cycles(&[vec![1], vec![0], vec![3], vec![2], vec![]]), vec![vec![0, 1], vec![2, 3]]);
}

#[test]
fn missing_pieces_and_no_config() {
    let c = office();
    let ps = problems("description = 1\non_failure = \"panic\"\n", &c);
    has(&ps, 1, "name", "missing field `name`");
    has(&ps, 1, "description", "expected a string, found an integer");
    has(&ps, 2, "on_failure", "not a failure policy");
    has(&ps, 1, "system", "restores nothing");
    let ps = problems("name = \"x\"\n[[system]]\nname = \"db\"\nsubpath = \"../etc\"\n", &c);
    has(&ps, 2, "system[0].target", "missing field `target`");
    has(&ps, 4, "system[0].subpath", "without '..'");
    let err =
        parse_str(Path::new("p.toml"), "name = \"x\"\n[[system]]\nname = \"db\"\ntarget = \"/t\"\n", None).unwrap_err();
    has(&err.0, 1, "config", "priorities live in the config");
    let err = plan("name = \"x\"\n[[system]]\nname = \"db\"\npriority = 3\ntarget = \"/t\"\n", &c).unwrap_err();
    assert_eq!(err.0.len(), 1);
}

#[test]
fn config_resolution_order() {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plans/p.toml");
    std::fs::create_dir_all(plan_path.parent().unwrap()).unwrap();
    std::fs::write(&plan_path, "name = \"x\"\nconfig = \"../etc/kura.toml\"\n").unwrap();
    assert_eq!(resolve_config(&plan_path, Some(Path::new("/x.toml"))), Path::new("/x.toml"));
    assert_eq!(resolve_config(&plan_path, None), dir.path().join("etc/kura.toml"));
    std::fs::write(&plan_path, "name = \"x\"\n").unwrap();
    // The test runs in the crate directory, which has no kura.toml.
    assert_eq!(resolve_config(&plan_path, None), Path::new("/etc/kura/kura.toml"));
}

/// A config and a plan of `n` systems with random priorities and random
/// dependencies that respect the priority rule (a system depends only on systems
/// of its own priority or higher), as TOML texts.
fn random_plan(seed: u64, n: usize, max_deps: usize) -> (String, String, Vec<Vec<usize>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let prio: Vec<u8> = (0..n).map(|_| rng.gen_range(0..4)).collect();
    // A random topological order: dependencies come from earlier positions.
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rng);
    let mut deps = vec![Vec::new(); n];
    for (pos, &i) in perm.iter().enumerate() {
        let k = rng.gen_range(0..=max_deps);
        for _ in 0..k {
            if pos == 0 {
                break;
            }
            let j = perm[rng.gen_range(0..pos)];
            if prio[j] >= prio[i] && !deps[i].contains(&j) {
                deps[i].push(j);
            }
        }
    }
    let mut config = String::from("[repository]\nlocation = \"/r\"\npassword_file = \"/p\"\n");
    let mut plan = String::from("name = \"random\"\n");
    for i in 0..n {
        config += &format!("[[system]]\nname = \"s{i}\"\npriority = {}\npaths = [\"/srv/s{i}\"]\n", prio[i]);
        let d: Vec<String> = deps[i].iter().map(|j| format!("\"s{j}\"")).collect();
        plan += &format!("[[system]]\nname = \"s{i}\"\ntarget = \"/restore/s{i}\"\ndepends_on = [{}]\n", d.join(", "));
    }
    (config, plan, deps)
}

fn load_random(config: &str, plan: &str) -> Result<(Plan, Vec<Problem>), Problems> {
    let c = config::parse_str(Path::new("/c/kura.toml"), config).unwrap();
    parse_str(Path::new("/c/plan.toml"), plan, Some(&c))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn order_respects_priorities_and_dependencies(seed in any::<u64>(), n in 1usize..=1000, max_deps in 0usize..5) {
        let (config, text, _) = random_plan(seed, n, max_deps);
        let (p, warnings) = load_random(&config, &text).unwrap();
        prop_assert!(warnings.is_empty());
        prop_assert_eq!(p.systems.len(), n);
        let o = order(&p);
        let flat: Vec<usize> = o.flat().collect();
        prop_assert_eq!(flat.len(), n);
        let mut pos = vec![usize::MAX; n];
        for (k, &i) in flat.iter().enumerate() {
            prop_assert_eq!(pos[i], usize::MAX, "system placed twice");
            pos[i] = k;
        }
        let deps = dependency_indexes(&p);
        for i in 0..n {
            for &d in &deps[i] {
                prop_assert!(pos[d] < pos[i], "{} placed before its dependency {}", p.systems[i].name, p.systems[d].name);
            }
        }
        for w in flat.windows(2) {
            prop_assert!(p.systems[w[0]].priority >= p.systems[w[1]].priority, "lower priority placed first");
        }
        // Waves: every same-tier dependency sits in an earlier wave.
        for t in &o.tiers {
            let mut wave_of = std::collections::HashMap::new();
            for (k, w) in t.waves.iter().enumerate() {
                for &i in w { wave_of.insert(i, k); }
            }
            for (&i, &k) in &wave_of {
                for d in &deps[i] {
                    if let Some(&kd) = wave_of.get(d) { prop_assert!(kd < k); }
                }
            }
        }
        let r = rank(&p);
        for (k, &i) in flat.iter().enumerate() {
            prop_assert_eq!(r[i], k);
        }
    }

    #[test]
    fn cycles_are_rejected_and_named(seed in any::<u64>(), n in 2usize..=1000, len in 2usize..6) {
        let (config, text, _) = random_plan(seed, n, 2);
        // Close a cycle through `len` systems of one priority by appending their
        // dependencies as a second plan built from the first.
        let c = config::parse_str(Path::new("/c/kura.toml"), &config).unwrap();
        let (p, _) = parse_str(Path::new("/c/plan.toml"), &text, Some(&c)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
        let tier = p.systems[rng.gen_range(0..n)].priority;
        let mut members: Vec<usize> = (0..n).filter(|&i| p.systems[i].priority == tier).collect();
        prop_assume!(members.len() >= 2);
        members.shuffle(&mut rng);
        members.truncate(len);
        let mut deps: Vec<Vec<String>> = p.systems.iter().map(|s| s.depends_on.clone()).collect();
        for k in 0..members.len() {
            let (a, b) = (members[k], members[(k + 1) % members.len()]);
            let bn = p.systems[b].name.clone();
            if !deps[a].contains(&bn) { deps[a].push(bn); }
        }
        let mut cyclic = String::from("name = \"cyclic\"\n");
        for (i, s) in p.systems.iter().enumerate() {
            let d: Vec<String> = deps[i].iter().map(|x| format!("\"{x}\"")).collect();
            cyclic += &format!("[[system]]\nname = \"{}\"\ntarget = \"/restore/{0}\"\ndepends_on = [{}]\n", s.name, d.join(", "));
        }
        let err = parse_str(Path::new("/c/plan.toml"), &cyclic, Some(&c)).unwrap_err();
        let cycles: Vec<&Problem> = err.0.iter().filter(|p| p.message.starts_with("dependency cycle: ")).collect();
        prop_assert!(!cycles.is_empty(), "no cycle reported: {}", err);
        let index: std::collections::HashMap<&str, usize> =
            p.systems.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        for pr in cycles {
            let names: Vec<&str> = pr.message["dependency cycle: ".len()..].split(" -> ").collect();
            prop_assert!(names.len() >= 3 && names.first() == names.last());
            for w in names.windows(2) {
                let a = index[w[0]];
                prop_assert!(deps[a].iter().any(|x| x == w[1]), "{} does not depend on {}", w[0], w[1]);
            }
        }
    }
}
