//! `check --read-data-subset next/M` rotates through the parts, and M runs read
//! every pack exactly once.

use crate::util::*;

#[test]
fn rotating_subsets_cover_every_pack_once() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Several backups of distinct random data: several packs.
    for i in 0..6u64 {
        write_random(&src.join(format!("f{i}")), 300_000, i + 100);
        r.kura(["backup", s(&src)]).ok();
    }
    let cache = r.base().join("cache");
    let check = |args: &[&str]| {
        let mut c = r.cmd(args);
        c.env("XDG_CACHE_HOME", &cache);
        run(&mut c)
    };
    let all = check(&["--json", "check"]);
    all.ok();
    let packs = num(&serde_json::from_str(&all.stdout).unwrap(), "packs");
    assert!(packs >= 6, "{}", all.stdout);
    let mut read = 0;
    for _ in 0..4 {
        let out = check(&["--json", "check", "--read-data-subset", "next/4"]);
        out.ok();
        read += num(&serde_json::from_str(&out.stdout).unwrap(), "packs_read");
    }
    assert_eq!(read, packs, "4 rotating parts read each pack exactly once");
    check(&["check", "--read-data-subset", "next/4"]).ok().stdout_has("reading part 1 of 4");
    check(&["check", "--read-data-subset", "next/0"]).code(2).stderr_has("next/M");
}
