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

/// `kura check --read-data-subset next/M` and the daemon's check job with
/// `read_data_subset = M` continue one rotation per repository: the CLI reads part
/// 1, a check run through a real daemon reads part 2, the CLI then part 3.
#[test]
fn the_command_line_and_the_daemon_continue_one_rotation() {
    let setup = crate::daemon::Setup::new();
    let web = setup.src("web");
    for i in 0..4u64 {
        write_random(&web.join(format!("f{i}")), 200_000, i + 300);
        setup.repo.kura(["backup", s(&web)]).ok();
    }
    let cache = setup.repo.base().join("cache");
    let cli_check = || {
        let mut c = setup.repo.cmd(["check", "--read-data-subset", "next/3"]);
        c.env("XDG_CACHE_HOME", &cache);
        run(&mut c)
    };
    cli_check().ok().stdout_has("reading part 1 of 3");

    let tables = format!(
        "[[system]]\nname = \"web\"\npriority = 1\npaths = [\"{}\"]\n\n\
         [jobs.check]\nschedule = \"0 0 1 1 *\"\nread_data_subset = 3\n",
        s(&web)
    );
    setup.configure("catch_up = \"skip\"", &tables);
    let d = setup.daemon_with(&[("XDG_CACHE_HOME", s(&cache))], &[]);
    let c = setup.cli(&["--json", "run", "check"]).ok().json();
    assert_eq!(c["outcome"], "ok", "{c:#}\n{}", d.log());
    assert_eq!((&c["detail"]["part"], &c["detail"]["of"]), (&2.into(), &3.into()), "{c:#}");
    drop(d);

    cli_check().ok().stdout_has("reading part 3 of 3");
    cli_check().ok().stdout_has("reading part 1 of 3");
}
