//! Backup then restore gives back the same tree: content, modes, owners, times to the
//! nanosecond, symlinks, hard links, empty directories and sparse files.

use crate::util::*;

#[test]
fn backup_and_restore_are_byte_identical_with_metadata() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    let sample = sample_tree(&src, 3 << 20);
    // A sparse file larger than the biggest chunk, so that most of its chunks are holes.
    let big_sparse = src.join("big_sparse.img");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&big_sparse).unwrap();
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(b"some data in the middle of nothing").unwrap();
        f.set_len(16 << 20).unwrap();
    }
    let (fifo, sock) = make_special_files(&src);
    set_times_deepest_first(&src);

    let out = r.kura(["--json", "backup", s(&src)]);
    out.ok();
    // Special files are skipped with a note naming them; the backup still succeeds.
    out.stderr_has("note:").stderr_has(s(&fifo)).stderr_has(s(&sock));
    let b = out.json();
    assert_eq!(b["partial"], false);
    assert_eq!(num(&b, "summary.files_skipped"), 2, "{b:#}");
    // Two names of one inode are read once but counted as files.
    assert_eq!(num(&b, "summary.files_new"), sample.files.len() as u64 + 1, "{b:#}");

    let target = r.base().join("target");
    let out = r.restore("latest", &target, &["--verify"]);
    out.ok();
    let rs = out.json();
    assert_eq!(rs["verify_failures"], serde_json::json!([]), "{rs:#}");
    // Every distinct regular file is verified (hard links share their inode's check).
    assert_eq!(num(&rs, "files_verified"), sample.files.len() as u64, "{rs:#}");
    assert_eq!(num(&rs, "hardlinks"), 1, "{rs:#}");
    assert_eq!(num(&rs, "symlinks"), 3, "{rs:#}");

    let copy = restored(&target, &src);
    assert_same_tree(&src, &copy, FULL);
    assert!(!copy.join("fifo").exists() && !copy.join("sock").exists());

    // The parents of the backed-up path are restored too, with their metadata.
    let parent_src = src.parent().unwrap();
    let parent_copy = copy.parent().unwrap();
    let (a, b) = (&scan(parent_src)[std::path::Path::new("")], &scan(parent_copy)[std::path::Path::new("")]);
    assert_eq!((a.mode, a.uid, a.gid), (b.mode, b.uid, b.gid));

    // Sparse files keep their holes: all-zero chunks are not written, so a sparse
    // file allocates far fewer bytes than its length. (The small one is a single
    // chunk, holding data, so it is fully written; its content is still equal.)
    let big = &scan(&copy)[std::path::Path::new("big_sparse.img")];
    assert!(big.allocated <= 8 << 20, "restored sparse file allocates {} of {} bytes", big.allocated, 16 << 20);
    assert_eq!(hash_file(&copy.join(sample.sparse)), hash_file(&src.join(sample.sparse)));

    if is_root() {
        let e = &scan(&copy)[std::path::Path::new("hello.txt")];
        assert_eq!((e.uid, e.gid), (1234, 5678), "ownership is restored when running as root");
    }

    // The text output of a verifying restore says so too.
    let target2 = r.base().join("target2");
    let out = r.kura(["restore", "latest", "--target", s(&target2), "--verify"]);
    out.ok().stdout_has(&format!("verify: {} files match the snapshot, 0 differ", sample.files.len()));
    assert_same_tree(&src, &restored(&target2, &src), FULL);
}

#[test]
fn restore_verify_replaces_a_file_that_only_looks_restored() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    let sample = sample_tree(&src, 256 << 10);
    r.backup(&[&src], &[]);
    let target = r.base().join("target");
    r.restore("latest", &target, &[]).ok();
    let copy = restored(&target, &src);

    // Same size and mtime, different bytes: a plain restore trusts it, --verify does not.
    let victim = copy.join(sample.random);
    let before = scan(&copy)[std::path::Path::new(sample.random)].clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    set_mtime(&victim, (before.mtime_ns / 1_000_000_000) as i64, (before.mtime_ns % 1_000_000_000) as u32);

    let plain = r.restore("latest", &target, &[]).ok().json();
    assert_eq!(num(&plain, "files_restored"), 0, "{plain:#}");

    let v = r.restore("latest", &target, &["--verify"]).ok().json();
    assert_eq!(num(&v, "files_restored"), 1, "{v:#}");
    assert_eq!(v["verify_failures"], serde_json::json!([]), "{v:#}");
    assert_same_tree(&src, &copy, FULL);
}

#[test]
fn restore_puts_back_the_mode_and_owner_of_a_file_changed_since() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    sample_tree(&src, 64 << 10);
    r.backup(&[&src], &[]);
    let target = r.base().join("target");
    r.restore("latest", &target, &[]).ok();
    let copy = restored(&target, &src);

    // Mode and owner changed; size, mtime and content left as they were.
    chmod(&copy.join("private.txt"), 0o666);
    chmod(&copy.join("script.sh"), 0o4777);
    let changed = if is_root() {
        std::os::unix::fs::chown(copy.join("hello.txt"), Some(65534), Some(65534)).unwrap();
        3
    } else {
        2
    };
    let again = r.restore("latest", &target, &[]).ok().json();
    assert_eq!(num(&again, "files_restored"), changed, "{again:#}");
    assert_same_tree(&src, &copy, FULL);
}

#[test]
fn names_up_to_255_bytes_are_restored() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    for len in [200, 241, 242, 250, 254, 255] {
        write(&src.join("n".repeat(len)), format!("a name of {len} bytes\n"));
    }
    write(&src.join("d".repeat(255)).join("f".repeat(255)), "both 255 bytes\n");
    set_times_deepest_first(&src);
    r.backup(&[&src], &[]);
    let target = r.base().join("target");
    let out = r.restore("latest", &target, &["--verify"]).ok().json();
    assert_eq!(num(&out, "files_restored"), 7, "{out:#}");
    assert_same_tree(&src, &restored(&target, &src), FULL);
}

#[test]
fn a_path_through_a_symlinked_directory_records_the_real_directory() {
    use std::os::unix::fs::MetadataExt;
    let r = TestRepo::new();
    let x = r.base().join("x");
    write(&x.join("real/victim/file.txt"), "inside\n");
    chmod(&x.join("real"), 0o750);
    std::os::unix::fs::symlink(x.join("real"), x.join("ln")).unwrap();

    // Through the symlink: `ln` is recorded with the real directory's metadata.
    r.backup(&[&x.join("ln/victim")], &[]);
    let target = r.base().join("target");
    r.restore("latest", &target, &[]).ok();
    let ln = restored(&target, &x).join("ln");
    let m = std::fs::symlink_metadata(&ln).unwrap();
    assert!(m.is_dir(), "ln is restored as a directory");
    assert_eq!(m.mode() & 0o7777, 0o750, "ln has the real directory's mode");
    assert_eq!(std::fs::read_to_string(ln.join("victim/file.txt")).unwrap(), "inside\n");

    // The symlink and a path through it: the second cannot be stored under the
    // first (a symlink), and is not dropped without a warning.
    let victim = x.join("ln/victim");
    let out = r.kura(["--json", "backup", s(&x.join("ln")), s(&victim)]);
    out.code(1).stderr_has(&format!("{} was not backed up", victim.display()));
    let v = out.json();
    assert_eq!(v["partial"], serde_json::json!(true), "{v:#}");
    assert!(v["warnings"].to_string().contains("real/victim"), "names the real path: {v:#}");
}
