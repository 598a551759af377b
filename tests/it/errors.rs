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
