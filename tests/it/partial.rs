//! A file that cannot be read makes a partial snapshot (exit 1) that still holds
//! everything else.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

const NOBODY: u32 = 65534;

/// Runs `kura` as an unprivileged user when we are root (root reads every file
/// whatever its mode), else as ourselves. The binary is linked into `base` so that
/// the user can reach it whatever the permissions of the build directory.
fn unprivileged_kura(base: &Path, repo: &Path) -> Command {
    let mut c = if is_root() {
        let exe = base.join("kura");
        if !exe.exists() && fs::hard_link(KURA, &exe).is_err() {
            fs::copy(KURA, &exe).unwrap();
        }
        let mut c = Command::new(&exe);
        c.uid(NOBODY).gid(NOBODY);
        c
    } else {
        Command::new(KURA)
    };
    c.env_clear().env("KURA_PASSWORD", PASSWORD).arg("--repo").arg(repo).stdin(std::process::Stdio::null());
    c
}

/// Restores permissions at the end so that the temp dir can be removed by a non-root user.
struct Unlock(Vec<PathBuf>);
impl Drop for Unlock {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        }
    }
}

#[test]
fn unreadable_file_makes_a_partial_snapshot() {
    let r = TestRepo::uninit();
    let base = r.base();
    chmod(base, 0o755); // tempfile makes 0700 directories
    if is_root() {
        // The unprivileged user must reach the temp dir (TMPDIR could be private).
        for dir in base.ancestors().skip(1) {
            let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(dir).unwrap().permissions());
            if mode & 0o001 == 0 {
                eprintln!("skipped: {} is not searchable by others, so uid {NOBODY} cannot run there", dir.display());
                return;
            }
        }
    }
    let src = base.join("src");
    write(&src.join("readable.txt"), "you can read me\n");
    write(&src.join("sub/also.txt"), "me too\n");
    write_random(&src.join("sub/data.bin"), 100 << 10, 3);
    write(&src.join("secret.txt"), "you cannot read me\n");
    write(&src.join("locked/inside.txt"), "nor me\n");
    for p in ["", "sub", "locked"] {
        chmod(&src.join(p), 0o755);
    }
    let secret = src.join("secret.txt");
    let locked = src.join("locked");
    chmod(&secret, 0o000);
    chmod(&locked, 0o000);
    let unlock = Unlock(vec![secret.clone(), locked.clone()]);
    // The repository belongs to the user that writes into it.
    fs::create_dir(&r.path).unwrap();
    chmod(&r.path, 0o777);
    run(unprivileged_kura(base, &r.path).arg("init")).ok();

    let out = run(unprivileged_kura(base, &r.path).args(["--json", "backup", s(&src)]));
    out.code(1).stderr_has("warning:").stderr_has(s(&secret)).stderr_has(s(&locked));
    let b = out.json();
    assert_eq!(b["partial"], true, "{b:#}");
    let warnings = b["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{b:#}");
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains(s(&secret))), "{b:#}");

    // The rest of the commands run as ourselves (root can read the repository).
    let snaps = r.snapshots(&[]);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["partial"], true, "{:#}", snaps[0]);
    r.kura(["snapshots"]).ok().stdout_has("(partial)");
    r.kura(["check", "--read-data"]).ok();

    let target = base.join("target");
    r.restore("latest", &target, &["--verify"]).ok();
    let copy = restored(&target, &src);
    let files = files_under(&copy);
    let expected: std::collections::BTreeSet<PathBuf> =
        ["readable.txt", "sub/also.txt", "sub/data.bin"].iter().map(PathBuf::from).collect();
    assert_eq!(files, expected);
    for f in &expected {
        assert_eq!(hash_file(&copy.join(f)), hash_file(&src.join(f)), "{}", f.display());
    }
    assert!(!copy.join("secret.txt").exists() && !copy.join("locked").exists());

    // Once readable again, the next backup is complete and exits 0.
    drop(unlock);
    let out = run(unprivileged_kura(base, &r.path).args(["--json", "backup", s(&src)]));
    out.ok();
    assert_eq!(out.json()["partial"], false);
}
