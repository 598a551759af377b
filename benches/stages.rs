//! Micro-benchmarks of the backup stages, each on the same 16 MiB of bytes:
//! chunking (FastCDC), keyed blake3 ids, zstd level 3 (compressible and random
//! input), XChaCha20-Poly1305 and AES-256-GCM sealing. Run: `cargo bench --bench stages`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kura::chunk::{ChunkParams, Chunker};
use kura::compress::Compressor;
use kura::crypto::MasterKey;

const LEN: usize = 16 << 20;

fn random_bytes(len: usize) -> Vec<u8> {
    let mut x = 0x243f6a8885a308d3u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Text-like bytes that zstd shrinks about 3-4x.
fn text_bytes(len: usize) -> Vec<u8> {
    let words = ["backup ", "restore ", "priority ", "incident ", "kura ", "snapshot ", "pack ", "index\n"];
    let mut x = 7u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        out.extend_from_slice(words[(x >> 61) as usize].as_bytes());
        out.extend_from_slice(format!("{} ", (x >> 40) % 1000).as_bytes());
    }
    out.truncate(len);
    out
}

fn stages(c: &mut Criterion) {
    let random = random_bytes(LEN);
    let text = text_bytes(LEN);
    let key = MasterKey::generate();
    let chunker = Chunker::new(ChunkParams::with_seed(1)).unwrap();
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(10);
    g.bench_function("chunk_fastcdc", |b| b.iter(|| chunker.chunk_all(&random).len()));
    g.bench_function("id_keyed_blake3", |b| b.iter(|| key.blob_id(&random)));
    for (name, data) in [("text", &text), ("random", &random)] {
        g.bench_with_input(BenchmarkId::new("zstd3_1MiB_blobs", name), data, |b, d| {
            let mut z = Compressor::new(3).unwrap();
            b.iter(|| d.chunks(1 << 20).map(|c| z.compress(c).map_or(0, |v| v.len())).sum::<usize>())
        });
    }
    g.bench_function("seal_xchacha20poly1305", |b| b.iter(|| key.encrypt(&random).len()));
    let aes = key.clone().with_cipher(kura::crypto::Cipher::Aes256gcm);
    g.bench_function("seal_aes256gcm", |b| b.iter(|| aes.encrypt(&random).len()));
    let sealed = aes.encrypt(&random);
    g.bench_function("open_aes256gcm", |b| b.iter(|| aes.decrypt(&sealed, "bench").map_or(0, |v| v.len())));
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
