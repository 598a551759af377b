//! A repository in a local directory.
//!
//! Writes go to `tmp/` first, are fsynced, renamed into place, and the folder is
//! fsynced, so a crash never leaves a half-written object under its final name.
//!
//! Only the owner may read the repository: directories are created 0700 and files
//! 0600, set explicitly whatever the umask (as restic does).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

use super::{object_name, BResult, Backend, BackendError, Kind};

/// Temp files older than this are leftovers of killed writers (`cleanup`).
pub const TEMP_FILE_STALE: std::time::Duration = std::time::Duration::from_secs(3600);

pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    fn path(&self, kind: Kind, name: &str) -> PathBuf {
        match kind {
            Kind::Config => self.root.join("config"),
            Kind::Pack => self.root.join("data").join(super::pack_path(name)),
            _ => self.root.join(kind.dir()).join(name),
        }
    }
}

fn map_err(kind: Kind, name: &str, e: std::io::Error) -> BackendError {
    let object = object_name(kind, name);
    match e.kind() {
        ErrorKind::NotFound => BackendError::NotFound { object },
        ErrorKind::AlreadyExists => BackendError::AlreadyExists { object },
        ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            BackendError::Transient { object, reason: e.to_string() }
        }
        _ => BackendError::Permanent { object, reason: e.to_string() },
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Mode of the directories kura creates in a repository.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files kura writes into a repository.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700; an existing directory is left
/// as it is.
/// Packs from this size up are written with direct I/O when their bytes start on
/// a page boundary (`repo::pack::PACK_ALIGN`).
const DIRECT_MIN: usize = 1 << 20;
const DIRECT_ALIGN: usize = crate::repo::pack::PACK_ALIGN;

/// Writes `data` to the empty file `f`, bypassing the page cache where it can. A
/// pack is written once and not read back soon, and copying it into the page cache
/// cost a backup about a sixth of its CPU time (docs/PERFORMANCE.md). The
/// whole blocks go with O_DIRECT, the tail through the cache; file systems without
/// direct I/O, and any refusal, fall back to a plain write of everything. The
/// caller syncs the file either way.
fn write_direct(f: &mut File, data: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let head = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
    if data.len() < DIRECT_MIN || !(data.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN) {
        return f.write_all(data);
    }
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function borrows; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } < 0 {
        return f.write_all(data);
    }
    let direct = f.write_all(&data[..head]);
    // SAFETY: as above; restores the flags read before.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    match direct {
        Ok(()) => f.write_all(&data[head..]),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Alignment the device refuses: start over through the cache.
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(data)
        }
        Err(e) => Err(e),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    // The umask may have taken bits away; set the mode exactly.
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
}

/// Warns when an existing repository at `root` can be read by other users: its top
/// directory, its config, its keys directory or a key file has group or other bits.
/// (Repositories made by older kura versions followed the umask, often 0755/0644.)
pub fn warn_if_loose(root: &Path) {
    let config = root.join("config");
    if !config.is_file() {
        return;
    }
    let mut paths = vec![root.to_path_buf(), config, root.join("keys")];
    if let Ok(rd) = fs::read_dir(root.join("keys")) {
        paths.extend(rd.flatten().map(|e| e.path()));
    }
    let loose = paths.iter().find_map(|p| {
        let mode = fs::symlink_metadata(p).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some((p, mode))
    });
    if let Some((p, mode)) = loose {
        tracing::warn!(
            "repository {} can be read by other users ({} has mode {mode:04o}); fix it with `chmod -R go-rwx {0}`",
            root.display(),
            p.display()
        );
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> BResult<()> {
        let err = |e| map_err(Kind::Config, "", e);
        if self.path(Kind::Config, "").exists() {
            return Err(BackendError::AlreadyExists { object: format!("repository at {}", self.location()) });
        }
        create_private_dir(&self.root).map_err(err)?;
        for d in ["keys", "index", "snapshots", "locks", "pending", "anchors", "tmp", "data"] {
            create_private_dir(&self.root.join(d)).map_err(err)?;
        }
        for i in 0..=255u8 {
            create_private_dir(&self.root.join("data").join(hex::encode([i]))).map_err(err)?;
        }
        fsync_dir(&self.root).map_err(err)
    }

    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()> {
        let err = |e| map_err(kind, name, e);
        let dest = self.path(kind, name);
        if kind == Kind::Quarantine {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(err)?;
            }
        }
        let tmp_dir = self.root.join("tmp");
        let mut rnd = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut rnd);
        let base = name.rsplit('/').next().unwrap_or(name);
        let tmp = tmp_dir.join(format!("{}-{}", base, hex::encode(rnd)));
        let mut f = OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(&tmp).map_err(err)?;
        let res = f
            .set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .and_then(|_| match kind {
                Kind::Pack => write_direct(&mut f, data),
                _ => f.write_all(data),
            })
            .and_then(|_| f.sync_all());
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(err(e));
        }
        drop(f);
        let mut renamed = fs::rename(&tmp, &dest);
        if matches!(&renamed, Err(e) if e.kind() == ErrorKind::NotFound) && tmp.exists() {
            // A folder that repositories made by an older kura lack (anchors/,
            // coordinator/): made owner-only like the others.
            if let Some(dir) = dest.parent() {
                create_private_dir(dir).map_err(err)?;
                renamed = fs::rename(&tmp, &dest);
            }
        }
        if let Err(e) = renamed {
            let _ = fs::remove_file(&tmp);
            return Err(err(e));
        }
        fsync_dir(dest.parent().unwrap_or(&self.root)).map_err(err)
    }

    fn get(&self, kind: Kind, name: &str) -> BResult<Vec<u8>> {
        fs::read(self.path(kind, name)).map_err(|e| map_err(kind, name, e))
    }

    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> BResult<Vec<u8>> {
        let mut buf = Vec::new();
        self.get_range_into(kind, name, offset, len, &mut buf)?;
        Ok(buf)
    }

    fn get_range_into(&self, kind: Kind, name: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> BResult<()> {
        let err = |e| map_err(kind, name, e);
        let mut f = File::open(self.path(kind, name)).map_err(err)?;
        f.seek(SeekFrom::Start(offset)).map_err(err)?;
        buf.clear();
        buf.reserve(len as usize);
        // Reads into the spare capacity: no zeroing first.
        f.take(len).read_to_end(buf).map_err(err)?;
        if (buf.len() as u64) < len {
            return Err(BackendError::Permanent {
                object: object_name(kind, name),
                reason: format!("is shorter than {} bytes", offset + len),
            });
        }
        Ok(())
    }

    fn list(&self, kind: Kind) -> BResult<Vec<(String, u64)>> {
        let err = |e| map_err(kind, "", e);
        let dirs: Vec<(PathBuf, Option<String>)> = match kind {
            Kind::Config => {
                let p = self.path(kind, "");
                return Ok(match fs::metadata(&p) {
                    Ok(m) => vec![("config".into(), m.len())],
                    Err(_) => vec![],
                });
            }
            Kind::Pack => {
                (0..=255u8).map(|i| (self.root.join("data").join(hex::encode([i])), Some(hex::encode([i])))).collect()
            }
            _ => vec![(self.root.join(kind.dir()), None)],
        };
        let mut out = Vec::new();
        for (d, folder) in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(err(e)),
            };
            for entry in rd {
                let entry = entry.map_err(err)?;
                let meta = entry.metadata().map_err(err)?;
                if meta.is_file() {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    let name = match &folder {
                        Some(f) => super::pack_list_name(f, &file),
                        None => file,
                    };
                    out.push((name, meta.len()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, kind: Kind, name: &str) -> BResult<()> {
        fs::remove_file(self.path(kind, name)).map_err(|e| map_err(kind, name, e))
    }

    fn exists(&self, kind: Kind, name: &str) -> BResult<bool> {
        Ok(self.path(kind, name).exists())
    }

    fn quarantine(&self, kind: Kind, name: &str) -> BResult<String> {
        let to = super::quarantine_name(kind, name);
        let dest = self.path(Kind::Quarantine, &to);
        let err = |e| map_err(kind, name, e);
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent).map_err(err)?;
        fs::rename(self.path(kind, name), &dest).map_err(err)?;
        fsync_dir(&parent).map_err(err)?;
        Ok(to)
    }

    fn cleanup(&self) -> usize {
        let Ok(stale) = self.stale_temp_files() else { return 0 };
        let tmp = self.root.join("tmp");
        stale.iter().filter(|(name, _)| fs::remove_file(tmp.join(name)).is_ok()).count()
    }

    fn stale_temp_files(&self) -> BResult<Vec<(String, u64)>> {
        let rd = match fs::read_dir(self.root.join("tmp")) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                let object = format!("{}/tmp", self.location());
                return Err(BackendError::Permanent { object, reason: e.to_string() });
            }
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            // A writer renames its temp file as soon as it is written and synced:
            // one not touched for this long belongs to a process that died.
            let old = meta.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a > TEMP_FILE_STALE);
            if meta.is_file() && old {
                out.push((e.file_name().to_string_lossy().into_owned(), meta.len()));
            }
        }
        out.sort();
        Ok(out)
    }

    fn first_entry(&self) -> BResult<Option<String>> {
        match fs::read_dir(&self.root) {
            Ok(mut rd) => Ok(rd.next().and_then(|e| e.ok()).map(|e| format!("`{}`", e.file_name().to_string_lossy()))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BackendError::Permanent { object: self.location(), reason: e.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs written with direct I/O (aligned, long) and without (short, unaligned,
    /// or on a file system that refuses it) read back the same.
    #[test]
    fn direct_writes_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        let mut builder = crate::repo::pack::PackBuilder::new(3 << 20);
        let key = crate::crypto::MasterKey::generate();
        let blob: Vec<u8> = (0..(2 << 20) + 777).map(|i| (i * 7 % 251) as u8).collect();
        builder.add(key.blob_id(&blob), crate::types::BlobType::Data, &blob, blob.len() as u32, false);
        let (_, bytes, _) = builder.finish(&key);
        assert_eq!(bytes.as_ptr() as usize % DIRECT_ALIGN, 0);
        let unaligned = &blob[1..];
        for (name, data) in [("aligned", &bytes[..]), ("unaligned", unaligned), ("short", &blob[..5000])] {
            b.put(Kind::Pack, &format!("{name:0>64}"), data).unwrap();
            assert!(b.get(Kind::Pack, &format!("{name:0>64}")).unwrap() == data, "{name}");
        }
    }
}
