//! Damaged and missing packs are found by `check`; `restore` restores everything
//! that is readable and names the files it could not restore.

use std::fs;
use std::path::Path;

use crate::util::*;

/// A repository with one snapshot of a tree holding a 3 MiB random file. Returns the
/// repo, the source, and the pack holding the random file's data (the largest pack).
fn setup() -> (TestRepo, std::path::PathBuf, std::path::PathBuf) {
    let r = TestRepo::new();
    let src = r.base().join("src");
    sample_tree(&src, 3 << 20);
    r.backup(&[&src], &[]);
    r.kura(["check", "--read-data"]).ok().stdout_has("no errors were found");
    let pack = r.packs()[0].0.clone();
    (r, src, pack)
}

fn pack_id(p: &Path) -> &str {
    p.file_name().unwrap().to_str().unwrap()
}

#[test]
fn one_flipped_byte_damages_one_file_which_check_and_restore_name() {
    let (r, src, pack) = setup();
    let id = pack_id(&pack).to_string();
    assert!(pack.parent().unwrap().ends_with(&id[..2]), "packs live under data/XX/: {}", pack.display());

    // Flip one byte in the middle of the pack: inside the random file's data.
    flip_middle_byte(&pack);

    let random = src.join("data/random.bin");
    let out = r.kura(["check", "--read-data"]);
    out.code(1).stdout_has(&id).stdout_has("damaged").stdout_has(s(&random));

    let rep = r.kura(["--json", "check", "--read-data"]).code(1).json();
    let damaged = rep["damaged_packs"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{rep:#}");
    assert_eq!(damaged[0]["pack"], id.as_str(), "{rep:#}");
    // Exactly the file whose content holds the damaged blob: the pack also holds
    // every other file of the tree, and those restore fine.
    let affects: Vec<&str> = damaged[0]["affects"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(affects.len(), 1, "{affects:?} should name only {}", random.display());
    assert!(affects[0].ends_with(&format!(": {}", s(&random))), "{affects:?} should name {}", random.display());
    assert_eq!(damaged[0]["damaged_blobs"].as_array().unwrap().len(), 1, "{rep:#}");

    // Restore writes everything readable, names the damaged file, leaves no temp
    // file, and exits 1.
    let target = r.base().join("target");
    let out = r.restore("latest", &target, &[]);
    let copy = restored(&target, &src);
    out.code(1).stderr_has("damaged").stderr_has(&id).stderr_has(s(&copy.join("data/random.bin")));
    assert!(!copy.join("data/random.bin").exists(), "a file whose data failed authentication must not appear");
    let mut expected = listing(&src);
    expected.remove(Path::new("data/random.bin"));
    assert_eq!(listing(&copy), expected, "every other file is restored identically, and nothing else is there");
    let temps: Vec<_> = scan(&target).into_keys().filter(|p| s(p).contains("kura-restore")).collect();
    assert!(temps.is_empty(), "temp files left behind: {temps:?}");
    let json = r.kura(["--json", "restore", "latest", "--target", s(&r.base().join("target2"))]).code(1).json();
    let files = json["damaged"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{json:#}");
    assert!(files[0]["snapshot_path"].as_str().unwrap().ends_with(s(&random)), "{json:#}");
    assert_eq!(files[0]["pack"], id.as_str(), "{json:#}");

    // Reading only part of the packs still finds it when that part includes the pack.
    let first_byte = u8::from_str_radix(&id[..2], 16).unwrap() as u32;
    let part = format!("{}/4", first_byte % 4 + 1);
    r.kura(["check", "--read-data-subset", &part]).code(1).stdout_has(&id);
}

#[test]
fn a_missing_pack_is_reported_by_a_plain_check() {
    let (r, src, pack) = setup();
    let id = pack_id(&pack).to_string();
    fs::remove_file(&pack).unwrap();

    let out = r.kura(["check"]);
    out.code(1).stdout_has(&id).stdout_has("missing").stdout_has(s(&src.join("data/random.bin")));
    let rep = r.kura(["--json", "check"]).code(1).json();
    assert_eq!(rep["damaged_packs"][0]["pack"], id.as_str(), "{rep:#}");
    assert_eq!(num(&rep, "packs_read"), 0, "a plain check reads no data: {rep:#}");

    let target = r.base().join("target");
    // Everything in other packs is restored; the files that needed it are named.
    let copy = restored(&target, &src);
    r.restore("latest", &target, &[])
        .code(1)
        .stderr_has(&id)
        .stderr_has("not found")
        .stderr_has(s(&copy.join("data/random.bin")));
    assert!(!copy.join("data/random.bin").exists());
    let temps: Vec<_> = scan(&target).into_keys().filter(|p| s(p).contains("kura-restore")).collect();
    assert!(temps.is_empty(), "temp files left behind: {temps:?}");
}

#[test]
fn a_truncated_pack_is_reported_by_a_plain_check() {
    let (r, _src, pack) = setup();
    let len = fs::metadata(&pack).unwrap().len();
    fs::OpenOptions::new().write(true).open(&pack).unwrap().set_len(len - 1).unwrap();
    r.kura(["check"]).code(1).stdout_has(pack_id(&pack)).stdout_has("the index says");
}

#[test]
fn a_damaged_file_spread_over_several_packs_is_left_out_and_its_temp_file_removed() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    // 20 MiB: more than one 16 MiB pack, so the file is written by several workers.
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("big.bin"), 20 << 20, 7);
    write(&src.join("small.txt"), "fine\n");
    r.backup(&[&src], &[]);
    let packs = r.packs();
    assert!(packs.len() >= 3, "two data packs and a tree pack: {packs:?}");
    let (pack, size) = packs[0].clone();
    let mut bytes = fs::read(&pack).unwrap();
    bytes[size as usize / 2] ^= 0x80;
    fs::write(&pack, &bytes).unwrap();

    let rep = r.kura(["--json", "check", "--read-data"]).code(1).json();
    let affects: Vec<&str> =
        rep["damaged_packs"][0]["affects"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(affects.len(), 1, "{rep:#}");
    assert!(affects[0].ends_with(s(&src.join("big.bin"))), "{affects:?}");

    let target = r.base().join("target");
    let out = r.restore("latest", &target, &["--verify"]);
    let copy = restored(&target, &src);
    out.code(1).stderr_has(s(&copy.join("big.bin")));
    let v = out.json();
    assert_eq!(v["damaged"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["verify_failures"], serde_json::json!([]), "the left-out file is not a verify failure: {v:#}");
    assert_eq!(fs::read_to_string(copy.join("small.txt")).unwrap(), "fine\n");
    let left: Vec<_> = scan(&copy).into_keys().collect();
    assert_eq!(left, [Path::new(""), Path::new("small.txt")], "only the sound file, no temp file");
}
