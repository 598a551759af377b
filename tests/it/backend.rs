//! The `Backend` contract (stated on the trait, checked clause by clause in
//! `kura_store::backend::contract`) on a real Garage server, and what only the local
//! and S3 stores have. Memory, local and the fault wrapper run it in the store's
//! unit tests too.

use kura::backend::contract;
use kura::backend::local::LocalBackend;
use kura::backend::memory::MemoryBackend;
use kura::backend::s3::S3Backend;
use kura::backend::{Backend, Kind};

use crate::servers::Garage;

#[test]
fn memory_backend_keeps_the_contract() {
    contract::run_all(&MemoryBackend::new());
}

#[test]
fn local_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let b = LocalBackend::new(&root);
    contract::run_all(&b);
    // Packs live under data/XX/ by their first two hex digits; temp files of
    // unfinished writes never show up in a listing.
    b.put(Kind::Pack, &"cd".repeat(32), b"x").unwrap();
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
    contract::run_all(&b);

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
