//! An interrupted restore of a large file resumes: the blobs its temp file already
//! holds are checked and kept, and only the rest is read from the repository.

use std::fs;
use std::path::PathBuf;

use rand::RngCore;

use crate::util::*;

/// The data packs of a local repository (more than 1 MiB: trees live in small packs).
fn data_packs(repo: &std::path::Path) -> Vec<PathBuf> {
    let mut packs: Vec<PathBuf> = fs::read_dir(repo.join("data"))
        .unwrap()
        .flatten()
        .flat_map(|d| fs::read_dir(d.path()).unwrap().flatten().map(|e| e.path()))
        .filter(|p| fs::metadata(p).unwrap().len() > 1 << 20)
        .collect();
    packs.sort();
    packs
}

#[test]
fn an_interrupted_restore_of_a_large_file_resumes_without_starting_over() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    fs::create_dir_all(&src).unwrap();
    let mut big = vec![0u8; 40 << 20];
    rand::thread_rng().fill_bytes(&mut big);
    fs::write(src.join("disk.img"), &big).unwrap();
    r.backup(&[&src], &[]);
    let packs = data_packs(&r.path);
    assert!(packs.len() >= 3, "the file should span several packs: {packs:?}");

    // The last pack read (jobs go in pack order) cannot be read: the restore stops
    // with an error after the other packs were written.
    let last = packs.last().unwrap().clone();
    let saved = r.base().join("saved-pack");
    fs::rename(&last, &saved).unwrap();
    fs::create_dir(&last).unwrap();
    let target = r.base().join("target");
    let out = r.kura(["restore", "latest", "--target", s(&target)]);
    assert_eq!(out.code, 2, "{out}");
    let restored = restored(&target, &src);
    assert!(!restored.join("disk.img").exists(), "a half-written file reached its final name");
    let temps: Vec<_> = fs::read_dir(&restored).unwrap().flatten().collect();
    assert_eq!(temps.len(), 1, "the temp file is kept for the next run: {temps:?}");

    fs::remove_dir(&last).unwrap();
    fs::rename(&saved, &last).unwrap();
    let v = r.kura(["--json", "restore", "latest", "--target", s(&target), "--verify"]).ok().json();
    assert_eq!(num(&v, "files_resumed"), 1, "{v:#}");
    assert!(num(&v, "bytes_resumed") >= 8 << 20, "{v:#}");
    assert!(num(&v, "bytes_written") + num(&v, "bytes_resumed") == 40 << 20, "{v:#}");
    assert!(num(&v, "packs_read") < packs.len() as u64, "{v:#}");
    assert_eq!(fs::read(restored.join("disk.img")).unwrap(), big);
    assert_eq!(fs::read_dir(&restored).unwrap().count(), 1, "the temp file is gone");
}
