//! `kura ls`.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::Result;
use kura::repo::tree::{Node, NodeType, Tree};
use serde::Serialize;

use super::filter::FilterArgs;
use super::{output, Ctx};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id, unique id prefix, or `latest` (the newest matching the filters)
    snapshot: String,
    /// Only list below this path inside the snapshot
    path: Option<String>,
    /// Show type, mode, size and modification time
    #[arg(short, long)]
    long: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Serialize)]
struct Entry {
    path: String,
    /// The path and symlink target as human output shows them (escaped).
    #[serde(skip)]
    shown: (String, Option<String>),
    #[serde(rename = "type")]
    node_type: NodeType,
    mode: String,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

fn entry(path: &Path, n: &Node) -> Entry {
    let mtime = chrono::DateTime::from_timestamp_nanos(n.mtime_ns);
    Entry {
        path: path.display().to_string(),
        shown: (output::escape_name(path.as_os_str().as_bytes()), n.target.as_ref().map(|t| output::escape_name(&t.0))),
        node_type: n.node_type,
        mode: format!("{:04o}", n.mode),
        uid: n.uid,
        gid: n.gid,
        size: n.size,
        mtime: mtime.to_rfc3339(),
        target: n.target.as_ref().map(|t| t.lossy()),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let (id, snap) = repo.find_snapshot_matching(&a.snapshot, &a.filter.filter())?;
    let index = repo.load_index()?;
    let start = a.path.clone().unwrap_or_else(|| "/".into());
    let mut out = Vec::new();
    let root = match kura::restore::resolve(&repo, &index, &snap.tree, &start, &id.short())? {
        None => Some(snap.tree),
        Some(n) => {
            let p = PathBuf::from(&start);
            out.push(entry(&p, &n));
            n.subtree
        }
    };
    // Each tree is read once: the measure below keeps what it read for the listing.
    let mut trees: HashMap<kura::types::BlobId, Rc<Tree>> = HashMap::new();
    let mut load = |id: &kura::types::BlobId| -> kura::error::Result<Rc<Tree>> {
        if let Some(t) = trees.get(id) {
            return Ok(t.clone());
        }
        let t = Rc::new(repo.load_tree(&index, id)?);
        trees.insert(*id, t.clone());
        Ok(t)
    };
    // A crafted tree graph can name 2^30 paths in a few trees: measured first.
    if let Some(t) = &root {
        kura::restore::expansion(&mut load, &mut Default::default(), t, Path::new(&start), 0)?;
    }
    let mut stack: Vec<(kura::types::BlobId, PathBuf)> = root.map(|t| (t, PathBuf::from(&start))).into_iter().collect();
    while let Some((tid, dir)) = stack.pop() {
        let tree = load(&tid)?;
        let mut subdirs = Vec::new();
        for n in &tree.nodes {
            let p = dir.join(n.name.as_os_str());
            out.push(entry(&p, n));
            if let Some(s) = n.subtree {
                subdirs.push((s, p));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    if ctx.json {
        output::print_json(&out)?;
    } else {
        for e in &out {
            if a.long {
                let t = match e.node_type {
                    NodeType::Dir => 'd',
                    NodeType::Symlink => 'l',
                    NodeType::File => '-',
                };
                let target = e.shown.1.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default();
                println!(
                    "{t}{} {:>5} {:>5} {:>10} {} {}{target}",
                    e.mode,
                    e.uid,
                    e.gid,
                    output::bytes(e.size),
                    &e.mtime[..19],
                    e.shown.0
                );
            } else {
                println!("{}", e.shown.0);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
