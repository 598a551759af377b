//! What a package installs beside the binary: shell completions and man pages, made
//! by the binary itself from its clap definitions. The shells and man are used when
//! installed (bash and man usually are); none is installed for these tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::help::command_tree;
use crate::util::*;

/// Whether `tool` is an executable on PATH.
fn installed(tool: &str) -> bool {
    std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file())).unwrap_or(false)
}

/// A tool's output, with stderr, for the checks below.
#[track_caller]
fn tool(cmd: &mut Command) -> Out {
    let o = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Writes `kura completions SHELL` into `dir` and returns the file.
fn completion_script(dir: &Path, shell: &str) -> PathBuf {
    let out = run(bare_kura().args(["completions", shell]));
    out.ok();
    assert!(!out.stdout.trim().is_empty(), "empty {shell} completion script");
    for sub in ["backup", "restore", "snapshots", "daemon", "incident", "completions", "man"] {
        out.stdout_has(sub);
    }
    let path = dir.join(format!("kura.{shell}"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        completion_script(dir.path(), shell);
    }
    // Nested subcommands and options are there too.
    let bash = run(bare_kura().args(["completions", "bash"]));
    bash.stdout_has("resolve-cause").stdout_has("--read-data-subset");
    // A shell kura does not know is refused with the ones it does.
    run(bare_kura().args(["completions", "tcsh"])).code(2).stderr_has("bash");
    // A closed stdout ends it quietly (no panic), as every command.
    let mut child = bare_kura()
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Sourced into bash, the script registers a completion for `kura`, and completing
/// `kura res` and `kura repair ` offers the commands.
#[test]
fn bash_completion_registers_and_completes() {
    if !installed("bash") {
        eprintln!("bash is not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script(dir.path(), "bash");
    let out = tool(Command::new("bash").arg("-c").arg(format!(
        r#"source '{}' || exit 3
complete -p kura || exit 4
COMP_WORDS=(kura res); COMP_CWORD=1; COMP_LINE="kura res"; COMP_POINT=8
_kura kura res kura; echo "first: ${{COMPREPLY[*]}}"
COMP_WORDS=(kura repair ""); COMP_CWORD=2; COMP_LINE="kura repair "; COMP_POINT=12
_kura kura "" repair; echo "second: ${{COMPREPLY[*]}}""#,
        s(&script)
    )));
    out.ok();
    assert!(out.stderr.is_empty(), "{out}");
    out.stdout_has("complete ").stdout_has("-F _kura kura");
    let line = |p: &str| out.stdout.lines().find(|l| l.starts_with(p)).unwrap_or_default().to_string();
    let first = line("first:");
    assert!(first.contains("restore") && !first.contains("backup"), "{out}");
    let second = line("second:");
    for sub in ["index", "packs", "snapshots"] {
        assert!(second.split_whitespace().any(|w| w == sub), "{sub} missing: {out}");
    }
}

/// zsh and fish, only where they are installed: the script loads and completes.
#[test]
fn zsh_and_fish_completions_load_where_installed() {
    let dir = tempfile::tempdir().unwrap();
    if installed("zsh") {
        let script = completion_script(dir.path(), "zsh");
        let fpath = dir.path().join("fpath");
        std::fs::create_dir(&fpath).unwrap();
        std::fs::copy(&script, fpath.join("_kura")).unwrap();
        let out = tool(Command::new("zsh").args(["-f", "-c"]).arg(format!(
            "zsh -n {script} || exit 3; fpath=({fpath} $fpath); autoload -Uz compinit; compinit -u -D; \
             print -r -- \"kura: ${{_comps[kura]}}\"",
            script = s(&script),
            fpath = s(&fpath)
        )));
        out.ok().stdout_has("kura: _kura");
    } else {
        eprintln!("zsh is not installed: skipped");
    }
    if installed("fish") {
        let script = completion_script(dir.path(), "fish");
        let out = tool(
            Command::new("fish")
                .arg("--no-config")
                .arg("-c")
                .arg(format!("source '{}'; and complete -C'kura res'", s(&script))),
        );
        out.ok().stdout_has("restore");
    } else {
        eprintln!("fish is not installed: skipped");
    }
}

/// `kura man DIR` writes one page per command of the clap tree, named as man expects
/// (`kura-repair-index.1`), and nothing else; each renders without a warning and has
/// its NAME section.
#[test]
fn man_pages_cover_the_command_tree_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = run(bare_kura().arg("man").arg(&pages));
    out.ok();
    let mut want: Vec<String> = command_tree()
        .iter()
        .map(|cmd| std::iter::once("kura").chain(cmd.iter().map(String::as_str)).collect::<Vec<_>>().join("-") + ".1")
        .collect();
    want.sort();
    let mut have: Vec<String> =
        std::fs::read_dir(&pages).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    have.sort();
    assert_eq!(have, want, "pages written differ from the command tree");
    for page in ["kura.1", "kura-backup.1", "kura-repair-index.1", "kura-daemon-stop.1"] {
        assert!(have.iter().any(|p| p == page), "{page} missing: {have:?}");
    }
    // The paths written are printed, one a line.
    assert_eq!(out.stdout.lines().count(), want.len(), "{out}");
    let json = run(bare_kura().arg("--json").arg("man").arg(dir.path().join("again"))).ok().json();
    assert_eq!(json["pages"].as_array().map(Vec::len), Some(want.len()));

    // Every field of the title line is set (an empty date would shift the others).
    let top = std::fs::read_to_string(pages.join("kura.1")).unwrap();
    let th = top.lines().find(|l| l.starts_with(".TH ")).unwrap();
    assert!(th.contains(concat!("\"kura ", env!("CARGO_PKG_VERSION"), "\"")) && th.contains("\"kura manual\""), "{th}");

    let renderer: Option<fn(&Path) -> Command> = if installed("man") {
        Some(|page| {
            let mut c = Command::new("man");
            c.args(["--warnings", "-l"]).arg(page).env("MANWIDTH", "80").env_remove("MANPAGER").env_remove("PAGER");
            c
        })
    } else if installed("nroff") {
        Some(|page| {
            let mut c = Command::new("nroff");
            c.args(["-man", "-ww"]).arg(page);
            c
        })
    } else {
        eprintln!("neither man nor nroff is installed: rendering skipped");
        None
    };
    if let Some(render) = renderer {
        for page in &have {
            let out = tool(&mut render(&pages.join(page)));
            out.ok();
            assert!(out.stderr.trim().is_empty(), "{page} renders with warnings:\n{out}");
            out.stdout_has("NAME").stdout_has("SYNOPSIS").stdout_has(page.trim_end_matches(".1"));
        }
    }
}
