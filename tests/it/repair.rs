//! `kura repair index` and `kura repair snapshots` through the binary: a lost index
//! is rebuilt from the pack headers, and a snapshot that needs a lost pack gets a
//! repaired copy without the files it cannot restore (the original is kept).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

fn index_files(r: &TestRepo) -> Vec<PathBuf> {
    fs::read_dir(r.path.join("index")).unwrap().map(|e| e.unwrap().path()).collect()
}

fn pack_set(r: &TestRepo) -> BTreeSet<PathBuf> {
    r.packs().into_iter().map(|p| p.0).collect()
}

const NO_TIMES: Compare = Compare { times: false, root_meta: true };

#[test]
fn repair_index_rebuilds_a_lost_index() {
    let r = TestRepo::new();
    let a = r.base().join("a");
    let b = r.base().join("b");
    sample_tree(&a, 1 << 20);
    sample_tree(&b, 256 << 10);
    write_random(&b.join("own.bin"), 2 << 20, 9);
    let id_a = text(&r.backup(&[&a], &[]), "snapshot").to_string();
    let id_b = text(&r.backup(&[&b], &[]), "snapshot").to_string();
    let packs = r.packs().len() as u64;

    // Rebuilding a healthy index replaces its files with equivalent ones.
    let rep = r.kura(["--json", "repair", "index"]).ok().json();
    assert_eq!((num(&rep, "packs_indexed"), num(&rep, "old_index_files")), (packs, 2), "{rep:#}");
    assert_eq!(rep["unreadable_packs"], serde_json::json!([]));
    r.kura(["check"]).ok();

    for f in index_files(&r) {
        fs::remove_file(f).unwrap();
    }
    let out = r.kura(["check"]);
    assert_eq!(out.code, 1, "check with no index must fail:\n{out}");
    r.kura(["repair", "index"]).ok().stdout_has(&format!("in {packs} packs; replaced 0 index files"));
    let rep = r.kura(["--json", "check", "--read-data"]).ok().json();
    assert_eq!(rep["warnings"], serde_json::json!([]), "{rep:#}");
    for (id, src) in [(&id_a, &a), (&id_b, &b)] {
        let target = r.base().join(format!("t-{id}"));
        r.restore(id, &target, &["--verify"]).ok();
        assert_same_tree(src, &restored(&target, src), FULL);
    }
    // The next backup finds every file's data in the rebuilt index: nothing is read.
    let again = r.backup(&[&a], &[]);
    assert_eq!(num(&again, "summary.bytes_read"), 0, "{again:#}");
}

#[test]
fn repair_index_leaves_packs_pending_deletion_out() {
    let r = TestRepo::new();
    let a = r.base().join("a");
    let b = r.base().join("b");
    sample_tree(&a, 256 << 10);
    write_random(&a.join("own.bin"), 1 << 20, 1);
    sample_tree(&b, 256 << 10);
    let id_a = text(&r.backup(&[&a], &[]), "snapshot").to_string();
    r.backup(&[&b], &[]);
    fs::remove_file(r.path.join("snapshots").join(&id_a)).unwrap();
    // A backup runs beside the prune: the packs it marks stay pending.
    let backup = r.hold_lock("backup");
    let p = r.kura(["--json", "prune"]).ok().json();
    drop(backup);
    assert!(num(&p, "packs_marked") >= 2 && num(&p, "packs_waiting") >= 2, "{p:#}");
    let packs = r.packs().len() as u64;

    let rep = r.kura(["--json", "repair", "index"]).ok().json();
    assert_eq!(num(&rep, "packs_indexed"), packs - num(&p, "packs_marked"), "{rep:#}");
    let c = r.kura(["--json", "check", "--read-data"]).ok().json();
    assert_eq!(c["warnings"], serde_json::json!([]), "{c:#}");
    let p2 = r.kura(["--json", "prune"]).ok().json();
    assert_eq!(num(&p2, "packs_deleted"), num(&p, "packs_marked"), "{p2:#}");
    r.kura(["check", "--read-data"]).ok();
}

/// Two snapshots; the second has one file whose data is in a pack of its own.
/// Returns (repo, first source, second source, first id, second id, that pack).
fn two_snapshots_and_a_lonely_pack() -> (TestRepo, PathBuf, PathBuf, String, String, PathBuf) {
    let r = TestRepo::new();
    let a = r.base().join("a");
    let b = r.base().join("b");
    sample_tree(&a, 512 << 10);
    sample_tree(&b, 512 << 10);
    write_random(&b.join("notes/lost.bin"), 3 << 20, 77);
    let id_a = text(&r.backup(&[&a], &[]), "snapshot").to_string();
    let before = pack_set(&r);
    let id_b = text(&r.backup(&[&b], &[]), "snapshot").to_string();
    // b's other files are a's (same content): its new packs are the tree pack and
    // lost.bin's data pack, by far the largest.
    let new: Vec<(PathBuf, u64)> = r.packs().into_iter().filter(|p| !before.contains(&p.0)).collect();
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new[0].1 > 3 << 20 && new[1].1 < 64 << 10, "{new:?}");
    (r, a, b, id_a, id_b, new[0].0.clone())
}

fn expect_repaired(rep: &Value, old: &str) -> String {
    let list = rep["repaired"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{rep:#}");
    assert_eq!(text(&list[0], "old"), old);
    let dropped: Vec<&str> = list[0]["dropped"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert_eq!(dropped.len(), 1, "{rep:#}");
    assert!(dropped[0].contains("notes/lost.bin") && dropped[0].contains("file dropped"), "{rep:#}");
    text(&list[0], "new").to_string()
}

/// The repaired snapshot restores everything but the lost file; the other is intact.
fn assert_rest_restores(r: &TestRepo, a: &Path, b: &Path, id_a: &str, new_id: &str) {
    let snaps = r.snapshots(&[]);
    assert_eq!(snaps.len(), 2);
    let new = snaps.iter().find(|s| s["id"] == new_id).expect("the repaired snapshot is listed");
    assert!(new["tags"].as_array().unwrap().iter().any(|t| t == "repaired"), "{new:#}");
    assert_eq!(new["partial"], true, "{new:#}");

    let t = r.base().join("t-a");
    r.restore(id_a, &t, &["--verify"]).ok();
    assert_same_tree(a, &restored(&t, a), FULL);
    let t = r.base().join("t-b");
    r.restore(new_id, &t, &["--verify"]).ok();
    fs::remove_file(b.join("notes/lost.bin")).unwrap(); // changes the times of notes/
    assert_same_tree(b, &restored(&t, b), NO_TIMES);
}

#[test]
fn repair_snapshots_drops_files_whose_pack_is_gone() {
    let (r, a, b, id_a, id_b, lost) = two_snapshots_and_a_lonely_pack();
    fs::remove_file(&lost).unwrap();
    let out = r.kura(["check"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("notes/lost.bin"), "check names the affected file:\n{out}");

    // A dry run lists the loss and changes nothing.
    let before = listing(&r.path);
    let out = r.kura(["repair", "snapshots", "--dry-run"]);
    out.ok().stdout_has("notes/lost.bin").stdout_has("(dry run)");
    assert_eq!(listing(&r.path), before, "repair snapshots --dry-run changed the repository");

    let new_id = expect_repaired(&r.kura(["--json", "repair", "snapshots"]).ok().json(), &id_b);
    // The original stays until the user forgets it; it is not repaired again.
    assert_eq!(r.snapshots(&[]).len(), 3);
    let again = r.kura(["--json", "repair", "snapshots"]).ok().json();
    assert_eq!(again["repaired"], serde_json::json!([]), "{again:#}");
    r.kura(["forget", &id_b]).ok().stdout_has(&id_b[..8]);
    // The index still names the lost pack: that is repair index's to fix.
    r.kura(["repair", "index"]).ok();
    let c = r.kura(["--json", "check", "--read-data"]).ok().json();
    assert_eq!(c["warnings"], serde_json::json!([]), "{c:#}");
    // Nothing else needs repair now.
    let again = r.kura(["--json", "repair", "snapshots"]).ok().json();
    assert_eq!(again["repaired"], serde_json::json!([]), "{again:#}");
    assert_rest_restores(&r, &a, &b, &id_a, &new_id);
    r.kura(["prune"]).ok();
    r.kura(["check", "--read-data"]).ok();
}

#[test]
fn repair_index_then_repair_snapshots() {
    // The order prune's refusal suggests: the index first, then the snapshots.
    let (r, a, b, id_a, id_b, lost) = two_snapshots_and_a_lonely_pack();
    fs::remove_file(&lost).unwrap();
    let p = r.kura(["prune"]);
    assert_eq!(p.code, 2, "{p}");
    p.stderr_has("deleted nothing");
    r.kura(["repair", "index"]).ok();
    r.kura(["check"]).code(1);
    let out = r.kura(["repair", "snapshots"]);
    out.ok().stdout_has("1 need repair").stdout_has("dropped").stdout_has("notes/lost.bin");
    let new = r.snapshots(&["--tag", "repaired"]);
    assert_eq!(new.len(), 1);
    assert_eq!(text(&new[0], "original"), id_b, "{:#}", new[0]);
    r.kura(["check"]).code(1); // the original, kept, still needs the lost pack
    r.kura(["forget", &id_b]).ok();
    r.kura(["check", "--read-data"]).ok();
    assert_rest_restores(&r, &a, &b, &id_a, text(&new[0], "id"));
    r.kura(["prune"]).ok();
}
