//! `kill -9` in the middle of a backup leaves a repository that checks clean, takes the
//! next backup, and restores it exactly.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// When to send SIGKILL.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// A fixed time after the start.
    After(Duration),
    /// As soon as a new file shows up in the repository's tmp/: mid-upload of a pack.
    UploadInProgress,
    /// As soon as a new pack is in data/: written, but not yet named by any index.
    PackWritten,
}

fn names(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir).map(|rd| rd.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
}

fn pack_names(repo: &TestRepo) -> BTreeSet<PathBuf> {
    repo.packs().into_iter().map(|p| p.0).collect()
}

/// Waits for `at`, then kills. Returns false when the backup finished first (it must
/// then have succeeded).
fn kill_at(repo: &TestRepo, child: &mut Child, at: KillAt) -> bool {
    let started = Instant::now();
    let tmp_before = names(&repo.path.join("tmp"));
    let packs_before = pack_names(repo);
    let deadline = Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "backup not killed but failed ({at:?}): {status:?}");
            return false;
        }
        let fire = match at {
            KillAt::After(d) => started.elapsed() >= d,
            KillAt::UploadInProgress => names(&repo.path.join("tmp")).difference(&tmp_before).next().is_some(),
            KillAt::PackWritten => pack_names(repo).difference(&packs_before).next().is_some(),
        };
        if fire || started.elapsed() > deadline {
            child.kill().unwrap(); // SIGKILL
            let status = child.wait().unwrap();
            // Exiting on its own between the last poll and the kill is fine too.
            return !status.success();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn kill_9_during_backup_leaves_a_usable_repository() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    // 20 MiB: more than one 16 MiB pack, so a pack is written mid-backup; a few
    // seconds of work in a debug build.
    sample_tree(&src, 256 << 10);
    write_random(&src.join("big1.bin"), 10 << 20, 1);
    write_random(&src.join("big2.bin"), 10 << 20, 2);
    for i in 0..200 {
        write(&src.join(format!("many/f{:03}.txt", i)), format!("small file {i}\n").repeat(i + 1));
    }

    let plan = [
        KillAt::After(Duration::from_millis(100)),
        KillAt::UploadInProgress,
        KillAt::PackWritten,
        KillAt::After(Duration::from_millis(150)),
        KillAt::After(Duration::from_millis(1500)),
    ];
    let mut killed = 0;
    for (i, at) in plan.into_iter().enumerate() {
        let log = fs::File::create(r.base().join(format!("backup-{i}.log"))).unwrap();
        let mut child = r.cmd(["backup", s(&src)]).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        if kill_at(&r, &mut child, at) {
            killed += 1;
        }
        // Whatever was interrupted, the repository is consistent: unindexed packs and
        // leftover temp files are at most warnings.
        let out = r.kura(["check"]);
        assert_eq!(out.code, 0, "check after kill #{i} ({at:?}) failed:\n{out}");
    }
    assert!(killed >= 3, "only {killed} of {} backups were killed before they finished", plan.len());

    let b = r.backup(&[&src], &[]);
    assert_eq!(b["partial"], false);
    r.kura(["check", "--read-data"]).ok();
    let target = r.base().join("target");
    r.restore("latest", &target, &["--verify"]).ok();
    assert_same_tree(&src, &restored(&target, &src), FULL);
    // Unindexed packs from the killed runs have been indexed by the backup.
    let rep = r.kura(["--json", "check"]).ok().json();
    assert_eq!(rep["warnings"], serde_json::json!([]), "{rep:#}");
}
