//! `kura check`.

use std::process::ExitCode;

use anyhow::Result;
use kura::check::{self, ReadData};

use super::{output, Ctx, EXIT_PARTIAL};

#[derive(clap::Args)]
pub struct Args {
    /// Read and verify every pack (all stored data)
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read and verify part of the data: `N%` (random), `N/M` (part N of M), or
    /// `next/M` (the part after the one the last `next/M` check read: M runs cover all)
    #[arg(long, value_name = "N%|N/M|next/M")]
    read_data_subset: Option<String>,
}

/// Where `next/M` remembers the last part read, per repository.
fn rotation_file(repo_id: &str) -> std::path::PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kura").join(format!("check-rotation-{}", &repo_id[..16]))
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let mut rotation = None;
    let read = match (&a.read_data, &a.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(s)) if s.starts_with("next/") => {
            let m: u32 = s[5..]
                .parse()
                .ok()
                .filter(|m| (1..=256).contains(m))
                .ok_or_else(|| anyhow::anyhow!("--read-data-subset {s:?}: expected next/M with 1 <= M <= 256"))?;
            let file = rotation_file(&repo.config().id);
            let last: u32 = std::fs::read_to_string(&file).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
            let n = last % m + 1;
            rotation = Some((file, n));
            if !ctx.json {
                println!("reading part {n} of {m}");
            }
            ReadData::Part(n, m)
        }
        (false, Some(s)) => ReadData::parse_subset(s)?,
        (false, None) => ReadData::None,
    };
    let bar = output::Bar::new(ctx.show_progress() && read != ReadData::None, "reading packs");
    let lock = kura::repo::lock::reader_lock(&repo, "check");
    let res = check::run(&repo, read, &bar);
    drop(lock);
    bar.finish();
    let r = res?;
    if let Some((file, n)) = rotation.filter(|_| r.is_clean()) {
        // Only a clean check moves the rotation on: a damaged part is read again.
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&file, n.to_string())?;
    }
    if ctx.json {
        output::print_json(&r)?;
    } else {
        println!(
            "checked {} snapshots, {} trees, {} packs; read {} packs ({})",
            r.snapshots,
            r.trees,
            r.packs,
            r.packs_read,
            output::bytes(r.bytes_read)
        );
        for w in &r.warnings {
            println!("warning: {w}");
        }
        for e in &r.errors {
            println!("error: {e}");
        }
        for d in &r.damaged_packs {
            println!("error: pack {} is damaged: {}", d.pack, d.reason);
            for f in &d.affects {
                println!("    affects {f}");
            }
        }
        if r.is_clean() {
            println!("no errors were found");
        } else {
            println!("the repository has errors: see above; `kura repair` can rebuild what is recoverable");
        }
    }
    Ok(if r.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_PARTIAL) })
}
