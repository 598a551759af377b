//! `kura backup`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use kura::backup::{self, BackupOptions};

use super::{output, Ctx, EXIT_PARTIAL};

#[derive(clap::Args)]
pub struct Args {
    /// Files and directories to back up
    #[arg(required = true)]
    paths: Vec<PathBuf>,
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
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let opts = BackupOptions {
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
        if ctx.show_progress() {
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
    let out = res?;
    let s = out.snapshot.summary.clone().unwrap_or_default();
    if ctx.json {
        output::print_json(&serde_json::json!({
            "snapshot": out.id.to_hex(),
            "partial": out.snapshot.partial,
            "parent": out.snapshot.parent.map(|p| p.to_hex()),
            "summary": s,
            "warnings": out.warnings,
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
    }
    Ok(if out.snapshot.partial { ExitCode::from(EXIT_PARTIAL) } else { ExitCode::SUCCESS })
}
