//! The repository's cipher (docs/FORMAT.md, "Ciphers"): AES-256-GCM or
//! XChaCha20-Poly1305, chosen at `kura init`, recorded in the config; repositories
//! written before ciphers were a choice keep working.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kura::backend::local::LocalBackend;
use kura::crypto::Cipher;
use kura::repo::Repository;

use crate::util::*;

/// A repository written by kura before this change (format version 1, no `cipher`
/// in its config), holding one snapshot of `old_source`'s files.
const OLD_REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures/repo_v1");
const OLD_PASSWORD: &str = "old-format";

/// The files the fixture's snapshot holds, under `src/`.
fn old_source() -> Vec<(&'static str, Vec<u8>)> {
    let mut x: u64 = 88172645463325252;
    let random = (0..70000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let text: String = (0..3000).map(|i| format!("line {i} of a compressible file\n")).collect();
    vec![
        ("a.txt", b"hello from the old format\n".to_vec()),
        ("sub/random.bin", random),
        ("sub/text.txt", text.into_bytes()),
    ]
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    chmod(to, 0o700);
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).unwrap();
            chmod(&dst, 0o600);
        }
    }
}

/// Every regular file under `dir` that ends with `suffix` (one expected).
fn find(dir: &Path, suffix: &str) -> PathBuf {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                hits.push(p);
            }
        }
    }
    assert_eq!(hits.len(), 1, "{suffix} under {}: {hits:?}", dir.display());
    hits.pop().unwrap()
}

fn open(path: &Path, password: &str) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(path)), password.as_bytes()).unwrap()
}

#[test]
fn a_repository_from_before_ciphers_still_reads_and_grows() {
    let r = TestRepo::uninit();
    copy_dir(Path::new(OLD_REPO), &r.path);
    // git keeps no empty directories: the layout `kura init` made, back.
    for d in ["keys", "index", "snapshots", "locks", "pending", "anchors", "tmp"] {
        fs::create_dir_all(r.path.join(d)).unwrap();
    }
    for i in 0..=255u8 {
        fs::create_dir_all(r.path.join("data").join(format!("{i:02x}"))).unwrap();
    }
    let target = r.base().join("out");
    r.kura_with_password(OLD_PASSWORD, ["restore", "latest", "--target", s(&target)]).ok();
    for (name, content) in old_source() {
        assert_eq!(fs::read(find(&target, &format!("src/{name}"))).unwrap(), content, "{name}");
    }
    // A new backup into it keeps its format: XChaCha20, version 1.
    let src = r.base().join("new");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("big.bin"), 3 << 20, 5);
    write(&src.join("t.txt"), "new data in an old repository\n".repeat(1000));
    r.kura_with_password(OLD_PASSWORD, ["backup", s(&src)]).ok();
    r.kura_with_password(OLD_PASSWORD, ["check", "--read-data"]).ok();
    let target2 = r.base().join("out2");
    r.kura_with_password(OLD_PASSWORD, ["restore", "latest", "--target", s(&target2)]).ok();
    assert_same_tree(&src, &restored(&target2, &src), FULL);
    let repo = open(&r.path, OLD_PASSWORD);
    assert_eq!((repo.config().version, repo.config().cipher), (1, Cipher::Xchacha20));
}

#[test]
fn each_cipher_round_trips_and_is_recorded() {
    for (cipher, version) in [("aes256gcm", 2), ("xchacha20", 1)] {
        let r = TestRepo::uninit();
        let init = r.kura(["--json", "init", "--cipher", cipher]).ok().json();
        assert_eq!(text(&init, "cipher"), cipher, "{init}");
        let src = r.base().join("src");
        fs::create_dir_all(&src).unwrap();
        write_random(&src.join("big.bin"), 5 << 20, 9);
        write(&src.join("d/t.txt"), "compressible text\n".repeat(20000));
        r.backup(&[&src], &[]);
        r.kura(["check", "--read-data"]).ok();
        let target = r.base().join("out");
        r.restore("latest", &target, &["--verify"]).ok();
        assert_same_tree(&src, &restored(&target, &src), FULL);
        let repo = open(&r.path, PASSWORD);
        assert_eq!(repo.config().cipher.name(), cipher);
        assert_eq!(repo.config().version, version);
        assert_eq!(repo.key().cipher().name(), cipher);
        // XChaCha20 configs leave `cipher` out: kura releases that know only format 1
        // refuse unknown fields, and keep opening them.
        let raw = repo.key().decrypt_config(&fs::read(r.path.join("config")).unwrap()).unwrap();
        assert_eq!(String::from_utf8_lossy(&raw).contains("cipher"), cipher == "aes256gcm");
    }
}

#[test]
fn init_picks_a_cipher_and_refuses_unknown_ones() {
    let r = TestRepo::uninit();
    let init = r.kura(["--json", "init"]).ok().json();
    assert_eq!(text(&init, "cipher"), Cipher::for_this_cpu().name(), "{init}");
    let other = TestRepo::uninit();
    other.kura(["init", "--cipher", "rot13"]).code(2).stderr_has("rot13").stderr_has("aes256gcm or xchacha20");
    assert!(!other.path.join("config").exists());
}
