//! The write half of a backup: compress + encrypt on worker threads, one packer
//! thread that owns the open packs, uploads them, and only then records them in
//! index files. Bounded channels keep memory flat whatever the input size.
//!
//! ```text
//! caller --(id, type, bytes)--> [workers: zstd + seal] --(sealed)--> [packer] --> backend
//!                                                                      |
//!                                                 index file every N packs and at the end
//! ```

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::repo::index::{IndexFile, IndexPack};
use crate::repo::pack::PackBuilder;
use crate::repo::Repository;
use crate::types::{BlobId, BlobType};

/// Packs per index file written during a backup; bounds the work a crash loses.
const PACKS_PER_INDEX: usize = 32;

struct Job {
    id: BlobId,
    blob_type: BlobType,
    data: Vec<u8>,
}

struct Sealed {
    id: BlobId,
    blob_type: BlobType,
    sealed: Vec<u8>,
    raw_len: u32,
    compressed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct SaverStats {
    pub blobs: u64,
    pub packs: u64,
    /// Bytes of packs written.
    pub bytes: u64,
}

/// Accepts new blobs and makes them durable. `finish` must be called; dropping
/// without it abandons the open packs (nothing half-written is left behind).
pub struct BlobSaver {
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    packer: Option<JoinHandle<Result<SaverStats>>>,
}

impl BlobSaver {
    pub fn start(repo: Arc<Repository>, threads: usize, level: i32) -> Self {
        let (tx, rx) = bounded::<Job>(threads * 2);
        let (stx, srx) = bounded::<Sealed>(threads * 2);
        let workers = (0..threads.max(1))
            .map(|i| {
                let (rx, stx, repo) = (rx.clone(), stx.clone(), repo.clone());
                std::thread::Builder::new()
                    .name(format!("kura-seal-{i}"))
                    .spawn(move || seal_worker(&repo, level, rx, stx))
                    .expect("spawn worker")
            })
            .collect();
        drop(stx);
        let packer = std::thread::Builder::new()
            .name("kura-packer".into())
            .spawn(move || packer(&repo, srx))
            .expect("spawn packer");
        BlobSaver { tx: Some(tx), workers, packer: Some(packer) }
    }

    /// Queues a blob; blocks when the pipeline is full. `Error::WriterStopped` means
    /// the packer failed: `finish` then returns the real cause.
    pub fn save(&self, id: BlobId, blob_type: BlobType, data: Vec<u8>) -> Result<()> {
        let tx = self.tx.as_ref().expect("save after finish");
        tx.send(Job { id, blob_type, data }).map_err(|_| Error::WriterStopped)
    }

    /// Flushes every open pack and writes the final index file.
    pub fn finish(mut self) -> Result<SaverStats> {
        drop(self.tx.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.packer.take().unwrap().join().unwrap_or_else(|_| Err(Error::invalid("backup", "packer thread panicked")))
    }
}

fn seal_worker(repo: &Repository, level: i32, rx: Receiver<Job>, tx: Sender<Sealed>) {
    let mut zstd = match crate::compress::Compressor::new(level) {
        Ok(c) => c,
        Err(_) => crate::compress::Compressor::new(crate::compress::DEFAULT_LEVEL).expect("default level is valid"),
    };
    for job in rx {
        let raw_len = job.data.len() as u32;
        let (sealed, compressed) = match zstd.compress(&job.data) {
            Some(c) => (repo.key().encrypt(&c), true),
            None => (repo.key().encrypt(&job.data), false),
        };
        let out = Sealed { id: job.id, blob_type: job.blob_type, sealed, raw_len, compressed };
        if tx.send(out).is_err() {
            return;
        }
    }
}

fn packer(repo: &Repository, rx: Receiver<Sealed>) -> Result<SaverStats> {
    let pack_size = repo.config().pack_size as usize;
    let mut open: [Option<PackBuilder>; 2] = [None, None];
    let mut pending = IndexFile::default();
    let mut stats = SaverStats::default();
    let slot = |t: BlobType| if t == BlobType::Data { 0 } else { 1 };
    for s in rx {
        let p = open[slot(s.blob_type)].get_or_insert_with(|| PackBuilder::new(pack_size + 4 * 1024 * 1024));
        p.add(s.id, s.blob_type, &s.sealed, s.raw_len, s.compressed);
        stats.blobs += 1;
        if p.len() >= pack_size {
            let p = open[slot(s.blob_type)].take().unwrap();
            write_pack(repo, p, &mut pending, &mut stats)?;
            if pending.packs.len() >= PACKS_PER_INDEX {
                repo.save_json(Kind::Index, &std::mem::take(&mut pending))?;
            }
        }
    }
    for p in open.into_iter().flatten() {
        write_pack(repo, p, &mut pending, &mut stats)?;
    }
    if !pending.packs.is_empty() {
        repo.save_json(Kind::Index, &pending)?;
    }
    Ok(stats)
}

fn write_pack(repo: &Repository, p: PackBuilder, pending: &mut IndexFile, stats: &mut SaverStats) -> Result<()> {
    let (id, bytes, entries) = p.finish(repo.key());
    repo.backend().put(Kind::Pack, &id.to_hex(), &bytes)?;
    stats.packs += 1;
    stats.bytes += bytes.len() as u64;
    pending.packs.push(IndexPack::new(id, bytes.len() as u64, &entries));
    Ok(())
}
