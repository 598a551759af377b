//! Reading a file of a mounted snapshot at any offset: which blobs hold a byte range
//! ([`ContentMap`], pure), and a small least-recently-used cache of decrypted blobs
//! ([`BlobCache`], bounded in bytes).

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::repo::index::Index;
use crate::repo::tree::Node;
use crate::types::BlobId;

/// Where each content blob of a file starts and ends in the file.
#[derive(Clone, Debug)]
pub struct ContentMap {
    /// The end offset of each blob: blob `i` is `ends[i-1]..ends[i]`.
    ends: Vec<u64>,
}

/// The part `start..end` of content blob number `blob`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub blob: usize,
    pub start: usize,
    pub end: usize,
}

impl ContentMap {
    /// The map of a file whose blobs have these plaintext sizes.
    pub fn from_sizes(sizes: &[u64]) -> ContentMap {
        let mut end = 0;
        ContentMap {
            ends: sizes
                .iter()
                .map(|s| {
                    end += s;
                    end
                })
                .collect(),
        }
    }

    /// The map of a file node, with blob sizes from the index. A blob missing from
    /// the index, or sizes that do not add up to the node's size, are errors naming
    /// the file.
    pub fn of(node: &Node, index: &Index) -> Result<ContentMap> {
        let mut sizes = Vec::with_capacity(node.content.len());
        for id in &node.content {
            let loc = index.get(id).ok_or_else(|| Error::MissingBlob { blob: format!("data {id}") })?;
            sizes.push(u64::from(loc.raw_length));
        }
        let map = ContentMap::from_sizes(&sizes);
        if map.len() != node.size {
            return Err(Error::corrupt(
                format!("file {}", node.name.lossy()),
                format!("its blobs hold {} bytes, its size is {}", map.len(), node.size),
            ));
        }
        Ok(map)
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many blobs the file has.
    pub fn blobs(&self) -> usize {
        self.ends.len()
    }

    /// The blob holding byte `offset`, or `None` at or past the end.
    pub fn blob_at(&self, offset: u64) -> Option<usize> {
        let i = self.ends.partition_point(|&e| e <= offset);
        (i < self.ends.len()).then_some(i)
    }

    /// The parts of blobs that hold `offset..offset + len` (cut at the file's end),
    /// in file order.
    pub fn spans(&self, offset: u64, len: u64) -> Vec<Span> {
        let end = offset.saturating_add(len).min(self.len());
        let mut out = Vec::new();
        let Some(mut i) = self.blob_at(offset) else { return out };
        let mut pos = offset;
        while pos < end {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            let stop = self.ends[i].min(end);
            if stop > pos {
                out.push(Span { blob: i, start: (pos - start) as usize, end: (stop - start) as usize });
            }
            pos = stop;
            i += 1;
        }
        out
    }
}

/// Decrypted blobs, least recently used dropped first once their sizes pass the bound.
pub struct BlobCache {
    max_bytes: usize,
    bytes: usize,
    tick: u64,
    blobs: HashMap<BlobId, (Arc<Vec<u8>>, u64)>,
}

impl BlobCache {
    pub fn new(max_bytes: usize) -> BlobCache {
        BlobCache { max_bytes, bytes: 0, tick: 0, blobs: HashMap::new() }
    }

    /// A cached blob, marked as just used.
    pub fn get(&mut self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        self.blobs.get_mut(id).map(|(b, t)| {
            *t = tick;
            b.clone()
        })
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    /// Adds a blob, then drops the least recently used ones (never the one just
    /// added) until the cache is within its bound.
    pub fn insert(&mut self, id: BlobId, blob: Arc<Vec<u8>>) {
        self.tick += 1;
        if let Some((old, _)) = self.blobs.insert(id, (blob.clone(), self.tick)) {
            self.bytes -= old.len();
        }
        self.bytes += blob.len();
        while self.bytes > self.max_bytes && self.blobs.len() > 1 {
            let oldest = self.blobs.iter().filter(|(k, _)| **k != id).min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k);
            let Some(k) = oldest else { break };
            if let Some((b, _)) = self.blobs.remove(&k) {
                self.bytes -= b.len();
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_blob_parts() {
        let m = ContentMap::from_sizes(&[10, 5, 20]);
        assert_eq!(m.len(), 35);
        assert_eq!(
            (m.blob_at(0), m.blob_at(9), m.blob_at(10), m.blob_at(34), m.blob_at(35)),
            (Some(0), Some(0), Some(1), Some(2), None)
        );
        assert_eq!(
            m.spans(8, 10),
            vec![
                Span { blob: 0, start: 8, end: 10 },
                Span { blob: 1, start: 0, end: 5 },
                Span { blob: 2, start: 0, end: 3 }
            ]
        );
        assert_eq!(m.spans(30, 100), vec![Span { blob: 2, start: 15, end: 20 }]);
        assert_eq!(m.spans(35, 10), vec![]);
        assert_eq!(m.spans(u64::MAX, u64::MAX), vec![]);
        assert!(ContentMap::from_sizes(&[]).spans(0, 10).is_empty());
    }

    #[test]
    fn spans_cover_every_range_exactly() {
        let sizes = [3u64, 1, 7, 2, 9];
        let m = ContentMap::from_sizes(&sizes);
        for off in 0..=m.len() + 1 {
            for len in 0..=m.len() + 1 {
                let got: u64 = m.spans(off, len).iter().map(|s| (s.end - s.start) as u64).sum();
                let want = off.saturating_add(len).min(m.len()).saturating_sub(off);
                assert_eq!(got, want, "offset {off} len {len}");
            }
        }
    }

    #[test]
    fn the_cache_drops_the_least_recently_used_blob() {
        let id = |n: u8| BlobId([n; 32]);
        let mut c = BlobCache::new(25);
        c.insert(id(1), Arc::new(vec![0; 10]));
        c.insert(id(2), Arc::new(vec![0; 10]));
        assert!(c.get(&id(1)).is_some());
        c.insert(id(3), Arc::new(vec![0; 10]));
        assert!(c.contains(&id(1)) && !c.contains(&id(2)) && c.contains(&id(3)));
        assert_eq!(c.bytes(), 20);
        // One blob larger than the bound is still kept, alone.
        c.insert(id(4), Arc::new(vec![0; 40]));
        assert_eq!((c.len(), c.bytes()), (1, 40));
    }
}
