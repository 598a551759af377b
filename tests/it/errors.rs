//! User errors get a clear message and exit code 2.

use std::collections::HashMap;

use crate::util::*;

#[test]
fn missing_repository() {
    let r = TestRepo::uninit();
    for args in [vec!["snapshots"], vec!["backup", s(r.base())], vec!["check"], vec!["key", "list"]] {
        let out = r.kura(&args);
        out.code(2).stderr_has("no repository at").stderr_has(s(&r.path));
    }
    assert!(!r.path.exists(), "a command on a missing repository must not create it");

    // No --repo and no KURA_REPOSITORY.
    let mut c = bare_kura();
    c.args(["snapshots"]).env("KURA_PASSWORD", PASSWORD);
    run(&mut c).code(2).stderr_has("no repository given");

    // KURA_REPOSITORY is the same as --repo.
    let mut c = bare_kura();
    c.args(["init"]).env("KURA_PASSWORD", PASSWORD).env("KURA_REPOSITORY", &r.path);
    run(&mut c).ok();
    let mut c = bare_kura();
    c.args(["snapshots"]).env("KURA_PASSWORD", PASSWORD).env("KURA_REPOSITORY", &r.path);
    run(&mut c).ok().stdout_has("0 snapshots");
}

#[test]
fn init_twice_is_refused() {
    let r = TestRepo::new();
    let before = listing(&r.path);
    r.kura(["init"]).code(2).stderr_has("already exists");
    r.kura_with_password("another passphrase", ["init"]).code(2).stderr_has("already exists");
    assert_eq!(listing(&r.path), before, "a second init changed the repository");
    // An empty passphrase is refused at init.
    let empty = TestRepo::uninit();
    empty.kura_with_password("", ["init"]).code(2).stderr_has("empty passphrase");
}

#[test]
fn unknown_and_ambiguous_snapshots() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    write(&src.join("f.txt"), "x");

    // No snapshot yet: even `latest` does not match.
    let target = r.base().join("target");
    r.kura(["ls", "latest"]).code(2).stderr_has("no snapshot matches");

    // Back up until two snapshot ids share their first hex digit (at most 17 times).
    let mut by_digit: HashMap<char, Vec<String>> = HashMap::new();
    let mut n = 0;
    let digit = loop {
        n += 1;
        assert!(n <= 17, "17 snapshots cannot all have different first hex digits");
        write(&src.join("f.txt"), format!("version {n}"));
        let id = text(&r.backup(&[&src], &[]), "snapshot").to_string();
        let d = id.chars().next().unwrap();
        by_digit.entry(d).or_default().push(id);
        if by_digit[&d].len() == 2 {
            break d;
        }
    };
    let prefix = digit.to_string();
    let out = r.kura(["ls", &prefix]);
    out.code(2).stderr_has("ambiguous");
    for id in &by_digit[&digit] {
        out.stderr_has(&id[..8]);
    }
    r.restore(&prefix, &target, &[]).code(2).stderr_has("ambiguous");

    // A unique prefix and a full id both work.
    let id = &by_digit[&digit][0];
    let unique = by_digit.iter().find(|(_, v)| v.len() == 1).map(|(_, v)| v[0].clone());
    if let Some(u) = unique {
        r.kura(["ls", &u[..1]]).ok();
    }
    r.kura(["ls", &id[..12]]).ok();
    r.kura(["ls", id]).ok();

    // Unknown ids: exit 2 and a message naming what was asked for.
    let all: Vec<&String> = by_digit.values().flatten().collect();
    let unknown =
        ["00000000", "ffffffff", "12345678"].into_iter().find(|c| !all.iter().any(|id| id.starts_with(c))).unwrap();
    r.kura(["ls", unknown]).code(2).stderr_has("no snapshot matches").stderr_has(unknown);
    r.restore(unknown, &target, &[]).code(2).stderr_has("no snapshot matches");
    r.kura(["ls", "not-hex"]).code(2).stderr_has("no snapshot matches");
    r.restore("", &target, &[]).code(2);
}

#[test]
fn bad_paths_and_arguments() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    write(&src.join("f.txt"), "x");
    r.backup(&[&src], &[]);
    let target = r.base().join("target");

    let out = r.restore("latest:/no/such/path", &target, &[]);
    out.code(2).stderr_has("not found in snapshot").stderr_has("/no/such/path");
    r.kura(["ls", "latest", "/no/such/path"]).code(2).stderr_has("not found in snapshot");
    // A path through a file is not found either.
    let through = format!("latest:{}/f.txt/deeper", src.display());
    r.restore(&through, &target, &[]).code(2).stderr_has("not found in snapshot");

    // Backing up a path that does not exist.
    let missing = r.base().join("missing");
    r.kura(["backup", s(&missing)]).code(2).stderr_has(s(&missing));
    assert_eq!(r.snapshots(&[]).len(), 1);

    // Bad option values.
    r.kura(["check", "--read-data-subset", "0%"]).code(2).stderr_has("--read-data-subset");
    r.kura(["check", "--read-data-subset", "5/4"]).code(2).stderr_has("--read-data-subset");
    r.kura(["backup", s(&src), "--exclude", "a["]).code(2).stderr_has("--exclude");
    r.kura(["restore", "latest", "--target", s(&target), "--include", "a["]).code(2).stderr_has("--include");
    // Usage errors (clap) also exit 2.
    r.kura(["backup"]).code(2);
    r.kura(["frobnicate"]).code(2);
    r.kura(["check", "--read-data", "--read-data-subset", "1/2"]).code(2);
}

/// A repository whose key file is damaged says so, and names the key file, instead
/// of calling the right passphrase wrong.
#[test]
fn damaged_key_file_is_not_a_wrong_passphrase() {
    let r = TestRepo::new();
    let keys: Vec<_> = std::fs::read_dir(r.path.join("keys")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(keys.len(), 1);
    let mut bytes = std::fs::read(&keys[0]).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01; // inside the base64 data: still valid JSON
    std::fs::write(&keys[0], &bytes).unwrap();
    let before = listing(&r.path);
    let name = keys[0].file_name().unwrap().to_str().unwrap().to_string();
    let out = r.kura(["snapshots"]);
    out.code(2).stderr_has("damaged").stderr_has(&format!("key {name}")).stderr_has("remote site");
    assert!(!out.stderr.contains("wrong passphrase"), "{out}");
    // Damage that breaks the JSON is named the same way.
    std::fs::write(&keys[0], b"{ not json").unwrap();
    r.kura(["snapshots"]).code(2).stderr_has("damaged").stderr_has(&format!("key {name}"));
    std::fs::write(&keys[0], &bytes).unwrap();
    assert_eq!(listing(&r.path), before, "a damaged key changed the repository");
}

/// An empty password file is refused as empty, not taken as a wrong passphrase.
#[test]
fn empty_password_file_is_refused_as_empty() {
    let r = TestRepo::new();
    let f = r.base().join("pass");
    for content in ["", "\n", "\r\n"] {
        write(&f, content);
        for args in [vec!["snapshots"], vec!["init"]] {
            let mut c = bare_kura();
            c.arg("--repo").arg(&r.path).arg("--password-file").arg(&f).args(&args);
            let out = run(&mut c);
            out.code(2).stderr_has(&format!("password file {} is empty", f.display()));
            assert!(!out.stderr.contains("wrong passphrase"), "{out}");
        }
    }
    // With the passphrase in it, the file works.
    write(&f, format!("{PASSWORD}\n"));
    let mut c = bare_kura();
    c.arg("--repo").arg(&r.path).arg("--password-file").arg(&f).arg("snapshots");
    run(&mut c).ok();
}

/// A repository location that is a file is named as such; no advice to run init.
#[test]
fn repository_path_that_is_a_file() {
    let r = TestRepo::uninit();
    write(&r.path, "not a repository\n");
    for args in [vec!["snapshots"], vec!["init"], vec!["check"]] {
        let out = r.kura(&args);
        out.code(2).stderr_has(&format!("{} is a file, not a repository directory", r.path.display()));
        assert!(!out.stderr.contains("kura init"), "{args:?}: {out}");
    }
    assert_eq!(std::fs::read_to_string(&r.path).unwrap(), "not a repository\n");
}

/// A restore target that is a file (or lies below one) is named, once, with what to do.
#[test]
fn restore_target_that_is_a_file() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    write(&src.join("f.txt"), "x");
    r.backup(&[&src], &[]);
    let target = r.base().join("target");
    write(&target, "keep me");
    let out = r.restore("latest", &target, &[]);
    out.code(2).stderr_has(&format!("{} is a file, not a directory", target.display()));
    assert!(!out.stderr.contains("os error"), "{out}");
    let below = target.join("sub");
    let out = r.restore("latest", &below, &[]);
    out.code(2).stderr_has(&format!("{} is a file", target.display())).stderr_has(s(&below));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
}

/// `kura config check` on a config with one system whose schedule is `sched`.
fn config_with_schedule(sched: &str) -> (tempfile::TempDir, std::path::PathBuf, Out) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kura.toml");
    write(&dir.path().join("pass"), "secret\n");
    chmod(&dir.path().join("pass"), 0o600);
    std::fs::create_dir_all(dir.path().join("repo")).unwrap();
    write(
        &cfg,
        format!(
            "[repository]\nlocation = \"repo\"\npassword_file = \"pass\"\n\n\
             [[system]]\nname = \"db\"\npriority = 3\npaths = [\"{}\"]\nschedule = \"{sched}\"\n",
            dir.path().display()
        ),
    );
    let out = run(bare_kura().env_remove("KURA_CONFIG").args(["config", "check", s(&cfg)]));
    (dir, cfg, out)
}

/// A cron expression that never fires is refused at load, with file, line and field.
#[test]
fn cron_schedule_that_never_fires_is_refused() {
    for sched in ["0 0 30 2 *", "0 0 31 4 *", "0 0 0 1 1 * 2020"] {
        let (_d, cfg, out) = config_with_schedule(sched);
        out.code(2).stderr_has(s(&cfg)).stderr_has("system[0].schedule").stderr_has("never fires");
    }
    // February 29th fires every four years: accepted.
    config_with_schedule("0 0 29 2 *").2.ok();
}

/// Out-of-range cron numbers get kura's own message with the real range.
#[test]
fn cron_ranges_are_named_correctly() {
    for (sched, want) in [
        ("60 * * * *", "minute 60 is out of range: minutes are 0-59"),
        ("0 24 * * *", "hour 24 is out of range: hours are 0-23"),
        ("0 0 0 * *", "day of month 0 is out of range: days of the month are 1-31"),
        ("0 0 1 13 *", "month 13 is out of range: months are 1-12"),
        ("30-10 * * * *", "the minute range 30-10 runs backwards"),
        ("*/0 * * * *", "step"),
    ] {
        let (_d, _cfg, out) = config_with_schedule(sched);
        out.code(2).stderr_has(want).stderr_has("system[0].schedule");
        assert!(!out.stderr.contains("must be less than"), "{sched}: {out}");
    }
    config_with_schedule("59 23 31 12 *").2.ok();
}

/// An I/O error prints its cause once, not once per level of the error chain.
#[test]
fn messages_do_not_repeat_their_cause() {
    let r = TestRepo::new();
    let missing = r.base().join("missing");
    let out = r.kura(["backup", s(&missing)]);
    out.code(2).stderr_has(s(&missing));
    assert_eq!(out.stderr.matches("os error").count(), 1, "{out}");
}

/// A prune refused because another holds the exclusive lock says the repository is
/// locked, by whom, and what to do; it is not an "invalid lock".
#[test]
fn exclusive_lock_refusal_says_locked() {
    use kura::repo::lock::{LockGuard, LockKind};
    let r = TestRepo::new();
    let backend = std::sync::Arc::new(kura::backend::local::LocalBackend::new(&r.path));
    let repo = std::sync::Arc::new(kura::repo::Repository::open(backend, PASSWORD.as_bytes()).unwrap());
    let held = LockGuard::acquire(&repo, LockKind::Exclusive, "prune").unwrap();
    let out = r.kura(["prune"]);
    out.code(2).stderr_has("error: the repository is locked: prune (pid").stderr_has("wait for it");
    assert!(!out.stderr.contains("invalid lock"), "{out}");
    drop(held);
    r.kura(["prune"]).ok();
}

/// `ls` shows a name with a newline or an escape character on one line, escaped;
/// `--json` keeps the exact name.
#[test]
fn ls_escapes_control_characters() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    write(&src.join("two\nlines"), "x");
    write(&src.join("esc\x1b[2J"), "x");
    write(&src.join("back\\slash"), "x");
    r.backup(&[&src], &[]);
    let out = r.kura(["ls", "latest"]);
    out.ok().stdout_has("/two\\nlines\n").stdout_has("/esc\\x1b[2J\n").stdout_has("/back\\\\slash\n");
    assert!(!out.stdout.contains('\x1b') && !out.stdout.lines().any(|l| l == "lines"), "{out}");
    r.kura(["ls", "--long", "latest"]).ok().stdout_has("/two\\nlines\n");
    let json = r.kura(["--json", "ls", "latest"]).ok().json();
    let paths: Vec<&str> = json.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&s(&src.join("two\nlines"))), "{paths:?}");
}

/// Temp files left by a killed writer are reported by check and removed by prune and
/// `repair index` once untouched for an hour; a fresh one (a live writer's) stays.
#[test]
fn stale_temp_files_are_reported_and_removed() {
    let r = TestRepo::new();
    let tmp = r.path.join("tmp");
    let stale = |name: &str| {
        let p = tmp.join(name);
        write(&p, "half a pack");
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600)).unwrap();
        p
    };
    let (old, fresh) = (stale("0123abcd-1"), tmp.join("fresh-1"));
    write(&fresh, "being written");
    r.kura(["check"]).ok().stdout_has("1 temp files (11 bytes) in tmp/ were left by interrupted writes");
    let v = r.kura(["--json", "prune"]).ok().json();
    assert_eq!(v["temp_files_removed"], 1, "{v}");
    assert!(!old.exists() && fresh.exists());
    let old = stale("4567cdef-2");
    let out = r.kura(["repair", "index"]);
    out.ok().stdout_has("removed 1 temp files");
    assert!(!old.exists() && fresh.exists());
    let out = r.kura(["check"]);
    assert!(!out.ok().stdout.contains("temp files"), "{out}");
}

/// `forget --prune` killed after the forget, run again, still prunes.
#[test]
fn forget_prune_rerun_still_prunes() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a.bin"), 64 << 10, 1);
    r.backup(&[&src], &[]);
    write_random(&src.join("a.bin"), 64 << 10, 2);
    r.backup(&[&src], &[]);
    // The first step alone: what a kill between the two steps leaves.
    r.kura(["forget", "--keep-last", "1"]).ok();
    let v = r.kura(["--json", "forget", "--keep-last", "1", "--prune"]).ok().json();
    assert_eq!(v["removed"], 0, "{v}");
    assert!(v["prune"]["packs_marked"].as_u64().unwrap() >= 1, "the rerun did not prune: {v}");
    r.kura(["check"]).ok();
}

/// A repository that lost its config is not a missing repository: the advice is to
/// recover the config, and init refuses to create a second repository on top.
#[test]
fn missing_config_is_not_a_missing_repository() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    write(&src.join("f.txt"), "x");
    r.backup(&[&src], &[]);
    std::fs::remove_file(r.path.join("config")).unwrap();
    let before = listing(&r.path);
    for args in [vec!["snapshots"], vec!["init"]] {
        let out = r.kura(&args);
        out.code(2)
            .stderr_has("lost its config object")
            .stderr_has("1 key file and 1 snapshot")
            .stderr_has("Do not run `kura init`")
            .stderr_has("remote site");
        assert!(!out.stderr.contains("kura init --repo"), "{args:?}: {out}");
    }
    assert_eq!(listing(&r.path), before, "init changed a repository that lost its config");

    // Init refuses any directory that is not empty.
    let other = TestRepo::uninit();
    write(&other.path.join("notes.txt"), "mine");
    let before = listing(&other.path);
    other.kura(["init"]).code(2).stderr_has("is not empty").stderr_has("notes.txt");
    assert_eq!(listing(&other.path), before, "a refused init changed the directory");
    // An empty directory is fine.
    let empty = TestRepo::uninit();
    std::fs::create_dir(&empty.path).unwrap();
    empty.kura(["init"]).ok();
}
