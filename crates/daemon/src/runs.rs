//! Starting, tracking and finishing job runs, and the per-repository gate that lets
//! prune run alone.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use crate::daemon::{Active, Daemon};
use crate::error::{DaemonError, Result};
use crate::jobs::{Access, JobKind, JobProgress, JobSpec, RunOutput, RunRequest};
use kura_recovery::notify::{Event, EventKind};
use kura_recovery::schedule::Trigger;
use kura_recovery::state::jobs::{JobRun, Outcome, RunEnd};

/// Told the run's id once it got past the gate and was recorded (or why not).
pub type StartedTx = oneshot::Sender<Result<i64>>;
/// Gets the run once it ended (or why it never started).
pub type DoneRx = oneshot::Receiver<Result<JobRun>>;

/// What a run needs besides its job: why it runs, for which slot, its detail so far.
struct Launch {
    spec: JobSpec,
    trigger: Trigger,
    slot: Option<DateTime<Utc>>,
    detail: serde_json::Value,
}

impl Daemon {
    /// Starts a run of `spec` unless one is running or queued.
    pub fn dispatch(
        self: &Arc<Self>,
        spec: JobSpec,
        trigger: Trigger,
        slot: Option<DateTime<Utc>>,
        detail: serde_json::Value,
        started: Option<StartedTx>,
    ) -> Result<DoneRx> {
        if self.is_stopping() {
            return Err(DaemonError::ShuttingDown);
        }
        let queued_at = self.clock.now();
        self.with_book(|b| {
            if let Some(a) = b.active.get(&spec.key) {
                return Err(match a.run {
                    Some(run) => DaemonError::AlreadyRunning { job: spec.key.clone(), run },
                    None => DaemonError::AlreadyQueued { job: spec.key.clone() },
                });
            }
            let progress = Arc::new(JobProgress::default());
            let active = Active { spec: spec.clone(), trigger, run: None, queued_at, started_at: None, progress };
            b.active.insert(spec.key.clone(), active);
            Ok(())
        })?;
        let (tx, rx) = oneshot::channel();
        let me = self.clone();
        tokio::spawn(async move {
            let key = spec.key.clone();
            let res = me.run_job(Launch { spec, trigger, slot, detail }, started).await;
            me.with_book(|b| b.active.remove(&key));
            me.wake.notify_waiters();
            let _ = tx.send(res);
        });
        Ok(rx)
    }

    async fn run_job(self: &Arc<Self>, mut l: Launch, started: Option<StartedTx>) -> Result<JobRun> {
        let location = self.config().repository.location.to_string();
        let gate = self.with_book(|b| b.gate(&location));
        // Held until the run ends: shared for most jobs, exclusive for prune; backups
        // pass freely (they run beside prune).
        let _held = tokio::select! {
            g = async {
                match l.spec.kind.access() {
                    Access::Free => (None, None),
                    Access::Shared => (Some(gate.read_owned().await), None),
                    Access::Exclusive => (None, Some(gate.write_owned().await)),
                }
            } => g,
            _ = self.stopping() => return Err(tell(started, DaemonError::StoppedBeforeStart)),
        };
        // The config may have been reloaded while waiting.
        let cfg = self.config();
        // The part itself is decided by the executor, from the repository's rotation.
        let check_parts = match (l.spec.kind, &cfg.jobs.check) {
            (JobKind::Check, Some(c)) => Some(c.read_data_subset),
            _ => None,
        };
        let now = self.clock.now();
        let (kind, system) = (l.spec.kind, l.spec.system.clone());
        let trigger = l.trigger;
        let id = match self.db.query(move |st| st.start_run(kind, system.as_deref(), trigger, now)).await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(job = %l.spec.key, error = %e, "cannot record the run; not starting it");
                return Err(tell(started, e));
            }
        };
        let progress = self.with_book(|b| {
            let a = b.active.get_mut(&l.spec.key).expect("dispatched jobs are active");
            a.run = Some(id);
            a.started_at = Some(now);
            a.progress.clone()
        });
        if let Some(s) = started {
            let _ = s.send(Ok(id));
        }
        tracing::info!(job = %l.spec.key, run = id, trigger = l.trigger.as_str(), "job started");
        let exec = self.executor.clone();
        let req = RunRequest { spec: l.spec.clone(), check_parts };
        let cfg2 = cfg.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let _span = tracing::info_span!("job", job = %req.spec.key, run = id).entered();
            exec.execute(&cfg2, &req, &progress)
        })
        .await;
        let end = run_end(joined, l.detail.take());
        self.finish(&cfg, &l, id, now, end).await
    }

    /// Records the end (and the slot as done) and, for a failure, its event in the
    /// outbox, in the same transaction; logs it.
    async fn finish(
        &self,
        cfg: &kura_recovery::config::Config,
        l: &Launch,
        id: i64,
        started: DateTime<Utc>,
        end: RunEnd,
    ) -> Result<JobRun> {
        let ended = self.clock.now();
        let event = (end.outcome == Outcome::Failed).then(|| failed_event(cfg, l, id, &end, ended));
        let (slot, key, rec) = (l.slot, l.spec.key.clone(), end.clone());
        let (run, queued) = self
            .db
            .call(move |st| {
                // The run's end and its event are one transaction: a failure is never
                // recorded without its notification, nor notified without being recorded.
                let queued = match st.finish_run_with_event(id, ended, &rec, event.as_ref()) {
                    Ok(q) => q,
                    Err(e) => {
                        tracing::error!(error = %e, "recording the end of a run");
                        None
                    }
                };
                if let Some(slot) = slot {
                    if let Err(e) = st.set_schedule_state(&key, slot, Some(started)) {
                        tracing::error!(error = %e, "saving schedule state");
                    }
                }
                (st.run(id).ok().flatten(), queued)
            })
            .await?;
        if queued.is_some() {
            self.wake.notify_waiters();
        }
        match end.outcome {
            Outcome::Failed => {
                let err = end.error.clone().unwrap_or_default();
                tracing::error!(job = %l.spec.key, run = id, error = %err, "job failed");
            }
            o => tracing::info!(job = %l.spec.key, run = id, outcome = o.as_str(), bytes = end.bytes, "job ended"),
        }
        run.ok_or(DaemonError::RunMissing(id))
    }

    /// Waits until nothing runs, up to `timeout`; then records what still runs as
    /// interrupted. Returns how many were interrupted.
    pub async fn drain(&self, timeout: StdDuration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.active_count() == 0 {
                return 0;
            }
            let notified = self.wake.notified();
            if self.active_count() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let ids = self.running_ids();
        let now = self.clock.now();
        let why = format!("the daemon stopped; the run did not end within {} s", timeout.as_secs());
        let marked = self.db.query(move |st| st.mark_interrupted(now, &why, Some(&ids))).await;
        let n = marked.map_err(|e| tracing::error!(error = %e, "marking runs interrupted")).unwrap_or(0);
        tracing::warn!(runs = n, "stopped with runs still going: recorded as interrupted");
        n
    }
}

/// The `job_failed` event of a run, for the outbox: one per run (its key holds the run id).
fn failed_event(
    cfg: &kura_recovery::config::Config,
    l: &Launch,
    id: i64,
    end: &RunEnd,
    ended: DateTime<Utc>,
) -> kura_recovery::notify::Outgoing {
    let err = end.error.clone().unwrap_or_default();
    let mut ev = Event::new(EventKind::JobFailed, ended, format!("{} failed: {err}", l.spec.key));
    ev.job = Some(l.spec.kind.as_str().to_string());
    ev.system = l.spec.system.clone();
    ev.priority = l.spec.system.as_deref().and_then(|s| cfg.system(s)).map(|s| s.priority.get());
    ev.run = Some(id);
    ev.error = Some(err);
    crate::outbox::outgoing(cfg, ev, format!("job_failed:{}:{id}", l.spec.key))
}

/// Sends `e` to whoever waits for the start, and returns it for whoever waits for the end.
fn tell(started: Option<StartedTx>, e: DaemonError) -> DaemonError {
    if let Some(s) = started {
        let _ = s.send(Err(e.clone()));
    }
    e
}

/// How a run ended, from what its blocking thread returned (or how it died).
fn run_end(
    joined: std::result::Result<kura_recovery::error::Result<RunOutput>, tokio::task::JoinError>,
    mut detail: serde_json::Value,
) -> RunEnd {
    let failed = |msg: String, detail| RunEnd {
        outcome: Outcome::Failed,
        bytes: None,
        snapshot: None,
        error: Some(msg),
        detail: Some(detail),
    };
    match joined {
        Ok(Ok(out)) => {
            if let (Some(obj), serde_json::Value::Object(extra)) = (detail.as_object_mut(), out.detail) {
                obj.extend(extra);
            }
            RunEnd {
                outcome: out.outcome.unwrap_or(Outcome::Ok),
                bytes: out.bytes,
                snapshot: out.snapshot,
                error: out.error,
                detail: Some(detail),
            }
        }
        Ok(Err(e)) => failed(e.to_string(), detail),
        Err(je) if je.is_panic() => {
            let p = je.into_panic();
            let text = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            failed(format!("the job panicked: {text}"), detail)
        }
        Err(_) => failed("the job was cancelled".to_string(), detail),
    }
}
