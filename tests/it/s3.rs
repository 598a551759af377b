//! The remote site on real S3 servers: repositories on Garage, `kura copy` to Garage
//! (incremental, verified, resumable, surviving a server killed mid-transfer),
//! unreachable endpoints and wrong credentials, and object lock on moto.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kura::backend::s3::S3Backend;
use kura::backend::{Backend, Kind};

use crate::servers::{free_port, BusyProxy, Garage, HangupProxy, Moto};
use crate::util::*;

/// `kura --repo LOCATION ARGS...` with the test passphrase.
fn kura_at(location: &str, args: &[&str]) -> Out {
    run(bare_kura().arg("--repo").arg(location).args(args).env("KURA_PASSWORD", PASSWORD))
}

fn restore_and_compare(location: &str, src: &Path, target: &Path) {
    let out = kura_at(location, &["--json", "restore", "latest", "--target", s(target), "--verify"]);
    out.ok();
    assert_eq!(out.json()["verify_failures"], serde_json::json!([]));
    assert_same_tree(src, &restored(target, src), Compare { times: true, root_meta: false });
}

fn check_clean(location: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "check"];
    args.extend_from_slice(extra);
    let out = kura_at(location, &args);
    out.ok();
    let v = out.json();
    assert_eq!(v["errors"], serde_json::json!([]), "{v:#}");
    v
}

#[test]
fn repository_commands_work_on_garage() {
    let g = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    sample_tree(&src, 3 << 20);
    let loc = g.location("kura-repo/main", "");
    kura_at(&loc, &["init"]).ok().stdout_has("kura-repo/main");
    kura_at(&loc, &["init"]).code(2).stderr_has("already exists");
    let b = kura_at(&loc, &["--json", "backup", s(&src)]).ok().json();
    assert!(num(&b, "summary.files_new") > 5, "{b:#}");
    write(&src.join("notes/added.txt"), "second snapshot\n");
    kura_at(&loc, &["--json", "backup", s(&src)]).ok();
    assert_eq!(kura_at(&loc, &["--json", "snapshots"]).ok().json().as_array().unwrap().len(), 2);
    kura_at(&loc, &["ls", "latest"]).ok().stdout_has("added.txt");
    restore_and_compare(&loc, &src, &dir.path().join("target"));
    let c = check_clean(&loc, &["--read-data-subset", "1/1"]);
    assert!(num(&c, "packs_read") >= 1, "{c:#}");
    check_clean(&loc, &["--read-data"]);
    kura_at(&loc, &["forget", "--keep-last", "1"]).ok();
    kura_at(&loc, &["prune"]).ok();
    kura_at(&loc, &["prune"]).ok();
    check_clean(&loc, &["--read-data"]);
    kura_at(&loc, &["key", "list"]).ok();
    kura_at(&loc, &["--json", "snapshots"]).ok();
    // No lock objects are left behind.
    let b = S3Backend::open(&loc).unwrap();
    assert_eq!(b.list(Kind::Lock).unwrap(), vec![]);
    // The wrong passphrase is named as such, with the location.
    run(bare_kura().arg("--repo").arg(&loc).args(["snapshots"]).env("KURA_PASSWORD", "nope"))
        .code(2)
        .stderr_has("wrong passphrase")
        .stderr_has("kura-repo/main");
}

/// Everything in a local repository, with content hashes: must not change during a copy.
fn local_state(repo: &Path) -> BTreeMap<PathBuf, String> {
    listing(repo).into_iter().filter(|(p, _)| !p.starts_with("locks") && !p.starts_with("tmp")).collect()
}

#[test]
fn copy_to_garage_is_incremental_verified_and_resumable() {
    let g = Garage::start();
    let r = TestRepo::new();
    let src = r.base().join("src");
    sample_tree(&src, 2 << 20);
    r.backup(&[&src], &[]);
    let remote = g.location("kura-copy/site", "");
    let before = local_state(&r.path);

    let c = r.kura(["--json", "copy", "--to", &remote]).ok().json();
    assert_eq!(c["created"], true);
    assert_eq!(num(&c, "copied.snapshots"), 1);
    assert_eq!(num(&c, "copied.config"), 1);
    assert_eq!(num(&c, "copied.packs"), r.packs().len() as u64, "{c:#}");
    assert!(num(&c, "bytes") > 2 << 20 && num(&c, "throughput") > 0 && c["duration_ms"].is_u64(), "{c:#}");
    assert_eq!(local_state(&r.path), before, "the source is only read");

    // Nothing is missing: nothing moves.
    let again = r.kura(["--json", "copy", "--to", &remote]).ok().json();
    assert_eq!(num(&again, "bytes"), 0, "{again:#}");
    assert_eq!(again["created"], false);

    // A second backup: only the new objects move.
    write_random(&src.join("data/new.bin"), 1 << 20, 7);
    r.backup(&[&src], &[]);
    let third = r.kura(["--json", "copy", "--to", &remote]).ok().json();
    assert_eq!(num(&third, "copied.snapshots"), 1, "{third:#}");
    assert!(num(&third, "copied.packs") >= 1 && num(&third, "copied.packs") < r.packs().len() as u64, "{third:#}");
    let human = r.kura(["copy", "--to", &remote]).ok().stdout.clone();
    assert!(human.contains("copied 0 packs"), "{human}");

    // The remote is a complete repository that the same passphrase opens.
    check_clean(&remote, &["--read-data"]);
    assert_eq!(kura_at(&remote, &["--json", "snapshots"]).ok().json().as_array().unwrap().len(), 2);
    restore_and_compare(&remote, &src, &r.base().join("from-remote"));

    // A different repository at the destination is refused.
    let other = TestRepo::new();
    other.kura(["copy", "--to", &remote]).code(2).stderr_has("another repository");
    // A mirror may have its own passphrase.
    let pw = r.base().join("remote-pass");
    std::fs::write(&pw, "remote secret\n").unwrap();
    let second = g.location("kura-copy/second", "");
    r.kura(["copy", "--to", &second, "--to-password-file", s(&pw)]).ok();
    run(bare_kura().arg("--repo").arg(&second).args(["snapshots"]).env("KURA_PASSWORD", "remote secret")).ok();
}

/// Copy with Garage SIGKILLed in the middle, then restarted on the same data.
#[test]
fn copy_survives_garage_killed_mid_transfer() {
    let mut g = Garage::start();
    let r = TestRepo::new();
    let src = r.base().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        write_random(&src.join(format!("big{i}.bin")), 12 << 20, 100 + i);
    }
    r.backup(&[&src], &[]);
    assert!(r.packs().len() >= 4, "several packs to copy");
    let before = local_state(&r.path);
    // Slow enough (bandwidth limit) to be mid-transfer when the server dies; few attempts.
    let remote = g.location("kura-kill/site", "&bandwidth=24MiB&attempts=2&connect_timeout=2");
    let mut child = r
        .cmd(["--json", "copy", "--to", &remote, "--jobs", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some, but not all, packs are on the server.
    let probe = S3Backend::open(&g.location("kura-kill/site", "")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = probe.list(Kind::Pack).map(|l| l.len()).unwrap_or(0);
        if n >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no pack reached the server");
        assert!(child.try_wait().unwrap().is_none(), "the copy ended before the kill");
        std::thread::sleep(Duration::from_millis(50));
    }
    g.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "the copy fails while the server is down:\n{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{}", g.port)), "the error names the endpoint:\n{stderr}");
    g.restart();
    assert!(probe.list(Kind::Pack).unwrap().len() < r.packs().len(), "the kill came mid-transfer");

    let c = r.kura(["--json", "copy", "--to", &remote]).ok().json();
    assert_eq!(c["created"], false, "the first run had created the mirror");
    assert!(num(&c, "already_present") >= 2, "the rerun skips what arrived: {c:#}");
    assert_eq!(local_state(&r.path), before, "nothing on the local side changed");
    check_clean(&g.location("kura-kill/site", ""), &["--read-data"]);
    restore_and_compare(&g.location("kura-kill/site", ""), &src, &r.base().join("target"));
    r.kura(["check", "--read-data"]).ok();
}

#[test]
fn an_unreachable_endpoint_fails_in_bounded_time_naming_it() {
    let r = TestRepo::new();
    let creds = r.base().join("creds");
    std::fs::write(&creds, "aws_access_key_id = GK1\naws_secret_access_key = x\n").unwrap();
    let c = format!("&credentials_file={}", creds.display());
    // A closed port: connection refused.
    let port = free_port();
    let closed = format!("s3:http://127.0.0.1:{port}/bucket/x?attempts=3&connect_timeout=2{c}");
    let t = Instant::now();
    r.kura(["copy", "--to", &closed]).code(2).stderr_has(&format!("127.0.0.1:{port}")).stderr_has("3 attempts");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());

    // A blackhole: accepts connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hole.local_addr().unwrap().port();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hole.incoming() {
            held.push(c);
        }
    });
    let silent = format!("s3:http://127.0.0.1:{port}/bucket/x?attempts=2&read_timeout=2&connect_timeout=2{c}");
    let t = Instant::now();
    r.kura(["copy", "--to", &silent]).code(2).stderr_has(&format!("127.0.0.1:{port}")).stderr_has("in time");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // The same for a repository opened there.
    let out = kura_at(&silent, &["snapshots"]);
    out.code(2).stderr_has(&format!("127.0.0.1:{port}"));
}

#[test]
fn wrong_credentials_are_access_denied_without_endless_retries() {
    let g = Garage::start();
    let r = TestRepo::new();
    let bad = r.base().join("bad-creds");
    std::fs::write(&bad, format!("aws_access_key_id = {}\naws_secret_access_key = {}\n", g.key_id, "0".repeat(64)))
        .unwrap();
    let loc = format!("s3:http://127.0.0.1:{}/kura-denied/x?region=garage&credentials_file={}", g.port, bad.display());
    let t = Instant::now();
    let out = r.kura(["copy", "--to", &loc]);
    out.code(2).stderr_has("access denied");
    assert!(!out.stderr.contains(&"0".repeat(64)), "the secret is never printed");
    assert!(t.elapsed() < Duration::from_secs(10), "no retry loop: {:?}", t.elapsed());
    // An unknown key id is refused the same way.
    std::fs::write(&bad, "aws_access_key_id = GK000000000000000000000000\naws_secret_access_key = x\n").unwrap();
    kura_at(&loc, &["init"]).code(2).stderr_has("access denied");
}

#[test]
fn object_lock_is_refused_where_the_server_lacks_it() {
    let g = Garage::start();
    let loc = g.location("kura-nolock/x", "&object_lock_days=3");
    kura_at(&loc, &["init"]).code(2).stderr_has("no object lock");
}

/// Object lock on moto: uploads carry retention, and prune deletes nothing under it.
#[test]
fn object_lock_retention_is_set_and_respected_by_prune() {
    let m = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    sample_tree(&src, 1 << 20);
    let loc = m.location("kura-locked/site", "&object_lock_days=2&object_lock_mode=governance");
    kura_at(&loc, &["init"]).ok();
    kura_at(&loc, &["backup", s(&src)]).ok();
    let b = S3Backend::open(&loc).unwrap();
    let packs = b.list(Kind::Pack).unwrap();
    assert!(!packs.is_empty());
    let now = chrono::Utc::now();
    for kind in [Kind::Pack, Kind::Index, Kind::Snapshot, Kind::Key] {
        for (name, _) in b.list(kind).unwrap() {
            let until = b.retained_until(kind, &name).unwrap().unwrap_or_else(|| panic!("{kind} {name} not retained"));
            assert!(until > now + chrono::Duration::hours(47), "{kind} {name}: {until}");
        }
    }
    assert!(b.delete(Kind::Pack, &packs[0].0).unwrap_err().to_string().contains("retention"));

    // A second backup through a location without retention: its objects are not locked.
    let plain = m.location("kura-locked/site", "");
    write_random(&src.join("unlocked.bin"), 1 << 20, 9);
    kura_at(&plain, &["backup", s(&src)]).ok();
    std::fs::remove_file(src.join("unlocked.bin")).unwrap();
    let snaps = kura_at(&loc, &["--json", "snapshots"]).ok().json();
    let (first, second) = (text(&snaps[0], "id").to_string(), text(&snaps[1], "id").to_string());
    assert_eq!(b.retained_until(Kind::Snapshot, &second).unwrap(), None);
    // Forgetting the locked snapshot fails with a clear message; the unlocked one goes.
    kura_at(&loc, &["forget", "--keep-last", "1"]).code(1).stderr_has("retention");
    b.delete(Kind::Snapshot, &second).unwrap();
    let locked: Vec<(Kind, String)> = [Kind::Pack, Kind::Index, Kind::Snapshot, Kind::Key]
        .into_iter()
        .flat_map(|k| b.list(k).unwrap().into_iter().map(move |(n, _)| (k, n)))
        .filter(|(k, n)| b.retained_until(*k, n).unwrap().is_some())
        .collect();
    // Prune marks the second backup's own data, then (second run) would delete it:
    // nothing under retention goes, and the repository stays consistent.
    for _ in 0..3 {
        kura_at(&loc, &["prune"]).ok();
        for (k, n) in &locked {
            assert!(b.exists(*k, n).unwrap(), "retained {k} {n} was deleted");
        }
        check_clean(&loc, &["--read-data"]);
    }
    assert_eq!(kura_at(&loc, &["--json", "snapshots"]).ok().json()[0]["id"], first.as_str());
    restore_and_compare(&loc, &src, &dir.path().join("target"));

    // Copy to a locked remote works too, and sets retention there.
    let r = TestRepo::new();
    r.backup(&[&src], &[]);
    let remote = m.location("kura-locked-copy/x", "&object_lock_days=1");
    r.kura(["copy", "--to", &remote]).ok();
    let rb = S3Backend::open(&remote).unwrap();
    let (snap, _) = rb.list(Kind::Snapshot).unwrap()[0].clone();
    assert!(rb.retained_until(Kind::Snapshot, &snap).unwrap().is_some());
    check_clean(&remote, &["--read-data"]);
}

/// The binary refuses a malformed s3 location with a clear message.
#[test]
fn bad_s3_locations_are_clear_errors() {
    for (loc, needle) in [
        ("s3:", "no bucket"),
        ("s3:http://127.0.0.1:1/Bad_Bucket", "not a valid bucket name"),
        ("s3:bucket?colour=blue", "unknown setting"),
        ("s3:bucket?credentials_file=/nonexistent/creds", "/nonexistent/creds"),
    ] {
        kura_at(loc, &["snapshots"]).code(2).stderr_has(needle);
    }
}

/// A connection cut after 64 KiB of an upload: retried, and when it never goes
/// through, reported naming the endpoint. Before, SIGPIPE killed kura silently (141).
#[test]
fn a_server_hanging_up_mid_upload_is_retried_then_reported_naming_it() {
    let g = Garage::start();
    let proxy = HangupProxy::start(g.port, 64 << 10, 2);
    let r = TestRepo::new();
    let src = r.base().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("big.bin"), 3 << 20, 5);
    r.backup(&[&src], &[]);
    let via = format!(
        "s3:http://127.0.0.1:{}/kura-hangup/site?region=garage&credentials_file={}&attempts=4",
        proxy.port,
        g.creds_file.display()
    );

    // Two uploads are cut: the retries carry the copy through.
    let out = r.kura(["--json", "copy", "--to", &via]);
    out.ok();
    assert_eq!(proxy.hangups(), 2, "{out}");
    check_clean(&g.location("kura-hangup/site", ""), &["--read-data"]);

    // Every upload is cut: a clear error naming the endpoint, not a death by signal.
    proxy.set_budget(u64::MAX);
    write_random(&src.join("more.bin"), 2 << 20, 6);
    r.backup(&[&src], &[]);
    let out = r.kura(["copy", "--to", &via]);
    out.code(2).stderr_has(&format!("127.0.0.1:{}", proxy.port)).stderr_has("gave up after 4 attempts");
    // The remote is still consistent, and a copy without the cut completes.
    check_clean(&g.location("kura-hangup/site", ""), &[]);
    r.kura(["copy", "--to", &g.location("kura-hangup/site", "")]).ok();
    check_clean(&g.location("kura-hangup/site", ""), &["--read-data"]);
}

/// Damage on the remote site is contained as it is locally: stray and damaged
/// objects on a real S3 server are skipped and named, and repair moves them to
/// `quarantine/` (copy, then delete: S3 has no rename) with their bytes intact.
#[test]
fn stray_objects_on_garage_are_skipped_named_and_quarantined() {
    let g = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    sample_tree(&src, 256 << 10);
    let loc = g.location("kura-repo/damaged", "");
    kura_at(&loc, &["init"]).ok();
    let id = text(&kura_at(&loc, &["--json", "backup", s(&src)]).ok().json(), "snapshot").to_string();
    let b = S3Backend::open(&loc).unwrap();
    b.put(Kind::Snapshot, "README", b"notes about this repository\n").unwrap();
    b.put(Kind::Index, "notes.txt", b"x").unwrap();
    let fake = "ab".repeat(32);
    b.put(Kind::Snapshot, &fake, &b.get(Kind::Snapshot, &id).unwrap()).unwrap();

    let out = kura_at(&loc, &["snapshots"]);
    out.ok().stdout_has(&id[..8]).stderr_has("snapshots/README").stderr_has(&fake);
    restore_and_compare(&loc, &src, &dir.path().join("t1"));
    let out = kura_at(&loc, &["--json", "check"]);
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(out.json()["damaged_objects"].as_array().unwrap().len(), 3, "{out}");

    let rs = kura_at(&loc, &["--json", "repair", "snapshots"]).ok().json();
    assert_eq!(rs["quarantined"].as_array().unwrap().len(), 2, "{rs:#}");
    let ri = kura_at(&loc, &["--json", "repair", "index"]).ok().json();
    assert_eq!(ri["quarantined"].as_array().unwrap().len(), 1, "{ri:#}");
    assert_eq!(b.get(Kind::Quarantine, "snapshots/README").unwrap(), b"notes about this repository\n");
    assert_eq!(b.get(Kind::Quarantine, "index/notes.txt").unwrap(), b"x");
    assert_eq!(b.get(Kind::Quarantine, &format!("snapshots/{fake}")).unwrap(), b.get(Kind::Snapshot, &id).unwrap());
    let names: Vec<String> = b.list(Kind::Snapshot).unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec![id.clone()]);
    check_clean(&loc, &["--read-data"]);
    restore_and_compare(&loc, &src, &dir.path().join("t2"));
}

/// A remote repository's metadata is cached locally, encrypted and checked on use:
/// a second `ls` reads no tree from the server (it still works once the server lost
/// every tree pack), damage in the cache is noticed and read around, and `check`
/// never trusts the cache.
#[test]
fn remote_metadata_is_cached_encrypted_and_checked_on_use() {
    let g = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let (src, cache) = (dir.path().join("src"), dir.path().join("cache"));
    sample_tree(&src, 64 << 10);
    let loc = g.location("kura-repo/cached", "");
    kura_at(&loc, &["init"]).ok();
    kura_at(&loc, &["backup", s(&src)]).ok();
    let ls = |extra: &[&str]| {
        let mut args = vec!["--cache-dir", s(&cache)];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["ls", "latest"]);
        kura_at(&loc, &args)
    };
    let first = ls(&[]).ok().stdout.clone();
    assert!(first.contains("leaf.txt"), "{first}");

    // One folder per repository id, owner-only; what it holds is sealed.
    let repo_dir = std::fs::read_dir(&cache).unwrap().flatten().find(|e| e.path().is_dir()).unwrap().path();
    assert_eq!(std::fs::metadata(&repo_dir).unwrap().permissions().mode() & 0o777, 0o700);
    let packs: Vec<PathBuf> = std::fs::read_dir(repo_dir.join("packs")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(!packs.is_empty(), "no tree pack was cached");
    for f in std::fs::read_dir(repo_dir.join("index")).unwrap().flatten().map(|e| e.path()).chain(packs.clone()) {
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600, "{}", f.display());
        let bytes = std::fs::read(&f).unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"leaf.txt"), "{} holds a file name in the clear", f.display());
    }

    // A damaged cached pack is noticed, dropped, and read around.
    for p in &packs {
        let mut b = std::fs::read(p).unwrap();
        b[20] ^= 1;
        std::fs::write(p, b).unwrap();
    }
    let out = ls(&[]);
    out.ok().stderr_has("damaged");
    assert_eq!(out.stdout, first);
    assert!(packs.iter().all(|p| !p.exists()), "damaged cached packs were kept");
    assert_eq!(ls(&[]).ok().stdout, first);
    assert!(packs.iter().all(|p| p.exists()), "tree packs were not cached again");

    // The server loses every tree pack: the cache alone answers `ls`; without it
    // the loss shows, and check (which never reads the cache) reports it.
    let b = S3Backend::open(&loc).unwrap();
    for p in &packs {
        b.delete(Kind::Pack, p.file_name().unwrap().to_str().unwrap()).unwrap();
    }
    assert_eq!(ls(&[]).ok().stdout, first);
    assert_ne!(ls(&["--no-cache"]).code, 0);
    let out = kura_at(&loc, &["--cache-dir", s(&cache), "--json", "check"]);
    assert_ne!(out.code, 0, "{out}");
}

/// A busy server (2 requests at a time, each slow; 503 Slow Down beyond that, as S3
/// answers): the backend's window shrinks to what the server takes instead of
/// hammering it with 16 restore workers, and the restore completes byte for byte.
/// With a fixed 16 requests in flight, most requests would be refused.
#[test]
fn a_restore_from_a_busy_server_adapts_its_parallelism() {
    let g = Garage::start();
    let r = TestRepo::new();
    // One pack per backup, so that the restore has 32 packs to read in parallel.
    let src = r.base().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..32 {
        write_random(&src.join(format!("f{i}.bin")), 512 << 10, 700 + i);
        r.backup(&[&src], &[]);
    }
    r.kura(["copy", "--to", &g.location("kura-busy/site", "")]).ok();

    let proxy = BusyProxy::start(g.port, 2, Duration::from_millis(150));
    let via = format!(
        "s3:http://127.0.0.1:{}/kura-busy/site?region=garage&credentials_file={}&attempts=10",
        proxy.port,
        g.creds_file.display()
    );
    let target = r.base().join("target");
    let out = kura_at(&via, &["--no-cache", "--json", "restore", "latest", "--target", s(&target), "--verify"]);
    out.ok();
    assert_eq!(out.json()["verify_failures"], serde_json::json!([]));
    assert_same_tree(&src, &restored(&target, &src), Compare { times: true, root_meta: false });

    let (served, refused) = proxy.counts();
    eprintln!("busy server: {served} served, {refused} refused");
    assert!(refused > 0, "the server never had to refuse: the test shows nothing ({served} served)");
    assert!(served >= 32, "32 packs: {served} requests");
    assert!(refused * 3 < served, "the window did not adapt: {refused} refused for {served} served");
}
