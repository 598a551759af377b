//! The coordinator's fleet files beside its state database (`fleet/`, 0700): the CA
//! (`ca.pem`, `ca.key` 0600) and one repository passphrase per host (`keys/HOST`,
//! 0600). Passphrases are never in the database and never logged; an agent gets
//! its host's passphrase inside each task, for that task only.
//!
//! Repositories: host H's systems go to `<repository>/hosts/H`, a repository of its
//! own with its own passphrase, made by the coordinator on first use. With
//! `[fleet] shared_repository = true` every host writes the main repository.

use std::path::{Path, PathBuf};

use kura_fleet::pki::Ca;
use kura_store::backend::Location;
use kura_store::repo::keys::read_password_file;
use kura_store::repo::Repository;
use rand::RngCore;

use crate::config::Config;
use crate::error::{Error, Result};

pub struct FleetDir {
    root: PathBuf,
}

/// Where a host's work reads and writes, and with which passphrase.
pub struct HostRepo {
    pub location: String,
    pub passphrase: String,
}

impl std::fmt::Debug for HostRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostRepo({})", self.location)
    }
}

fn fleet_err(what: &str, e: kura_fleet::Error) -> Error {
    Error::invalid(what, e.to_string())
}

impl FleetDir {
    /// The fleet directory of the state database at `state`.
    pub fn for_state(state: &Path) -> FleetDir {
        let dir = state.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        FleetDir { root: dir.join("fleet") }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The CA, made on first use.
    pub fn ca(&self) -> Result<Ca> {
        let (cert, key) = (self.root.join("ca.pem"), self.root.join("ca.key"));
        if cert.exists() {
            let c = std::fs::read_to_string(&cert).map_err(|e| Error::io(&cert, e))?;
            let k = std::fs::read_to_string(&key).map_err(|e| Error::io(&key, e))?;
            return Ca::load(&c, &k).map_err(|e| fleet_err(&key.display().to_string(), e));
        }
        kura_store::private_file::create_dir(&self.root)?;
        let (ca, key_pem) = Ca::generate().map_err(|e| fleet_err("fleet CA", e))?;
        kura_store::private_file::write(&key, key_pem.as_bytes())?;
        kura_store::private_file::write(&cert, ca.cert_pem.as_bytes())?;
        Ok(ca)
    }

    /// Host `host`'s repository passphrase. `keys/HOST` exists once its repository
    /// does; before, the passphrase waits in `keys/HOST.new` (made on first use, 64
    /// hex digits), so that a crash between the two keeps the passphrase.
    pub fn host_passphrase(&self, host: &str) -> Result<String> {
        Ok(self.host_key(host)?.1)
    }

    /// (whether the host's repository is known to exist, its passphrase).
    fn host_key(&self, host: &str) -> Result<(bool, String)> {
        if !crate::config::valid_system_name(host) {
            return Err(Error::invalid(format!("host {host:?}"), "not a valid host name for a key file"));
        }
        let dir = self.root.join("keys");
        let read = |path: &Path| -> Result<String> {
            let p = read_password_file(path)?;
            String::from_utf8(p).map_err(|_| Error::invalid(path.display().to_string(), "not UTF-8"))
        };
        let (done, pending) = (dir.join(host), dir.join(format!("{host}.new")));
        if done.exists() {
            return Ok((true, read(&done)?));
        }
        if pending.exists() {
            return Ok((false, read(&pending)?));
        }
        kura_store::private_file::create_dir(&dir)?;
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let pass: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        kura_store::private_file::write(&pending, pass.as_bytes())?;
        Ok((false, pass))
    }

    /// The repository host `host` backs up into, created when it does not exist yet.
    pub fn host_repo(&self, cfg: &Config, host: &str) -> Result<HostRepo> {
        let shared = cfg.fleet.as_ref().is_some_and(|f| f.shared_repository);
        if shared {
            let pass = read_password_file(&cfg.repository.password_file)?;
            let passphrase = String::from_utf8(pass)
                .map_err(|_| Error::invalid(cfg.repository.password_file.display().to_string(), "not UTF-8"))?;
            return Ok(HostRepo { location: cfg.repository.location.to_string(), passphrase });
        }
        let location = host_location(&cfg.repository.location, host);
        let (exists, passphrase) = self.host_key(host)?;
        if !exists {
            // First use: make the repository (or find the one a crash left), then
            // mark it made. Later dispatches derive no key here. One at a time: each
            // key derivation takes argon2's memory (a fleet's first slot would
            // otherwise derive one per host at once).
            static FIRST_USE: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one = FIRST_USE.lock().unwrap_or_else(|e| e.into_inner());
            let backend = kura_store::backend::open_location(&location)?;
            match Repository::open(backend.clone(), passphrase.as_bytes()) {
                Ok(_) => {}
                Err(kura_store::Error::NoRepository { .. }) => {
                    // Two first dispatches at once: the one that lost the race opens.
                    if Repository::init(backend.clone(), passphrase.as_bytes()).is_err() {
                        Repository::open(backend, passphrase.as_bytes())?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
            let keys = self.root.join("keys");
            let (pending, done) = (keys.join(format!("{host}.new")), keys.join(host));
            if let Err(e) = std::fs::rename(&pending, &done) {
                if !done.exists() {
                    return Err(Error::io(&done, e));
                }
            }
        }
        Ok(HostRepo { location: location.to_string(), passphrase })
    }

    /// The passphrase of a repository a task names: the main one, or a host's
    /// (`<repository>/hosts/H`). Anything else is refused: no task may name it.
    pub fn passphrase_for(&self, cfg: &Config, location: &str) -> Result<String> {
        let main = cfg.repository.location.to_string();
        if location == main {
            let pass = read_password_file(&cfg.repository.password_file)?;
            return String::from_utf8(pass)
                .map_err(|_| Error::invalid(cfg.repository.password_file.display().to_string(), "not UTF-8"));
        }
        let host = location
            .strip_prefix(main.trim_end_matches('/'))
            .and_then(|r| r.strip_prefix("/hosts/"))
            .filter(|h| !h.contains('/'))
            .ok_or_else(|| {
                Error::invalid(format!("repository {location}"), "not the repository of a host of this config")
            })?;
        self.host_passphrase(host)
    }

    /// Opens host `host`'s repository (the coordinator reads snapshot lists there).
    pub fn open_host_repo(&self, cfg: &Config, host: &str) -> Result<Repository> {
        let r = self.host_repo(cfg, host)?;
        let backend = kura_store::backend::open_location(
            &Location::parse(&r.location).map_err(|e| Error::invalid(&r.location, e.to_string()))?,
        )?;
        Ok(Repository::open(backend, r.passphrase.as_bytes())?)
    }
}

/// `<repository>/hosts/HOST`: a sub-directory, or a sub-prefix on S3.
pub fn host_location(main: &Location, host: &str) -> Location {
    match main {
        Location::Local(p) => Location::Local(p.join("hosts").join(host)),
        Location::S3(s) => Location::S3(format!("{}/hosts/{host}", s.trim_end_matches('/'))),
    }
}
