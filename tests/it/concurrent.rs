//! Two backups into one repository at the same time both succeed and both restore.

use std::path::Path;
use std::process::Stdio;

use crate::util::*;

/// Starts one backup per source at once; asserts all succeed; returns the snapshot ids.
fn backups_at_once(r: &TestRepo, sources: &[&Path]) -> Vec<String> {
    let children: Vec<_> = sources
        .iter()
        .map(|src| r.cmd(["--json", "backup", s(src)]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            let out = Out {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            };
            out.ok();
            assert!(!out.stderr.contains("panicked"), "{out}");
            text(&out.json(), "snapshot").to_string()
        })
        .collect()
}

#[test]
fn two_concurrent_backups_both_land() {
    let r = TestRepo::new();
    let a = r.base().join("a");
    let b = r.base().join("b");
    sample_tree(&a, 2 << 20);
    sample_tree(&b, 1 << 20);
    write_random(&b.join("own.bin"), 1 << 20, 7);

    // Different trees (sharing some content).
    let ids1 = backups_at_once(&r, &[&a, &b]);
    // The same tree twice.
    let ids2 = backups_at_once(&r, &[&a, &a]);

    let snaps = r.snapshots(&[]);
    assert_eq!(snaps.len(), 4, "{snaps:#?}");
    for id in ids1.iter().chain(&ids2) {
        assert!(snaps.iter().any(|s| s["id"] == id.as_str()), "snapshot {id} is missing");
    }
    r.kura(["check", "--read-data"]).ok().stdout_has("no errors were found");

    for (i, (id, src)) in [(&ids1[0], &a), (&ids1[1], &b), (&ids2[0], &a), (&ids2[1], &a)].into_iter().enumerate() {
        let target = r.base().join(format!("target{i}"));
        r.restore(id, &target, &["--verify"]).ok();
        assert_same_tree(src, &restored(&target, src), FULL);
    }
}
