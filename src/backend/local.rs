//! A repository in a local directory.
//!
//! Writes go to `tmp/` first, are fsynced, renamed into place, and the folder is
//! fsynced, so a crash never leaves a half-written object under its final name.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rand::RngCore;

use super::{object_name, BResult, Backend, BackendError, Kind};

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
            Kind::Pack => self.root.join("data").join(&name[..name.len().min(2)]).join(name),
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

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> BResult<()> {
        let err = |e| map_err(Kind::Config, "", e);
        if self.path(Kind::Config, "").exists() {
            return Err(BackendError::AlreadyExists { object: format!("repository at {}", self.location()) });
        }
        for d in ["keys", "index", "snapshots", "locks", "pending", "anchors", "tmp"] {
            fs::create_dir_all(self.root.join(d)).map_err(err)?;
        }
        for i in 0..=255u8 {
            fs::create_dir_all(self.root.join("data").join(hex::encode([i]))).map_err(err)?;
        }
        fsync_dir(&self.root).map_err(err)
    }

    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()> {
        let err = |e| map_err(kind, name, e);
        let dest = self.path(kind, name);
        let tmp_dir = self.root.join("tmp");
        let mut rnd = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut rnd);
        let tmp = tmp_dir.join(format!("{}-{}", name, hex::encode(rnd)));
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(err)?;
        let res = f.write_all(data).and_then(|_| f.sync_all());
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(err(e));
        }
        drop(f);
        let mut renamed = fs::rename(&tmp, &dest);
        if matches!(&renamed, Err(e) if e.kind() == ErrorKind::NotFound) && tmp.exists() {
            // A folder that repositories made by an older kura lack (anchors/).
            if let Some(dir) = dest.parent() {
                fs::create_dir_all(dir).map_err(err)?;
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
        let err = |e| map_err(kind, name, e);
        let mut f = File::open(self.path(kind, name)).map_err(err)?;
        f.seek(SeekFrom::Start(offset)).map_err(err)?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                BackendError::Permanent {
                    object: object_name(kind, name),
                    reason: format!("is shorter than {} bytes", offset + len),
                }
            } else {
                err(e)
            }
        })?;
        Ok(buf)
    }

    fn list(&self, kind: Kind) -> BResult<Vec<(String, u64)>> {
        let err = |e| map_err(kind, "", e);
        let dirs: Vec<PathBuf> = match kind {
            Kind::Config => {
                let p = self.path(kind, "");
                return Ok(match fs::metadata(&p) {
                    Ok(m) => vec![("config".into(), m.len())],
                    Err(_) => vec![],
                });
            }
            Kind::Pack => (0..=255u8).map(|i| self.root.join("data").join(hex::encode([i]))).collect(),
            _ => vec![self.root.join(kind.dir())],
        };
        let mut out = Vec::new();
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(err(e)),
            };
            for entry in rd {
                let entry = entry.map_err(err)?;
                let meta = entry.metadata().map_err(err)?;
                if meta.is_file() {
                    out.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
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

    fn cleanup(&self) {
        let Ok(rd) = fs::read_dir(self.root.join("tmp")) else { return };
        let hour = std::time::Duration::from_secs(3600);
        for e in rd.flatten() {
            let old =
                e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a > hour);
            if old {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}
