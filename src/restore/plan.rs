//! A restore is planned before anything is written: the planner walks the snapshot's
//! trees and decides which directories, files, links and blobs are needed, and
//! from which packs. The plan can be inspected and tested without touching disk.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::pathmatch::Globs;
use crate::repo::index::{Index, Location};
use crate::repo::tree::{Node, NodeType, Tree};
use crate::repo::Repository;
use crate::types::{BlobId, PackId};

/// One file to write: its place under the target, the temp name it is written
/// under until complete (both relative to the target), and its node.
pub struct FileItem {
    pub rel: PathBuf,
    pub tmp: PathBuf,
    pub node: Node,
}

#[derive(Default)]
pub struct RestorePlan {
    /// Directories, parents before children (relative to the target; "" is the target).
    pub dirs: Vec<(PathBuf, Node)>,
    pub files: Vec<FileItem>,
    pub symlinks: Vec<(PathBuf, Node)>,
    /// (path, path of the first file of the same inode), created last.
    pub hardlinks: Vec<(PathBuf, PathBuf)>,
    /// With a directory subpath: that directory, whose owner, mode and times the
    /// target itself takes (a restored data directory keeps its 0700).
    pub root: Option<Node>,
}

impl RestorePlan {
    /// A temp name that is also a path of the plan (a file named `.a.kura-restore`
    /// beside `a`) would make one file clobber the other: such temp names get a
    /// numeric suffix instead. Temp names never collide among themselves.
    pub fn avoid_temp_collisions(&mut self) {
        let temp_like =
            |p: &&PathBuf| p.file_name().is_some_and(|n| n.as_bytes().windows(13).any(|w| w == b".kura-restore"));
        let taken: HashSet<PathBuf> = (self.dirs.iter().map(|d| &d.0))
            .chain(self.files.iter().map(|f| &f.rel))
            .chain(self.symlinks.iter().map(|s| &s.0))
            .chain(self.hardlinks.iter().map(|h| &h.0))
            .filter(temp_like)
            .cloned()
            .collect();
        for f in &mut self.files {
            let mut n = 0;
            while taken.contains(&f.tmp) {
                n += 1;
                let mut name = super::fs::temp_path(&f.rel).into_os_string();
                name.push(format!(".{n}"));
                f.tmp = PathBuf::from(name);
            }
        }
    }
}

/// Where one needed blob goes: file index and byte offset.
pub type Target = (usize, u64);

/// Blobs grouped by pack, so each pack is read once.
pub struct PackJob {
    pub pack: PackId,
    pub blobs: Vec<(BlobId, Location, Vec<Target>)>,
}

/// Resolves `subpath` ("/home/a") inside the snapshot's root tree.
pub fn resolve(repo: &Repository, index: &Index, root: &BlobId, subpath: &str, snap: &str) -> Result<Option<Node>> {
    let mut tree = repo.load_tree(index, root)?;
    let comps: Vec<&str> = subpath.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let mut node = None;
    for (i, c) in comps.iter().enumerate() {
        let n = tree
            .find(c.as_bytes())
            .cloned()
            .ok_or_else(|| Error::PathNotInSnapshot { snapshot: snap.into(), path: subpath.into() })?;
        if i + 1 < comps.len() {
            let sub =
                n.subtree.ok_or_else(|| Error::PathNotInSnapshot { snapshot: snap.into(), path: subpath.into() })?;
            tree = repo.load_tree(index, &sub)?;
        }
        node = Some(n);
    }
    Ok(node)
}

pub struct Planner<'a> {
    pub repo: &'a Repository,
    pub index: &'a Index,
    pub includes: Option<Globs>,
    pub plan: RestorePlan,
    links: HashMap<(u64, u64), PathBuf>,
}

impl<'a> Planner<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index, includes: Option<Globs>) -> Self {
        Planner { repo, index, includes, plan: RestorePlan::default(), links: HashMap::new() }
    }

    /// Plans the contents of `tree` into `rel`; `snap_path` is its path in the snapshot.
    pub fn add_tree(&mut self, tree: &Tree, rel: &Path, snap_path: &Path, included: bool) -> Result<()> {
        for n in &tree.nodes {
            self.add_node(n, &rel.join(n.name.as_os_str()), &snap_path.join(n.name.as_os_str()), included)?;
        }
        Ok(())
    }

    pub fn add_node(&mut self, n: &Node, rel: &Path, snap_path: &Path, included: bool) -> Result<()> {
        let included = included || self.includes.as_ref().is_none_or(|g| g.matches(snap_path, &n.name));
        match n.node_type {
            NodeType::Dir => {
                let at = self.plan.dirs.len();
                self.plan.dirs.push((rel.to_path_buf(), n.clone()));
                let sub = n
                    .subtree
                    .ok_or_else(|| Error::corrupt(format!("directory {}", rel.display()), "has no subtree"))?;
                let tree = self.repo.load_tree(self.index, &sub)?;
                let before =
                    (self.plan.files.len(), self.plan.symlinks.len(), self.plan.hardlinks.len(), self.plan.dirs.len());
                self.add_tree(&tree, rel, snap_path, included)?;
                let after =
                    (self.plan.files.len(), self.plan.symlinks.len(), self.plan.hardlinks.len(), self.plan.dirs.len());
                if !included && before == after {
                    self.plan.dirs.truncate(at); // nothing inside was included
                }
            }
            _ if !included => {}
            NodeType::Symlink => self.plan.symlinks.push((rel.to_path_buf(), n.clone())),
            NodeType::File => {
                if n.links > 1 && n.inode != 0 {
                    if let Some(first) = self.links.get(&(n.device, n.inode)) {
                        self.plan.hardlinks.push((rel.to_path_buf(), first.clone()));
                        return Ok(());
                    }
                    self.links.insert((n.device, n.inode), rel.to_path_buf());
                }
                let tmp = super::fs::temp_path(rel);
                self.plan.files.push(FileItem { rel: rel.to_path_buf(), tmp, node: n.clone() });
            }
        }
        Ok(())
    }
}

/// Groups the blobs of `files[i]` for every `i` in `todo` by pack, in pack order.
pub fn pack_jobs(index: &Index, files: &[FileItem], todo: &[usize]) -> Result<Vec<PackJob>> {
    let mut by_pack: HashMap<PackId, HashMap<BlobId, (Location, Vec<Target>)>> = HashMap::new();
    for &i in todo {
        let mut offset = 0u64;
        for id in &files[i].node.content {
            let loc = index
                .get(id)
                .ok_or_else(|| Error::MissingBlob { blob: format!("{id} of {}", files[i].rel.display()) })?;
            by_pack.entry(loc.pack).or_default().entry(*id).or_insert((loc, Vec::new())).1.push((i, offset));
            offset += loc.raw_length as u64;
        }
    }
    let mut jobs: Vec<PackJob> = by_pack
        .into_iter()
        .map(|(pack, blobs)| {
            let mut blobs: Vec<_> = blobs.into_iter().map(|(id, (loc, t))| (id, loc, t)).collect();
            blobs.sort_by_key(|b| b.1.offset);
            PackJob { pack, blobs }
        })
        .collect();
    jobs.sort_by_key(|j| j.pack);
    Ok(jobs)
}
