//! `kura backup`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use kura::backup::{self, BackupOptions, StreamInput, StreamSource};

use super::{output, Ctx, EXIT_PARTIAL};

#[derive(clap::Args)]
pub struct Args {
    /// Files and directories to back up; with --stdin-from-command, the command and its arguments (after `--`)
    #[arg(required_unless_present_any = ["stdin", "system"])]
    paths: Vec<PathBuf>,
    /// Back up a system of the config (its paths, excludes, host and tag), then bring
    /// its standby, if it has one, to the new snapshot (docs/STANDBY.md)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["paths", "stdin", "stdin_from_command"])]
    system: Option<String>,
    #[command(flatten)]
    config: super::standby::ConfigArg,
    /// Run the command given after `--` (no shell) and back up its stdout as the file /NAME;
    /// if the command fails, no snapshot is written and kura exits 1
    #[arg(long, conflicts_with = "stdin")]
    stdin_from_command: bool,
    /// With --stdin-from-command: kill the command (its whole process group) if it runs
    /// longer than this (`90s`, `30m`, `2h`); no snapshot is written and kura exits 1
    #[arg(long, value_name = "DURATION", requires = "stdin_from_command", value_parser = parse_timeout)]
    command_timeout: Option<std::time::Duration>,
    /// Back up kura's own standard input as the file /NAME
    #[arg(long)]
    stdin: bool,
    /// NAME of the file a stream is stored as (at the snapshot's root)
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    stdin_filename: String,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    host: Option<String>,
    /// Skip matching files: `*.tmp` matches names anywhere, `/var/cache` a path (repeatable)
    #[arg(long = "exclude")]
    excludes: Vec<String>,
    /// zstd level for new data (default: the repository's, 3)
    #[arg(long)]
    compression: Option<i32>,
    /// Indicator list that new file names are matched against (ransom notes,
    /// malware extensions; format in docs/DETECTION.md) [default: the built-in one]
    #[arg(long, value_name = "FILE")]
    names: Option<PathBuf>,
    /// Record no change and entropy signals in the snapshot (they cost little; this
    /// exists for the cost bench)
    #[arg(long)]
    no_signals: bool,
}

pub fn run(ctx: &Ctx, mut a: Args) -> Result<ExitCode> {
    let stream = stream_source(&mut a)?;
    let names = match &a.names {
        Some(f) => Some(std::sync::Arc::new(kura::signals::names::NamePatterns::load(f)?)),
        None => None,
    };
    let system = match &a.system {
        Some(name) => {
            let cfg = super::standby::load_config(&a.config)?;
            let sys = super::standby::system(&cfg, name)?.clone();
            let repo = super::standby::open_repo(ctx, &cfg)?;
            a.paths = sys.paths.clone();
            a.tags.push(sys.tag());
            a.excludes.extend(sys.excludes.iter().cloned());
            a.host = a.host.take().or(sys.host.clone());
            let site = super::standby::site(ctx, &cfg, &sys)?;
            Some((sys, repo, site))
        }
        None => None,
    };
    let stream = stream.or_else(|| system.as_ref().and_then(|(s, _, _)| s.stream.clone()));
    let repo = match &system {
        Some((_, r, _)) => r.clone(),
        None => ctx.open()?,
    };
    let opts = BackupOptions {
        names,
        no_signals: a.no_signals,
        stream,
        paths: a.paths,
        tags: a.tags,
        host: a.host,
        excludes: a.excludes,
        compression: a.compression,
        threads: None,
    };
    let bar = output::Bar::new(ctx.show_progress(), "backing up");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let res = std::thread::scope(|s| {
        if ctx.show_progress() && opts.stream.is_none() {
            // The total arrives when this scan ends; until then a spinner shows.
            s.spawn(|| {
                let total = backup::estimate_size(&opts.paths, &opts.excludes, &stop);
                if !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    kura::progress::Progress::set_total(&bar, total);
                }
            });
        }
        let r = backup::run(&repo, &opts, &bar);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    });
    bar.finish();
    let out = match res {
        Err(e @ (kura::Error::CommandFailed { .. } | kura::Error::CommandTimedOut { .. })) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_PARTIAL));
        }
        r => r?,
    };
    // After a good backup of a system, its standby is brought to it.
    let standby = match (&system, out.snapshot.partial) {
        (Some((sys, repo, site)), false) => super::standby::after_backup(ctx, sys, repo, site)?,
        _ => None,
    };
    let code = print_outcome(ctx, &out, standby.as_ref())?;
    match &standby {
        Some(up) if up.verify_failed() => Ok(ExitCode::from(EXIT_PARTIAL)),
        _ => Ok(code),
    }
}

/// The stream to back up, from --stdin / --stdin-from-command (the positional
/// arguments are then the command, not paths).
fn stream_source(a: &mut Args) -> Result<Option<StreamSource>> {
    let input = if a.stdin_from_command {
        let argv: Vec<String> = std::mem::take(&mut a.paths).into_iter().map(|p| p.display().to_string()).collect();
        StreamInput::Command(argv)
    } else if a.stdin {
        if !a.paths.is_empty() {
            bail!("--stdin backs up standard input only: drop the paths, or back them up in another run");
        }
        StreamInput::Stdin
    } else {
        if a.stdin_filename != "stdin" {
            bail!("--stdin-filename needs --stdin or --stdin-from-command");
        }
        return Ok(None);
    };
    Ok(Some(StreamSource { filename: a.stdin_filename.clone(), input, timeout: a.command_timeout }))
}

fn print_outcome(
    ctx: &Ctx,
    out: &backup::BackupOutcome,
    standby: Option<&kura::standby::update::Update>,
) -> Result<ExitCode> {
    let s = out.snapshot.summary.clone().unwrap_or_default();
    if ctx.json {
        output::print_json(&serde_json::json!({
            "snapshot": out.id.to_hex(),
            "partial": out.snapshot.partial,
            "parent": out.snapshot.parent.map(|p| p.to_hex()),
            "summary": s,
            "warnings": out.warnings,
            "standby": standby,
        }))?;
    } else {
        println!(
            "snapshot {} saved{}",
            out.id.short(),
            if out.snapshot.partial { " (PARTIAL: some files could not be read)" } else { "" }
        );
        println!(
            "files:  {} new, {} changed, {} unchanged ({} dirs)",
            s.files_new, s.files_changed, s.files_unchanged, s.dirs
        );
        if s.files_skipped > 0 {
            println!("        {} special files skipped (devices, sockets, fifos)", s.files_skipped);
        }
        println!("read:   {} of {} total", output::bytes(s.bytes_read), output::bytes(s.bytes_total));
        println!(
            "added:  {} to the repository ({} new blobs, after dedup and compression)",
            output::bytes(s.bytes_added),
            s.blobs_added
        );
        println!("took:   {}", output::duration_ms(s.duration_ms));
        if let Some(up) = standby {
            super::standby::describe_update(&up_name(out), up);
        }
    }
    Ok(if out.snapshot.partial { ExitCode::from(EXIT_PARTIAL) } else { ExitCode::SUCCESS })
}

/// The system a backup was for (its `system:` tag), for messages.
fn up_name(out: &backup::BackupOutcome) -> String {
    out.snapshot.tags.iter().find_map(|t| t.strip_prefix("system:")).unwrap_or("").to_string()
}

/// A positive duration (`0` would kill every command at once).
fn parse_timeout(text: &str) -> std::result::Result<std::time::Duration, String> {
    match kura::config::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("a timeout of 0 would stop every command at once: give e.g. 30m".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}
