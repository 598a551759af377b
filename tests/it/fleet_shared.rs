//! Many hosts into one S3 repository through the fleet (issue #14): with `[fleet]
//! shared_repository = true` and the repository in a Garage bucket, four real
//! agents back their systems up at once (`kura run SYSTEM` on the coordinator)
//! while `kura prune` runs beside them; then every snapshot restores byte-identical,
//! each host's `latest --host H` is its newest tree, and `check --read-data` is clean.

use std::collections::HashMap;
use std::path::PathBuf;

use kura::backend::s3::S3Backend;
use kura::backend::{Backend, Kind};
use serde_json::Value;

use crate::fleet_util::*;
use crate::servers::Garage;
use crate::shared_bucket::{cheap_key, copy_tree, write_round};
use crate::util::*;

const HOSTS: usize = 4;

fn at(loc: &str, args: &[&str]) -> Out {
    run(bare_kura().arg("--repo").arg(loc).args(args).env("KURA_PASSWORD", PASSWORD))
}

/// Every snapshot in the bucket: id → host.
fn snapshots(loc: &str) -> HashMap<String, String> {
    let v = at(loc, &["--json", "snapshots"]).ok().json();
    let list = v.as_array().unwrap_or_else(|| panic!("not a list: {v}"));
    list.iter().map(|s| (text(s, "id").to_string(), text(s, "host").to_string())).collect()
}

#[test]
fn four_agents_back_up_into_one_bucket_while_prune_runs() {
    let g = Garage::start();
    let loc = g.location("fleet/agents", "");
    at(&loc, &["init"]).ok();
    cheap_key(&loc);
    let base = tempfile::tempdir().unwrap();
    let hosts: Vec<String> = (0..HOSTS).map(|h| format!("h{h}")).collect();
    let srcs: Vec<PathBuf> = hosts.iter().map(|h| base.path().join(h).join("srv")).collect();
    let mut systems = String::new();
    for (h, src) in srcs.iter().enumerate() {
        write_round(src, h, 1);
        systems += &system(&format!("sys{h}"), 2, &hosts[h], src);
    }
    let fleet = Fleet::at(&loc, "shared_repository = true\n", &systems);
    let _d = fleet.daemon();
    let agents: Vec<AgentProc> = hosts.iter().map(|h| fleet.agent(h)).collect();
    let copies = base.path().join("copies");
    std::fs::create_dir(&copies).unwrap();
    // (snapshot id, copy of the tree it holds, host index)
    let mut expected: Vec<(String, PathBuf, usize)> = Vec::new();

    let round = |k: u64, prune: bool, expected: &mut Vec<(String, PathBuf, usize)>| -> u64 {
        let before = snapshots(&loc);
        for (h, src) in srcs.iter().enumerate() {
            write_round(src, h, k);
            copy_tree(src, &copies.join(format!("r{k}h{h}")));
        }
        let (mut prunes, mut marked) = (0, 0);
        std::thread::scope(|sc| {
            let runs: Vec<_> = (0..HOSTS)
                .map(|h| {
                    let fleet = &fleet;
                    sc.spawn(move || fleet.setup.cli(&["--json", "run", &format!("sys{h}")]))
                })
                .collect();
            while prune && runs.iter().any(|r| !r.is_finished()) {
                let p = at(&loc, &["--json", "prune"]);
                p.ok();
                let p = p.json();
                marked += num(&p, "packs_marked") + num(&p, "packs_repacked");
                prunes += 1;
                eprintln!("round {k}: prune {prunes}: {p}");
            }
            for (h, r) in runs.into_iter().enumerate() {
                let out = r.join().unwrap();
                assert_eq!(out.code, 0, "sys{h}: {out}\n{}", agents[h].log());
            }
        });
        assert!(!prune || prunes > 0, "no prune ran beside the backups");
        // One new snapshot per host, named after the agent's host.
        let after = snapshots(&loc);
        let mut new: Vec<(String, usize)> = after
            .iter()
            .filter(|(id, _)| !before.contains_key(*id))
            .map(|(id, host)| {
                let h = hosts.iter().position(|x| x == host).unwrap_or_else(|| panic!("snapshot {id} of host {host}"));
                (id.clone(), h)
            })
            .collect();
        new.sort_by_key(|(_, h)| *h);
        assert_eq!(new.iter().map(|(_, h)| *h).collect::<Vec<_>>(), (0..HOSTS).collect::<Vec<_>>(), "round {k}");
        for (id, h) in new {
            expected.push((id, copies.join(format!("r{k}h{h}")), h));
        }
        marked
    };
    round(1, false, &mut expected);
    assert_eq!(expected.len(), HOSTS);
    // Each host keeps its newest: round 1's snapshots go when round 2 lands, and the
    // prunes beside round 3 free (or wait for) their data while the agents write.
    round(2, false, &mut expected);
    at(&loc, &["forget", "--keep-last", "1"]).ok();
    let alive = snapshots(&loc);
    expected.retain(|(id, _, _)| alive.contains_key(id));
    assert_eq!(expected.len(), HOSTS);
    let marked = round(3, true, &mut expected);
    assert!(marked > 0, "the prunes beside the agents' backups had nothing to do");
    assert_eq!(expected.len(), 2 * HOSTS);

    for (i, (id, copy, h)) in expected.iter().enumerate() {
        let target = base.path().join(format!("restore{i}"));
        let out = at(&loc, &["--json", "restore", id, "--target", s(&target), "--verify"]);
        out.ok();
        assert_eq!(out.json()["verify_failures"], serde_json::json!([]));
        assert_same_tree(copy, &restored(&target, &srcs[*h]), Compare { times: true, root_meta: false });
    }
    for (h, host) in hosts.iter().enumerate() {
        let target = base.path().join(format!("latest-{host}"));
        at(&loc, &["restore", "latest", "--host", host, "--target", s(&target)]).ok();
        let newest = copies.join(format!("r3h{h}"));
        assert_same_tree(&newest, &restored(&target, &srcs[h]), Compare { times: true, root_meta: false });
    }
    let c = at(&loc, &["--json", "check", "--read-data"]);
    c.ok();
    let c: Value = c.json();
    assert_eq!((c["errors"].clone(), c["warnings"].clone()), (serde_json::json!([]), serde_json::json!([])), "{c:#}");
    let locks = S3Backend::open(&loc).unwrap().list(Kind::Lock).unwrap();
    assert_eq!(locks, vec![], "a lock was left behind");
    // The coordinator's history names every backup as done on its host.
    let jobs = fleet.setup.jobs(&[]);
    assert_eq!(jobs.iter().filter(|j| j["outcome"] == "ok").count(), 3 * HOSTS, "{jobs:?}");
}
