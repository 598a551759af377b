//! `kura find`.

use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use anyhow::Result;
use kura::find::Finder;
use kura::repo::tree::NodeType;

use super::filter::FilterArgs;
use super::{output, Ctx};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  kura find '*.conf'\n  kura find /etc/ssh/sshd_config --host web1\n  kura find 'id_*' --snapshot 4e70c24e --json"
)]
pub struct Args {
    /// Glob tried on each entry's name and on its full path (`*` does not cross `/`)
    pattern: String,
    /// Search only this snapshot (id, unique prefix or `latest`; repeatable)
    #[arg(long = "snapshot", value_name = "ID")]
    snapshots: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let filter = a.filter.filter();
    let list = if a.snapshots.is_empty() {
        repo.snapshots()?
    } else {
        let mut l = Vec::new();
        for q in &a.snapshots {
            let found = repo.find_snapshot_matching(q, &filter)?;
            if !l.iter().any(|(id, _)| *id == found.0) {
                l.push(found);
            }
        }
        l
    };
    let index = repo.load_index()?;
    let mut finder = Finder::new(&repo, &index, &a.pattern)?;
    let found = finder.search(filter.select(list))?;
    if ctx.json {
        let rows: Vec<_> = found.iter().map(json_row).collect();
        output::print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        println!("no snapshot holds a path matching {:?}", a.pattern);
    }
    for f in &found {
        let time = f.snapshot.time.format("%Y-%m-%d %H:%M:%S");
        println!("snapshot {} of {} at {time}:", f.id.short(), f.snapshot.host);
        for m in &f.matches {
            let t = match m.node_type {
                NodeType::Dir => 'd',
                NodeType::Symlink => 'l',
                NodeType::File => '-',
            };
            let mtime = chrono::DateTime::from_timestamp_nanos(m.mtime_ns).format("%Y-%m-%d %H:%M:%S");
            let shown = output::escape_name(std::path::Path::new(&m.path).as_os_str().as_bytes());
            println!("  {t}{:04o} {:>10} {mtime} {shown}", m.mode, output::bytes(m.size));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn json_row(f: &kura::find::SnapshotMatches) -> serde_json::Value {
    let matches: Vec<_> = f
        .matches
        .iter()
        .map(|m| {
            serde_json::json!({
                "path": m.path,
                "type": m.node_type,
                "size": m.size,
                "mode": format!("{:04o}", m.mode),
                "mtime": chrono::DateTime::from_timestamp_nanos(m.mtime_ns).to_rfc3339(),
            })
        })
        .collect();
    serde_json::json!({
        "snapshot": f.id.to_hex(),
        "short_id": f.id.short(),
        "time": f.snapshot.time,
        "host": f.snapshot.host,
        "matches": matches,
    })
}
