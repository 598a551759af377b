//! Damage stays where it is: a stray or damaged object is skipped by every command,
//! named by `check`, and moved to quarantine by `repair`; a damaged pack is salvaged
//! blob by blob instead of being dropped whole.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

/// `n` random files of `len` bytes each under `root/files/`: one chunk each.
fn many_files(root: &Path, n: u64, len: usize) {
    fs::create_dir_all(root.join("files")).unwrap();
    for i in 0..n {
        write_random(&root.join(format!("files/f{i:03}.bin")), len, 1000 + i);
    }
}

/// A source of 80 small random files in one data pack, backed up once. Returns the
/// repo, the source, the snapshot id and the data pack (the largest pack).
fn one_pack_of_many_files() -> (TestRepo, PathBuf, String, PathBuf) {
    let r = TestRepo::new();
    let src = r.base().join("src");
    many_files(&src, 80, 20 << 10);
    write(&src.join("top.txt"), "top\n");
    let id = text(&r.backup(&[&src], &[]), "snapshot").to_string();
    let pack = r.packs()[0].0.clone();
    (r, src, id, pack)
}

fn truncate(p: &Path, by: u64) {
    let f = fs::OpenOptions::new().write(true).open(p).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - by).unwrap();
}

fn restores_intact(r: &TestRepo, id: &str, src: &Path, name: &str) {
    let t = r.base().join(name);
    r.restore(id, &t, &["--verify"]).ok();
    assert_same_tree(src, &restored(&t, src), FULL);
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

#[test]
fn stray_and_damaged_objects_are_skipped_named_and_quarantined() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    sample_tree(&src, 256 << 10);
    let id = text(&r.backup(&[&src], &[]), "snapshot").to_string();
    // A stray file in every listed folder, and a snapshot whose content does not
    // match its name (a copy of the real one under another id).
    write(&r.path.join("snapshots/README"), "notes about this repository\n");
    write(&r.path.join("pending/README"), "x");
    let bad_index = "ef".repeat(32);
    write(&r.path.join("index").join(&bad_index), "not a sealed index");
    let bad_record = "cd".repeat(32);
    write(&r.path.join("pending").join(&bad_record), "not a sealed record");
    write(&r.path.join("index/notes.txt"), "x");
    write(&r.path.join("data/80/notahexname"), "x");
    let fake = "ab".repeat(32);
    fs::copy(r.path.join("snapshots").join(&id), r.path.join("snapshots").join(&fake)).unwrap();

    // Everything else works, and each object is named once on stderr.
    let out = r.kura(["snapshots"]);
    out.ok().stdout_has(&id[..8]).stderr_has("snapshots/README").stderr_has(&fake);
    assert_eq!(out.stderr.matches("snapshots/README").count(), 1, "{out}");
    assert_eq!(r.snapshots(&[]).len(), 1);
    restores_intact(&r, &id, &src, "t1");
    restores_intact(&r, "latest", &src, "t2");
    let again = r.backup(&[&src], &[]);
    assert_eq!(num(&again, "summary.bytes_read"), 0, "{again:#}");

    // check fails, naming every one of them.
    let out = r.kura(["check", "--read-data"]);
    assert_eq!(out.code, 1, "{out}");
    for name in
        ["snapshots/README", "pending/README", "index/notes.txt", "data/80/notahexname", &fake, &bad_record, &bad_index]
    {
        out.stdout_has(name);
    }
    let c = r.kura(["--json", "check"]).code(1).json();
    assert_eq!(c["damaged_objects"].as_array().unwrap().len(), 7, "{c:#}");

    // Prune will not decide without a snapshot it cannot read; it names it.
    let p = r.kura(["prune"]);
    assert_eq!(p.code, 2, "{p}");
    p.stderr_has(&fake).stderr_has("deleted nothing");

    // repair moves them aside, keeping their bytes.
    let rs = r.kura(["--json", "repair", "snapshots"]).ok().json();
    assert_eq!(rs["repaired"], serde_json::json!([]), "{rs:#}");
    assert_eq!(rs["quarantined"].as_array().unwrap().len(), 2, "{rs:#}");
    let ri = r.kura(["--json", "repair", "index"]).ok().json();
    assert_eq!(ri["quarantined"].as_array().unwrap().len(), 5, "{ri:#}");
    let q = r.path.join("quarantine");
    assert_eq!(fs::read_to_string(q.join("snapshots/README")).unwrap(), "notes about this repository\n");
    for p in ["snapshots", "pending/README", "index/notes.txt", "data/80/notahexname"] {
        assert!(q.join(p).exists(), "{p} is not in quarantine");
    }
    assert!(q.join("snapshots").join(&fake).exists());
    assert!(q.join("pending").join(&bad_record).exists());
    assert!(q.join("index").join(&bad_index).exists());
    assert!(!r.path.join("snapshots/README").exists() && !r.path.join("data/80/notahexname").exists());

    let out = r.kura(["check", "--read-data"]);
    out.ok().stdout_has("no errors were found");
    assert!(!out.stderr.contains("skipping"), "{out}");
    r.kura(["prune"]).ok();
    restores_intact(&r, &id, &src, "t3");
}

#[test]
fn repair_index_salvages_a_truncated_pack() {
    let (r, src, id, pack) = one_pack_of_many_files();
    truncate(&pack, 100);
    // Restore reads blobs by their index entries: still intact.
    restores_intact(&r, &id, &src, "before");
    r.kura(["check"]).code(1).stdout_has(pack.file_name().unwrap().to_str().unwrap());

    // The header is gone, but the index still knows each blob's place: every blob
    // authenticates and is copied into a new pack.
    let rep = r.kura(["--json", "repair", "index"]).ok().json();
    let salvaged = rep["salvaged"].as_array().unwrap();
    assert_eq!(salvaged.len(), 1, "{rep:#}");
    assert_eq!(num(&salvaged[0], "blobs_kept"), 81, "{rep:#}");
    assert_eq!(num(&salvaged[0], "blobs_lost"), 0, "{rep:#}");
    assert_eq!(text(&salvaged[0], "found_by"), "index entries", "{rep:#}");
    assert!(!pack.exists());
    assert!(r.path.join("quarantine/data").join(pack.file_name().unwrap()).exists());

    let rs = r.kura(["--json", "repair", "snapshots"]).ok().json();
    assert_eq!(rs["repaired"], serde_json::json!([]), "nothing is lost: {rs:#}");
    let c = r.kura(["--json", "check", "--read-data"]).ok().json();
    assert_eq!(c["warnings"], serde_json::json!([]), "{c:#}");
    assert_eq!(r.snapshots(&[]).len(), 1);
    restores_intact(&r, &id, &src, "after");
}

#[test]
fn repair_index_scans_a_truncated_pack_that_no_index_names() {
    let (r, src, id, pack) = one_pack_of_many_files();
    truncate(&pack, 100);
    for f in fs::read_dir(r.path.join("index")).unwrap() {
        fs::remove_file(f.unwrap().path()).unwrap();
    }
    // Neither the header nor an index gives the blob boundaries: the scan finds them.
    let rep = r.kura(["--json", "repair", "index"]).ok().json();
    let salvaged = rep["salvaged"].as_array().unwrap();
    assert_eq!(salvaged.len(), 1, "{rep:#}");
    assert_eq!(text(&salvaged[0], "found_by"), "scan", "{rep:#}");
    assert!(num(&salvaged[0], "blobs_kept") >= 81, "{rep:#}");
    let rs = r.kura(["--json", "repair", "snapshots"]).ok().json();
    assert_eq!(rs["repaired"], serde_json::json!([]), "{rs:#}");
    r.kura(["check", "--read-data"]).ok();
    restores_intact(&r, &id, &src, "after");
}

#[test]
fn repair_packs_takes_a_damaged_blob_out_so_the_next_backup_stores_it() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    sample_tree(&src, 3 << 20);
    let id = text(&r.backup(&[&src], &[]), "snapshot").to_string();
    let pack = r.packs()[0].0.clone();
    let pack_id = pack.file_name().unwrap().to_str().unwrap().to_string();
    flip_middle_byte(&pack);
    r.kura(["check", "--read-data"]).code(1).stdout_has(&pack_id);

    // A dry run changes nothing.
    let before = listing(&r.path);
    let dry = r.kura(["--json", "repair", "packs", "--dry-run"]).code(1).json();
    assert_eq!(dry["damaged"].as_array().unwrap().len(), 1, "{dry:#}");
    assert_eq!(listing(&r.path), before, "repair packs --dry-run changed the repository");

    let rep = r.kura(["--json", "repair", "packs", &pack_id[..12]]).code(1).json();
    let damaged = rep["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{rep:#}");
    assert_eq!(text(&damaged[0], "pack"), pack_id);
    assert_eq!(num(&damaged[0], "blobs_lost"), 1, "{rep:#}");
    assert!(num(&damaged[0], "blobs_kept") >= 1, "{rep:#}");
    assert!(!pack.exists());

    // The damaged blob is no longer indexed: check says so, and the next backup of
    // the same data stores it again instead of deduplicating against it.
    r.kura(["check"]).code(1);
    let b = r.backup(&[&src], &[]);
    assert!(num(&b, "summary.blobs_added") >= 1, "{b:#}");
    let new_id = text(&b, "snapshot").to_string();
    restores_intact(&r, &new_id, &src, "new");
    // With the blob stored again, the old snapshot is whole again too.
    r.kura(["check", "--read-data"]).ok();
    restores_intact(&r, &id, &src, "old");
    let again = r.kura(["--json", "repair", "packs"]).ok().json();
    assert_eq!(again["damaged"], serde_json::json!([]), "{again:#}");
}

#[test]
fn repair_snapshots_keeps_the_original() {
    let (r, src, id, pack) = one_pack_of_many_files();
    // Damage one blob (the middle of the pack) and take it out of the index.
    flip_middle_byte(&pack);
    r.kura(["repair", "packs"]).code(1);

    let rs = r.kura(["--json", "repair", "snapshots"]).ok().json();
    let list = rs["repaired"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{rs:#}");
    let dropped = strs(&list[0]["dropped"]);
    assert_eq!(dropped.len(), 1, "only the file with the damaged blob is dropped: {rs:#}");
    let new_id = text(&list[0], "new").to_string();
    let snaps = r.snapshots(&[]);
    assert_eq!(snaps.len(), 2, "the original is kept beside the repaired copy");
    assert!(snaps.iter().any(|s| s["id"] == id.as_str()));
    // Run again: the original already has its repaired copy.
    let again = r.kura(["--json", "repair", "snapshots"]).ok().json();
    assert_eq!(again["repaired"], serde_json::json!([]), "{again:#}");

    let t = r.base().join("t");
    r.restore(&new_id, &t, &["--verify"]).ok();
    let got = files_under(&restored(&t, &src));
    assert_eq!(got.len(), 80, "80 of 81 files: {got:?}");
    // Once the user forgets the original, the repository checks clean. Ids and a
    // policy do not mix; a dry run names the snapshot and keeps it.
    r.kura(["forget", &id, "--keep-last", "1"]).code(2).stderr_has("not both");
    r.kura(["forget", &id[..10], "--dry-run"]).ok().stdout_has(&format!("would remove snapshot {}", &id[..8]));
    assert_eq!(r.snapshots(&[]).len(), 2);
    r.kura(["forget", &id]).ok();
    assert_eq!(r.snapshots(&[]).len(), 1);
    r.kura(["check", "--read-data"]).ok();
}

#[test]
fn a_pack_cut_into_its_blobs_loses_only_the_blobs_cut() {
    let (r, src, id, pack) = one_pack_of_many_files();
    // The header (81 entries: 3,446 bytes) and the end of the last blobs are cut off.
    truncate(&pack, 4000);
    let rep = r.kura(["--json", "repair", "index"]).code(1).json();
    let s = &rep["salvaged"][0];
    let (kept, lost) = (num(s, "blobs_kept"), num(s, "blobs_lost"));
    assert!((1..=2).contains(&lost) && kept + lost == 81, "{rep:#}");

    let rs = r.kura(["--json", "repair", "snapshots"]).ok().json();
    let dropped = strs(&rs["repaired"][0]["dropped"]);
    assert_eq!(dropped.len() as u64, lost, "exactly the files whose blob was cut are dropped: {rs:#}");
    let new_id = text(&rs["repaired"][0], "new").to_string();
    let t = r.base().join("t");
    r.restore(&new_id, &t, &["--verify"]).ok();
    let got = files_under(&restored(&t, &src));
    assert_eq!(got.len() as u64, 81 - lost, "{got:?}");
    for f in &got {
        assert_eq!(hash_file(&restored(&t, &src).join(f)), hash_file(&src.join(f)), "{}", f.display());
    }
    assert_eq!(r.snapshots(&[]).len(), 2, "the original {id} is kept");
}
