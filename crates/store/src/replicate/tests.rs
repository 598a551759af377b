//! Copy planning, execution on memory backends, and a fault at every call of a copy.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use rand::{RngCore, SeedableRng};

use super::*;
use crate::backend::fault::FaultBackend;
use crate::backend::memory::MemoryBackend;
use crate::backup::{self, BackupOptions};
use crate::check::{self, ReadData};
use crate::progress::NoProgress;
use crate::repo::testing::{assert_check_clean, contents, lost_reply_at_every_put, small_repo};
use crate::restore::{self, RestoreOptions};

const PASS: &[u8] = b"replicate unit tests";

fn l(names: &[(&str, u64)]) -> Vec<(String, u64)> {
    names.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

#[test]
fn plan_lists_only_what_is_missing_or_differs() {
    let src = Listing {
        keys: l(&[("k1", 10)]),
        packs: l(&[("p1", 100), ("p2", 200), ("p3", 300), ("leftover", 50)]),
        indexes: l(&[("i1", 5), ("i2", 6)]),
        snapshots: l(&[("s1", 7)]),
    };
    let dst = Listing {
        keys: l(&[("k1", 10)]),
        packs: l(&[("p1", 100), ("p2", 199), ("old", 1)]),
        indexes: l(&[("i1", 5)]),
        snapshots: vec![],
    };
    let wanted: HashSet<String> = ["p1", "p2", "p3"].iter().map(|s| s.to_string()).collect();
    let p = plan(&src, &dst, &wanted);
    assert_eq!(p.keys, vec![]);
    assert_eq!(p.packs, l(&[("p2", 200), ("p3", 300)]), "a truncated copy is replaced; unindexed packs stay");
    assert_eq!(p.indexes, l(&[("i2", 6)]));
    assert_eq!(p.snapshots, l(&[("s1", 7)]));
    assert_eq!(p.bytes(), 200 + 300 + 6 + 7);
    assert!(plan(&src, &src, &wanted).is_empty());
}

/// A source repository with two snapshots over a few hundred KiB.
fn source() -> (Arc<Repository>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let repo = small_repo(Arc::new(MemoryBackend::new()), PASS);
    for (round, files) in [(0u64, 3u64), (1, 5)] {
        for i in 0..files {
            let mut data = vec![0u8; 40_000 + i as usize * 7_000];
            rand::rngs::StdRng::seed_from_u64(i * 31 + round).fill_bytes(&mut data);
            std::fs::write(dir.path().join(format!("f{i}")), data).unwrap();
        }
        let opts = BackupOptions { paths: vec![dir.path().to_path_buf()], threads: Some(1), ..Default::default() };
        backup::run(&repo, &opts, &NoProgress).unwrap();
    }
    (repo, dir)
}

/// Content of the kinds a copy carries.
fn objects(b: &dyn Backend) -> BTreeMap<(Kind, String), Vec<u8>> {
    let mut out = BTreeMap::new();
    for kind in [Kind::Key, Kind::Pack, Kind::Index, Kind::Snapshot] {
        for (n, _) in b.list(kind).unwrap() {
            out.insert((kind, n.clone()), b.get(kind, &n).unwrap());
        }
    }
    if let Ok(c) = b.get(Kind::Config, "config") {
        out.insert((Kind::Config, "config".into()), c);
    }
    out
}

fn copy(src: &Arc<Repository>, dst: Arc<dyn Backend>) -> Result<CopyReport> {
    execute(src, PASS, Destination { backend: dst, passphrase: PASS }, &CopyOptions::default(), &NoProgress)
}

fn assert_clean(b: Arc<dyn Backend>) {
    let r = Arc::new(Repository::open(b, PASS).unwrap());
    let rep = check::run(&r, ReadData::All, &NoProgress).unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
}

#[test]
fn copy_mirrors_and_a_rerun_moves_nothing() {
    let (src, _dir) = source();
    let dst: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let r = copy(&src, dst.clone()).unwrap();
    assert!(r.created);
    let packs = src.backend().list(Kind::Pack).unwrap().len() as u64;
    assert_eq!(
        r.copied,
        Counts {
            keys: 1,
            config: 1,
            packs,
            indexes: src.backend().list(Kind::Index).unwrap().len() as u64,
            snapshots: 2,
            anchors: 0
        }
    );
    assert!(r.bytes > 0 && r.throughput > 0);
    assert_eq!(objects(dst.as_ref()), objects(src.backend().as_ref()));
    assert_clean(dst.clone());
    assert!(dst.list(Kind::Lock).unwrap().is_empty(), "the copy's lock is gone");

    let again = copy(&src, dst.clone()).unwrap();
    assert!(!again.created);
    assert_eq!(again.copied, Counts::default());
    assert_eq!(again.bytes, 0);
    assert!(again.already_present > 0);
}

#[test]
fn a_different_repository_is_refused() {
    let (src, _dir) = source();
    let other = small_repo(Arc::new(MemoryBackend::new()), PASS);
    let e = copy(&src, other.backend().clone()).unwrap_err().to_string();
    assert!(e.contains("another repository"), "{e}");
    let stranger = Repository::init(Arc::new(MemoryBackend::new()), b"other pass").unwrap();
    let e = copy(&src, stranger.backend().clone()).unwrap_err().to_string();
    assert!(e.contains("--to-password-file"), "{e}");
}

#[test]
fn a_damaged_source_pack_is_not_copied() {
    let (src, _dir) = source();
    let (name, _) = src.backend().list(Kind::Pack).unwrap()[0].clone();
    let mut data = src.backend().get(Kind::Pack, &name).unwrap();
    data[10] ^= 1;
    src.backend().put(Kind::Pack, &name, &data).unwrap();
    let dst: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let e = copy(&src, dst.clone()).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(!dst.exists(Kind::Pack, &name).unwrap());
    assert!(dst.list(Kind::Snapshot).unwrap().is_empty(), "no snapshot without its data");
}

#[test]
fn a_new_mirror_gets_its_own_passphrase_too() {
    let (src, _dir) = source();
    let dst: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    execute(
        &src,
        PASS,
        Destination { backend: dst.clone(), passphrase: b"remote pass" },
        &CopyOptions::default(),
        &NoProgress,
    )
    .unwrap();
    let by_own = Repository::open(dst.clone(), b"remote pass").unwrap();
    let by_src = Repository::open(dst, PASS).unwrap();
    assert_eq!(by_own.config().id, src.config().id);
    assert_eq!(by_src.key().to_bytes(), src.key().to_bytes());
}

/// A failure at the N-th call of a copy, for every N, on either side: the
/// destination stays a valid repository, and a rerun completes the copy.
#[test]
fn a_fault_at_every_call_leaves_a_consistent_destination() {
    let (src, _dir) = source();
    let want = objects(src.backend().as_ref());
    for side in ["destination", "source"] {
        let mut n = 1;
        loop {
            let dst = Arc::new(MemoryBackend::new());
            let r = if side == "destination" {
                let f = Arc::new(FaultBackend::at_call(dst.clone(), n));
                let r = copy(&src, f.clone());
                if r.is_ok() && !f.tripped() {
                    break; // N is past the last call: the copy completed.
                }
                r
            } else {
                // Opening the source makes calls too; those faults are not the copy's.
                let f = Arc::new(FaultBackend::at_call(src.backend().clone(), n));
                let Ok(fsrc) = Repository::open(f.clone(), PASS) else {
                    n += 1;
                    continue;
                };
                let r = copy(&Arc::new(fsrc), dst.clone());
                if r.is_ok() && !f.tripped() {
                    break;
                }
                r
            };
            drop(r);
            if dst.exists(Kind::Config, "config").unwrap() {
                assert_clean(dst.clone());
            }
            copy(&src, dst.clone()).unwrap_or_else(|e| panic!("{side} fault at call {n}: rerun failed: {e}"));
            let got: BTreeMap<_, _> = objects(dst.as_ref());
            assert_eq!(got, want, "{side} fault at call {n}: the rerun completed the copy");
            assert_clean(dst.clone());
            n += 1;
            assert!(n < 500, "the copy never completed");
        }
        assert!(n > 10, "{side}: the faults covered {n} calls");
    }
}

/// A put of a copy that landed while the copy saw a time-out: the copy stops, and
/// running it again completes it; the destination checks clean, holds what the
/// source holds, and every snapshot restores as it does from the source.
#[test]
fn a_copy_resumes_after_a_lost_reply_at_every_put() {
    let (src, _dir) = source();
    let scratch = tempfile::tempdir().unwrap();
    let want = objects(src.backend().as_ref());
    let n = lost_reply_at_every_put(
        &MemoryBackend::new(),
        |dst| copy(&src, dst).map(drop),
        |dst| {
            assert!(objects(dst.as_ref()) == want, "the destination differs from the source");
            let repo = Arc::new(Repository::open(dst.clone(), PASS).unwrap());
            assert_check_clean(&repo, ReadData::All);
            assert_restores_as(&repo, &src, scratch.path());
        },
    );
    assert!(n > 10, "only {n} puts");
}

/// Every snapshot restores from `repo` to the same files as from `like`.
#[track_caller]
fn assert_restores_as(repo: &Arc<Repository>, like: &Arc<Repository>, scratch: &std::path::Path) {
    let restored = |r: &Arc<Repository>, id: &crate::types::FileId, snap: &crate::repo::snapshot::Snapshot| {
        let target = tempfile::tempdir_in(scratch).unwrap();
        let opts = RestoreOptions { target: target.path().to_path_buf(), threads: Some(1), ..Default::default() };
        let sum = restore::run(r, id, snap, &opts, &NoProgress).unwrap();
        assert!(sum.damaged.is_empty(), "damaged files {:?}", sum.damaged);
        contents(target.path())
    };
    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), like.snapshots().unwrap().len());
    for (id, snap) in snaps {
        assert!(restored(repo, &id, &snap) == restored(like, &id, &snap), "snapshot {} differs", id.short());
    }
}
