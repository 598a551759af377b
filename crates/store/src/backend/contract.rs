//! The `Backend` contract as named checks: one function per clause of the trait's
//! doc comment, so that a store that breaks a clause fails a test that names it.
//! `run_all` runs every clause; the tests call it on memory, local, the fault
//! wrapper with no fault armed (unit tests below) and S3 on Garage (`tests/it/backend.rs`).
//!
//! Each clause expects a created, empty store and leaves it empty again, so the
//! clauses can run in any order on one store (one bucket prefix on S3). They panic
//! on a broken clause, like any test assertion; nothing outside tests calls them.

use super::{Backend, BackendError, Kind};

/// The names the clauses use: 64 hex digits, like every content-addressed object.
fn name(c: char) -> String {
    c.to_string().repeat(64)
}

/// 10,000 bytes that are not all alike, so that a range read from the wrong offset shows.
fn pattern() -> Vec<u8> {
    (0..=255u8).cycle().take(10_000).collect()
}

const KINDS: [Kind; 9] = [
    Kind::Config,
    Kind::Key,
    Kind::Pack,
    Kind::Index,
    Kind::Snapshot,
    Kind::Lock,
    Kind::Pending,
    Kind::Anchor,
    Kind::Coordinator,
];

/// Asserts that no object of any kind is stored (the state every clause starts and ends in).
#[track_caller]
pub fn assert_empty(b: &dyn Backend) {
    for kind in KINDS {
        assert_eq!(b.list(kind).unwrap(), vec![], "{kind} objects left behind");
    }
}

/// Creates the layout and runs every clause on it.
pub fn run_all(b: &dyn Backend) {
    b.create().unwrap();
    assert_empty(b);
    missing_objects_are_not_found(b);
    put_get_roundtrip(b);
    get_range_exact_and_short_reads(b);
    list_reports_names_and_sizes(b);
    put_same_name_is_harmless(b);
    config_has_one_name(b);
    create_refuses_an_existing_repository(b);
    kinds_are_separate(b);
    delete_then_not_found(b);
    no_retention_without_object_lock(b);
}

/// Missing objects are `NotFound` for get, get_range and delete; `exists` says false.
pub fn missing_objects_are_not_found(b: &dyn Backend) {
    let pack = name('a');
    assert!(matches!(b.get(Kind::Pack, &pack), Err(BackendError::NotFound { .. })));
    assert!(matches!(b.get_range(Kind::Pack, &pack, 0, 1), Err(BackendError::NotFound { .. })));
    assert!(matches!(b.delete(Kind::Pack, &pack), Err(BackendError::NotFound { .. })));
    assert!(!b.exists(Kind::Pack, &pack).unwrap());
    assert!(matches!(b.get(Kind::Config, "config"), Err(BackendError::NotFound { .. })));
    assert!(!b.exists(Kind::Config, "config").unwrap());
    assert_empty(b);
}

/// What `put` stored, `get` returns byte for byte, and `exists` sees it.
pub fn put_get_roundtrip(b: &dyn Backend) {
    let (pack, data) = (name('a'), pattern());
    b.put(Kind::Pack, &pack, &data).unwrap();
    assert!(b.get(Kind::Pack, &pack).unwrap() == data);
    assert!(b.exists(Kind::Pack, &pack).unwrap());
    b.put(Kind::Snapshot, &pack, b"").unwrap();
    assert_eq!(b.get(Kind::Snapshot, &pack).unwrap(), b"", "an empty object is an object");
    cleanup(b, &[(Kind::Pack, &pack), (Kind::Snapshot, &pack)]);
}

/// `get_range` returns exactly the bytes asked for; a range past the end is a
/// `Permanent` error saying the object is shorter, never a short read. A zero-length
/// range at the very end is empty, not an error.
pub fn get_range_exact_and_short_reads(b: &dyn Backend) {
    let (pack, data) = (name('a'), pattern());
    b.put(Kind::Pack, &pack, &data).unwrap();
    assert_eq!(b.get_range(Kind::Pack, &pack, 100, 50).unwrap(), &data[100..150]);
    assert_eq!(b.get_range(Kind::Pack, &pack, 9_990, 10).unwrap(), &data[9_990..]);
    assert_eq!(b.get_range(Kind::Pack, &pack, 10_000, 0).unwrap(), Vec::<u8>::new());
    let e = b.get_range(Kind::Pack, &pack, 9_995, 10).unwrap_err();
    assert!(matches!(e, BackendError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("shorter"), "{e}");
    cleanup(b, &[(Kind::Pack, &pack)]);
}

/// `list` gives every object of one kind with its size, sorted by name.
pub fn list_reports_names_and_sizes(b: &dyn Backend) {
    let (pack, other) = (name('a'), name('c'));
    b.put(Kind::Pack, &other, b"x").unwrap();
    b.put(Kind::Pack, &pack, &pattern()).unwrap();
    b.put(Kind::Snapshot, &pack, b"a snapshot").unwrap();
    assert_eq!(b.list(Kind::Pack).unwrap(), vec![(pack.clone(), 10_000), (other.clone(), 1)]);
    assert_eq!(b.list(Kind::Snapshot).unwrap(), vec![(pack.clone(), 10)]);
    assert_eq!(b.list(Kind::Index).unwrap(), vec![]);
    cleanup(b, &[(Kind::Pack, &pack), (Kind::Pack, &other), (Kind::Snapshot, &pack)]);
}

/// Putting the same name again is harmless: objects are named by their content, so
/// a retried or repeated upload writes the same bytes, and the object stays whole.
pub fn put_same_name_is_harmless(b: &dyn Backend) {
    let (pack, data) = (name('a'), pattern());
    b.put(Kind::Pack, &pack, &data).unwrap();
    b.put(Kind::Pack, &pack, &data).unwrap();
    assert!(b.get(Kind::Pack, &pack).unwrap() == data);
    assert_eq!(b.list(Kind::Pack).unwrap(), vec![(pack.clone(), 10_000)]);
    cleanup(b, &[(Kind::Pack, &pack)]);
}

/// The repository config is one object whatever name is passed with `Kind::Config`:
/// put, get, exists, list and delete all reach the same one, listed as `config`.
pub fn config_has_one_name(b: &dyn Backend) {
    b.put(Kind::Config, "config", b"cfg").unwrap();
    assert_eq!(b.get(Kind::Config, "config").unwrap(), b"cfg");
    assert!(b.exists(Kind::Config, "config").unwrap());
    assert_eq!(b.list(Kind::Config).unwrap(), vec![("config".to_string(), 3)]);
    b.put(Kind::Config, "", b"cfg2").unwrap();
    assert_eq!(b.get(Kind::Config, "config").unwrap(), b"cfg2");
    assert_eq!(b.get(Kind::Config, "").unwrap(), b"cfg2");
    assert_eq!(b.list(Kind::Config).unwrap(), vec![("config".to_string(), 4)]);
    b.delete(Kind::Config, "").unwrap();
    assert!(b.get(Kind::Config, "config").unwrap_err().is_not_found(), "delete reached another object");
    assert_empty(b);
}

/// `create` refuses a place that already holds a repository config (`AlreadyExists`).
pub fn create_refuses_an_existing_repository(b: &dyn Backend) {
    b.put(Kind::Config, "config", b"cfg").unwrap();
    assert!(matches!(b.create(), Err(BackendError::AlreadyExists { .. })));
    assert_eq!(b.get(Kind::Config, "config").unwrap(), b"cfg", "a refused create changed nothing");
    cleanup(b, &[(Kind::Config, "config")]);
}

/// Kinds are separate folders: the same name in two kinds is two objects.
pub fn kinds_are_separate(b: &dyn Backend) {
    let other = name('c');
    b.put(Kind::Pack, &other, b"x").unwrap();
    b.put(Kind::Index, &other, b"an index").unwrap();
    assert_eq!(b.get(Kind::Index, &other).unwrap(), b"an index");
    assert_eq!(b.get(Kind::Pack, &other).unwrap(), b"x");
    b.delete(Kind::Index, &other).unwrap();
    assert_eq!(b.get(Kind::Pack, &other).unwrap(), b"x", "deleting an index left the pack alone");
    cleanup(b, &[(Kind::Pack, &other)]);
}

/// After `delete` the object is gone for get, exists and list; other objects and
/// kinds are untouched; deleting it again is `NotFound`.
pub fn delete_then_not_found(b: &dyn Backend) {
    let (pack, other) = (name('a'), name('c'));
    b.put(Kind::Pack, &pack, &pattern()).unwrap();
    b.put(Kind::Pack, &other, b"x").unwrap();
    b.put(Kind::Snapshot, &pack, b"a snapshot").unwrap();
    b.delete(Kind::Pack, &pack).unwrap();
    assert!(matches!(b.get(Kind::Pack, &pack), Err(BackendError::NotFound { .. })));
    assert!(!b.exists(Kind::Pack, &pack).unwrap());
    assert_eq!(b.list(Kind::Pack).unwrap(), vec![(other.clone(), 1)]);
    assert_eq!(b.list(Kind::Snapshot).unwrap().len(), 1, "deleting a pack left other kinds alone");
    assert!(b.delete(Kind::Pack, &pack).unwrap_err().is_not_found());
    cleanup(b, &[(Kind::Pack, &other), (Kind::Snapshot, &pack)]);
}

/// A store without object-lock retention reports none, so maintenance may delete.
pub fn no_retention_without_object_lock(b: &dyn Backend) {
    let pack = name('a');
    b.put(Kind::Pack, &pack, b"x").unwrap();
    assert_eq!(b.retained_until(Kind::Pack, &pack).unwrap(), None);
    // A hold's extension sets nothing there either.
    assert_eq!(b.lock_period(), None);
    assert_eq!(b.extend_retention(Kind::Pack, &pack, chrono::Utc::now()).unwrap(), None);
    assert_eq!(b.retained_until(Kind::Pack, &pack).unwrap(), None);
    cleanup(b, &[(Kind::Pack, &pack)]);
}

/// Deletes what a clause stored and checks that the store is empty again.
#[track_caller]
fn cleanup(b: &dyn Backend, objects: &[(Kind, &str)]) {
    for (kind, name) in objects {
        b.delete(*kind, name).unwrap_or_else(|e| panic!("cleanup: {e}"));
    }
    assert_empty(b);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::backend::fault::FaultBackend;
    use crate::backend::local::LocalBackend;
    use crate::backend::memory::MemoryBackend;

    #[test]
    fn memory_backend_keeps_the_contract() {
        super::run_all(&MemoryBackend::new());
    }

    #[test]
    fn local_backend_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        super::run_all(&LocalBackend::new(dir.path().join("repo")));
    }

    #[test]
    fn fault_backend_with_no_fault_armed_keeps_the_contract() {
        let f = FaultBackend::pass_through(Arc::new(MemoryBackend::new()));
        super::run_all(&f);
        assert!(!f.tripped());
    }
}
