//! Prune at library level, in memory: marking and deleting, reinstatement, locks,
//! crashes at every write (`FaultBackend`), refusal on damage, and the races between
//! prune and backups that the two-phase delete exists for.
//!
//! Repositories here are `repo::testing::small_repo`s: small packs and chunks, so a
//! few backups of a few hundred KB make dozens of packs, and a cheap key, so that
//! `Repository::open` can run once per faulted attempt.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::{run, PruneOptions, PruneReport};
use crate::backend::fault::FaultBackend;
use crate::backend::memory::MemoryBackend;
use crate::backend::{BResult, Backend, Kind};
use crate::backup::{self, BackupOptions};
use crate::check::{self, ReadData};
use crate::error::Result;
use crate::progress::NoProgress;
use crate::repo::index::{IndexFile, IndexPack};
use crate::repo::lock::{LockGuard, LockInfo, LockKind};
use crate::repo::snapshot::Snapshot;
use crate::repo::testing::{
    assert_all_restore, assert_check_clean, copy_backend, lost_reply_at_every_put, make_tree, objects, small_repo,
};
use crate::repo::Repository;
use crate::types::{FileId, PackId};

const PASS: &[u8] = b"prune unit tests";

fn open(backend: Arc<dyn Backend>) -> Arc<Repository> {
    Arc::new(Repository::open(backend, PASS).unwrap())
}

fn names(b: &dyn Backend, kind: Kind) -> HashSet<String> {
    b.list(kind).unwrap().into_iter().map(|(n, _)| n).collect()
}

fn backup(repo: &Arc<Repository>, dir: &Path) -> FileId {
    let opts = BackupOptions { paths: vec![dir.to_path_buf()], threads: Some(1), ..Default::default() };
    let out = backup::run(repo, &opts, &NoProgress).unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    out.id
}

fn prune(repo: &Arc<Repository>) -> Result<PruneReport> {
    run(repo, &PruneOptions::default(), &NoProgress)
}

fn prune_ok(repo: &Arc<Repository>) -> PruneReport {
    prune(repo).unwrap_or_else(|e| panic!("prune failed: {e}"))
}

/// A prune while a backup runs (its shared lock is held): the packs it marks wait
/// for a later prune, which is the two-phase deletion these tests exercise.
fn prune_beside_a_backup(repo: &Arc<Repository>) -> PruneReport {
    let backup = LockGuard::acquire(repo, LockKind::Shared, "backup").unwrap();
    let r = prune_ok(repo);
    drop(backup);
    assert!(!r.marked_deleted_now && r.packs_waiting >= r.packs_marked, "{r:#?}");
    r
}

fn forget(repo: &Repository, id: &FileId) {
    repo.backend().delete(Kind::Snapshot, &id.to_hex()).unwrap();
}

fn stored_packs(repo: &Repository) -> HashSet<PackId> {
    names(repo.backend().as_ref(), Kind::Pack).iter().map(|n| PackId::from_hex(n).unwrap()).collect()
}

fn indexed_packs(repo: &Repository) -> HashSet<PackId> {
    repo.load_index().unwrap().packs().map(|(p, _)| p).collect()
}

/// Five snapshots of five directories that share some files; the first two are
/// forgotten, so their own data (and the packs mixing it with shared data) is unused.
struct Fixture {
    _dir: tempfile::TempDir,
    scratch: PathBuf,
    repo: Arc<Repository>,
    backend: Arc<MemoryBackend>,
    kept: Vec<FileId>,
    forgotten: Vec<(FileId, Vec<u8>)>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let repo = small_repo(backend.clone(), PASS);
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let src = dir.path().join(format!("src{i}"));
        let own = format!("b_own{i}.bin");
        let mut files = vec![
            ("a_shared.bin".to_string(), 20_000, 1000),
            (own, 25_000 + 2_500 * i as usize, i),
            ("c_shared_with_next.bin".into(), 15_000, 2000 + i / 2),
        ];
        // Small files, shared and own in turn, one chunk each: the packs holding
        // them (written in name order) end up half used once 0 and 1 are forgotten.
        for j in 0..24u64 {
            let seed = if j % 2 == 0 { 5000 + j } else { 6000 + 100 * i + j };
            files.push((format!("d/f{j:02}"), 1_200 + 10 * j as usize, seed));
        }
        let files: Vec<(&str, usize, u64)> = files.iter().map(|(n, l, s)| (n.as_str(), *l, *s)).collect();
        make_tree(&src, &files);
        ids.push(backup(&repo, &src));
    }
    let mut forgotten = Vec::new();
    for id in &ids[..2] {
        forgotten.push((*id, backend.get(Kind::Snapshot, &id.to_hex()).unwrap()));
        forget(&repo, id);
    }
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    Fixture { scratch, repo, backend, kept: ids[2..].to_vec(), forgotten, _dir: dir }
}

#[test]
fn an_idle_prune_deletes_what_it_marks_in_the_same_run() {
    let f = fixture();
    let repo = &f.repo;
    let r = prune_ok(repo);
    assert!(r.packs_marked > 0 && r.packs_repacked > 0, "{r:#?}");
    assert!(r.marked_deleted_now, "{r:#?}");
    assert_eq!((r.packs_deleted, r.bytes_freed, r.packs_waiting), (r.packs_marked, r.bytes_marked, 0), "{r:#?}");
    assert!(names(f.backend.as_ref(), Kind::Pending).is_empty(), "no pending record is left");
    assert!(names(f.backend.as_ref(), Kind::Lock).is_empty());
    assert_eq!(stored_packs(repo), indexed_packs(repo), "every stored pack is indexed, and only those");
    assert_eq!(assert_check_clean(repo, ReadData::All), Vec::<String>::new());
    assert_all_restore(repo, &f.scratch);
    let r2 = prune_ok(repo);
    assert_eq!((r2.packs_marked, r2.packs_deleted, r2.packs_repacked), (0, 0, 0), "{r2:#?}");
}

/// A backup that ends while prune runs (its snapshot appears after the plan read the
/// snapshots) keeps the marked packs: its snapshot may use them.
#[test]
fn a_snapshot_written_during_a_prune_keeps_the_marked_packs() {
    let f = fixture();
    let repo = &f.repo;
    // The backend writes the forgotten snapshot back as prune writes its first pending
    // record: after its plan, before it checks for new snapshots.
    struct Late {
        inner: Arc<MemoryBackend>,
        snapshot: Mutex<Option<(String, Vec<u8>)>>,
    }
    impl Backend for Late {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn create(&self) -> BResult<()> {
            self.inner.create()
        }
        fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()> {
            if kind == Kind::Pending {
                if let Some((n, d)) = self.snapshot.lock().unwrap().take() {
                    self.inner.put(Kind::Snapshot, &n, &d)?;
                }
            }
            self.inner.put(kind, name, data)
        }
        fn get(&self, kind: Kind, name: &str) -> BResult<Vec<u8>> {
            self.inner.get(kind, name)
        }
        fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> BResult<Vec<u8>> {
            self.inner.get_range(kind, name, offset, len)
        }
        fn list(&self, kind: Kind) -> BResult<Vec<(String, u64)>> {
            self.inner.list(kind)
        }
        fn delete(&self, kind: Kind, name: &str) -> BResult<()> {
            self.inner.delete(kind, name)
        }
    }
    let (old_id, old) = &f.forgotten[0];
    let late = Arc::new(Late { inner: f.backend.clone(), snapshot: Mutex::new(Some((old_id.to_hex(), old.clone()))) });
    let repo2 = open(late);
    let r = prune_ok(&repo2);
    assert!(r.packs_marked > 0 && !r.marked_deleted_now, "{r:#?}");
    assert!(r.waiting_for.iter().any(|w| w.contains("written during this prune")), "{r:#?}");
    let stored = stored_packs(repo);
    assert!(repo.pending_packs().unwrap().iter().all(|p| stored.contains(p)));
    // The next prune gives the snapshot its packs back.
    let r2 = prune_ok(repo);
    assert!(r2.packs_reinstated > 0, "{r2:#?}");
    assert_check_clean(repo, ReadData::All);
    assert_all_restore(repo, &f.scratch);
}

#[test]
fn a_prune_beside_a_backup_marks_and_a_later_prune_deletes() {
    let f = fixture();
    let repo = &f.repo;
    let before = objects(f.backend.as_ref());

    let dry = run(repo, &PruneOptions { dry_run: true, ..Default::default() }, &NoProgress).unwrap();
    assert!(dry.dry_run && dry.packs_marked > 0 && dry.packs_repacked > 0, "{dry:#?}");
    assert!(objects(f.backend.as_ref()) == before, "a dry run changed the repository");

    let r1 = prune_beside_a_backup(repo);
    assert_eq!(
        (r1.packs_marked, r1.packs_repacked, r1.bytes_marked),
        (dry.packs_marked, dry.packs_repacked, dry.bytes_marked),
        "the dry run predicted something else: {dry:#?} {r1:#?}"
    );
    assert_eq!((r1.packs_deleted, r1.packs_waiting, r1.snapshots), (0, r1.packs_marked, 3), "{r1:#?}");
    assert_eq!(r1.bytes_waiting, r1.bytes_marked, "{r1:#?}");
    let pending = repo.pending_packs().unwrap();
    assert_eq!(pending.len() as u64, r1.packs_marked);
    let indexed = indexed_packs(repo);
    let stored = stored_packs(repo);
    for p in &pending {
        // Marked packs stay indexed until deleted: a backup that started before the
        // mark may still write a snapshot that needs them.
        assert!(indexed.contains(p), "marked pack {p} left the index in the first phase");
        assert!(stored.contains(p), "marked pack {p} was deleted in the first phase");
    }
    // Marked packs are no warning: check knows them from the pending record.
    assert_eq!(assert_check_clean(repo, ReadData::All), Vec::<String>::new());
    assert_all_restore(repo, &f.scratch);

    let r2 = prune_ok(repo);
    assert_eq!((r2.packs_deleted, r2.packs_marked, r2.packs_waiting), (r1.packs_marked, 0, 0), "{r2:#?}");
    assert_eq!(r2.bytes_freed, r1.bytes_marked);
    let stored = stored_packs(repo);
    assert!(pending.iter().all(|p| !stored.contains(p)), "marked packs survived the second prune");
    assert!(names(f.backend.as_ref(), Kind::Pending).is_empty());
    assert!(names(f.backend.as_ref(), Kind::Lock).is_empty());
    assert_eq!(stored, indexed_packs(repo), "every stored pack is indexed, and only those");
    assert_eq!(assert_check_clean(repo, ReadData::All), Vec::<String>::new());
    assert_all_restore(repo, &f.scratch);

    // Nothing left to do.
    let r3 = prune_ok(repo);
    assert_eq!((r3.packs_marked, r3.packs_deleted, r3.packs_repacked), (0, 0, 0), "{r3:#?}");
}

/// Plan and execute are separate steps; the plan holds the exclusive lock between
/// them, so a second prune cannot change what the first one read.
#[test]
fn a_plan_holds_the_lock_until_it_is_executed() {
    let f = fixture();
    let plan = super::plan(&f.repo, &PruneOptions::default()).unwrap();
    let predicted = plan.report(true);
    let without_locks = |b: &MemoryBackend| {
        let mut all = objects(b);
        all.retain(|k, _| k.0 != Kind::Lock);
        all
    };
    let before = without_locks(&f.backend);
    let other = prune(&f.repo).unwrap_err();
    assert!(other.to_string().contains("the repository is locked: prune"), "{other}");
    assert!(without_locks(&f.backend) == before, "the refused prune changed the repository");
    let done = super::execute(plan, &NoProgress).unwrap();
    assert_eq!((done.packs_marked, done.bytes_marked), (predicted.packs_marked, predicted.bytes_marked));
    assert!(names(f.backend.as_ref(), Kind::Lock).is_empty(), "execute releases the lock");
    prune_ok(&f.repo);
}

#[test]
fn max_unused_zero_converges() {
    // "Repack any pack with unused data": a second run finds nothing more to repack
    // (a pack's header is not unused space).
    let f = fixture();
    let opts = PruneOptions { dry_run: false, max_unused_pct: 0.0 };
    let r1 = run(&f.repo, &opts, &NoProgress).unwrap();
    assert!(r1.packs_repacked > 0, "{r1:#?}");
    let r2 = run(&f.repo, &opts, &NoProgress).unwrap();
    assert_eq!((r2.packs_marked, r2.packs_repacked), (0, 0), "{r2:#?}");
    assert_check_clean(&f.repo, ReadData::All);
    assert_all_restore(&f.repo, &f.scratch);
}

#[test]
fn a_snapshot_using_a_marked_pack_gets_it_back() {
    let f = fixture();
    let repo = &f.repo;
    let r1 = prune_beside_a_backup(repo);
    assert!(r1.packs_marked > 0);
    let marked = repo.pending_packs().unwrap();

    // A backup that read the index before the mark, reused blobs that are now only
    // in marked packs, and wrote its snapshot after the mark: the forgotten
    // snapshot, written again.
    let (old_id, old) = &f.forgotten[0];
    f.backend.put(Kind::Snapshot, &old_id.to_hex(), old).unwrap();

    let r2 = prune_ok(repo);
    assert!(r2.packs_reinstated > 0, "{r2:#?}");
    assert_eq!(r2.packs_deleted + r2.packs_reinstated, marked.len() as u64, "{r2:#?}");
    assert_eq!(r2.packs_marked, 0, "{r2:#?}");
    assert_check_clean(repo, ReadData::All);
    assert_all_restore(repo, &f.scratch);

    // The packs it uses are indexed again and stay.
    // (It may repack them: the blobs they share with the packs written by the first
    // prune's repacking are unused copies.)
    let r3 = prune_ok(repo);
    // It deletes only what it marks itself (their used blobs copied first).
    assert_eq!((r3.packs_deleted, r3.packs_reinstated), (r3.packs_marked, 0), "{r3:#?}");
    assert_check_clean(repo, ReadData::All);
    assert_all_restore(repo, &f.scratch);
    let snaps: Vec<FileId> = repo.snapshots().unwrap().into_iter().map(|s| s.0).collect();
    assert!(snaps.contains(old_id));
}

#[test]
fn a_backup_older_than_the_mark_protects_marked_packs() {
    let f = fixture();
    let clock = crate::clock::ManualClock::new(Utc::now());
    let repo = &Arc::new(Repository::open(f.backend.clone(), PASS).unwrap().with_clock(Arc::new(clock.clone())));
    let early = LockGuard::acquire(repo, LockKind::Shared, "backup").unwrap();
    let r1 = prune_ok(repo);
    let marked = repo.pending_packs().unwrap();
    assert_eq!(marked.len() as u64, r1.packs_marked);
    assert!(!marked.is_empty());
    // A backup that starts just after the stamp may have listed the pending records
    // before this one landed (or its host's clock runs ahead): it protects them too.
    clock.advance(super::plan::MARK_MARGIN);
    let just_after = LockGuard::acquire(repo, LockKind::Shared, "backup").unwrap();
    clock.advance(chrono::Duration::seconds(1));
    let r = prune_ok(repo);
    assert_eq!((r.packs_deleted, r.waiting_for.len()), (0, 2), "{r:#?}");
    drop(just_after);
    // A backup that starts later never sees the marked packs: no protection.
    let late = LockGuard::acquire(repo, LockKind::Shared, "backup").unwrap();

    let r2 = prune_ok(repo);
    assert_eq!((r2.packs_deleted, r2.packs_waiting), (0, r1.packs_marked), "{r2:#?}");
    assert_eq!(r2.waiting_for.len(), 1, "only the early lock blocks: {r2:#?}");
    assert!(r2.waiting_for[0].starts_with("backup "), "{r2:#?}");
    assert_eq!(repo.pending_packs().unwrap(), marked);
    let stored = stored_packs(repo);
    assert!(marked.iter().all(|p| stored.contains(p)));
    assert_check_clean(repo, ReadData::None);

    drop(early);
    let r3 = prune_ok(repo);
    assert_eq!((r3.packs_deleted, r3.packs_waiting), (r1.packs_marked, 0), "{r3:#?}");
    let stored = stored_packs(repo);
    assert!(marked.iter().all(|p| !stored.contains(p)));
    assert!(repo.pending_packs().unwrap().is_empty());
    drop(late);
    assert_check_clean(repo, ReadData::All);
    assert_all_restore(repo, &f.scratch);
}

fn lock_info(kind: LockKind, started_min_ago: i64, refreshed_min_ago: i64) -> LockInfo {
    let now = Utc::now();
    LockInfo {
        kind,
        purpose: "test".into(),
        host: "elsewhere".into(),
        pid: 1,
        started: now - chrono::Duration::minutes(started_min_ago),
        refreshed: now - chrono::Duration::minutes(refreshed_min_ago),
    }
}

/// Lock ages are measured on the repository's clock: a backup lock that went 30
/// minutes without a refresh (its process hung or died elsewhere) stops holding back
/// deletions, without the test waiting half an hour.
#[test]
fn a_lock_unrefreshed_for_the_stale_period_stops_blocking() {
    let f = fixture();
    let clock = crate::clock::ManualClock::new(Utc::now());
    let repo = Arc::new(Repository::open(f.backend.clone(), PASS).unwrap().with_clock(Arc::new(clock.clone())));
    let backup = LockGuard::acquire(&repo, LockKind::Shared, "backup").unwrap();
    let r1 = prune_ok(&repo);
    assert!(r1.packs_marked > 0 && !r1.marked_deleted_now, "{r1:#?}");
    clock.advance(crate::repo::lock::STALE - chrono::Duration::seconds(1));
    assert_eq!(prune_ok(&repo).packs_deleted, 0, "a lock younger than the stale period still holds");
    clock.advance(chrono::Duration::seconds(2));
    let r2 = prune_ok(&repo);
    assert_eq!(r2.packs_deleted, r1.packs_marked, "{r2:#?}");
    // The backup's own check now refuses to write a snapshot on top of that.
    assert!(backup.check_fresh().is_err());
}

#[test]
fn stale_locks_are_ignored_and_unreadable_ones_block() {
    let f = fixture();
    let repo = &f.repo;
    // A backup and a prune that died an hour ago.
    repo.save_sealed(Kind::Lock, "00aa", &lock_info(LockKind::Shared, 90, 60)).unwrap();
    repo.save_sealed(Kind::Lock, "00bb", &lock_info(LockKind::Exclusive, 90, 60)).unwrap();
    let r1 = prune_ok(repo);
    assert!(r1.packs_marked > 0 && r1.marked_deleted_now, "stale locks held it back: {r1:#?}");
    // An unreadable lock counts as a live lock from the beginning of time.
    forget(repo, &f.kept[0]);
    f.backend.put(Kind::Lock, "00cc", b"garbage").unwrap();
    let r2 = prune_ok(repo);
    assert!(r2.packs_marked > 0, "{r2:#?}");
    assert_eq!((r2.packs_deleted, r2.packs_waiting), (0, r2.packs_marked), "{r2:#?}");
    assert!(r2.waiting_for.iter().any(|w| w.contains("unreadable lock")), "{r2:#?}");
    f.backend.delete(Kind::Lock, "00cc").unwrap();
    let r3 = prune_ok(repo);
    assert_eq!(r3.packs_deleted, r2.packs_marked, "{r3:#?}");
    assert_check_clean(repo, ReadData::All);
}

#[test]
fn exclusive_locks_conflict() {
    let f = fixture();
    let repo = &f.repo;
    let held = LockGuard::acquire(repo, LockKind::Exclusive, "prune").unwrap();
    let before = objects(f.backend.as_ref());
    for dry_run in [false, true] {
        let e = run(repo, &PruneOptions { dry_run, ..Default::default() }, &NoProgress).unwrap_err().to_string();
        assert!(e.contains("exclusive lock") && e.contains("prune (pid"), "{e}");
    }
    assert!(objects(f.backend.as_ref()) == before, "a refused prune changed the repository");
    // Shared locks (backups) never conflict, with each other or with prune.
    let shared = LockGuard::acquire(repo, LockKind::Shared, "backup").unwrap();
    drop(held);
    prune_ok(repo);
    drop(shared);
}

type Hook = Box<dyn FnOnce() + Send>;

/// A backend that runs a hook once, right after the first `list` of one kind of
/// object has returned: it puts another process's action at an exact point.
struct HookBackend {
    inner: Arc<dyn Backend>,
    hook: Mutex<Option<(Kind, Hook)>>,
}

impl HookBackend {
    fn new(inner: Arc<dyn Backend>) -> Arc<Self> {
        Arc::new(HookBackend { inner, hook: Mutex::new(None) })
    }
    fn after_list(&self, kind: Kind, f: impl FnOnce() + Send + 'static) {
        *self.hook.lock().unwrap() = Some((kind, Box::new(f)));
    }
}

impl Backend for HookBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> BResult<()> {
        self.inner.create()
    }
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()> {
        self.inner.put(kind, name, data)
    }
    fn get(&self, kind: Kind, name: &str) -> BResult<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> BResult<Vec<u8>> {
        self.inner.get_range(kind, name, offset, len)
    }
    fn list(&self, kind: Kind) -> BResult<Vec<(String, u64)>> {
        let out = self.inner.list(kind);
        let hook = {
            let mut h = self.hook.lock().unwrap();
            if h.as_ref().is_some_and(|(k, _)| *k == kind) {
                h.take()
            } else {
                None
            }
        };
        if let Some((_, f)) = hook {
            f();
        }
        out
    }
    fn delete(&self, kind: Kind, name: &str) -> BResult<()> {
        self.inner.delete(kind, name)
    }
}

#[test]
fn a_backup_finishing_while_prune_plans_is_seen() {
    // A backup starts before the first prune marks packs and reuses blobs in them;
    // it ends (snapshot written, lock removed) while the second prune plans, just
    // after that prune listed the snapshots. The second prune must not delete the
    // packs: it must either see the snapshot or the lock.
    let f = fixture();
    let hook = HookBackend::new(f.backend.clone());
    let repo = open(hook.clone());
    let lock = LockGuard::acquire(&repo, LockKind::Shared, "backup").unwrap();
    let r1 = prune_ok(&repo);
    assert!(r1.packs_marked > 0);

    let (old_id, old) = f.forgotten[0].clone();
    let inner = f.backend.clone();
    let lock = Mutex::new(Some(lock));
    hook.after_list(Kind::Snapshot, move || {
        inner.put(Kind::Snapshot, &old_id.to_hex(), &old).unwrap();
        drop(lock.lock().unwrap().take());
    });
    let r2 = prune_ok(&repo);
    assert!(names(f.backend.as_ref(), Kind::Lock).is_empty(), "the hook did not run");
    assert_eq!(r2.packs_deleted, 0, "packs deleted under a backup that was still running: {r2:#?}");
    prune_ok(&repo);
    assert_check_clean(&repo, ReadData::All);
    assert_all_restore(&repo, &f.scratch);
}

#[test]
fn a_whole_backup_landing_while_prune_reads_the_index_is_no_damage() {
    // Many hosts into one repository: a backup writes its packs, index file and
    // snapshot while a prune plans, right after the prune listed the index files.
    // The plan reads snapshots before index files and packs after them, so it sees
    // that backup whole or not at all: no false "blob in no pack" refusal.
    let f = fixture();
    let hook = HookBackend::new(f.backend.clone());
    let repo = open(hook.clone());
    let other = open(f.backend.clone());
    let src = f.scratch.join("other-host");
    make_tree(&src, &[("new.bin", 40_000, 777), ("a_shared.bin", 20_000, 1000)]);
    let landed = Arc::new(Mutex::new(None));
    let landed2 = landed.clone();
    hook.after_list(Kind::Index, move || *landed2.lock().unwrap() = Some(backup(&other, &src)));
    let r = prune(&repo).unwrap_or_else(|e| panic!("prune refused beside a backup: {e}"));
    let id = landed.lock().unwrap().take().expect("the hook did not run");
    assert_eq!(r.snapshots, 3, "the plan saw a snapshot listed after the index: {r:#?}");
    assert!(r.waiting_for.iter().any(|w| w.contains("written during this prune")), "{r:#?}");
    prune_ok(&repo);
    assert!(repo.snapshots().unwrap().iter().any(|(s, _)| *s == id));
    assert_check_clean(&repo, ReadData::All);
    assert_all_restore(&repo, &f.scratch);
}

#[test]
fn an_exclusive_lock_taken_meanwhile_is_noticed() {
    // Two prunes start at once: each lists the locks before the other's is written.
    let f = fixture();
    let hook = HookBackend::new(f.backend.clone());
    let repo = open(hook.clone());
    let other = f.repo.clone();
    hook.after_list(Kind::Lock, move || {
        other.save_sealed(Kind::Lock, "00ff", &lock_info(LockKind::Exclusive, 0, 0)).unwrap();
    });
    let e = prune(&repo).unwrap_err().to_string();
    assert!(e.contains("exclusive lock"), "{e}");
    // The loser leaves no lock behind; the winner's is the only one.
    assert_eq!(names(f.backend.as_ref(), Kind::Lock), HashSet::from(["00ff".to_string()]));
}

#[test]
fn a_pack_adopted_while_being_marked_is_not_reused() {
    // A backup that starts between the moment prune removed the old index files and
    // the moment it wrote its pending record adopts the marked packs (they are in no
    // index and no record yet) and writes an index file naming them. A later backup
    // must not deduplicate against them: a later prune may delete them under it.
    let f = fixture();
    let clock = crate::clock::ManualClock::new(Utc::now());
    let repo = &Arc::new(Repository::open(f.backend.clone(), PASS).unwrap().with_clock(Arc::new(clock.clone())));
    let r1 = prune_beside_a_backup(repo);
    assert!(r1.packs_marked > 0);
    // The adoption, as index_unindexed_packs writes it.
    let sizes: BTreeMap<String, u64> = f.backend.list(Kind::Pack).unwrap().into_iter().collect();
    let mut file = IndexFile::default();
    for p in repo.pending_packs().unwrap() {
        let size = sizes[&p.to_hex()];
        file.packs.push(IndexPack::new(p, size, &repo.read_pack_header(&p.to_hex(), size).unwrap()));
    }
    repo.save_json(Kind::Index, &file).unwrap();

    // A backup after the mark, of a tree holding data that only marked packs have.
    let (old_id, old_bytes) = &f.forgotten[0];
    f.backend.put(Kind::Snapshot, &old_id.to_hex(), old_bytes).unwrap();
    let old: Snapshot = repo.load_json(Kind::Snapshot, &old_id.to_hex()).unwrap();
    forget(repo, old_id);
    let late = backup(repo, Path::new(&old.paths[0]));
    // A prune runs while that backup is still running: its lock is younger than the
    // mark, its snapshot is not written yet.
    let late_snap = f.backend.get(Kind::Snapshot, &late.to_hex()).unwrap();
    forget(repo, &late);
    clock.advance(super::plan::MARK_MARGIN + chrono::Duration::seconds(1));
    let lock = LockGuard::acquire(repo, LockKind::Shared, "backup").unwrap();
    let r2 = prune_ok(repo);
    assert!(r2.packs_deleted > 0, "{r2:#?}");
    // The backup ends.
    f.backend.put(Kind::Snapshot, &late.to_hex(), &late_snap).unwrap();
    drop(lock);
    // Its packs may have been marked meanwhile (its snapshot was not there yet): the
    // next prune puts them back. Nothing it needs may be gone.
    prune_ok(repo);
    assert_check_clean(repo, ReadData::All);
    assert_all_restore(repo, &f.scratch);
}

/// The first data blob under a tree, depth first.
fn first_data_blob(
    repo: &Repository,
    index: &crate::repo::index::Index,
    tree: &crate::types::BlobId,
) -> Option<crate::types::BlobId> {
    let t = repo.load_tree(index, tree).unwrap();
    t.nodes
        .iter()
        .find_map(|n| n.content.first().copied())
        .or_else(|| t.nodes.iter().filter_map(|n| n.subtree).find_map(|s| first_data_blob(repo, index, &s)))
}

#[test]
fn prune_refuses_on_damage_and_deletes_nothing() {
    for what in ["data pack", "tree pack", "index files"] {
        let f = fixture();
        let repo = &f.repo;
        let index = repo.load_index().unwrap();
        let (_, snap) = repo.find_snapshot(&f.kept[0].to_hex()).unwrap();
        match what {
            "index files" => {
                for name in names(f.backend.as_ref(), Kind::Index) {
                    f.backend.delete(Kind::Index, &name).unwrap();
                }
            }
            _ => {
                let blob =
                    if what == "data pack" { first_data_blob(repo, &index, &snap.tree).unwrap() } else { snap.tree };
                let pack = index.get(&blob).unwrap().pack;
                f.backend.delete(Kind::Pack, &pack.to_hex()).unwrap();
            }
        }
        let before = objects(f.backend.as_ref());
        let e = prune(repo).unwrap_err().to_string();
        assert!(e.contains("deleted nothing"), "{what}: {e}");
        assert!(objects(f.backend.as_ref()) == before, "{what}: a refused prune changed the repository");
    }
}

/// What must hold after any interrupted prune, on the clean backend: the
/// repository checks clean (unindexed and pending packs are warnings at most), every
/// snapshot restores, and prunes run to their end and keep all that true.
/// `strict`: also before any further prune (false when the state before the crash
/// already had a snapshot waiting for prune to reinstate its packs).
fn assert_recovers(inner: &Arc<MemoryBackend>, scratch: &Path, strict: bool, what: &str) {
    let repo = open(inner.clone());
    // The dead prune's lock stays until removed (its message says so).
    for n in names(inner.as_ref(), Kind::Lock) {
        inner.delete(Kind::Lock, &n).unwrap();
    }
    if strict {
        let rep = check::run(&repo, ReadData::None, &NoProgress).unwrap();
        assert!(rep.is_clean(), "{what}: check failed: {:?} {:?}", rep.errors, rep.damaged_packs);
        assert_all_restore(&repo, scratch);
    }
    for _ in 0..2 {
        prune(&repo).unwrap_or_else(|e| panic!("{what}: prune after the crash failed: {e}"));
    }
    // Every blob the snapshots need is indexed, in a stored pack of the right size.
    // (The content of what prune copies was verified by the restore above; strict
    // or not, the last run of the loop is followed by a full check and restore.)
    let rep = check::run(&repo, ReadData::None, &NoProgress).unwrap();
    assert!(rep.is_clean(), "{what}: check after prunes failed: {:?} {:?}", rep.errors, rep.damaged_packs);
    if !strict {
        assert_all_restore(&repo, scratch);
    }
}

/// Runs `op` on a copy of `base` behind a FaultBackend allowing N writes, for N = 0,
/// 1, 2, ... until a run completes; checks recovery after each. Returns the number of
/// interrupted runs.
fn crash_at_every_write(
    base: &Arc<MemoryBackend>,
    scratch: &Path,
    strict: bool,
    op: impl Fn(&Arc<Repository>) -> Result<()>,
) -> u64 {
    for n in 0.. {
        let inner = copy_backend(base.as_ref());
        let fault = Arc::new(FaultBackend::new(inner.clone(), n));
        let repo = open(fault.clone());
        let res = op(&repo);
        if !fault.tripped() {
            res.unwrap_or_else(|e| panic!("the run with no fault failed: {e}"));
            assert_recovers(&inner, scratch, strict, "no fault");
            assert_check_clean(&open(inner.clone()), ReadData::All);
            assert_all_restore(&open(inner), scratch);
            return n;
        }
        // Success with the fault reached: only the final lock removal failed.
        assert!(
            res.is_err() || !names(inner.as_ref(), Kind::Lock).is_empty(),
            "a run that hit the fault after {n} writes reported success"
        );
        drop(repo);
        assert_recovers(&inner, scratch, strict, &format!("fault after {n} writes"));
    }
    unreachable!()
}

#[test]
fn crash_at_every_write_of_a_prune() {
    // The first prune: repacks, marks.
    let f = fixture();
    let n = crash_at_every_write(&f.backend, &f.scratch, true, |repo| {
        let r = prune(repo)?;
        assert!(r.packs_repacked > 0 && r.packs_marked > r.packs_repacked, "{r:#?}");
        Ok(())
    });
    assert!(n >= 8, "only {n} writes");
}

#[test]
fn crash_at_every_write_of_a_second_prune() {
    // The prune after it: deletes what the first marked.
    let f = fixture();
    prune_beside_a_backup(&f.repo);
    let n = crash_at_every_write(&f.backend, &f.scratch, true, |repo| {
        let r = prune(repo)?;
        assert!(r.packs_deleted > 0, "{r:#?}");
        Ok(())
    });
    assert!(n >= 8, "only {n} writes");
}

#[test]
fn crash_at_every_write_of_a_prune_that_reinstates() {
    // After a first prune, a forgotten snapshot comes back (see
    // a_snapshot_using_a_marked_pack_gets_it_back) and another is forgotten: the
    // prune reinstates some packs, deletes others and marks new ones.
    let f = fixture();
    prune_beside_a_backup(&f.repo);
    let (old_id, old) = &f.forgotten[0];
    f.backend.put(Kind::Snapshot, &old_id.to_hex(), old).unwrap();
    forget(&f.repo, &f.kept[0]);
    let dry = run(&f.repo, &PruneOptions { dry_run: true, ..Default::default() }, &NoProgress).unwrap();
    assert!(dry.packs_reinstated > 0 && dry.packs_deleted > 0 && dry.packs_marked > 0, "{dry:#?}");
    let n = crash_at_every_write(&f.backend, &f.scratch, false, |repo| prune(repo).map(drop));
    assert!(n >= 8, "only {n} writes");
}

/// A put of a prune that landed while its caller saw a time-out: the prune stops,
/// and the next one completes; the repository checks clean and every snapshot restores.
#[test]
fn a_prune_resumes_after_a_lost_reply_at_every_put() {
    let f = fixture();
    let n = lost_reply_at_every_put(
        &f.backend,
        |b| prune(&open(b)).map(drop),
        |inner| {
            let repo = open(inner.clone());
            assert_check_clean(&repo, ReadData::All);
            assert_all_restore(&repo, &f.scratch);
        },
    );
    assert!(n >= 5, "only {n} puts");
}

#[test]
fn locks_of_dead_processes_on_this_host_do_not_block() {
    let f = fixture();
    let repo = &f.repo;
    // A pid that surely no longer runs: a child that has exited and been reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let dead = LockInfo { host: crate::host_name(), pid, ..lock_info(LockKind::Exclusive, 1, 1) };
    repo.save_sealed(Kind::Lock, "00dd", &dead).unwrap();
    let shared = LockInfo { host: crate::host_name(), pid, ..lock_info(LockKind::Shared, 1, 1) };
    repo.save_sealed(Kind::Lock, "00ee", &shared).unwrap();
    assert!(dead.is_dead() && !dead.is_live(Utc::now()));
    let r1 = prune_ok(repo);
    assert!(r1.packs_marked > 0);
    assert!(!names(f.backend.as_ref(), Kind::Lock).iter().any(|n| n == "00dd"), "dead lock not removed");
    // The dead backup's shared lock does not hold back the deletion either.
    assert!(r1.marked_deleted_now, "{r1:#?}");
    assert_eq!(r1.packs_deleted, r1.packs_marked, "{r1:#?}");
}

/// A store with object lock: objects in `retained` cannot be deleted until "expiry".
struct Retaining {
    inner: Arc<MemoryBackend>,
    retained: Mutex<HashSet<(Kind, String)>>,
}

impl Backend for Retaining {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> BResult<()> {
        self.inner.create()
    }
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()> {
        self.inner.put(kind, name, data)
    }
    fn get(&self, kind: Kind, name: &str) -> BResult<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> BResult<Vec<u8>> {
        self.inner.get_range(kind, name, offset, len)
    }
    fn list(&self, kind: Kind) -> BResult<Vec<(String, u64)>> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: Kind, name: &str) -> BResult<()> {
        if self.retained.lock().unwrap().contains(&(kind, name.to_string())) {
            return Err(crate::backend::BackendError::Permanent {
                object: format!("{kind} {name}"),
                reason: "is under object-lock retention".into(),
            });
        }
        self.inner.delete(kind, name)
    }
    fn retained_until(&self, kind: Kind, name: &str) -> BResult<Option<chrono::DateTime<Utc>>> {
        let r = self.retained.lock().unwrap().contains(&(kind, name.to_string()));
        Ok(r.then(|| Utc::now() + chrono::Duration::days(1)))
    }
}

#[test]
fn prune_under_object_lock_deletes_nothing_retained_and_stays_consistent() {
    let f = fixture();
    let mut locked = HashSet::new();
    for kind in [Kind::Pack, Kind::Index, Kind::Snapshot, Kind::Key] {
        for n in names(f.backend.as_ref(), kind) {
            locked.insert((kind, n));
        }
    }
    let store = Arc::new(Retaining { inner: f.backend.clone(), retained: Mutex::new(locked.clone()) });
    let repo = open(store.clone());
    let before = stored_packs(&repo);
    for round in 0..3 {
        let r = prune_ok(&repo);
        assert_eq!(r.packs_deleted, 0, "round {round}: {r:#?}");
        for (kind, n) in &locked {
            assert!(f.backend.get(*kind, n).is_ok(), "round {round}: retained {kind} {n} was deleted");
        }
        assert_check_clean(&repo, ReadData::All);
    }
    assert!(stored_packs(&repo).is_superset(&before));
    assert_all_restore(&repo, &f.scratch);

    // Retention ends: the next prunes free the space, and everything still restores.
    store.retained.lock().unwrap().clear();
    let mut deleted = 0;
    for _ in 0..3 {
        deleted += prune_ok(&repo).packs_deleted;
    }
    assert!(deleted > 0, "packs kept by retention are deleted once it ends");
    assert_eq!(stored_packs(&repo), indexed_packs(&repo), "no unused pack is left");
    assert_check_clean(&repo, ReadData::All);
    assert_all_restore(&repo, &f.scratch);
}
