//! `kura copy --to LOCATION`: mirror the repository to a remote site (docs/REMOTE.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use kura::replicate::{self, CopyOptions, CopyReport, Destination};

use super::{output, Ctx};

#[derive(clap::Args)]
#[command(after_help = "Copies only what the destination lacks: packs first (each checked against its content hash), \
                  then index files, then snapshots. An interrupted copy is resumed by running it again. \
                  Nothing is ever deleted at the destination.")]
pub struct Args {
    /// Destination location: a directory, or s3:https://HOST[:PORT]/BUCKET[/PREFIX], or s3:BUCKET[/PREFIX]
    #[arg(long, value_name = "LOCATION")]
    to: String,
    /// File with the destination's passphrase, if it differs (else KURA_TO_PASSWORD, else the source's)
    #[arg(long, env = "KURA_TO_PASSWORD_FILE", value_name = "FILE")]
    to_password_file: Option<PathBuf>,
    /// Packs copied at the same time
    #[arg(long, short = 'j', default_value_t = 8, value_name = "N")]
    jobs: usize,
    /// Show what would be copied, copy nothing
    #[arg(long, short = 'n')]
    dry_run: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    if a.jobs == 0 || a.jobs > 64 {
        anyhow::bail!("--jobs must be between 1 and 64, got {}", a.jobs);
    }
    let src_pass = ctx.passphrase(false)?;
    let src = std::sync::Arc::new(kura::repo::Repository::open(ctx.backend()?, &src_pass)?);
    let dst_pass = if let Ok(p) = std::env::var("KURA_TO_PASSWORD") {
        p.into_bytes()
    } else if let Some(f) = &a.to_password_file {
        super::read_password_file(f)?
    } else {
        src_pass.clone()
    };
    let backend = kura::backend::open(&a.to).with_context(|| format!("destination {}", a.to))?;
    let bar = output::Bar::new(ctx.show_progress(), "copying");
    let res = replicate::execute(
        &src,
        &src_pass,
        Destination { backend, passphrase: &dst_pass },
        &CopyOptions { jobs: a.jobs, dry_run: a.dry_run },
        &bar,
    );
    bar.finish();
    let r = res?;
    if ctx.json {
        output::print_json(&r)?;
    } else {
        print_report(&r);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &CopyReport) {
    let verb = if r.dry_run { "would copy" } else { "copied" };
    let c = &r.copied;
    println!("{} -> {}{}", r.source, r.destination, if r.created { " (new mirror)" } else { "" });
    println!(
        "{verb} {} packs, {} index files, {} snapshots, {} keys{}: {}",
        c.packs,
        c.indexes,
        c.snapshots,
        c.keys,
        if c.config > 0 { " and the config" } else { "" },
        output::bytes(r.bytes)
    );
    if c.anchors > 0 {
        println!("{verb} {} incident anchors", c.anchors);
    }
    for why in &r.anchors_refused {
        println!("warning: anchor not copied: {why}; run `kura incident verify` at the source");
    }
    println!("{} objects were already there", r.already_present);
    if !r.dry_run {
        println!("in {} ({}/s)", output::duration_ms(r.duration_ms), output::bytes(r.throughput));
    }
}
