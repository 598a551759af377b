//! Helpers shared by the integration tests: temporary repositories, running the real
//! `kura` binary, building sample trees, and comparing trees on disk.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{RngCore, SeedableRng};
use serde_json::Value;

/// The binary under test, built by cargo for this test target.
pub const KURA: &str = env!("CARGO_BIN_EXE_kura");
pub const PASSWORD: &str = "correct horse battery staple";

/// Environment variables that would change how kura behaves; cleared for every run.
const KURA_VARS: &[&str] = &[
    "KURA_REPOSITORY",
    "KURA_PASSWORD",
    "KURA_PASSWORD_FILE",
    "KURA_NEW_PASSWORD",
    "KURA_NEW_PASSWORD_FILE",
    "KURA_LOG",
    // A developer's remote coordinator must not turn test commands into remote ones.
    "KURA_COORDINATOR",
    "KURA_IDENTITY",
];

/// Exit code, stdout and stderr of one run of the binary.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit code {}\n--- stdout:\n{}\n--- stderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

impl Out {
    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success, got:\n{self}");
        self
    }

    /// Asserts the given exit code.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "expected exit code {code}, got:\n{self}");
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(self.stderr.contains(needle), "expected {needle:?} on stderr, got:\n{self}");
        self
    }

    /// Asserts that stdout contains `needle`.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(self.stdout.contains(needle), "expected {needle:?} on stdout, got:\n{self}");
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

/// Runs a prepared command to completion. Every run is checked for panics: whatever a
/// test expects, kura must never panic (exit code 101 or "panicked" on stderr).
#[track_caller]
pub fn run(cmd: &mut Command) -> Out {
    let o = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let out = Out {
        code: o.status.code().unwrap_or_else(|| -o.status.signal().unwrap_or(0)),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(!out.stderr.contains("panicked") && out.code != 101, "kura panicked: {cmd:?}\n{out}");
    out
}

/// `kura` with every KURA_* variable cleared and no repository or passphrase set.
pub fn bare_kura() -> Command {
    let mut c = Command::new(KURA);
    for v in KURA_VARS {
        c.env_remove(v);
    }
    // Remote repositories' metadata caches go under the build's temp dir, not ~/.cache.
    c.env("KURA_CACHE_DIR", concat!(env!("CARGO_TARGET_TMPDIR"), "/kura-cache"));
    c.stdin(std::process::Stdio::null());
    c
}

/// A path as &str (temp paths are always UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A temporary directory holding a repository (`<base>/repo`) and whatever the test
/// puts beside it (sources, restore targets).
pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TestRepo {
    /// Takes a shared lock on the repository, as a running backup or restore of
    /// another process would (this test process is alive, so the lock is live).
    pub fn hold_lock(&self, purpose: &str) -> kura::repo::lock::LockGuard {
        let backend = std::sync::Arc::new(kura::backend::local::LocalBackend::new(&self.path));
        let repo = std::sync::Arc::new(kura::repo::Repository::open(backend, PASSWORD.as_bytes()).unwrap());
        kura::repo::lock::LockGuard::acquire(&repo, kura::repo::lock::LockKind::Shared, purpose).unwrap()
    }

    /// A fresh, initialized repository protected by `PASSWORD`.
    pub fn new() -> Self {
        let r = Self::uninit();
        r.kura(["init"]).ok();
        r
    }

    /// A temp directory whose `repo` does not exist yet.
    pub fn uninit() -> Self {
        let dir = tempfile::Builder::new().prefix("kura-it-").tempdir().expect("temp dir");
        let path = dir.path().join("repo");
        TestRepo { dir, path }
    }

    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// `kura --repo <repo>` with KURA_PASSWORD set to `password`.
    pub fn cmd_with_password<I, S>(&self, password: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = bare_kura();
        c.arg("--repo").arg(&self.path).args(args).env("KURA_PASSWORD", password);
        c
    }

    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd_with_password(PASSWORD, args)
    }

    #[track_caller]
    pub fn kura<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&mut self.cmd(args))
    }

    #[track_caller]
    pub fn kura_with_password<I, S>(&self, password: &str, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&mut self.cmd_with_password(password, args))
    }

    /// `backup --json PATHS EXTRA...`; asserts exit 0 and returns the JSON report.
    #[track_caller]
    pub fn backup(&self, paths: &[&Path], extra: &[&str]) -> Value {
        let mut args: Vec<&str> = vec!["--json", "backup"];
        args.extend(paths.iter().map(|p| s(p)));
        args.extend_from_slice(extra);
        self.kura(args).ok().json()
    }

    /// `snapshots --json EXTRA...` as a list.
    #[track_caller]
    pub fn snapshots(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["--json", "snapshots"];
        args.extend_from_slice(extra);
        match self.kura(args).ok().json() {
            Value::Array(a) => a,
            v => panic!("snapshots --json is not a list: {v}"),
        }
    }

    /// `restore --json SPEC --target TARGET EXTRA...` (exit code not checked).
    #[track_caller]
    pub fn restore(&self, spec: &str, target: &Path, extra: &[&str]) -> Out {
        let mut args = vec!["--json", "restore", spec, "--target", s(target)];
        args.extend_from_slice(extra);
        self.kura(args)
    }

    /// Stored pack files, as (path, size), largest first.
    pub fn packs(&self) -> Vec<(PathBuf, u64)> {
        let mut out = Vec::new();
        for d in fs::read_dir(self.path.join("data")).unwrap() {
            for f in fs::read_dir(d.unwrap().path()).unwrap() {
                let f = f.unwrap();
                out.push((f.path(), f.metadata().unwrap().len()));
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

/// Where `src` (an absolute path that was backed up) lands when the whole snapshot is
/// restored into `target`: restore recreates the absolute path under the target.
pub fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").expect("absolute path"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Writes `len` pseudo-random (incompressible) bytes, reproducible from `seed`.
pub fn write_random(path: &Path, len: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut f = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
}

pub fn write(path: &Path, content: impl AsRef<[u8]>) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, content).unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets mtime (and atime) without following symlinks.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

/// What `sample_tree` made, by path relative to its root.
pub struct Sample {
    /// Regular files (all names, including both names of the hard link).
    pub files: Vec<&'static str>,
    pub random: &'static str,
    pub sparse: &'static str,
}

pub const SPARSE_LEN: u64 = 4 << 20;

/// Builds a tree with text files, a random file of `random_len` bytes, nested and
/// empty directories, an empty file, symlinks (relative, absolute, dangling), a hard
/// link pair, a sparse file, and a spread of modes. Ownership is varied when root.
/// Modification times are set last, with distinct nanoseconds, deepest first.
pub fn sample_tree(root: &Path, random_len: usize) -> Sample {
    fs::create_dir_all(root).unwrap();
    write(&root.join("hello.txt"), "hello world\n");
    write(&root.join("notes/readme.md"), "# notes\n".repeat(50));
    write(&root.join("notes/deep/er/est/leaf.txt"), "a leaf\n");
    write(&root.join("notes/todo.txt"), "1. test\n2. ship\n");
    write(&root.join("empty_file"), "");
    fs::create_dir_all(root.join("empty_dir")).unwrap();
    fs::create_dir_all(root.join("data")).unwrap();
    write_random(&root.join("data/random.bin"), random_len, 42);
    write(&root.join("data/linked.txt"), "two names, one inode\n");
    fs::hard_link(root.join("data/linked.txt"), root.join("notes/also_linked.txt")).unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link_rel")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/kura/dangling", root.join("link_abs")).unwrap();
    std::os::unix::fs::symlink("../data", root.join("notes/link_dir")).unwrap();
    {
        let mut f = fs::File::create(root.join("sparse.img")).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"a little data in a big hole").unwrap();
        f.set_len(SPARSE_LEN).unwrap();
    }
    write(&root.join("script.sh"), "#!/bin/sh\necho hi\n");
    write(&root.join("private.txt"), "secret\n");
    write(&root.join("setgid_file"), "sg\n");

    if is_root() {
        let own = |p: &str, uid: u32, gid: u32| std::os::unix::fs::lchown(root.join(p), Some(uid), Some(gid)).unwrap();
        own("hello.txt", 1234, 5678);
        own("notes", 4321, 8765);
        own("link_rel", 1111, 2222);
        own("data/random.bin", 65534, 65534);
        own("setgid_file", 0, 100);
    }
    chmod(&root.join("script.sh"), 0o755);
    chmod(&root.join("private.txt"), 0o600);
    chmod(&root.join("setgid_file"), 0o2750);
    chmod(&root.join("hello.txt"), 0o640);
    chmod(&root.join("notes/deep"), 0o750);
    chmod(&root.join("empty_dir"), 0o700);

    set_times_deepest_first(root);
    Sample {
        files: vec![
            "hello.txt",
            "notes/readme.md",
            "notes/deep/er/est/leaf.txt",
            "notes/todo.txt",
            "empty_file",
            "data/random.bin",
            "data/linked.txt",
            "notes/also_linked.txt",
            "sparse.img",
            "script.sh",
            "private.txt",
            "setgid_file",
        ],
        random: "data/random.bin",
        sparse: "sparse.img",
    }
}

/// Gives every entry under `root` (and `root`) a distinct mtime with nanoseconds,
/// children before their directory so that setting them does not disturb it.
pub fn set_times_deepest_first(root: &Path) {
    let mut all: Vec<PathBuf> = scan(root).into_keys().map(|rel| root.join(rel)).collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_600_000_000 + 1000 * i as i64, 123_456_789 + i as u32);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File {
        size: u64,
        hash: String,
    },
    Dir,
    Symlink(PathBuf),
    /// Fifo, socket, device: not backed up.
    Special,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
    pub ino: u64,
    /// Allocated bytes (st_blocks * 512).
    pub allocated: u64,
}

/// Every entry under `root`, by path relative to it ("" is `root` itself).
pub fn scan(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    scan_into(root, Path::new(""), &mut out);
    out
}

fn scan_into(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let full = if rel.as_os_str().is_empty() { root.to_path_buf() } else { root.join(rel) };
    let m = fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink(fs::read_link(&full).unwrap())
    } else if ft.is_file() {
        EntryKind::File { size: m.len(), hash: hash_file(&full) }
    } else {
        EntryKind::Special
    };
    out.insert(
        rel.to_path_buf(),
        Entry {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ino: m.ino(),
            allocated: m.blocks() * 512,
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(&full).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for n in names {
            scan_into(root, &rel.join(n), out);
        }
    }
}

pub fn hash_file(p: &Path) -> String {
    let mut h = blake3::Hasher::new();
    let mut f = fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().to_hex().to_string()
}

/// What `assert_same_tree` compares beyond names, types, content and link targets.
#[derive(Clone, Copy)]
pub struct Compare {
    /// Modification times (to the nanosecond).
    pub times: bool,
    /// Mode, owner and time of the two roots themselves (off when the restore target
    /// stands for the root and is not itself restored).
    pub root_meta: bool,
}

pub const FULL: Compare = Compare { times: true, root_meta: true };

/// Asserts that `dst` holds exactly what `src` holds (special files in `src` are
/// expected to be absent from `dst`): the same names and types, file contents,
/// symlink targets, modes, owners, times, and hard links as shared inodes.
#[track_caller]
pub fn assert_same_tree(src: &Path, dst: &Path, cmp: Compare) {
    let a: BTreeMap<_, _> = scan(src).into_iter().filter(|(_, e)| e.kind != EntryKind::Special).collect();
    let b = scan(dst);
    let mut problems = Vec::new();
    let ka: BTreeSet<_> = a.keys().collect();
    let kb: BTreeSet<_> = b.keys().collect();
    for p in ka.difference(&kb) {
        problems.push(format!("{}: missing from the restored tree", p.display()));
    }
    for p in kb.difference(&ka) {
        problems.push(format!("{}: not in the source tree", p.display()));
    }
    for (p, x) in &a {
        let Some(y) = b.get(p) else { continue };
        let is_root = p.as_os_str().is_empty();
        if x.kind != y.kind {
            problems.push(format!("{}: {:?} became {:?}", p.display(), x.kind, y.kind));
        }
        if is_root && !cmp.root_meta {
            continue;
        }
        if x.mode != y.mode {
            problems.push(format!("{}: mode {:o} became {:o}", p.display(), x.mode, y.mode));
        }
        if (x.uid, x.gid) != (y.uid, y.gid) {
            problems.push(format!("{}: owner {}:{} became {}:{}", p.display(), x.uid, x.gid, y.uid, y.gid));
        }
        if cmp.times && x.mtime_ns != y.mtime_ns {
            problems.push(format!("{}: mtime {} became {}", p.display(), x.mtime_ns, y.mtime_ns));
        }
    }
    // Hard links: names sharing an inode in the source share one in the copy, and
    // names that do not, do not.
    let mut groups: HashMap<u64, Vec<&PathBuf>> = HashMap::new();
    for (p, x) in &a {
        if matches!(x.kind, EntryKind::File { .. }) {
            groups.entry(x.ino).or_default().push(p);
        }
    }
    let mut dst_inodes: HashMap<u64, &PathBuf> = HashMap::new();
    for names in groups.values() {
        let inodes: BTreeSet<u64> = names.iter().filter_map(|p| b.get(*p)).map(|e| e.ino).collect();
        if inodes.len() > 1 {
            problems.push(format!("{names:?} are hard links in the source but not in the copy"));
        }
        for ino in inodes {
            if let Some(other) = dst_inodes.insert(ino, names[0]) {
                problems.push(format!(
                    "{} and {} share an inode in the copy only",
                    other.display(),
                    names[0].display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{} differs from {}:\n  {}", dst.display(), src.display(), problems.join("\n  "));
}

/// Files and directories under `root` with sizes and content hashes: what must not
/// change when a command is expected to leave a repository alone.
pub fn listing(root: &Path) -> BTreeMap<PathBuf, String> {
    scan(root)
        .into_iter()
        .map(|(p, e)| {
            let d = match e.kind {
                EntryKind::File { size, hash } => format!("file {size} {hash}"),
                k => format!("{k:?}"),
            };
            (p, d)
        })
        .collect()
}

/// Relative paths of the regular files under `root`.
pub fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    scan(root).into_iter().filter(|(_, e)| matches!(e.kind, EntryKind::File { .. })).map(|(p, _)| p).collect()
}

/// Makes `fifo` and `sock` in `dir`; kura must skip both with a note.
pub fn make_special_files(dir: &Path) -> (PathBuf, PathBuf) {
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo: {}", std::io::Error::last_os_error());
    let sock = dir.join("sock");
    // Binding creates the socket file; it stays after the listener is dropped.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    (fifo, sock)
}

/// Number (as u64) at `key` in a JSON object, with a readable failure.
#[track_caller]
pub fn num(v: &Value, key: &str) -> u64 {
    let mut cur = v;
    for k in key.split('.') {
        cur = &cur[k];
    }
    cur.as_u64().unwrap_or_else(|| panic!("{key} is not a number in {v:#}"))
}

/// String at `key` in a JSON object.
#[track_caller]
pub fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} is not a string in {v:#}"))
}

/// Flips one bit in the middle of a file (a pack): the blob there no longer
/// authenticates.
pub fn flip_middle_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(path, &bytes).unwrap();
}
