//! `kura config check`: every rejection named by file, line and field; a good
//! config summarized; the shipped examples parse.

use std::path::Path;

use crate::util::*;

/// `kura` with no config from the environment.
fn kura_cmd() -> std::process::Command {
    let mut c = bare_kura();
    c.env_remove("KURA_CONFIG");
    c
}

/// A directory with a repository directory, a passphrase file (0600) and two
/// source directories, and a config naming them.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("repo")).unwrap();
        std::fs::create_dir_all(d.join("src/a")).unwrap();
        std::fs::create_dir_all(d.join("src/b")).unwrap();
        write(&d.join("pass"), "secret\n");
        chmod(&d.join("pass"), 0o600);
        Setup { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn src(&self, name: &str) -> String {
        s(&self.path().join("src").join(name)).to_string()
    }
    /// Writes kura.toml and runs `kura config check` on it.
    fn check(&self, text: &str, extra: &[&str]) -> Out {
        let cfg = self.path().join("kura.toml");
        write(&cfg, text);
        run(kura_cmd().args(["config", "check", s(&cfg)]).args(extra))
    }
    fn good(&self) -> String {
        format!(
            "[repository]\nlocation = \"repo\"\npassword_file = \"pass\"\n\n\
             [[system]]\nname = \"db\"\npriority = 3\npaths = [\"{}\"]\nschedule = \"*/5 * * * *\"\n\
             standby = {{ path = \"standby/db\" }}\n\n\
             [[system]]\nname = \"files\"\npriority = 1\npaths = [\"{}\"]\n\n\
             [jobs.prune]\nschedule = \"0 4 * * *\"\nkeep_daily = 7\n",
            self.src("a"),
            self.src("b")
        )
    }
}

#[test]
fn a_good_config_is_summarized() {
    let t = Setup::new();
    let out = t.check(&t.good(), &[]);
    out.ok().stdout_has("config OK: 2 systems (p3: 1, p2: 0, p1: 1, p0: 0), 1 with a backup schedule; jobs: prune");
    assert!(out.stderr.is_empty(), "{out}");
    let out = t.check(&t.good(), &["--json"]);
    let v = out.ok().json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["systems"][0]["name"], "db");
    assert_eq!(v["systems"][0]["priority"], 3);
    assert_eq!(v["systems"][0]["schedule"], "*/5 * * * *");
    assert_eq!(v["jobs"][0], "prune");
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
}

/// A priority-3 system without a standby cannot meet "must not stop": a warning.
#[test]
fn a_priority_3_system_without_a_standby_is_a_warning() {
    let t = Setup::new();
    let text = t.good().replace("standby = { path = \"standby/db\" }\n", "");
    let out = t.check(&text, &[]);
    out.ok().stderr_has("warning: system[0].priority: system \"db\" has priority 3 (must not stop) but no standby");
}

#[test]
fn every_rejection_names_file_line_and_field() {
    let t = Setup::new();
    let text = format!(
        "[repository]\n\
         location = \"repo\"\n\
         password_file = \"no-such-pass\"\n\
         \n\
         [[system]]\n\
         name = \"db\"\n\
         priority = 7\n\
         paths = [\"{a}\"]\n\
         schedule = \"*/5 * * *\"\n\
         \n\
         [[system]]\n\
         name = \"db\"\n\
         priority = 1\n\
         paths = [\"{a}\", \"/no/such/dir\"]\n\
         retention = 3\n\
         \n\
         [[system]]\n\
         name = \"web\"\n\
         priority = 2\n\
         paths = [\"{a}\"]\n\
         schedule = \"0 25 * * *\"\n",
        a = t.src("a")
    );
    let out = t.check(&text, &[]);
    out.code(2);
    let file = s(&t.path().join("kura.toml")).to_string();
    out.stderr_has(&format!("{file}:7: error: system[0].priority: priority 7 is out of range: use 0, 1, 2 or 3"))
        .stderr_has(&format!("{file}:9: error: system[0].schedule: bad cron expression \"*/5 * * *\": 4 fields"))
        .stderr_has(&format!(
            "{file}:12: error: system[1].name: duplicate system name \"db\" (first declared on line 6)"
        ))
        .stderr_has(&format!("{file}:15: error: system[1].retention: unknown field `retention`"))
        .stderr_has(&format!("{file}:21: error: system[2].schedule: bad cron expression \"0 25 * * *\""))
        .stderr_has("5 errors found; nothing was started");
    // The text is fixed first; then the machine is checked.
    let text = text
        .replace("priority = 7", "priority = 2")
        .replace("*/5 * * *\"", "*/5 * * * *\"")
        .replace("name = \"db\"\npriority = 1", "name = \"files\"\npriority = 1")
        .replace("retention = 3\n", "")
        .replace("0 25 * * *", "0 2 * * *");
    let out = t.check(&text, &[]);
    out.code(2)
        .stderr_has(&format!("{file}:3: error: repository.password_file: cannot read password file"))
        .stderr_has(&format!(
            "{file}:14: error: system[1].paths[1]: path /no/such/dir of system \"files\" does not exist"
        ))
        .stderr_has("2 errors found");
    let v = t.check(&text, &["--json"]).code(2).json();
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2);
    assert_eq!(problems[0]["line"], 3);
    assert_eq!(problems[0]["field"], "repository.password_file");
    assert_eq!(problems[0]["severity"], "error");
    assert_eq!(problems[1]["line"], 14);
}

#[test]
fn readable_password_file_is_a_warning_not_an_error() {
    let t = Setup::new();
    chmod(&t.path().join("pass"), 0o644);
    let out = t.check(&t.good(), &[]);
    out.ok().stderr_has("warning: repository.password_file:").stderr_has("chmod 600");
}

#[test]
fn syntax_errors_and_missing_files() {
    let t = Setup::new();
    let out = t.check("[repository]\nlocation = \"repo\"\npassword_file = \n", &[]);
    out.code(2).stderr_has("kura.toml:3: error: (syntax): invalid TOML");
    let out = run(kura_cmd().args(["config", "check", "/no/such/kura.toml"]));
    out.code(2).stderr_has("/no/such/kura.toml: error: (file): cannot read the config file");
}

#[test]
fn shipped_examples_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let c = kura::config::load(&p).unwrap_or_else(|e| panic!("{}:\n{e}", p.display()));
        for prio in kura::types::Priority::ALL {
            assert!(c.systems.iter().any(|s| s.priority == prio), "{} has no priority {prio} system", p.display());
        }
        seen += 1;
    }
    assert!(seen >= 2, "expected the two example configs");
    let large = kura::config::load(&root.join("large-site.toml")).unwrap();
    assert_eq!(large.systems.len(), 22);
}

#[test]
fn the_documented_example_parses() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/CONFIG.md")).unwrap();
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let c = kura::config::parse_str(Path::new("/etc/kura/kura.toml"), &doc[start..end])
        .unwrap_or_else(|e| panic!("docs/CONFIG.md example:\n{e}"));
    assert_eq!(c.systems.len(), 3);
    assert!(c.system("crm-db").is_some_and(|s| s.stream.is_some()), "the example shows a command");
    assert!(c.jobs.replicate.is_some() && c.jobs.prune.is_some() && c.jobs.check.is_some() && c.jobs.drill.is_some());
}

#[test]
fn a_top_level_field_after_a_table_gets_a_hint() {
    let t = Setup::new();
    let text = t.good().replace("[repository]\n", "[repository]\ncatch_up = \"skip\"\n");
    t.check(&text, &[])
        .code(2)
        .stderr_has("kura.toml:2: error: repository.catch_up: unknown field `catch_up`")
        .stderr_has("is a top-level field: in TOML it must come before the first [table] header");
}

/// `http://x` is neither a local directory nor S3. `config check` and `backup` parse
/// a location with the same store function, so both refuse it with the same words
/// and say what to write instead (before, the config accepted it as remote and
/// `backup` took it for a directory named `http:`).
#[test]
fn an_unsupported_scheme_is_refused_the_same_way_by_config_check_and_backup() {
    let t = Setup::new();
    let text = t.good().replace("location = \"repo\"", "location = \"http://x/bucket\"");
    let expected = "\"http://x/bucket\" is not a repository location: kura has no http:// backend. \
                    Write a local directory path, or an S3 location such as s3:http://x/bucket";
    t.check(&text, &[]).code(2).stderr_has("kura.toml:2").stderr_has("repository.location").stderr_has(expected);
    let out = run(kura_cmd().args(["--repo", "http://x/bucket", "backup", &t.src("a")]).env("KURA_PASSWORD", "secret"));
    out.code(2).stderr_has(expected);
    assert!(!t.path().join("http:").exists() && !Path::new("http:").exists(), "no directory named http: was made");
}
