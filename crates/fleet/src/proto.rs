//! The agent protocol: typed JSON bodies over HTTPS with mutual TLS.
//!
//! * `GET  /v1/ca`           the fleet CA (no client certificate needed)
//! * `POST /v1/join`         a token and a public key -> a certificate (no client certificate)
//! * `POST /v1/agent/poll`   long poll; doubles as the heartbeat -> tasks for the caller's host
//! * `POST /v1/agent/report` progress, done or failed for one task (idempotent)
//! * `POST /v1/operator`     an operator's or viewer's typed request (the daemon's own API)
//! * `POST /v1/cli`          an operator's or viewer's command line, run by the coordinator (1.1)
//!
//! Every request carries `PROTOCOL_VERSION`; a different major version is refused
//! with both versions named (`check_version`).

use serde::{Deserialize, Serialize};

/// Major changes break compatibility; minor ones only add optional fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

pub const PROTOCOL_VERSION: Version = Version { major: 1, minor: 1 };

/// Why a peer's version is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "protocol version {theirs} is not supported by this coordinator (it speaks {ours}): \
     install the same major version of kura on both sides"
)]
pub struct VersionError {
    pub theirs: Version,
    pub ours: Version,
}

/// The one version rule: same major, any minor.
pub fn check_version(theirs: Version) -> Result<(), VersionError> {
    if theirs.major == PROTOCOL_VERSION.major {
        Ok(())
    } else {
        Err(VersionError { theirs, ours: PROTOCOL_VERSION })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub version: Version,
    /// The token's secret part (hex); the coordinator keeps only its hash.
    pub secret: String,
    /// The agent's public key (raw ECDSA P-256 point, hex). Its private key stays on the host.
    pub public_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinReply {
    pub name: String,
    pub role: crate::role::RoleKind,
    pub certificate_pem: String,
    pub ca_pem: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PollRequest {
    pub version: Version,
    /// The task the agent holds (persisted on its side), if any.
    pub held: Option<i64>,
    /// How long the coordinator may hold the request open, in ms (capped by it).
    pub wait_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PollReply {
    pub tasks: Vec<Task>,
}

/// A task as handed out: the stored spec plus the secret it needs (never stored).
/// Its `Debug` leaves the passphrase out, so a logged task shows no secret.
#[derive(Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: i64,
    pub spec: TaskSpec,
    /// The repository passphrase, for this task only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task {} {:?}", self.id, self.spec)
    }
}

/// What a task asks for. Stored as JSON in the coordinator's task table and in the
/// agent's held-task file: it holds no secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskSpec {
    Backup {
        system: String,
        paths: Vec<String>,
        excludes: Vec<String>,
        tags: Vec<String>,
        /// The host name recorded in the snapshot.
        host: String,
        /// The repository location (a directory or `s3:...`).
        repository: String,
    },
    Restore {
        system: String,
        snapshot: String,
        target: String,
        subpath: Option<String>,
        repository: String,
        /// The recovery or drill run it belongs to: a resumed run finds its task again.
        #[serde(default)]
        run: Option<i64>,
    },
    Hook {
        system: String,
        stage: HookStage,
        command: String,
        env: Vec<(String, String)>,
        timeout_ms: u64,
        #[serde(default)]
        run: Option<i64>,
    },
    /// Bring a directory on this host (a standby, or a primary at a failback) to a
    /// snapshot by difference with `kura_store::sync::apply` (crash-safe: its marker
    /// says what the directory holds). `copy_from` (a failover drill): the standby
    /// at that path is first copied to `path`, a sandbox, and the copy is brought.
    StandbyApply {
        system: String,
        snapshot: String,
        path: String,
        subpath: Option<String>,
        repository: String,
        #[serde(default)]
        copy_from: Option<String>,
        /// The failover, failback or drill row it belongs to, if any.
        #[serde(default)]
        run: Option<i64>,
    },
}

impl TaskSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            TaskSpec::Backup { .. } => "backup",
            TaskSpec::Restore { .. } => "restore",
            TaskSpec::Hook { .. } => "hook",
            TaskSpec::StandbyApply { .. } => "standby_apply",
        }
    }
    pub fn system(&self) -> &str {
        match self {
            TaskSpec::Backup { system, .. } | TaskSpec::Restore { system, .. } | TaskSpec::Hook { system, .. } => {
                system
            }
            TaskSpec::StandbyApply { system, .. } => system,
        }
    }
    /// The repository the task reads or writes (hooks: none).
    pub fn repository(&self) -> Option<&str> {
        match self {
            TaskSpec::Backup { repository, .. } | TaskSpec::Restore { repository, .. } => Some(repository),
            TaskSpec::StandbyApply { repository, .. } => Some(repository),
            TaskSpec::Hook { .. } => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportRequest {
    pub version: Version,
    pub task: i64,
    pub report: Report,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Report {
    Progress { done: u64, total: u64 },
    Done { result: TaskResult },
    Failed { error: String },
}

/// When a hook runs in a system's recovery (and in a standby's switch). Its
/// serde text (`pre`, `verify`, `post`) is what the task spec and the state
/// database's `hooks` column carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookStage {
    /// Before the restore.
    #[default]
    Pre,
    /// After the restore, retried: proves the system works.
    Verify,
    /// Last, e.g. start the service again.
    Post,
    /// A failover's first step, on the primary's host: stop it serving.
    Fence,
    /// A failover's switch, on the standby's host: make it serve.
    Promote,
    /// A failback's first step, on the standby's host: stop it serving.
    Demote,
    /// A failback's switch, on the primary's host: make it serve again.
    Unfence,
}

impl HookStage {
    pub fn as_str(self) -> &'static str {
        match self {
            HookStage::Pre => "pre",
            HookStage::Verify => "verify",
            HookStage::Post => "post",
            HookStage::Fence => "fence",
            HookStage::Promote => "promote",
            HookStage::Demote => "demote",
            HookStage::Unfence => "unfence",
        }
    }

    /// The stage a `KURA_PHASE` value names.
    pub fn from_name(s: &str) -> Option<HookStage> {
        use HookStage::*;
        [Pre, Verify, Post, Fence, Promote, Demote, Unfence].into_iter().find(|h| h.as_str() == s)
    }
}

impl std::fmt::Display for HookStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a finished task reports, one shape per task kind. Untagged on the wire
/// (each shape has its own required fields), so it reads as protocol 1.0 wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskResult {
    Backup(BackupResult),
    Restore(RestoreResult),
    Hook(HookResult),
    StandbyApply(StandbyResult),
}

/// What an agent's backup reports as its result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupResult {
    pub snapshot: String,
    pub bytes_added: u64,
    pub partial: bool,
    pub warnings: Vec<String>,
    pub summary: serde_json::Value,
}

/// What an agent's restore reports as its result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreResult {
    pub bytes_written: u64,
    pub files: u64,
    pub dirs: u64,
    pub packs_read: u64,
    pub restore_ms: u64,
    pub files_verified: u64,
    pub verify_failures: Vec<String>,
    /// First damaged file, and how many.
    pub damaged: Option<(usize, String)>,
}

/// What an agent's hook reports: one attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookResult {
    pub ok: bool,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub output: String,
}

/// What an agent's standby apply reports: what the directory now holds (read back
/// from its marker after the apply, never assumed) and what it took.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyResult {
    /// The snapshot the directory holds completely now (full id); `None`: none.
    pub holds: Option<String>,
    /// The snapshot it held before (none: empty, unknown or interrupted).
    pub previous: Option<String>,
    pub files_unchanged: u64,
    pub files_written: u64,
    pub files_reused: u64,
    pub removed: u64,
    pub bytes_written: u64,
    pub bytes_reused: u64,
    pub bytes_resumed: u64,
    pub duration_ms: u64,
}

/// `POST /v1/cli`: a kura command line (without the program name and without
/// `--coordinator`/`--identity`) that the coordinator parses with its own CLI
/// definitions, allows by role, and runs with its own config and state.
/// Its `Debug` leaves the arguments out: they may carry a reason or a note that
/// does not belong in a log.
#[derive(Clone, Serialize, Deserialize)]
pub struct CliRequest {
    pub version: Version,
    pub args: Vec<String>,
}

impl std::fmt::Debug for CliRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "command line of {} arguments", self.args.len())
    }
}

/// What the command printed and how it ended, as the operator's CLI prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliReply {
    pub stdout: String,
    pub stderr: String,
    /// The process exit code (0 success, 1 partial, 2 error).
    pub code: u8,
}

/// An error body of every route: a sentence meant for a person.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_major_is_accepted_other_major_refused_with_both_named() {
        assert!(check_version(Version { major: 1, minor: 7 }).is_ok());
        let e = check_version(Version { major: 2, minor: 0 }).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("2.0") && msg.contains("1.1"), "{msg}");
    }

    #[test]
    fn spec_round_trips_and_holds_no_secret() {
        let t = Task {
            id: 3,
            spec: TaskSpec::Restore {
                system: "db".into(),
                snapshot: "ab".into(),
                target: "/t".into(),
                subpath: None,
                repository: "/r".into(),
                run: Some(1),
            },
            passphrase: Some("hunter2".into()),
        };
        let spec = serde_json::to_string(&t.spec).unwrap();
        assert!(!spec.contains("hunter2"));
        assert_eq!(serde_json::from_str::<TaskSpec>(&spec).unwrap(), t.spec);
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn a_standby_apply_names_its_repository_and_round_trips() {
        let spec = TaskSpec::StandbyApply {
            system: "db".into(),
            snapshot: "ab".into(),
            path: "/srv/standby/db".into(),
            subpath: Some("/srv/db".into()),
            repository: "/r/hosts/app1".into(),
            copy_from: None,
            run: Some(4),
        };
        assert_eq!((spec.kind(), spec.system(), spec.repository()), ("standby_apply", "db", Some("/r/hosts/app1")));
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<TaskSpec>(&text).unwrap(), spec);
    }

    #[test]

    fn typed_reports_read_the_1_0_wire() {
        let restore = r#"{"state":"done","result":{"bytes_written":5,"files":1,"dirs":0,"packs_read":1,
            "restore_ms":3,"files_verified":1,"verify_failures":[],"damaged":null}}"#;
        match serde_json::from_str::<Report>(restore).unwrap() {
            Report::Done { result: TaskResult::Restore(r) } => assert_eq!(r.bytes_written, 5),
            other => panic!("{other:?}"),
        }
        let hook =
            r#"{"state":"done","result":{"ok":true,"exit_code":0,"timed_out":false,"duration_ms":1,"output":""}}"#;
        assert!(matches!(serde_json::from_str::<Report>(hook).unwrap(), Report::Done { result: TaskResult::Hook(_) }));
        let spec = r#"{"kind":"hook","system":"db","stage":"verify","command":"true","env":[],"timeout_ms":1}"#;
        let spec: TaskSpec = serde_json::from_str(spec).unwrap();
        assert!(matches!(spec, TaskSpec::Hook { stage: HookStage::Verify, .. }));
        assert!(serde_json::from_str::<TaskSpec>(&spec_text("later")).is_err());
        assert_eq!(HookStage::from_name("post"), Some(HookStage::Post));
        assert_eq!(serde_json::to_string(&crate::role::RoleKind::Viewer).unwrap(), "\"viewer\"");
    }

    fn spec_text(stage: &str) -> String {
        format!(r#"{{"kind":"hook","system":"db","stage":"{stage}","command":"true","env":[],"timeout_ms":1}}"#)
    }
}
