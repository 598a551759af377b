//! Finding snapshots and files: `snapshots` filters, `ls`, and partial restores
//! (a sub-path, `--include`, resuming an interrupted restore).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

fn ids(list: &[Value]) -> BTreeSet<String> {
    list.iter().map(|s| text(s, "id").to_string()).collect()
}

fn set(ids: &[&Value]) -> BTreeSet<String> {
    ids.iter().map(|v| text(v, "snapshot").to_string()).collect()
}

#[test]
fn snapshots_filters() {
    let r = TestRepo::new();
    let a = r.base().join("a");
    let b = r.base().join("b");
    write(&a.join("f"), "a");
    write(&b.join("f"), "b");
    let sa = r.backup(&[&a], &["--host", "alpha", "--tag", "daily"]);
    let sb = r.backup(&[&b], &["--host", "beta", "--tag", "daily", "--tag", "db"]);
    let sab = r.backup(&[&a, &b], &["--host", "alpha", "--tag", "weekly"]);

    let all = r.snapshots(&[]);
    assert_eq!(ids(&all), set(&[&sa, &sb, &sab]));
    let s0 = all.iter().find(|s| s["id"] == sa["snapshot"]).unwrap();
    assert_eq!(s0["host"], "alpha");
    assert_eq!(s0["paths"], serde_json::json!([s(&a)]));
    assert_eq!(s0["tags"], serde_json::json!(["daily"]));
    assert_eq!(text(s0, "short_id"), &text(s0, "id")[..8]);

    assert_eq!(ids(&r.snapshots(&["--host", "alpha"])), set(&[&sa, &sab]));
    assert_eq!(ids(&r.snapshots(&["--host", "beta"])), set(&[&sb]));
    assert_eq!(ids(&r.snapshots(&["--host", "gamma"])), set(&[]));
    assert_eq!(ids(&r.snapshots(&["--tag", "daily"])), set(&[&sa, &sb]));
    assert_eq!(ids(&r.snapshots(&["--tag", "daily", "--tag", "db"])), set(&[&sb]));
    assert_eq!(ids(&r.snapshots(&["--tag", "daily", "--tag", "weekly"])), set(&[]));
    assert_eq!(ids(&r.snapshots(&["--path", s(&a)])), set(&[&sa, &sab]));
    assert_eq!(ids(&r.snapshots(&["--path", &format!("{}/", a.display())])), set(&[&sa, &sab]));
    assert_eq!(ids(&r.snapshots(&["--path", s(&a), "--path", s(&b)])), set(&[&sab]));
    assert_eq!(ids(&r.snapshots(&["--path", s(&a), "--host", "alpha", "--tag", "daily"])), set(&[&sa]));

    let text_out = r.kura(["snapshots", "--tag", "db"]);
    text_out.ok().stdout_has(&text(&sb, "snapshot")[..8]).stdout_has("beta").stdout_has("1 snapshots");
    assert!(!text_out.stdout.contains(&text(&sa, "snapshot")[..8]));
}

/// Paths of `src` and its parents as `ls` shows them.
fn expected_ls_paths(src: &Path) -> BTreeSet<String> {
    let mut out: BTreeSet<String> =
        src.ancestors().filter(|p| *p != Path::new("/")).map(|p| s(p).to_string()).collect();
    for (rel, e) in scan(src) {
        if e.kind != EntryKind::Special && !rel.as_os_str().is_empty() {
            out.insert(s(&src.join(rel)).to_string());
        }
    }
    out
}

#[test]
fn ls_lists_the_snapshot() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    sample_tree(&src, 64 << 10);
    r.backup(&[&src], &[]);

    let list = r.kura(["--json", "ls", "latest"]).ok().json();
    let paths: BTreeSet<String> = list.as_array().unwrap().iter().map(|e| text(e, "path").to_string()).collect();
    assert_eq!(paths, expected_ls_paths(&src));
    let entry = |p: &Path| list.as_array().unwrap().iter().find(|e| e["path"] == s(p)).unwrap().clone();
    let hello = entry(&src.join("hello.txt"));
    assert_eq!((text(&hello, "type"), text(&hello, "mode"), num(&hello, "size")), ("file", "0640", 12));
    let link = entry(&src.join("link_rel"));
    assert_eq!((text(&link, "type"), text(&link, "target")), ("symlink", "hello.txt"));
    assert_eq!(text(&entry(&src.join("empty_dir")), "type"), "dir");

    // Below a path: that directory and what is under it.
    let notes = src.join("notes");
    let sub = r.kura(["--json", "ls", "latest", s(&notes)]).ok().json();
    let paths: BTreeSet<String> = sub.as_array().unwrap().iter().map(|e| text(e, "path").to_string()).collect();
    let mut want: BTreeSet<String> =
        scan(&notes).into_keys().map(|rel| s(&notes.join(rel)).trim_end_matches('/').to_string()).collect();
    want.insert(s(&notes).to_string());
    assert_eq!(paths, want);

    // Text output: one path per line; --long adds type and mode.
    r.kura(["ls", "latest"]).ok().stdout_has(&format!("{}\n", src.join("notes/deep/er/est/leaf.txt").display()));
    r.kura(["ls", "--long", "latest", s(&src)]).ok().stdout_has("-0640").stdout_has(" -> hello.txt");
}

#[test]
fn restore_a_sub_path_into_the_target() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    sample_tree(&src, 64 << 10);
    r.backup(&[&src], &[]);

    // A directory: its contents land directly in the target.
    let target = r.base().join("notes");
    let spec = format!("latest:{}", src.join("notes").display());
    r.restore(&spec, &target, &[]).ok();
    assert_same_tree(&src.join("notes"), &target, Compare { times: true, root_meta: false });

    // With a trailing slash, the same.
    let target = r.base().join("notes2");
    r.restore(&format!("{spec}/"), &target, &[]).ok();
    assert_same_tree(&src.join("notes"), &target, Compare { times: true, root_meta: false });

    // A single file lands in the target under its own name.
    let target = r.base().join("one");
    r.restore(&format!("latest:{}", src.join("data/random.bin").display()), &target, &["--verify"]).ok();
    assert_eq!(files_under(&target), [PathBuf::from("random.bin")].into_iter().collect());
    assert_eq!(hash_file(&target.join("random.bin")), hash_file(&src.join("data/random.bin")));
}

#[test]
fn restore_only_included_files() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    sample_tree(&src, 64 << 10);
    r.backup(&[&src], &[]);

    let target = r.base().join("target");
    r.restore("latest", &target, &["--include", "*.txt"]).ok();
    let copy = restored(&target, &src);
    let got = files_under(&copy);
    let want: BTreeSet<PathBuf> =
        files_under(&src).into_iter().filter(|p| p.extension() == Some("txt".as_ref())).collect();
    assert!(want.len() >= 5, "{want:?}");
    assert_eq!(got, want);
    for f in &want {
        assert_eq!(hash_file(&copy.join(f)), hash_file(&src.join(f)));
    }
    // Directories without an included file are left out; symlinks are not *.txt.
    assert!(!copy.join("empty_dir").exists());
    assert!(fs::symlink_metadata(copy.join("link_rel")).is_err());

    // A pattern with a slash matches a whole path inside the snapshot: the directory
    // and everything below it.
    let target = r.base().join("target2");
    let pat = format!("{}/notes/deep", src.display());
    r.restore("latest", &target, &["--include", &pat]).ok();
    let got = files_under(&restored(&target, &src));
    assert_eq!(got, [PathBuf::from("notes/deep/er/est/leaf.txt")].into_iter().collect());
}

#[test]
fn an_interrupted_restore_resumes() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    let sample = sample_tree(&src, 512 << 10);
    r.backup(&[&src], &[]);
    let target = r.base().join("target");
    let first = r.restore("latest", &target, &[]).ok().json();
    let n = num(&first, "files_restored");
    assert_eq!(n, sample.files.len() as u64 - 1, "{first:#}"); // one name is a hard link
    let copy = restored(&target, &src);

    // As if the restore had stopped before these files were done: one file missing,
    // another still under its temp name with partial content.
    fs::remove_file(copy.join("data/random.bin")).unwrap();
    fs::remove_file(copy.join("notes/todo.txt")).unwrap();
    write(&copy.join("notes").join(kura::restore::temp_name("todo.txt".as_ref(), 0)), "half");

    let again = r.restore("latest", &target, &[]).ok().json();
    assert_eq!(num(&again, "files_restored"), 2, "{again:#}");
    assert_eq!(num(&again, "files_skipped"), n - 2, "{again:#}");
    assert!(num(&again, "bytes_written") < 600 << 10, "only the missing files are written: {again:#}");
    assert_same_tree(&src, &copy, FULL);
    let leftovers: Vec<_> = scan(&target).into_keys().filter(|p| p.to_string_lossy().contains(".kura-tmp-")).collect();
    assert!(leftovers.is_empty(), "temp files left behind: {leftovers:?}");

    // Everything present: nothing to do.
    let third = r.restore("latest", &target, &[]).ok().json();
    assert_eq!(num(&third, "files_restored"), 0, "{third:#}");
    assert_eq!(num(&third, "files_skipped"), n, "{third:#}");
    assert_same_tree(&src, &copy, FULL);
}

#[test]
fn backup_excludes() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    sample_tree(&src, 64 << 10);
    write(&src.join("cache/big.tmp"), "scratch");
    write(&src.join("keep/small.tmp"), "scratch too");
    let cache = src.join("cache");
    let b = r.backup(&[&src], &["--exclude", "*.tmp", "--exclude", s(&cache), "--exclude", "*.bin"]);
    let paths: BTreeSet<String> = r
        .kura(["--json", "ls", "latest"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| text(e, "path").to_string())
        .collect();
    assert!(paths.contains(s(&src.join("keep"))), "{paths:?}");
    assert!(paths.contains(s(&src.join("hello.txt"))), "{paths:?}");
    for gone in ["cache", "cache/big.tmp", "keep/small.tmp", "data/random.bin"] {
        assert!(!paths.contains(s(&src.join(gone))), "{gone} was not excluded: {paths:?}\n{b:#}");
    }
}

#[test]
fn backup_paths_are_made_absolute_and_clean() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    write(&src.join("sub/f.txt"), "f\n");
    // Relative, with `.` and `..` and a trailing slash: stored as the plain absolute path.
    let mut c = r.cmd(["--json", "backup", "src/../src/./sub/../"]);
    c.current_dir(r.base());
    let b = run(&mut c).ok().json();
    let snaps = r.snapshots(&[]);
    assert_eq!(snaps[0]["paths"], serde_json::json!([s(&src)]), "{b:#}");
    let paths: BTreeSet<String> = r
        .kura(["--json", "ls", "latest"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| text(e, "path").to_string())
        .collect();
    assert_eq!(paths, expected_ls_paths(&src));
    let target = r.base().join("target");
    r.restore("latest", &target, &[]).ok();
    assert_same_tree(&src, &restored(&target, &src), FULL);
    // The same path spelled plainly finds it as its parent.
    let again = r.backup(&[&src], &[]);
    assert_eq!(again["parent"], b["snapshot"]);
}

#[test]
fn a_closed_stdout_is_not_a_crash() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    for i in 0..50 {
        write(&src.join(format!("f{i}")), "x");
    }
    r.backup(&[&src], &[]);
    // The reader goes away before kura prints (`kura ls latest | head -0`).
    let mut child = r
        .cmd(["ls", "latest"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked") && o.status.code() != Some(101), "{:?}\n{stderr}", o.status);
    // Quietly, with the status a SIGPIPE death gives (SIGPIPE itself stays ignored:
    // see s3::a_server_hanging_up_mid_upload_is_retried_then_reported_naming_it).
    assert_eq!(stderr, "", "no message");
    assert_eq!(o.status.code(), Some(141), "{:?}", o.status);
}
