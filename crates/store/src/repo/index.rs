//! The index: which pack holds each blob.
//!
//! On disk, index files list packs and their blobs (JSON, zstd, sealed). In memory,
//! entries live in one sorted `Vec` of fixed-size records (about 48 bytes per blob),
//! searched by binary search, plus a small hash map for blobs added since the last
//! sort. 1 million blobs take about 48 MB.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::pack::PackEntry;
use crate::types::{BlobId, BlobType, PackId};

/// An index file as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct IndexFile {
    pub packs: Vec<IndexPack>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexPack {
    pub id: PackId,
    /// Size of the pack file; `check` compares it with the stored object.
    pub size: u64,
    pub blobs: Vec<IndexBlob>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexBlob {
    pub id: BlobId,
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    pub compressed: bool,
}

impl IndexPack {
    pub fn blob(id: BlobId, loc: &Location) -> IndexBlob {
        IndexBlob {
            id,
            blob_type: loc.blob_type,
            offset: loc.offset,
            length: loc.length,
            raw_length: loc.raw_length,
            compressed: loc.compressed,
        }
    }

    pub fn new(id: PackId, size: u64, entries: &[PackEntry]) -> Self {
        IndexPack {
            id,
            size,
            blobs: entries
                .iter()
                .map(|e| IndexBlob {
                    id: e.id,
                    blob_type: e.blob_type,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                    compressed: e.compressed,
                })
                .collect(),
        }
    }
}

/// Where one blob lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    pub blob_type: BlobType,
    pub compressed: bool,
}

impl Location {
    pub fn entry(&self, id: BlobId) -> PackEntry {
        PackEntry {
            id,
            blob_type: self.blob_type,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
            compressed: self.compressed,
        }
    }
}

#[derive(Clone, Copy)]
struct Slot {
    id: BlobId,
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
    flags: u8,
}

const F_TREE: u8 = 1;
const F_COMPRESSED: u8 = 2;

/// Same order as `BlobId`'s `Ord`, but decided by one integer compare in almost
/// every case (ids are uniformly random), without a `memcmp` call.
fn cmp_ids(a: &BlobId, b: &BlobId) -> std::cmp::Ordering {
    let head = |x: &BlobId| u64::from_be_bytes(x.0[..8].try_into().expect("8 bytes"));
    head(a).cmp(&head(b)).then_with(|| a.0[8..].cmp(&b.0[8..]))
}

#[derive(Default)]
pub struct Index {
    packs: Vec<PackId>,
    pack_no: HashMap<PackId, u32>,
    pack_sizes: Vec<u64>,
    sorted: Vec<Slot>,
    recent: HashMap<BlobId, Slot>,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every blob of a pack. A blob already known keeps its first location.
    pub fn add_pack(&mut self, p: &IndexPack) {
        let no = match self.pack_no.get(&p.id) {
            Some(&n) => n,
            None => {
                let n = self.packs.len() as u32;
                self.packs.push(p.id);
                self.pack_sizes.push(p.size);
                self.pack_no.insert(p.id, n);
                n
            }
        };
        for b in &p.blobs {
            if self.get(&b.id).is_some() {
                continue;
            }
            let flags = (if b.blob_type == BlobType::Tree { F_TREE } else { 0 })
                | (if b.compressed { F_COMPRESSED } else { 0 });
            let slot = Slot { id: b.id, pack: no, offset: b.offset, length: b.length, raw_length: b.raw_length, flags };
            self.recent.insert(b.id, slot);
        }
        if self.recent.len() > 65_536 {
            self.compact();
        }
    }

    /// Moves recent entries into the sorted vector.
    pub fn compact(&mut self) {
        self.sorted.extend(self.recent.drain().map(|(_, s)| s));
        self.sorted.sort_unstable_by_key(|s| s.id);
        self.sorted.shrink_to_fit();
    }

    fn slot(&self, id: &BlobId) -> Option<&Slot> {
        if let Ok(i) = self.sorted.binary_search_by(|s| cmp_ids(&s.id, id)) {
            return Some(&self.sorted[i]);
        }
        self.recent.get(id)
    }

    pub fn get(&self, id: &BlobId) -> Option<Location> {
        self.slot(id).map(|s| self.location(s))
    }

    fn location(&self, s: &Slot) -> Location {
        Location {
            pack: self.packs[s.pack as usize],
            offset: s.offset,
            length: s.length,
            raw_length: s.raw_length,
            blob_type: if s.flags & F_TREE != 0 { BlobType::Tree } else { BlobType::Data },
            compressed: s.flags & F_COMPRESSED != 0,
        }
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.slot(id).is_some()
    }

    pub fn has_pack(&self, id: &PackId) -> bool {
        self.pack_no.contains_key(id)
    }

    /// Every indexed pack with the size the index expects.
    pub fn packs(&self) -> impl Iterator<Item = (PackId, u64)> + '_ {
        self.packs.iter().copied().zip(self.pack_sizes.iter().copied())
    }

    /// Position of a blob in the sorted table. Only for a compacted index (as
    /// `Repository::load_index` returns): positions let prune keep a 1-bit-per-blob
    /// "used" map instead of a set of ids.
    pub fn position(&self, id: &BlobId) -> Option<usize> {
        debug_assert!(self.recent.is_empty(), "position() needs a compacted index");
        self.sorted.binary_search_by(|s| cmp_ids(&s.id, id)).ok()
    }

    /// The blob at a position (see `position`).
    pub fn at(&self, pos: usize) -> (BlobId, Location) {
        let s = &self.sorted[pos];
        (s.id, self.location(s))
    }

    /// Every position, ordered by pack and offset: one pass builds per-pack lists
    /// without materialising them all at once.
    pub fn positions_by_pack(&self) -> Vec<u32> {
        let mut v: Vec<u32> = (0..self.sorted.len() as u32).collect();
        v.sort_unstable_by_key(|&p| {
            let s = &self.sorted[p as usize];
            (s.pack, s.offset)
        });
        v
    }

    /// The packs that hold at least one tree blob, with their sizes: what a walk of
    /// the snapshots' trees reads (the metadata cache fetches these whole).
    pub fn tree_packs(&self) -> Vec<(PackId, u64)> {
        let mut has_tree = vec![false; self.packs.len()];
        for s in self.sorted.iter().chain(self.recent.values()).filter(|s| s.flags & F_TREE != 0) {
            has_tree[s.pack as usize] = true;
        }
        self.packs().zip(has_tree).filter(|(_, t)| *t).map(|(p, _)| p).collect()
    }

    pub fn blob_count(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Every (blob, location), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (BlobId, Location)> + '_ {
        self.sorted.iter().chain(self.recent.values()).map(|s| (s.id, self.location(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(n: u8, ids: &[u8]) -> IndexPack {
        IndexPack {
            id: PackId([n; 32]),
            size: 100,
            blobs: ids
                .iter()
                .enumerate()
                .map(|(i, b)| IndexBlob {
                    id: BlobId([*b; 32]),
                    blob_type: BlobType::Data,
                    offset: i as u32 * 10,
                    length: 10,
                    raw_length: 5,
                    compressed: i % 2 == 0,
                })
                .collect(),
        }
    }

    #[test]
    fn lookup_before_and_after_compaction() {
        let mut idx = Index::new();
        idx.add_pack(&pack(1, &[1, 2, 3]));
        idx.add_pack(&pack(2, &[3, 4]));
        assert_eq!(idx.get(&BlobId([3; 32])).unwrap().pack, PackId([1; 32]));
        idx.compact();
        let l = idx.get(&BlobId([4; 32])).unwrap();
        assert_eq!((l.pack, l.offset, l.compressed), (PackId([2; 32]), 10, false));
        assert!(idx.get(&BlobId([9; 32])).is_none());
        assert_eq!(idx.blob_count(), 4);
        assert_eq!(idx.packs().count(), 2);
        assert_eq!(idx.iter().count(), 4);
    }

    /// Ids that often share their first 8 bytes, so that both halves of `cmp_ids`
    /// decide some comparisons.
    fn id_of(seed: (u8, u8, u8)) -> BlobId {
        let mut b = [0u8; 32];
        b[0] = seed.0 % 3;
        b[7] = seed.1 % 2;
        b[8] = seed.2;
        b[31] = seed.1;
        BlobId(b)
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add(u8, Vec<((u8, u8, u8), bool, bool)>),
        Compact,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0u8..6, prop::collection::vec((any::<(u8, u8, u8)>(), any::<bool>(), any::<bool>()), 0..12))
                .prop_map(|(p, b)| Op::Add(p, b)),
            1 => Just(Op::Compact),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// `add_pack`, `compact` and the lookups agree with a HashMap in which a blob
        /// keeps its first location.
        #[test]
        fn agrees_with_a_hashmap_model(ops in proptest::collection::vec(op(), 1..20), probes in proptest::collection::vec(proptest::prelude::any::<(u8, u8, u8)>(), 8)) {
            let mut idx = Index::new();
            let mut model: HashMap<BlobId, Location> = HashMap::new();
            let mut packs: Vec<(PackId, u64)> = Vec::new();
            for op in &ops {
                match op {
                    Op::Compact => idx.compact(),
                    Op::Add(n, blobs) => {
                        let id = PackId([*n; 32]);
                        let size = 1000 + *n as u64;
                        let blobs: Vec<IndexBlob> = blobs.iter().enumerate().map(|(i, (seed, tree, compressed))| IndexBlob {
                            id: id_of(*seed),
                            blob_type: if *tree { BlobType::Tree } else { BlobType::Data },
                            offset: i as u32 * 7,
                            length: 7,
                            raw_length: seed.2 as u32,
                            compressed: *compressed,
                        }).collect();
                        for b in &blobs {
                            model.entry(b.id).or_insert(Location {
                                pack: id,
                                offset: b.offset,
                                length: b.length,
                                raw_length: b.raw_length,
                                blob_type: b.blob_type,
                                compressed: b.compressed,
                            });
                        }
                        if !packs.iter().any(|(p, _)| *p == id) {
                            packs.push((id, size));
                        }
                        idx.add_pack(&IndexPack { id, size, blobs });
                    }
                }
                for (id, loc) in &model {
                    proptest::prop_assert_eq!(idx.get(id), Some(*loc));
                }
                for p in &probes {
                    let id = id_of(*p);
                    proptest::prop_assert_eq!(idx.get(&id), model.get(&id).copied());
                    proptest::prop_assert_eq!(idx.contains(&id), model.contains_key(&id));
                }
                proptest::prop_assert_eq!(idx.blob_count(), model.len());
            }
            proptest::prop_assert_eq!(idx.packs().collect::<Vec<_>>(), packs.clone());
            let listed: HashMap<BlobId, Location> = idx.iter().collect();
            proptest::prop_assert_eq!(&listed, &model);
            idx.compact();
            for (id, loc) in &model {
                let pos = idx.position(id).expect("a compacted index has every blob");
                proptest::prop_assert_eq!(idx.at(pos), (*id, *loc));
            }
            let by_pack: Vec<(PackId, u32)> =
                idx.positions_by_pack().iter().map(|&p| { let l = idx.at(p as usize).1; (l.pack, l.offset) }).collect();
            let order = |p: &PackId| packs.iter().position(|(x, _)| x == p).unwrap();
            proptest::prop_assert!(by_pack.windows(2).all(|w| (order(&w[0].0), w[0].1) <= (order(&w[1].0), w[1].1)));
        }
    }
}
