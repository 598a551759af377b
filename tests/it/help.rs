//! Every command documents itself.

use crate::util::*;

#[test]
fn help_works_for_every_subcommand() {
    let commands: &[&[&str]] = &[
        &[],
        &["init"],
        &["backup"],
        &["snapshots"],
        &["ls"],
        &["restore"],
        &["check"],
        &["key"],
        &["key", "add"],
        &["key", "list"],
        &["key", "remove"],
        &["key", "passwd"],
        &["daemon"],
        &["daemon", "stop"],
        &["status"],
        &["jobs"],
        &["run"],
        &["config"],
        &["config", "check"],
        &["plan"],
        &["plan", "validate"],
        &["plan", "show"],
        &["copy"],
        &["plan", "forecast"],
        &["incident"],
        &["incident", "open"],
        &["incident", "update"],
        &["incident", "resolve-cause"],
        &["incident", "close"],
        &["incident", "list"],
        &["incident", "show"],
        &["incident", "review"],
        &["incident", "prevention-plan"],
        &["incident", "export"],
        &["incident", "verify"],
        &["recover"],
        &["recover", "status"],
        &["drill"],
        &["drill", "run"],
        &["drill", "list"],
        &["drill", "show"],
        &["drill", "review"],
        &["report"],
    ];
    for cmd in commands {
        let out = run(bare_kura().args(*cmd).arg("--help"));
        out.ok().stdout_has("Usage: kura");
        for word in cmd.iter() {
            out.stdout_has(word);
        }
        // `kura help <command>` says the same.
        let again = run(bare_kura().arg("help").args(*cmd));
        again.ok();
        assert_eq!(again.stdout, out.stdout, "kura help {cmd:?} differs from --help");
    }
    // Options that the tests and docs rely on are documented.
    let restore = run(bare_kura().args(["restore", "--help"]));
    for opt in ["--target", "--include", "--verify", "--repo", "--json", "--password-file"] {
        restore.stdout_has(opt);
    }
    let copy = run(bare_kura().args(["copy", "--help"]));
    for opt in ["--to", "--to-password-file", "--jobs", "--dry-run", "s3:"] {
        copy.stdout_has(opt);
    }
    run(bare_kura().arg("--version")).ok().stdout_has(env!("CARGO_PKG_VERSION"));
}
