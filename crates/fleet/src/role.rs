//! Roles and what each may do: one pure function, `allowed`, that every route asks.

use serde::{Deserialize, Serialize};

/// Who a certificate belongs to, as the coordinator's registry records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A host's agent: its own host's work only.
    Agent { host: String },
    /// Everything an operator at the coordinator can do.
    Operator,
    /// Reads status and reports; changes nothing.
    Viewer,
}

/// A role without its host: what a token, a certificate and the registry carry.
/// Stored and sent as `agent`, `operator`, `viewer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleKind {
    Agent,
    Operator,
    Viewer,
}

impl RoleKind {
    pub const ALL: [RoleKind; 3] = [RoleKind::Agent, RoleKind::Operator, RoleKind::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            RoleKind::Agent => "agent",
            RoleKind::Operator => "operator",
            RoleKind::Viewer => "viewer",
        }
    }

    /// The kind a stored name stands for.
    pub fn from_name(s: &str) -> Option<RoleKind> {
        RoleKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for RoleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Role {
    /// The role's kind (printed `agent`, `operator`, `viewer`).
    pub fn kind(&self) -> RoleKind {
        match self {
            Role::Agent { .. } => RoleKind::Agent,
            Role::Operator => RoleKind::Operator,
            Role::Viewer => RoleKind::Viewer,
        }
    }

    /// The role of a registry row: its kind and the certificate's name.
    pub fn from_kind(kind: RoleKind, name: &str) -> Role {
        match kind {
            RoleKind::Agent => Role::Agent { host: name.to_string() },
            RoleKind::Operator => Role::Operator,
            RoleKind::Viewer => Role::Viewer,
        }
    }
}

/// What a request wants to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Fetch the work of `host`.
    PollWork { host: &'a str },
    /// Report on a task of `host`.
    ReportWork { host: &'a str },
    /// Status, jobs, recovery status, reports.
    Read,
    /// Start a job or a recovery, stop, reload, enrol, revoke.
    Change,
}

/// Whether `role` may do `action`.
pub fn allowed(role: &Role, action: &Action) -> bool {
    match (role, action) {
        (Role::Agent { host }, Action::PollWork { host: h } | Action::ReportWork { host: h }) => host == h,
        (Role::Agent { .. }, Action::Read | Action::Change) => false,
        (Role::Operator, Action::Read | Action::Change) => true,
        (Role::Viewer, Action::Read) => true,
        (Role::Viewer, Action::Change) => false,
        // Work is fetched and reported by the host's agent only.
        (Role::Operator | Role::Viewer, Action::PollWork { .. } | Action::ReportWork { .. }) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_does_its_own_hosts_work_and_nothing_else() {
        let a = Role::Agent { host: "db1".into() };
        assert!(allowed(&a, &Action::PollWork { host: "db1" }));
        assert!(allowed(&a, &Action::ReportWork { host: "db1" }));
        assert!(!allowed(&a, &Action::PollWork { host: "web1" }));
        assert!(!allowed(&a, &Action::ReportWork { host: "web1" }));
        assert!(!allowed(&a, &Action::Read));
        assert!(!allowed(&a, &Action::Change));
    }

    #[test]
    fn viewer_reads_operator_does_everything_but_host_work() {
        assert!(allowed(&Role::Viewer, &Action::Read));
        assert!(!allowed(&Role::Viewer, &Action::Change));
        assert!(allowed(&Role::Operator, &Action::Read));
        assert!(allowed(&Role::Operator, &Action::Change));
        assert!(!allowed(&Role::Operator, &Action::PollWork { host: "db1" }));
        assert!(!allowed(&Role::Viewer, &Action::ReportWork { host: "db1" }));
    }

    #[test]
    fn kinds_round_trip() {
        for r in [Role::Agent { host: "h".into() }, Role::Operator, Role::Viewer] {
            assert_eq!(Role::from_kind(r.kind(), "h"), r);
            assert_eq!(RoleKind::from_name(r.kind().as_str()), Some(r.kind()));
        }
        assert_eq!(RoleKind::from_name("root"), None);
    }
}
