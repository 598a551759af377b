//! Secrets and permissions: hooks never see the passphrase (and so it is stored
//! nowhere), repositories and state databases are private whatever the umask, and
//! the daemon's socket cannot be taken over by another local user.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::state_db::Site;
use crate::util::*;

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn hooks_get_a_clean_environment_and_the_passphrase_is_stored_nowhere() {
    let hook = r#"env; echo "pw=[$KURA_PASSWORD] file=[$KURA_PASSWORD_FILE]""#;
    let site = Site::new(&["files"], hook, "hook_env = ['IT_PGHOST']");
    let id = site.ready_incident();
    let pw_file = site.base().join("password");
    let out = run(site
        .recover_cmd(&id)
        .env("KURA_PASSWORD_FILE", &pw_file)
        .env("IT_PGHOST", "db.example")
        .env("IT_TOKEN", "not-for-hooks")
        .env("KURA_LOG", "debug"));
    out.ok();
    assert!(!out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD), "{out}");

    let status = site.kura(&["--json", "recover", "status", "--incident", &id]).ok().json();
    let hooks = status["systems"][0]["hooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 3, "{status:#}");
    for h in hooks {
        let o = h["output"].as_str().unwrap();
        assert!(o.contains("pw=[] file=[]"), "the hook saw kura's passphrase: {o}");
        assert!(o.contains("IT_PGHOST=db.example"), "the plan's hook_env is passed: {o}");
        assert!(o.contains("KURA_SYSTEM=files") && o.contains("PATH="), "{o}");
        assert!(!o.contains("not-for-hooks"), "a variable not in hook_env reached the hook: {o}");
    }
    // The passphrase is in no file of the state database (nor its WAL).
    for f in fs::read_dir(site.state.parent().unwrap()).unwrap() {
        let f = f.unwrap().path();
        assert!(!contains(&fs::read(&f).unwrap(), PASSWORD), "the passphrase is stored in {}", f.display());
    }

    // A plan cannot hand kura's own variables to hooks.
    let bad = site.base().join("bad.toml");
    let text = fs::read_to_string(&site.plan).unwrap().replace("'IT_PGHOST'", "'KURA_PASSWORD', 'A-B'");
    write(&bad, text);
    site.kura(&["plan", "validate", s(&bad)])
        .code(2)
        .stderr_has("hook_env[0]")
        .stderr_has("KURA_PASSWORD is one of kura's own variables")
        .stderr_has("hook_env[1]");
}

/// Runs `cmd` with umask 0: whatever kura creates must still be private.
fn umask0(cmd: &mut Command) -> &mut Command {
    // SAFETY: umask is async-signal-safe and has no preconditions.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        })
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn repositories_and_state_databases_are_private_whatever_the_umask() {
    let r = TestRepo::uninit();
    run(umask0(&mut r.cmd(["init"]))).ok();
    let src = r.base().join("src");
    write(&src.join("a.txt"), "private data\n");
    run(umask0(&mut r.cmd(["backup", s(&src)]))).ok();
    let mut seen = 0;
    for (rel, e) in scan(&r.path) {
        let want = if e.kind == EntryKind::Dir { 0o700 } else { 0o600 };
        assert_eq!(e.mode, want, "{} has mode {:04o}", rel.display(), e.mode);
        seen += 1;
    }
    assert!(seen > 260, "{seen} entries");

    let state = r.base().join("st/sub/state.db");
    run(umask0(bare_kura().arg("--state").arg(&state).args(["incident", "open", "--title", "t"]))).ok();
    assert_eq!(mode(&r.base().join("st")), 0o700);
    assert_eq!(mode(&r.base().join("st/sub")), 0o700);
    for f in fs::read_dir(r.base().join("st/sub")).unwrap() {
        let f = f.unwrap().path();
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }

    // Made before kura set modes itself: a warning says how to fix it.
    chmod(&r.path, 0o755);
    chmod(&r.path.join("config"), 0o644);
    r.kura(["snapshots"]).ok().stderr_has("other users").stderr_has(&format!("chmod -R go-rwx {}", s(&r.path)));
    chmod(&state, 0o644);
    run(bare_kura().arg("--state").arg(&state).args(["incident", "list"]))
        .ok()
        .stderr_has(s(&state))
        .stderr_has("chmod 600");
}

fn daemon_config(base: &Path) -> PathBuf {
    let repo = base.join("repo");
    let pw = base.join("pass");
    write(&pw, PASSWORD);
    chmod(&pw, 0o600);
    run(bare_kura().arg("--repo").arg(&repo).arg("init").env("KURA_PASSWORD", PASSWORD)).ok();
    let cfg = base.join("kura.toml");
    write(&cfg, format!("[repository]\nlocation = '{}'\npassword_file = '{}'\n", s(&repo), s(&pw)));
    cfg
}

fn start_daemon(base: &Path, cfg: &Path, socket: &Path) -> std::process::Child {
    bare_kura()
        .args(["daemon", "--config", s(cfg), "--state", s(&base.join("state.db")), "--socket", s(socket)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits up to `limit` for `child` to exit (else kills it and fails with `what`).
fn finished_within(mut child: std::process::Child, limit: Duration, what: &str) -> Out {
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Waits (bounded) for a daemon that should refuse to start.
fn refused(child: std::process::Child) -> Out {
    finished_within(child, Duration::from_secs(30), "the daemon started although it should have refused")
}

#[test]
fn the_daemon_refuses_a_socket_directory_others_can_use() {
    let base = tempfile::Builder::new().prefix("kura-it-").tempdir().unwrap();
    let cfg = daemon_config(base.path());
    let run_dir = base.path().join("run");
    fs::create_dir(&run_dir).unwrap();
    chmod(&run_dir, 0o755);
    let socket = run_dir.join("kura.sock");
    refused(start_daemon(base.path(), &cfg, &socket))
        .code(2)
        .stderr_has(s(&run_dir))
        .stderr_has("mode 0755")
        .stderr_has(&format!("chmod 700 {}", s(&run_dir)));
    assert!(!socket.exists());

    if is_root() {
        chmod(&run_dir, 0o700);
        std::os::unix::fs::chown(&run_dir, Some(65534), Some(65534)).unwrap();
        refused(start_daemon(base.path(), &cfg, &socket)).code(2).stderr_has("belongs to uid 65534");
        assert!(!socket.exists());
    }

    // A directory it creates itself is 0700 and the daemon starts.
    let own = base.path().join("own/run");
    let sock = own.join("kura.sock");
    let mut child = start_daemon(base.path(), &cfg, &sock);
    let t = Instant::now();
    while !sock.exists() {
        assert!(t.elapsed() < Duration::from_secs(60), "the daemon did not start");
        assert!(child.try_wait().unwrap().is_none(), "the daemon stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(mode(&own), 0o700);
    run(bare_kura().args(["daemon", "stop", "--socket", s(&sock)])).ok();
    let _ = child.wait();
}

#[test]
fn the_cli_does_not_talk_to_a_socket_of_another_user() {
    if !is_root() {
        eprintln!("skipped: making a socket owned by another user needs root");
        return;
    }
    let base = tempfile::Builder::new().prefix("kura-it-").tempdir().unwrap();
    let sock = base.path().join("kura.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::os::unix::fs::lchown(&sock, Some(65534), Some(65534)).unwrap();
    assert_eq!(fs::symlink_metadata(&sock).unwrap().uid(), 65534);
    for args in [&["status"][..], &["jobs"][..], &["run", "web"][..], &["daemon", "stop"][..]] {
        let child = bare_kura().args(args).args(["--socket", s(&sock)]).stderr(Stdio::piped()).spawn().unwrap();
        // A CLI that talked would wait forever for an answer: bound it.
        finished_within(child, Duration::from_secs(30), "kura talked to the socket of another user")
            .code(2)
            .stderr_has(s(&sock))
            .stderr_has("belongs to uid 65534");
    }
    // Nothing connected to it.
    assert_eq!(listener.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
}
