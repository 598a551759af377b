//! Many hosts into one S3 repository (issue #14): four `kura backup` processes with
//! different `--host` values write into one Garage bucket while `kura prune` runs
//! beside them, again and again; then every snapshot restores byte-identical and
//! `check --read-data` is clean.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use kura::backend::s3::S3Backend;
use kura::backend::{Backend, Kind};
use kura::crypto::KdfParams;
use kura::repo::{keys, Repository};

use crate::servers::Garage;
use crate::util::*;

const HOSTS: usize = 4;

fn kura_at(location: &str, args: &[&str]) -> Command {
    let mut c = bare_kura();
    c.arg("--repo").arg(location).args(args).env("KURA_PASSWORD", PASSWORD);
    c
}

fn spawn(mut c: Command) -> Child {
    c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn wait_out(c: Child) -> Out {
    let o = c.wait_with_output().unwrap();
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(!out.stderr.contains("panicked"), "kura panicked:\n{out}");
    out
}

/// Replaces the repository's key with one whose KDF is cheap: every command of this
/// test opens the repository, and the default argon2 cost would dominate its time.
pub fn cheap_key(location: &str) {
    let backend: Arc<dyn Backend> = Arc::new(S3Backend::open(location).unwrap());
    let repo = Repository::open(backend.clone(), PASSWORD.as_bytes()).unwrap();
    let mut kdf = KdfParams::new_random();
    (kdf.m_cost, kdf.t_cost) = (1024, 1);
    keys::add_key_with(backend.as_ref(), repo.key(), PASSWORD.as_bytes(), kdf).unwrap();
    backend.delete(Kind::Key, repo.key_name()).unwrap();
}

/// Host `h`'s tree in round `k`: a shared file (the same on every host: dedup across
/// hosts), its own files, one that changes each round and one that goes back to its
/// content of two rounds before, when that round's snapshots are forgotten and the
/// prune beside the backups is marking or repacking the packs that hold it.
pub fn write_round(src: &Path, h: usize, k: u64) {
    std::fs::create_dir_all(src.join("notes")).unwrap();
    write_random(&src.join("shared.bin"), 700 << 10, 1);
    write_random(&src.join("own.bin"), 400 << 10, 100 + h as u64);
    write_random(&src.join("changing.bin"), 3 << 20, 1000 * k + h as u64);
    let revert = k % 2; // rounds 1 and 3 alike, 2 and 4 alike
    write_random(&src.join("revert.bin"), 600 << 10, 5000 + 10 * h as u64 + revert);
    write(&src.join(format!("notes/round{k}.txt")), format!("host {h} round {k}\n").repeat(200));
    let _ = std::fs::remove_file(src.join(format!("notes/round{}.txt", k.wrapping_sub(1))));
}

pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

#[test]
fn four_hosts_back_up_into_one_bucket_while_prune_runs() {
    let g = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let loc = g.location("fleet/shared", "");
    run(&mut kura_at(&loc, &["init"])).ok();
    cheap_key(&loc);
    let srcs: Vec<PathBuf> = (0..HOSTS).map(|h| dir.path().join(format!("host{h}/srv"))).collect();
    let copies = dir.path().join("copies");
    std::fs::create_dir(&copies).unwrap();
    // (snapshot id, copy of the tree it holds, host)
    let mut expected: Vec<(String, PathBuf, usize)> = Vec::new();
    let backup_round = |k: u64, concurrent_prune: bool, expected: &mut Vec<(String, PathBuf, usize)>| -> u64 {
        let mut children = Vec::new();
        for (h, src) in srcs.iter().enumerate() {
            write_round(src, h, k);
            let copy = copies.join(format!("r{k}h{h}"));
            copy_tree(src, &copy);
            let host = format!("host{h}");
            children.push((h, copy, spawn(kura_at(&loc, &["--json", "backup", s(src), "--host", &host]))));
        }
        // Prunes one after another for as long as any backup runs.
        let (mut prunes, mut marked, mut overlapped) = (0, 0, false);
        while concurrent_prune && children.iter_mut().any(|(_, _, c)| c.try_wait().unwrap().is_none()) {
            let p = run(&mut kura_at(&loc, &["--json", "prune"]));
            p.ok();
            let p = p.json();
            marked += num(&p, "packs_marked") + num(&p, "packs_repacked");
            // It saw a backup's lock, or a snapshot written while it ran.
            overlapped |= p["waiting_for"].as_array().is_some_and(|w| !w.is_empty());
            prunes += 1;
            eprintln!("round {k}: prune {prunes}: {p}");
        }
        for (h, copy, c) in children {
            let b = wait_out(c);
            b.ok();
            let b = b.json();
            assert_eq!(b["partial"], false, "{b:#}");
            expected.push((text(&b, "snapshot").to_string(), copy, h));
        }
        if concurrent_prune {
            assert!(prunes > 0 && overlapped, "no prune overlapped the backups visibly");
        }
        marked
    };
    backup_round(1, false, &mut expected);
    backup_round(2, false, &mut expected);
    // Keep each host's newest: the round-1 snapshots go, and their data with them.
    run(&mut kura_at(&loc, &["forget", "--keep-last", "1"])).ok();
    expected.retain(|(id, _, _)| expected_alive(&loc, id));
    assert_eq!(expected.len(), HOSTS);
    let started = Instant::now();
    let marked = backup_round(3, true, &mut expected);
    eprintln!("round 3 (four backups, prunes beside them) took {:?}", started.elapsed());
    assert!(marked > 0, "the prunes beside the backups had nothing to do");
    // Again, with the round-2 snapshots forgotten and round 3's marks still pending.
    run(&mut kura_at(&loc, &["forget", "--keep-last", "1"])).ok();
    expected.retain(|(id, _, _)| expected_alive(&loc, id));
    assert!(backup_round(4, true, &mut expected) > 0);
    assert_eq!(expected.len(), 2 * HOSTS);

    let verify = |what: &str| {
        for (i, (id, copy, h)) in expected.iter().enumerate() {
            let target = dir.path().join(format!("{what}{i}"));
            let out = run(&mut kura_at(&loc, &["--json", "restore", id, "--target", s(&target), "--verify"]));
            out.ok();
            assert_eq!(out.json()["verify_failures"], serde_json::json!([]));
            assert_same_tree(copy, &restored(&target, &srcs[*h]), Compare { times: true, root_meta: false });
        }
        let c = run(&mut kura_at(&loc, &["--json", "check", "--read-data"]));
        c.ok();
        let c = c.json();
        assert_eq!(
            (c["errors"].clone(), c["warnings"].clone()),
            (serde_json::json!([]), serde_json::json!([])),
            "{c:#}"
        );
    };
    verify("after");
    // Each host's `latest` is its round-4 tree.
    for (h, src) in srcs.iter().enumerate() {
        let target = dir.path().join(format!("latest{h}"));
        let host = format!("host{h}");
        run(&mut kura_at(&loc, &["restore", "latest", "--host", &host, "--target", s(&target)])).ok();
        assert_same_tree(
            &copies.join(format!("r4h{h}")),
            &restored(&target, src),
            Compare { times: true, root_meta: false },
        );
    }
    // Once the backups are over, prune frees what waited for them; nothing any
    // snapshot needs goes.
    let p = run(&mut kura_at(&loc, &["--json", "prune"]));
    p.ok();
    eprintln!("final prune: {}", p.json());
    verify("final");
    assert_eq!(S3Backend::open(&loc).unwrap().list(Kind::Lock).unwrap(), vec![], "a lock was left behind");
}

/// Whether snapshot `id` still exists (after a forget).
fn expected_alive(loc: &str, id: &str) -> bool {
    S3Backend::open(loc).unwrap().list(Kind::Snapshot).unwrap().iter().any(|(n, _)| n == id)
}
