//! An in-memory backend for tests: same contract, no disk.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{object_name, BResult, Backend, BackendError, Kind};

#[derive(Default)]
pub struct MemoryBackend {
    objects: Mutex<BTreeMap<(Kind, String), Vec<u8>>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }
    fn not_found(kind: Kind, name: &str) -> BackendError {
        BackendError::NotFound { object: object_name(kind, name) }
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory".into()
    }
    fn create(&self) -> BResult<()> {
        if self.objects.lock().unwrap().contains_key(&(Kind::Config, "config".into())) {
            return Err(BackendError::AlreadyExists { object: "repository at memory".into() });
        }
        Ok(())
    }
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()> {
        let name = if kind == Kind::Config { "config" } else { name };
        self.objects.lock().unwrap().insert((kind, name.to_string()), data.to_vec());
        Ok(())
    }
    fn get(&self, kind: Kind, name: &str) -> BResult<Vec<u8>> {
        let name = if kind == Kind::Config { "config" } else { name };
        self.objects.lock().unwrap().get(&(kind, name.to_string())).cloned().ok_or_else(|| Self::not_found(kind, name))
    }
    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> BResult<Vec<u8>> {
        let all = self.get(kind, name)?;
        let (o, l) = (offset as usize, len as usize);
        all.get(o..o + l).map(|s| s.to_vec()).ok_or_else(|| BackendError::Permanent {
            object: object_name(kind, name),
            reason: format!("is shorter than {} bytes", o + l),
        })
    }
    fn list(&self, kind: Kind) -> BResult<Vec<(String, u64)>> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, n), v)| (n.clone(), v.len() as u64))
            .collect())
    }
    fn delete(&self, kind: Kind, name: &str) -> BResult<()> {
        let name = if kind == Kind::Config { "config" } else { name };
        self.objects
            .lock()
            .unwrap()
            .remove(&(kind, name.to_string()))
            .map(|_| ())
            .ok_or_else(|| Self::not_found(kind, name))
    }
}

#[cfg(test)]
mod tests {
    // The shared contract (backend::contract) runs on every backend.
    use crate::backend::local::LocalBackend;
    use crate::backend::{Backend, Kind};

    #[test]
    fn local_cleanup_removes_only_old_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        let (old, fresh) = (dir.path().join("repo/tmp/old"), dir.path().join("repo/tmp/fresh"));
        std::fs::write(&old, b"x").unwrap();
        std::fs::write(&fresh, b"x").unwrap();
        let two_hours_ago = filetime::FileTime::from_unix_time(chrono::Utc::now().timestamp() - 7200, 0);
        filetime::set_file_mtime(&old, two_hours_ago).unwrap();
        b.cleanup();
        assert!(!old.exists() && fresh.exists());
    }

    #[test]
    fn quarantine_moves_an_object_out_of_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalBackend::new(dir.path().join("repo"));
        local.create().unwrap();
        std::fs::write(dir.path().join("repo/data/80/stray"), b"s").unwrap();
        let memory = super::MemoryBackend::new();
        let backends: [&dyn Backend; 2] = [&local, &memory];
        for b in backends {
            b.put(Kind::Snapshot, "README", b"r").unwrap();
            assert_eq!(b.quarantine(Kind::Snapshot, "README").unwrap(), "snapshots/README");
            assert!(b.list(Kind::Snapshot).unwrap().is_empty());
            assert_eq!(b.get(Kind::Quarantine, "snapshots/README").unwrap(), b"r");
        }
        // A stray file in a pack folder its name does not imply is listed with it.
        assert_eq!(local.list(Kind::Pack).unwrap(), vec![("80/stray".to_string(), 1)]);
        assert_eq!(local.quarantine(Kind::Pack, "80/stray").unwrap(), "data/80/stray");
        assert!(local.list(Kind::Pack).unwrap().is_empty());
        assert!(dir.path().join("repo/quarantine/data/80/stray").exists());
    }
}
