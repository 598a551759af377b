//! The `Backend` contract (see `src/backend/mod.rs`): one suite, run on every
//! implementation (memory, local directory, and S3 on a real Garage server).

use kura::backend::local::LocalBackend;
use kura::backend::memory::MemoryBackend;
use kura::backend::s3::S3Backend;
use kura::backend::{Backend, BackendError, Kind};

use crate::servers::Garage;

pub fn contract(b: &dyn Backend) {
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
    assert_eq!(b.list(Kind::Config).unwrap(), vec![("config".to_string(), 3)]);
    b.put(Kind::Config, "", b"cfg2").unwrap(); // the config has one name, whatever is passed
    assert_eq!(b.get(Kind::Config, "config").unwrap(), b"cfg2");

    // Kinds are separate folders: the same name in two kinds is two objects.
    b.put(Kind::Index, &other, b"an index").unwrap();
    assert_eq!(b.get(Kind::Index, &other).unwrap(), b"an index");
    assert_eq!(b.get(Kind::Pack, &other).unwrap(), b"x");

    // delete.
    b.delete(Kind::Pack, &pack).unwrap();
    assert!(matches!(b.get(Kind::Pack, &pack), Err(BackendError::NotFound { .. })));
    assert_eq!(b.list(Kind::Pack).unwrap(), vec![(other.clone(), 1)]);
    assert_eq!(b.list(Kind::Snapshot).unwrap().len(), 1, "deleting a pack left other kinds alone");
    assert!(b.delete(Kind::Pack, &pack).unwrap_err().is_not_found());
    assert_eq!(b.retained_until(Kind::Pack, &other).unwrap(), None);
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

/// S3 on Garage: the same contract, plus what only S3 has (prefixes sharing a bucket,
/// paginated listings, multipart uploads).
#[test]
fn s3_backend_keeps_the_contract_on_garage() {
    let g = Garage::start();
    let b = S3Backend::open(&g.location("kura-contract/site-a", "&multipart_threshold=5MiB&part_size=5MiB")).unwrap();
    assert_eq!(b.location(), format!("s3:http://127.0.0.1:{}/kura-contract/site-a", g.port));
    contract(&b);

    // Another prefix in the same bucket is another repository.
    let other = S3Backend::open(&g.location("kura-contract/site-b", "")).unwrap();
    other.create().unwrap();
    assert_eq!(other.list(Kind::Pack).unwrap(), vec![]);
    assert!(!other.exists(Kind::Config, "config").unwrap());

    // A multipart upload (three parts, the last one short), read back whole and in ranges.
    let big: Vec<u8> = (0..(12u32 << 20) + 12345).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let name = "ef".repeat(32);
    b.put(Kind::Pack, &name, &big).unwrap();
    assert!(b.get(Kind::Pack, &name).unwrap() == big);
    let at = (5u64 << 20) - 10;
    assert!(b.get_range(Kind::Pack, &name, at, 20).unwrap() == big[at as usize..at as usize + 20]);

    // Listings page through more than 1000 objects.
    std::thread::scope(|s| {
        for t in 0..8 {
            let other = &other;
            s.spawn(move || {
                for i in (t..1010).step_by(8) {
                    other.put(Kind::Snapshot, &format!("{i:064x}"), b"s").unwrap();
                }
            });
        }
    });
    let l = other.list(Kind::Snapshot).unwrap();
    assert_eq!(l.len(), 1010);
    assert_eq!(l[1009].0, format!("{:064x}", 1009));
    assert!(b.list(Kind::Snapshot).unwrap().len() < 10, "prefixes do not leak into each other");
}
