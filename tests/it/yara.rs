//! YARA rules in `kura scan` and secure restore's quarantine (docs/DETECTION.md),
//! end to end through the binary: a rule matching a planted ransom-note marker is
//! found in exactly the snapshots holding the file, a rescan reads nothing, a
//! changed rule rescans, a broken rule file is refused naming its line; a drill and
//! a recovery with `on_scan_hit = "quarantine"` move the hits out of the target
//! and go on.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::Value;

use crate::detect::text_tree;
use crate::util::*;

const MARKER: &str = "KURA-TEST-RANSOM-MARKER: your files are encrypted, pay 2 BTC";

const RULE: &str =
    "rule Fake_Ransom_Note\n{\n  strings:\n    $m = \"KURA-TEST-RANSOM-MARKER\"\n  condition:\n    $m\n}\n";

/// Snapshot ids with a hit, in scan order.
fn infected(results: &Value) -> Vec<String> {
    results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["hits"].as_array().unwrap().is_empty())
        .map(|r| text(r, "snapshot").to_string())
        .collect()
}

fn total(results: &Value, key: &str) -> u64 {
    results.as_array().unwrap().iter().map(|r| num(r, key)).sum()
}

#[test]
fn a_yara_rule_finds_a_planted_marker_in_exactly_the_snapshots_holding_it_and_rescans_only_when_rules_change() {
    let repo = TestRepo::new();
    let tree = repo.base().join("files");
    text_tree(&tree, 24);
    let mut ids = Vec::new();
    let mut snap = |repo: &TestRepo| {
        repo.backup(&[&tree], &["--tag", "system:files"]);
        ids.push(text(repo.snapshots(&[]).last().unwrap(), "id").to_string());
    };
    snap(&repo);
    // An innocuous name: only the content gives it away.
    let note = tree.join("dept1/meeting_notes.txt");
    write(&note, format!("minutes of the meeting\n{MARKER}\nend\n"));
    snap(&repo);
    write(&tree.join("dept2/doc_extra.txt"), "more\n");
    snap(&repo);
    std::fs::remove_file(&note).unwrap();
    snap(&repo);

    let rules = repo.base().join("rules");
    write(&rules.join("ransom.yar"), RULE);
    write(&rules.join("README"), "not a rule file: ignored\n");
    let iocs = repo.base().join("iocs.txt");
    write(&iocs, "# rules directory, relative to this file\nyara rules\n");
    let state = repo.base().join("state.db");
    let scan = || repo.kura(["--json", "--state", s(&state), "scan", "--indicators", s(&iocs), "--system", "files"]);

    let first = scan();
    assert_eq!(first.code, 1, "a hit exits 1: {first}");
    let first = first.json();
    assert_eq!(infected(&first), vec![ids[1].clone(), ids[2].clone()]);
    let hit = &first[1]["hits"][0];
    assert_eq!(hit["by"], "yara", "{first:#}");
    assert_eq!(hit["indicator"], "Fake_Ransom_Note");
    assert_eq!(hit["path"], format!("{}/dept1/meeting_notes.txt", s(&tree)));
    assert_eq!(first[1]["hits"].as_array().unwrap().len(), 1, "{first:#}");
    assert!(total(&first, "files_read") >= 25, "{first:#}");

    // Same rules: every file's content is known, nothing is read again.
    let second = scan().json();
    assert_eq!(total(&second, "files_read"), 0, "{second:#}");
    assert_eq!(total(&second, "bytes_read"), 0, "{second:#}");
    assert_eq!(infected(&second), infected(&first));

    // Infected snapshots rank as such; the clean point is the one before.
    let cp = repo.kura(["--json", "--state", s(&state), "clean-point", "files"]).ok().json();
    assert_eq!(cp["clean"], ids[0].as_str(), "{cp:#}");
    let statuses: Vec<&str> = cp["ranked"].as_array().unwrap().iter().map(|r| text(r, "status")).collect();
    assert_eq!(statuses, vec!["after", "infected", "infected", "clean"]);

    // A changed rule file is a new set: everything is read again, and the new rule
    // (a string of doc_extra.txt) hits too.
    write(
        &rules.join("ransom.yar"),
        format!("{RULE}\nrule Extra_Doc {{ strings: $a = \"more\" condition: $a and filesize < 10 }}\n"),
    );
    let third = scan().json();
    assert!(total(&third, "files_read") >= 25, "{third:#}");
    let names: Vec<&str> =
        third[2]["hits"].as_array().unwrap().iter().map(|h| h["indicator"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{third:#}");
    assert!(names.contains(&"Fake_Ransom_Note") && names.contains(&"Extra_Doc"), "{third:#}");
    assert_eq!(infected(&third), vec![ids[1].clone(), ids[2].clone(), ids[3].clone()]);
    // ...and remembered under the new set.
    assert_eq!(total(&scan().json(), "files_read"), 0);

    // A broken rule: refused naming the file and line, exit 2, nothing stored changes.
    let before = repo.kura(["--json", "--state", s(&state), "clean-point", "files"]).ok().json();
    write(&rules.join("zz_bad.yar"), "rule Broken\n{\n  condition:\n    $undefined_string\n}\n");
    let bad = scan();
    bad.code(2).stderr_has("zz_bad.yar:4");
    assert!(bad.stderr.contains("$undefined_string"), "{bad}");
    let after = repo.kura(["--json", "--state", s(&state), "clean-point", "files"]).ok().json();
    assert_eq!(before, after);
    // A `yara` line naming nothing usable names its line.
    std::fs::remove_file(rules.join("zz_bad.yar")).unwrap();
    write(&iocs, "name *.scr dropper\nyara missing-dir\n");
    scan().code(2).stderr_has("iocs.txt:2").stderr_has("missing-dir");
}

/// The files under `root`, relative, with their content.
fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = files_under(root)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| (p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn a_recovery_with_quarantine_moves_the_hit_out_of_the_target_and_promotes_the_system() {
    let repo = TestRepo::new();
    let base = repo.base().to_path_buf();
    let src = base.join("src/web");
    text_tree(&src, 8);
    write(&src.join("dept3/readme_now.txt"), format!("{MARKER}\n"));
    write(&src.join("dept0/tool.scr"), "MZ not really\n");
    repo.backup(&[&src], &["--tag", "system:web"]);
    write(&base.join("pass"), PASSWORD);
    let cfg = base.join("kura.toml");
    write(
        &cfg,
        format!(
            "[repository]\nlocation = '{}'\npassword_file = '{}'\n\n[[system]]\nname = 'web'\npriority = 2\npaths = ['{}']\n",
            s(&repo.path),
            s(&base.join("pass")),
            s(&src)
        ),
    );
    write(&base.join("rules/ransom.yar"), RULE);
    write(&base.join("iocs.txt"), "yara rules/ransom.yar\nname *.scr screensaver dropper\n");
    let target = base.join("restore/web");
    let marker = base.join("post-ran");
    let plan = base.join("plan.toml");
    write(
        &plan,
        format!(
            "name = 'secure'\nconfig = '{}'\nscan = 'iocs.txt'\non_scan_hit = 'quarantine'\n\n\
             [[system]]\nname = 'web'\ntarget = '{}'\n\n[[system.post]]\ncommand = 'touch {}'\n",
            s(&cfg),
            s(&target),
            s(&marker)
        ),
    );
    let state = base.join("state.db");
    let cli = |args: &[&str]| run(bare_kura().args(["--state", s(&state)]).args(args).env("KURA_CONFIG", &cfg));

    // A drill quarantines in its sandbox, and leaves the real target alone.
    let sandbox = base.join("sandbox");
    let drill = cli(&["--json", "drill", "run", "--plan", s(&plan), "--sandbox", s(&sandbox), "--keep"]).ok().json();
    let row = drill["systems"].as_array().unwrap().iter().find(|r| r["name"] == "web").unwrap().clone();
    assert_eq!(row["state"], "done", "{drill:#}");
    assert_eq!(row["verify"]["quarantine"]["hits"].as_array().unwrap().len(), 2, "{drill:#}");
    assert!(!sandbox.join("web/dept3/readme_now.txt").exists());
    assert!(sandbox.join("web.quarantine/files/dept3/readme_now.txt").is_file());
    assert!(!target.exists() && !marker.exists(), "a drill touches neither the target nor runs the post hook");

    cli(&["incident", "open", "--title", "intrusion"]).ok();
    cli(&["incident", "resolve-cause", "1", "--note", "fixed"]).ok();
    let out = cli(&["recover", "--incident", "1", "--plan", s(&plan)]);
    out.ok().stdout_has("2 file(s) quarantined");

    // The system was promoted: done, its post hook ran.
    assert!(marker.exists(), "the post hook did not run: {out}");
    // The hits are out of the target, in the quarantine beside it, owner-only.
    let q = base.join("restore/web.quarantine");
    for rel in ["dept3/readme_now.txt", "dept0/tool.scr"] {
        assert!(!target.join(rel).exists(), "{rel} is still in the target");
        let moved = q.join("files").join(rel);
        assert_eq!(std::fs::read(&moved).unwrap(), std::fs::read(src.join(rel)).unwrap());
        assert_eq!(std::fs::metadata(&moved).unwrap().mode() & 0o777, 0o600);
    }
    assert_eq!(std::fs::metadata(&q).unwrap().mode() & 0o777, 0o700);
    let manifest: Value = serde_json::from_slice(&std::fs::read(q.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["files"]["dept3/readme_now.txt"]["matched"][0]["indicator"], "Fake_Ransom_Note",
        "{manifest:#}"
    );
    assert_eq!(manifest["files"]["dept0/tool.scr"]["matched"][0]["indicator"], "screensaver dropper", "{manifest:#}");
    // Everything else is byte-identical to the source.
    let mut expected = files(&src);
    expected.retain(|(p, _)| p != "dept3/readme_now.txt" && p != "dept0/tool.scr");
    assert_eq!(files(&target), expected);

    // The record says which files and why: recover status, the incident's
    // timeline, the report.
    let st = cli(&["--json", "recover", "status", "--incident", "1"]).ok().json();
    let sys = &st["systems"][0];
    assert_eq!(sys["state"], "done", "{st:#}");
    let hits = sys["verify"]["quarantine"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{st:#}");
    cli(&["recover", "status", "--incident", "1"]).ok().stdout_has("dept3/readme_now.txt (yara Fake_Ransom_Note)");
    cli(&["incident", "show", "1"])
        .ok()
        .stdout_has("quarantined")
        .stdout_has("dept0/tool.scr (name screensaver dropper)");
    cli(&["report", "--incident", "1", "--format", "md"]).ok().stdout_has("2 file(s) quarantined");

    // A bad value of on_scan_hit is refused when the plan loads, naming it.
    let text = std::fs::read_to_string(&plan).unwrap().replace("'quarantine'", "'delete'");
    write(&plan, text);
    run(bare_kura().args(["plan", "validate", s(&plan)]).env("KURA_CONFIG", &cfg)).code(2).stderr_has("on_scan_hit");
}
