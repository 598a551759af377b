//! Writing under the restore target without ever leaving it, even while someone
//! who owns a directory inside the target renames things under it.
//!
//! Names in trees are single components (checked when trees are decoded). Every
//! directory is opened from its parent's descriptor with `openat(O_NOFOLLOW |
//! O_DIRECTORY)`, starting at a descriptor of the target: a symlink on the way is an
//! error at the moment it is met, never followed. Files, links and directories are
//! made with `*at` calls on one name relative to a directory descriptor. Owners,
//! modes and times are set with `fchown`/`fchmod`/`futimens` on the open descriptor
//! (for symlinks, `fchownat`/`utimensat` with `AT_SYMLINK_NOFOLLOW` on the link's own
//! name). Files are written under a short temp name and renamed into place (a
//! rename replaces a symlink, it never follows it).

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::repo::tree::Node;

use super::plan::DirItem;

/// Directory descriptors kept open at once (besides the target's own).
const CACHE: usize = 128;

/// Prefix of every temp name; the rest is 16 hex digits, so it always fits.
pub const TEMP_PREFIX: &str = ".kura-tmp-";

/// The temp name a file named `name` is written under, in the same directory:
/// `.kura-tmp-` and 16 hex digits of a hash of the name (and of `attempt`, which
/// is 0 unless that name is taken). The same name gives the same temp name, so a
/// resumed restore replaces the temp files an interrupted one left.
pub fn temp_name(name: &OsStr, attempt: u32) -> OsString {
    let mut h = blake3::Hasher::new();
    h.update(name.as_bytes());
    if attempt > 0 {
        // NUL never occurs in a name: "a" + attempt 1 cannot equal another name.
        h.update(b"\0");
        h.update(&attempt.to_le_bytes());
    }
    let hash = h.finalize();
    OsString::from(format!("{TEMP_PREFIX}{}", hex::encode(&hash.as_bytes()[..8])))
}

fn cstr(name: &OsStr, shown: &Path) -> Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| Error::UnsafePath(format!("{} has a NUL byte", shown.display())))
}

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn fstatat(dir: RawFd, name: &CString) -> std::io::Result<libc::stat> {
    // SAFETY: a zeroed stat is a valid out-buffer; name is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(last_err());
    }
    Ok(st)
}

fn fstat(fd: RawFd) -> std::io::Result<libc::stat> {
    // SAFETY: as above; fd is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(last_err());
    }
    Ok(st)
}

fn openat(dir: RawFd, name: &CString, flags: libc::c_int, mode: libc::mode_t) -> std::io::Result<OwnedFd> {
    // SAFETY: name is NUL-terminated; a non-negative return is a new descriptor we own.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW, mode) };
    if fd < 0 {
        return Err(last_err());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_type(st: &libc::stat, t: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == t
}

/// Open directories by plan index, each with its last use, and the use counter.
type DirCache = (HashMap<usize, (Arc<OwnedFd>, u64)>, u64);

/// The directories of a restore, opened on demand from their parent's descriptor
/// and kept in a small cache; shared by the restore's threads.
pub struct Dirs<'a> {
    target: &'a Path,
    root: Arc<OwnedFd>,
    dirs: &'a [DirItem],
    cache: Mutex<DirCache>,
}

impl<'a> Dirs<'a> {
    /// Opens the target (created if missing; a symlink given as the target itself
    /// is the user's choice and is followed).
    pub fn open(target: &'a Path, dirs: &'a [DirItem]) -> Result<Self> {
        std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
        let c = CString::new(target.as_os_str().as_bytes())
            .map_err(|_| Error::UnsafePath(format!("{} has a NUL byte", target.display())))?;
        // SAFETY: c is NUL-terminated; a non-negative return is a descriptor we own.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::io(target, last_err()));
        }
        let root = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Dirs { target, root, dirs, cache: Mutex::new((HashMap::new(), 0)) })
    }

    /// Where `rel` (relative to the target) is, for messages.
    pub fn shown(&self, rel: &Path) -> PathBuf {
        self.target.join(rel)
    }

    pub fn root(&self) -> Arc<OwnedFd> {
        self.root.clone()
    }

    /// The descriptor of plan directory `dir` (`None`: the target).
    pub fn get(&self, dir: Option<usize>) -> Result<Arc<OwnedFd>> {
        // Up the parents to the nearest cached one (or the target), then down.
        let mut down = Vec::new();
        let mut at = dir;
        let mut fd = loop {
            let Some(i) = at else { break self.root.clone() };
            if let Some(fd) = self.cached(i) {
                break fd;
            }
            down.push(i);
            at = self.dirs[i].parent;
        };
        for &i in down.iter().rev() {
            let d = &self.dirs[i];
            fd = Arc::new(open_dir(fd.as_raw_fd(), d.node.name.as_os_str(), &self.shown(&d.rel))?);
            self.remember(i, &fd);
        }
        Ok(fd)
    }

    fn cached(&self, i: usize) -> Option<Arc<OwnedFd>> {
        let mut c = self.cache.lock().unwrap();
        c.1 += 1;
        let tick = c.1;
        c.0.get_mut(&i).map(|e| {
            e.1 = tick;
            e.0.clone()
        })
    }

    fn remember(&self, i: usize, fd: &Arc<OwnedFd>) {
        let mut c = self.cache.lock().unwrap();
        if c.0.len() >= CACHE {
            if let Some(old) = c.0.iter().min_by_key(|e| (e.1).1).map(|e| *e.0) {
                c.0.remove(&old);
            }
        }
        let tick = c.1;
        c.0.insert(i, (fd.clone(), tick));
    }

    /// Makes plan directory `i` a real directory (created 0700; its own mode is set
    /// at the end), refusing symlinks and files in the way.
    pub fn make(&self, i: usize) -> Result<()> {
        let d = &self.dirs[i];
        let shown = self.shown(&d.rel);
        let parent = self.get(d.parent)?;
        let name = cstr(d.node.name.as_os_str(), &shown)?;
        // SAFETY: name is NUL-terminated; parent is an open directory.
        if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
            let e = last_err();
            if e.kind() != ErrorKind::AlreadyExists {
                return Err(Error::io(&shown, e));
            }
        }
        let fd = Arc::new(open_dir(parent.as_raw_fd(), d.node.name.as_os_str(), &shown)?);
        self.remember(i, &fd);
        Ok(())
    }
}

/// Opens `name` in `parent` as a directory, never through a symlink.
fn open_dir(parent: RawFd, name: &OsStr, shown: &Path) -> Result<OwnedFd> {
    let c = cstr(name, shown)?;
    match openat(parent, &c, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Ok(fd) => Ok(fd),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            let now = fstatat(parent, &c);
            Err(Error::UnsafePath(match now {
                Ok(st) if is_type(&st, libc::S_IFLNK) => format!(
                    "{} is a symlink; refusing to restore through it (remove it or pick another --target)",
                    shown.display()
                ),
                // It was not a directory a moment ago: something is swapping it.
                Ok(st) if is_type(&st, libc::S_IFDIR) => format!(
                    "{} was swapped for a symlink or file while the restore ran; refusing to restore through it",
                    shown.display()
                ),
                _ => format!("{} exists and is not a directory; remove it or pick another --target", shown.display()),
            }))
        }
        Err(e) => Err(Error::io(shown, e)),
    }
}

/// (device, inode) of an open file: what a worker checks when it reopens a temp file.
pub type Identity = (u64, u64);

pub fn identity(f: &File, shown: &Path) -> Result<Identity> {
    let st = fstat(f.as_raw_fd()).map_err(|e| Error::io(shown, e))?;
    Ok((st.st_dev, st.st_ino))
}

/// Creates an empty temp file of `size` bytes (sparse) in `dir`. A stale temp file
/// from an interrupted restore is replaced.
pub fn create_temp(dir: &OwnedFd, tmp: &OsStr, size: u64, shown: &Path) -> Result<File> {
    let c = cstr(tmp, shown)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
    let fd = match openat(dir.as_raw_fd(), &c, flags, 0o600) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            // SAFETY: c is NUL-terminated. Flags 0: never removes a directory.
            if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
                return Err(Error::io(shown, last_err()));
            }
            openat(dir.as_raw_fd(), &c, flags, 0o600)
        }
        r => r,
    }
    .map_err(|e| Error::io(shown, e))?;
    let f = File::from(fd);
    f.set_len(size).map_err(|e| Error::io(shown, e))?;
    Ok(f)
}

/// The temp file an interrupted restore left for a file, reopened to resume it: a
/// regular file (never followed), with one link, owned by this user and of the
/// file's size. `None` when there is no such file; anything else at that name is
/// replaced by `create_temp`.
pub fn reopen_temp(dir: &OwnedFd, tmp: &OsStr, size: u64, shown: &Path) -> Result<Option<File>> {
    let c = cstr(tmp, shown)?;
    let Ok(fd) = openat(dir.as_raw_fd(), &c, libc::O_RDWR | libc::O_NONBLOCK, 0) else { return Ok(None) };
    let f = File::from(fd);
    let st = fstat(f.as_raw_fd()).map_err(|e| Error::io(shown, e))?;
    // SAFETY: geteuid has no preconditions.
    let mine = st.st_uid == unsafe { libc::geteuid() };
    let usable = is_type(&st, libc::S_IFREG) && st.st_nlink == 1 && mine && st.st_size as u64 == size;
    Ok(usable.then_some(f))
}

/// Reopens a temp file made by `create_temp`; it must still be the same file.
pub fn open_temp(dir: &OwnedFd, tmp: &OsStr, id: Identity, shown: &Path) -> Result<File> {
    let c = cstr(tmp, shown)?;
    let f =
        File::from(openat(dir.as_raw_fd(), &c, libc::O_WRONLY | libc::O_NONBLOCK, 0).map_err(|e| Error::io(shown, e))?);
    if identity(&f, shown)? != id {
        return Err(Error::UnsafePath(format!("{} was replaced by another file during the restore", shown.display())));
    }
    Ok(f)
}

fn timespec(node: &Node) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: node.mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: node.mtime_ns.rem_euclid(1_000_000_000),
    };
    [t, t]
}

/// Owner (when root), mode and times, all through the open descriptor.
fn set_fd_meta(fd: RawFd, node: &Node, shown: &Path) -> Result<()> {
    let err = |e| Error::io(shown, e);
    // The owner first: chown clears setuid and setgid bits.
    // SAFETY: fd is open; the times array has two entries.
    if is_root() && unsafe { libc::fchown(fd, node.uid, node.gid) } != 0 {
        return Err(err(last_err()));
    }
    if unsafe { libc::fchmod(fd, node.mode & 0o7777) } != 0 {
        return Err(err(last_err()));
    }
    if unsafe { libc::futimens(fd, timespec(node).as_ptr()) } != 0 {
        return Err(err(last_err()));
    }
    Ok(())
}

/// Sets a directory's owner, mode and times through its descriptor.
pub fn set_dir_meta(fd: &OwnedFd, node: &Node, shown: &Path) -> Result<()> {
    set_fd_meta(fd.as_raw_fd(), node, shown)
}

/// Owner, mode and times through the open handle; then the rename that makes the
/// complete file visible under its final name.
pub fn finish_file(file: &File, dir: &OwnedFd, tmp: &OsStr, name: &OsStr, node: &Node, shown: &Path) -> Result<()> {
    set_fd_meta(file.as_raw_fd(), node, shown)?;
    let (t, n) = (cstr(tmp, shown)?, cstr(name, shown)?);
    let d = dir.as_raw_fd();
    // SAFETY: both names are NUL-terminated, relative to the same open directory.
    if unsafe { libc::renameat(d, t.as_ptr(), d, n.as_ptr()) } != 0 {
        return Err(Error::io(shown, last_err()));
    }
    Ok(())
}

/// An existing file already holds this node, judged by metadata: a regular file
/// with the node's size, mtime and mode, and (when root) its owner and group.
pub fn looks_restored(dir: &OwnedFd, name: &OsStr, node: &Node) -> bool {
    let Ok(c) = CString::new(name.as_bytes()) else { return false };
    let Ok(st) = fstatat(dir.as_raw_fd(), &c) else { return false };
    is_type(&st, libc::S_IFREG)
        && st.st_size as u64 == node.size
        && st.st_mtime * 1_000_000_000 + st.st_mtime_nsec == node.mtime_ns
        && st.st_mode & 0o7777 == node.mode & 0o7777
        && (!is_root() || (st.st_uid == node.uid && st.st_gid == node.gid))
}

/// Opens a restored file for reading (for `--verify`); it must be a regular file.
pub fn open_read(dir: &OwnedFd, name: &OsStr, shown: &Path) -> Result<File> {
    let c = cstr(name, shown)?;
    let f =
        File::from(openat(dir.as_raw_fd(), &c, libc::O_RDONLY | libc::O_NONBLOCK, 0).map_err(|e| Error::io(shown, e))?);
    let st = fstat(f.as_raw_fd()).map_err(|e| Error::io(shown, e))?;
    if !is_type(&st, libc::S_IFREG) {
        return Err(Error::io(shown, std::io::Error::new(ErrorKind::InvalidData, "not a regular file")));
    }
    Ok(f)
}

/// Removes the temp file `tmp` of `dir` if it is there (a file left out of the
/// restore, or an aborted one). Never follows or removes anything but that name.
pub fn remove_temp(dir: &OwnedFd, tmp: &OsStr, shown: &Path) -> Result<()> {
    let c = cstr(tmp, shown)?;
    // SAFETY: c is NUL-terminated. Flags 0: never removes a directory.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        let e = last_err();
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(Error::io(shown, e));
        }
    }
    Ok(())
}

/// Replaces whatever non-directory is at `name` (a previous run's symlink or link).
pub fn remove_existing(dir: &OwnedFd, name: &OsStr, shown: &Path) -> Result<()> {
    let c = cstr(name, shown)?;
    match fstatat(dir.as_raw_fd(), &c) {
        Ok(st) if is_type(&st, libc::S_IFDIR) => {
            Err(Error::UnsafePath(format!("{} is a directory; cannot replace it", shown.display())))
        }
        // SAFETY: c is NUL-terminated. Flags 0: never removes a directory.
        Ok(_) if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 => Err(Error::io(shown, last_err())),
        _ => Ok(()),
    }
}

/// Creates the symlink `name` -> `target` in `dir` and sets its owner and times
/// without following it.
pub fn make_symlink(dir: &OwnedFd, name: &OsStr, target: &OsStr, node: &Node, shown: &Path) -> Result<()> {
    remove_existing(dir, name, shown)?;
    let (c, t) = (cstr(name, shown)?, cstr(target, shown)?);
    let d = dir.as_raw_fd();
    // SAFETY: names are NUL-terminated; d is an open directory.
    if unsafe { libc::symlinkat(t.as_ptr(), d, c.as_ptr()) } != 0 {
        return Err(Error::io(shown, last_err()));
    }
    if is_root() && unsafe { libc::fchownat(d, c.as_ptr(), node.uid, node.gid, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(Error::io(shown, last_err()));
    }
    if unsafe { libc::utimensat(d, c.as_ptr(), timespec(node).as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(Error::io(shown, last_err()));
    }
    Ok(())
}

/// Makes `name` in `dir` a hard link to `first` in `first_dir` (never following a symlink).
pub fn make_hardlink(first_dir: &OwnedFd, first: &OsStr, dir: &OwnedFd, name: &OsStr, shown: &Path) -> Result<()> {
    remove_existing(dir, name, shown)?;
    let (f, c) = (cstr(first, shown)?, cstr(name, shown)?);
    // SAFETY: names are NUL-terminated; both descriptors are open directories.
    if unsafe { libc::linkat(first_dir.as_raw_fd(), f.as_ptr(), dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        return Err(Error::io(shown, last_err()));
    }
    Ok(())
}
