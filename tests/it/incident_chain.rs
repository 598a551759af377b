//! The incident timeline's keyed chain and its anchors, through the real binary:
//! the database is tampered with directly (rusqlite), as someone who can write the
//! state database but does not hold the repository's key would.

use std::path::PathBuf;
use std::process::Command;

use rusqlite::Connection;

use crate::util::*;

struct Site {
    repo: TestRepo,
    config: PathBuf,
    state: PathBuf,
    remote: PathBuf,
}

impl Site {
    fn new() -> Site {
        let repo = TestRepo::new();
        let base = repo.base().to_path_buf();
        let pw = base.join("password");
        write(&pw, PASSWORD);
        let remote = base.join("remote");
        let config = base.join("kura.toml");
        write(
            &config,
            format!(
                "[repository]\nlocation = '{}'\npassword_file = '{}'\n\n[remote]\nlocation = '{}'\npassword_file = '{}'\n",
                repo.path.display(),
                pw.display(),
                remote.display(),
                pw.display()
            ),
        );
        Site { state: base.join("state.db"), config, remote, repo }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bare_kura();
        c.arg("--state").arg(&self.state).args(args).env("KURA_CONFIG", &self.config).env("KURA_PASSWORD", PASSWORD);
        c
    }

    #[track_caller]
    fn kura(&self, args: &[&str]) -> Out {
        run(&mut self.cmd(args))
    }

    /// An incident with three timeline entries, anchored, and copied to the remote site.
    fn incident(&self) -> String {
        let id = self.kura(&["--json", "incident", "open", "--title", "ransomware"]).ok().json()["id"].to_string();
        self.kura(&["incident", "update", &id, "--scope", "file server"]).ok();
        self.kura(&["incident", "resolve-cause", &id, "--note", "VPN account disabled"]).ok();
        self.kura(&["--repo", s(&self.repo.path), "copy", "--to", s(&self.remote)]).ok();
        id
    }

    fn db(&self) -> Connection {
        Connection::open(&self.state).unwrap()
    }

    fn anchors(&self, repo: &std::path::Path) -> usize {
        std::fs::read_dir(repo.join("anchors")).map(|d| d.count()).unwrap_or(0)
    }
}

/// The unkeyed chain hash, as anyone holding only the database can compute it.
fn unkeyed(prev: &str, incident: i64, seq: i64, at: &str, kind: &str, data: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [prev, &incident.to_string(), &seq.to_string(), at, kind, data] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Rewrites every row's hash with the unkeyed chain (optionally also its mac label).
fn recompute_unkeyed(conn: &Connection, incident: i64, relabel: Option<&str>) {
    let rows: Vec<(i64, String, String, String)> = conn
        .prepare("SELECT seq, at, kind, data FROM timeline WHERE incident = ?1 ORDER BY seq")
        .unwrap()
        .query_map([incident], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev = "0".repeat(64);
    for (seq, at, kind, data) in rows {
        let h = unkeyed(&prev, incident, seq, &at, &kind, &data);
        conn.execute(
            "UPDATE timeline SET prev_hash = ?1, hash = ?2 WHERE incident = ?3 AND seq = ?4",
            rusqlite::params![prev, h, incident, seq],
        )
        .unwrap();
        if let Some(label) = relabel {
            conn.execute("UPDATE timeline SET mac = ?1 WHERE incident = ?2", rusqlite::params![label, incident])
                .unwrap();
        }
        prev = h;
    }
}

#[test]
fn intact_chain_is_anchored_locally_and_remotely_and_exported() {
    let site = Site::new();
    let id = site.incident();
    assert_eq!(site.anchors(&site.repo.path), 1);
    assert_eq!(site.anchors(&site.remote), 1, "replication copies the anchor");
    let v = site.kura(&["--json", "incident", "verify", &id]).ok().json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!((v["entries"].as_u64(), v["keyed"].as_u64()), (Some(3), Some(3)), "{v}");
    assert_eq!(v["anchored"].as_array().unwrap().len(), 2, "repository and remote site: {v}");
    assert!(v["anchored"].as_array().unwrap().iter().all(|a| a[1] == 3), "{v}");
    site.kura(&["incident", "verify", &id]).ok().stdout_has("timeline intact");

    let head: String =
        site.db().query_row("SELECT hash FROM timeline ORDER BY seq DESC LIMIT 1", [], |r| r.get(0)).unwrap();
    let rec = site.kura(&["incident", "export", &id, "--format", "json"]).ok().json();
    assert_eq!(rec["chain_verified"], true);
    assert_eq!(rec["chain"]["entries"], 3);
    assert_eq!(rec["chain"]["head"], head.as_str());
    let md = site.kura(&["incident", "export", &id]).ok().stdout.clone();
    assert!(md.contains("Hash chain: verified") && md.contains(&head), "{md}");
}

#[test]
fn removed_tail_is_detected_also_when_the_local_anchor_is_deleted() {
    let site = Site::new();
    let id = site.incident();
    site.db().execute("DELETE FROM timeline WHERE seq = (SELECT max(seq) FROM timeline)", []).unwrap();
    let out = site.kura(&["incident", "verify", &id]);
    out.code(1).stdout_has("TAMPERED").stdout_has("removed tail").stdout_has("entries 3-3 were removed");
    // A later write does not launder the cut: the anchor is refused and stays.
    site.kura(&["incident", "update", &id, "--note", "all fine"]).ok().stderr_has("was not anchored");
    site.kura(&["incident", "verify", &id]).code(1);
    // Without the local anchor, the remote site's still names the cut.
    site.db().execute("DELETE FROM timeline WHERE seq >= 3", []).unwrap();
    std::fs::remove_dir_all(site.repo.path.join("anchors")).unwrap();
    site.kura(&["incident", "verify", &id]).code(1).stdout_has("removed tail: the anchor in the remote site");
    let md = site.kura(&["incident", "export", &id]).ok().stdout.clone();
    assert!(md.contains("BROKEN"), "{md}");
}

#[test]
fn edited_row_is_detected() {
    let site = Site::new();
    let id = site.incident();
    site.db()
        .execute("UPDATE timeline SET data = replace(data, 'file server', 'one laptop') WHERE seq = 2", [])
        .unwrap();
    site.kura(&["incident", "verify", &id]).code(1).stdout_has("entry 2: MAC mismatch: the row was edited");
}

#[test]
fn chain_recomputed_without_the_key_is_detected() {
    let site = Site::new();
    let id = site.incident();
    let n: i64 = id.parse().unwrap();
    let conn = site.db();
    conn.execute("UPDATE timeline SET data = replace(data, 'file server', 'one laptop') WHERE seq = 2", []).unwrap();
    recompute_unkeyed(&conn, n, None);
    site.kura(&["incident", "verify", &id])
        .code(1)
        .stdout_has("entry 1: MAC mismatch: the chain was recomputed without the repository's key");
    // Relabelled as rows written without the repository: the anchors disagree.
    recompute_unkeyed(&conn, n, Some("unkeyed"));
    site.kura(&["incident", "verify", &id]).code(1).stdout_has("does not match the anchor in the repository");
    // ... and as legacy rows.
    recompute_unkeyed(&conn, n, Some("legacy"));
    site.kura(&["incident", "verify", &id]).code(1).stdout_has("does not match the anchor");
}

#[test]
fn entries_written_without_the_repository_are_anchored_later() {
    let site = Site::new();
    let id = site.incident();
    // The repository is unreachable: the entry is still recorded, unkeyed.
    let away = site.repo.base().join("repo-away");
    std::fs::rename(&site.repo.path, &away).unwrap();
    site.kura(&["incident", "update", &id, "--note", "repository offline"])
        .ok()
        .stderr_has("the entry is written unkeyed and not anchored");
    site.kura(&["incident", "verify", &id]).code(2).stderr_has("cannot be verified without the repository");
    std::fs::rename(&away, &site.repo.path).unwrap();
    site.kura(&["incident", "verify", &id]).ok().stdout_has("entries 4-4 are not anchored in the repository");
    site.kura(&["incident", "anchor", &id]).ok().stdout_has("anchored 4 entries");
    let v = site.kura(&["--json", "incident", "verify", &id]).ok().json();
    assert_eq!((v["ok"].as_bool(), v["unkeyed"].as_u64()), (Some(true), Some(1)), "{v}");
}

#[test]
fn legacy_unkeyed_chain_from_before_the_migration_verifies_with_a_warning() {
    let site = Site::new();
    // An incident recorded without any repository, then the database taken back to
    // schema version 1 (before keyed chains and the outbox): its rows become legacy
    // on migration.
    let mut c = bare_kura();
    c.arg("--state").arg(&site.state).args(["--json", "incident", "open", "--title", "old one"]);
    let id = run(&mut c).ok().json()["id"].to_string();
    let conn = site.db();
    conn.execute_batch(
        "ALTER TABLE timeline DROP COLUMN mac; DROP TABLE meta; DROP TABLE outbox;
         ALTER TABLE recovery_systems DROP COLUMN dirs; ALTER TABLE recovery_systems DROP COLUMN objects;
         DROP TABLE fleet_agents; DROP TABLE fleet_tokens; DROP TABLE fleet_tasks;
         DROP TABLE snapshot_verdicts; DROP TABLE snapshot_holds; DROP TABLE scan_results; DROP TABLE scanned_content;
         DROP TABLE standbys; DROP TABLE failovers; ALTER TABLE recovery_systems DROP COLUMN failover;
         ALTER TABLE recovery_systems DROP COLUMN ran_on;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let out = site.kura(&["incident", "verify", &id]);
    out.ok().stdout_has("timeline intact").stdout_has("unkeyed (legacy)");
    let v = site.kura(&["--json", "incident", "verify", &id]).ok().json();
    assert_eq!(v["legacy"], 1, "{v}");
    // Anchoring freezes it: from then on a rewrite is caught.
    site.kura(&["incident", "anchor", &id]).ok();
    site.db().execute("UPDATE timeline SET data = replace(data, 'old one', 'other') WHERE seq = 1", []).unwrap();
    recompute_unkeyed(&site.db(), id.parse().unwrap(), None);
    site.kura(&["incident", "verify", &id]).code(1).stdout_has("does not match the anchor");
}

#[test]
fn copy_never_replaces_a_longer_remote_anchor_with_a_shorter_one() {
    let site = Site::new();
    let id = site.incident();
    // Someone with write access to the database and the repository cuts the tail,
    // deletes the local anchor and anchors the shorter chain afresh.
    site.db().execute("DELETE FROM timeline WHERE seq = 3", []).unwrap();
    std::fs::remove_dir_all(site.repo.path.join("anchors")).unwrap();
    site.kura(&["incident", "anchor", &id]).ok().stdout_has("anchored 2 entries");
    let out = site.kura(&["--repo", s(&site.repo.path), "copy", "--to", s(&site.remote)]);
    out.ok().stdout_has("anchor not copied").stdout_has("covers 3 entries, the source's 2");
    site.kura(&["incident", "verify", &id]).code(1).stdout_has("removed tail: the anchor in the remote site");
}
