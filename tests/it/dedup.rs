//! Deduplication: unchanged trees, copied files and small edits add (almost) nothing.

use std::fs;

use crate::util::*;

/// Trees of the directories above the backed-up path may change between backups
/// (other tests create temp dirs in /tmp), so "nothing" allows a few small tree blobs.
const SMALL: u64 = 16 * 1024;

#[test]
fn unchanged_copied_and_edited_files_deduplicate() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    let sample = sample_tree(&src, 3 << 20);
    let n_files = sample.files.len() as u64;

    let first = r.backup(&[&src], &[]);
    assert!(first["parent"].is_null(), "{first:#}");
    let added = num(&first, "summary.bytes_added");
    assert!(added > 3 << 20, "the first backup stores the random file: {first:#}");

    // 1. Nothing changed: every file is unchanged, nothing is read, ~nothing added.
    let second = r.backup(&[&src], &[]);
    assert_eq!(second["parent"], first["snapshot"], "the previous snapshot of the same paths is the parent");
    assert_eq!(num(&second, "summary.files_unchanged"), n_files, "{second:#}");
    assert_eq!(num(&second, "summary.files_new") + num(&second, "summary.files_changed"), 0, "{second:#}");
    assert_eq!(num(&second, "summary.bytes_read"), 0, "{second:#}");
    assert!(num(&second, "summary.bytes_added") < SMALL, "{second:#}");

    // 2. A copy of the big file in another directory: read, but its chunks are known.
    fs::create_dir_all(src.join("elsewhere")).unwrap();
    fs::copy(src.join(sample.random), src.join("elsewhere/copy.bin")).unwrap();
    let third = r.backup(&[&src], &[]);
    assert_eq!(third["parent"], second["snapshot"]);
    assert_eq!(num(&third, "summary.files_new"), 1, "{third:#}");
    assert_eq!(num(&third, "summary.files_unchanged"), n_files, "{third:#}");
    assert_eq!(num(&third, "summary.bytes_read"), 3 << 20, "{third:#}");
    assert!(num(&third, "summary.bytes_added") < SMALL, "a copy must not be stored again: {third:#}");

    // 3. One small file edited: exactly one changed file, a few bytes added.
    let mut f = fs::OpenOptions::new().append(true).open(src.join("notes/todo.txt")).unwrap();
    std::io::Write::write_all(&mut f, b"3. profit\n").unwrap();
    drop(f);
    let fourth = r.backup(&[&src], &[]);
    assert_eq!(num(&fourth, "summary.files_changed"), 1, "{fourth:#}");
    assert_eq!(num(&fourth, "summary.files_new"), 0, "{fourth:#}");
    assert_eq!(num(&fourth, "summary.files_unchanged"), n_files, "{fourth:#}");
    assert!(num(&fourth, "summary.bytes_added") < SMALL, "{fourth:#}");

    // The repository holds little more than one copy of the data, and every
    // snapshot still restores to its own state.
    let stored: u64 = r.packs().iter().map(|p| p.1).sum();
    assert!(stored < added + 4 * SMALL, "stored {stored} bytes, the first backup alone added {added}");
    let target = r.base().join("target");
    r.restore("latest", &target, &[]).ok();
    assert_same_tree(&src, &restored(&target, &src), FULL);
    let old = r.base().join("old");
    r.restore(crate::util::text(&first, "snapshot"), &old, &[]).ok();
    let copy = restored(&old, &src);
    assert!(!copy.join("elsewhere").exists());
    assert_eq!(fs::read_to_string(copy.join("notes/todo.txt")).unwrap(), "1. test\n2. ship\n");
}

#[test]
fn same_data_under_another_path_is_not_stored_twice() {
    let r = TestRepo::new();
    let a = r.base().join("a");
    sample_tree(&a, 2 << 20);
    let first = r.backup(&[&a], &[]);

    // A different path has no parent: every file is read again, but dedup finds the chunks.
    let b = r.base().join("b");
    fs::create_dir_all(&b).unwrap();
    write_random(&b.join("same.bin"), 2 << 20, 42);
    let second = r.backup(&[&b], &[]);
    assert!(second["parent"].is_null(), "{second:#}");
    assert_eq!(num(&second, "summary.files_new"), 1, "{second:#}");
    assert!(num(&second, "summary.bytes_added") < SMALL, "{second:#} after {first:#}");
}
