//! The dashboard's bearer token: a file holding one line. Created owner-only
//! (0600, its directory 0700) with 32 random bytes, hex, when absent; a file that
//! others can read, or an empty one, is refused. The token is never logged.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

use super::HttpError;
use kura_recovery::config::Http;

/// `[http] token_file`, else `http-token` beside the state database.
pub fn token_path(http: &Http, state: &Path) -> PathBuf {
    http.token_file.clone().unwrap_or_else(|| {
        state.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("http-token")
    })
}

fn problem(path: &Path, p: impl Into<String>) -> HttpError {
    HttpError::Token { path: path.to_path_buf(), problem: p.into() }
}

/// Reads the token, creating the file first when it does not exist.
pub fn load_or_create(path: &Path) -> Result<String, HttpError> {
    match std::fs::metadata(path) {
        Ok(m) => {
            if m.permissions().mode() & 0o077 != 0 {
                return Err(problem(path, "others may read it: make it owner-only (chmod 600)"));
            }
            let text = std::fs::read_to_string(path).map_err(|e| problem(path, format!("cannot read it: {e}")))?;
            let token = text.trim();
            if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(problem(path, "it must hold one token, without spaces"));
            }
            Ok(token.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(problem(path, format!("cannot read it: {e}"))),
    }
}

fn create(path: &Path) -> Result<String, HttpError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| problem(path, format!("cannot create its directory: {e}")))?;
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| problem(path, format!("cannot create it: {e}")))?;
    f.write_all(format!("{token}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| problem(path, format!("cannot write it: {e}")))?;
    tracing::info!(token_file = %path.display(), "created the http token file");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_owner_only_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/http-token");
        let t = load_or_create(&p).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(p.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(load_or_create(&p).unwrap(), t);
    }

    #[test]
    fn readable_by_others_or_empty_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "abc\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&p).unwrap_err().to_string();
        assert!(e.contains("tok") && e.contains("chmod 600"), "{e}");
        std::fs::write(&p, "\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_or_create(&p).unwrap_err().to_string();
        assert!(e.contains("one token"), "{e}");
    }
}
