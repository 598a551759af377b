//! Restore never writes outside its target: not for crafted snapshots whose names try
//! to climb out, and not through symlinks already planted in the target.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kura::backend::local::LocalBackend;
use kura::backend::Kind;
use kura::repo::index::{IndexFile, IndexPack};
use kura::repo::pack::PackBuilder;
use kura::repo::snapshot::Snapshot;
use kura::repo::tree::{Node, NodeType, RawName, Tree};
use kura::repo::Repository;
use kura::types::{BlobId, BlobType};

use crate::util::*;

fn open(r: &TestRepo) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(&r.path)), PASSWORD.as_bytes()).expect("open repository")
}

/// Stores blobs in one new pack plus an index file naming it.
fn store(repo: &Repository, blobs: &[(BlobType, Vec<u8>)]) -> Vec<BlobId> {
    let mut pb = PackBuilder::new(0);
    let mut ids = Vec::new();
    for (t, data) in blobs {
        let id = repo.key().blob_id(data);
        pb.add(id, *t, &repo.key().encrypt(data), data.len() as u32, false);
        ids.push(id);
    }
    let (pack, bytes, entries) = pb.finish(repo.key());
    repo.backend().put(Kind::Pack, &pack.to_hex(), &bytes).unwrap();
    let index = IndexFile { packs: vec![IndexPack::new(pack, bytes.len() as u64, &entries)] };
    repo.save_json(Kind::Index, &index).unwrap();
    ids
}

fn node(name: &[u8], node_type: NodeType) -> Node {
    Node {
        mode: if node_type == NodeType::Dir { 0o755 } else { 0o644 },
        mtime_ns: 1_600_000_000_000_000_000,
        ctime_ns: 1_600_000_000_000_000_000,
        ..Node::new(RawName(name.to_vec()), node_type)
    }
}

fn file(repo: &Repository, name: &[u8], content: &[u8]) -> Node {
    let id = store(repo, &[(BlobType::Data, content.to_vec())])[0];
    Node { size: content.len() as u64, content: vec![id], ..node(name, NodeType::File) }
}

/// Stores a tree as given: `Tree::encode` does not validate, so bad names get through.
fn dir(repo: &Repository, name: &[u8], nodes: Vec<Node>) -> Node {
    let id = store(repo, &[(BlobType::Tree, Tree { nodes }.encode())])[0];
    Node { subtree: Some(id), ..node(name, NodeType::Dir) }
}

fn symlink(name: &[u8], target: &Path) -> Node {
    use std::os::unix::ffi::OsStrExt;
    Node { target: Some(RawName(target.as_os_str().as_bytes().to_vec())), ..node(name, NodeType::Symlink) }
}

/// Saves a snapshot whose root tree holds `nodes`; returns its id.
fn snapshot(repo: &Repository, nodes: Vec<Node>) -> String {
    let root = store(repo, &[(BlobType::Tree, Tree { nodes }.encode())])[0];
    let snap = Snapshot {
        time: chrono::Utc::now(),
        host: "evil".into(),
        username: "mallory".into(),
        paths: vec!["/evil".into()],
        tags: vec![],
        parent: None,
        tree: root,
        partial: false,
        summary: None,
        program_version: "handcrafted".into(),
        original: None,
        signals: None,
    };
    repo.save_json(Kind::Snapshot, &snap).unwrap().to_hex()
}

/// Every path under `base` except the repository, for before/after comparisons.
fn outside(base: &Path, skip: &[&Path]) -> Vec<PathBuf> {
    scan(base)
        .into_keys()
        .filter(|p| !skip.iter().any(|s| base.join(p).starts_with(s)))
        .filter(|p| !base.join(p).starts_with(base.join("repo")))
        .collect()
}

#[test]
fn crafted_names_cannot_escape_the_target() {
    let r = TestRepo::new();
    let base = r.base().to_path_buf();
    let targets = base.join("targets");
    let repo = open(&r);

    let ok = || file(&repo, b"ok.txt", b"fine\n");
    let abs = format!("{}/escape-abs", base.display());
    let cases: Vec<(&str, Vec<Node>)> = vec![
        ("dotdot-dir", vec![dir(&repo, b"..", vec![file(&repo, b"escape-dotdot", b"pwned")]), ok()]),
        ("dotdot-file", vec![file(&repo, b"..", b"pwned"), ok()]),
        ("slashes", vec![file(&repo, b"../../escape-slashes", b"pwned"), ok()]),
        ("a-slash-b", vec![dir(&repo, b"a", vec![]), file(&repo, b"a/b", b"pwned"), ok()]),
        ("absolute", vec![file(&repo, abs.as_bytes(), b"pwned"), ok()]),
        (
            "nested",
            vec![dir(&repo, b"ok", vec![dir(&repo, b"deeper", vec![file(&repo, b"../../../../escape-nested", b"x")])])],
        ),
        ("dot", vec![dir(&repo, b".", vec![file(&repo, b"escape-dot", b"x")])]),
        ("empty-name", vec![file(&repo, b"", b"x"), ok()]),
        ("nul", vec![file(&repo, b"a\0b", b"x"), ok()]),
        (
            // A symlink out of the target and a directory of the same name through which
            // a file would be written: duplicate names are refused.
            "duplicate",
            vec![symlink(b"s", &base), dir(&repo, b"s", vec![file(&repo, b"escape-dup", b"x")])],
        ),
    ];
    let ids: Vec<(&str, String)> = cases.into_iter().map(|(n, nodes)| (n, snapshot(&repo, nodes))).collect();
    drop(repo);

    let before = outside(&base, &[&targets]);
    for (case, id) in &ids {
        let target = targets.join(case);
        let out = r.restore(id, &target, &[]);
        assert_eq!(out.code, 2, "restoring the {case} snapshot must fail:\n{out}");
        assert!(out.stderr.contains("unsafe path"), "{case}: expected an unsafe path error:\n{out}");
        // Nothing lands outside the target (the listing is taken before and after).
        assert_eq!(outside(&base, &[&targets]), before, "{case} wrote outside the target");
        assert!(!Path::new(&abs).exists());
        // Nor inside it: the plan is refused before anything is written.
        if targets.exists() {
            for (p, _) in scan(&targets) {
                assert!(!p.to_string_lossy().contains("escape"), "{case}: {} was written", p.display());
            }
        }
        // Listing it fails the same way, without a panic.
        r.kura(["ls", id]).code(2).stderr_has("unsafe path");
    }
    // check reports every crafted snapshot as damaged.
    let out = r.kura(["check"]);
    out.code(1);
    assert!(out.stdout.matches("unsafe path").count() >= ids.len(), "{out}");
}

#[test]
fn restore_refuses_to_write_through_planted_symlinks() {
    let r = TestRepo::new();
    let base = r.base();
    let src = base.join("src");
    sample_tree(&src, 64 << 10);
    r.backup(&[&src], &[]);
    let outside_dir = base.join("outside");
    fs::create_dir(&outside_dir).unwrap();

    // 1. The first directory on the way (TARGET/tmp) is a symlink to a directory outside.
    let t1 = base.join("t1");
    fs::create_dir(&t1).unwrap();
    let first = src.components().nth(1).unwrap().as_os_str().to_owned(); // "tmp"
    std::os::unix::fs::symlink(&outside_dir, t1.join(&first)).unwrap();
    let out = r.restore("latest", &t1, &[]);
    out.code(2).stderr_has("symlink");
    assert_eq!(fs::read_dir(&outside_dir).unwrap().count(), 0, "restore wrote through {}", t1.display());

    // 2. A directory deep inside the restored tree is a symlink to outside.
    let t2 = base.join("t2");
    let copy = restored(&t2, &src);
    fs::create_dir_all(&copy).unwrap();
    std::os::unix::fs::symlink(&outside_dir, copy.join("notes")).unwrap();
    r.restore("latest", &t2, &[]).code(2).stderr_has("symlink");
    assert_eq!(fs::read_dir(&outside_dir).unwrap().count(), 0, "restore wrote through {}/notes", copy.display());

    // 3. Symlinks planted where a file and its temp file go are replaced, never followed.
    let victim = base.join("victim.txt");
    write(&victim, "do not touch");
    let t3 = base.join("t3");
    let copy = restored(&t3, &src);
    fs::create_dir_all(&copy).unwrap();
    std::os::unix::fs::symlink(&victim, copy.join("hello.txt")).unwrap();
    std::os::unix::fs::symlink(&victim, copy.join(kura::restore::temp_name("private.txt".as_ref(), 0))).unwrap();
    r.restore("latest", &t3, &[]).ok();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "do not touch");
    assert_same_tree(&src, &copy, FULL);
}

#[test]
fn a_symlink_restored_from_one_snapshot_is_not_followed_by_the_next() {
    let r = TestRepo::new();
    let base = r.base();
    let src = base.join("src");
    let outside_dir = base.join("outside");
    fs::create_dir_all(&outside_dir).unwrap();
    fs::create_dir_all(&src).unwrap();
    // Snapshot 1: src/x is a symlink to a directory outside.
    std::os::unix::fs::symlink(&outside_dir, src.join("x")).unwrap();
    let first = r.backup(&[&src], &[]);
    // Snapshot 2: src/x is a directory with a file in it.
    fs::remove_file(src.join("x")).unwrap();
    write(&src.join("x/file.txt"), "inside");
    r.backup(&[&src], &[]);

    let target = base.join("target");
    r.restore(text(&first, "snapshot"), &target, &[]).ok();
    let link = restored(&target, &src).join("x");
    assert_eq!(fs::read_link(&link).unwrap(), outside_dir);
    let out = r.restore("latest", &target, &[]);
    out.code(2).stderr_has("symlink");
    assert_eq!(fs::read_dir(&outside_dir).unwrap().count(), 0, "restore followed the symlink it restored");
}

#[test]
fn file_names_that_look_like_restore_temp_files_are_restored_intact() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    let tmp = |name: &str, attempt| kura::restore::temp_name(name.as_ref(), attempt);
    write(&src.join("a"), "the file a\n".repeat(100));
    write(&src.join(tmp("a", 0)), "a file that happens to have a's temp name\n".repeat(100));
    write(&src.join(tmp("a", 1)), "and the next temp name a would try\n".repeat(100));
    write(&src.join("b"), "");
    write(&src.join(tmp("b", 0)), "");
    write(&src.join("c"), "c\n");
    write(&src.join(tmp("c", 0)).join("inside"), "a directory with c's temp name\n");
    r.backup(&[&src], &[]);
    let target = r.base().join("target");
    r.restore("latest", &target, &[]).ok();
    let copy = restored(&target, &src);
    assert_same_tree(&src, &copy, FULL);
    // Resuming, with the temp-like files already in place, leaves them intact too.
    fs::remove_file(copy.join("a")).unwrap();
    fs::remove_file(copy.join("c")).unwrap();
    let again = r.restore("latest", &target, &[]).ok().json();
    assert_eq!(num(&again, "files_restored"), 2, "{again:#}");
    assert_same_tree(&src, &copy, FULL);
}

/// Stores trees built bottom-up (each tree's id is known before its parent is
/// encoded) in one pack.
fn store_trees(repo: &Repository, trees: Vec<Vec<u8>>) {
    store(repo, &trees.into_iter().map(|t| (BlobType::Tree, t)).collect::<Vec<_>>());
}

#[test]
fn a_tree_graph_naming_two_to_the_thirty_paths_is_refused_at_once() {
    let r = TestRepo::new();
    let repo = open(&r);
    // 30 trees, each naming the one below twice: 2^30 paths in a few hundred bytes.
    let mut nodes = vec![file(&repo, b"f", b"x")];
    let mut trees = Vec::new();
    for _ in 0..30 {
        let bytes = Tree { nodes }.encode();
        let id = repo.key().blob_id(&bytes);
        trees.push(bytes);
        let sub = |name: &[u8]| Node { subtree: Some(id), ..node(name, NodeType::Dir) };
        nodes = vec![sub(b"a"), sub(b"b")];
    }
    store_trees(&repo, trees);
    let id = snapshot(&repo, nodes);
    drop(repo);

    let target = r.base().join("target");
    let started = std::time::Instant::now();
    r.restore(&id, &target, &[]).code(2).stderr_has("more than 10000000 entries");
    assert!(!target.exists(), "refused before anything was written");
    r.kura(["ls", &id]).code(2).stderr_has("more than 10000000 entries");
    // A subpath small enough is fine.
    let sub = format!("{id}:/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a");
    r.restore(&sub, &target, &[]).ok();
    assert_eq!(files_under(&target).len(), 1 << 10);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "took {:?}", started.elapsed());
}

/// A chain of `levels` directories named `d`, with `leaf.txt` at the bottom.
fn deep_snapshot(repo: &Repository, levels: usize) -> String {
    let mut nodes = vec![file(repo, b"leaf.txt", b"at the bottom\n")];
    let mut trees = Vec::new();
    for _ in 0..levels {
        let bytes = Tree { nodes }.encode();
        let id = repo.key().blob_id(&bytes);
        trees.push(bytes);
        nodes = vec![Node { subtree: Some(id), ..node(b"d", NodeType::Dir) }];
    }
    store_trees(repo, trees);
    snapshot(repo, nodes)
}

#[test]
fn a_tree_1000_levels_deep_restores_quickly_and_a_deeper_one_is_refused() {
    let r = TestRepo::new();
    let repo = open(&r);
    let deep = deep_snapshot(&repo, 1000);
    let deeper = deep_snapshot(&repo, 1100);
    drop(repo);

    let target = r.base().join("deep");
    let started = std::time::Instant::now();
    let out = r.restore(&deep, &target, &["--verify"]);
    let took = started.elapsed();
    out.ok();
    eprintln!("restored 1000 levels in {took:?}");
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    let leaf: PathBuf = std::iter::repeat_n("d", 1000).collect::<PathBuf>().join("leaf.txt");
    assert_eq!(fs::read_to_string(target.join(leaf)).unwrap(), "at the bottom\n");
    // Again, with everything in place: all skipped.
    assert_eq!(num(&r.restore(&deep, &target, &[]).ok().json(), "files_skipped"), 1);

    let target = r.base().join("deeper");
    r.restore(&deeper, &target, &[]).code(2).stderr_has("more than 1024 levels");
    assert!(!target.exists(), "refused before anything was written");
    r.kura(["ls", &deeper]).code(2).stderr_has("more than 1024 levels");
}

#[test]
fn a_file_whose_size_disagrees_with_its_content_is_refused() {
    let r = TestRepo::new();
    let repo = open(&r);
    let huge = Node { size: 1 << 50, ..file(&repo, b"huge", b"thirteen bytes") };
    let short = Node { size: 3, ..file(&repo, b"short", b"more than three") };
    let no_content = Node { size: 10, ..node(b"none", NodeType::File) };
    let ids: Vec<String> = [huge, short, no_content]
        .into_iter()
        .map(|n| snapshot(&repo, vec![dir(&repo, b"in", vec![n]), file(&repo, b"ok.txt", b"fine")]))
        .collect();
    drop(repo);
    for (id, name) in ids.iter().zip(["huge", "short", "none"]) {
        let target = r.base().join(name);
        let out = r.restore(id, &target, &[]);
        out.code(2).stderr_has(&format!("file /in/{name}")).stderr_has("disagrees with its content");
        assert!(!target.exists(), "{name}: refused before anything was written");
    }
}

/// A process running as uid 65534 in `dir` (which that uid owns), swapping `dir/x`
/// with a symlink to `outside` as fast as it can; killed when dropped.
struct Swapper(libc::pid_t);

impl Swapper {
    fn start(dir: &Path, outside: &Path) -> Swapper {
        use std::os::unix::ffi::OsStrExt;
        let c = |b: &[u8]| std::ffi::CString::new(b).unwrap();
        let (dir_c, outside_c, x, lnk) =
            (c(dir.as_os_str().as_bytes()), c(outside.as_os_str().as_bytes()), c(b"x"), c(b"lnk"));
        // SAFETY: the child makes only async-signal-safe system calls on buffers
        // prepared before the fork, and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            unsafe {
                if libc::chdir(dir_c.as_ptr()) != 0
                    || libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    libc::_exit(3);
                }
                libc::mkdir(x.as_ptr(), 0o755);
                libc::symlink(outside_c.as_ptr(), lnk.as_ptr());
                loop {
                    libc::syscall(
                        libc::SYS_renameat2,
                        libc::AT_FDCWD,
                        x.as_ptr(),
                        libc::AT_FDCWD,
                        lnk.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    );
                }
            }
        }
        let s = Swapper(pid);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fs::symlink_metadata(dir.join("lnk")).is_err() {
            assert!(std::time::Instant::now() < deadline, "the swapper did not start");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        s
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        // SAFETY: the pid is our own child.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

#[test]
fn a_user_swapping_a_directory_for_a_symlink_during_a_restore_cannot_redirect_it() {
    use std::os::unix::fs::MetadataExt;
    if !is_root() {
        eprintln!("skipped: needs root, to restore as root while uid 65534 races it");
        return;
    }
    let r = TestRepo::new();
    let base = r.base();
    let src = base.join("src");
    for i in 0..200 {
        write(&src.join(format!("d/x/f{i:03}.txt")), format!("file {i}\n").repeat(i + 1));
    }
    for i in 0..20 {
        write(&src.join(format!("d/x/sub/g{i:02}.txt")), format!("nested {i}\n"));
    }
    // If restore set the directory's mode through the symlink, the outside
    // directory would become 0777.
    chmod(&src.join("d/x"), 0o777);
    chmod(&src.join("d/x/sub"), 0o777);
    r.backup(&[&src], &[]);
    let outside = base.join("outside");
    fs::create_dir(&outside).unwrap();
    chmod(&outside, 0o755);
    let before = fs::metadata(&outside).unwrap();

    let started = std::time::Instant::now();
    let (mut runs, mut refused) = (0, 0);
    while runs < 5 || (runs < 50 && started.elapsed() < std::time::Duration::from_secs(5)) {
        let target = base.join(format!("t{runs}"));
        let d = restored(&target, &src).join("d");
        fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
        let swapper = Swapper::start(&d, &outside);
        let out = r.restore("latest", &target, &[]);
        drop(swapper);
        match out.code {
            0 => {}
            2 => {
                refused += 1;
                assert!(out.stderr.contains("symlink") || out.stderr.contains("No such file"), "run {runs}:\n{out}");
            }
            _ => panic!("run {runs}: unexpected result:\n{out}"),
        }
        let written: Vec<_> = fs::read_dir(&outside).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(written.is_empty(), "run {runs}: restore wrote outside its target: {written:?}\n{out}");
        let m = fs::metadata(&outside).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o755, "run {runs}: the outside directory's mode changed");
        assert_eq!(
            (m.uid(), m.gid(), m.mtime(), m.mtime_nsec()),
            (before.uid(), before.gid(), before.mtime(), before.mtime_nsec())
        );
        runs += 1;
    }
    eprintln!("{runs} raced restores, {refused} refused a symlink on the way");
}
