//! Backups that meet faults: a put that landed while the backup saw a time-out.

use std::path::Path;
use std::sync::Arc;

use crate::backend::memory::MemoryBackend;
use crate::backup::{self, BackupOptions};
use crate::check::ReadData;
use crate::error::Result;
use crate::progress::NoProgress;
use crate::repo::testing::{assert_all_restore, assert_check_clean, lost_reply_at_every_put, make_tree, small_repo};
use crate::repo::Repository;

const PASS: &[u8] = b"backup unit tests";

fn backup(repo: &Arc<Repository>, dir: &Path) -> Result<()> {
    let opts = BackupOptions { paths: vec![dir.to_path_buf()], threads: Some(1), ..Default::default() };
    let out = backup::run(repo, &opts, &NoProgress)?;
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    Ok(())
}

/// The backup stops at the lost reply, and the next backup completes: the
/// repository checks clean and every snapshot (the parent, and one or two of the
/// new tree) restores identical to its source.
#[test]
fn a_backup_resumes_after_a_lost_reply_at_every_put() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second, scratch) = (dir.path().join("first"), dir.path().join("second"), dir.path().join("scratch"));
    std::fs::create_dir(&scratch).unwrap();
    make_tree(&first, &[("a.bin", 60_000, 1), ("d/b.bin", 30_000, 2)]);
    make_tree(&second, &[("a.bin", 60_000, 1), ("c.bin", 150_000, 3), ("d/e.bin", 2_000, 4), ("d/f.bin", 70_000, 5)]);
    let base = Arc::new(MemoryBackend::new());
    backup(&small_repo(base.clone(), PASS), &first).unwrap();
    let n = lost_reply_at_every_put(
        &base,
        |b| backup(&Arc::new(Repository::open(b, PASS)?), &second),
        |inner| {
            let repo = Arc::new(Repository::open(inner.clone(), PASS).unwrap());
            assert_check_clean(&repo, ReadData::All);
            assert_all_restore(&repo, &scratch);
        },
    );
    assert!(n >= 5, "only {n} puts");
}
