//! `kura recover`: restore an incident's systems in priority order, and
//! `kura recover status`: where each system stands against its deadline.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;

use super::incident::local;
use super::{output, Ctx};
use kura::config::Config;
use kura::human::human_secs;
use kura::orchestrate::deadline::{self, Alert, Verdict};
use kura::orchestrate::queue::Phase;
use kura::orchestrate::{self, gate, Engine, Observer};
use kura::plan::Plan;
use kura::repo::Repository;
use kura::state::recovery::{RunKind, RunRecord, RunStatus, Site, SystemRecord};
use kura::state::State;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    sub: Option<Sub>,
    /// The incident whose systems are restored (its cause must be resolved)
    #[arg(long, required = true)]
    incident: Option<i64>,
    #[command(flatten)]
    pub common: PlanArgs,
    /// Restore before the cause is resolved (needs --reason; recorded on the timeline)
    #[arg(long, requires = "reason")]
    force: bool,
    /// Why the gate is overridden
    #[arg(long)]
    reason: Option<String>,
    /// Restore SYSTEM on agent HOST instead of its own host (repeatable; with [fleet])
    #[arg(long = "on", value_name = "SYSTEM=HOST")]
    on: Vec<String>,
}

/// `--on SYSTEM=HOST` pairs, checked against the plan and the config.
fn placements(on: &[String], plan: &Plan, config: &Config) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for item in on {
        let Some((sys, host)) = item.split_once('=') else {
            anyhow::bail!("--on {item:?}: write SYSTEM=HOST, e.g. --on db=db2");
        };
        if !plan.systems.iter().any(|s| s.name == sys) {
            anyhow::bail!("--on {item:?}: the plan {} restores no system {sys:?}", plan.path.display());
        }
        if config.fleet.is_none() {
            anyhow::bail!(
                "--on {item:?}: the config {} has no [fleet], so there are no agent hosts",
                config.path.display()
            );
        }
        if !kura::config::valid_system_name(host) {
            anyhow::bail!("--on {item:?}: {host:?} is not a valid host name");
        }
        out.insert(sys.to_string(), host.to_string());
    }
    Ok(out)
}

/// Options shared by `recover`, `drill run` and `plan forecast`.
#[derive(clap::Args)]
pub struct PlanArgs {
    /// The restoration plan (TOML)
    #[arg(long, required = true)]
    pub plan: Option<PathBuf>,
    /// The config declaring the systems [default: the plan's `config`, ./kura.toml, /etc/kura/kura.toml]
    #[arg(long, env = "KURA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Restore from the local repository or the remote site [default: local for recover, remote for drills when configured]
    #[arg(long, value_parser = site_parser())]
    pub from: Option<Site>,
    /// Systems restored at the same time
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
}

#[derive(Subcommand)]
enum Sub {
    /// Each system's state, deadline and time left in the latest (or given) recovery
    Status {
        #[arg(long)]
        incident: Option<i64>,
        /// A specific run id (recovery or drill)
        #[arg(long)]
        run: Option<i64>,
    },
}

impl Args {
    /// `recover status`: reads only (a remote viewer may ask it).
    pub fn is_status(&self) -> bool {
        matches!(self.sub, Some(Sub::Status { .. }))
    }
}

pub struct Loaded {
    pub config: Config,
    pub plan: Plan,
}

/// The config a plan command uses (for the state push), if it can be told.
pub fn config_path(a: &PlanArgs) -> Option<PathBuf> {
    a.plan.as_deref().map(|p| kura::plan::resolve_config(p, a.config.as_deref()))
}

/// Reads the config and the plan; every problem is reported with file and line.
pub fn load_plan(a: &PlanArgs) -> Result<Loaded> {
    let plan_path = a.plan.as_deref().ok_or_else(|| anyhow!("--plan FILE is required"))?;
    if !plan_path.is_file() {
        bail!("the plan {} does not exist or is not a file (plans usually live under plans/)", plan_path.display());
    }
    let config_path = kura::plan::resolve_config(plan_path, a.config.as_deref());
    let config = kura::config::load(&config_path)
        .map_err(|p| anyhow!("the config {} is not valid; nothing was changed:\n{p}", config_path.display()))?;
    let (plan, warnings) = kura::plan::load(plan_path, Some(&config))
        .map_err(|p| anyhow!("the plan {} is not valid; nothing was changed:\n{p}", plan_path.display()))?;
    for w in warnings {
        eprintln!("{w}");
    }
    Ok(Loaded { config, plan })
}

/// Opens the local repository or the remote site named in the config (`--repo`
/// overrides the local one).
/// `local` or `remote`, parsed into a [`Site`] (and listed as such in `--help`).
pub fn site_parser() -> impl clap::builder::TypedValueParser<Value = Site> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["local", "remote"]).try_map(|s| s.parse::<Site>())
}

pub fn open_repo(ctx: &Ctx, config: &Config, from: Site) -> Result<(Arc<Repository>, String)> {
    let spec = match from {
        Site::Remote => config.remote.as_ref().ok_or_else(|| {
            anyhow!("{}: no [remote] site is configured; use --from local or add one", config.path.display())
        })?,
        Site::Local => &config.repository,
    };
    let location = match (from, ctx.repo_location()) {
        (Site::Local, Some(r)) => kura::backend::Location::parse(&r)?,
        _ => spec.location.clone(),
    };
    let repo = ctx.open_at(&location, Some(&spec.password_file))?;
    Ok((repo, location.to_string()))
}

/// Only one recovery or drill at a time per state database (the library's rule).
pub fn exclusive(state: &State) -> Result<kura::orchestrate::runlock::RunLock> {
    Ok(kura::orchestrate::runlock::RunLock::acquire(state.path())?)
}

/// Prints progress lines as systems move on, and sends deadline alerts to the
/// config's notifications (webhook and/or command).
pub struct Printer {
    pub json: bool,
    pub notify: kura::config::Notify,
    pub run: i64,
    /// The state database: alerts go through its outbox.
    pub state: PathBuf,
}

impl Observer for Printer {
    fn phase(&self, system: &str, phase: Phase) {
        if !self.json {
            println!("{}  {system}: {}", local(Utc::now()), phase_text(phase));
        }
    }
    fn finished(&self, r: &SystemRecord) {
        if self.json {
            return;
        }
        let verdict = match (r.verdict, r.margin_secs) {
            (Some(Verdict::Met), Some(m)) => format!(", deadline met ({} to spare)", human_secs(m)),
            (Some(Verdict::Missed), Some(m)) => format!(", deadline MISSED by {}", human_secs(-m)),
            (Some(Verdict::NoDeadline), _) => ", no deadline".to_string(),
            _ => String::new(),
        };
        let err = r.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
        println!("{}  {}: {}{verdict}{err}", local(Utc::now()), r.name, r.state);
    }
    fn quarantined(&self, system: &str, q: &kura::detect::quarantine::Quarantined) {
        if !self.json {
            println!("{}  {system}: {}", local(Utc::now()), q.summary());
        }
    }
    fn alert(&self, system: &str, alert: Alert, detail: &str) {
        let level = match alert {
            Alert::AtRisk => "AT RISK",
            Alert::Breach => "DEADLINE BREACH",
        };
        eprintln!("{level}: {system}: {detail}");
        let kind = match alert {
            Alert::AtRisk => kura::notify::EventKind::DeadlineAtRisk,
            Alert::Breach => kura::notify::EventKind::DeadlineBreach,
        };
        let mut ev = kura::notify::Event::new(kind, Utc::now(), format!("{system}: {detail}"));
        ev.system = Some(system.to_string());
        ev.run = Some(self.run);
        let key = format!("{}:{}:{system}", kind.as_str(), self.run);
        let o = kura::notify::Outgoing {
            event: ev,
            key,
            channels: kura::notify::channels(&self.notify),
            repeat_after: self.notify.repeat_after,
        };
        if o.channels.is_empty() {
            return;
        }
        let sent = kura::state::State::open(&self.state)
            .and_then(|mut st| kura::notify::outbox::send_through(&mut st, &self.notify, &o, Utc::now()));
        match sent {
            Ok(results) => {
                for (_, r) in results {
                    if let Err(e) = r {
                        eprintln!("warning: notification not delivered (kept in the outbox for the daemon): {e}");
                    }
                }
            }
            Err(e) => eprintln!("warning: notification not written to the outbox: {e}"),
        }
    }
}

fn phase_text(p: Phase) -> String {
    match p {
        Phase::Pre => "running pre hooks".into(),
        Phase::Restoring => "restoring".into(),
        Phase::Verifying => "running verify hooks".into(),
        Phase::Post => "running post hooks".into(),
        other => other.to_string(),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    if let Some(Sub::Status { incident, run }) = a.sub {
        return status(ctx, incident, run);
    }
    let id = a.incident.expect("clap requires --incident");
    let Loaded { config, plan } = load_plan(&a.common)?;
    let mut state = ctx.state()?;
    let lock = exclusive(&state)?;
    let incident = gate::admit(&state, &lock, id)?;
    let on = placements(&a.on, &plan, &config)?;
    let from = a.common.from.unwrap_or_default();
    let (repo, location) = open_repo(ctx, &config, from)?;
    // The timeline entries of this run are keyed with the repository's chain key.
    state.set_chain_key(repo.key());
    let req = gate::RecoveryRequest {
        incident: id,
        from,
        location,
        parallel: a.common.parallel,
        force: a.force,
        reason: a.reason.clone(),
        config: Some(config.path.display().to_string()),
        on,
    };
    let snaps = kura::orchestrate::executor::FleetSnapshots {
        main: &repo,
        config: &config,
        dir: kura::fleet_dir::FleetDir::for_state(state.path()),
    };
    let started_at = ctx.now();
    let started = gate::start_recovery(&mut state, &lock, &snaps, &plan, &incident, req, started_at)?;
    let run_id = started.run;
    if !ctx.json {
        match started.resumed_from {
            Some(at) => {
                println!("resuming recovery run {run_id} (started {}): finished systems are not redone", local(at))
            }
            None => println!(
                "recovery run {run_id} for incident {id}: {} systems, clock started {}",
                plan.systems.len(),
                local(started.clock_start)
            ),
        }
        // The clean points chosen for an incident without compromised-since (docs/DETECTION.md).
        for e in state.timeline(id)?.iter().filter(|e| e.at.timestamp_micros() == started_at.timestamp_micros()) {
            if let kura::incident::Event::Note { text } = &e.event {
                println!("  {text}");
            }
        }
    }
    let code = finish_run(ctx, &mut state, &repo, &plan, &config, run_id);
    super::incident::anchor_after_write(&repo, &state, id, Utc::now());
    code
}

/// Executes (or resumes) a run and prints its result; shared with drills.
pub fn finish_run(
    ctx: &Ctx,
    state: &mut State,
    repo: &Arc<Repository>,
    plan: &Plan,
    config: &Config,
    run_id: i64,
) -> Result<ExitCode> {
    let engine = Engine {
        repo: repo.clone(),
        clock: Arc::new(kura::clock::SystemClock),
        runner: Arc::new(kura::orchestrate::hooks::ShellRunner),
        observer: Arc::new(Printer {
            json: ctx.json,
            notify: config.notify.clone(),
            run: run_id,
            state: state.path().to_path_buf(),
        }),
        restore_threads: None,
        fleet: kura::orchestrate::executor::FleetExecutor::for_config(config, state.path()),
    };
    let outcome = orchestrate::execute(state, &engine, plan, run_id)?;
    let run = state.recovery_run(run_id)?;
    let systems = state.run_systems(run_id)?;
    if ctx.json {
        #[derive(Serialize)]
        struct Out<'a> {
            outcome: &'a orchestrate::RunOutcome,
            run: &'a RunRecord,
            systems: &'a [SystemRecord],
        }
        output::print_json(&Out { outcome: &outcome, run: &run, systems: &systems })?;
    } else {
        println!();
        print_table(&run, &systems, Utc::now());
        println!(
            "\nrun {}: {}: {} restored, {} failed, {} skipped, {} deadlines missed",
            outcome.run, outcome.status, outcome.done, outcome.failed, outcome.skipped, outcome.missed
        );
    }
    Ok(if outcome.status == RunStatus::Done && outcome.missed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_PARTIAL)
    })
}

#[derive(Serialize)]
struct StatusRow<'a> {
    #[serde(flatten)]
    record: &'a SystemRecord,
    deadline_at: Option<DateTime<Utc>>,
    /// Seconds until the deadline (negative: past it); only while not finished.
    time_left_secs: Option<i64>,
    progress_percent: Option<f64>,
}

fn status(ctx: &Ctx, incident: Option<i64>, run: Option<i64>) -> Result<ExitCode> {
    let state = ctx.state_read_only()?;
    let run = match run {
        Some(r) => state.recovery_run(r)?,
        None => state.recovery_runs(Some(RunKind::Recovery), incident)?.pop().with_context(|| match incident {
            Some(i) => format!(
                "incident {i} has no recovery run yet: start one with `kura recover --incident {i} --plan FILE`"
            ),
            None => "no recovery has been run yet".to_string(),
        })?,
    };
    let systems = state.run_systems(run.id)?;
    let now = Utc::now();
    if ctx.json {
        let rows: Vec<StatusRow> = systems
            .iter()
            .map(|s| StatusRow {
                record: s,
                deadline_at: deadline::due_at(run.clock_start, s.deadline_secs),
                time_left_secs: deadline::time_left_secs(run.clock_start, s.deadline_secs, s.state.is_terminal(), now),
                progress_percent: s.progress_percent(),
            })
            .collect();
        output::print_json(&serde_json::json!({ "run": run, "systems": rows }))?;
    } else {
        println!(
            "{} run {} ({}), plan {}, clock started {}",
            run.kind,
            run.id,
            run.status,
            run.plan_name,
            local(run.clock_start)
        );
        print_table(&run, &systems, now);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_table(run: &RunRecord, systems: &[SystemRecord], now: DateTime<Utc>) {
    println!(
        "{:<16} {:>3}  {:<22} {:<8} {:<22} {:<17} snapshot",
        "system", "pri", "state", "deadline", "time left / result", "back at"
    );
    for s in systems {
        let state = match s.state {
            Phase::Restoring if s.bytes_total > 0 => {
                format!(
                    "restoring {:.0}% of {}",
                    (s.bytes as f64 * 100.0 / s.bytes_total as f64).min(100.0),
                    output::bytes(s.bytes_total)
                )
            }
            p => phase_text(p),
        };
        let deadline = s.deadline_secs.map(human_secs).unwrap_or_else(|| "none".into());
        let left = match (s.state.is_terminal(), s.deadline_secs, s.verdict, s.margin_secs) {
            (true, _, Some(Verdict::Met), Some(m)) => format!("met, {} spare", human_secs(m)),
            (true, _, Some(Verdict::Missed), Some(m)) => format!("MISSED by {}", human_secs(-m)),
            (true, _, _, _) => "-".to_string(),
            (false, Some(_), _, _) => {
                let left = deadline::time_left_secs(run.clock_start, s.deadline_secs, false, now).unwrap_or(0);
                if left >= 0 {
                    format!("{} left", human_secs(left))
                } else {
                    format!("OVERDUE by {}", human_secs(-left))
                }
            }
            (false, None, _, _) => "no deadline".to_string(),
        };
        let back = s.ended_at.filter(|_| s.state == Phase::Done).map(local).unwrap_or_else(|| "-".into());
        let snap = s.snapshot.as_deref().map(|x| &x[..x.len().min(8)]).unwrap_or("-");
        println!("{:<16} {:>3}  {:<22} {:<8} {:<22} {:<17} {snap}", s.name, s.priority, state, deadline, left, back);
        if let Some(h) = &s.ran_on {
            println!("{:<16}      on host {h}", "");
        }
        if let Some(e) = &s.error {
            println!("{:<16}      {e}", "");
        }
        if let Some(q) = s.verify.as_ref().and_then(|v| v.quarantine.as_ref()) {
            println!("{:<16}      {}", "", q.summary());
        }
    }
}
