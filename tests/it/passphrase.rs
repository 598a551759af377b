//! A wrong passphrase is a clean error that changes nothing in the repository.

use crate::util::*;

#[test]
fn wrong_passphrase_is_refused_and_changes_nothing() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    sample_tree(&src, 64 << 10);
    r.backup(&[&src], &[]);
    let before = listing(&r.path);

    let target = r.base().join("target");
    let commands: Vec<Vec<&str>> = vec![
        vec!["snapshots"],
        vec!["--json", "snapshots"],
        vec!["backup", s(&src)],
        vec!["ls", "latest"],
        vec!["restore", "latest", "--target", s(&target)],
        vec!["check", "--read-data"],
        vec!["key", "list"],
        vec!["key", "add"],
        vec!["key", "passwd"],
    ];
    for args in commands {
        let out = run(r.cmd_with_password("not the passphrase", &args).env("KURA_NEW_PASSWORD", "new one"));
        assert_eq!(out.code, 2, "{args:?} with a wrong passphrase:\n{out}");
        assert!(out.stderr.contains("wrong passphrase for repository"), "{args:?}:\n{out}");
        assert_eq!(listing(&r.path), before, "{args:?} with a wrong passphrase changed the repository");
    }
    assert!(!target.exists(), "restore with a wrong passphrase created its target");

    // An empty passphrase is wrong too, not a crash.
    r.kura_with_password("", ["snapshots"]).code(2).stderr_has("wrong passphrase for repository");
    assert_eq!(listing(&r.path), before);
}

#[test]
fn passphrase_from_a_file() {
    let r = TestRepo::new();
    let good = r.base().join("good");
    let bad = r.base().join("bad");
    write(&good, format!("{PASSWORD}\n"));
    write(&bad, "nope\n");

    let mut c = bare_kura();
    c.arg("--repo").arg(&r.path).arg("--password-file").arg(&good).arg("snapshots");
    run(&mut c).ok();
    let mut c = bare_kura();
    c.arg("--repo").arg(&r.path).env("KURA_PASSWORD_FILE", &bad).arg("snapshots");
    run(&mut c).code(2).stderr_has("wrong passphrase for repository");
    let mut c = bare_kura();
    c.arg("--repo").arg(&r.path).arg("--password-file").arg(r.base().join("missing")).arg("snapshots");
    run(&mut c).code(2).stderr_has("password file");

    // With no passphrase at all and no terminal, kura says how to give one.
    let mut c = bare_kura();
    c.arg("--repo").arg(&r.path).arg("snapshots");
    run(&mut c).code(2).stderr_has("KURA_PASSWORD");
}
