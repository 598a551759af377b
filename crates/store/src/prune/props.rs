//! Property test of the prune planner on random hand-built repositories: whatever
//! the packs, the sharing between snapshots, the forgotten snapshots and the repack
//! threshold, every blob a remaining snapshot uses stays reachable: the plan keeps
//! its pack or copies it into a new one, and after the prune it reads back intact.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;

use super::plan::PackAction;
use super::PruneOptions;
use crate::backend::memory::MemoryBackend;
use crate::backend::{Backend, Kind};
use crate::check::{self, ReadData};
use crate::progress::NoProgress;
use crate::repo::testing::{cheap_repo, dir_node, file_node, snapshot_of, Blobs};
use crate::repo::Repository;
use crate::types::{BlobId, BlobType};

const PASS: &[u8] = b"prune props";

/// A fresh repository per case, copied from one made once: making a repository
/// derives a full-strength key, which would take most of the test's time.
fn fresh_repo() -> Arc<Repository> {
    static TEMPLATE: OnceLock<Vec<(Kind, String, Vec<u8>)>> = OnceLock::new();
    let objects = TEMPLATE.get_or_init(|| {
        let b = cheap_repo(PASS).backend().clone();
        let mut out = vec![(Kind::Config, "config".to_string(), b.get(Kind::Config, "config").unwrap())];
        for (name, _) in b.list(Kind::Key).unwrap() {
            out.push((Kind::Key, name.clone(), b.get(Kind::Key, &name).unwrap()));
        }
        out
    });
    let backend = Arc::new(MemoryBackend::new());
    for (kind, name, data) in objects {
        backend.put(*kind, name, data).unwrap();
    }
    Arc::new(Repository::open(backend, PASS).unwrap())
}

/// Contents from a small space of seeds, so that some blobs are stored in two packs.
fn content(seed: u8) -> Vec<u8> {
    let mut v = format!("blob {seed} ").into_bytes();
    v.resize(40 + seed as usize * 37, seed);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn every_blob_a_remaining_snapshot_uses_stays_reachable(
        packs in prop::collection::vec(prop::collection::btree_set(0u8..16, 1..6), 1..5),
        snaps in prop::collection::vec((prop::collection::vec(any::<prop::sample::Index>(), 0..6), any::<bool>()), 1..5),
        pct in prop::sample::select(vec![0.0, 25.0, 100.0]),
    ) {
        let repo = fresh_repo();
        let mut data: HashMap<BlobId, Vec<u8>> = HashMap::new();
        for seeds in &packs {
            let mut b = Blobs::new(&repo);
            for &s in seeds {
                data.insert(b.add(BlobType::Data, &content(s)), content(s));
            }
            b.store();
        }
        let ids: Vec<BlobId> = data.keys().copied().collect::<BTreeSet<_>>().into_iter().collect();
        let mut used: BTreeSet<BlobId> = BTreeSet::new();
        for (picks, keep) in &snaps {
            let chosen: BTreeSet<BlobId> = picks.iter().map(|p| ids[p.index(ids.len())]).collect();
            let mut b = Blobs::new(&repo);
            let nodes = chosen.iter().enumerate().map(|(i, id)| file_node(&format!("f{i}"), *id, data[id].len() as u64)).collect();
            let inner = b.dir(nodes);
            let root = b.dir(vec![dir_node("d", inner)]);
            b.store();
            let snap = repo.save_json(Kind::Snapshot, &snapshot_of(root)).unwrap();
            if *keep {
                used.extend(chosen.iter().copied());
                used.extend([inner, root]);
            } else {
                repo.backend().delete(Kind::Snapshot, &snap.to_hex()).unwrap();
            }
        }

        let opts = PruneOptions { dry_run: false, max_unused_pct: pct };
        let p = super::plan(&repo, &opts).unwrap();
        let repacked: BTreeSet<BlobId> = p.repack_sources().flat_map(|(_, blobs)| blobs).map(|(id, _)| id).collect();
        for id in &used {
            let loc = p.index.get(id).expect("a used blob is indexed");
            match p.actions[&loc.pack] {
                PackAction::Keep => {}
                PackAction::Repack => prop_assert!(repacked.contains(id), "a used blob of a repacked pack is not copied"),
                a => prop_assert!(false, "a used blob's pack is {:?}", a),
            }
        }

        drop(p);
        super::run(&repo, &opts, &NoProgress).unwrap();
        let index = repo.load_index().unwrap();
        for id in &used {
            let loc = index.get(id).expect("still indexed after the prune");
            let bytes = repo.read_blob(id, &loc).unwrap();
            if let Some(d) = data.get(id) {
                prop_assert_eq!(&bytes, d);
            }
        }
        let r = check::run(&repo, ReadData::All, &NoProgress).unwrap();
        prop_assert!(r.is_clean(), "{:?}", r.errors);
    }
}
