//! `kura key add|list|remove|passwd`.

use serde_json::Value;

use crate::util::*;

fn key_list(r: &TestRepo, password: &str) -> Vec<Value> {
    match r.kura_with_password(password, ["--json", "key", "list"]).ok().json() {
        Value::Array(a) => a,
        v => panic!("key list --json is not a list: {v}"),
    }
}

/// The id of the key that `password` opens (marked current in its listing).
fn current_key(r: &TestRepo, password: &str) -> String {
    let keys = key_list(r, password);
    let cur: Vec<_> = keys.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(cur.len(), 1, "exactly one key is current: {keys:#?}");
    text(cur[0], "id").to_string()
}

#[test]
fn add_list_remove_and_change_keys() {
    let r = TestRepo::new();
    let src = r.base().join("src");
    write(&src.join("f.txt"), "keyed\n");
    r.backup(&[&src], &[]);
    let (pw1, pw2, pw3) = (PASSWORD, "second passphrase", "third passphrase");

    let first = current_key(&r, pw1);
    assert_eq!(key_list(&r, pw1).len(), 1);

    // Add a second key; both passphrases open the repository.
    let added = run(r.cmd(["--json", "key", "add"]).env("KURA_NEW_PASSWORD", pw2)).ok().json();
    assert_eq!(added["action"], "added");
    let second = text(&added, "key").to_string();
    let keys = key_list(&r, pw2);
    assert_eq!(keys.len(), 2, "{keys:#?}");
    for k in &keys {
        assert!(k["created"].is_string() && k["host"].is_string() && k["username"].is_string(), "{k:#}");
    }
    assert_eq!(current_key(&r, pw2), second);
    assert_eq!(current_key(&r, pw1), first);
    r.kura_with_password(pw2, ["ls", "latest"]).ok().stdout_has("f.txt");

    // The key in use cannot remove itself.
    r.kura_with_password(pw1, ["key", "remove", &first[..8]]).code(2).stderr_has("in use");
    assert_eq!(key_list(&r, pw1).len(), 2);
    // Unknown and ambiguous prefixes are refused.
    let unknown = if first.starts_with('0') || second.starts_with('0') { "zz" } else { "0" };
    r.kura_with_password(pw2, ["key", "remove", unknown]).code(2).stderr_has("no key matches");
    r.kura_with_password(pw2, ["key", "remove", ""]).code(2).stderr_has("ambiguous");

    // Remove the first key while opened with the second: the old passphrase stops working.
    r.kura_with_password(pw2, ["key", "remove", &first[..8]]).ok().stdout_has("removed");
    r.kura_with_password(pw1, ["snapshots"]).code(2).stderr_has("wrong passphrase for repository");
    assert_eq!(key_list(&r, pw2).len(), 1);

    // passwd swaps the key in use for a new one.
    let out = run(r.cmd_with_password(pw2, ["--json", "key", "passwd"]).env("KURA_NEW_PASSWORD", pw3)).ok().json();
    let third = text(&out, "key").to_string();
    r.kura_with_password(pw2, ["snapshots"]).code(2).stderr_has("wrong passphrase for repository");
    let keys = key_list(&r, pw3);
    assert_eq!(keys.len(), 1, "{keys:#?}");
    assert_eq!(text(&keys[0], "id"), third);
    assert_eq!(keys[0]["current"], true);

    // The data is still there and readable with the new passphrase.
    let target = r.base().join("target");
    let mut c = r.cmd_with_password(pw3, ["restore", "latest", "--target", s(&target)]);
    run(&mut c).ok();
    assert_eq!(std::fs::read_to_string(restored(&target, &src).join("f.txt")).unwrap(), "keyed\n");
    r.kura_with_password(pw3, ["check", "--read-data"]).ok();

    // A new passphrase from a file works as well; an empty one is refused.
    let f = r.base().join("newpass");
    write(&f, "fourth passphrase\n");
    let mut c = r.cmd_with_password(pw3, ["key", "add", "--new-password-file", s(&f)]);
    run(&mut c).ok();
    r.kura_with_password("fourth passphrase", ["snapshots"]).ok();
    for cmd in ["add", "passwd"] {
        let out = run(r.cmd_with_password(pw3, ["key", cmd]).env("KURA_NEW_PASSWORD", ""));
        out.code(2).stderr_has("empty passphrase");
        write(&f, "\n");
        let out = run(&mut r.cmd_with_password(pw3, ["key", cmd, "--new-password-file", s(&f)]));
        out.code(2).stderr_has(&format!("password file {} is empty", f.display()));
    }
    assert_eq!(key_list(&r, pw3).len(), 2);
    r.kura_with_password("", ["snapshots"]).code(2).stderr_has("wrong passphrase for repository");
}
