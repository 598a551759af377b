//! The FUSE adapter of `kura mount`: kernel requests answered from
//! `kura::mount::{layout, Source}`. Everything here is read-only; inode numbers are
//! handed out as entries are first looked up or listed, and stay for the mount's life.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig,
    LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyXattr, Request,
};
use kura::mount::layout::{self, Layout};
use kura::mount::{OpenFile, Source};
use kura::repo::snapshot::Snapshot;
use kura::repo::tree::{Node, NodeType};
use kura::types::{BlobId, FileId};

/// Snapshots never change: the kernel may keep what it was told this long.
const TTL: Duration = Duration::from_secs(300);

/// Most entries one `readdir` call copies; the kernel asks again for the rest.
const READDIR_BATCH: usize = 512;

/// What an inode stands for.
#[derive(Clone)]
enum What {
    /// A directory of the layout (`ids/`, `hosts/web1/`, ...).
    Layout(usize),
    /// A `latest` symlink.
    Link(String),
    /// A snapshot's root directory.
    Root { tree: BlobId, time: SystemTime },
    /// An entry of a snapshot's tree.
    Node(Arc<Node>),
}

/// A directory entry: its name and what it is.
type Named = (Vec<u8>, What);

#[derive(Default)]
struct Inodes {
    /// Inode `n` is `list[n - 1]`; inode 1 is the mount's root.
    list: Vec<What>,
    by_name: HashMap<(u64, Vec<u8>), u64>,
}

pub struct MountFs {
    source: Arc<Source>,
    layout: Layout,
    roots: Vec<(BlobId, SystemTime)>,
    inodes: Mutex<Inodes>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next_fh: AtomicU64,
    owner: (u32, u32),
}

fn system_time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

impl MountFs {
    pub fn new(source: Arc<Source>, snaps: &[(FileId, Snapshot)]) -> MountFs {
        let roots = snaps.iter().map(|(_, s)| (s.tree, SystemTime::from(s.time))).collect();
        // SAFETY: getuid and getgid have no preconditions and cannot fail.
        let owner = unsafe { (libc::getuid(), libc::getgid()) };
        MountFs {
            source,
            layout: Layout::build(snaps),
            roots,
            inodes: Mutex::new(Inodes { list: vec![What::Layout(0)], by_name: HashMap::new() }),
            files: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            owner,
        }
    }

    fn what(&self, ino: INodeNo) -> Option<What> {
        let i = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        i.list.get((ino.0 as usize).checked_sub(1)?).cloned()
    }

    /// The inode of `name` in `parent`, made on first use.
    fn child(&self, parent: u64, name: &[u8], what: What) -> u64 {
        let mut i = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&ino) = i.by_name.get(&(parent, name.to_vec())) {
            return ino;
        }
        i.list.push(what);
        let ino = i.list.len() as u64;
        i.by_name.insert((parent, name.to_vec()), ino);
        ino
    }

    fn layout_what(&self, e: &layout::Entry) -> What {
        match e {
            layout::Entry::Dir(d) => What::Layout(*d),
            layout::Entry::Link(t) => What::Link(t.clone()),
            layout::Entry::Snapshot(i) => What::Root { tree: self.roots[*i].0, time: self.roots[*i].1 },
        }
    }

    /// The tree a directory inode lists, if it is a snapshot directory.
    fn subtree(what: &What) -> Option<BlobId> {
        match what {
            What::Root { tree, .. } => Some(*tree),
            What::Node(n) if n.node_type == NodeType::Dir => n.subtree,
            _ => None,
        }
    }

    /// Up to `READDIR_BATCH` entries of a directory from number `skip` on (`None`: not
    /// a directory), names with what they are. Only these are copied, so listing a
    /// large directory in many calls stays linear.
    fn entries(&self, what: &What, skip: usize) -> kura::Result<Option<Vec<Named>>> {
        if let What::Layout(d) = what {
            let dir = &self.layout.dirs[*d];
            let page = dir.entries.iter().skip(skip).take(READDIR_BATCH);
            return Ok(Some(page.map(|(n, e)| (n.as_bytes().to_vec(), self.layout_what(e))).collect()));
        }
        if let What::Node(n) = what {
            if n.node_type == NodeType::Dir && n.subtree.is_none() {
                return Ok(Some(Vec::new()));
            }
        }
        let Some(tree) = Self::subtree(what) else { return Ok(None) };
        let t = self.source.tree(&tree)?;
        let page = t.nodes.iter().skip(skip).take(READDIR_BATCH);
        Ok(Some(page.map(|n| (n.name.0.clone(), What::Node(Arc::new(n.clone())))).collect()))
    }

    /// One entry of a directory by name.
    fn find(&self, what: &What, name: &[u8]) -> kura::Result<Option<What>> {
        if let What::Layout(d) = what {
            let name = std::str::from_utf8(name).unwrap_or("");
            return Ok(self.layout.lookup(*d, name).map(|e| self.layout_what(e)));
        }
        let Some(tree) = Self::subtree(what) else { return Ok(None) };
        let t = self.source.tree(&tree)?;
        Ok(t.find(name).map(|n| What::Node(Arc::new(n.clone()))))
    }

    fn attr(&self, ino: u64, what: &What) -> FileAttr {
        let (uid, gid) = self.owner;
        let dir = |time: SystemTime| FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid,
            gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        match what {
            What::Layout(d) => dir(SystemTime::from(self.layout.dirs[*d].mtime)),
            What::Root { time, .. } => dir(*time),
            What::Link(t) => FileAttr {
                kind: FileType::Symlink,
                perm: 0o777,
                size: t.len() as u64,
                nlink: 1,
                ..dir(SystemTime::from(self.layout.dirs[0].mtime))
            },
            What::Node(n) => node_attr(ino, n),
        }
    }

    fn fail(&self, what: &str, e: kura::Error) -> Errno {
        tracing::error!("{what}: {e}");
        Errno::EIO
    }
}

fn node_attr(ino: u64, n: &Node) -> FileAttr {
    let (kind, size) = match n.node_type {
        NodeType::Dir => (FileType::Directory, 0),
        NodeType::File => (FileType::RegularFile, n.size),
        NodeType::Symlink => (FileType::Symlink, n.target.as_ref().map_or(0, |t| t.0.len() as u64)),
    };
    let mtime = system_time(n.mtime_ns);
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: system_time(n.ctime_ns),
        crtime: mtime,
        kind,
        perm: (n.mode & 0o7777) as u16,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: n.uid,
        gid: n.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for MountFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Bigger reads per request; the kernel keeps its own maximum if lower.
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(dir) = self.what(parent) else { return reply.error(Errno::ENOENT) };
        match self.find(&dir, name.as_bytes()) {
            Ok(Some(what)) => {
                let ino = self.child(parent.0, name.as_bytes(), what.clone());
                reply.entry(&TTL, &self.attr(ino, &what), Generation(0));
            }
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(self.fail(&format!("looking up {}", name.to_string_lossy()), e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.what(ino) {
            Some(what) => reply.attr(&TTL, &self.attr(ino.0, &what)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.what(ino) {
            Some(What::Link(t)) => reply.data(t.as_bytes()),
            Some(What::Node(n)) if n.node_type == NodeType::Symlink => {
                reply.data(n.target.as_ref().map_or(&[][..], |t| &t.0))
            }
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let node = match self.what(ino) {
            Some(What::Node(n)) if n.node_type == NodeType::File => n,
            Some(_) => return reply.error(Errno::EISDIR),
            None => return reply.error(Errno::ENOENT),
        };
        let name = node.name.lossy();
        match self.source.open(node) {
            Ok(f) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.files.lock().unwrap_or_else(|e| e.into_inner()).insert(fh, Arc::new(f));
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => reply.error(self.fail(&format!("opening {name}"), e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = self.files.lock().unwrap_or_else(|e| e.into_inner()).get(&fh.0).cloned();
        let Some(file) = file else { return reply.error(Errno::EBADF) };
        tracing::trace!(offset, size, "read");
        match self.source.read(&file, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(self.fail(&format!("reading {} at offset {offset}", file.node.name.lossy()), e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).remove(&fh.0);
        reply.ok();
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    /// Snapshots keep no extended attributes.
    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::NO_XATTR);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0)
        } else {
            reply.data(&[])
        }
    }

    /// Everything may be read by whoever may use the mount; nothing may be written.
    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.what(ino) {
            None => reply.error(Errno::ENOENT),
            Some(_) if mask.contains(AccessFlags::W_OK) => reply.error(Errno::EROFS),
            Some(_) => reply.ok(),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(dir) = self.what(ino) else { return reply.error(Errno::ENOENT) };
        // Offsets 0 and 1 are `.` and `..`; entry k of the directory is offset k + 2.
        let mut next = offset as usize;
        while next < 2 {
            let name = if next == 0 { "." } else { ".." };
            next += 1;
            if reply.add(ino, next as u64, FileType::Directory, name) {
                return reply.ok();
            }
        }
        let entries = match self.entries(&dir, next - 2) {
            Ok(Some(e)) => e,
            Ok(None) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(self.fail("listing a directory", e)),
        };
        for (name, what) in entries {
            let kind = self.attr(0, &what).kind;
            let child = self.child(ino.0, &name, what);
            next += 1;
            if reply.add(INodeNo(child), next as u64, kind, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }
}
