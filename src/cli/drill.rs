//! `kura drill ...`: run a plan as a drill into a sandbox, list, show and review drills.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

use super::incident::local;
use super::recover::{exclusive, finish_run, load_plan, open_repo, print_table, Loaded, PlanArgs};
use super::{output, Ctx};
use kura::orchestrate::deadline::Verdict;
use kura::orchestrate::drill::{self, DrillRequest};
use kura::state::recovery::RunKind;

#[derive(Subcommand)]
pub enum DrillCommand {
    /// Run the whole plan as a drill: restore into a sandbox, verify, time it against the deadlines
    Run(RunArgs),
    /// List drills
    List,
    /// Show a drill: each system's time, deadline verdict and verification, and its reviews
    Show { id: i64 },
    /// Record the committee's review of a drill and its improvement actions
    Review {
        id: i64,
        #[arg(long)]
        evaluation: String,
        /// An improvement action (repeatable)
        #[arg(long = "action")]
        actions: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: PlanArgs,
    /// Where systems are restored (each into SANDBOX/NAME) [default: a new directory under $TMPDIR]
    #[arg(long)]
    sandbox: Option<PathBuf>,
    /// Keep the sandbox afterwards (default: removed)
    #[arg(long)]
    keep: bool,
}

pub fn run(ctx: &Ctx, cmd: DrillCommand) -> Result<ExitCode> {
    match cmd {
        DrillCommand::Run(a) => run_drill(ctx, a),
        DrillCommand::List => {
            let state = ctx.state_read_only()?;
            let runs = state.recovery_runs(Some(RunKind::Drill), None)?;
            if ctx.json {
                let mut out = vec![];
                for r in &runs {
                    out.push(serde_json::json!({ "run": r, "systems": state.run_systems(r.id)? }));
                }
                output::print_json(&out)?;
            } else if runs.is_empty() {
                println!("no drills recorded yet: run one with `kura drill run --plan FILE`");
            } else {
                println!("{:>4}  {:<17} {:<8} {:<24} result", "id", "started", "status", "plan");
                for r in &runs {
                    let systems = state.run_systems(r.id)?;
                    let met = systems.iter().filter(|s| s.verdict == Some(Verdict::Met)).count();
                    let missed = systems.iter().filter(|s| s.verdict == Some(Verdict::Missed)).count();
                    println!(
                        "{:>4}  {:<17} {:<8} {:<24} {} systems, {met} deadlines met, {missed} missed",
                        r.id,
                        local(r.started_at),
                        r.status,
                        r.plan_name,
                        systems.len()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DrillCommand::Show { id } => {
            let state = ctx.state_read_only()?;
            let run = state.recovery_run(id)?;
            if run.kind != RunKind::Drill {
                bail!("run {id} is a recovery, not a drill: use `kura recover status --run {id}`");
            }
            let systems = state.run_systems(id)?;
            let reviews = state.drill_reviews(id)?;
            if ctx.json {
                output::print_json(&serde_json::json!({ "run": run, "systems": systems, "reviews": reviews }))?;
            } else {
                println!("drill {id} ({}), plan {}, started {}", run.status, run.plan_name, local(run.started_at));
                print_table(&run, &systems, chrono::Utc::now());
                for s in &systems {
                    if let (Some(ms), true) = (s.restore_ms, s.bytes > 0) {
                        println!(
                            "  {}: {} in {} ({}/s)",
                            s.name,
                            output::bytes(s.bytes),
                            output::duration_ms(ms),
                            output::bytes((s.bytes as f64 * 1000.0 / ms.max(1) as f64) as u64)
                        );
                    }
                }
                for (at, eval, actions) in &reviews {
                    println!("\nreview of {}: {eval}", local(*at));
                    for a in actions {
                        println!("  - {a}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DrillCommand::Review { id, evaluation, actions } => {
            let state = ctx.state()?;
            let run = state.recovery_run(id)?;
            if run.kind != RunKind::Drill {
                bail!("run {id} is not a drill; incidents are reviewed with `kura incident review`");
            }
            state.add_drill_review(id, ctx.now(), &evaluation, &actions)?;
            if ctx.json {
                output::print_json(&serde_json::json!({ "drill": id, "reviews": state.drill_reviews(id)? }))?;
            } else {
                println!("review recorded for drill {id} ({} actions)", actions.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_drill(ctx: &Ctx, a: RunArgs) -> Result<ExitCode> {
    let Loaded { config, plan } = load_plan(&a.common)?;
    let mut state = ctx.state()?;
    let lock = exclusive(&state)?;
    let from = drill::source(&state, &lock, &plan, a.common.from, config.remote.is_some())?;
    let (repo, location) = open_repo(ctx, &config, from)?;
    let req = DrillRequest {
        from,
        location: &location,
        sandbox: a.sandbox.clone(),
        keep: a.keep,
        parallel: a.common.parallel,
        config: Some(config.path.display().to_string()),
    };
    let snaps = kura::orchestrate::executor::FleetSnapshots {
        main: &repo,
        config: &config,
        dir: kura::fleet_dir::FleetDir::for_state(state.path()),
    };
    let started = drill::start_or_resume(&mut state, &lock, &snaps, &plan, req, ctx.now())?;
    if !ctx.json {
        let verb = if started.resumed { "resuming drill" } else { "drill" };
        println!(
            "{verb} {}: {} systems into the sandbox {}",
            started.run,
            plan.systems.len(),
            started.sandbox.display()
        );
    }
    let code = finish_run(ctx, &mut state, &repo, &plan, &config, started.run)?;
    if started.keep && !ctx.json {
        println!("sandbox kept at {}", started.sandbox.display());
    }
    started.clean_up();
    Ok(code)
}
