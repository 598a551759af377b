//! `kura forget`: the retention policy seen through the binary. Snapshots at chosen
//! times are made by copying a real snapshot through the library with a new `time`;
//! the policy's finer cases are unit tests in `src/forget`.

use std::collections::BTreeSet;
use std::fs;
use std::sync::Arc;

use kura::backend::local::LocalBackend;
use kura::backend::Kind;
use kura::repo::snapshot::Snapshot;
use kura::repo::Repository;
use serde_json::Value;

use crate::util::*;

fn open(r: &TestRepo) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(&r.path)), PASSWORD.as_bytes()).expect("open repository")
}

/// Replaces the snapshot `id` by copies at each (RFC 3339 time, tags); returns their ids.
fn respread(repo: &Repository, id: &str, copies: &[(&str, &[&str])]) -> Vec<String> {
    let base: Snapshot = repo.load_json(Kind::Snapshot, id).unwrap();
    let out = copies
        .iter()
        .map(|(time, tags)| {
            let snap = Snapshot {
                time: chrono::DateTime::parse_from_rfc3339(time).unwrap().into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..base.clone()
            };
            repo.save_json(Kind::Snapshot, &snap).unwrap().to_hex()
        })
        .collect();
    repo.backend().delete(Kind::Snapshot, id).unwrap();
    out
}

/// Names of the snapshot files in the repository.
fn snapshot_files(r: &TestRepo) -> BTreeSet<String> {
    fs::read_dir(r.path.join("snapshots")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|s| text(s, "id")).collect()
}

fn reasons(list: &Value) -> Vec<Vec<&str>> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect())
        .collect()
}

#[test]
fn keep_daily_dry_run_then_real_run() {
    let r = TestRepo::new();
    let (a, b) = (r.base().join("a"), r.base().join("b"));
    write(&a.join("f"), "alpha\n");
    write(&b.join("f"), "beta\n");
    let sa = r.backup(&[&a], &["--host", "alpha"]);
    let sb = r.backup(&[&b], &["--host", "beta"]);
    let repo = open(&r);
    let al = respread(
        &repo,
        text(&sa, "snapshot"),
        &[
            ("2026-11-20T08:00:00Z", &["keep"]),
            ("2026-11-22T08:00:00Z", &[]),
            ("2026-11-22T20:00:00Z", &[]),
            ("2026-11-25T09:00:00Z", &[]),
            ("2026-11-25T18:00:00Z", &["x"]),
        ],
    );
    let be = respread(&repo, text(&sb, "snapshot"), &[("2026-11-01T00:00:00Z", &[]), ("2026-11-24T12:00:00Z", &[])]);
    let all = snapshot_files(&r);
    assert_eq!(all.len(), 7);

    // Dry run, JSON: one group per host and paths, newest first, with reasons.
    let plan = r.kura(["--json", "forget", "--keep-daily", "2", "--dry-run"]).ok().json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(num(&plan, "removed"), 0);
    let groups = plan["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{plan:#}");
    let (ga, gb) = (&groups[0], &groups[1]);
    assert_eq!((text(ga, "host"), &ga["paths"]), ("alpha", &serde_json::json!([s(&a)])));
    assert_eq!(ids(&ga["keep"]), [&al[4], &al[2]]);
    assert_eq!(reasons(&ga["keep"]), [["daily 2026-11-25"], ["daily 2026-11-22"]]);
    assert_eq!(ids(&ga["remove"]), [&al[3], &al[1], &al[0]]);
    let gone = &ga["remove"][2];
    assert_eq!(text(gone, "short_id"), &al[0][..8]);
    assert_eq!((text(gone, "time"), text(gone, "host")), ("2026-11-20T08:00:00Z", "alpha"));
    assert_eq!((&gone["paths"], &gone["tags"]), (&serde_json::json!([s(&a)]), &serde_json::json!(["keep"])));
    assert!(gone.get("reasons").is_none(), "{gone:#}");
    assert_eq!(text(gb, "host"), "beta");
    assert_eq!(ids(&gb["keep"]), [&be[1], &be[0]]);
    assert_eq!(ids(&gb["remove"]), Vec::<&str>::new());
    assert_eq!(snapshot_files(&r), all, "a dry run removed something");

    // Dry run, text: the same decision, for people.
    r.kura(["forget", "--keep-daily", "2", "-n"])
        .ok()
        .stdout_has("host alpha, paths ")
        .stdout_has("keep 2, would remove 3")
        .stdout_has("daily 2026-11-22")
        .stdout_has(&al[0][..8])
        .stdout_has("would remove 3 of 7 snapshots");
    assert_eq!(snapshot_files(&r), all);

    // Several rules: every reason is listed; filters restrict what is considered.
    let plan = r
        .kura([
            "--json",
            "forget",
            "--keep-last",
            "1",
            "--keep-within",
            "3d",
            "--keep-tag",
            "keep",
            "-n",
            "--host",
            "alpha",
        ])
        .ok()
        .json();
    let g = &plan["groups"];
    assert_eq!(g.as_array().unwrap().len(), 1, "{plan:#}");
    assert_eq!(ids(&g[0]["keep"]), [&al[4], &al[3], &al[2], &al[0]]);
    assert_eq!(
        reasons(&g[0]["keep"]),
        [vec!["last", "within 3d"], vec!["within 3d"], vec!["within 3d"], vec!["tag keep"]]
    );
    assert_eq!(ids(&g[0]["remove"]), [&al[1]]);

    // The real run removes exactly the snapshot files the dry run named.
    let done = r.kura(["--json", "forget", "--keep-daily", "2"]).ok().json();
    assert_eq!((&done["dry_run"], num(&done, "removed")), (&Value::Bool(false), 3));
    assert_eq!(snapshot_files(&r), set(&[&al[4], &al[2], &be[0], &be[1]]));
    r.kura(["check"]).ok().stdout_has("no errors were found");
    r.kura(["ls", &al[2][..8]]).ok().stdout_has(s(&a.join("f")));

    // Again: nothing more to remove.
    r.kura(["forget", "--keep-daily", "2"]).ok().stdout_has("no snapshots to remove (4 kept)");
    assert_eq!(snapshot_files(&r).len(), 4);
}

#[test]
fn refuses_without_policy_or_with_bad_values() {
    let r = TestRepo::new();
    let a = r.base().join("a");
    write(&a.join("f"), "x");
    r.backup(&[&a], &[]);
    let before = listing(&r.path);

    for args in [&["forget"][..], &["forget", "--dry-run"], &["forget", "--keep-last", "0", "--host", "x"]] {
        r.kura(args).code(2).stderr_has("no policy given").stderr_has("--keep-daily");
    }
    for (value, why) in [("2x", "unknown unit 'x'"), ("0d", "zero"), ("", "empty"), ("1.5d", "unknown unit '.'")] {
        r.kura(["forget", "--keep-within", value])
            .code(2)
            .stderr_has("--keep-within")
            .stderr_has(why)
            .stderr_has("1y2m3d");
    }
    r.kura(["forget", "--keep-last", "-1"]).code(2);
    r.kura(["forget", "--keep-last", "1", "--group-by", "tags"]).code(2).stderr_has("host,paths");
    assert_eq!(listing(&r.path), before, "a refused forget changed the repository");

    // --prune runs prune right after, and reports it in the same JSON document.
    let out = r.kura(["--json", "forget", "--keep-tag", "no-such-tag", "--prune"]);
    out.ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert!(v["removed"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["prune"]["packs"].as_u64().is_some(), "{v}");
    r.kura(["check"]).ok();

    let help = run(bare_kura().args(["forget", "--help"]));
    for opt in ["--keep-last", "--keep-within", "--keep-tag", "--group-by", "--dry-run", "--prune", "--host"] {
        help.ok().stdout_has(opt);
    }
    run(bare_kura().arg("--help")).ok().stdout_has("forget");
}

/// `--path` means the same with or without trailing slashes, in forget as in
/// `kura snapshots` (one filter rule in the library for both).
#[test]
fn path_filter_ignores_trailing_slashes() {
    let r = TestRepo::new();
    let (a, b) = (r.base().join("a"), r.base().join("b"));
    write(&a.join("f"), "alpha\n");
    write(&b.join("f"), "beta\n");
    let old = r.backup(&[&a], &[]);
    write(&a.join("f"), "alpha 2\n");
    let new = r.backup(&[&a], &[]);
    let other = r.backup(&[&b], &[]);
    let slashed = format!("{}//", a.display());
    let listed: BTreeSet<String> =
        r.snapshots(&["--path", &slashed]).iter().map(|s| text(s, "id").to_string()).collect();
    assert_eq!(listed, set(&[&text(&old, "snapshot").into(), &text(&new, "snapshot").into()]));

    let out = r.kura(["--json", "forget", "--keep-last", "1", "--path", &slashed]).ok().json();
    assert_eq!(num(&out, "removed"), 1, "{out:#}");
    assert_eq!(ids(&out["groups"][0]["remove"]), [text(&old, "snapshot")]);
    let left = snapshot_files(&r);
    assert_eq!(left, set(&[&text(&new, "snapshot").into(), &text(&other, "snapshot").into()]));
}
