//! `kura mount`: the snapshots as a read-only FUSE file system, through the real
//! binary and the kernel. Skipped, with the reason printed, where /dev/fuse does not
//! exist or mounting is not permitted (a container without CAP_SYS_ADMIN).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::util::*;

/// A running `kura mount`, and the first line it printed once the mount was live.
struct Mounted {
    child: Option<Child>,
    dir: PathBuf,
}

/// Starts `kura mount DIR`; `None` (with the reason printed) where FUSE cannot mount.
fn mount(r: &TestRepo, dir: &Path) -> Option<Mounted> {
    mount_with(r, dir, &[])
}

/// `kura mount DIR EXTRA...`.
fn mount_with(r: &TestRepo, dir: &Path, extra: &[&str]) -> Option<Mounted> {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: /dev/fuse does not exist on this machine");
        return None;
    }
    let mut args = vec!["mount", s(dir)];
    args.extend_from_slice(extra);
    let mut child = r.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start kura mount");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    if line.starts_with("mounted ") {
        return Some(Mounted { child: Some(child), dir: dir.to_path_buf() });
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "kura mount panicked:\n{err}");
    // Refused by the kernel, or (not root, or no CAP_SYS_ADMIN) no fusermount3 to fall back on.
    if err.contains("not permitted") || err.contains("needs fusermount3") {
        eprintln!("skipped: mounting is not permitted here: {err}");
        return None;
    }
    panic!("kura mount failed (exit {:?}):\n{line}\n{err}", out.status.code());
}

impl Mounted {
    /// SIGTERM, then the exit status and whether the mount point is empty and gone
    /// from the mount table.
    fn stop(mut self) -> (Option<i32>, String, bool) {
        let child = self.child.take().unwrap();
        // SAFETY: kill with a child's pid and a valid signal number.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
        let out = child.wait_with_output().unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let gone = std::fs::read_dir(&self.dir).unwrap().next().is_none() && !mounts.contains(s(&self.dir));
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), gone)
    }
}

/// A test that failed half-way still stops its mount.
impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill with a child's pid and a valid signal number.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

/// Names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every entry with its type, content hash, mode, owner and mtime (inode numbers and
/// allocation left out: the mount shows each name as its own inode).
fn metadata(root: &Path) -> BTreeMap<PathBuf, String> {
    scan(root)
        .into_iter()
        .map(|(p, e)| (p, format!("{:?} {:o} {}:{} {}", e.kind, e.mode, e.uid, e.gid, e.mtime_ns)))
        .collect()
}

#[test]
fn mount_shows_snapshots_by_id_host_tag_and_time_and_unmounts_on_sigterm() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    let sample = sample_tree(&src, 3 << 20);
    // More entries than one readdir call returns.
    for i in 0..1300 {
        write(&src.join(format!("many/f{i:04}")), format!("{i}\n"));
    }
    let first = r.backup(&[&src], &["--tag", "one"]);
    let before = metadata(&src);
    write(&src.join("notes/new.txt"), "new\n");
    let second = r.backup(&[&src], &["--tag", "two", "--host", "other"]);
    let mnt = r.base().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let Some(m) = mount(&r, &mnt) else { return };

    // The layout: ids, hosts, tags, snapshots by time with `latest`.
    assert_eq!(names(&mnt), ["hosts", "ids", "snapshots", "tags"]);
    let (id1, id2) = (&text(&first, "snapshot")[..8], &text(&second, "snapshot")[..8]);
    let mut ids = vec![id1.to_string(), id2.to_string()];
    ids.sort();
    assert_eq!(names(&mnt.join("ids")), ids);
    assert_eq!(names(&mnt.join("hosts")), {
        let mut h = vec![kura::host_name(), "other".to_string()];
        h.sort();
        h
    });
    assert_eq!(names(&mnt.join("tags")), ["one", "two"]);
    let times = names(&mnt.join("snapshots"));
    assert_eq!(times.len(), 3, "{times:?}");
    assert_eq!(times[2], "latest");
    // 2026-12-06T01:02:03Z, and -<short id> after it when two share the second.
    assert!(times[0].len() >= 20 && &times[0][10..11] == "T" && &times[0][19..20] == "Z", "{times:?}");
    let latest = std::fs::read_link(mnt.join("snapshots/latest")).unwrap();
    // The newer one: by name, or by id when both were taken in the same second.
    let l = latest.to_str().unwrap();
    assert!(l == times[1] || l.ends_with(id2), "{latest:?} {times:?}");
    assert_eq!(
        std::fs::read_link(mnt.join("hosts/other/latest")).unwrap(),
        std::fs::read_link(mnt.join("tags/two/latest")).unwrap()
    );

    // The newest snapshot through `latest`: every file byte for byte, modes, owners,
    // times and symlinks as backed up.
    let rel = src.strip_prefix("/").unwrap();
    let view = mnt.join("snapshots/latest").join(rel);
    assert_eq!(metadata(&view), metadata(&src));
    assert_eq!(names(&view.join("many")).len(), 1300);
    assert_eq!(hash_file(&view.join(sample.random)), hash_file(&src.join(sample.random)));
    assert_eq!(std::fs::read_link(view.join("link_rel")).unwrap(), Path::new("hello.txt"));
    // The older snapshot by id and by tag: without the later file.
    let old = mnt.join("ids").join(id1).join(rel);
    assert_eq!(metadata(&old), before);
    assert!(mnt.join("tags/one/latest").join(rel).join("hello.txt").exists());
    assert!(!mnt.join("tags/one/latest").join(rel).join("notes/new.txt").exists());
    // Read-only, and a shared lock held while mounted.
    assert!(std::fs::write(view.join("hello.txt"), "x").is_err());
    assert!(std::fs::create_dir(view.join("newdir")).is_err());
    assert_eq!(std::fs::read_dir(r.path.join("locks")).unwrap().count(), 1);

    let (code, stderr, gone) = m.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(gone, "{} is still mounted or not empty after SIGTERM", mnt.display());
    assert_eq!(std::fs::read_dir(r.path.join("locks")).unwrap().count(), 0);
}

#[test]
fn mount_shows_only_the_snapshots_the_filters_select() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    write(&src.join("a.txt"), "a\n");
    r.backup(&[&src], &["--tag", "daily", "--host", "web1"]);
    let db = r.backup(&[&src], &["--tag", "daily", "--host", "db1"]);
    r.backup(&[&src], &["--tag", "hourly", "--host", "db1"]);
    let mnt = r.base().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let Some(m) = mount_with(&r, &mnt, &["--host", "db1", "--tag", "daily"]) else { return };
    assert_eq!(names(&mnt.join("ids")), [&text(&db, "snapshot")[..8]]);
    assert_eq!(names(&mnt.join("hosts")), ["db1"]);
    assert_eq!(names(&mnt.join("tags")), ["daily"]);
    let (code, stderr, _) = m.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn mount_refuses_a_missing_or_non_empty_mount_point() {
    let r = TestRepo::new();
    let missing = r.base().join("no-such-dir");
    r.kura(["mount", s(&missing)]).code(2).stderr_has("does not exist").stderr_has("no-such-dir");
    let full = r.base().join("full");
    write(&full.join("file"), "x");
    r.kura(["mount", s(&full)]).code(2).stderr_has("is not empty");
    r.kura(["mount", s(&full.join("file"))]).code(2).stderr_has("is not a directory");
    r.kura(["mount", "--help"]).ok().stdout_has("hosts/<host>/<time>/");
}

/// A flipped byte in a file's data: reading that file through the mount fails with
/// EIO, kura's stderr names the file, and the rest of the mount keeps working.
#[test]
fn mount_read_of_damaged_data_is_eio_and_named() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("big.bin"), 3 << 20, 5);
    write(&src.join("small.txt"), "fine\n");
    r.backup(&[&src], &[]);
    let (pack, _) = r.packs()[0].clone();
    flip_middle_byte(&pack);
    let mnt = r.base().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let Some(m) = mount(&r, &mnt) else { return };
    let view = mnt.join("snapshots/latest").join(src.strip_prefix("/").unwrap());
    let err = std::fs::read(view.join("big.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(names(&view), ["big.bin", "small.txt"]);
    let (code, stderr, gone) = m.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(gone);
    assert!(stderr.contains("reading big.bin at offset"), "{stderr}");
}
