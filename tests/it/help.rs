//! Every command documents itself.

use crate::util::*;

/// The subcommands a `--help` page lists under "Commands:" (without `help`).
pub fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path of the clap tree (`[]`, `["backup"]`, `["repair", "index"]`, ...),
/// walked through the binary's `--help` pages.
pub fn command_tree() -> Vec<Vec<String>> {
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = Vec::new();
    while let Some(cmd) = todo.pop() {
        let out = run(bare_kura().args(&cmd).arg("--help"));
        out.ok();
        for sub in subcommands(&out.stdout) {
            let mut next = cmd.clone();
            next.push(sub);
            todo.push(next);
        }
        seen.push(cmd);
    }
    seen
}

/// Walks the whole command tree through the binary, so that a new command cannot be
/// left out: every command and subcommand has a `--help` that names it, and
/// `kura help CMD...` prints the same.
#[test]
fn help_works_for_every_subcommand() {
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = Vec::new();
    while let Some(cmd) = todo.pop() {
        let out = run(bare_kura().args(&cmd).arg("--help"));
        out.ok().stdout_has("Usage: kura");
        for word in &cmd {
            out.stdout_has(word);
        }
        // `kura help <command>` says the same.
        let again = run(bare_kura().arg("help").args(&cmd));
        again.ok();
        assert_eq!(again.stdout, out.stdout, "kura help {cmd:?} differs from --help");
        for sub in subcommands(&out.stdout) {
            let mut next = cmd.clone();
            next.push(sub);
            todo.push(next);
        }
        seen.push(cmd.join(" "));
    }
    // The walk reached the commands the old hand-written list had missed, and more.
    for c in ["forget", "prune", "repair", "repair index", "key passwd", "incident verify", "drill review"] {
        assert!(seen.iter().any(|s| s == c), "{c} not reached: {seen:?}");
    }
    assert!(seen.len() >= 45, "{seen:?}");
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
