//! The `Backend` contract (see `src/backend/mod.rs`), checked on every implementation.

use kura::backend::local::LocalBackend;
use kura::backend::memory::MemoryBackend;
use kura::backend::{Backend, BackendError, Kind};

fn contract(b: &dyn Backend) {
    b.create().unwrap();
    let pack = "ab".repeat(32);
    let other = "cd".repeat(32);

    // Missing objects are NotFound, for every operation.
    assert!(matches!(b.get(Kind::Pack, &pack), Err(BackendError::NotFound { .. })));
    assert!(matches!(b.get_range(Kind::Pack, &pack, 0, 1), Err(BackendError::NotFound { .. })));
    assert!(matches!(b.delete(Kind::Pack, &pack), Err(BackendError::NotFound { .. })));
    assert!(!b.exists(Kind::Pack, &pack).unwrap());
    assert_eq!(b.list(Kind::Pack).unwrap(), vec![]);

    // put / get / get_range / exists / list.
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    b.put(Kind::Pack, &pack, &data).unwrap();
    b.put(Kind::Pack, &other, b"x").unwrap();
    b.put(Kind::Snapshot, &pack, b"a snapshot").unwrap();
    assert_eq!(b.get(Kind::Pack, &pack).unwrap(), data);
    assert_eq!(b.get_range(Kind::Pack, &pack, 100, 50).unwrap(), &data[100..150]);
    assert_eq!(b.get_range(Kind::Pack, &pack, 9_990, 10).unwrap(), &data[9_990..]);
    assert_eq!(b.get_range(Kind::Pack, &pack, 10_000, 0).unwrap(), Vec::<u8>::new());
    assert!(b.exists(Kind::Pack, &pack).unwrap());
    assert_eq!(b.list(Kind::Pack).unwrap(), vec![(pack.clone(), 10_000), (other.clone(), 1)]);
    assert_eq!(b.list(Kind::Snapshot).unwrap(), vec![(pack.clone(), 10)]);
    assert_eq!(b.list(Kind::Index).unwrap(), vec![]);

    // A short object is an error, not a short read.
    let e = b.get_range(Kind::Pack, &pack, 9_995, 10).unwrap_err();
    assert!(matches!(e, BackendError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("shorter"), "{e}");

    // Putting the same name again is harmless.
    b.put(Kind::Pack, &pack, &data).unwrap();
    assert_eq!(b.get(Kind::Pack, &pack).unwrap(), data);

    // The config, and create refusing an existing repository.
    b.put(Kind::Config, "config", b"cfg").unwrap();
    assert_eq!(b.get(Kind::Config, "config").unwrap(), b"cfg");
    assert!(b.exists(Kind::Config, "config").unwrap());
    assert!(matches!(b.create(), Err(BackendError::AlreadyExists { .. })));

    // delete.
    b.delete(Kind::Pack, &pack).unwrap();
    assert!(matches!(b.get(Kind::Pack, &pack), Err(BackendError::NotFound { .. })));
    assert_eq!(b.list(Kind::Pack).unwrap(), vec![(other, 1)]);
    assert_eq!(b.list(Kind::Snapshot).unwrap().len(), 1, "deleting a pack left other kinds alone");
}

#[test]
fn memory_backend_keeps_the_contract() {
    contract(&MemoryBackend::new());
}

#[test]
fn local_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let b = LocalBackend::new(&root);
    contract(&b);
    // Packs live under data/XX/ by their first two hex digits; temp files of
    // unfinished writes never show up in a listing.
    assert!(root.join("data/cd").join("cd".repeat(32)).is_file());
    std::fs::write(root.join("tmp").join("half-written"), b"junk").unwrap();
    assert_eq!(b.list(Kind::Pack).unwrap(), vec![("cd".repeat(32), 1)]);
    assert_eq!(b.location(), root.display().to_string());
}
