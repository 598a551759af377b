//! The repository: the one owner of the on-disk format (docs/FORMAT.md).
//!
//! Write order keeps every state consistent: packs first, then the index files
//! that name them, then the snapshot. Every object is written atomically by the
//! backend and named by a content hash, so concurrent writers never conflict.

pub mod anchor;
pub mod cache;
pub mod index;
pub mod keys;
pub mod lock;
pub mod pack;
pub mod snapshot;
#[cfg(test)]
pub mod testing;
pub mod tree;

use std::sync::Arc;

use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::backend::{object_name, Backend, Kind};
use crate::chunk::ChunkParams;
use crate::clock::{Clock, SystemClock};
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::types::{BlobId, FileId};
use index::{Index, IndexFile, Location};
use snapshot::Snapshot;
use tree::Tree;

/// The newest format this kura writes and reads. Version 1 seals every object with
/// XChaCha20-Poly1305; version 2 adds the config's `cipher` (AES-256-GCM). A
/// repository is written as version 1 unless its cipher needs 2, so kura releases
/// that know only version 1 keep opening it, and refuse clearly what they cannot read.
pub const FORMAT_VERSION: u32 = 2;
/// Metadata objects fetched at once from a remote repository: each is mostly a
/// round trip, so more in flight than cores.
const METADATA_FETCHES: usize = 16;
/// Packs are closed once they reach this size.
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;

/// Written by prune: these packs left the index at `marked_at` and are deleted by a
/// later prune, once no backup that started before `marked_at` is still running.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingRecord {
    pub marked_at: chrono::DateTime<chrono::Utc>,
    pub packs: Vec<crate::types::PackId>,
}

/// The repository config, stored sealed at `config`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub version: u32,
    pub id: String,
    pub chunker: ChunkParams,
    pub pack_size: u32,
    /// Default zstd level for new blobs.
    pub compression: i32,
    /// What seals every object but this config and the key files. Absent means
    /// XChaCha20, and XChaCha20 is written absent: releases that know only format 1
    /// refuse unknown fields, and keep reading such repositories.
    #[serde(default, skip_serializing_if = "crate::crypto::Cipher::is_default")]
    pub cipher: crate::crypto::Cipher,
}

impl RepoConfig {
    /// The format version a repository with this config is written as.
    fn version_for(cipher: crate::crypto::Cipher) -> u32 {
        match cipher {
            crate::crypto::Cipher::Xchacha20 => 1,
            crate::crypto::Cipher::Aes256gcm => 2,
        }
    }
}

pub struct Repository {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    key_name: String,
    config: RepoConfig,
    /// Objects skipped because their name does not parse or their content does not
    /// authenticate, each reported once (see `note_damaged`).
    damaged: std::sync::Mutex<std::collections::BTreeMap<(Kind, String), String>>,
    /// What locks, pending records, snapshots and key files are stamped with, and
    /// what lock ages are measured against: injected so that tests move time.
    clock: Arc<dyn Clock>,
    /// The local metadata cache (remote repositories; see `with_cache`).
    cache: Option<cache::Cache>,
    /// Set once the tree packs of the index were brought into the cache.
    trees_cached: std::sync::atomic::AtomicBool,
}

/// An object left out of every decision: a stray name, or content that does not
/// authenticate. `kura check` lists these; `kura repair` moves them to quarantine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DamagedObject {
    #[serde(serialize_with = "kind_dir")]
    pub kind: Kind,
    pub name: String,
    pub reason: String,
}

fn kind_dir<S: serde::Serializer>(k: &Kind, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(k.dir())
}

impl std::fmt::Display for DamagedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}: {}", self.kind.dir(), self.name, self.reason)
    }
}

/// True for the names content-addressed objects have: 64 lowercase hex digits.
pub fn is_object_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Repository {
    /// The same repository handle, asking `clock` the time.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn assemble(backend: Arc<dyn Backend>, key: MasterKey, key_name: String, config: RepoConfig) -> Self {
        Repository {
            backend,
            key,
            key_name,
            config,
            damaged: Default::default(),
            clock: Arc::new(SystemClock),
            cache: None,
            trees_cached: Default::default(),
        }
    }

    /// The same repository handle, keeping its metadata in a local cache under
    /// `root` (see `cache`). For remote repositories: a local one is read from disk
    /// anyway. A cache that cannot be created is warned about and not used.
    pub fn with_cache(mut self, root: &std::path::Path) -> Self {
        match cache::Cache::open(root, &self.config.id) {
            Ok(c) => self.cache = Some(c),
            Err(e) => tracing::warn!("not using a metadata cache: {e}"),
        }
        self
    }

    /// The metadata cache in use, if any.
    pub fn cache(&self) -> Option<&cache::Cache> {
        self.cache.as_ref()
    }

    /// The time, as this repository's clock says.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Creates a repository and its first key, with the cipher this CPU runs fastest
    /// (`Cipher::for_this_cpu`).
    pub fn init(backend: Arc<dyn Backend>, passphrase: &[u8]) -> Result<Self> {
        Self::init_with_cipher(backend, passphrase, crate::crypto::Cipher::for_this_cpu())
    }

    /// Creates a repository and its first key, sealing its objects with `cipher`.
    pub fn init_with_cipher(
        backend: Arc<dyn Backend>,
        passphrase: &[u8],
        cipher: crate::crypto::Cipher,
    ) -> Result<Self> {
        if backend.exists(Kind::Config, "config")? {
            return Err(Error::AlreadyInitialized { repo: backend.location() });
        }
        if let Some(entry) = backend.first_entry()? {
            return Err(match orphaned_objects(backend.as_ref())? {
                Some(holds) => Error::ConfigMissing { repo: backend.location(), holds },
                None => Error::NotEmpty { repo: backend.location(), entry },
            });
        }
        backend.create().map_err(|e| match e {
            crate::backend::BackendError::AlreadyExists { .. } => {
                Error::AlreadyInitialized { repo: backend.location() }
            }
            e => e.into(),
        })?;
        let key = MasterKey::generate();
        let mut rnd = [0u8; 40];
        rand::rngs::OsRng.fill_bytes(&mut rnd);
        let config = RepoConfig {
            version: RepoConfig::version_for(cipher),
            id: hex::encode(&rnd[..32]),
            chunker: ChunkParams::with_seed(u64::from_le_bytes(rnd[32..].try_into().unwrap()) >> 1),
            pack_size: DEFAULT_PACK_SIZE,
            compression: crate::compress::DEFAULT_LEVEL,
            cipher,
        };
        let key_name = keys::add_key(backend.as_ref(), &key, passphrase)?;
        // The config goes last: its presence marks a complete repository.
        let sealed = key.encrypt_config(&serde_json::to_vec(&config).expect("config serializes"));
        backend.put(Kind::Config, "config", &sealed)?;
        Ok(Repository::assemble(backend, key.with_cipher(cipher), key_name, config))
    }

    pub fn open(backend: Arc<dyn Backend>, passphrase: &[u8]) -> Result<Self> {
        if !backend.exists(Kind::Config, "config")? {
            if backend.first_entry()?.is_some() {
                if let Some(holds) = orphaned_objects(backend.as_ref())? {
                    return Err(Error::ConfigMissing { repo: backend.location(), holds });
                }
            }
            return Err(Error::NoRepository { repo: backend.location() });
        }
        let (key, key_name) = keys::unlock(backend.as_ref(), passphrase)?;
        let plain = key.decrypt_config(&backend.get(Kind::Config, "config")?)?;
        let config: RepoConfig =
            serde_json::from_slice(&plain).map_err(|e| Error::corrupt("repository config", e.to_string()))?;
        if config.version == 0 || config.version > FORMAT_VERSION {
            return Err(Error::invalid(
                "repository",
                format!(
                    "format version {} is not supported by this kura (knows 1 to {FORMAT_VERSION}): upgrade kura",
                    config.version
                ),
            ));
        }
        if config.version < RepoConfig::version_for(config.cipher) {
            return Err(Error::corrupt(
                "repository config",
                format!("format version {} cannot use cipher {}", config.version, config.cipher),
            ));
        }
        config.chunker.validate()?;
        let cipher = config.cipher;
        Ok(Repository::assemble(backend, key.with_cipher(cipher), key_name, config))
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    pub fn key(&self) -> &MasterKey {
        &self.key
    }
    pub fn key_name(&self) -> &str {
        &self.key_name
    }
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Stores a metadata file (JSON, zstd, sealed), named by the hash of what is stored.
    pub fn save_json<T: Serialize>(&self, kind: Kind, value: &T) -> Result<FileId> {
        let json = serde_json::to_vec(value).expect("metadata serializes");
        let packed = zstd::bulk::compress(&json, self.config.compression).expect("zstd on memory");
        let sealed = self.key.encrypt(&packed);
        let id = FileId(*blake3::hash(&sealed).as_bytes());
        self.backend.put(kind, &id.to_hex(), &sealed)?;
        Ok(id)
    }

    /// Stores a sealed file under a chosen name (locks): no content-hash naming.
    pub fn save_sealed<T: Serialize>(&self, kind: Kind, name: &str, value: &T) -> Result<()> {
        let json = serde_json::to_vec(value).expect("metadata serializes");
        self.backend.put(kind, name, &self.key.encrypt(&json))?;
        Ok(())
    }

    pub fn load_sealed<T: DeserializeOwned>(&self, kind: Kind, name: &str) -> Result<T> {
        let object = object_name(kind, name);
        let json = self.key.decrypt(&self.backend.get(kind, name)?, &object)?;
        serde_json::from_slice(&json).map_err(|e| Error::corrupt(object, e.to_string()))
    }

    /// Records an object that is skipped, and warns about it the first time.
    pub fn note_damaged(&self, kind: Kind, name: &str, reason: impl Into<String>) {
        let mut d = self.damaged.lock().unwrap_or_else(|e| e.into_inner());
        if let std::collections::btree_map::Entry::Vacant(v) = d.entry((kind, name.to_string())) {
            let reason = v.insert(reason.into());
            tracing::warn!(
                "skipping {}/{name}: {reason}; `kura repair {}` moves it to quarantine/",
                kind.dir(),
                if kind == Kind::Snapshot { "snapshots" } else { "index" }
            );
        }
    }

    /// Starts a fresh record of skipped objects: a run that decides from them (check,
    /// prune, repair) sees only what it read itself, not what an earlier run in the
    /// same process (the daemon) saw before a repair.
    pub fn clear_damaged(&self) {
        self.damaged.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Every object skipped so far, sorted by folder and name.
    pub fn damaged_objects(&self) -> Vec<DamagedObject> {
        let d = self.damaged.lock().unwrap_or_else(|e| e.into_inner());
        d.iter()
            .map(|((kind, name), reason)| DamagedObject { kind: *kind, name: name.clone(), reason: reason.clone() })
            .collect()
    }

    /// Lists a folder of content-addressed objects (packs, index files, snapshots,
    /// pending records). Names that are not object ids are reported and left out.
    pub fn list_objects(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        let mut all = self.backend.list(kind)?;
        all.retain(|(name, _)| {
            let ok = is_object_id(name);
            if !ok {
                self.note_damaged(kind, name, "the name is not a 64-digit lowercase hex id");
            }
            ok
        });
        Ok(all)
    }

    /// Loads a metadata file like `load_json`, but a damaged one (content that does
    /// not match its name or does not authenticate) is reported and gives `None`, as
    /// does one deleted since the listing. Other errors (I/O) still fail.
    pub fn load_json_or_skip<T: DeserializeOwned>(&self, kind: Kind, name: &str) -> Result<Option<T>> {
        match self.load_json(kind, name) {
            Ok(v) => Ok(Some(v)),
            Err(Error::Backend(e)) if e.is_not_found() => Ok(None),
            Err(Error::Corrupt { reason, .. }) => {
                self.note_damaged(kind, name, reason);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Packs that prune took out of the index and will delete once it is safe.
    /// A damaged record is skipped: its packs then count as not pending, which is
    /// safe, as only a readable record lets prune delete a pack.
    pub fn pending_packs(&self) -> Result<std::collections::HashSet<crate::types::PackId>> {
        let mut out = std::collections::HashSet::new();
        for (name, _) in self.list_objects(Kind::Pending)? {
            if let Some(rec) = self.load_json_or_skip::<PendingRecord>(Kind::Pending, &name)? {
                out.extend(rec.packs);
            }
        }
        Ok(out)
    }

    /// Loads a metadata file, checking its content hash against its name.
    pub fn load_json<T: DeserializeOwned>(&self, kind: Kind, name: &str) -> Result<T> {
        let object = object_name(kind, name);
        let sealed = self.get_metadata(kind, name)?;
        if blake3::hash(&sealed).to_hex().as_str() != name {
            return Err(Error::corrupt(object, "content does not match its name"));
        }
        let packed = self.key.decrypt(&sealed, &object)?;
        let json = crate::compress::decompress_unknown(&packed, &object)?;
        serde_json::from_slice(&json).map_err(|e| Error::corrupt(object, e.to_string()))
    }

    /// Reads every index file into one in-memory index.
    pub fn load_index(&self) -> Result<Index> {
        self.load_index_without(&std::collections::HashSet::new())
    }

    /// Reads every index file, leaving out the packs in `skip`.
    pub fn load_index_without(&self, skip: &std::collections::HashSet<crate::types::PackId>) -> Result<Index> {
        let mut index = Index::new();
        for file in self.load_all::<IndexFile>(Kind::Index)?.into_iter().flatten() {
            for p in file.1.packs.iter().filter(|p| !skip.contains(&p.id)) {
                index.add_pack(p);
            }
        }
        index.compact();
        Ok(index)
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(FileId, Snapshot)>> {
        let mut out = Vec::new();
        // None: damaged (reported), or removed by a concurrent forget meanwhile.
        for (name, snap) in self.load_all::<Snapshot>(Kind::Snapshot)?.into_iter().flatten() {
            out.push((FileId::from_hex(&name)?, snap));
        }
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Lists a folder of metadata files and loads each (`load_json_or_skip`), several
    /// at a time: on a remote repository each is a round trip. In listing order.
    fn load_all<T: DeserializeOwned + Send>(&self, kind: Kind) -> Result<Vec<Option<(String, T)>>> {
        let names: Vec<String> = self.list_objects(kind)?.into_iter().map(|(n, _)| n).collect();
        if let Some(c) = &self.cache {
            c.retain(kind, &names.iter().cloned().collect());
        }
        let threads = if self.cache.is_some() { METADATA_FETCHES } else { 1 };
        crate::parallel::map(&names, threads, |name| {
            Ok(self.load_json_or_skip::<T>(kind, name)?.map(|v| (name.clone(), v)))
        })
    }

    pub fn find_snapshot(&self, query: &str) -> Result<(FileId, Snapshot)> {
        self.find_snapshot_matching(query, &snapshot::Filter::default())
    }

    /// One snapshot by `latest`, id or prefix among those `filter` selects
    /// ([`snapshot::Filter::pick`]): `kura restore latest --host web1`.
    pub fn find_snapshot_matching(&self, query: &str, filter: &snapshot::Filter) -> Result<(FileId, Snapshot)> {
        let all = self.snapshots()?;
        filter.pick(&all, query).cloned()
    }

    /// Fetches, decrypts and verifies one blob.
    pub fn read_blob(&self, id: &BlobId, loc: &Location) -> Result<Vec<u8>> {
        let sealed = self.backend.get_range(Kind::Pack, &loc.pack.to_hex(), loc.offset as u64, loc.length as u64)?;
        pack::open_blob(&self.key, &loc.entry(*id), &sealed, &loc.pack)
    }

    pub fn load_tree(&self, index: &Index, id: &BlobId) -> Result<Tree> {
        let loc = index.get(id).ok_or_else(|| Error::MissingBlob { blob: format!("tree {id}") })?;
        if let Some(c) = &self.cache {
            self.cache_tree_packs(c, index);
            if let Some(bytes) = self.cached_blob(c, id, &loc)? {
                return Tree::decode(&bytes, id);
            }
        }
        Tree::decode(&self.read_blob(id, &loc)?, id)
    }

    /// An object's bytes: from the cache when it holds it (index files and
    /// snapshots, checked against their names by the caller), else from the backend,
    /// then kept in the cache.
    fn get_metadata(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        let Some(c) = self.cache.as_ref().filter(|_| matches!(kind, Kind::Index | Kind::Snapshot)) else {
            return Ok(self.backend.get(kind, name)?);
        };
        if let Some(bytes) = c.get(kind, name) {
            return Ok(bytes);
        }
        let bytes = self.backend.get(kind, name)?;
        c.put(kind, name, &bytes);
        Ok(bytes)
    }

    /// Brings every pack holding trees into the cache, whole and several at a time,
    /// the first time a tree is read: a walk of the trees then fetches nothing. Packs
    /// that fail to download are left to per-blob reads (which report the error).
    fn cache_tree_packs(&self, c: &cache::Cache, index: &Index) {
        if self.trees_cached.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let packs = index.tree_packs();
        c.retain(Kind::Pack, &packs.iter().map(|(p, _)| p.to_hex()).collect());
        let missing: Vec<String> =
            packs.iter().map(|(p, _)| p.to_hex()).filter(|name| !c.has(Kind::Pack, name)).collect();
        let _ = crate::parallel::map(&missing, METADATA_FETCHES, |name| {
            match self.backend.get(Kind::Pack, name) {
                Ok(bytes) => c.put(Kind::Pack, name, &bytes),
                Err(e) => tracing::debug!("tree pack {name} not cached: {e}"),
            }
            Ok(())
        });
    }

    /// A blob from a cached pack, authenticated; `None` when the pack is not cached.
    /// A blob that fails is not trusted: the pack leaves the cache, and the caller
    /// reads the blob from the backend.
    fn cached_blob(&self, c: &cache::Cache, id: &BlobId, loc: &Location) -> Result<Option<Vec<u8>>> {
        let name = loc.pack.to_hex();
        let Some(sealed) = c.read_range(Kind::Pack, &name, loc.offset as u64, loc.length as u64) else {
            return Ok(None);
        };
        match pack::open_blob(&self.key, &loc.entry(*id), &sealed, &loc.pack) {
            Ok(plain) => Ok(Some(plain)),
            Err(Error::Corrupt { .. }) => {
                tracing::warn!("cached pack {name} is damaged: removed, read from the repository");
                c.remove(Kind::Pack, &name);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// What a location without a config still holds of a repository ("3 key files and 2
/// snapshots"), or `None` when it holds neither keys nor snapshots.
fn orphaned_objects(backend: &dyn Backend) -> Result<Option<String>> {
    let mut parts = Vec::new();
    for (kind, one, many) in [(Kind::Key, "key file", "key files"), (Kind::Snapshot, "snapshot", "snapshots")] {
        let n = backend.list(kind)?.len();
        if n > 0 {
            parts.push(format!("{n} {}", if n == 1 { one } else { many }));
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join(" and ")))
}

impl Repository {
    /// Reads the header of one pack straight from the backend.
    pub fn read_pack_header(&self, pack: &str, size: u64) -> Result<Vec<pack::PackEntry>> {
        let object = format!("pack {pack}");
        if size < 4 {
            return Err(Error::corrupt(object, "too short to hold a header"));
        }
        let tail = self.backend.get_range(Kind::Pack, pack, size - 4, 4)?;
        let hl = pack::header_len(&tail, pack)? as u64;
        if hl + 4 > size {
            return Err(Error::corrupt(object, "header length exceeds the pack size"));
        }
        let sealed = self.backend.get_range(Kind::Pack, pack, size - 4 - hl, hl)?;
        pack::parse_header(&self.key, &sealed, pack, size)
    }

    /// Indexes packs that are stored but named by no index file: what an interrupted
    /// backup leaves behind. Their blobs become reusable. Returns how many were added.
    /// Packs in `pending` (see `pending_packs`) are never adopted.
    pub fn index_unindexed_packs(
        &self,
        index: &mut Index,
        pending: &std::collections::HashSet<crate::types::PackId>,
    ) -> Result<usize> {
        let mut file = IndexFile::default();
        for (name, size) in self.list_objects(Kind::Pack)? {
            let id = crate::types::PackId::from_hex(&name)?;
            if index.has_pack(&id) || pending.contains(&id) {
                continue;
            }
            match self.read_pack_header(&name, size) {
                Ok(entries) => file.packs.push(index::IndexPack::new(id, size, &entries)),
                Err(e) => tracing::warn!(pack = %name, error = %e, "unreadable pack left out of the index"),
            }
        }
        let n = file.packs.len();
        if n > 0 {
            self.save_json(Kind::Index, &file)?;
            for p in &file.packs {
                index.add_pack(p);
            }
            index.compact();
        }
        Ok(n)
    }
}
