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

/// Whether a file name matches a pattern with at most one `*` (the asset globs of
/// [package.metadata.deb] are `*.toml`, `*.md`, `*.1`).
fn glob_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            assert!(!tail.contains('*'), "pattern {pattern} has more than one *");
            name.len() >= head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail)
        }
    }
}

/// The package's assets without a release build: `scripts/deb.sh --assets-only` with
/// the test binary generates target/assets/ (here a temp directory), and every source
/// that [package.metadata.deb] lists exists and is not empty, so a renamed doc or
/// example cannot break the package unnoticed. The unit is the contrib one with the
/// packaged path, and systemd-analyze (where installed) finds nothing wrong with it.
#[test]
fn deb_assets_exist_for_every_listed_source() {
    if !installed("bash") || !installed("sed") {
        eprintln!("bash or sed is not installed: skipped");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    let out = tool(
        Command::new("bash")
            .arg(root.join("scripts/deb.sh"))
            .arg("--assets-only")
            .env("KURA_BIN", KURA)
            .env("KURA_DEB_ASSETS", &assets)
            .env_remove("SOURCE_DATE_EPOCH"),
    );
    out.ok();

    let manifest: toml_edit::DocumentMut = std::fs::read_to_string(root.join("Cargo.toml")).unwrap().parse().unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    for field in ["maintainer", "depends", "extended-description", "section"] {
        assert!(deb[field].as_str().is_some_and(|v| !v.is_empty()), "[package.metadata.deb] has no {field}");
    }
    let list = deb["assets"].as_array().expect("[package.metadata.deb] assets");
    let mut dests = Vec::new();
    for entry in list.iter() {
        let entry = entry.as_array().expect("an asset is [source, dest, mode]");
        let field = |i: usize| entry.get(i).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("{entry}")).to_string();
        let (src, dest, mode) = (field(0), field(1), field(2));
        assert!(mode == "644" || mode == "755", "{src}: mode {mode}");
        dests.push(dest.clone());
        if src == "target/release/kura" {
            assert_eq!((dest.as_str(), mode.as_str()), ("usr/bin/", "755"));
            continue;
        }
        let path = match src.strip_prefix("target/assets/") {
            Some(rest) => assets.join(rest),
            None => root.join(&src),
        };
        let (parent, pattern) = (path.parent().unwrap(), path.file_name().unwrap().to_str().unwrap());
        let matches: Vec<PathBuf> = std::fs::read_dir(parent)
            .unwrap_or_else(|e| panic!("{src}: {}: {e}", parent.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| glob_matches(pattern, p.file_name().unwrap().to_str().unwrap()))
            .collect();
        assert!(!matches.is_empty(), "asset {src} matches no file");
        for m in &matches {
            assert!(std::fs::metadata(m).unwrap().len() > 0, "asset {} is empty", m.display());
        }
        if src.contains('*') {
            assert!(dest.ends_with('/'), "{src}: a glob goes to a directory, not {dest}");
        }
    }
    for want in [
        "lib/systemd/system/kura.service",
        "lib/systemd/system/kura-agent.service",
        "usr/share/man/man1/",
        "usr/share/bash-completion/completions/kura",
        "usr/share/zsh/vendor-completions/_kura",
        "usr/share/fish/vendor_completions.d/kura.fish",
        "usr/share/doc/kura/examples/",
    ] {
        assert!(dests.iter().any(|d| d == want), "no asset is installed to {want}: {dests:?}");
    }

    // One page per command, and the completion scripts are the binary's.
    assert_eq!(std::fs::read_dir(assets.join("man")).unwrap().count(), command_tree().len());
    let bash = std::fs::read_to_string(assets.join("completions/kura.bash")).unwrap();
    assert_eq!(bash, run(bare_kura().args(["completions", "bash"])).ok().stdout);

    // Both units (the daemon's, the fleet agent's) with the packaged binary's path.
    let units = [
        ("kura.service", "ExecStart=/usr/bin/kura daemon "),
        ("kura-agent.service", "ExecStart=/usr/bin/kura agent run --dir /var/lib/kura-agent\n"),
    ];
    for (name, exec) in units {
        let unit = std::fs::read_to_string(assets.join(name)).unwrap();
        assert!(unit.contains(exec) && !unit.contains("/usr/local/bin"), "{name}:\n{unit}");
        if installed("systemd-analyze") {
            // The unit as packaged, with the binary under test in /usr/bin/kura's place.
            let here = dir.path().join(name);
            std::fs::write(&here, unit.replace("/usr/bin/kura", KURA)).unwrap();
            let out = tool(Command::new("systemd-analyze").arg("verify").arg(&here));
            out.ok();
            assert!(out.stderr.trim().is_empty() && out.stdout.trim().is_empty(), "{name}: {out}");
        } else {
            eprintln!("systemd-analyze is not installed: {name} is not verified");
        }
    }
    // The agent's unit: its identity directory is systemd's, owner-only, and it is
    // confined (no new privileges, a bounded capability set, kernel out of reach).
    let agent = std::fs::read_to_string(assets.join("kura-agent.service")).unwrap();
    for line in [
        "StateDirectory=kura-agent",
        "StateDirectoryMode=0700",
        "WorkingDirectory=/var/lib/kura-agent",
        "UMask=0077",
        "NoNewPrivileges=true",
        "ProtectKernelModules=true",
        "RestartPreventExitStatus=2",
        "WantedBy=multi-user.target",
    ] {
        assert!(agent.lines().any(|l| l == line), "kura-agent.service has no {line}");
    }
    assert!(agent.lines().any(|l| l.starts_with("CapabilityBoundingSet=")), "kura-agent.service: no capability bound");
}
