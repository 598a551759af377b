//! `kura prune` through the binary: its JSON report, backups and prunes started at
//! the same moment as separate processes, and `kill -9` at different points of a
//! prune. Every run ends with `check --read-data` and byte-identical restores.
//!
//! The repositories get a cheap key (written through the library) so that each of
//! the many short runs does not spend a quarter second in argon2.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kura::backend::local::LocalBackend;
use kura::backend::{Backend, Kind};
use kura::crypto::KdfParams;
use kura::repo::keys;
use kura::repo::Repository;

use crate::util::*;

/// Replaces the repository's key by one with cheap KDF parameters.
fn cheap_key(r: &TestRepo) {
    let backend = Arc::new(LocalBackend::new(&r.path));
    let repo = Repository::open(backend.clone(), PASSWORD.as_bytes()).unwrap();
    let mut kdf = KdfParams::new_random();
    (kdf.m_cost, kdf.t_cost) = (1024, 1);
    keys::add_key_with(backend.as_ref(), repo.key(), PASSWORD.as_bytes(), kdf).unwrap();
    backend.delete(Kind::Key, repo.key_name()).unwrap();
}

fn fast_repo() -> TestRepo {
    let r = TestRepo::new();
    cheap_key(&r);
    r
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir).map(|rd| rd.map(|e| e.unwrap().file_name().into_string().unwrap()).collect()).unwrap_or_default()
}

fn pack_names(r: &TestRepo) -> BTreeSet<PathBuf> {
    r.packs().into_iter().map(|p| p.0).collect()
}

/// `cp -a`: contents, modes, times and hard links.
fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

fn forget(r: &TestRepo, id: &str) {
    fs::remove_file(r.path.join("snapshots").join(id)).unwrap();
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

#[test]
fn dry_run_json_reports_the_plan_and_changes_nothing() {
    let r = fast_repo();
    let a = r.base().join("a");
    let b = r.base().join("b");
    sample_tree(&a, 1 << 20);
    sample_tree(&b, 256 << 10);
    let id_a = text(&r.backup(&[&a], &[]), "snapshot").to_string();
    r.backup(&[&b], &[]);
    forget(&r, &id_a);

    let before = listing(&r.path);
    let rep = r.kura(["--json", "prune", "--dry-run"]).ok().json();
    assert_eq!(listing(&r.path), before, "prune --dry-run changed the repository");
    let fields = [
        "snapshots",
        "packs",
        "blobs",
        "blobs_used",
        "packs_marked",
        "bytes_marked",
        "packs_repacked",
        "bytes_repacked",
        "packs_deleted",
        "bytes_freed",
        "packs_reinstated",
        "packs_waiting",
        "bytes_waiting",
        "packs_retained",
        "temp_files_removed",
    ];
    for f in fields {
        num(&rep, f);
    }
    let keys: BTreeSet<&str> = rep.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let expected: BTreeSet<&str> =
        fields.iter().copied().chain(["dry_run", "waiting_for", "marked_deleted_now"]).collect();
    assert_eq!(keys, expected, "{rep:#}");
    assert_eq!(rep["dry_run"], true);
    assert_eq!(rep["waiting_for"], serde_json::json!([]));
    assert_eq!(num(&rep, "snapshots"), 1);
    // a's own data and trees are unused: its packs are marked (the data pack also
    // holds shared data, so it is repacked).
    assert!(num(&rep, "packs_marked") >= 2 && num(&rep, "bytes_marked") > 1 << 20, "{rep:#}");
    assert!(num(&rep, "blobs_used") < num(&rep, "blobs"), "{rep:#}");
    assert_eq!((num(&rep, "packs_deleted"), num(&rep, "bytes_freed"), num(&rep, "packs_waiting")), (0, 0, 0));

    // The real run does what the dry run said. Nothing else holds a lock, so the
    // packs it marks are deleted in the same run, and the next prune has nothing to do.
    let real = r.kura(["--json", "prune"]).ok().json();
    assert_eq!(real["dry_run"], false);
    for f in ["packs_marked", "bytes_marked", "packs_repacked", "bytes_repacked"] {
        assert_eq!(real[f], rep[f], "{f}: {real:#} vs {rep:#}");
    }
    assert_eq!(real["marked_deleted_now"], true, "{real:#}");
    assert_eq!(real["packs_deleted"], real["packs_marked"], "{real:#}");
    assert_eq!(real["bytes_freed"], real["bytes_marked"], "{real:#}");
    assert_eq!((num(&real, "packs_waiting"), num(&real, "bytes_waiting")), (0, 0), "{real:#}");
    assert!(names(&r.path.join("pending")).is_empty(), "no pending record is left behind");
    let before = listing(&r.path);
    let next = r.kura(["--json", "prune", "--dry-run"]).ok().json();
    assert_eq!(listing(&r.path), before);
    assert_eq!((num(&next, "packs_marked"), num(&next, "packs_deleted")), (0, 0), "{next:#}");
    // The text report says the same.
    r.kura(["prune", "--dry-run"]).ok().stdout_has("would be deleted");
    r.kura(["prune"]).ok().stdout_has("were deleted");
    r.kura(["check", "--read-data"]).ok();
}

/// Bytes of every object in the repository.
fn repo_bytes(r: &TestRepo) -> u64 {
    fn walk(d: &Path) -> u64 {
        fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    walk(&e.path())
                } else {
                    m.len()
                }
            })
            .sum()
    }
    walk(&r.path)
}

#[test]
fn forget_prune_on_an_idle_repository_frees_the_space_in_the_same_run() {
    let r = fast_repo();
    let src = r.base().join("src");
    sample_tree(&src, 256 << 10);
    write_random(&src.join("old.bin"), 3 << 20, 4242);
    r.backup(&[&src], &[]);
    // The second backup no longer has old.bin: its data is unused once the first
    // snapshot is forgotten.
    fs::remove_file(src.join("old.bin")).unwrap();
    write_random(&src.join("new.bin"), 1 << 20, 4343);
    r.backup(&[&src], &[]);
    let before = repo_bytes(&r);
    let out = r.kura(["--json", "forget", "--keep-last", "1", "--prune"]).ok().json();
    let p = &out["prune"];
    assert_eq!(p["marked_deleted_now"], true, "{p:#}");
    assert!(num(p, "bytes_freed") > 2 << 20, "{p:#}");
    let after = repo_bytes(&r);
    assert!(after + (2 << 20) < before, "the repository went from {before} to {after} bytes");
    // The text report says when the space went.
    r.kura(["forget", "--keep-last", "1", "--prune"]).ok().stdout_has("packs were deleted");
    r.kura(["check", "--read-data"]).ok();
    let dest = r.base().join("restored");
    r.restore("latest", &dest, &[]).ok();
    assert_eq!(listing(&restored(&dest, &src)), listing(&src));
}

#[test]
fn a_running_operation_keeps_marked_packs_and_the_report_says_how_much_waits() {
    let r = fast_repo();
    let src = r.base().join("src");
    sample_tree(&src, 2 << 20);
    let first = text(&r.backup(&[&src], &[]), "snapshot").to_string();
    write_random(&src.join("random.bin"), 2 << 20, 77);
    r.backup(&[&src], &[]);
    forget(&r, &first);
    // A restore of another process holds a shared lock while prune runs.
    let guard = r.hold_lock("restore");
    let packs_before = pack_names(&r);
    let rep = r.kura(["--json", "prune"]).ok().json();
    assert_eq!(rep["marked_deleted_now"], false, "{rep:#}");
    assert!(num(&rep, "packs_marked") > 0, "{rep:#}");
    assert_eq!(rep["packs_waiting"], rep["packs_marked"], "{rep:#}");
    assert_eq!(rep["bytes_waiting"], rep["bytes_marked"], "{rep:#}");
    let waits = rep["waiting_for"].to_string();
    assert!(waits.contains("restore") && waits.contains(&std::process::id().to_string()), "{rep:#}");
    assert!(pack_names(&r).is_superset(&packs_before), "a pack went while a restore may read it");
    r.kura(["prune", "--dry-run"])
        .ok()
        .stdout_has("wait: the first prune after these operations end deletes them")
        .stdout_has("restore");
    drop(guard);
    // Once it ends, the next prune deletes them.
    let next = r.kura(["--json", "prune"]).ok().json();
    assert_eq!(next["packs_deleted"], rep["packs_marked"], "{next:#}");
    assert_eq!(next["bytes_freed"], rep["bytes_marked"], "{next:#}");
    r.kura(["check", "--read-data"]).ok();
}

/// Changes `src` for round `k`: two files get new content, one reverts to the
/// content it had two rounds ago, one is added, one removed.
fn mutate(src: &Path, k: u64) {
    write_random(&src.join(format!("big{}.bin", k % 4)), 700 << 10, 100 + k);
    write_random(&src.join(format!("big{}.bin", (k + 1) % 4)), 500 << 10, 200 + k);
    // Alternates: from round 2 on, its content is that of the snapshot of round k-2,
    // which is forgotten in round k, so the backup may reuse blobs that the prune
    // running beside it is marking.
    write_random(&src.join("revert.bin"), 300 << 10, 300 + k % 2);
    write(&src.join(format!("new/round{k}.txt")), format!("round {k}\n").repeat(1000));
    let _ = fs::remove_file(src.join(format!("new/round{}.txt", k.wrapping_sub(2))));
}

#[test]
fn backup_and_prune_at_the_same_time() {
    let r = fast_repo();
    let src = r.base().join("src");
    sample_tree(&src, 256 << 10);
    for i in 0..4 {
        write_random(&src.join(format!("big{i}.bin")), 600 << 10, i);
    }
    mutate(&src, 0);
    let copies = r.base().join("copies");
    fs::create_dir(&copies).unwrap();
    copy_tree(&src, &copies.join("0"));
    let mut snaps: Vec<(String, PathBuf)> = vec![(text(&r.backup(&[&src], &[]), "snapshot").into(), copies.join("0"))];

    let (mut marked, mut overlapped) = (0, 0);
    for k in 1..=4u64 {
        mutate(&src, k);
        copy_tree(&src, &copies.join(k.to_string()));
        if k >= 2 {
            let (old, _) = snaps.remove(0);
            forget(&r, &old);
        }
        let started = Instant::now();
        let backup =
            r.cmd(["--json", "backup", s(&src)]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let prune = r.cmd(["--json", "prune"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (b, p) = (wait_out(backup), wait_out(prune));
        let elapsed = started.elapsed();
        b.ok();
        p.ok();
        let (b, p) = (b.json(), p.json());
        assert_eq!(b["partial"], false);
        marked += num(&p, "packs_marked");
        // Whether the two overlapped: the prune saw the backup's lock, or the
        // backup's snapshot appeared after the prune counted the snapshots.
        if num(&p, "packs_waiting") > 0 || num(&p, "snapshots") < snaps.len() as u64 + 1 {
            overlapped += 1;
        }
        eprintln!("round {k}: backup and prune in {elapsed:?}; prune: {p}");
        snaps.push((text(&b, "snapshot").into(), copies.join(k.to_string())));
        // Every snapshot is complete at once, not only after a later prune: a
        // backup re-indexes packs a concurrent prune marked under it.
        r.kura(["check"]).ok().stdout_has("no errors were found");
    }
    assert!(marked > 0, "no prune had anything to do");
    eprintln!("{overlapped} of 4 prunes overlapped a backup visibly");

    for _ in 0..2 {
        let p = r.kura(["--json", "prune"]).ok().json();
        eprintln!("final prune: {p}");
    }
    r.kura(["check", "--read-data"]).ok().stdout_has("no errors were found");
    let listed: BTreeSet<String> = r.snapshots(&[]).iter().map(|s| text(s, "id").to_string()).collect();
    assert_eq!(listed, snaps.iter().map(|s| s.0.clone()).collect());
    for (i, (id, copy)) in snaps.iter().enumerate() {
        let target = r.base().join(format!("target{i}"));
        r.restore(id, &target, &["--verify"]).ok();
        assert_same_tree(copy, &restored(&target, &src), FULL);
    }
    // Prune settles: a reinstated pack shares blobs with the packs that repacking
    // wrote meanwhile; those unused copies are repacked away over the next prunes.
    for n in 0.. {
        let p = r.kura(["--json", "prune"]).ok().json();
        if num(&p, "packs_marked") == 0 && num(&p, "packs_deleted") == 0 {
            break;
        }
        assert!(n < 4, "prune does not settle: {p:#}");
    }
    assert!(names(&r.path.join("pending")).is_empty());
    let c = r.kura(["--json", "check", "--read-data"]).ok().json();
    assert_eq!(c["warnings"], serde_json::json!([]), "{c:#}");
}

/// When to send SIGKILL to a prune.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after its lock appeared (it has opened the repository).
    AfterLock(Duration),
    /// As soon as it has written a new pack (repacking).
    NewPack,
    /// As soon as one of the old index files is gone (the new index is written).
    IndexGone,
    /// As soon as a pending record appears.
    Pending,
    /// As soon as a pack is deleted.
    PackGone,
}

/// Runs `kura prune` and kills it at `at`. Returns whether it was killed before it
/// finished (if it finished, it must have succeeded).
fn kill_prune_at(r: &TestRepo, at: KillAt, log: &Path) -> bool {
    let packs_before = pack_names(r);
    let index_before = names(&r.path.join("index"));
    let pending_before = names(&r.path.join("pending"));
    let mut child = r.cmd(["prune"]).stdout(Stdio::null()).stderr(fs::File::create(log).unwrap()).spawn().unwrap();
    let started = Instant::now();
    let mut lock_seen: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "prune not killed but failed ({at:?}): {status:?}");
            return false;
        }
        if lock_seen.is_none() && !names(&r.path.join("locks")).is_empty() {
            lock_seen = Some(Instant::now());
        }
        let fire = match at {
            KillAt::AfterLock(d) => lock_seen.is_some_and(|t| t.elapsed() >= d),
            KillAt::NewPack => pack_names(r).difference(&packs_before).next().is_some(),
            KillAt::IndexGone => index_before.difference(&names(&r.path.join("index"))).next().is_some(),
            KillAt::Pending => names(&r.path.join("pending")).difference(&pending_before).next().is_some(),
            KillAt::PackGone => packs_before.difference(&pack_names(r)).next().is_some(),
        };
        if fire || started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap(); // SIGKILL
            return !child.wait().unwrap().success();
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

#[test]
fn kill_9_during_prune_leaves_a_usable_repository() {
    // One snapshot of a tree with 3 small files between 3 big ones, then one without
    // the big ones; the first is forgotten. The two 16 MiB data packs are then
    // mostly unused: prune reads ~23 MB and repacks the small files.
    let r = fast_repo();
    let src = r.base().join("src");
    sample_tree(&src, 64 << 10);
    for i in 0..3u64 {
        write_random(&src.join(format!("{i}_keep.bin")), 200 << 10, 10 + i);
        write_random(&src.join(format!("{i}_drop.bin")), 15 << 19, 20 + i);
    }
    let t = Instant::now();
    let first = text(&r.backup(&[&src], &[]), "snapshot").to_string();
    eprintln!("backup of 23 MB: {:?}", t.elapsed());
    for i in 0..3 {
        fs::remove_file(src.join(format!("{i}_drop.bin"))).unwrap();
    }
    let kept = text(&r.backup(&[&src], &[]), "snapshot").to_string();
    forget(&r, &first);
    let base = r.base().join("base");
    copy_tree(&r.path, &base);
    let t = Instant::now();
    let p = r.kura(["--json", "prune"]).ok().json();
    let took = t.elapsed();
    eprintln!("prune: {took:?}: {p}");
    assert!(num(&p, "packs_repacked") >= 2, "{p:#}");
    // The state a second prune starts from: it deletes what the first marked.
    let base2 = r.base().join("base2");
    copy_tree(&r.path, &base2);

    // Kill times are fractions of the prune just measured (planning first, then
    // repacking, then a few ms of writes): fixed times missed it once the prune got
    // faster (about 200 ms in a debug build before AES-GCM and direct writes, 60 ms after).
    let at = |n: u32, d: u32| KillAt::AfterLock(took * n / d);
    let plan: [(&Path, KillAt); 9] = [
        (&base, KillAt::AfterLock(Duration::ZERO)),
        (&base, at(1, 8)),
        (&base, at(1, 3)),
        (&base, KillAt::NewPack),
        (&base, KillAt::IndexGone),
        (&base, KillAt::Pending),
        (&base, at(1, 2)),
        (&base2, at(1, 16)),
        (&base2, KillAt::PackGone),
    ];
    let (mut killed, mut midway) = (0, 0);
    for (i, (from, at)) in plan.into_iter().enumerate() {
        fs::remove_dir_all(&r.path).unwrap();
        copy_tree(from, &r.path);
        let index_before = names(&r.path.join("index"));
        let packs_before = pack_names(&r);
        let t = Instant::now();
        let was_killed = kill_prune_at(&r, at, &r.base().join(format!("prune-{i}.log")));
        let took = t.elapsed();
        // What the killed prune had done.
        let new_packs = pack_names(&r).difference(&packs_before).count();
        let gone_packs = packs_before.difference(&pack_names(&r)).count();
        let index_changed = names(&r.path.join("index")) != index_before;
        let lock_left = !names(&r.path.join("locks")).is_empty();
        eprintln!(
            "kill #{i} {at:?} after {took:?}: killed {was_killed}, new packs {new_packs}, deleted packs {gone_packs}, \
             index changed {index_changed}, lock left {lock_left}"
        );
        if was_killed {
            killed += 1;
            if lock_left && (new_packs > 0 || gone_packs > 0 || index_changed) {
                midway += 1;
            }
        }

        let out = r.kura(["check"]);
        assert_eq!(out.code, 0, "check after kill #{i} ({at:?}) failed:\n{out}");
        let target = r.base().join(format!("target{i}"));
        r.restore(&kept, &target, &["--verify"]).ok();
        assert_same_tree(&src, &restored(&target, &src), FULL);
        fs::remove_dir_all(&target).unwrap();

        // A lock left by the killed prune (a dead process of this host) neither
        // blocks the next prune nor stays behind.
        r.kura(["prune"]).ok();
        if lock_left {
            assert!(names(&r.path.join("locks")).is_empty(), "the dead prune's lock was not removed");
        }
        r.kura(["prune"]).ok();
        r.kura(["check", "--read-data"]).ok();
        assert!(names(&r.path.join("pending")).is_empty());
        r.restore(&kept, &target, &["--verify"]).ok();
        assert_same_tree(&src, &restored(&target, &src), FULL);
    }
    eprintln!("{killed} prunes killed, {midway} of them mid-way");
    assert!(killed >= 6 && midway >= 2, "only {killed} prunes killed, {midway} mid-way");
}
