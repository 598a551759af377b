//! The agent's loop: report what finished, report progress, poll for work, start
//! new tasks on their own threads. A task's spec is written to `tasks/ID.json`
//! before it runs; its result to `tasks/ID.result.json` when it ends, and both are
//! removed once the coordinator has the result. After a kill -9 the agent polls
//! again, gets the tasks it held (with their passphrase, never stored here) and
//! runs them again: a restore skips the files already in place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kura_fleet::proto::{PollReply, PollRequest, Report, ReportRequest, Task, PROTOCOL_VERSION};

use crate::identity::Identity;
use crate::work::{execute, Meter};
use crate::{AgentError, Result};
use kura_store::private_file;

/// The longest wait between two attempts to reach the coordinator.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How long a poll may be held open by the coordinator when the agent is idle.
const IDLE_WAIT: Duration = Duration::from_secs(25);
/// Poll (and progress) interval while tasks run.
const BUSY_WAIT: Duration = Duration::from_secs(1);

struct Running {
    meter: Arc<Meter>,
    handle: std::thread::JoinHandle<()>,
}

fn spec_path(dir: &Path, id: i64) -> PathBuf {
    dir.join(format!("{id}.json"))
}
fn result_path(dir: &Path, id: i64) -> PathBuf {
    dir.join(format!("{id}.result.json"))
}

/// Runs until `stop` is set, or the coordinator refuses this agent (revoked,
/// another protocol version): that is returned as an error.
pub fn run(dir: &Path, stop: &AtomicBool) -> Result<()> {
    let id = Identity::load(dir)?;
    let tasks = dir.join("tasks");
    private_file::create_dir(&tasks)?;
    let mut running: HashMap<i64, Running> = HashMap::new();
    let mut backoff = Duration::from_millis(500);
    tracing::info!(coordinator = %id.url, "agent started");
    while !stop.load(Ordering::Relaxed) {
        match round(&id, &tasks, &mut running) {
            Ok(()) => backoff = Duration::from_millis(500),
            Err(AgentError::Unreachable { url, cause }) => {
                tracing::warn!(%url, %cause, retry_in = ?backoff, "coordinator unreachable");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            // The coordinator's own trouble (a full disk, a restart): try again.
            Err(AgentError::Refused { status, message }) if status >= 500 => {
                tracing::warn!(status, %message, retry_in = ?backoff, "coordinator error");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn round(id: &Identity, tasks: &Path, running: &mut HashMap<i64, Running>) -> Result<()> {
    running.retain(|_, r| !r.handle.is_finished());
    flush_results(id, tasks)?;
    for (task, r) in running.iter() {
        let (done, total) = (r.meter.done.load(Ordering::Relaxed), r.meter.total.load(Ordering::Relaxed));
        let report = Report::Progress { done, total };
        let _: Option<serde_json::Value> =
            id.post("/v1/agent/report", &ReportRequest { version: PROTOCOL_VERSION, task: *task, report })?;
    }
    let wait = if running.is_empty() { IDLE_WAIT } else { BUSY_WAIT };
    let held: Vec<i64> = running.keys().copied().collect();
    let req = PollRequest { version: PROTOCOL_VERSION, held: held.first().copied(), wait_ms: wait.as_millis() as u64 };
    let reply: PollReply = id.post("/v1/agent/poll", &req)?.unwrap_or(PollReply { tasks: vec![] });
    let open: Vec<i64> = reply.tasks.iter().map(|t| t.id).collect();
    for task in reply.tasks {
        if running.contains_key(&task.id) || result_path(tasks, task.id).exists() {
            continue;
        }
        start(tasks, task, running)?;
    }
    forget_stale(tasks, &open, running);
    if !running.is_empty() && open.iter().all(|t| running.contains_key(t)) {
        // The coordinator answers at once while tasks are open: pace the rounds.
        std::thread::sleep(BUSY_WAIT);
    }
    Ok(())
}

fn start(tasks: &Path, task: Task, running: &mut HashMap<i64, Running>) -> Result<()> {
    let spec = serde_json::to_vec(&task.spec).map_err(|e| AgentError::Invalid(e.to_string()))?;
    // Persisted before acting: the spec only, never the passphrase.
    private_file::write(&spec_path(tasks, task.id), &spec)?;
    tracing::info!(task = task.id, kind = task.spec.kind(), system = task.spec.system(), "task started");
    let meter = Arc::new(Meter::default());
    let m = meter.clone();
    let dir = tasks.to_path_buf();
    let id = task.id;
    let handle = std::thread::Builder::new()
        .name(format!("task-{id}"))
        .spawn(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(&task, &m)))
                .unwrap_or_else(|_| Err("internal error (panic) in the agent".into()));
            let report = match out {
                Ok(result) => Report::Done { result },
                Err(error) => Report::Failed { error },
            };
            tracing::info!(task = id, ok = matches!(report, Report::Done { .. }), "task ended");
            let body = serde_json::to_vec(&report).unwrap_or_default();
            if let Err(e) = private_file::write(&result_path(&dir, id), &body) {
                tracing::error!(task = id, error = %e, "could not keep the result");
            }
        })
        .map_err(|e| AgentError::io(tasks, e))?;
    running.insert(id, Running { meter, handle });
    Ok(())
}

/// Sends every kept result; removes it once the coordinator has it.
fn flush_results(id: &Identity, tasks: &Path) -> Result<()> {
    let entries = std::fs::read_dir(tasks).map_err(|e| AgentError::io(tasks, e))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(task) = name.strip_suffix(".result.json").and_then(|n| n.parse::<i64>().ok()) else { continue };
        let path = e.path();
        let text = std::fs::read(&path).map_err(|e| AgentError::io(&path, e))?;
        let Ok(report) = serde_json::from_slice::<Report>(&text) else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        match id.post::<_, serde_json::Value>(
            "/v1/agent/report",
            &ReportRequest { version: PROTOCOL_VERSION, task, report },
        ) {
            Ok(_) | Err(AgentError::Refused { status: 404, .. }) => {
                let _ = std::fs::remove_file(spec_path(tasks, task));
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A held spec whose task the coordinator no longer lists (done or cancelled) is dropped.
fn forget_stale(tasks: &Path, open: &[i64], running: &HashMap<i64, Running>) {
    let Ok(entries) = std::fs::read_dir(tasks) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(task) = name.strip_suffix(".json").and_then(|n| n.parse::<i64>().ok()) else { continue };
        if !open.contains(&task) && !running.contains_key(&task) && !result_path(tasks, task).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
