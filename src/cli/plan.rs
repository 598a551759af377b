//! `kura plan validate` and `kura plan show`: check a restoration plan against the
//! config, and print its execution order.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use kura::config::{self, format_duration, Config};
use kura::plan::{self, Plan, Problem, Severity};
use serde::Serialize;

use super::config::print_problems;
use super::{output, Ctx};

#[derive(clap::Subcommand)]
pub enum PlanCommand {
    /// Check a restoration plan: fields, systems known to the config, dependencies
    /// (unknown, cyclic, or on a lower priority), overlapping targets. Every problem
    /// is reported with its line and field; exit 2 if there is an error
    Validate(Args),
    /// Print a plan's execution order: tiers by priority, waves by dependency, and
    /// each system's deadline, target, dependencies and hooks
    Show(Args),
    /// Predict each system's restore time and the resources a full recovery needs,
    /// from snapshot sizes and the throughput measured in past drills
    Forecast(super::forecast::Args),
}

#[derive(clap::Args)]
pub struct Args {
    /// The plan file (TOML; see docs/PLANS.md)
    file: PathBuf,
    /// The config declaring the systems and their priorities. Default: the plan's
    /// `config` key, else ./kura.toml, else /etc/kura/kura.toml
    #[arg(long, env = "KURA_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
}

impl PlanCommand {
    /// The plan file it reads.
    pub fn file(&self) -> &Path {
        match self {
            PlanCommand::Validate(a) | PlanCommand::Show(a) => &a.file,
            PlanCommand::Forecast(f) => f.file(),
        }
    }
}

pub fn run(ctx: &Ctx, cmd: PlanCommand) -> Result<ExitCode> {
    match cmd {
        PlanCommand::Validate(a) => validate(ctx, a, false),
        PlanCommand::Show(a) => validate(ctx, a, true),
        PlanCommand::Forecast(a) => super::forecast::run(ctx, a),
    }
}

#[derive(Serialize)]
struct Failed<'a> {
    ok: bool,
    plan: &'a Path,
    config: &'a Path,
    problems: &'a [Problem],
}

/// A loaded config and plan, with the plan's warnings.
type Loaded = (Config, Plan, Vec<Problem>);

/// Loads config and plan; on error prints the problems and gives the exit code.
fn load(ctx: &Ctx, a: &Args) -> Result<Result<Loaded, ExitCode>> {
    let config_path = plan::resolve_config(&a.file, a.config.as_deref());
    let fail = |problems: &[Problem], hint: Option<String>| -> Result<ExitCode> {
        if ctx.json {
            output::print_json(&Failed { ok: false, plan: &a.file, config: &config_path, problems })?;
        } else {
            print_problems(problems);
            if let Some(h) = hint {
                eprintln!("{h}");
            }
            let n = problems.iter().filter(|p| p.severity == Severity::Error).count();
            eprintln!("{}: {n} error{} found", a.file.display(), if n == 1 { "" } else { "s" });
        }
        Ok(ExitCode::from(2))
    };
    if let Err(p) = plan::check_syntax(&a.file) {
        return Ok(Err(fail(&p.0, None)?));
    }
    let config = match config::load(&config_path) {
        Ok(c) => c,
        Err(p) => {
            let hint = (!config_path.exists()).then(|| {
                format!(
                    "no config at {}: pass --config PATH, set KURA_CONFIG, or set `config = \"...\"` in the plan",
                    config_path.display()
                )
            });
            return Ok(Err(fail(&p.0, hint)?));
        }
    };
    match plan::load(&a.file, Some(&config)) {
        Ok((p, warnings)) => Ok(Ok((config, p, warnings))),
        Err(p) => Ok(Err(fail(&p.0, None)?)),
    }
}

/// A deadline for people: "0 (must not stop)", "24h", "3d", "none".
fn deadline(d: Option<chrono::Duration>) -> String {
    match d {
        None => "none".into(),
        Some(d) if d.is_zero() => "0 (must not stop)".into(),
        Some(d) => format_duration(d.to_std().unwrap_or_default()),
    }
}

#[derive(Serialize)]
struct ShowJson<'a> {
    ok: bool,
    plan: &'a str,
    description: &'a str,
    file: &'a Path,
    config: &'a Path,
    allow_overlap: bool,
    on_failure: plan::OnFailure,
    systems: usize,
    tiers: Vec<TierJson<'a>>,
    warnings: &'a [Problem],
}

#[derive(Serialize)]
struct TierJson<'a> {
    priority: u8,
    waves: Vec<Vec<SystemJson<'a>>>,
}

#[derive(Serialize)]
struct SystemJson<'a> {
    name: &'a str,
    priority: u8,
    /// Seconds; null = no deadline.
    deadline_secs: Option<i64>,
    deadline: String,
    target: &'a Path,
    source: String,
    subpath: Option<&'a str>,
    depends_on: &'a [String],
    hooks: HooksJson,
}

#[derive(Serialize)]
struct HooksJson {
    pre: usize,
    verify: usize,
    post: usize,
}

fn source(s: &plan::Source) -> String {
    match s {
        plan::Source::Tag(t) => format!("tag {t}"),
        plan::Source::HostPaths { host, paths } => format!("host {host} paths {}", paths.join(",")),
    }
}

fn validate(ctx: &Ctx, a: Args, show: bool) -> Result<ExitCode> {
    let (config, p, warnings) = match load(ctx, &a)? {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let order = plan::order(&p);
    if ctx.json {
        let tiers = order
            .tiers
            .iter()
            .map(|t| TierJson {
                priority: t.priority.get(),
                waves: t
                    .waves
                    .iter()
                    .map(|w| {
                        w.iter()
                            .map(|&i| {
                                let s = &p.systems[i];
                                SystemJson {
                                    name: &s.name,
                                    priority: s.priority.get(),
                                    deadline_secs: s.deadline.map(|d| d.num_seconds()),
                                    deadline: deadline(s.deadline),
                                    target: &s.target,
                                    source: source(&s.source),
                                    subpath: s.subpath.as_deref(),
                                    depends_on: &s.depends_on,
                                    hooks: HooksJson {
                                        pre: s.hooks.pre.len(),
                                        verify: s.hooks.verify.len(),
                                        post: s.hooks.post.len(),
                                    },
                                }
                            })
                            .collect()
                    })
                    .collect(),
            })
            .collect();
        output::print_json(&ShowJson {
            ok: true,
            plan: &p.name,
            description: &p.description,
            file: &a.file,
            config: &config.path,
            allow_overlap: p.allow_overlap,
            on_failure: p.on_failure,
            systems: p.systems.len(),
            tiers,
            warnings: &warnings,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    print_problems(&warnings);
    let tiers = order.tiers.len();
    let waves: usize = order.tiers.iter().map(|t| t.waves.len()).sum();
    println!(
        "plan {:?} OK: {} systems in {tiers} tier{} and {waves} wave{} (config {})",
        p.name,
        p.systems.len(),
        if tiers == 1 { "" } else { "s" },
        if waves == 1 { "" } else { "s" },
        config.path.display()
    );
    if !show {
        return Ok(ExitCode::SUCCESS);
    }
    if !p.description.is_empty() {
        println!("{}", p.description.trim());
    }
    println!(
        "on failure: {}; tiers {}",
        match p.on_failure {
            plan::OnFailure::Halt => "halt (start nothing else)",
            plan::OnFailure::Continue => "continue (skip only the dependents)",
        },
        if p.allow_overlap { "may overlap" } else { "run one after another" }
    );
    let width = p.systems.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for t in &order.tiers {
        println!();
        println!("tier {} (priority {}, deadline {})", t.priority, t.priority, deadline(config.deadline(t.priority)));
        for (k, w) in t.waves.iter().enumerate() {
            println!("  wave {}", k + 1);
            for &i in w {
                let s = &p.systems[i];
                let deps = if s.depends_on.is_empty() { "-".to_string() } else { s.depends_on.join(", ") };
                println!(
                    "    {:width$}  priority {}  deadline {:18}  target {}",
                    s.name,
                    s.priority,
                    deadline(s.deadline),
                    s.target.display()
                );
                println!(
                    "    {:width$}  depends on: {deps}; hooks: {} pre, {} verify, {} post",
                    "",
                    s.hooks.pre.len(),
                    s.hooks.verify.len(),
                    s.hooks.post.len()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
