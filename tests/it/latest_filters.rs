//! `latest` narrowed by `--host`, `--tag` and `--path` in every command that names a
//! snapshot: one repository holding several hosts' snapshots (issue #14).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

/// Four snapshots, oldest first: web1 daily, db1 daily, web1 hourly, db1 hourly.
/// Each web snapshot's `app.conf` says which one it is.
struct Fleet {
    r: TestRepo,
    web: PathBuf,
    db: PathBuf,
    ids: Vec<String>,
}

fn fleet() -> Fleet {
    let r = TestRepo::new();
    let (web, db) = (r.base().join("web"), r.base().join("db"));
    write(&web.join("app.conf"), "web daily\n");
    write(&web.join("static/index.html"), "<p>hi</p>\n");
    write_random(&web.join("static/blob.bin"), 200_000, 1);
    write(&db.join("pg.conf"), "db daily\n");
    let mut ids = Vec::new();
    let mut snap = |path: &Path, host: &str, tag: &str| {
        let v = r.backup(&[path], &["--host", host, "--tag", tag]);
        ids.push(text(&v, "snapshot").to_string());
    };
    snap(&web, "web1", "daily");
    snap(&db, "db1", "daily");
    write(&web.join("app.conf"), "web hourly\n");
    snap(&web, "web1", "hourly");
    write(&db.join("pg.conf"), "db hourly\n");
    snap(&db, "db1", "hourly");
    Fleet { r, web, db, ids }
}

fn ls_paths(f: &Fleet, args: &[&str]) -> Vec<String> {
    let mut a = vec!["--json", "ls"];
    a.extend_from_slice(args);
    match f.r.kura(a).ok().json() {
        Value::Array(v) => v.iter().map(|e| text(e, "path").to_string()).collect(),
        v => panic!("ls --json is not a list: {v}"),
    }
}

#[test]
fn restore_latest_takes_host_tag_and_path_filters() {
    let f = fleet();
    let conf = |t: &Path| std::fs::read_to_string(restored(t, &f.web).join("app.conf")).unwrap();

    let t = f.r.base().join("t1");
    let v = f.r.restore("latest", &t, &["--host", "web1"]).ok().json();
    assert_eq!(conf(&t), "web hourly\n", "{v}");
    assert!(!restored(&t, &f.db).exists(), "latest --host web1 restored db1's snapshot");

    let t = f.r.base().join("t2");
    f.r.restore("latest", &t, &["--host", "web1", "--tag", "daily"]).ok();
    assert_eq!(conf(&t), "web daily\n");
    assert_same_tree(
        &f.web.join("static"),
        &restored(&t, &f.web).join("static"),
        Compare { times: true, root_meta: true },
    );

    // --path alone, and the SNAPSHOT:SUBPATH form with filters.
    let t = f.r.base().join("t3");
    f.r.restore("latest", &t, &["--path", f.db.to_str().unwrap(), "--tag", "daily"]).ok();
    assert_eq!(std::fs::read_to_string(restored(&t, &f.db).join("pg.conf")).unwrap(), "db daily\n");
    let t = f.r.base().join("t4");
    let sub = format!("latest:{}", s(&f.web));
    f.r.restore(&sub, &t, &["--tag", "daily", "--path", s(&f.web)]).ok();
    assert_eq!(std::fs::read_to_string(t.join("app.conf")).unwrap(), "web daily\n");

    // Nothing matches: exit 2, the filters named, nothing written.
    let t = f.r.base().join("t5");
    f.r.restore("latest", &t, &["--host", "web1", "--tag", "weekly"])
        .code(2)
        .stderr_has("no snapshot matches \"latest\" with --host web1 --tag weekly")
        .stderr_has("kura snapshots --host web1 --tag weekly");
    assert!(!t.exists() || std::fs::read_dir(&t).unwrap().next().is_none());
    // An id of another host is not chosen under --host.
    f.r.restore(&f.ids[1], &f.r.base().join("t6"), &["--host", "web1"]).code(2).stderr_has("with --host web1");
    f.r.restore(&f.ids[1][..8], &f.r.base().join("t7"), &["--host", "db1"]).ok();
}

#[test]
fn ls_diff_dump_and_find_take_the_same_filters() {
    let f = fleet();
    let web_conf = format!("{}/app.conf", s(&f.web));
    let db_conf = format!("{}/pg.conf", s(&f.db));

    // ls
    let p = ls_paths(&f, &["latest", "--host", "web1"]);
    assert!(p.contains(&web_conf) && !p.contains(&db_conf), "{p:#?}");
    let p = ls_paths(&f, &["latest"]);
    assert!(p.contains(&db_conf) && !p.contains(&web_conf), "unfiltered latest is db1's: {p:#?}");
    let p = ls_paths(&f, &["latest", "--path", s(&f.web), "--tag", "daily"]);
    assert!(p.contains(&web_conf));
    f.r.kura(["ls", "latest", "--host", "mail1"]).code(2).stderr_has("with --host mail1");

    // dump
    let out = f.r.kura(["dump", &format!("latest:{web_conf}"), "--host", "web1", "--tag", "daily"]).ok().stdout.clone();
    assert_eq!(out, "web daily\n");
    let out = f.r.kura(["dump", &format!("latest:{db_conf}"), "--host", "db1"]).ok().stdout.clone();
    assert_eq!(out, "db hourly\n");
    f.r.kura(["dump", &format!("latest:{db_conf}"), "--host", "db1", "--tag", "nope"])
        .code(2)
        .stderr_has("no snapshot matches \"latest\" with --host db1 --tag nope");

    // diff: web1's daily snapshot against web1's latest.
    let d = f.r.kura(["--json", "diff", &f.ids[0], "latest", "--host", "web1"]).ok().json();
    let changes = d["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{d:#}");
    assert_eq!(changes[0]["path"].as_str(), Some(web_conf.as_str()));
    f.r.kura(["diff", &f.ids[0], "latest", "--host", "db1"]).code(2).stderr_has("with --host db1");

    // find --snapshot latest with a filter.
    let rows = f.r.kura(["--json", "find", "*.conf", "--snapshot", "latest", "--host", "web1"]).ok().json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["snapshot"].as_str(), Some(f.ids[2].as_str()));
}

#[test]
fn forget_latest_with_a_host_removes_that_hosts_newest_only() {
    let f = fleet();
    let dry = f.r.kura(["--json", "forget", "latest", "--host", "web1", "--dry-run"]).ok().json();
    assert_eq!(dry["snapshots"], serde_json::json!([f.ids[2]]), "{dry:#}");
    f.r.kura(["forget", "latest", "--host", "web1", "--tag", "hourly"]).ok().stdout_has(&f.ids[2][..8]);
    let left: Vec<String> = f.r.snapshots(&[]).iter().map(|s| text(s, "id").to_string()).collect();
    assert_eq!(left, [f.ids[0].clone(), f.ids[1].clone(), f.ids[3].clone()]);
    f.r.kura(["forget", "latest", "--host", "web1", "--tag", "hourly"])
        .code(2)
        .stderr_has("no snapshot matches \"latest\" with --host web1 --tag hourly");
}
