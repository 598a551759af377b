//! `kura dump`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};
use kura::repo::tree::NodeType;

use super::filter::FilterArgs;
use super::Ctx;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  kura dump latest:/etc/hosts\n  kura dump 4e70c24e:/srv/www > www.tar\n  kura dump latest:/srv/www | tar -x -C /tmp/r\n  kura dump latest:/etc/hosts --host web1"
)]
pub struct Args {
    /// SNAPSHOT:PATH (snapshot id, unique prefix or `latest`). A file is written as
    /// it is; a directory as a tar archive whose entries start with its name
    #[arg(value_name = "SNAPSHOT:PATH")]
    spec: String,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let Some((query, path)) = a.spec.split_once(':') else {
        bail!("{:?} names no path: give SNAPSHOT:PATH, e.g. latest:/etc/hosts", a.spec);
    };
    let repo = ctx.open()?;
    let (id, snap) = repo.find_snapshot_matching(query, &a.filter.filter())?;
    let index = repo.load_index()?;
    let node = kura::dump::resolve(&repo, &index, &snap.tree, path, &id.short())?;
    let stdout = std::io::stdout();
    let is_dir = node.as_ref().is_none_or(|n| n.node_type == NodeType::Dir);
    if is_dir && stdout.is_terminal() {
        bail!("{path} in snapshot {} is a directory: its tar archive is binary; redirect stdout to a file or pipe it into tar -x", id.short());
    }
    if node.as_ref().is_some_and(|n| n.node_type == NodeType::Symlink) {
        bail!("{path} in snapshot {} is a symlink: dump writes files and directories", id.short());
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let res = match &node {
        Some(n) if n.node_type == NodeType::File => kura::dump::file(&repo, &index, n, &mut out).map(|_| ()),
        Some(n) => match &n.subtree {
            Some(t) => kura::dump::tar(&repo, &index, t, Some(n), &mut out),
            None => Err(kura::Error::corrupt(format!("directory {path}"), "it has no tree")),
        },
        None => kura::dump::tar(&repo, &index, &snap.tree, None, &mut out),
    };
    let res = res.and_then(|()| out.flush().map_err(|e| kura::Error::io("<output>", e)));
    match res {
        // The reader went away (`kura dump ... | head`): quiet, as a SIGPIPE death.
        Err(kura::Error::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(ExitCode::from(128 + libc::SIGPIPE as u8))
        }
        r => Ok(r.map(|()| ExitCode::SUCCESS)?),
    }
}
