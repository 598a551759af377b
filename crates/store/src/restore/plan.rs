//! A restore is planned before anything is written: the planner walks the snapshot's
//! trees and decides which directories, files, links and blobs are needed, and
//! from which packs. The plan can be inspected and tested without touching disk.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::pathmatch::Globs;
use crate::repo::index::{Index, Location};
use crate::repo::tree::{Node, NodeType, Tree, MAX_DEPTH, MAX_ENTRIES};
use crate::repo::Repository;
use crate::types::{BlobId, PackId};

/// A directory of the plan: its place under the target, the plan directory it is
/// in (`None`: the target itself), and its node.
pub struct DirItem {
    pub rel: PathBuf,
    pub parent: Option<usize>,
    pub node: Node,
}

/// One file to write: its place under the target, its directory in the plan, the
/// temp name it is written under in that directory until complete, and its node.
pub struct FileItem {
    pub rel: PathBuf,
    pub dir: Option<usize>,
    pub tmp: OsString,
    pub node: Node,
}

/// A symlink to create (its node holds the target).
pub struct LinkItem {
    pub rel: PathBuf,
    pub dir: Option<usize>,
    pub node: Node,
}

/// A second name of a multiply-linked file: linked to `files[first]`, created last.
pub struct HardLink {
    pub rel: PathBuf,
    pub dir: Option<usize>,
    pub name: OsString,
    pub first: usize,
}

#[derive(Default)]
pub struct RestorePlan {
    /// Directories, parents before children.
    pub dirs: Vec<DirItem>,
    pub files: Vec<FileItem>,
    pub symlinks: Vec<LinkItem>,
    pub hardlinks: Vec<HardLink>,
    /// With a directory subpath: that directory, whose owner, mode and times the
    /// target itself takes (a restored data directory keeps its 0700).
    pub root: Option<Node>,
}

impl RestorePlan {
    /// A temp name that is also a name in the same directory (a file that happens
    /// to be called `.kura-tmp-…`), or another file's temp name, would make one file
    /// clobber the other: such temp names are hashed again until free.
    pub fn avoid_temp_collisions(&mut self) {
        let prefix = super::fs::TEMP_PREFIX.as_bytes();
        let mut taken: HashSet<(Option<usize>, OsString)> = HashSet::new();
        {
            let mut take = |dir: Option<usize>, name: &OsStr| {
                if name.as_bytes().starts_with(prefix) {
                    taken.insert((dir, name.to_os_string()));
                }
            };
            self.dirs.iter().for_each(|d| take(d.parent, d.node.name.as_os_str()));
            self.files.iter().for_each(|f| take(f.dir, f.node.name.as_os_str()));
            self.symlinks.iter().for_each(|s| take(s.dir, s.node.name.as_os_str()));
            self.hardlinks.iter().for_each(|h| take(h.dir, &h.name));
        }
        for f in &mut self.files {
            let mut attempt = 0;
            while !taken.insert((f.dir, f.tmp.clone())) {
                attempt += 1;
                f.tmp = super::fs::temp_name(f.node.name.as_os_str(), attempt);
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

/// Trees kept decoded while planning, counted in nodes: a subtree that appears in
/// many places (identical directories deduplicate) is read and decrypted once.
const TREE_CACHE_NODES: usize = 1 << 20;

pub struct Planner<'a> {
    pub repo: &'a Repository,
    pub index: &'a Index,
    pub includes: Option<Globs>,
    pub plan: RestorePlan,
    links: HashMap<(u64, u64), usize>,
    trees: HashMap<BlobId, Rc<Tree>>,
    cached_nodes: usize,
}

impl<'a> Planner<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index, includes: Option<Globs>) -> Self {
        Planner {
            repo,
            index,
            includes,
            plan: RestorePlan::default(),
            links: HashMap::new(),
            trees: HashMap::new(),
            cached_nodes: 0,
        }
    }

    pub fn load_tree(&mut self, id: &BlobId) -> Result<Rc<Tree>> {
        if let Some(t) = self.trees.get(id) {
            return Ok(t.clone());
        }
        let t = Rc::new(self.repo.load_tree(self.index, id)?);
        if self.cached_nodes + t.nodes.len() <= TREE_CACHE_NODES {
            self.cached_nodes += t.nodes.len();
            self.trees.insert(*id, t.clone());
        }
        Ok(t)
    }

    /// Refuses a tree that expands to more than `MAX_ENTRIES` entries or nests more
    /// than `MAX_DEPTH` levels, before anything is planned (see `expansion`).
    pub fn limit_expansion(&mut self, root: &BlobId, at: &Path) -> Result<()> {
        let mut memo = HashMap::new();
        let mut load = |id: &BlobId| self.load_tree(id);
        expansion(&mut load, &mut memo, root, at, 0).map(|_| ())
    }

    /// Plans the contents of `tree` into `rel` (plan directory `dir`, `None` for the
    /// target); `snap_path` is its path in the snapshot, `depth` its nesting below
    /// the restored root.
    pub fn add_tree(
        &mut self,
        tree: &Tree,
        rel: &Path,
        dir: Option<usize>,
        snap_path: &Path,
        included: bool,
        depth: usize,
    ) -> Result<()> {
        for n in &tree.nodes {
            self.add_node(n, &rel.join(n.name.as_os_str()), dir, &snap_path.join(n.name.as_os_str()), included, depth)?;
        }
        Ok(())
    }

    pub fn add_node(
        &mut self,
        n: &Node,
        rel: &Path,
        dir: Option<usize>,
        snap_path: &Path,
        included: bool,
        depth: usize,
    ) -> Result<()> {
        let included = included || self.includes.as_ref().is_none_or(|g| g.matches(snap_path, &n.name));
        match n.node_type {
            NodeType::Dir => {
                if depth >= MAX_DEPTH {
                    return Err(Error::invalid(
                        format!("directory {}", snap_path.display()),
                        format!(
                            "it is nested more than {MAX_DEPTH} levels deep, the most restore follows; \
                             restore a subpath below it (SNAPSHOT:SUBPATH)"
                        ),
                    ));
                }
                let at = self.plan.dirs.len();
                self.plan.dirs.push(DirItem { rel: rel.to_path_buf(), parent: dir, node: n.clone() });
                let sub = n
                    .subtree
                    .ok_or_else(|| Error::corrupt(format!("directory {}", rel.display()), "has no subtree"))?;
                let tree = self.load_tree(&sub)?;
                let before =
                    (self.plan.files.len(), self.plan.symlinks.len(), self.plan.hardlinks.len(), self.plan.dirs.len());
                self.add_tree(&tree, rel, Some(at), snap_path, included, depth + 1)?;
                let after =
                    (self.plan.files.len(), self.plan.symlinks.len(), self.plan.hardlinks.len(), self.plan.dirs.len());
                if !included && before == after {
                    self.plan.dirs.truncate(at); // nothing inside was included
                }
            }
            _ if !included => {}
            NodeType::Symlink => self.plan.symlinks.push(LinkItem { rel: rel.to_path_buf(), dir, node: n.clone() }),
            NodeType::File => {
                if n.links > 1 && n.inode != 0 {
                    if let Some(&first) = self.links.get(&(n.device, n.inode)) {
                        let name = n.name.as_os_str().to_os_string();
                        self.plan.hardlinks.push(HardLink { rel: rel.to_path_buf(), dir, name, first });
                        return Ok(());
                    }
                    self.links.insert((n.device, n.inode), self.plan.files.len());
                }
                self.check_size(n, snap_path)?;
                let tmp = super::fs::temp_name(n.name.as_os_str(), 0);
                self.plan.files.push(FileItem { rel: rel.to_path_buf(), dir, tmp, node: n.clone() });
            }
        }
        Ok(())
    }

    /// A file's size must be the sum of its content blobs' sizes: the size decides
    /// how large the file is made before its blobs are written at their offsets.
    /// Blobs missing from the index are left to the restore to report.
    fn check_size(&self, n: &Node, snap_path: &Path) -> Result<()> {
        let mut total = 0u64;
        for id in &n.content {
            match self.index.get(id) {
                Some(loc) => total += loc.raw_length as u64,
                None => return Ok(()),
            }
        }
        if total != n.size {
            return Err(Error::corrupt(
                format!("file {}", snap_path.display()),
                format!("its size ({} bytes) disagrees with its content blobs ({total} bytes)", n.size),
            ));
        }
        Ok(())
    }
}

/// Entries below a tree and its height, per tree id.
pub type ExpansionMemo = HashMap<BlobId, (u64, usize)>;

/// How many entries the tree `id` (at `at`, `depth` levels below the start) holds
/// with all its subtrees expanded, and how deep it nests; each distinct tree is read
/// once, so a crafted graph of a few trees that names 2^30 paths is measured in as
/// many steps as it has trees. Fails past `MAX_ENTRIES` entries or `MAX_DEPTH` levels.
pub fn expansion(
    load: &mut dyn FnMut(&BlobId) -> Result<Rc<Tree>>,
    memo: &mut ExpansionMemo,
    id: &BlobId,
    at: &Path,
    depth: usize,
) -> Result<(u64, usize)> {
    let too_deep = |p: &Path| {
        Error::invalid(
            format!("directory {}", p.display()),
            format!(
                "the tree below it nests more than {MAX_DEPTH} levels deep, the most restore and ls follow; \
                 start from a path below it (SNAPSHOT:SUBPATH)"
            ),
        )
    };
    let too_many = |p: &Path| {
        Error::invalid(
            format!("snapshot tree at {}", p.display()),
            format!(
                "it expands to more than {MAX_ENTRIES} entries, the most one restore or ls handles; \
                 take it in parts (SNAPSHOT:SUBPATH)"
            ),
        )
    };
    if depth > MAX_DEPTH {
        return Err(too_deep(at));
    }
    if let Some(&(n, h)) = memo.get(id) {
        if depth + h > MAX_DEPTH {
            return Err(too_deep(at));
        }
        return Ok((n, h));
    }
    let tree = load(id)?;
    let (mut total, mut height) = (tree.nodes.len() as u64, 0);
    for n in &tree.nodes {
        let Some(sub) = n.subtree.as_ref().filter(|_| n.node_type == NodeType::Dir) else { continue };
        let (count, h) = expansion(load, memo, sub, &at.join(n.name.as_os_str()), depth + 1)?;
        total = total.saturating_add(count);
        height = height.max(h + 1);
        if total > MAX_ENTRIES {
            return Err(too_many(at));
        }
    }
    if total > MAX_ENTRIES {
        return Err(too_many(at));
    }
    memo.insert(*id, (total, height));
    Ok((total, height))
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

/// Takes out of the jobs the (file, offset) targets in `done` (blobs a resumed
/// restore finds already written), then the blobs left with no target, then the
/// packs left with no blob.
pub fn drop_done(jobs: &mut Vec<PackJob>, done: &std::collections::HashSet<Target>) {
    for j in jobs.iter_mut() {
        for b in j.blobs.iter_mut() {
            b.2.retain(|t| !done.contains(t));
        }
        j.blobs.retain(|b| !b.2.is_empty());
    }
    jobs.retain(|j| !j.blobs.is_empty());
}
