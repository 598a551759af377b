//! Entry points for the fuzzers (fuzz/, cargo-fuzz) and for the replay test that CI
//! runs over the committed corpus (tests/it/fuzz_replay.rs). Each takes arbitrary
//! bytes, feeds them to one parser of stored or received data through the same code
//! that reads real repositories, configs, plans and control requests, and discards
//! the result: the property is "no panic, no hang, bounded memory", whatever the input.
//!
//! Repository objects are fuzzed behind authentication too: the first bytes choose
//! whether the rest is stored as is (the attacker without the key), sealed with the
//! fuzzing repository's key (the attacker who holds it: a compromised host), or
//! compressed and sealed (so the JSON parsers see the bytes directly).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::backend::memory::MemoryBackend;
use crate::backend::{Backend, Kind};
use crate::repo::Repository;

/// One repository for the whole process: its key derivation runs once.
fn repo() -> &'static (Arc<MemoryBackend>, Arc<Repository>) {
    static REPO: OnceLock<(Arc<MemoryBackend>, Arc<Repository>)> = OnceLock::new();
    REPO.get_or_init(|| {
        let backend = Arc::new(MemoryBackend::new());
        let repo = Repository::init(backend.clone(), b"fuzz").expect("init a memory repository");
        (backend, Arc::new(repo))
    })
}

/// A pack from a fuzzed payload. Mode 0: the bytes as stored. Otherwise the payload is
/// `header_len u16 LE | plaintext header | blobs`, and the header is sealed here, so
/// that the header parser sees bytes past authentication.
fn pack_bytes(repo: &Repository, mode: u8, payload: &[u8]) -> Vec<u8> {
    if mode.is_multiple_of(3) || payload.len() < 2 {
        return payload.to_vec();
    }
    let hl = (u16::from_le_bytes([payload[0], payload[1]]) as usize).min(payload.len() - 2);
    let (header, body) = payload[2..].split_at(hl);
    let sealed = repo.key().encrypt(header);
    let mut out = body.to_vec();
    out.extend_from_slice(&sealed);
    out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    out
}

/// How the payload is stored: raw, sealed, or compressed then sealed.
fn stored(repo: &Repository, mode: u8, payload: &[u8]) -> Vec<u8> {
    match mode % 3 {
        0 => payload.to_vec(),
        1 => repo.key().encrypt(payload),
        _ => repo.key().encrypt(&zstd::bulk::compress(payload, 1).expect("zstd on memory")),
    }
}

/// Pack files, index files, snapshots, pending records, trees and key files.
/// Byte 0 picks the object, byte 1 how it is stored; the rest is the payload.
pub fn repository_object(data: &[u8]) {
    let [what, mode, payload @ ..] = data else { return };
    let (backend, repo) = repo();
    let bytes = stored(repo, *mode, payload);
    let content_name = blake3::hash(&bytes).to_hex().to_string();
    match what % 6 {
        0 => {
            let name = "00".repeat(32);
            let bytes = pack_bytes(repo, *mode, payload);
            let _ = backend.put(Kind::Pack, &name, &bytes);
            if let Ok(entries) = repo.read_pack_header(&name, bytes.len() as u64) {
                let pack = crate::types::PackId([0; 32]);
                for e in entries.iter().take(64) {
                    let end = (e.offset as usize).saturating_add(e.length as usize);
                    if let Some(sealed) = bytes.get(e.offset as usize..end) {
                        let _ = crate::repo::pack::open_blob(repo.key(), e, sealed, &pack);
                    }
                }
            }
            let _ = backend.delete(Kind::Pack, &name);
        }
        1 => {
            let _ = backend.put(Kind::Index, &content_name, &bytes);
            let _ = repo.load_index();
            let _ = backend.delete(Kind::Index, &content_name);
        }
        2 => {
            let _ = backend.put(Kind::Snapshot, &content_name, &bytes);
            let _ = repo.snapshots();
            let _ = backend.delete(Kind::Snapshot, &content_name);
        }
        3 => {
            let _ = backend.put(Kind::Pending, &content_name, &bytes);
            let _ = repo.pending_packs();
            let _ = backend.delete(Kind::Pending, &content_name);
        }
        4 => {
            // A tree blob's plaintext, as restore, ls and check decode it.
            let _ = crate::repo::tree::Tree::decode(payload, &crate::types::BlobId([0; 32]));
        }
        _ => {
            // Key files are plain JSON; their KDF parameters must be bounded before
            // any derivation runs (a hostile file must not ask for terabytes).
            let name = "ff".repeat(32);
            let _ = backend.put(Kind::Key, &name, payload);
            if let Ok(kf) = crate::repo::keys::load_key(backend.as_ref(), &name) {
                let _ = kf.kdf.validate();
            }
            let _ = backend.delete(Kind::Key, &name);
        }
    }
}

/// `kura.toml`: the config loader with its validation.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::parse_str(Path::new("/fuzz/kura.toml"), text);
    }
}

/// A restoration plan, validated against no config and against a small one.
pub fn plan(data: &[u8]) {
    static CONFIG: OnceLock<Option<crate::config::Config>> = OnceLock::new();
    let cfg = CONFIG.get_or_init(|| {
        let text = "[repository]\nlocation = \"/fuzz/repo\"\npassword_file = \"/fuzz/pass\"\n\n\
                    [[system]]\nname = \"db\"\npriority = 3\npaths = [\"/srv/db\"]\n\n\
                    [[system]]\nname = \"app\"\npriority = 2\npaths = [\"/srv/app\"]\n";
        crate::config::parse_str(Path::new("/fuzz/kura.toml"), text).ok()
    });
    if let Ok(text) = std::str::from_utf8(data) {
        let path = Path::new("/fuzz/plan.toml");
        let _ = crate::plan::parse_str(path, text, None);
        let _ = crate::plan::parse_str(path, text, cfg.as_ref());
    }
}

/// One line of the daemon's control protocol, as the daemon reads requests and the
/// CLI reads responses.
pub fn control_line(data: &[u8]) {
    if let Ok(line) = std::str::from_utf8(data) {
        let _ = serde_json::from_str::<crate::daemon::api::Request>(line);
        let _ = serde_json::from_str::<crate::daemon::api::Response>(line);
    }
}

/// A fuzz target: its name and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name, for the replay test and the fuzz script.
pub const TARGETS: [Target; 4] =
    [("repository_object", repository_object), ("config", config), ("plan", plan), ("control_line", control_line)];

/// A starting corpus from real objects: a small backup into the fuzzing repository,
/// every object it wrote in the form `repository_object` takes, the example configs
/// and plans under `root`, and control requests. Written to fuzz/corpus by `scripts/fuzz.sh seed`.
pub fn seeds(root: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let (backend, repo) = repo();
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let dir = tempfile_dir();
    std::fs::create_dir_all(dir.join("tree/sub")).expect("temp dir");
    std::fs::write(dir.join("tree/a.txt"), "hello fuzz\n".repeat(50)).expect("temp file");
    std::fs::write(dir.join("tree/sub/b.bin"), (0..70_000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>())
        .expect("temp file");
    let opts = crate::backup::BackupOptions {
        paths: vec![dir.join("tree")],
        tags: vec!["system:fuzz".into()],
        host: Some("fuzzhost".into()),
        excludes: vec![],
        compression: None,
        threads: Some(1),
        stream: None,
        ..Default::default()
    };
    crate::backup::run(repo, &opts, &crate::progress::NoProgress).expect("seed backup");
    std::fs::remove_dir_all(&dir).ok();
    let key = repo.key();
    let plain = |sealed: &[u8]| -> Vec<u8> {
        let packed = key.decrypt(sealed, "seed").expect("own object");
        crate::compress::decompress_unknown(&packed, "seed").expect("own object")
    };
    for (kind, tag) in [(Kind::Index, 1u8), (Kind::Snapshot, 2), (Kind::Pending, 3)] {
        for (name, _) in backend.list(kind).unwrap_or_default() {
            let sealed = backend.get(kind, &name).expect("own object");
            out.push(("repository_object", [&[tag, 2][..], &plain(&sealed)].concat()));
            out.push(("repository_object", [&[tag, 0][..], &sealed].concat()));
        }
    }
    for (name, size) in backend.list(Kind::Pack).unwrap_or_default() {
        let bytes = backend.get(Kind::Pack, &name).expect("own pack");
        out.push(("repository_object", [&[0u8, 0][..], &bytes].concat()));
        let entries = repo.read_pack_header(&name, size).expect("own pack");
        let hl = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().expect("4 bytes")) as usize;
        let body = &bytes[..bytes.len() - 4 - hl];
        let header = key.decrypt(&bytes[bytes.len() - 4 - hl..bytes.len() - 4], "seed").expect("own header");
        out.push(("repository_object", [&[0u8, 1][..], &(header.len() as u16).to_le_bytes(), &header, body].concat()));
        let pack = crate::types::PackId([0; 32]);
        for e in entries.iter().filter(|e| e.blob_type == crate::types::BlobType::Tree) {
            let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            let tree = crate::repo::pack::open_blob(key, e, sealed, &pack);
            if let Ok(t) = tree.or_else(|_| key.decrypt(sealed, "seed")) {
                out.push(("repository_object", [&[4u8, 0][..], &t].concat()));
            }
        }
    }
    for (name, _) in backend.list(Kind::Key).unwrap_or_default() {
        out.push(("repository_object", [&[5u8, 0][..], &backend.get(Kind::Key, &name).expect("own key")].concat()));
    }
    for (folder, target) in [("examples", "config"), ("plans", "plan")] {
        for entry in std::fs::read_dir(root.join(folder)).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "toml") {
                out.push((target, std::fs::read(&p).expect("example file")));
            }
        }
    }
    for line in [
        r#"{"cmd":"status"}"#,
        r#"{"cmd":"jobs","system":"web","limit":20}"#,
        r#"{"cmd":"run","target":"web","wait":true}"#,
        r#"{"cmd":"stop"}"#,
        r#"{"ok":true,"data":{"systems":[]}}"#,
        r#"{"ok":false,"error":"no job"}"#,
    ] {
        out.push(("control_line", line.as_bytes().to_vec()));
    }
    out
}

fn tempfile_dir() -> std::path::PathBuf {
    let n: u64 = rand::random();
    std::env::temp_dir().join(format!("kura-fuzz-seed-{n:016x}"))
}
