//! The control protocol: one JSON request per line on a unix socket, one JSON
//! response line each (docs/DAEMON.md), as one typed set shared by the daemon
//! (`serve`) and the CLI (`client`); and the socket's place and safety checks.
//! The socket is created owner-only (0600).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;

use crate::error::DaemonError;
use crate::status::Status;
use kura_recovery::error::{Error, Result};
use kura_recovery::schedule::JobKind;
use kura_recovery::state::jobs::JobRun;

/// A request: `{"cmd":"status"}`, `{"cmd":"jobs","system":"web","limit":20}`,
/// `{"cmd":"run","target":"web","wait":true}`, `{"cmd":"stop"}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    Status,
    Jobs {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<JobKind>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    Run {
        target: String,
        /// Answer when the run has ended (with the run), instead of when it started.
        #[serde(default)]
        wait: bool,
    },
    Stop,
    /// A recovery's systems with their state, deadline and progress (`kura recover
    /// status`): the given run, else the latest recovery (of the incident, if given).
    RecoveryStatus {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incident: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<i64>,
    },
}

/// The `data` of a successful response, one shape per request. Untagged on the
/// wire: each shape has its own required keys, so the client reads back the
/// variant the daemon sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    /// To `status`.
    Status(Box<Status>),
    /// To `jobs`: newest first.
    Runs { runs: Vec<JobRun> },
    /// To `run` with `wait`: the run once it ended.
    Ended { run: JobRun },
    /// To `run` without `wait`: the run once it started.
    Started { job: String, started: i64 },
    /// To `stop`.
    Stopping { stopping: bool, pid: u32 },
    /// To `recovery_status`: `{run, systems}` as `kura recover status --json` prints them.
    Recovery { recovery: serde_json::Value },
}

/// `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Reply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<std::result::Result<Reply, DaemonError>> for Response {
    fn from(r: std::result::Result<Reply, DaemonError>) -> Response {
        match r {
            Ok(data) => Response { ok: true, data: Some(data), error: None },
            Err(e) => Response::refused(e.to_string()),
        }
    }
}

impl Response {
    /// A request the daemon could not carry out, with the reason for the user.
    pub fn refused(msg: impl Into<String>) -> Response {
        Response { ok: false, data: None, error: Some(msg.into()) }
    }
}

/// Where the socket lives by default: `/run/kura/kura.sock` for root, else
/// `$XDG_RUNTIME_DIR/kura/kura.sock`, else `/tmp/kura-UID/kura.sock`.
pub fn default_socket() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/kura/kura.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("kura/kura.sock"),
        None => std::env::temp_dir().join(format!("kura-{uid}/kura.sock")),
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The socket's directory must be this user's alone: owned by the effective user and
/// without group or other permissions. Otherwise another local user could remove the
/// socket and put their own in its place, and the CLI would talk to them.
pub fn check_runtime_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    let what = format!("socket directory {}", dir.display());
    if !meta.is_dir() {
        return Err(Error::invalid(what, "it is not a directory"));
    }
    let me = euid();
    if meta.uid() != me {
        return Err(Error::invalid(
            what,
            format!(
                "it belongs to uid {}, not to this user (uid {me}): another user could replace the daemon's \
                 socket there; remove it, or choose a directory of your own with --socket",
                meta.uid()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::invalid(
            what,
            format!(
                "it has mode {mode:04o}: other users could replace the daemon's socket there; fix it with \
                 `chmod 700 {}` (systemd: RuntimeDirectoryMode=0700), or choose another with --socket",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Before the CLI talks to a socket: it must belong to this user or to root, so that
/// another local user cannot impersonate the daemon. A missing socket is fine here
/// (connecting says that no daemon listens).
pub fn check_socket_owner(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let me = euid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Error::invalid(
            format!("socket {}", path.display()),
            format!(
                "it belongs to uid {}, neither this user (uid {me}) nor root: it is not a kura daemon of \
                 yours, so kura will not talk to it; remove it, or give your daemon's socket with --socket",
                meta.uid()
            ),
        ));
    }
    Ok(())
}

/// Binds the socket owner-only, in a directory that is this user's alone (created
/// 0700 when missing, refused when another user owns it or may write to it).
/// Refuses when another daemon answers on it; removes a stale socket file left by a
/// daemon that died.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(dir, e))?;
        }
        check_runtime_dir(dir)?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::invalid(
                format!("socket {}", path.display()),
                "another kura daemon is listening on it: stop it with `kura daemon stop` or use --socket",
            ));
        }
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    // The socket is created with mode 0600 (umask 0177) so that no other user can
    // connect even for an instant; the umask is restored at once.
    // SAFETY: umask has no preconditions; no other thread creates files at this point.
    let old = unsafe { libc::umask(0o177) };
    let res = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let std_listener = res.map_err(|e| Error::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(path, e))?;
    std_listener.set_nonblocking(true).map_err(|e| Error::io(path, e))?;
    UnixListener::from_std(std_listener).map_err(|e| Error::io(path, e))
}
