//! `[system.standby]`: a warm standby of a system, kept current from its backups
//! (docs/STANDBY.md).

use std::path::{Path, PathBuf};

use super::tree::{self, resolve_path, Diag, Obj};

/// How long a priority-3 system may be down (and how old the data it serves may be)
/// and still meet "must not stop", unless `tolerance` says otherwise.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;
/// How long each standby hook may run unless `hook_timeout` says otherwise.
pub const DEFAULT_STANDBY_HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub(crate) const STANDBY: &[&str] =
    &["path", "host", "fence", "promote", "demote", "unfence", "verify", "hook_timeout"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbyConfig {
    /// The directory the standby is kept in: on this machine, or on `host`.
    pub path: PathBuf,
    /// The agent host the standby lives on (docs/FLEET.md); `None`: this machine.
    /// Every standby operation (apply, its hooks, drills) then runs on that agent.
    pub host: Option<String>,
    /// Run before a failover to stop the primary (`sh -c`); a failure stops the failover.
    pub fence: Option<String>,
    /// Makes the standby serve (start its service, move an address).
    pub promote: Option<String>,
    /// Stops the standby serving, at a failback.
    pub demote: Option<String>,
    /// Starts the primary again at the end of a failback.
    pub unfence: Option<String>,
    /// Checks after each update and each failover; every one must exit 0.
    pub verify: Vec<String>,
    pub hook_timeout: std::time::Duration,
}

/// `tolerance` of a system: for priority 3, the downtime and data loss within which
/// "must not stop" is met (default 5 minutes).
pub(crate) fn tolerance(d: &mut Diag, o: &Obj) -> Option<chrono::Duration> {
    let v = o.str(d, "tolerance")?;
    match tree::parse_duration(&v.value) {
        Ok(t) => Some(chrono::Duration::seconds(t.as_secs() as i64)),
        Err(e) => {
            d.error(v.line, &v.field, e.to_string());
            None
        }
    }
}

/// Reads `[system.standby]` of the system table `o`.
pub(crate) fn standby(d: &mut Diag, o: &Obj, base: &Path) -> Option<StandbyConfig> {
    let s = o.table(d, "standby", STANDBY)?;
    let path = s.req_str(d, "path", "the directory the standby is kept in")?;
    let host = s.str(d, "host").map(|h| h.value);
    let path = match &host {
        // A path on another host cannot be resolved against this config's directory.
        Some(_) if !Path::new(&path.value).is_absolute() => {
            d.error(path.line, &path.field, "a standby on an agent host needs an absolute path");
            return None;
        }
        Some(_) => PathBuf::from(&path.value),
        None => resolve_path(base, &path.value),
    };
    let one = |d: &mut Diag, key: &str| {
        s.get(key)?;
        s.req_str(d, key, "a shell command, or remove the line").map(|v| v.value)
    };
    let (fence, promote) = (one(d, "fence"), one(d, "promote"));
    let (demote, unfence) = (one(d, "demote"), one(d, "unfence"));
    let verify = s.str_list(d, "verify").map(|l| l.value.into_iter().map(|v| v.value).collect()).unwrap_or_default();
    let dur = |d: &mut Diag, key: &str, default: std::time::Duration| match s.str(d, key) {
        None => default,
        Some(v) => tree::parse_duration(&v.value).unwrap_or_else(|e| {
            d.error(v.line, &v.field, e.to_string());
            default
        }),
    };
    let hook_timeout = dur(d, "hook_timeout", DEFAULT_STANDBY_HOOK_TIMEOUT);
    Some(StandbyConfig { path, host, fence, promote, demote, unfence, verify, hook_timeout })
}
