//! Writing under the restore target without ever leaving it.
//!
//! Names in trees are single components (checked when trees are decoded), so the
//! only way out of the target is a symlink already on disk. Every directory on the
//! way is checked with `symlink_metadata` and must be a real directory; files are
//! created as temp files with `O_EXCL | O_NOFOLLOW` and renamed into place (a rename
//! replaces a symlink, it never follows it).

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::repo::tree::Node;

/// Makes `target/rel` a real directory, refusing symlinks and files in the way.
pub fn safe_mkdir(target: &Path, rel: &Path) -> Result<PathBuf> {
    let mut cur = target.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::UnsafePath(format!(
                    "{} is a symlink; refusing to restore through it (remove it or pick another --target)",
                    cur.display()
                )))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::UnsafePath(format!(
                    "{} exists and is not a directory; remove it or pick another --target",
                    cur.display()
                )))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(|e| Error::io(&cur, e))?;
            }
            Err(e) => return Err(Error::io(&cur, e)),
        }
    }
    Ok(cur)
}

/// The temp name a file is written under before it is renamed into place.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(final_path.file_name().unwrap_or_default());
    name.push(".kura-restore");
    final_path.with_file_name(name)
}

/// Creates an empty temp file of `size` bytes (sparse). A stale temp file from an
/// interrupted restore is replaced.
pub fn create_temp(tmp: &Path, size: u64) -> Result<File> {
    let open = || OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).mode(0o600).open(tmp);
    let f = match open() {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            fs::remove_file(tmp).map_err(|e| Error::io(tmp, e))?;
            open()
        }
        r => r,
    }
    .map_err(|e| Error::io(tmp, e))?;
    f.set_len(size).map_err(|e| Error::io(tmp, e))?;
    Ok(f)
}

pub fn open_temp(tmp: &Path) -> Result<File> {
    OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(tmp).map_err(|e| Error::io(tmp, e))
}

/// Owner (when root), mode and times through the open handle; then the rename
/// that makes the complete file visible under its final name.
pub fn finish_file(file: &File, tmp: &Path, final_path: &Path, node: &Node) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e| Error::io(tmp, e);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid)).map_err(err)?;
    }
    file.set_permissions(fs::Permissions::from_mode(node.mode)).map_err(err)?;
    let t = file_time(node);
    filetime::set_file_handle_times(file, Some(t), Some(t)).map_err(err)?;
    fs::rename(tmp, final_path).map_err(|e| Error::io(final_path, e))
}

fn file_time(node: &Node) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        node.mtime_ns.div_euclid(1_000_000_000),
        node.mtime_ns.rem_euclid(1_000_000_000) as u32,
    )
}

pub fn set_meta(path: &Path, node: &Node, symlink: bool) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let err = |e| Error::io(path, e);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::UnsafePath(path.display().to_string()))?;
        // SAFETY: c is a valid NUL-terminated path; lchown never follows symlinks.
        if unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) } != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
    }
    let mtime = file_time(node);
    if symlink {
        return filetime::set_symlink_file_times(path, mtime, mtime).map_err(err);
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(node.mode)).map_err(err)?;
    filetime::set_file_times(path, mtime, mtime).map_err(err)
}

/// An existing file already holds this node's content, judged by type, size and mtime.
pub fn looks_restored(path: &Path, node: &Node) -> bool {
    use std::os::unix::fs::MetadataExt;
    match fs::symlink_metadata(path) {
        Ok(m) => m.is_file() && m.len() == node.size && m.mtime() * 1_000_000_000 + m.mtime_nsec() == node.mtime_ns,
        Err(_) => false,
    }
}

/// Replaces whatever non-directory is at `path` (a previous run's symlink or link).
pub fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::UnsafePath(format!("{} is a directory; cannot replace it", path.display()))),
        Ok(_) => fs::remove_file(path).map_err(|e| Error::io(path, e)),
        Err(_) => Ok(()),
    }
}
