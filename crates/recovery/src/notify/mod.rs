//! Notifications: when a job fails, a system becomes late, or a recovery's
//! deadline is at risk, kura sends a JSON event to the configured webhook (HTTPS or
//! HTTP POST) and/or command (docs/DAEMON.md, Notifications).
//!
//! * `outbox.rs`: every event is first written to the `outbox` table of the state
//!   database (one row per channel), deduplicated by a key; the daemon's delivery
//!   worker sends what is pending, retries with exponential backoff, and marks a
//!   row delivered only after the receiver accepted it.
//! * `webhook.rs`: POST through reqwest with rustls (certificates verified; an
//!   extra CA from `ca_file`), the event's id in `Idempotency-Key` and
//!   `X-Kura-Event-Id`; any 2xx answer is delivered.
//! * `command.rs`: `sh -c` with the event JSON on stdin and in `KURA_EVENT`, a
//!   clean environment, killed after 60 s; exit 0 is delivered.
//!
//! URLs in messages and logs go through [`redact`]: no userinfo, no query values.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Notify;

mod command;
pub mod outbox;
pub(crate) mod webhook;

pub use command::run_command;
pub use outbox::{Channel, Outgoing, Pending};
pub use webhook::post_json;

pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A job run ended with outcome `failed`.
    JobFailed,
    /// A system's last good backup became older than its priority allows.
    SystemLate,
    /// During a recovery: at the current pace a system will be back after its deadline.
    DeadlineAtRisk,
    /// During a recovery: a system's deadline passed and it is not back.
    DeadlineBreach,
    /// An agent host not heard from for `[fleet] agent_lost_after`: its systems are at risk.
    AgentLost,
    /// A backup's signals stand far outside its system's baseline (crate::detect).
    SnapshotSuspect,
    /// Sent by `kura notify test`.
    Test,
    /// A system's standby became stale, failed its update or its verification
    /// (docs/STANDBY.md): it can no longer take over.
    StandbyUnhealthy,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::JobFailed => "job_failed",
            EventKind::SystemLate => "system_late",
            EventKind::DeadlineAtRisk => "deadline_at_risk",
            EventKind::DeadlineBreach => "deadline_breach",
            EventKind::AgentLost => "agent_lost",
            EventKind::SnapshotSuspect => "snapshot_suspect",
            EventKind::Test => "test",
            EventKind::StandbyUnhealthy => "standby_unhealthy",
        }
    }
}

/// The JSON document sent.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Stable for the event's life, across retries and daemon restarts: receivers
    /// dedupe by it (it is also the `Idempotency-Key` header). Set by the outbox.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// What deduplicates the event in the outbox, e.g. `job_failed:backup:web:17`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    pub event: EventKind,
    pub at: DateTime<Utc>,
    /// The host the daemon runs on.
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `system_late`: when its last good backup ended (absent if never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<i64>,
    /// One line for people.
    pub message: String,
}

impl Event {
    pub fn new(event: EventKind, at: DateTime<Utc>, message: String) -> Event {
        Event {
            id: String::new(),
            key: String::new(),
            event,
            at,
            host: kura_store::host_name(),
            job: None,
            system: None,
            priority: None,
            run: None,
            error: None,
            last_backup: None,
            age_secs: None,
            max_age_secs: None,
            message,
        }
    }
}

/// Delivers `json` (an event with its id) on one channel, configured by `notify`.
pub fn deliver(notify: &Notify, channel: Channel, kind: &str, event_id: &str, json: &str) -> Result<(), DeliveryError> {
    match channel {
        Channel::Webhook => {
            let url = notify.webhook.as_deref().ok_or(DeliveryError::NotConfigured("webhook"))?;
            post_json(url, notify.ca_file.as_deref(), event_id, json, HTTP_TIMEOUT)
        }
        Channel::Command => {
            let cmd = notify.command.as_deref().ok_or(DeliveryError::NotConfigured("command"))?;
            run_command(cmd, kind, event_id, json, COMMAND_TIMEOUT)
        }
    }
}

/// The channels `notify` configures.
pub fn channels(notify: &Notify) -> Vec<Channel> {
    let mut out = Vec::new();
    if notify.webhook.is_some() {
        out.push(Channel::Webhook);
    }
    if notify.command.is_some() {
        out.push(Channel::Command);
    }
    out
}

/// Sends `event` right away on every configured channel, without the outbox (for
/// `kura notify test`). Returns each channel with its result.
pub fn send_now(notify: &Notify, event: &mut Event) -> Vec<(Channel, Result<(), DeliveryError>)> {
    if event.id.is_empty() {
        event.id = outbox::new_event_id();
    }
    let json = serde_json::to_string(&*event).expect("events serialize");
    channels(notify).into_iter().map(|c| (c, deliver(notify, c, event.event.as_str(), &event.id, &json))).collect()
}

/// A URL fit for logs and messages: userinfo replaced by `***`, every query value
/// by `***` (tokens often travel there). Text that is not a URL is shown as `<URL>`.
pub fn redact(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return "<URL that does not parse>".into();
    };
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("***");
        let _ = u.set_password(None);
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u.query_pairs().map(|(k, _)| (k.into_owned(), "***".into())).collect();
        let q = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        u.set_query(Some(&q));
    }
    u.to_string()
}

/// Why a notification was not delivered. Messages never hold a URL's secrets.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no {0} is configured in [notify]")]
    NotConfigured(&'static str),
    #[error("cannot read ca_file {path}: {cause}")]
    CaFile { path: String, cause: String },
    #[error("webhook {url}: {cause}")]
    Http { url: String, cause: String },
    #[error("webhook {url}: answered {status}")]
    Status { url: String, status: String },
    #[error("cannot start sh: {0}")]
    Spawn(std::io::Error),
    #[error("waiting for the notify command: {0}")]
    Wait(std::io::Error),
    #[error("notify command `{command}` exited with {status}{}", if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    Exit { command: String, status: std::process::ExitStatus, stderr: String },
    #[error("notify command `{command}` did not finish within {secs} s and was killed")]
    TimedOut { command: String, secs: u64 },
}

#[cfg(test)]
mod tests;
