//! A real PostgreSQL database backed up with `kura backup --stdin-from-command --
//! pg_dump ...`, restored, loaded into a fresh database and compared row by row.
//! The cluster is a throwaway one in a temp dir, reached only through a unix socket
//! there. PostgreSQL refuses to run as root: as root, the cluster belongs to the
//! `postgres` user (created by the package; else `nobody`) and its tools run
//! through `runuser`.
//! scripts/deps/postgresql.sh installs the package; without it the test skips.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// The newest PostgreSQL's bin directory (Debian keeps them out of PATH), else the
/// directory on PATH that holds `initdb`.
fn pg_bin() -> Option<PathBuf> {
    let complete = |b: &Path| ["initdb", "pg_ctl", "pg_dump", "pg_restore", "psql"].iter().all(|p| b.join(p).is_file());
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(|e| Some(e.ok()?.path().join("bin"))).filter(|b| complete(b)).collect())
        .unwrap_or_default();
    dirs.sort_by_key(|d| d.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()));
    dirs.pop().or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).find(|d| complete(d)))
}

/// Who owns the cluster when the tests run as root (PostgreSQL refuses root): the
/// package's `postgres` user, else `nobody`.
fn cluster_owner() -> Option<&'static str> {
    if !is_root() {
        return None;
    }
    let has_postgres = Command::new("id").arg("postgres").output().is_ok_and(|o| o.status.success());
    Some(if has_postgres { "postgres" } else { "nobody" })
}

struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    sock: PathBuf,
    /// The OS user owning the cluster (its superuser role too), when running as root.
    owner: Option<&'static str>,
}

impl Cluster {
    /// `initdb` + `pg_ctl start` under `base`, listening on a unix socket only.
    fn start(bin: PathBuf, base: &Path) -> Cluster {
        let owner = cluster_owner();
        let dir = base.join("pg");
        std::fs::create_dir_all(dir.join("sock")).unwrap();
        if let Some(u) = owner {
            // The owner must reach its directory through the (root-owned) temp dir.
            std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
            let ok = Command::new("chown").args(["-R", u, s(&dir)]).status().unwrap().success();
            assert!(ok, "chown {u} {dir:?}");
        }
        let c = Cluster { bin, data: dir.join("data"), sock: dir.join("sock"), owner };
        c.tool("initdb", &["-D", s(&c.data), "--auth=trust", "-E", "UTF8", "--no-sync"]).ok();
        let opts = format!("-k {} -c listen_addresses='' -p 5432", s(&c.sock));
        let log = dir.join("log");
        c.tool("pg_ctl", &["-D", s(&c.data), "-l", s(&log), "-o", &opts, "-w", "start"]).ok();
        c
    }

    /// Runs a PostgreSQL program as the cluster's owner.
    fn tool(&self, prog: &str, args: &[&str]) -> Out {
        let exe = self.bin.join(prog);
        let mut cmd = match self.owner {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        run(cmd.args(args).current_dir("/"))
    }

    fn conn(&self) -> Vec<String> {
        let mut a = vec!["-h".to_string(), s(&self.sock).to_string(), "-p".into(), "5432".into()];
        if let Some(u) = self.owner {
            a.extend(["-U".into(), u.into()]);
        }
        a
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let mut args = self.conn();
        args.extend(["-d".into(), db.into(), "-v".into(), "ON_ERROR_STOP=1".into(), "-At".into(), "-c".into()]);
        args.push(sql.into());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tool("psql", &a).ok().stdout.clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.tool("pg_ctl", &["-D", s(&self.data), "-m", "immediate", "stop"]);
    }
}

#[test]
fn pg_dump_through_kura_restores_into_an_identical_database() {
    let Some(bin) = pg_bin() else {
        eprintln!("SKIP: PostgreSQL is not installed (scripts/deps/postgresql.sh installs it)");
        return;
    };
    let r = TestRepo::new();
    let pg = Cluster::start(bin.clone(), r.base());
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), blob bytea);
         INSERT INTO item SELECT i, 'item ' || i || ' ' || md5(i::text), i * 1.25,
                decode(repeat(md5(i::text), 8), 'hex') FROM generate_series(1, 40000) i;",
    );
    let query = "SELECT id, name, price, md5(blob) FROM item ORDER BY id";
    let before = pg.psql("shop", query);
    assert_eq!(before.lines().count(), 40000);

    // kura runs pg_dump itself (no shell, clean environment): the connection is in its arguments.
    let mut dump = vec![s(&bin.join("pg_dump")).to_string(), "-Fc".into()];
    dump.extend(pg.conn());
    dump.push("shop".into());
    let mut args = vec!["--json", "backup", "--stdin-from-command", "--stdin-filename", "shop.dump", "--"];
    args.extend(dump.iter().map(String::as_str));
    let b = r.kura(&args).ok().json();
    assert!(num(&b, "summary.bytes_total") > 100_000, "{b:#}");

    let target = r.base().join("restored");
    r.restore("latest:/shop.dump", &target, &["--verify"]).ok();
    let file = target.join("shop.dump");
    if pg.owner.is_some() {
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    pg.psql("postgres", "CREATE DATABASE shop_restored");
    let mut restore = pg.conn();
    restore.extend(["-d".into(), "shop_restored".into(), "--exit-on-error".into(), s(&file).into()]);
    pg.tool("pg_restore", &restore.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    assert_eq!(pg.psql("shop_restored", query), before, "the restored database differs");
}
