//! `kura find` (which snapshots hold a path matching a glob) and `kura dump`.

use serde_json::Value;

use crate::util::*;

fn find(r: &TestRepo, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["--json", "find"];
    a.extend_from_slice(args);
    match r.kura(a).ok().json() {
        Value::Array(v) => v,
        v => panic!("find --json is not a list: {v}"),
    }
}

fn paths(row: &Value) -> Vec<String> {
    row["matches"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn find_matches_names_and_full_paths_newest_snapshot_first() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    sample_tree(&src, 1000);
    let first = r.backup(&[&src], &["--tag", "one"]);
    write(&src.join("notes/new.txt"), "new\n");
    let second = r.backup(&[&src], &["--tag", "two", "--host", "other"]);

    // By name, anywhere: both snapshots, the newest first.
    let rows = find(&r, &["*.txt"]);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0]["snapshot"], second["snapshot"]);
    assert_eq!(rows[1]["snapshot"], first["snapshot"]);
    let newest = paths(&rows[0]);
    let leaf = format!("{}/notes/deep/er/est/leaf.txt", s(&src));
    assert!(newest.contains(&leaf) && newest.contains(&format!("{}/notes/new.txt", s(&src))), "{newest:#?}");
    assert!(!paths(&rows[1]).iter().any(|p| p.ends_with("new.txt")));
    let m = rows[0]["matches"].as_array().unwrap().iter().find(|m| m["path"] == leaf.as_str()).unwrap();
    assert_eq!((m["type"].as_str(), m["size"].as_u64()), (Some("file"), Some(7)), "{m:#}");
    assert!(m["mtime"].as_str().unwrap().contains('T'), "{m:#}");

    // By full path (`*` does not cross `/`), a directory, and the snapshot filters.
    let rows = find(&r, &[&format!("{}/notes/*", s(&src)), "--host", "other"]);
    assert_eq!(rows.len(), 1);
    let p = paths(&rows[0]);
    assert!(p.contains(&format!("{}/notes/deep", s(&src))) && !p.contains(&leaf), "{p:#?}");
    assert_eq!(find(&r, &["new.txt", "--tag", "one"]).len(), 0);
    assert_eq!(find(&r, &["new.txt", "--snapshot", text(&first, "snapshot")]).len(), 0);
    assert_eq!(find(&r, &["new.txt", "--snapshot", "latest"]).len(), 1);

    r.kura(["find", "leaf.txt"]).ok().stdout_has("leaf.txt").stdout_has("snapshot ");
    r.kura(["find", "nothing-like-this"]).ok().stdout_has("no snapshot holds a path matching");
    r.kura(["find", "a["]).code(2).stderr_has("invalid find pattern");
    r.kura(["find", "x", "--snapshot", "ffff0000"]).code(2).stderr_has("no snapshot matches");
}

#[test]
fn dump_writes_a_file_and_a_directory_as_tar() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    let sample = sample_tree(&src, 3 << 20);
    r.backup(&[&src], &[]);

    // A file: its bytes, streamed.
    let random = src.join(sample.random);
    let out = r.cmd(["dump", &format!("latest:{}", s(&random))]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(blake3::hash(&out.stdout).to_hex().to_string(), hash_file(&random));

    // A directory: a tar stream that `tar -x` turns back into the same tree.
    let target = r.base().join("untar");
    std::fs::create_dir(&target).unwrap();
    let mut dump =
        r.cmd(["dump", &format!("latest:{}", s(&src))]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let ok = std::process::Command::new("tar")
        .args(["-x", "-f", "-", "-C", s(&target)])
        .stdin(dump.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(ok.success() && dump.wait().unwrap().success());
    assert_same_tree(&src, &target.join("src"), Compare { times: false, root_meta: true });

    // The whole snapshot from its root.
    let all = r.cmd(["dump", "latest:/"]).output().unwrap();
    assert!(all.status.success() && all.stdout.len() > 3 << 20);

    // A reader that goes away early: a quiet exit, as a SIGPIPE death.
    let mut early = r
        .cmd(["dump", &format!("latest:{}", s(&random))])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    std::io::Read::read_exact(early.stdout.as_mut().unwrap(), &mut head).unwrap();
    drop(early.stdout.take());
    let out = early.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    r.kura(["dump", "latest"]).code(2).stderr_has("give SNAPSHOT:PATH");
    r.kura(["dump", "latest:/no/such/path"]).code(2).stderr_has("not found in snapshot");
    r.kura(["dump", &format!("latest:{}", s(&src.join("link_rel")))]).code(2).stderr_has("is a symlink");
}

/// A flipped byte inside a file's data: dump stops with an error naming the damage
/// (exit 2) instead of writing wrong bytes.
#[test]
fn dump_of_damaged_data_is_an_error() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("big.bin"), 3 << 20, 5);
    r.backup(&[&src], &[]);
    let (pack, _) = r.packs()[0].clone();
    flip_middle_byte(&pack);
    let out = run(r.cmd(["dump", &format!("latest:{}", s(&src.join("big.bin")))]).stdout(std::process::Stdio::null()));
    out.code(2).stderr_has("damaged");
}

/// `kura diff`: added, removed, modified, type- and mode-changed and (with
/// `--metadata`) metadata-only paths, with sizes, as text and JSON.
#[test]
fn diff_lists_what_changed_between_two_snapshots() {
    use std::os::unix::fs::PermissionsExt;
    let r = TestRepo::new();
    let src = r.base().join("src");
    write(&src.join("keep.txt"), "same\n");
    write(&src.join("edit.txt"), "before\n");
    write(&src.join("gone/a.txt"), "a\n");
    write(&src.join("mode.sh"), "#!/bin/sh\n");
    write(&src.join("becomes_dir"), "file\n");
    let first = text(&r.backup(&[&src], &[]), "snapshot").to_string();
    write(&src.join("edit.txt"), "after, longer\n");
    std::fs::remove_dir_all(src.join("gone")).unwrap();
    write(&src.join("new/b.txt"), "bb\n");
    std::fs::set_permissions(src.join("mode.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_file(src.join("becomes_dir")).unwrap();
    write(&src.join("becomes_dir/inner.txt"), "x\n");
    let second = text(&r.backup(&[&src], &[]), "snapshot").to_string();

    let v = r.kura(["--json", "diff", &first, &second, "--metadata"]).ok().json();
    let got: Vec<(String, String)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let p = c["path"].as_str().unwrap();
            (p[p.find("/src/").unwrap() + 5..].to_string(), c["change"].as_str().unwrap().to_string())
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("becomes_dir", "type_changed"),
        ("becomes_dir/inner.txt", "added"),
        ("edit.txt", "modified"),
        ("gone", "removed"),
        ("gone/a.txt", "removed"),
        ("mode.sh", "mode_changed"),
        ("new", "added"),
        ("new/b.txt", "added"),
    ]
    .iter()
    .map(|(p, c)| (p.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want, "{v:#}");
    assert_eq!(num(&v, "summary.added"), 3, "{v:#}");
    assert_eq!(num(&v, "summary.bytes_added"), 7 + 3 + 2, "{v:#}");

    // Text: restic's marks; metadata-only changes only with --metadata.
    let out = r.kura(["diff", &first, "latest"]).ok().stdout.clone();
    assert!(out.contains("M    ") && out.contains("edit.txt"), "{out}");
    assert!(out.contains("+    ") && out.contains("new/b.txt"), "{out}");
    assert!(out.contains("-    ") && out.contains("gone/"), "{out}");
    assert!(out.contains("P    ") && out.contains("mode.sh (644 -> 755)"), "{out}");
    // Same snapshot: nothing; unknown snapshot: a clear error.
    let none = r.kura(["--json", "diff", &first, &first]).ok().json();
    assert_eq!(none["changes"], serde_json::json!([]));
    r.kura(["diff", &first, "ffffffff"]).code(2).stderr_has("ffffffff");
}
