//! One thread per running system: pre hooks, the restore, verify and post hooks.
//! A worker never touches the state database; it sends each change to the engine
//! thread and waits for the commit (`Worker::commit`), so that every phase is
//! stored before it is acted on.

use super::*;

/// Why a system failed. Its text is what the run records as the system's error
/// (and the timeline shows), so the wording is part of the record.
#[derive(Debug, thiserror::Error)]
pub enum SystemFailure {
    #[error("the engine stopped")]
    EngineStopped,
    #[error("the engine stopped before recording the change")]
    NotRecorded,
    #[error("{stage} hook `{command}` failed ({why}, {attempts} attempt{}){}",
        if *.attempts == 1 { "" } else { "s" },
        if .output.is_empty() { String::new() } else { format!(": {}", .output) })]
    Hook { stage: HookStage, command: String, why: String, attempts: u32, output: String },
    #[error("no snapshot was chosen for this system")]
    NoSnapshot,
    #[error("no target recorded")]
    NoTarget,
    /// The store's error is part of the message, deliberately not a `#[source]`.
    #[error("snapshot {snapshot}: {cause}")]
    Snapshot { snapshot: String, cause: kura_store::Error },
    #[error("restore: {0}")]
    Restore(kura_store::Error),
    #[error(
        "restore: {count} file(s) not restored, their data is damaged in the repository, e.g. {path} \
         (blob {blob} in pack {pack}: {reason})"
    )]
    Damaged { count: usize, path: String, blob: String, pack: String, reason: String },
    #[error("{count} restored file(s) do not match the snapshot, e.g. {first}")]
    Mismatch { count: usize, first: String },
    #[error(
        "the restored files match indicators of compromise ({count} hit(s), e.g. {first}): \
         the system is not promoted (no verify or post hooks); `kura clean-point` finds an earlier snapshot"
    )]
    Infected { count: usize, first: String },
    #[error("scanning the restored files: {0}")]
    Scan(String),
    #[error("internal error (panic): {0}")]
    Panic(String),
    /// A system on an agent host: what the agent or the dispatch said.
    #[error("{0}")]
    Remote(String),
}

type Outcome = std::result::Result<(), SystemFailure>;

/// What a worker tells the engine thread. Messages carrying an `ack` are state
/// changes: the worker waits until the engine has committed them.
pub(super) enum Msg {
    Phase(usize, Phase, Sender<()>),
    Hooks(usize, Vec<HookOutcome>, Sender<()>),
    Restored {
        i: usize,
        figures: Restored,
        verify: VerifyRecord,
        ack: Sender<()>,
    },
    /// Secure restore moved files with a hit to the quarantine (`on_scan_hit`).
    Quarantined(usize, crate::detect::quarantine::Quarantined, Sender<()>),
    /// The restore planned its work: bytes it will write (the pace's total), and when.
    Total(usize, u64, DateTime<Utc>),
    Progress(usize, u64),
    Finished(usize, Outcome),
}

/// Sends restore progress to the engine thread.
struct ChannelProgress {
    i: usize,
    tx: Sender<Msg>,
    clock: Arc<dyn Clock>,
    done: std::sync::atomic::AtomicU64,
}

impl Progress for ChannelProgress {
    fn set_total(&self, total: u64) {
        self.done.store(0, std::sync::atomic::Ordering::Relaxed);
        let _ = self.tx.send(Msg::Total(self.i, total, self.clock.now()));
    }
    fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        let _ = self.tx.send(Msg::Progress(self.i, done));
    }
}

struct Worker {
    i: usize,
    tx: Sender<Msg>,
}

impl Worker {
    /// Sends a state change and waits until the engine has committed it.
    fn commit(&self, make: impl FnOnce(Sender<()>) -> Msg) -> Outcome {
        let (ack_tx, ack_rx): (Sender<()>, Receiver<()>) = bounded(1);
        self.tx.send(make(ack_tx)).map_err(|_| SystemFailure::EngineStopped)?;
        ack_rx.recv().map_err(|_| SystemFailure::NotRecorded)
    }
    fn phase(&self, p: Phase) -> Outcome {
        let i = self.i;
        self.commit(|ack| Msg::Phase(i, p, ack))
    }
    fn hooks(&self, h: &[HookOutcome]) -> Outcome {
        let i = self.i;
        let h = h.to_vec();
        self.commit(|ack| Msg::Hooks(i, h, ack))
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn spawn_worker(
    state: &State,
    engine: &Engine,
    plan: &Plan,
    run: &crate::state::recovery::RunRecord,
    i: usize,
    from: Phase,
    rec: SystemRecord,
    drill: bool,
    tx: Sender<Msg>,
) -> Result<std::thread::JoinHandle<()>> {
    let mut sys = plan.systems[i].clone();
    if rec.failover {
        crate::standby::add_standby_hooks(&mut sys);
    }
    let hook_env = plan.hook_env.clone();
    let repo = engine.repo.clone();
    // A system on an agent host runs its hooks and its restore there.
    let remote = engine.fleet.as_ref().and_then(|f| f.placement_of(&sys, &run.options.on, rec.failover));
    if engine.fleet.is_some() {
        // Recorded before it starts there: status and the report name the host.
        state.set_ran_on(run.id, &sys.name, remote.as_ref().map(|p| p.run_on.as_str()))?;
    }
    let runner: Arc<dyn HookRunner> = match &remote {
        Some(p) => Arc::new(super::executor::RemoteHooks {
            fleet: p.fleet.clone(),
            host: p.run_on.clone(),
            system: sys.name.clone(),
            run: Some(run.id),
        }),
        None => engine.runner.clone(),
    };
    let threads = engine.restore_threads;
    let clock = engine.clock.clone();
    let run_id = run.id;
    let incident = run.incident;
    Ok(std::thread::Builder::new()
        .name(format!("recover-{}", sys.name))
        .spawn(move || {
            let w = Worker { i, tx: tx.clone() };
            let ctx = SystemJob {
                sys: &sys,
                rec: &rec,
                repo: &repo,
                runner: runner.as_ref(),
                hook_env: &hook_env,
                drill,
                run_id,
                incident,
                threads,
                clock,
                remote: remote.as_ref(),
            };
            // `[fleet] per_host_parallel`: wait for a slot of the host it runs on.
            let _slot = remote.as_ref().and_then(|p| p.fleet.slots.acquire(&p.run_on));
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.run(&w, from))).unwrap_or_else(|p| {
                    let msg =
                        p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    Err(SystemFailure::Panic(msg.unwrap_or_default()))
                });
            let _ = tx.send(Msg::Finished(i, result));
        })
        .expect("spawning a recovery thread"))
}

struct SystemJob<'a> {
    sys: &'a PlanSystem,
    rec: &'a SystemRecord,
    repo: &'a Arc<Repository>,
    runner: &'a dyn HookRunner,
    /// The plan's `hook_env`: names passed on from kura's environment.
    hook_env: &'a [String],
    drill: bool,
    run_id: i64,
    incident: Option<i64>,
    threads: Option<usize>,
    clock: Arc<dyn Clock>,
    remote: Option<&'a super::executor::Placement>,
}

impl SystemJob<'_> {
    fn env(&self, stage: HookStage) -> Vec<(String, String)> {
        let mut env = vec![
            ("KURA_SYSTEM".to_string(), self.sys.name.clone()),
            ("KURA_PRIORITY".to_string(), self.sys.priority.to_string()),
            ("KURA_TARGET".to_string(), self.rec.target.clone().unwrap_or_default()),
            ("KURA_SNAPSHOT".to_string(), self.rec.snapshot.clone().unwrap_or_default()),
            ("KURA_DRILL".to_string(), if self.drill { "1" } else { "0" }.to_string()),
            ("KURA_RUN".to_string(), self.run_id.to_string()),
            ("KURA_PHASE".to_string(), stage.to_string()),
        ];
        if let Some(inc) = self.incident {
            env.push(("KURA_INCIDENT".to_string(), inc.to_string()));
        }
        if self.rec.failover {
            env.push(("KURA_STANDBY".to_string(), self.rec.target.clone().unwrap_or_default()));
        }
        env.extend(hooks::allowed_env(self.hook_env));
        env
    }

    fn hooks_stage(&self, w: &Worker, stage: HookStage, list: &[Hook], done: &mut Vec<HookOutcome>) -> Outcome {
        for hook in list {
            if self.drill && !hook.drill {
                done.push(HookOutcome {
                    stage,
                    command: hook.command.clone(),
                    ok: true,
                    attempts: 0,
                    exit_code: None,
                    timed_out: false,
                    duration_ms: 0,
                    output: "not run: not marked safe for drills (drill = false)".into(),
                    skipped: true,
                });
                w.hooks(done)?;
                continue;
            }
            let o = run_with_retries(self.runner, stage, hook, &self.env(stage));
            let ok = o.ok;
            let why = if o.timed_out {
                format!("timed out after {:?}", hook.timeout)
            } else {
                format!("exit code {}", o.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()))
            };
            let attempts = o.attempts;
            let output = o.output.lines().last().unwrap_or("").to_string();
            done.push(o);
            w.hooks(done)?;
            if !ok {
                return Err(SystemFailure::Hook { stage, command: hook.command.clone(), why, attempts, output });
            }
        }
        Ok(())
    }

    fn run(&self, w: &Worker, from: Phase) -> Outcome {
        let mut done: Vec<HookOutcome> = self.rec.hooks.clone();
        if from <= Phase::Pre {
            done.retain(|h| h.stage != HookStage::Pre);
            self.hooks_stage(w, HookStage::Pre, &self.sys.hooks.pre, &mut done)?;
            w.phase(Phase::Restoring)?;
        }
        if from <= Phase::Restoring {
            self.restore(w)?;
            self.scan_restored(w)?;
            w.phase(Phase::Verifying)?;
        }
        if from <= Phase::Verifying {
            done.retain(|h| h.stage == HookStage::Pre);
            self.hooks_stage(w, HookStage::Verify, &self.sys.hooks.verify, &mut done)?;
            w.phase(Phase::Post)?;
        }
        done.retain(|h| h.stage != HookStage::Post);
        self.hooks_stage(w, HookStage::Post, &self.sys.hooks.post, &mut done)?;
        Ok(())
    }

    /// The plan's `scan`: the restored files against its indicators; a hit stops the
    /// system before it is promoted, or (`on_scan_hit = "quarantine"`) its files
    /// move to the quarantine beside the target, recorded, and the system goes on.
    fn scan_restored(&self, w: &Worker) -> Outcome {
        let Some(step) = &self.sys.scan else { return Ok(()) };
        if let Some(p) = self.remote {
            // The scan reads the target on this machine; the files are on the agent's host.
            return Err(SystemFailure::Scan(format!(
                "the plan's scan reads restored files on the coordinator, and {} was restored on host {}: \
                 scanning on an agent host is not supported yet; leave `scan` out for this system",
                self.sys.name, p.run_on
            )));
        }
        let scan_err = |e: crate::error::Error| SystemFailure::Scan(e.to_string());
        let ind = crate::detect::indicators::Indicators::load(&step.indicators).map_err(scan_err)?;
        let target = PathBuf::from(self.rec.target.clone().ok_or(SystemFailure::NoTarget)?);
        let hits = crate::detect::scan::scan_dir(&target, &ind).map_err(scan_err)?;
        let Some(h) = hits.first() else { return Ok(()) };
        if step.on_hit == crate::plan::OnScanHit::Stop {
            return Err(SystemFailure::Infected {
                count: hits.len(),
                first: format!("{} matches {} ({})", h.path, h.indicator, h.by),
            });
        }
        let q = crate::detect::quarantine::quarantine(&target, &hits, self.clock.now()).map_err(scan_err)?;
        let i = w.i;
        w.commit(|ack| Msg::Quarantined(i, q, ack))
    }

    fn restore(&self, w: &Worker) -> Outcome {
        if let Some(p) = self.remote {
            return self.restore_on(w, p);
        }
        let snap_hex = self.rec.snapshot.clone().ok_or(SystemFailure::NoSnapshot)?;
        let (id, snap) = self
            .repo
            .find_snapshot(&snap_hex)
            .map_err(|cause| SystemFailure::Snapshot { snapshot: snap_hex.clone(), cause })?;
        let subpath = self.sys.subpath.clone().or_else(|| (snap.paths.len() == 1).then(|| snap.paths[0].clone()));
        let target = PathBuf::from(self.rec.target.clone().ok_or(SystemFailure::NoTarget)?);
        let opts = RestoreOptions {
            target,
            subpath,
            includes: vec![],
            verify: true,
            threads: self.threads,
            reuse_existing: false,
        };
        let progress =
            ChannelProgress { i: w.i, tx: w.tx.clone(), clock: self.clock.clone(), done: Default::default() };
        let started = Instant::now();
        let sum = if self.rec.failover {
            // The standby is brought to the snapshot by difference, then promoted.
            let sync =
                kura_store::sync::SyncOptions { target: opts.target, subpath: opts.subpath, threads: opts.threads };
            kura_store::sync::apply(self.repo, &id, &snap, &sync, &progress).map(|s| s.restore)
        } else {
            kura_store::restore::run(self.repo, &id, &snap, &opts, &progress)
        }
        .map_err(SystemFailure::Restore)?;
        let ms = started.elapsed().as_millis() as u64;
        let failures = sum.verify_failures.len();
        let verify = VerifyRecord {
            ok: failures == 0,
            files_verified: sum.files_verified,
            failures: sum.verify_failures.iter().take(20).cloned().collect(),
            quarantine: None,
        };
        let i = w.i;
        let figures = Restored {
            bytes: sum.bytes_written,
            files: sum.files_restored + sum.files_skipped,
            dirs: sum.dirs,
            objects: sum.packs_read,
            restore_ms: ms,
        };
        w.commit(|ack| Msg::Restored { i, figures, verify, ack })?;
        if let Some(d) = sum.damaged.first() {
            return Err(SystemFailure::Damaged {
                count: sum.damaged.len(),
                path: d.snapshot_path.to_string(),
                blob: d.blob.to_string(),
                pack: d.pack.to_string(),
                reason: d.reason.to_string(),
            });
        }
        if failures > 0 {
            return Err(SystemFailure::Mismatch { count: failures, first: sum.verify_failures[0].clone() });
        }
        Ok(())
    }
}

impl SystemJob<'_> {
    /// The restore as a task for the system's agent host, from that host's repository.
    fn restore_on(&self, w: &Worker, p: &super::executor::Placement) -> Outcome {
        if self.rec.failover {
            return self.apply_on(w, p);
        }
        let (host, fleet) = (p.run_on.as_str(), &p.fleet);
        let snapshot = self.rec.snapshot.clone().ok_or(SystemFailure::NoSnapshot)?;
        let target = self.rec.target.clone().ok_or(SystemFailure::NoTarget)?;
        let spec = kura_fleet::proto::TaskSpec::Restore {
            system: self.sys.name.clone(),
            snapshot,
            target,
            subpath: self.sys.subpath.clone(),
            repository: p.repository.clone(),
            run: Some(self.run_id),
        };
        let progress =
            ChannelProgress { i: w.i, tx: w.tx.clone(), clock: self.clock.clone(), done: Default::default() };
        let value = fleet.dispatch.run(host, &spec, &progress).map_err(|e| SystemFailure::Remote(e.to_string()))?;
        let r: kura_fleet::proto::RestoreResult = serde_json::from_value(value)
            .map_err(|e| SystemFailure::Remote(format!("unreadable restore result from {host}: {e}")))?;
        let verify = VerifyRecord {
            ok: r.verify_failures.is_empty(),
            files_verified: r.files_verified,
            failures: r.verify_failures.clone(),
            quarantine: None,
        };
        let figures = Restored {
            bytes: r.bytes_written,
            files: r.files,
            dirs: r.dirs,
            objects: r.packs_read,
            restore_ms: r.restore_ms,
        };
        let i = w.i;
        w.commit(|ack| Msg::Restored { i, figures, verify, ack })?;
        if let Some((count, path)) = r.damaged {
            return Err(SystemFailure::Remote(format!(
                "restore on {host}: {count} file(s) not restored, their data is damaged in the repository, e.g. {path}"
            )));
        }
        if let Some(first) = r.verify_failures.first() {
            return Err(SystemFailure::Mismatch { count: r.verify_failures.len(), first: first.clone() });
        }
        Ok(())
    }

    /// A failover to a standby on an agent host: the standby brought to the
    /// snapshot by difference there, trusted only as far as the agent reports it holds it.
    fn apply_on(&self, w: &Worker, p: &super::executor::Placement) -> Outcome {
        let (host, fleet) = (p.run_on.as_str(), &p.fleet);
        let snapshot = self.rec.snapshot.clone().ok_or(SystemFailure::NoSnapshot)?;
        let spec = kura_fleet::proto::TaskSpec::StandbyApply {
            system: self.sys.name.clone(),
            snapshot: snapshot.clone(),
            path: self.rec.target.clone().ok_or(SystemFailure::NoTarget)?,
            subpath: self.sys.subpath.clone(),
            repository: p.repository.clone(),
            copy_from: None,
            run: Some(self.run_id),
        };
        let progress =
            ChannelProgress { i: w.i, tx: w.tx.clone(), clock: self.clock.clone(), done: Default::default() };
        let value = fleet.dispatch.run(host, &spec, &progress).map_err(|e| SystemFailure::Remote(e.to_string()))?;
        let r: kura_fleet::proto::StandbyResult = serde_json::from_value(value)
            .map_err(|e| SystemFailure::Remote(format!("unreadable standby result from {host}: {e}")))?;
        if r.holds.as_deref() != Some(snapshot.as_str()) {
            return Err(SystemFailure::Remote(format!("the standby on {host} reports holding {:?}", r.holds)));
        }
        let figures = Restored {
            bytes: r.bytes_written,
            files: r.files_unchanged + r.files_written,
            dirs: 0,
            objects: 0,
            restore_ms: r.duration_ms,
        };
        let verify = VerifyRecord { ok: true, files_verified: 0, failures: vec![], quarantine: None };
        let i = w.i;
        w.commit(|ack| Msg::Restored { i, figures, verify, ack })
    }
}
