//! Every daemon job kind against a real S3 server (Garage on loopback), through a
//! real `kura daemon` process: the scheduled copy to the remote site, backups
//! straight into an `s3:` repository, prune, check, and a drill from the remote.
//! Wave 1's scheduled copy failed on every run while library tests passed; these
//! tests take the route users take, with backups running beside the other jobs.

use serde_json::Value;

use crate::daemon::{eventually, Setup};
use crate::servers::Garage;
use crate::util::*;

/// `kura --repo LOCATION ARGS...` with the test passphrase.
fn kura_at(location: &str, args: &[&str]) -> Out {
    run(bare_kura().arg("--repo").arg(location).args(args).env("KURA_PASSWORD", PASSWORD))
}

fn check_clean_at(location: &str) {
    let v = kura_at(location, &["--json", "check", "--read-data"]).ok().json();
    assert_eq!(v["errors"], serde_json::json!([]), "{v:#}");
}

fn restore_identical(location: &str, snapshot: &str, src: &std::path::Path, target: &std::path::Path) {
    kura_at(location, &["restore", snapshot, "--target", s(target), "--verify"]).ok();
    assert_same_tree(src, &restored(target, src), Compare { times: true, root_meta: false });
}

/// `kura run TARGET` through the daemon, waiting out a scheduled run of the same job.
fn run_now(setup: &Setup, target: &str) -> Value {
    eventually(60, &format!("a manual run of {target}"), || {
        let out = setup.cli(&["--json", "run", target]);
        if out.stderr.contains("is already running") {
            return None;
        }
        Some(out.ok().json())
    })
}

fn ok_runs(setup: &Setup, job: &str) -> Vec<Value> {
    setup.jobs(&[]).into_iter().filter(|r| r["job"] == job && r["outcome"] == "ok").collect()
}

#[test]
fn scheduled_replicate_copies_to_garage_and_a_drill_restores_from_it() {
    let g = Garage::start();
    let setup = Setup::new();
    let web = setup.src("web");
    write_random(&web.join("blob.bin"), 3 << 20, 11);
    let remote = g.location("kura-daemon/site", "");
    let plan = setup.repo.base().join("plan.toml");
    write(
        &plan,
        format!("name = \"p\"\n\n[[system]]\nname = \"web\"\ntarget = \"{}\"\n", s(&setup.repo.base().join("t/web"))),
    );
    let tables = format!(
        "[remote]\nlocation = \"{remote}\"\npassword_file = \"{pass}\"\n\n\
         [[system]]\nname = \"web\"\npriority = 2\npaths = [\"{web}\"]\nschedule = \"*/3 * * * * *\"\n\n\
         [jobs.replicate]\nschedule = \"*/2 * * * * *\"\n\n\
         [jobs.drill]\nschedule = \"0 0 1 1 *\"\nplan = \"{plan}\"\n",
        pass = s(&setup.repo.base().join("pass")),
        web = s(&web),
        plan = s(&plan),
    );
    setup.configure("catch_up = \"skip\"", &tables);
    let d = setup.daemon();

    // A backup by hand through the daemon; the schedule copies it within seconds.
    let b = run_now(&setup, "web");
    let snap = text(&b, "snapshot").to_string();
    eventually(60, "a replicate run that copied the snapshot", || {
        let snaps = kura_at(&remote, &["--json", "snapshots"]);
        (snaps.code == 0 && snaps.json().as_array().unwrap().iter().any(|s| s["id"] == snap.as_str())).then_some(())
    });
    let runs = eventually(30, "a successful replicate run", || {
        let r = ok_runs(&setup, "replicate");
        (!r.is_empty()).then_some(r)
    });
    assert!(runs.iter().all(|r| r["trigger"] == "schedule"), "{runs:?}");
    let failed: Vec<Value> =
        setup.jobs(&[]).into_iter().filter(|r| r["job"] == "replicate" && r["outcome"] == "failed").collect();
    assert!(failed.is_empty(), "no replicate run fails: {failed:?}\n{}", d.log());

    // The remote site checks clean and restores identical.
    check_clean_at(&remote);
    restore_identical(&remote, &snap, &web, &setup.repo.base().join("from-remote"));

    // A new snapshot is copied by a later slot too.
    write(&web.join("second.txt"), "second\n");
    let snap2 = text(&run_now(&setup, "web"), "snapshot").to_string();
    eventually(60, "the second snapshot at the remote site", || {
        let snaps = kura_at(&remote, &["--json", "snapshots"]).json();
        snaps.as_array().unwrap().iter().any(|s| s["id"] == snap2.as_str()).then_some(())
    });

    // Backups and copies ran side by side all along: the remote is still whole.
    eventually(60, "three successful replicate runs", || (ok_runs(&setup, "replicate").len() >= 3).then_some(()));
    check_clean_at(&remote);

    // The drill restores from the remote site (it proves the off-site copy).
    let dr = setup.cli(&["--json", "run", "drill"]);
    assert_eq!(dr.json()["outcome"], "ok", "{dr}\n{}", d.log());
    let list = run(bare_kura().args(["--json", "--state", s(&setup.state), "drill", "list"])).ok().json();
    assert_eq!(list[0]["systems"][0]["state"], "done", "{list}");
}

#[test]
fn backup_prune_and_check_jobs_run_straight_on_an_s3_repository() {
    let g = Garage::start();
    let setup = Setup::new();
    let web = setup.src("web");
    write_random(&web.join("blob.bin"), 2 << 20, 12);
    let repo = g.location("kura-daemon/repo", "");
    kura_at(&repo, &["init"]).ok();
    let tables = format!(
        "[[system]]\nname = \"web\"\npriority = 2\npaths = [\"{web}\"]\nschedule = \"*/2 * * * * *\"\n\n\
         [jobs.prune]\nschedule = \"0 0 1 1 *\"\nkeep_last = 1\n\n\
         [jobs.check]\nschedule = \"0 0 1 1 *\"\nread_data_subset = 2\n",
        web = s(&web),
    );
    setup.configure_at(&repo, "catch_up = \"skip\"", &tables);
    let d = setup.daemon();

    // Scheduled backups land in the bucket.
    eventually(60, "two scheduled backups into S3", || (ok_runs(&setup, "backup").len() >= 2).then_some(()));
    let failed: Vec<Value> = setup.jobs(&[]).into_iter().filter(|r| r["outcome"] == "failed").collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", d.log());
    assert!(kura_at(&repo, &["--json", "snapshots"]).ok().json().as_array().unwrap().len() >= 2);

    // Prune forgets down to the policy and frees space; check reads its part.
    let p = setup.cli(&["--json", "run", "prune"]);
    assert_eq!(p.json()["outcome"], "ok", "{p}\n{}", d.log());
    let c = setup.cli(&["--json", "run", "check"]);
    assert_eq!(c.json()["outcome"], "ok", "{c}\n{}", d.log());
    let c2 = setup.cli(&["--json", "run", "check"]);
    assert_eq!(c2.json()["outcome"], "ok", "{c2}\n{}", d.log());

    // Stop the schedule, then the repository is clean and restores identical.
    drop(d);
    check_clean_at(&repo);
    restore_identical(&repo, "latest", &web, &setup.repo.base().join("restored"));
}

/// A scheduled drill takes the same one-run-at-a-time lock as `kura drill run`: while
/// a CLI drill runs, the daemon's drill is refused (and never resumes the same run),
/// and once the CLI drill is done the daemon's drill runs.
#[test]
fn a_daemon_drill_and_a_cli_drill_never_run_at_once() {
    let setup = Setup::new();
    let web = setup.src("web");
    setup.repo.backup(&[&web], &["--tag", "system:web"]);
    let base = setup.repo.base().to_path_buf();
    let marker = base.join("hook-started");
    let plan = base.join("plan.toml");
    write(
        &plan,
        format!(
            "name = \"p\"\nconfig = \"{cfg}\"\n\n[[system]]\nname = \"web\"\ntarget = \"{t}\"\n\n\
             [[system.verify]]\ncommand = \"touch '{m}'; sleep 4\"\n",
            cfg = s(&setup.config),
            t = s(&base.join("t/web")),
            m = s(&marker),
        ),
    );
    let tables = format!(
        "[[system]]\nname = \"web\"\npriority = 2\npaths = [\"{}\"]\n\n[jobs.drill]\nschedule = \"0 0 1 1 *\"\nplan = \"{}\"\n",
        s(&web),
        s(&plan)
    );
    setup.configure("catch_up = \"skip\"", &tables);
    let d = setup.daemon();

    let mut cli = bare_kura()
        .args(["--json", "--state", s(&setup.state), "drill", "run", "--plan", s(&plan)])
        .env("KURA_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually(60, "the CLI drill's verify hook", || {
        if let Some(st) = cli.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(cli.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the CLI drill ended ({st}) before its hook ran:\n{err}");
        }
        marker.exists().then_some(())
    });
    let refused = setup.cli(&["--json", "run", "drill"]);
    let v = refused.json();
    assert_eq!(v["outcome"], "failed", "{refused}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("another kura recover or drill is running"),
        "{refused}\n{}",
        d.log()
    );
    let out = cli.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The lock is free again: the daemon's drill runs, as a new run of its own.
    let ok = setup.cli(&["--json", "run", "drill"]);
    assert_eq!(ok.json()["outcome"], "ok", "{ok}\n{}", d.log());
    let list = run(bare_kura().args(["--json", "--state", s(&setup.state), "drill", "list"])).ok().json();
    let runs = list.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{list}");
    assert!(runs.iter().all(|r| r["systems"][0]["state"] == "done"), "{list}");
}
