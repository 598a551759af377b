//! Streams as backup sources: `backup --stdin-from-command` and `--stdin`.

use std::fs;
use std::io::Write;
use std::process::Stdio;

use crate::util::*;

/// A script that writes the same 5 MB of pseudo-random bytes every time.
fn producer(r: &TestRepo) -> std::path::PathBuf {
    let data = r.base().join("data.bin");
    write_random(&data, 5_000_000, 7);
    let script = r.base().join("produce.sh");
    write(&script, format!("#!/bin/sh\ncat '{}'\necho done >&2\n", s(&data)));
    chmod(&script, 0o755);
    script
}

#[test]
fn command_output_restores_byte_identical_and_deduplicates() {
    let r = TestRepo::new();
    let script = producer(&r);
    let args = ["--json", "backup", "--stdin-from-command", "--stdin-filename", "dump.bin", "--", s(&script)];
    let first = r.kura(args).ok().json();
    assert!(num(&first, "summary.bytes_added") > 4_000_000, "{first:#}");
    assert_eq!(num(&first, "summary.bytes_total"), 5_000_000, "{first:#}");

    let target = r.base().join("out");
    r.restore("latest", &target, &[]).ok();
    assert_eq!(hash_file(&target.join("dump.bin")), hash_file(&r.base().join("data.bin")));
    let snaps = r.snapshots(&[]);
    assert_eq!(snaps[0]["paths"][0], "/dump.bin", "{:#}", snaps[0]);

    // The same output again: its chunks are known, almost nothing is added.
    let second = r.kura(args).ok().json();
    assert_eq!(second["parent"], first["snapshot"], "{second:#}");
    assert!(num(&second, "summary.bytes_added") < 16 * 1024, "{second:#}");
}

#[test]
fn failing_command_writes_no_snapshot_and_exits_1() {
    let r = TestRepo::new();
    let out = r.kura(["backup", "--stdin-from-command", "--", "sh", "-c", "echo partial; echo oops >&2; exit 3"]);
    out.code(1).stderr_has("exit status 3").stderr_has("oops").stderr_has("no snapshot was written");
    assert!(r.snapshots(&[]).is_empty());

    let out = r.kura(["backup", "--stdin-from-command", "--", "sh", "-c", "kill -9 $$"]);
    out.code(1).stderr_has("killed by signal 9");
    let out = r.kura(["backup", "--stdin-from-command", "--", "/nonexistent/tool"]);
    out.code(1).stderr_has("/nonexistent/tool").stderr_has("could not start");
    assert!(r.snapshots(&[]).is_empty());
}

/// `--command-timeout`: a command still running at the deadline is killed, no
/// snapshot is written, and the error names the command and the timeout.
#[test]
fn a_command_past_its_timeout_is_killed_and_writes_no_snapshot() {
    let r = TestRepo::new();
    let out = r.kura(["backup", "--stdin-from-command", "--command-timeout", "1s", "--", "sleep", "30"]);
    out.code(1).stderr_has("`sleep 30`").stderr_has("timeout of 1s").stderr_has("no snapshot was written");
    assert!(r.snapshots(&[]).is_empty());
    // A command that ends in time is backed up as usual.
    let out = r.kura(["backup", "--stdin-from-command", "--command-timeout", "10m", "--", "echo", "in time"]);
    out.ok();
    assert_eq!(r.snapshots(&[]).len(), 1);
    r.kura(["backup", "--stdin-from-command", "--command-timeout", "soon", "--", "true"]).code(2).stderr_has("soon");
    r.kura(["backup", "--stdin-from-command", "--command-timeout", "0", "--", "true"])
        .code(2)
        .stderr_has("timeout of 0");
    r.kura(["backup", "--command-timeout", "1s", s(r.base())]).code(2).stderr_has("--stdin-from-command");
}

#[test]
fn bad_stream_arguments_are_errors() {
    let r = TestRepo::new();
    r.kura(["backup", "--stdin-from-command", "--stdin-filename", "a/b", "--", "true"])
        .code(2)
        .stderr_has("one plain file name");
    r.kura(["backup", "--stdin-from-command"]).code(2).stderr_has("required");
    r.kura(["backup", "--stdin-filename", "x", s(r.base())]).code(2).stderr_has("needs --stdin");
    assert!(r.snapshots(&[]).is_empty());
}

#[test]
fn stdin_is_stored_as_a_file() {
    let r = TestRepo::new();
    let mut child = r
        .cmd(["--json", "backup", "--stdin", "--stdin-filename", "notes.txt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello from stdin\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let target = r.base().join("out");
    r.restore("latest", &target, &[]).ok();
    assert_eq!(fs::read(target.join("notes.txt")).unwrap(), b"hello from stdin\n");
}

/// A system whose config declares a command: `kura run backup:NAME` through a real
/// daemon stores the command's output beside the paths; a failing command's run is
/// recorded as failed with its status and stderr, and leaves no snapshot.
#[test]
fn daemon_backs_up_a_systems_command_and_records_a_failing_one() {
    use crate::daemon::{eventually, Setup};
    let setup = Setup::new();
    let etc = setup.src("etc");
    setup.configure(
        "",
        &format!(
            "[[system]]\nname = \"db\"\npriority = 3\npaths = [\"{}\"]\n\
             command = [\"sh\", \"-c\", \"echo header; seq 1 200000\"]\nstdin_filename = \"db.dump\"\n\n\
             [[system]]\nname = \"bad\"\npriority = 1\ncommand = [\"sh\", \"-c\", \"echo broken >&2; exit 4\"]\n",
            s(&etc)
        ),
    );
    let _d = setup.daemon();
    let run = eventually(60, "a manual run of backup:db", || {
        let out = setup.cli(&["--json", "run", "backup:db"]);
        (!out.stderr.contains("is already running")).then(|| out.ok().json())
    });
    let snap = text(&run, "snapshot").to_string();
    let target = setup.repo.base().join("out");
    setup.repo.restore(&snap, &target, &[]).ok();
    let mut want = b"header\n".to_vec();
    (1..=200000).for_each(|i| want.extend(format!("{i}\n").into_bytes()));
    assert_eq!(fs::read(target.join("db.dump")).unwrap(), want);
    assert_eq!(fs::read(restored(&target, &etc).join("file.txt")).unwrap(), b"data of etc\n");

    let out = setup.cli(&["--json", "run", "backup:bad"]);
    assert_ne!(out.code, 0, "{out}");
    let failed = eventually(30, "a failed run of bad", || {
        setup.jobs(&[]).into_iter().find(|r| r["system"] == "bad" && r["outcome"] == "failed")
    });
    let err = text(&failed, "error");
    assert!(err.contains("exit status 4") && err.contains("broken"), "{failed:#}");
    assert_eq!(setup.repo.snapshots(&["--tag", "system:bad"]).len(), 0);
}
