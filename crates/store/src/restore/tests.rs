//! Restore at library level: hand-made trees (repo::testing), prepared plans,
//! depth limits on a small stack.

use super::*;
use crate::progress::NoProgress;
use crate::repo::testing::{cheap_repo, dir_node, file_node, snapshot_of, Blobs};
use crate::repo::tree::MAX_DEPTH;
use crate::types::BlobType;

const PASS: &[u8] = b"restore unit tests";

fn repo() -> Arc<Repository> {
    cheap_repo(PASS)
}

/// A snapshot of `levels` nested directories with one file at the bottom.
fn deep(repo: &Repository, levels: usize) -> Snapshot {
    let mut blobs = Blobs::new(repo);
    let leaf = blobs.add(BlobType::Data, b"leaf\n");
    let mut tree = blobs.dir(vec![file_node("leaf", leaf, 5)]);
    for _ in 0..levels {
        tree = blobs.dir(vec![dir_node("d", tree)]);
    }
    blobs.store();
    snapshot_of(tree)
}

/// The plan can be looked at before anything is written: preparing writes
/// nothing, executing writes what the plan says.
#[test]
fn a_prepared_restore_writes_nothing_until_executed() {
    let repo = repo();
    let snap = deep(&repo, 3);
    let scratch = tempfile::tempdir().unwrap();
    let target = scratch.path().join("t");
    let opts = RestoreOptions { target: target.clone(), threads: Some(1), ..Default::default() };
    let prepared = prepare(&repo, &FileId([7; 32]), &snap, &opts).unwrap();
    assert_eq!((prepared.plan().files.len(), prepared.plan().dirs.len()), (1, 3));
    assert!(!target.exists(), "preparing wrote the target");
    let sum = execute(prepared, &NoProgress).unwrap();
    assert_eq!((sum.files_restored, sum.dirs), (1, 3));
    assert_eq!(std::fs::read(target.join("d/d/d/leaf")).unwrap(), b"leaf\n");
}

/// Recovery runs restore on threads with the default 2 MiB stack: the deepest
/// tree allowed must plan and restore there (in a debug build, whose frames are
/// larger than a release build's).
#[test]
fn the_deepest_tree_allowed_restores_on_a_small_stack() {
    let repo = repo();
    let snap = deep(&repo, MAX_DEPTH);
    let scratch = tempfile::tempdir().unwrap();
    let target = scratch.path().join("t");
    let opts = RestoreOptions { target: target.clone(), threads: Some(1), ..Default::default() };
    let id = FileId([7; 32]);
    let sum = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || run(&repo, &id, &snap, &opts, &NoProgress))
        .unwrap()
        .join()
        .expect("no stack overflow")
        .unwrap();
    assert_eq!((sum.files_restored, sum.dirs), (1, MAX_DEPTH as u64));

    let repo = self::repo();
    let snap = deep(&repo, MAX_DEPTH + 1);
    let opts = RestoreOptions { target: scratch.path().join("t2"), ..Default::default() };
    let Err(err) = run(&repo, &id, &snap, &opts, &NoProgress) else { panic!("one level too deep") };
    assert!(err.to_string().contains("more than 1024 levels"), "{err}");
}

/// A resumed restore drops the targets already written, then the blobs and packs
/// left with nothing to do.
#[test]
fn drop_done_removes_written_targets_then_empty_blobs_and_packs() {
    let loc = |pack: u8, offset: u32| crate::repo::index::Location {
        pack: PackId([pack; 32]),
        offset,
        length: 10,
        raw_length: 10,
        blob_type: BlobType::Data,
        compressed: false,
    };
    let (a, b, c) = (BlobId([1; 32]), BlobId([2; 32]), BlobId([3; 32]));
    let mut jobs = vec![
        PackJob {
            pack: PackId([1; 32]),
            blobs: vec![(a, loc(1, 0), vec![(0, 0), (1, 0)]), (b, loc(1, 10), vec![(0, 10)])],
        },
        PackJob { pack: PackId([2; 32]), blobs: vec![(c, loc(2, 0), vec![(0, 20)])] },
    ];
    plan::drop_done(&mut jobs, &[(0, 0), (0, 10), (0, 20)].into_iter().collect());
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].blobs.len(), 1);
    assert_eq!(jobs[0].blobs[0].0, a);
    assert_eq!(jobs[0].blobs[0].2, vec![(1, 0)]);
}
