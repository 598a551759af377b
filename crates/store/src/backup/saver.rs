//! The write half of a backup: compress + encrypt on worker threads, one packer
//! thread that owns the open packs, and one upload thread that stores each full
//! pack and only then records it in an index file. Bounded channels keep memory
//! flat whatever the input size; the packer fills the next pack while the last one
//! is written and synced. Small blobs travel in batches, so that a tree of many small
//! files costs a handoff between threads per batch, not per file.
//!
//! ```text
//! caller --(batches of id, type, bytes)--> [workers: zstd + seal] --(sealed batches)--> [packer]
//!     --(full pack)--> [upload] --> backend; index file every N packs and at the end
//! ```

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::repo::index::{IndexFile, IndexPack};
use crate::repo::pack::{PackBuilder, PackBytes, PackEntry};
use crate::repo::Repository;
use crate::types::{BlobId, BlobType, PackId};

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
    /// Data blobs' bytes before compression.
    pub data_raw: u64,
    /// Of `data_raw`, what the compression probe (or zstd) could not shrink: the
    /// backup's entropy signal, measured for free.
    pub data_incompressible: u64,
}

/// Accepts new blobs and makes them durable. `finish` must be called; dropping
/// without it abandons the open packs (nothing half-written is left behind).
pub struct BlobSaver {
    tx: Option<Sender<Vec<Job>>>,
    /// Blobs not yet handed to the workers, and their bytes.
    batch: std::cell::RefCell<(Vec<Job>, usize)>,
    workers: Vec<JoinHandle<()>>,
    packer: Option<JoinHandle<Result<SaverStats>>>,
}

impl BlobSaver {
    pub fn start(repo: Arc<Repository>, threads: usize, level: i32) -> Self {
        let (tx, rx) = bounded::<Vec<Job>>(threads * 4);
        let (stx, srx) = bounded::<Vec<Sealed>>(threads * 4);
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
        BlobSaver { tx: Some(tx), batch: Default::default(), workers, packer: Some(packer) }
    }

    /// Queues a blob in the current batch, and a full batch for the workers; blocks
    /// when the pipeline is full. `Error::WriterStopped` means the packer failed:
    /// `finish` then returns the real cause.
    pub fn save(&self, id: BlobId, blob_type: BlobType, data: Vec<u8>) -> Result<()> {
        let mut batch = self.batch.borrow_mut();
        batch.1 += data.len();
        batch.0.push(Job { id, blob_type, data });
        if batch.1 >= BATCH_BYTES || batch.0.len() >= BATCH_BLOBS {
            let jobs = std::mem::take(&mut *batch).0;
            drop(batch);
            return self.send(jobs);
        }
        Ok(())
    }

    fn send(&self, jobs: Vec<Job>) -> Result<()> {
        let tx = self.tx.as_ref().expect("save after finish");
        tx.send(jobs).map_err(|_| Error::WriterStopped)
    }

    /// Flushes every open pack and writes the final index file.
    pub fn finish(mut self) -> Result<SaverStats> {
        let jobs = std::mem::take(&mut *self.batch.borrow_mut()).0;
        if !jobs.is_empty() {
            // A failed packer reports its own error below.
            let _ = self.send(jobs);
        }
        drop(self.tx.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.packer.take().unwrap().join().unwrap_or_else(|_| Err(Error::invalid("backup", "packer thread panicked")))
    }
}

/// A batch is handed to the workers once it holds this many bytes or blobs: one
/// large blob goes alone, small ones (small files, trees) together.
const BATCH_BYTES: usize = 256 * 1024;
const BATCH_BLOBS: usize = 64;

fn seal_worker(repo: &Repository, level: i32, rx: Receiver<Vec<Job>>, tx: Sender<Vec<Sealed>>) {
    let mut zstd = match crate::compress::Compressor::new(level) {
        Ok(c) => c,
        Err(_) => crate::compress::Compressor::new(crate::compress::DEFAULT_LEVEL).expect("default level is valid"),
    };
    for jobs in rx {
        let out = jobs
            .into_iter()
            .map(|job| {
                let raw_len = job.data.len() as u32;
                let (sealed, compressed) = match zstd.compress(&job.data) {
                    Some(c) => (repo.key().encrypt(&c), true),
                    None => (repo.key().encrypt(&job.data), false),
                };
                Sealed { id: job.id, blob_type: job.blob_type, sealed, raw_len, compressed }
            })
            .collect();
        if tx.send(out).is_err() {
            return;
        }
    }
}

/// Packs finished and waiting for the uploader: while one is written (and, on a
/// local disk, synced), the packer fills the next, so the seal workers never wait
/// on the disk.
const PACKS_QUEUED: usize = 1;

/// A sealed pack, ready to store.
struct Finished {
    id: PackId,
    bytes: PackBytes,
    entries: Vec<PackEntry>,
}

/// Fills one open pack per blob type and hands full ones to the uploader thread.
/// Stops early when the uploader failed, and returns its error.
fn packer(repo: &Arc<Repository>, rx: Receiver<Vec<Sealed>>) -> Result<SaverStats> {
    let pack_size = repo.config().pack_size as usize;
    let (ptx, prx) = bounded::<Finished>(PACKS_QUEUED);
    let uploader = {
        let repo = repo.clone();
        std::thread::Builder::new()
            .name("kura-upload".into())
            .spawn(move || upload(&repo, prx))
            .map_err(|e| Error::io("backup upload thread", e))?
    };
    let send = |p: PackBuilder| {
        let (id, bytes, entries) = p.finish(repo.key());
        ptx.send(Finished { id, bytes, entries }).is_ok()
    };
    let mut open: [Option<PackBuilder>; 2] = [None, None];
    let (mut blobs, mut data_raw, mut data_incompressible) = (0, 0, 0);
    let slot = |t: BlobType| if t == BlobType::Data { 0 } else { 1 };
    let mut uploading = true;
    for s in rx.into_iter().flatten() {
        let p = open[slot(s.blob_type)].get_or_insert_with(|| PackBuilder::new(pack_size + 4 * 1024 * 1024));
        p.add(s.id, s.blob_type, &s.sealed, s.raw_len, s.compressed);
        blobs += 1;
        if s.blob_type == BlobType::Data {
            data_raw += u64::from(s.raw_len);
            // Blobs under 64 bytes are never compressed: they say nothing.
            if !s.compressed && s.raw_len >= 64 {
                data_incompressible += u64::from(s.raw_len);
            }
        }
        if p.len() >= pack_size {
            let p = open[slot(s.blob_type)].take().expect("just filled");
            if !send(p) {
                uploading = false;
                break;
            }
        }
    }
    if uploading {
        for p in open.into_iter().flatten() {
            if !send(p) {
                break;
            }
        }
    }
    drop(ptx);
    let mut stats = uploader.join().unwrap_or_else(|_| Err(Error::invalid("backup", "upload thread panicked")))?;
    stats.blobs = blobs;
    stats.data_raw = data_raw;
    stats.data_incompressible = data_incompressible;
    Ok(stats)
}

/// Stores each finished pack, then records it in an index file (every
/// `PACKS_PER_INDEX` packs, and at the end): an index never names a pack that is
/// not stored.
fn upload(repo: &Repository, rx: Receiver<Finished>) -> Result<SaverStats> {
    let mut pending = IndexFile::default();
    let mut stats = SaverStats::default();
    for f in rx {
        write_pack(repo, f, &mut pending, &mut stats)?;
        if pending.packs.len() >= PACKS_PER_INDEX {
            repo.save_json(Kind::Index, &std::mem::take(&mut pending))?;
        }
    }
    if !pending.packs.is_empty() {
        repo.save_json(Kind::Index, &pending)?;
    }
    Ok(stats)
}

fn write_pack(repo: &Repository, f: Finished, pending: &mut IndexFile, stats: &mut SaverStats) -> Result<()> {
    repo.backend().put(Kind::Pack, &f.id.to_hex(), &f.bytes)?;
    stats.packs += 1;
    stats.bytes += f.bytes.len() as u64;
    pending.packs.push(IndexPack::new(f.id, f.bytes.len() as u64, &f.entries));
    Ok(())
}
