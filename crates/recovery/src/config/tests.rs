use std::path::Path;

use super::*;
use crate::plan::problems::Severity;

const GOOD: &str = r#"
state = "state/kura.db"
catch_up = "skip"

[repository]
location = "repo"
password_file = "/etc/kura/pass"

[remote]
location = "s3:https://s3.example.com/bucket/kura"
password_file = "remote.pass"

[deadlines]
p2 = "12h"
p0 = "14d"

[max_backup_age]
p3 = "30m"
p0 = "none"

[[system]]
name = "erp-db"
priority = 3
host = "erp1"
paths = ["/srv/erp/db"]
exclude = ["*.tmp", "/srv/erp/db/cache/"]
schedule = "*/15 * * * *"

[[system]]
name = "wiki"
priority = 0
paths = ["/srv/wiki"]

[jobs.replicate]
schedule = "0 3 * * *"

[jobs.prune]
schedule = "0 4 * * sun"
keep_daily = 7
keep_weekly = 4

[jobs.check]
schedule = "0 0 5 * * mon-fri"
read_data_subset = 7

[jobs.drill]
schedule = "@monthly"
plan = "../plans/office.toml"

[notify]
webhook = "https://hooks.example.com/kura"
command = "logger -t kura"
"#;

fn parse(text: &str) -> Result<Config, Problems> {
    parse_str(Path::new("/etc/kura/kura.toml"), text)
}

/// The problems of a text that must fail, as "line field message" strings.
fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(p) => p.0,
    }
}

#[track_caller]
fn has(ps: &[Problem], line: usize, field: &str, msg: &str) {
    assert!(
        ps.iter().any(|p| p.line == Some(line) && p.field == field && p.message.contains(msg)),
        "no problem at line {line} field {field} containing {msg:?} in:\n{}",
        Problems(ps.to_vec())
    );
}

const HEAD: &str = "[repository]\nlocation = \"/r\"\npassword_file = \"/p\"\n";

#[test]
fn a_full_config_reads() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.repository.location.to_string(), "/etc/kura/repo");
    assert_eq!(c.repository.password_file, Path::new("/etc/kura/pass"));
    let remote = c.remote.as_ref().unwrap();
    assert_eq!(remote.location.to_string(), "s3:https://s3.example.com/bucket/kura");
    assert_eq!(remote.password_file, Path::new("/etc/kura/remote.pass"));
    assert_eq!(c.state.as_deref(), Some(Path::new("/etc/kura/state/kura.db")));
    assert_eq!(c.catch_up, CatchUp::Skip);
    assert_eq!(c.deadlines[3], Some(Duration::zero()));
    assert_eq!(c.deadlines[2], Some(Duration::hours(12)));
    assert_eq!(c.deadlines[1], Some(Duration::hours(72)));
    assert_eq!(c.deadlines[0], Some(Duration::days(14)));
    assert_eq!(c.max_backup_age[3], Some(Duration::minutes(30)));
    assert_eq!(c.max_backup_age[2], Some(Duration::hours(26)));
    assert_eq!(c.max_backup_age[0], None);
    assert_eq!(c.systems.len(), 2);
    let erp = c.system("erp-db").unwrap();
    assert_eq!(erp.priority, Priority::new(3).unwrap());
    assert_eq!(erp.host.as_deref(), Some("erp1"));
    assert_eq!(erp.excludes, vec!["*.tmp", "/srv/erp/db/cache/"]);
    assert_eq!(erp.tag(), "system:erp-db");
    let sch = erp.schedule.as_ref().unwrap();
    assert_eq!(sch.expr, "*/15 * * * *");
    assert!(c.system("wiki").unwrap().schedule.is_none());
    assert_eq!(c.jobs.prune.as_ref().unwrap().keep_daily, Some(7));
    assert_eq!(c.jobs.prune.as_ref().unwrap().keep_last, None);
    assert_eq!(c.jobs.check.as_ref().unwrap().read_data_subset, 7);
    assert_eq!(c.jobs.drill.as_ref().unwrap().plan, Path::new("/etc/plans/office.toml"));
    assert!(c.jobs.replicate.is_some());
    assert_eq!(c.notify.command.as_deref(), Some("logger -t kura"));
}

#[test]
fn defaults_apply() {
    let c = parse(&format!("{HEAD}[[system]]\nname = \"a\"\npriority = 1\npaths = [\"/a\"]\n")).unwrap();
    assert_eq!(c.catch_up, CatchUp::Once);
    assert!(c.remote.is_none() && c.state.is_none());
    for p in Priority::ALL {
        assert_eq!(c.deadline(p), p.default_deadline());
    }
    assert_eq!(c.max_backup_age[3], Some(Duration::hours(2)));
    assert_eq!(c.max_backup_age[1], Some(Duration::days(3)));
    assert_eq!(c.max_backup_age[0], Some(Duration::days(8)));
}

#[test]
fn cron_five_fields_fire_on_the_minute() {
    use chrono::{TimeZone, Timelike, Utc};
    let s = parse_schedule("30 2 * * *").unwrap();
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let next = s.cron.after(&start).next().unwrap();
    assert_eq!((next.hour(), next.minute(), next.second()), (2, 30, 0));
    // Six fields: seconds first.
    let s = parse_schedule("*/2 * * * * *").unwrap();
    let mut it = s.cron.after(&start);
    assert_eq!(it.next().unwrap().second(), 2);
    // Weekday names; 2026-01-03 is a Saturday, so mon-fri next fires on Monday the 5th.
    let s = parse_schedule("0 9 * * mon-fri").unwrap();
    let sat = Utc.with_ymd_and_hms(2026, 1, 3, 0, 0, 0).unwrap();
    assert_eq!(s.cron.after(&sat).next().unwrap(), Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap());
    assert!(parse_schedule("@daily").is_ok());
    for bad in ["* * *", "61 * * * *", "0 9 * * 1-5", "a b c d e", "", "0 0 0 0 0 0 0 0"] {
        assert!(parse_schedule(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn every_problem_is_reported_with_line_and_field() {
    let text = r#"[repository]
location = "/r"
password_file = "/p"
colour = "blue"

[[system]]
name = "a"
priority = 4
paths = ["/a"]
schedule = "61 * * * *"

[[system]]
name = "a"
priority = 1
paths = []

[[system]]
name = "Bad Name"
priority = 2
paths = ["relative/dir"]
shedule = "0 1 * * *"

[deadlines]
p2 = "soon"
"#;
    let ps = problems(text);
    has(&ps, 4, "repository.colour", "unknown field `colour`");
    has(&ps, 8, "system[0].priority", "priority 4 is out of range");
    has(&ps, 10, "system[0].schedule", "bad cron expression \"61 * * * *\"");
    has(&ps, 13, "system[1].name", "duplicate system name \"a\"");
    has(&ps, 15, "system[1].paths", "the paths list is empty");
    has(&ps, 18, "system[2].name", "not a valid system name");
    has(&ps, 20, "system[2].paths[0]", "not an absolute path");
    has(&ps, 21, "system[2].shedule", "unknown field `shedule`");
    has(&ps, 24, "deadlines.p2", "\"soon\" is not a duration");
    assert!(ps.iter().all(|p| p.file == Path::new("/etc/kura/kura.toml")));
    assert_eq!(ps.iter().filter(|p| p.severity == Severity::Error).count(), 9, "{}", Problems(ps.clone()));
}

#[test]
fn type_errors_and_missing_fields() {
    let ps = problems("[repository]\nlocation = 5\n\n[[system]]\nname = \"x\"\npaths = \"/x\"\n");
    has(&ps, 2, "repository.location", "expected a string, found an integer");
    has(&ps, 1, "repository.password_file", "missing field `password_file`");
    has(&ps, 4, "system[0].priority", "missing field `priority`");
    has(&ps, 6, "system[0].paths", "expected an array of strings");

    let ps = problems("state = \"/s\"\n");
    has(&ps, 1, "repository", "missing field `repository`");

    let ps = problems(&format!("catch_up = \"twice\"\n{HEAD}[jobs.prune]\nschedule = \"0 1 * * *\"\n"));
    has(&ps, 1, "catch_up", "not a catch-up policy");
    has(&ps, 5, "jobs.prune", "needs a retention policy");

    let ps =
        problems(&format!("{HEAD}[jobs.replicate]\nschedule = \"0 1 * * *\"\n[jobs.check]\nread_data_subset = 0\n"));
    has(&ps, 4, "jobs.replicate", "needs a [remote] table");
    has(&ps, 6, "jobs.check.schedule", "missing field `schedule`");
    has(&ps, 7, "jobs.check.read_data_subset", "must be a positive number");
    // The rotation's bound (shared with `check --read-data-subset next/M`).
    let ps =
        problems(&format!("{HEAD}[jobs.replicate]\nschedule = \"0 1 * * *\"\n[jobs.check]\nread_data_subset = 257\n"));
    has(&ps, 7, "jobs.check.read_data_subset", "at most 256");

    let ps = problems(&format!("{HEAD}[notify]\nwebhook = \"ftp://x\"\n[jobs]\nbackup = 1\n"));
    has(&ps, 5, "notify.webhook", "not an http:// or https:// URL");
    has(&ps, 7, "jobs.backup", "unknown field `backup`");

    let ps = problems(&format!("{HEAD}[http]\nlisten = \"localhost\"\ntoken = \"x\"\n"));
    has(&ps, 5, "http.listen", "not an address and port");
    has(&ps, 6, "http.token", "unknown field `token`");
    let ps = problems(&format!(
        "{HEAD}[notify]\nwebhook = \"ftp://u:pw@x/?token=t\"\nretry_initial = \"0\"\nretry_max = \"soon\"\nrepeat_after = \"1h\"\n"
    ));
    let text = Problems(ps.clone()).to_string();
    assert!(!text.contains("pw") && !text.contains("token=t"), "{text}");
    has(&ps, 6, "notify.retry_initial", "must be longer than 0");
    has(&ps, 7, "notify.retry_max", "not a duration");
    let ps = problems(&format!("{HEAD}[notify]\nretry_initial = \"10m\"\nretry_max = \"1m\"\n"));
    has(&ps, 6, "notify.retry_max", "must not be shorter than retry_initial");

    let ps = problems("[repository\n");
    has(&ps, 1, "(syntax)", "invalid TOML");
}

#[test]
fn system_names() {
    for ok in ["a", "erp-db", "web.1", "x_y", "0day"] {
        assert!(valid_system_name(ok), "{ok}");
    }
    for bad in ["", "-a", ".a", "A", "a b", "a/b", "a:b", &"x".repeat(65)] {
        assert!(!valid_system_name(bad), "{bad}");
    }
}

#[test]
fn environment_check_finds_missing_paths_and_password_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("repo")).unwrap();
    std::fs::create_dir(d.join("data")).unwrap();
    std::fs::write(d.join("pass"), "secret\n").unwrap();
    std::fs::set_permissions(d.join("pass"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[repository]\nlocation = \"repo\"\npassword_file = \"pass\"\n\n\
         [remote]\nlocation = \"remote\"\npassword_file = \"nope\"\n\n\
         [[system]]\nname = \"a\"\npriority = 1\npaths = [\"{}\", \"/definitely/not/here\"]\n\n\
         [[system]]\nname = \"b\"\npriority = 1\ncommand = [\"no-such-dump-tool-here\"]\n\n\
         [[system]]\nname = \"c\"\npriority = 1\ncommand = [\"sh\", \"-c\", \"true\"]\n\n\
         [notify]\nca_file = \"ca.pem\"\n",
        d.join("data").display()
    );
    std::fs::write(d.join("kura.toml"), &text).unwrap();
    let c = load(&d.join("kura.toml")).unwrap();
    let ps = c.check_environment().0;
    has(&ps, 6, "remote.location", "no directory at");
    has(&ps, 7, "remote.password_file", "cannot read password file");
    has(&ps, 12, "system[0].paths[1]", "/definitely/not/here of system \"a\" does not exist");
    has(&ps, 17, "system[1].command", "\"no-such-dump-tool-here\" of system \"b\" is not found on PATH");
    has(&ps, 25, "notify.ca_file", &format!("cannot read ca_file {}", d.join("ca.pem").display()));
    assert_eq!(ps.len(), 5, "{}", Problems(ps.clone()));
    std::fs::write(d.join("ca.pem"), "no certificate here\n").unwrap();
    has(&c.check_environment().0, 25, "notify.ca_file", "no PEM certificate in it");

    std::fs::set_permissions(d.join("pass"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let ps = c.check_environment().0;
    assert!(ps.iter().any(|p| p.severity == Severity::Warning && p.field == "repository.password_file"));
}

#[test]
fn a_system_can_back_up_a_command_beside_or_instead_of_paths() {
    let c = parse(&format!(
        "{HEAD}[[system]]\nname = \"db\"\npriority = 3\ncommand = [\"pg_dump\", \"-Fc\", \"mydb\"]\n\
         stdin_filename = \"mydb.dump\"\ncommand_timeout = \"1h30m\"\n\n[[system]]\nname = \"both\"\npriority = 1\npaths = [\"/etc\"]\n\
         command = [\"true\"]\n"
    ))
    .unwrap();
    let db = c.system("db").unwrap();
    assert!(db.paths.is_empty());
    let st = db.stream.as_ref().unwrap();
    assert_eq!(st.filename, "mydb.dump");
    assert_eq!(st.timeout, Some(std::time::Duration::from_secs(5400)));
    assert_eq!(c.system("both").unwrap().stream.as_ref().unwrap().timeout, None);
    assert!(matches!(&st.input, kura_store::backup::StreamInput::Command(a) if a == &["pg_dump", "-Fc", "mydb"]));
    assert_eq!(db.snapshot_paths(), vec!["/mydb.dump"]);
    assert_eq!(c.system("both").unwrap().snapshot_paths(), vec!["/etc", "/stdin"]);
}

#[test]
fn stream_fields_are_checked_with_line_and_field() {
    let ps = problems(&format!(
        "{HEAD}[[system]]\nname = \"a\"\npriority = 1\ncommand = []\n\n\
         [[system]]\nname = \"b\"\npriority = 1\ncommand = [\"x\"]\nstdin_filename = \"a/b\"\n\n\
         [[system]]\nname = \"c\"\npriority = 1\npaths = [\"/c\"]\nstdin_filename = \"c.dump\"\n\n\
         [[system]]\nname = \"d\"\npriority = 1\npaths = [\"/d.dump/x\"]\ncommand = [\"x\"]\nstdin_filename = \"d.dump\"\n\n\
         [[system]]\nname = \"e\"\npriority = 1\ncommand = \"pg_dump mydb\"\n\n\
         [[system]]\nname = \"f\"\npriority = 1\ncommand = [\"x\"]\ncommand_timeout = \"soon\"\n\n\
         [[system]]\nname = \"g\"\npriority = 1\npaths = [\"/g\"]\ncommand_timeout = \"5m\"\n"
    ));
    has(&ps, 7, "system[0].command", "the command is empty");
    has(&ps, 13, "system[1].stdin_filename", "one plain file name");
    has(&ps, 19, "system[2].stdin_filename", "needs a `command`");
    has(&ps, 26, "system[3].stdin_filename", "also under `paths`");
    has(&ps, 31, "system[4].command", "expected an array of strings");
    has(&ps, 37, "system[5].command_timeout", "soon");
    has(&ps, 43, "system[6].command_timeout", "needs a `command`");
}

#[test]
fn http_listener() {
    let c = parse_str(Path::new("/etc/kura/kura.toml"), HEAD).unwrap();
    assert!(c.http.is_none(), "off unless [http] is given");
    let c = parse_str(Path::new("/etc/kura/kura.toml"), &format!("{HEAD}[http]\n")).unwrap();
    let h = c.http.unwrap();
    assert_eq!(h.listen.to_string(), "127.0.0.1:9187");
    assert_eq!(h.token_file, None);
    let text = format!("{HEAD}[http]\nlisten = \"0.0.0.0:8080\"\ntoken_file = \"tok\"\n");
    let h = parse_str(Path::new("/etc/kura/kura.toml"), &text).unwrap().http.unwrap();
    assert_eq!(h.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(h.token_file.as_deref(), Some(Path::new("/etc/kura/tok")));
}
