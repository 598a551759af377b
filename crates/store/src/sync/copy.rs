//! A copy of a synced directory with its metadata (modes, times, symlinks), so that
//! `apply` on the copy sees unchanged files as unchanged: what a failover drill
//! rolls forward or back in its sandbox instead of the standby itself. File data
//! goes through `std::fs::copy` (`copy_file_range`: shared extents where the file
//! system can, an in-kernel copy elsewhere).

use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Copies the tree at `src` to `dst` (which must not exist yet).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<u64> {
    if dst.exists() {
        return Err(Error::invalid(dst.display().to_string(), "already exists: give an empty sandbox"));
    }
    let mut bytes = 0;
    copy_dir(src, dst, &mut bytes)?;
    Ok(bytes)
}

fn copy_dir(src: &Path, dst: &Path, bytes: &mut u64) -> Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(dst).map_err(|e| Error::io(dst, e))?;
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| Error::io(src, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(src, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let m = std::fs::symlink_metadata(&from).map_err(|err| Error::io(&from, err))?;
        let ft = m.file_type();
        if ft.is_dir() {
            copy_dir(&from, &to, bytes)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(|err| Error::io(&from, err))?;
            symlink(&target, &to).map_err(|err| Error::io(&to, err))?;
            let t = filetime::FileTime::from_last_modification_time(&m);
            filetime::set_symlink_file_times(&to, t, t).map_err(|err| Error::io(&to, err))?;
        } else if ft.is_file() {
            *bytes += std::fs::copy(&from, &to).map_err(|err| Error::io(&to, err))?;
            set_meta(&to, &m)?;
        }
    }
    let m = std::fs::metadata(src).map_err(|e| Error::io(src, e))?;
    set_meta(dst, &m)
}

fn set_meta(p: &Path, m: &std::fs::Metadata) -> Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m.permissions().mode() & 0o7777))
        .map_err(|e| Error::io(p, e))?;
    let t = filetime::FileTime::from_last_modification_time(m);
    filetime::set_file_times(p, t, t).map_err(|e| Error::io(p, e))
}
