//! Incident detection in the backups (docs/DETECTION.md), end to end: a real daemon
//! backs a real tree up every two seconds, a ransomware simulation encrypts it with
//! openssl, and the next snapshot is suspect, a draft incident and a notification
//! exist, and the last clean snapshot survives a forget and the daemon's prune.
//! Ordinary change over 30 rounds raises nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::daemon::{eventually, Setup};
use crate::util::*;

/// A tree of compressible text files in a few directories.
pub fn text_tree(root: &Path, files: usize) {
    let words = ["invoice", "total", "customer", "order", "shipped", "paid", "north", "south", "item", "qty"];
    for i in 0..files {
        let mut body = String::new();
        for j in 0..(300 + i * 7 % 400) {
            body.push_str(words[(i * 31 + j * 17) % words.len()]);
            body.push(if j % 12 == 11 { '\n' } else { ' ' });
        }
        write(&root.join(format!("dept{}/doc_{i:03}.txt", i % 4)), body);
    }
}

/// Encrypts `share` of the files with openssl, gives the copies a `.locked`
/// extension, deletes the originals and drops a ransom note in every directory.
pub fn ransomware(root: &Path, share: f64) -> usize {
    let mut files: Vec<PathBuf> = files_under(root).into_iter().map(|p| root.join(p)).collect();
    files.sort();
    let n = (files.len() as f64 * share).round() as usize;
    for f in files.iter().take(n) {
        let out = f.with_file_name(format!("{}.locked", f.file_name().unwrap().to_str().unwrap()));
        let st = Command::new("openssl")
            .args(["enc", "-aes-256-cbc", "-pbkdf2", "-salt", "-pass", "pass:ransom", "-in"])
            .arg(f)
            .arg("-out")
            .arg(&out)
            .status()
            .expect("run openssl");
        assert!(st.success(), "openssl failed on {}", f.display());
        std::fs::remove_file(f).unwrap();
    }
    for d in std::fs::read_dir(root).unwrap() {
        let d = d.unwrap().path();
        if d.is_dir() {
            write(&d.join("HOW_TO_DECRYPT_FILES.txt"), "Your files are encrypted. Pay 1 BTC to recover them.\n");
        }
    }
    n
}

fn signals(repo: &TestRepo, state: &Path) -> Vec<Value> {
    match repo.kura(["--json", "--state", s(state), "signals"]).ok().json() {
        Value::Array(a) => a,
        v => panic!("signals --json is not a list: {v}"),
    }
}

fn ok_backups(setup: &Setup) -> usize {
    setup.jobs(&[]).iter().filter(|r| r["job"] == "backup" && r["system"] == "web" && r["outcome"] == "ok").count()
}

#[test]
fn ransomware_in_a_daemon_backed_tree_is_caught_and_the_clean_point_is_held() {
    let setup = Setup::new();
    let web = setup.repo.base().join("src/web");
    text_tree(&web, 80);
    let events = setup.repo.base().join("events.jsonl");
    let db = setup.src("db");
    let tables = |schedule: &str| {
        format!(
            "[[system]]\nname = \"web\"\npriority = 2\npaths = [\"{}\"]\n{schedule}\n\n\
             [[system]]\nname = \"db\"\npriority = 3\npaths = [\"{}\"]\n\n\
             [jobs.prune]\nschedule = \"0 0 1 1 *\"\nkeep_last = 1\n\n\
             [notify]\ncommand = \"cat >> {}; echo >> {}\"\n",
            s(&web),
            s(&db),
            s(&events),
            s(&events)
        )
    };
    setup.configure("", &tables("schedule = \"*/2 * * * * *\""));
    let d = setup.daemon();
    // The baseline: the default rules judge nothing before 5 comparable snapshots.
    eventually(90, "seven scheduled backups", || {
        let runs = setup.jobs(&[]);
        let failed: Vec<&Value> = runs.iter().filter(|r| r["outcome"] == "failed").collect();
        assert!(failed.is_empty(), "{failed:#?}\n{}", d.log());
        (ok_backups(&setup) >= 7).then_some(())
    });

    // Stop the schedule, so that no backup runs in the middle of the attack.
    setup.configure("", &tables(""));
    d.signal(libc::SIGHUP);
    eventually(30, "the schedule gone and nothing running", || {
        let st = setup.status();
        (st["systems"][0]["schedule"].is_null() && st["running"].as_array().is_some_and(|r| r.is_empty())).then_some(())
    });
    setup.cli(&["--json", "run", "db"]).ok();
    setup.cli(&["--json", "run", "web"]).ok();
    let before: Vec<Value> =
        signals(&setup.repo, &setup.state).into_iter().filter(|a| a["tags"][0] == "system:web").collect();
    let clean = before.last().unwrap().clone();
    assert!(before.iter().all(|a| a["verdict"] != "suspect"), "{before:#?}");
    assert_eq!(clean["verdict"], "clean", "{clean:#}");

    let encrypted = ransomware(&web, 0.6);
    assert_eq!(encrypted, 48);
    setup.cli(&["--json", "run", "web"]).ok();

    // The next snapshot is suspect, with the reasons.
    let after = signals(&setup.repo, &setup.state);
    let hit = after.last().unwrap();
    assert_eq!(hit["verdict"], "suspect", "{hit:#}");
    let rules: Vec<&str> = hit["reasons"].as_array().unwrap().iter().map(|r| text(r, "rule")).collect();
    assert!(rules.contains(&"extension-renames") && rules.contains(&"ransom-notes"), "{rules:?}");
    assert!(rules.contains(&"encrypted-change"), "{rules:?}");
    assert_eq!(hit["signals"]["ext_changed"], 48);
    assert_eq!(hit["signals"]["note_names"], 4);
    setup.repo.kura(["--state", s(&setup.state), "snapshots"]).ok().stdout_has("SUSPECT");

    // A draft incident names the system and the snapshot; real or not is still open.
    let incidents = run(bare_kura().args(["--json", "--state", s(&setup.state), "incident", "list"])).ok().json();
    let list = incidents.as_array().unwrap();
    assert_eq!(list.len(), 1, "{incidents:#}");
    let inc = &list[0];
    assert!(text(inc, "title").contains("web"), "{inc:#}");
    assert!(inc["real"].is_null(), "{inc:#}");
    let shown = run(bare_kura().args(["--state", s(&setup.state), "incident", "show", "1"])).ok().stdout.clone();
    assert!(shown.contains(&text(hit, "id")[..8]) && shown.contains(&text(&clean, "id")[..8]), "{shown}");

    // The notification went out through the configured command.
    eventually(30, "the snapshot_suspect notification", || {
        std::fs::read_to_string(&events).ok().filter(|t| t.contains("snapshot_suspect")).map(|_| ())
    });

    // The clean point is the snapshot before the attack.
    let cp = setup.repo.kura(["--json", "--state", s(&setup.state), "clean-point", "web"]).ok().json();
    assert_eq!(cp["clean"], clean["id"], "{cp:#}");
    assert_eq!(cp["ranked"][0]["status"], "suspect", "{cp:#}");

    // A recovery of an incident without compromised-since restores the clean point,
    // and says so on the timeline.
    let plan = setup.repo.base().join("plan.toml");
    let target = setup.repo.base().join("restore/web");
    write(
        &plan,
        format!(
            "name = 'web back'\nconfig = '{}'\n\n[[system]]\nname = 'web'\ntarget = '{}'\n",
            s(&setup.config),
            s(&target)
        ),
    );
    let cli = |args: &[&str]| {
        run(bare_kura().args(["--state", s(&setup.state)]).args(args).env("KURA_CONFIG", &setup.config))
    };
    cli(&["incident", "resolve-cause", "1", "--note", "the infected laptop is off the network"]).ok();
    let rec = cli(&["--json", "recover", "--incident", "1", "--plan", s(&plan)]).ok().json();
    assert_eq!(rec["systems"][0]["snapshot"], clean["id"], "{rec:#}");
    let restored: Vec<PathBuf> = files_under(&target).into_iter().collect();
    assert_eq!(restored.len(), 80, "{restored:?}");
    assert!(restored.iter().all(|p| p.extension().is_some_and(|e| e == "txt")), "{restored:?}");
    cli(&["incident", "show", "1"]).ok().stdout_has("restoring the clean point");

    // The scope, from the backups: web affected (against its live, encrypted data),
    // db not; it lands in the incident's fields, its export and its report.
    let sc = cli(&["--json", "incident", "scope", "1"]).ok().json();
    let web_scope = &sc["systems"][0];
    assert_eq!((web_scope["affected"].as_bool(), num(web_scope, "encrypted")), (Some(true), 48), "{sc:#}");
    assert_eq!((num(web_scope, "added"), num(web_scope, "deleted")), (4, 0), "{sc:#}");
    assert_eq!(web_scope["compared_with"], "live");
    assert_eq!(sc["systems"][1]["affected"], false, "{sc:#}");
    assert!(text(&sc, "scope").contains("1 of 2 systems affected: web. Unaffected: db."), "{sc:#}");
    let export = cli(&["incident", "export", "1"]).ok().stdout.clone();
    assert!(export.contains("web: 48 files encrypted, 4 added, 0 deleted"), "{export}");
    let report = cli(&["report", "--incident", "1", "--format", "html"]).ok().stdout.clone();
    assert!(report.contains("48 files encrypted"), "the report shows the damage");
    // The signal timeline: web's snapshots, the suspect one red, the clean point green.
    assert!(report.contains("<section id=\"signals\"") && report.contains("<h3>web</h3>"), "the signal timeline");
    assert_eq!(report.matches("class=\"suspect\"").count(), 1);
    assert_eq!(report.matches("class=\"clean-point\"").count(), 1);
    assert!(report.contains(&format!("{} ", &text(&clean, "id")[..8])) && report.contains("(clean point)"));
    // Confirmed real: the times default from the evidence, and say so.
    let upd = cli(&["--json", "incident", "update", "1", "--real", "true"]).ok().json();
    // (the state keeps microseconds)
    assert_eq!(text(&upd, "compromised_since")[..26], text(hit, "time")[..26], "{upd:#}");
    cli(&["incident", "show", "1"]).ok().stdout_has("defaults from the evidence");

    // The clean point is held: a forget that keeps only the newest snapshot keeps it too.
    let holds = setup.repo.kura(["--json", "--state", s(&setup.state), "signals", "holds"]).ok().json();
    assert_eq!(holds[0]["snapshot"], clean["id"], "{holds:#}");
    setup.repo.kura(["--state", s(&setup.state), "forget", "--keep-last", "1"]).ok().stdout_has("held:");
    let left: Vec<Value> = setup.repo.snapshots(&["--tag", "system:web"]);
    let ids: Vec<&str> = left.iter().map(|v| text(v, "id")).collect();
    assert_eq!(ids, vec![text(&clean, "id"), text(hit, "id")]);

    // The daemon's prune job goes through the same plan.
    setup.cli(&["--json", "run", "web"]).ok();
    let pruned = setup.cli(&["--json", "run", "prune"]).ok().json();
    assert_eq!(pruned["outcome"], "ok", "{pruned:#}");
    let ids: Vec<String> =
        setup.repo.snapshots(&["--tag", "system:web"]).iter().map(|v| text(v, "id").to_string()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], text(&clean, "id"), "the held snapshot survives the prune job");

    // Released, it goes the way of the policy.
    setup.repo.kura(["--state", s(&setup.state), "signals", "release", &text(&clean, "id")[..8]]).ok();
    setup.repo.kura(["--state", s(&setup.state), "forget", "--keep-last", "1"]).ok();
    assert_eq!(setup.repo.snapshots(&["--tag", "system:web"]).len(), 1);
}

/// The corpus generator of the benches (stdlib Python), kept in the repository so
/// that a clean clone runs this test.
pub fn make_corpus() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/lib/make_corpus.py");
    assert!(p.is_file(), "the corpus generator {} is missing", p.display());
    p
}

#[test]
fn thirty_rounds_of_ordinary_change_raise_no_suspect_snapshot() {
    let repo = TestRepo::new();
    let tree = repo.base().join("tree");
    let gen = make_corpus();
    let py = |args: &[&str]| {
        let st = Command::new("python3").arg(&gen).args(args).stdout(std::process::Stdio::null()).status().unwrap();
        assert!(st.success(), "make_corpus.py {args:?}");
    };
    py(&[s(&tree), "--size-mb", "6", "--files", "400", "--seed", "7"]);
    repo.backup(&[&tree], &[]);
    for round in 1..=30u64 {
        py(&["--mutate", s(&tree), "--seed", &(100 + round).to_string()]);
        if round % 6 == 0 {
            // Now and then someone drops a few large incompressible files (media, archives).
            for k in 0..3 {
                write_random(&tree.join(format!("media/upload_{round}_{k}.mp4")), 3 << 20, round * 10 + k);
            }
        }
        repo.backup(&[&tree], &[]);
    }
    let state = repo.base().join("state.db");
    let list = signals(&repo, &state);
    assert_eq!(list.len(), 31);
    let judged = list.iter().filter(|a| a["verdict"] == "clean").count();
    assert!(judged >= 25, "most rounds are judged against a baseline: {judged}");
    let suspect: Vec<&Value> = list.iter().filter(|a| a["verdict"] == "suspect").collect();
    assert!(suspect.is_empty(), "{suspect:#?}");
    // The signals saw the change: renames and deletions of the mutations are counted.
    assert!(list.iter().skip(1).all(|a| num(&a["signals"], "modified") > 0), "{list:#?}");
}

/// The SHA-256 of a file, in hex, computed with sha256sum (a reference outside kura).
fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_planted_file_is_found_in_exactly_the_snapshots_that_hold_it_and_rescans_read_nothing() {
    let repo = TestRepo::new();
    let tree = repo.base().join("files");
    text_tree(&tree, 30);
    let tag = ["--tag", "system:files"];
    let mut ids = Vec::new();
    let mut snap = |repo: &TestRepo| {
        repo.backup(&[&tree], &tag);
        ids.push(text(repo.snapshots(&[]).last().unwrap(), "id").to_string());
    };
    snap(&repo);
    let evil = tree.join("dept1/update.bin");
    write_random(&evil, 300_000, 66);
    let evil_sum = sha256_hex(&evil);
    snap(&repo);
    write(&tree.join("dept2/doc_extra.txt"), "more\n");
    snap(&repo);
    std::fs::remove_file(&evil).unwrap();
    snap(&repo);

    let iocs = repo.base().join("iocs.txt");
    write(&iocs, format!("# test indicators\nsha256 {} loader v2\nname *.scr screensaver dropper\n", evil_sum));
    let state = repo.base().join("state.db");
    let scan = |extra: &[&str]| {
        let mut args = vec!["--json", "--state", s(&state), "scan", "--indicators", s(&iocs)];
        args.extend_from_slice(extra);
        repo.kura(args)
    };
    let first = scan(&["--system", "files"]);
    assert_eq!(first.code, 1, "hits exit 1: {first}");
    let first = first.json();
    let hit_ids: Vec<&str> = first
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["hits"].as_array().unwrap().is_empty())
        .map(|r| text(r, "snapshot"))
        .collect();
    assert_eq!(hit_ids, vec![ids[1].as_str(), ids[2].as_str()]);
    assert_eq!(first[1]["hits"][0]["path"], format!("{}/dept1/update.bin", s(&tree)));
    assert_eq!(first[1]["hits"][0]["indicator"], "loader v2");
    assert!(num(&first[0], "files_read") > 0);

    // Again: every file's content is known for this indicator set; nothing is read.
    let second = scan(&["--system", "files"]).json();
    for r in second.as_array().unwrap() {
        assert_eq!(num(r, "files_read"), 0, "{r:#}");
        assert_eq!(num(r, "bytes_read"), 0, "{r:#}");
    }
    assert_eq!(second[1]["hits"], first[1]["hits"]);
    // By id too, results stored per snapshot: the clean point is before the first hit.
    scan(&[&ids[0][..8]]).ok();
    let cp = repo.kura(["--json", "--state", s(&state), "clean-point", "files"]).ok().json();
    assert_eq!(cp["clean"], ids[0].as_str(), "{cp:#}");
    let statuses: Vec<&str> = cp["ranked"].as_array().unwrap().iter().map(|r| text(r, "status")).collect();
    assert_eq!(statuses, vec!["after", "infected", "infected", "clean"]);

    // A bad indicator file names its line; nothing is stored.
    write(&iocs, "sha256 1234\n");
    scan(&["--system", "files"]).code(2).stderr_has("iocs.txt:1").stderr_has("64 hex digits");
}

/// What the test expects `kura diff` to say, computed from two scans of the tree:
/// (path, change, renamed from).
fn reference_diff(
    a: &std::collections::BTreeMap<PathBuf, Entry>,
    b: &std::collections::BTreeMap<PathBuf, Entry>,
    by_content: bool,
) -> Vec<(String, String, String)> {
    use std::collections::BTreeSet;
    let kind = |e: &Entry| match &e.kind {
        EntryKind::Dir => 0,
        EntryKind::File { .. } => 1,
        EntryKind::Symlink(_) => 2,
        EntryKind::Special => 3,
    };
    let mut out: BTreeSet<(String, String, String)> = BTreeSet::new();
    let p = |x: &PathBuf| x.display().to_string();
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    for (path, x) in a {
        match b.get(path) {
            None => removed.push(path.clone()),
            Some(y) if kind(x) != kind(y) => {
                out.insert((p(path), "type_changed".into(), String::new()));
            }
            Some(y) => {
                let change = match (&x.kind, &y.kind) {
                    (EntryKind::File { hash: h1, .. }, EntryKind::File { hash: h2, .. }) if h1 != h2 => "modified",
                    (EntryKind::Symlink(t1), EntryKind::Symlink(t2)) if t1 != t2 => "modified",
                    (EntryKind::Dir, _) => continue,
                    _ if x.mode != y.mode => "mode_changed",
                    _ => continue,
                };
                out.insert((p(path), change.into(), String::new()));
            }
        }
    }
    for path in b.keys().filter(|k| !a.contains_key(*k)) {
        added.push(path.clone());
    }
    // Type changes list what the directory held on either side.
    for (path, x) in a {
        if let Some(y) = b.get(path) {
            if kind(x) != kind(y) {
                removed.extend(a.keys().filter(|k| k.starts_with(path) && *k != path).cloned());
                added.extend(b.keys().filter(|k| k.starts_with(path) && *k != path).cloned());
            }
        }
    }
    let stem = |s: &str| s.rfind('.').filter(|&i| i > 0).map_or(s.to_string(), |i| s[..i].to_string());
    let is_file =
        |m: &std::collections::BTreeMap<PathBuf, Entry>, x: &PathBuf| matches!(m[x].kind, EntryKind::File { .. });
    let hash = |m: &std::collections::BTreeMap<PathBuf, Entry>, x: &PathBuf| match &m[x].kind {
        EntryKind::File { hash, size } if *size > 0 => Some(hash.clone()),
        _ => None,
    };
    let mut taken: BTreeSet<PathBuf> = BTreeSet::new();
    let mut renamed: BTreeSet<PathBuf> = BTreeSet::new();
    for y in added.iter().filter(|y| is_file(b, y)) {
        let (ydir, yname) = (y.parent().unwrap(), y.file_name().unwrap().to_str().unwrap());
        let by_name =
            removed.iter().filter(|x| is_file(a, x) && !taken.contains(*x) && x.parent().unwrap() == ydir).find(|x| {
                let xname = x.file_name().unwrap().to_str().unwrap();
                stem(yname) == xname || (yname.contains('.') && stem(yname) == stem(xname))
            });
        let by_content = || {
            removed
                .iter()
                .filter(|x| is_file(a, x) && !taken.contains(*x))
                .find(|x| by_content && hash(a, x).is_some() && hash(a, x) == hash(b, y))
        };
        if let Some(x) = by_name.or_else(by_content).cloned() {
            taken.insert(x.clone());
            renamed.insert(y.clone());
            out.insert((p(y), "renamed".into(), p(&x)));
        }
    }
    for x in removed.iter().filter(|x| !taken.contains(*x)) {
        out.insert((p(x), "removed".into(), String::new()));
    }
    for y in added.iter().filter(|y| !renamed.contains(*y)) {
        out.insert((p(y), "added".into(), String::new()));
    }
    out.into_iter().collect()
}

fn diff_rows(v: &Value, root: &Path) -> Vec<(String, String, String)> {
    let rel = |x: &str| x.strip_prefix(&format!("{}/", s(root))).unwrap_or(x).to_string();
    let mut rows: Vec<(String, String, String)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (rel(text(c, "path")), text(c, "change").to_string(), c["from"].as_str().map(rel).unwrap_or_default()))
        .collect();
    rows.sort();
    rows
}

#[test]
fn diff_of_crafted_trees_matches_a_reference_for_snapshots_and_a_live_directory() {
    use std::os::unix::fs::PermissionsExt;
    let repo = TestRepo::new();
    let root = repo.base().join("t");
    text_tree(&root, 24);
    write(&root.join("empty.txt"), "");
    write(&root.join("dir_then_file/x.txt"), "x\n");
    write(&root.join("file_then_dir"), "f\n");
    std::os::unix::fs::symlink("dept0/doc_000.txt", root.join("link")).unwrap();
    repo.backup(&[&root], &[]);
    let first = text(repo.snapshots(&[]).last().unwrap(), "id").to_string();
    let a = scan(&root);

    std::fs::rename(root.join("dept0/doc_004.txt"), root.join("dept3/moved.txt")).unwrap(); // moved, same content
    let enc = root.join("dept1/doc_001.txt");
    write_random(&root.join("dept1/doc_001.txt.locked"), 5000, 3); // encrypted copy
    std::fs::remove_file(&enc).unwrap();
    write(&root.join("dept2/doc_002.txt"), "rewritten with other content and another size\n");
    std::fs::set_permissions(root.join("dept3/doc_003.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(root.join("dept0/doc_008.txt")).unwrap();
    write(&root.join("dept2/brand_new.md"), "new\n");
    std::fs::remove_dir_all(root.join("dir_then_file")).unwrap();
    write(&root.join("dir_then_file"), "now a file\n");
    std::fs::remove_file(root.join("file_then_dir")).unwrap();
    write(&root.join("file_then_dir/inner.txt"), "inner\n");
    std::fs::remove_file(root.join("link")).unwrap();
    std::os::unix::fs::symlink("dept2/doc_002.txt", root.join("link")).unwrap();
    let b = scan(&root);

    // A snapshot against the live directory: renames by name only (files are not read).
    let live = repo.kura(["--json", "diff", &first, s(&root)]).ok().json();
    assert_eq!(diff_rows(&live, &root), reference_diff(&a, &b, false), "{live:#}");

    repo.backup(&[&root], &[]);
    let v = repo.kura(["--json", "diff", &first, "latest"]).ok().json();
    let want = reference_diff(&a, &b, true);
    assert_eq!(diff_rows(&v, &root), want, "{v:#}");
    assert!(want.contains(&("dept3/moved.txt".into(), "renamed".into(), "dept0/doc_004.txt".into())));
    assert!(want.contains(&("dept1/doc_001.txt.locked".into(), "renamed".into(), "dept1/doc_001.txt".into())));
    assert_eq!(num(&v, "summary.renamed"), 2);
    assert_eq!(num(&v, "summary.renamed_new_extension"), 1, "{v:#}");
    assert_eq!(num(&v, "summary.mode_changed"), 1);
    let mode = v["changes"].as_array().unwrap().iter().find(|c| c["change"] == "mode_changed").unwrap();
    assert_eq!((num(mode, "mode_before"), num(mode, "mode_after")), (0o644, 0o600));

    // PATH limits the listing; the text shows renames with both names.
    let sub = repo.kura(["--json", "diff", &first, "latest", &format!("{}/dept1", s(&root))]).ok().json();
    assert_eq!(sub["changes"].as_array().unwrap().len(), 1, "{sub:#}");
    repo.kura(["diff", &first, "latest"]).ok().stdout_has("dept1/doc_001.txt -> ").stdout_has("R    ");
}

#[test]
fn a_false_positive_mark_teaches_the_baseline() {
    let repo = TestRepo::new();
    let tree = repo.base().join("tree");
    text_tree(&tree, 60);
    for i in 0..6 {
        write(&tree.join(format!("dept0/log_{i}.txt")), format!("round {i}\n"));
        repo.backup(&[&tree], &[]);
    }
    // A monthly job renames half the files to .bak: suspect the first time.
    let rename_all = |from: &str, to: &str| {
        for p in files_under(&tree).into_iter().map(|p| tree.join(p)) {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if name.starts_with("doc_") && name.ends_with(from) && name[4..7].parse::<u32>().unwrap() % 2 == 0 {
                std::fs::rename(&p, p.with_file_name(format!("{}{to}", name.strip_suffix(from).unwrap()))).unwrap();
            }
        }
    };
    rename_all(".txt", ".bak");
    repo.backup(&[&tree], &[]);
    let state = repo.base().join("state.db");
    let list = signals(&repo, &state);
    let hit = list.last().unwrap().clone();
    assert_eq!(hit["verdict"], "suspect", "{hit:#}");
    assert_eq!(hit["reasons"][0]["rule"], "extension-renames");
    assert_eq!(num(&hit["signals"], "ext_changed"), 30);

    let mark =
        ["--state", s(&state), "signals", "false-positive", &text(&hit, "id")[..8], "--note", "monthly rotation"];
    repo.kura(mark).ok().stdout_has("marked a false positive");
    let again = signals(&repo, &state);
    assert_eq!(again.last().unwrap()["false_positive"], true);
    // The same job next month: no alarm any more.
    rename_all(".bak", ".txt");
    repo.backup(&[&tree], &[]);
    let after = signals(&repo, &state);
    assert_eq!(after.last().unwrap()["verdict"], "clean", "{:#}", after.last().unwrap());
    repo.kura(["--state", s(&state), "snapshots"]).ok();
}

#[test]
fn detection_input_errors_name_the_file_line_and_field() {
    let repo = TestRepo::new();
    let tree = repo.base().join("tree");
    text_tree(&tree, 3);
    let names = repo.base().join("names.txt");
    write(&names, "# mine\nnote *DECRYPT*\nfile *.x\n");
    repo.kura(["backup", s(&tree), "--names", s(&names)]).code(2).stderr_has("names.txt:3").stderr_has("unknown rule");
    assert!(repo.snapshots(&[]).is_empty(), "nothing was stored");
    write(&names, "note *DECRYPT*\next locked\n");
    repo.kura(["backup", s(&tree), "--names", s(&names)]).ok();

    let cfg = repo.base().join("kura.toml");
    write(&repo.base().join("pass"), PASSWORD);
    write(
        &cfg,
        format!(
            "[repository]\nlocation = '{}'\npassword_file = '{}'\n\n[detect]\nmin_history = 0\nwindow = 3\n",
            s(&repo.path),
            s(&repo.base().join("pass"))
        ),
    );
    run(bare_kura().args(["config", "check", s(&cfg)])).code(2).stderr_has("kura.toml:6").stderr_has("min_history");

    let state = repo.base().join("state.db");
    repo.kura(["--state", s(&state), "clean-point", "nope"]).code(2).stderr_has("no snapshot of system nope");
    repo.kura(["--state", s(&state), "signals", "false-positive", "ffffffff"]).code(2).stderr_has("ffffffff");
    repo.kura(["--state", s(&state), "signals", "release", "ffffffff"]).code(2).stderr_has("no held snapshot");
    repo.kura(["--state", s(&state), "scan", "latest", "--indicators", "/nonexistent/iocs.txt"])
        .code(2)
        .stderr_has("/nonexistent/iocs.txt");
}

#[test]
fn a_recovery_with_a_scan_stops_a_system_whose_restored_files_match_an_indicator() {
    let repo = TestRepo::new();
    let base = repo.base().to_path_buf();
    let (good, bad) = (base.join("src/good"), base.join("src/bad"));
    text_tree(&good, 6);
    text_tree(&bad, 6);
    write_random(&bad.join("dept2/tool.bin"), 20_000, 9);
    let sum = sha256_hex(&bad.join("dept2/tool.bin"));
    repo.backup(&[&good], &["--tag", "system:good"]);
    repo.backup(&[&bad], &["--tag", "system:bad"]);
    write(&base.join("pass"), PASSWORD);
    let cfg = base.join("kura.toml");
    write(
        &cfg,
        format!(
            "[repository]\nlocation = '{}'\npassword_file = '{}'\n\n[[system]]\nname = 'good'\npriority = 2\npaths = ['{}']\n\n\
             [[system]]\nname = 'bad'\npriority = 2\npaths = ['{}']\n",
            s(&repo.path),
            s(&base.join("pass")),
            s(&good),
            s(&bad)
        ),
    );
    write(&base.join("iocs.txt"), format!("sha256 {sum} backdoor\n"));
    let plan = base.join("plan.toml");
    let systems =
        |name: &str| format!("[[system]]\nname = '{name}'\ntarget = '{}'\n\n", s(&base.join("restore").join(name)));
    write(
        &plan,
        format!("name = 'scanned'\nconfig = '{}'\nscan = 'iocs.txt'\n\n{}{}", s(&cfg), systems("good"), systems("bad")),
    );
    let state = base.join("state.db");
    let cli = |args: &[&str]| run(bare_kura().args(["--state", s(&state)]).args(args).env("KURA_CONFIG", &cfg));
    cli(&["incident", "open", "--title", "intrusion"]).ok();
    cli(&["incident", "resolve-cause", "1", "--note", "fixed"]).ok();
    let out = cli(&["--json", "recover", "--incident", "1", "--plan", s(&plan)]);
    assert_ne!(out.code, 0, "{out}");
    let v = out.json();
    let by = |n: &str| v["systems"].as_array().unwrap().iter().find(|x| x["name"] == n).unwrap().clone();
    assert_eq!(by("good")["state"], "done", "{v:#}");
    assert_eq!(by("bad")["state"], "failed", "{v:#}");
    let err = text(&by("bad"), "error").to_string();
    assert!(err.contains("indicators of compromise") && err.contains("dept2/tool.bin matches backdoor"), "{err}");

    // A plan whose indicator file is broken is refused before anything starts, naming it.
    write(&base.join("iocs.txt"), "sha256 zz\n");
    run(bare_kura().args(["plan", "validate", s(&plan)]).env("KURA_CONFIG", &cfg)).code(2).stderr_has("iocs.txt:1");
}

#[test]
fn a_plan_can_pin_a_systems_snapshot_over_the_clean_point() {
    let repo = TestRepo::new();
    let base = repo.base().to_path_buf();
    let src = base.join("src/app");
    write(&src.join("version"), "v1\n");
    repo.backup(&[&src], &["--tag", "system:app"]);
    let v1 = text(repo.snapshots(&[]).last().unwrap(), "id").to_string();
    write(&src.join("version"), "v2\n");
    repo.backup(&[&src], &["--tag", "system:app"]);
    write(&base.join("pass"), PASSWORD);
    let cfg = base.join("kura.toml");
    let cfg_text = format!(
        "[repository]\nlocation = '{}'\npassword_file = '{}'\n\n[[system]]\nname = 'app'\npriority = 2\npaths = ['{}']\n",
        s(&repo.path),
        s(&base.join("pass")),
        s(&src)
    );
    write(&cfg, cfg_text);
    let plan = base.join("plan.toml");
    let target = base.join("restore/app");
    let plan_with = |pin: &str| {
        write(
            &plan,
            format!(
                "name = 'p'\nconfig = '{}'\n\n[[system]]\nname = 'app'\ntarget = '{}'\n{pin}\n",
                s(&cfg),
                s(&target)
            ),
        )
    };
    plan_with(&format!("snapshot = '{}'", &v1[..10]));
    let state = base.join("state.db");
    let cli = |args: &[&str]| run(bare_kura().args(["--state", s(&state)]).args(args).env("KURA_CONFIG", &cfg));
    cli(&["incident", "open", "--title", "bad deploy"]).ok();
    cli(&["incident", "resolve-cause", "1", "--note", "rolled back"]).ok();
    let v = cli(&["--json", "recover", "--incident", "1", "--plan", s(&plan)]).ok().json();
    assert_eq!(v["systems"][0]["snapshot"], v1.as_str(), "{v:#}");
    assert_eq!(std::fs::read_to_string(target.join("version")).unwrap(), "v1\n");
    cli(&["incident", "show", "1"]).ok().stdout_has("named in the plan");

    plan_with("snapshot = 'xyz'");
    run(bare_kura().args(["plan", "validate", s(&plan)]).env("KURA_CONFIG", &cfg))
        .code(2)
        .stderr_has("plan.toml:7: error: system[0].snapshot")
        .stderr_has("not a snapshot id");
}

/// A hold on the clean point of a repository with object lock (moto) extends the
/// retention of the held snapshot and its packs at each backup; a released hold
/// is extended no more.
#[test]
fn a_held_snapshot_keeps_its_object_lock_extended_until_released() {
    use kura::backend::s3::S3Backend;
    use kura::backend::{Backend, Kind};
    let m = crate::servers::Moto::start();
    let loc = m.location("kura-held/site", "&object_lock_days=1&object_lock_mode=governance");
    run(bare_kura().args(["--repo", &loc, "init"]).env("KURA_PASSWORD", PASSWORD)).ok();
    let setup = Setup::new();
    let web = setup.repo.base().join("src/web");
    text_tree(&web, 60);
    let remote = m.location("kura-held-copy/site", "&object_lock_days=1");
    let tables = format!(
        "[remote]\nlocation = \"{remote}\"\npassword_file = \"{}\"\n\n[jobs.replicate]\nschedule = \"0 0 1 1 *\"\n\n\
         [[system]]\nname = \"web\"\npriority = 2\npaths = [\"{}\"]\n",
        s(&setup.repo.base().join("pass")),
        s(&web)
    );
    setup.configure_at(&loc, "", &tables);
    let _d = setup.daemon();
    let kura = |args: &[&str]| {
        let mut c = bare_kura();
        c.args(["--state", s(&setup.state), "--repo", &loc]).args(args);
        run(c.env("KURA_CONFIG", &setup.config).env("KURA_PASSWORD", PASSWORD))
    };
    for i in 0..6 {
        write(&web.join(format!("dept0/log_{i}.txt")), format!("round {i}\n"));
        setup.cli(&["--json", "run", "web"]).ok();
    }
    let b = S3Backend::open(&loc).unwrap();
    let retained = |k: Kind, n: &str| b.retained_until(k, n).unwrap().unwrap();
    let snaps = kura(&["--json", "snapshots"]).ok().json();
    let (first, clean) = (text(&snaps[0], "id").to_string(), text(&snaps[5], "id").to_string());
    let first_until = retained(Kind::Snapshot, &first);
    let clean_until = retained(Kind::Snapshot, &clean);
    let packs_before: Vec<(String, chrono::DateTime<chrono::Utc>)> = b
        .list(Kind::Pack)
        .unwrap()
        .into_iter()
        .map(|(n, _)| (retained(Kind::Pack, &n), n))
        .map(|(u, n)| (n, u))
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(2));

    // Half the documents renamed at once: suspect, and the clean point is held.
    for p in files_under(&web).into_iter().map(|p| web.join(p)) {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("doc_") && name[4..7].parse::<u32>().unwrap() % 2 == 0 {
            std::fs::rename(&p, p.with_file_name(format!("{name}.locked"))).unwrap();
        }
    }
    setup.cli(&["--json", "run", "web"]).ok();
    let holds = kura(&["--json", "signals", "holds"]).ok().json();
    assert_eq!(holds[0]["snapshot"].as_str(), Some(clean.as_str()), "{holds:#}");
    let held_until = retained(Kind::Snapshot, &clean);
    assert!(held_until >= clean_until + chrono::Duration::seconds(2), "not extended: {held_until} vs {clean_until}");
    // The packs the held snapshot needs (all written before the attack) are
    // extended with it: its trees and the documents' data.
    let extended: Vec<&String> = packs_before
        .iter()
        .filter(|(n, u)| *u < held_until && retained(Kind::Pack, n) >= held_until)
        .map(|(n, _)| n)
        .collect();
    assert!(extended.len() >= 2, "{} of {} packs extended", extended.len(), packs_before.len());
    // The oldest snapshot is not held: its retention is untouched.
    assert_eq!(retained(Kind::Snapshot, &first), first_until);

    // While the hold stands each backup renews it; once released, no more.
    std::thread::sleep(std::time::Duration::from_secs(2));
    write(&web.join("dept1/more.txt"), "more\n");
    setup.cli(&["--json", "run", "web"]).ok();
    let renewed = retained(Kind::Snapshot, &clean);
    assert!(renewed >= held_until + chrono::Duration::seconds(2), "not renewed: {renewed} vs {held_until}");
    // The remote mirror's copy of the held snapshot is renewed by each replicate run.
    setup.cli(&["--json", "run", "replicate"]).ok();
    let rb = S3Backend::open(&remote).unwrap();
    let copied = rb.retained_until(Kind::Snapshot, &clean).unwrap().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    setup.cli(&["--json", "run", "replicate"]).ok();
    let remote_renewed = rb.retained_until(Kind::Snapshot, &clean).unwrap().unwrap();
    assert!(
        remote_renewed >= copied + chrono::Duration::seconds(2),
        "remote not renewed: {remote_renewed} vs {copied}"
    );
    kura(&["signals", "release", &clean[..8], "--note", "investigated"]).ok();
    std::thread::sleep(std::time::Duration::from_secs(2));
    write(&web.join("dept1/more.txt"), "even more\n");
    setup.cli(&["--json", "run", "web"]).ok();
    assert_eq!(retained(Kind::Snapshot, &clean), renewed, "a released hold was extended");
}
