//! `kura restore`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use kura::restore::{self, RestoreOptions};

use super::filter::FilterArgs;
use super::{output, Ctx, EXIT_PARTIAL};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  kura restore latest --target /tmp/r\n  kura restore latest:/etc --host web1 --target /tmp/etc\n  kura restore 4e70c24e --target /tmp/r --verify"
)]
pub struct Args {
    /// SNAPSHOT or SNAPSHOT:SUBPATH (id, unique prefix, or `latest`; the filters below narrow both)
    snapshot: String,
    /// Directory to restore into (created if missing)
    #[arg(short, long)]
    target: PathBuf,
    /// Restore only matching paths: `*.conf` matches names, `/etc/ssh` a path (repeatable)
    #[arg(long = "include")]
    includes: Vec<String>,
    /// Re-read every restored file and check it against the snapshot's hashes
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let (query, subpath) = match a.snapshot.split_once(':') {
        Some((q, p)) => (q.to_string(), Some(p.to_string())),
        None => (a.snapshot.clone(), None),
    };
    let (id, snap) = repo.find_snapshot_matching(&query, &a.filter.filter())?;
    let opts = RestoreOptions {
        target: a.target,
        subpath,
        includes: a.includes,
        verify: a.verify,
        threads: None,
        reuse_existing: false,
    };
    let bar = output::Bar::new(ctx.show_progress(), "restoring");
    let res = restore::run(&repo, &id, &snap, &opts, &bar);
    bar.finish();
    let s = res?;
    if ctx.json {
        output::print_json(&s)?;
    } else {
        println!("restored snapshot {} to {}", id.short(), s.target);
        println!(
            "files:  {} restored, {} already present; {} dirs, {} symlinks, {} hard links",
            s.files_restored, s.files_skipped, s.dirs, s.symlinks, s.hardlinks
        );
        println!(
            "wrote:  {} from {} packs in {}",
            output::bytes(s.bytes_written),
            s.packs_read,
            output::duration_ms(s.duration_ms)
        );
        if s.files_resumed > 0 {
            println!(
                "resumed: {} file(s) an interrupted restore had started ({} already written, not fetched again)",
                s.files_resumed,
                output::bytes(s.bytes_resumed)
            );
        }
        if opts.verify {
            println!("verify: {} files match the snapshot, {} differ", s.files_verified, s.verify_failures.len());
            for f in &s.verify_failures {
                eprintln!("error: {f}");
            }
        }
    }
    if !s.damaged.is_empty() {
        eprintln!(
            "error: {} file(s) not restored: their data is damaged in the repository (everything else was \
             restored; `kura check --read-data` lists every damaged file):",
            s.damaged.len()
        );
        for d in &s.damaged {
            eprintln!("error:   {} ({}): blob {} in pack {}: {}", d.path, d.snapshot_path, d.blob, d.pack, d.reason);
        }
    }
    Ok(if s.is_complete() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_PARTIAL) })
}
