//! Files spread over several packs, which the pack workers write together: each is
//! created before the workers start, or resumed from the temp file an interrupted
//! restore left, keeping every blob that file already holds.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::fs::{self, Dirs, Identity};
use super::plan::{PackJob, RestorePlan, Target};
use crate::chunk::Chunker;
use crate::error::{Error, Result};
use crate::repo::index::Index;
use crate::repo::tree::Node;
use crate::repo::Repository;

/// The files spread over several packs, opened for the workers.
pub(super) struct SpreadFiles {
    /// Per plan file: which file its shared temp file is (`None`: not spread).
    pub ids: Vec<Option<Identity>>,
    /// The resumed files, each with an open handle.
    pub resumed: Vec<(usize, File)>,
    /// (file, offset) targets their temp files already hold.
    pub done: HashSet<Target>,
    /// Bytes of those blobs, not fetched again.
    pub bytes_resumed: u64,
    /// Files rebuilt from their old version's blocks (`RestoreOptions::reuse_existing`).
    pub files_reused: u64,
    /// Bytes of those blocks, copied from the old file instead of fetched.
    pub bytes_reused: u64,
}

/// Creates the temp file of each file spread over several packs, or reopens the one
/// an interrupted run left and finds the blobs it already holds. With `reuse` (the
/// chunker, and the files to write), a file to write whose old version is at its
/// final name is created here too, filled with the blocks the old version holds.
pub(super) fn open_spread_files(
    repo: &Repository,
    index: &Index,
    dirs: &Dirs,
    plan: &RestorePlan,
    jobs: &[PackJob],
    reuse: Option<(&Chunker, &[usize])>,
) -> Result<SpreadFiles> {
    let mut out = SpreadFiles {
        ids: vec![None; plan.files.len()],
        resumed: Vec::new(),
        done: HashSet::new(),
        bytes_resumed: 0,
        files_reused: 0,
        bytes_reused: 0,
    };
    let mut set: BTreeSet<usize> = spread_over_packs(jobs, plan.files.len()).into_iter().collect();
    let mut old: HashMap<usize, File> = HashMap::new();
    if let Some((_, todo)) = reuse {
        for &i in todo {
            let f = &plan.files[i];
            let (shown, dir) = (dirs.shown(&f.rel), dirs.get(f.dir)?);
            if let Ok(file) = fs::open_read(&dir, f.node.name.as_os_str(), &shown) {
                old.insert(i, file);
                set.insert(i);
            }
        }
    }
    for i in set {
        let f = &plan.files[i];
        let (shown, dir) = (dirs.shown(&f.rel), dirs.get(f.dir)?);
        let file = match fs::reopen_temp(&dir, &f.tmp, f.node.size, &shown)? {
            Some(file) => {
                for (at, len) in written_blobs(repo, index, &file, &f.node, &shown)? {
                    out.done.insert((i, at));
                    out.bytes_resumed += len;
                }
                out.resumed.push((i, file.try_clone().map_err(|e| Error::io(&shown, e))?));
                file
            }
            None => {
                let file = fs::create_temp(&dir, &f.tmp, f.node.size, &shown)?;
                if let (Some(src), Some((chunker, _))) = (old.remove(&i), reuse) {
                    let tmp = fs::open_temp(&dir, &f.tmp, fs::identity(&file, &shown)?, &shown)?;
                    out.bytes_reused += reuse_old(repo, index, chunker, &src, &tmp, i, &f.node, &shown, &mut out.done)?;
                    out.files_reused += 1;
                    out.resumed.push((i, file.try_clone().map_err(|e| Error::io(&shown, e))?));
                }
                file
            }
        };
        out.ids[i] = Some(fs::identity(&file, &shown)?);
    }
    Ok(out)
}

/// Copies into `dst` every blob of `node` that the old file `src` holds, at its new
/// offset; records those (file, offset) targets as done. Returns the bytes copied.
#[allow(clippy::too_many_arguments)]
fn reuse_old(
    repo: &Repository,
    index: &Index,
    chunker: &Chunker,
    src: &File,
    dst: &File,
    i: usize,
    node: &Node,
    shown: &Path,
    done: &mut HashSet<Target>,
) -> Result<u64> {
    let have = super::reuse::old_blocks(repo.key(), chunker, src, shown)?;
    let (mut at, mut copied) = (0u64, 0u64);
    for id in &node.content {
        let len = index
            .get(id)
            .ok_or_else(|| Error::MissingBlob { blob: format!("{id} of {}", shown.display()) })?
            .raw_length as u64;
        if let Some(&(from, l)) = have.get(id).filter(|(_, l)| *l == len) {
            super::reuse::copy_range(src, from, dst, at, l, shown)?;
            done.insert((i, at));
            copied += len;
        }
        at += len;
    }
    Ok(copied)
}

/// Files whose blobs come from more than one pack (plan indexes, ascending).
fn spread_over_packs(jobs: &[PackJob], n_files: usize) -> Vec<usize> {
    let mut packs_per_file = vec![0u32; n_files];
    for j in jobs {
        let mut files: Vec<usize> = j.blobs.iter().flat_map(|b| b.2.iter().map(|t| t.0)).collect();
        files.sort_unstable();
        files.dedup();
        files.into_iter().for_each(|f| packs_per_file[f] += 1);
    }
    (0..n_files).filter(|&f| packs_per_file[f] > 1).collect()
}

/// The (offset, length) of a file's blobs that its temp file already holds, as a
/// resumed restore finds them: each blob's range is read back and hashed like a
/// backup would (`--verify`'s proof), so only blobs written in full count.
fn written_blobs(repo: &Repository, index: &Index, file: &File, node: &Node, shown: &Path) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let (mut at, mut buf) = (0u64, Vec::new());
    for id in &node.content {
        let len = index
            .get(id)
            .ok_or_else(|| Error::MissingBlob { blob: format!("{id} of {}", shown.display()) })?
            .raw_length;
        buf.resize(len as usize, 0);
        file.read_exact_at(&mut buf, at).map_err(|e| Error::io(shown, e))?;
        if repo.key().blob_id(&buf) == *id {
            out.push((at, len as u64));
        }
        at += len as u64;
    }
    Ok(out)
}
