//! Reading `kura.toml` into a `Config`: syntax and meaning, every problem reported
//! with its line and field. No filesystem access besides reading the file itself;
//! `Config::check_environment` looks at the paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::Duration;
use kura_store::backend::Location;
use kura_store::backup::{StreamInput, StreamSource};
use kura_store::check::rotation::MAX_PARTS;

use super::tree::{self, At, Diag, Obj};
use super::*;
use crate::plan::problems::Severity;

const TOP: &[&str] = &[
    "repository",
    "remote",
    "state",
    "catch_up",
    "deadlines",
    "max_backup_age",
    "system",
    "jobs",
    "notify",
    "http",
    "fleet",
    "detect",
];
const REPO: &[&str] = &["location", "password_file"];
const SYSTEM: &[&str] = &[
    "name",
    "priority",
    "host",
    "paths",
    "exclude",
    "schedule",
    "command",
    "stdin_filename",
    "command_timeout",
    "standby",
    "tolerance",
];
const JOBS: &[&str] = &["replicate", "prune", "check", "drill"];
const PRIORITY_KEYS: &[&str] = &["p3", "p2", "p1", "p0"];

/// Allowed age of the last good backup, by priority (index = priority), when the
/// config does not say: a day's schedule plus slack for the run itself.
pub const DEFAULT_MAX_BACKUP_AGE: [Option<u64>; 4] =
    [Some(8 * 86_400), Some(3 * 86_400), Some(26 * 3600), Some(2 * 3600)];

/// Reads and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: path.to_path_buf(),
            line: None,
            field: "(file)".into(),
            message: format!("cannot read the config file: {e}"),
            severity: Severity::Error,
        }])
    })?;
    parse_str(path, &text)
}

/// Validates config text as if read from `path` (relative paths in it are resolved
/// against `path`'s directory).
pub fn parse_str(path: &Path, text: &str) -> Result<Config, Problems> {
    let root = tree::parse(path, text).map_err(|p| Problems(vec![p]))?;
    let mut d = Diag::new(path);
    d.top_keys = &["state", "catch_up"];
    let base = base_dir(path);
    let config = read(&mut d, &root, path, &base);
    match config {
        Some(c) if !d.has_errors() => Ok(c),
        _ => Err(Problems(d.problems)),
    }
}

/// The directory relative paths are resolved against: the file's own, made absolute.
pub(crate) fn base_dir(file: &Path) -> PathBuf {
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    tree::resolve_path(base, p)
}

fn read(d: &mut Diag, root: &tree::Node, path: &Path, base: &Path) -> Option<Config> {
    let top = Obj::open(d, root, "", TOP, &[])?;

    let repository = match top.table(d, "repository", REPO) {
        Some(o) => repo_spec(d, &o, base),
        None => {
            if top.get("repository").is_none() {
                top.missing(d, "repository", "add a [repository] table with `location` and `password_file`");
            }
            None
        }
    };
    let remote = top.table(d, "remote", REPO).and_then(|o| repo_spec(d, &o, base));
    let remote_given = top.get("remote").is_some();
    let state = top.req_opt_str(d, "state").map(|s| resolve(base, &s.value));
    let catch_up = match top.str(d, "catch_up") {
        None => CatchUp::Once,
        Some(s) => match s.value.as_str() {
            "once" => CatchUp::Once,
            "skip" => CatchUp::Skip,
            other => {
                d.error(s.line, &s.field, format!("{other:?} is not a catch-up policy: use \"once\" or \"skip\""));
                CatchUp::Once
            }
        },
    };
    let mut deadlines: [Option<Duration>; 4] = [None; 4];
    for p in Priority::ALL {
        deadlines[p.get() as usize] = p.default_deadline();
    }
    per_priority(d, &top, "deadlines", &mut deadlines);
    let mut max_backup_age = DEFAULT_MAX_BACKUP_AGE.map(|s| s.map(|s| Duration::seconds(s as i64)));
    per_priority(d, &top, "max_backup_age", &mut max_backup_age);

    let mut systems = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Standbys on an agent host need the fleet: checked once [fleet] is read.
    let mut standby_hosts: Vec<(usize, String)> = Vec::new();
    if let Some(e) = top.get("system") {
        if !matches!(e.node.kind, tree::Kind::Array(_)) {
            d.error(e.line, "system", "expected [[system]] tables");
        }
    }
    for (_, o) in top.tables(d, "system", SYSTEM, &[]) {
        // Duplicates are found by name alone, whatever else is wrong with either system.
        let mut dup = false;
        if let Some(e) = o.get("name") {
            if let tree::Kind::Str(name) = &e.node.kind {
                if let Some(first) = seen.get(name) {
                    d.error(
                        e.node.line,
                        &o.field("name"),
                        format!("duplicate system name {name:?} (first declared on line {first})"),
                    );
                    dup = true;
                } else {
                    seen.insert(name.clone(), e.node.line);
                }
            }
        }
        match system(d, &o, base) {
            Some(s) if !dup => {
                if s.standby.as_ref().is_some_and(|sb| sb.host.is_some()) {
                    standby_hosts.push((o.get("standby").map_or(o.line, |e| e.line), o.field("standby.host")));
                }
                systems.push(s)
            }
            _ => {}
        }
    }
    if top.get("system").is_none() {
        d.warning(root.line, "system", "no [[system]] declared: nothing will be backed up");
    }

    let jobs = top.table(d, "jobs", JOBS).map(|o| jobs(d, &o, base, remote_given)).unwrap_or_default();
    let notify = top.table(d, "notify", NOTIFY).map(|o| notify(d, &o, base)).unwrap_or_default();
    let http = top.table(d, "http", &["listen", "token_file"]).and_then(|o| http(d, &o, base));
    let fleet = top.table(d, "fleet", FLEET).and_then(|o| fleet(d, &o));
    if fleet.is_none() {
        for (line, field) in standby_hosts {
            d.error(
                line,
                &field,
                "a standby on another host needs the fleet: add a [fleet] table and run `kura agent` there \
                 (docs/FLEET.md), or remove `host` for a standby on this machine",
            );
        }
    }
    let detect = top.table(d, "detect", DETECT).map(|o| detect(d, &o, base)).unwrap_or_default();

    Some(Config {
        path: path.to_path_buf(),
        repository: repository?,
        remote,
        state,
        deadlines,
        max_backup_age,
        catch_up,
        systems,
        jobs,
        notify,
        http,
        fleet,
        detect,
    })
}

impl Obj<'_> {
    /// An optional string that must not be empty when given.
    fn req_opt_str(&self, d: &mut Diag, key: &str) -> Option<At<String>> {
        self.get(key)?;
        self.req_str(d, key, "remove the line or give a value")
    }
}

fn repo_spec(d: &mut Diag, o: &Obj, base: &Path) -> Option<RepoSpec> {
    let location = o.req_str(d, "location", "the repository directory (or s3:... location)");
    let password_file = o.req_str(d, "password_file", "the file holding the repository passphrase");
    let location = location?;
    // The store's one parser decides what a location is; a local path is then
    // resolved against the config's directory like every other path in it.
    let location = match Location::parse(&location.value) {
        Ok(Location::Local(p)) => Location::Local(resolve(base, &p.to_string_lossy())),
        Ok(other) => other,
        Err(e) => {
            d.error(location.line, &location.field, e.to_string());
            return None;
        }
    };
    Some(RepoSpec { location, password_file: resolve(base, &password_file?.value) })
}

/// `[deadlines]` / `[max_backup_age]`: keys p3..p0, values a duration or "none".
fn per_priority(d: &mut Diag, top: &Obj, key: &str, out: &mut [Option<Duration>; 4]) {
    let Some(o) = top.table(d, key, PRIORITY_KEYS) else { return };
    for (i, k) in PRIORITY_KEYS.iter().enumerate() {
        let prio = 3 - i;
        let Some(s) = o.str(d, k) else { continue };
        if s.value == "none" {
            out[prio] = None;
            continue;
        }
        match tree::parse_duration(&s.value) {
            Ok(v) => out[prio] = Some(Duration::seconds(v.as_secs() as i64)),
            Err(e) => d.error(s.line, &s.field, format!("{e}, or \"none\"")),
        }
    }
}

/// Whether `name` can be a system name: it appears in tags (`system:NAME`) and file names.
pub fn valid_system_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
}

fn system(d: &mut Diag, o: &Obj, base: &Path) -> Option<SystemConfig> {
    let name = o.req_str(d, "name", "every system needs a name");
    if let Some(n) = &name {
        if !valid_system_name(&n.value) {
            d.error(
                n.line,
                &n.field,
                format!(
                    "{:?} is not a valid system name: use lower-case letters, digits, '.', '_' and '-', \
                     starting with a letter or digit, at most 64 characters",
                    n.value
                ),
            );
        }
    }
    let priority = match o.int(d, "priority") {
        None => {
            if o.get("priority").is_none() {
                o.missing(d, "priority", "the recovery priority, 0 to 3 (3 must not stop, 0 may stay down)");
            }
            None
        }
        Some(p) => {
            let pr = u8::try_from(p.value).ok().and_then(Priority::new);
            if pr.is_none() {
                d.error(p.line, &p.field, format!("priority {} is out of range: use 0, 1, 2 or 3", p.value));
            }
            pr
        }
    };
    let host = o.req_opt_str(d, "host").map(|h| h.value);
    let stream = stream_fields(d, o);
    let paths = paths_field(d, o, stream.is_some() || o.get("command").is_some());
    if let Some(st) = &stream {
        let clash = paths.iter().any(|p| p.components().nth(1).is_some_and(|c| c.as_os_str() == st.filename.as_str()));
        if clash {
            let at = o.get("stdin_filename").map_or(o.line, |e| e.node.line);
            d.error(
                at,
                &o.field("stdin_filename"),
                format!("/{} is also under `paths`: give the stream another file name", st.filename),
            );
        }
    }
    let mut excludes = Vec::new();
    if let Some(list) = o.str_list(d, "exclude") {
        for p in list.value {
            match globset::Glob::new(p.value.trim_end_matches('/')) {
                Ok(_) => excludes.push(p.value),
                Err(e) => d.error(p.line, &p.field, format!("bad exclude pattern {:?}: {e}", p.value)),
            }
        }
    }
    let schedule = schedule_field(d, o, "schedule");
    let standby = super::standby::standby(d, o, base);
    let tolerance = super::standby::tolerance(d, o);
    // Only on one host can a standby lie inside the system's paths.
    let same_host = |sb: &super::StandbyConfig| sb.host.is_none() || sb.host.as_deref() == host.as_deref();
    if let (Some(sb), [p]) = (&standby, paths.as_slice()) {
        if same_host(sb) && sb.path.starts_with(p) || p.starts_with(&sb.path) {
            let at = o.get("standby").map_or(o.line, |e| e.line);
            d.error(
                at,
                &o.field("standby.path"),
                "the standby must be outside the system's paths, and not contain them",
            );
        }
    }
    Some(SystemConfig {
        name: name?.value,
        priority: priority?,
        host,
        paths,
        excludes,
        schedule,
        stream,
        standby,
        tolerance,
    })
}

/// `paths`: required unless the system backs up a command's output (`has_command`).
fn paths_field(d: &mut Diag, o: &Obj, has_command: bool) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let Some(list) = o.str_list(d, "paths") else {
        if o.get("paths").is_none() && !has_command {
            o.missing(d, "paths", "the absolute paths to back up (or a `command` whose output is backed up)");
        }
        return paths;
    };
    if list.value.is_empty() && !has_command {
        d.error(list.line, &list.field, "the paths list is empty: give at least one absolute path");
    }
    for p in list.value {
        if !Path::new(&p.value).is_absolute() {
            d.error(p.line, &p.field, format!("{:?} is not an absolute path: backup paths must start with /", p.value));
        } else {
            paths.push(PathBuf::from(p.value));
        }
    }
    paths
}

/// `command` (program and arguments, no shell) and `stdin_filename` (the file its
/// output is stored as, default `stdin`).
fn stream_fields(d: &mut Diag, o: &Obj) -> Option<StreamSource> {
    let filename = o.str(d, "stdin_filename");
    let Some(cmd) = o.str_list(d, "command") else {
        if let Some(f) = filename {
            d.error(f.line, &f.field, "stdin_filename needs a `command` whose output it names");
        }
        if let Some(e) = o.get("command_timeout") {
            d.error(e.node.line, &o.field("command_timeout"), "command_timeout needs a `command` to time");
        }
        return None;
    };
    if cmd.value.first().is_none_or(|p| p.value.is_empty()) {
        d.error(
            cmd.line,
            &cmd.field,
            "the command is empty: give the program and its arguments, e.g. [\"pg_dump\", \"-Fc\", \"mydb\"]",
        );
        return None;
    }
    let argv = cmd.value.into_iter().map(|a| a.value).collect();
    let (name, line, field) = match filename {
        Some(f) => (f.value, f.line, f.field),
        None => ("stdin".to_string(), cmd.line, cmd.field),
    };
    let timeout = command_timeout(d, o);
    let src = StreamSource { filename: name, input: StreamInput::Command(argv), timeout };
    if let Err(e) = src.validate() {
        d.error(line, &field, e.to_string());
        return None;
    }
    Some(src)
}

/// `command_timeout`: how long the stream command may run (`30m`, `2h`).
fn command_timeout(d: &mut Diag, o: &Obj) -> Option<std::time::Duration> {
    let s = o.str(d, "command_timeout")?;
    match tree::parse_duration(&s.value) {
        Ok(v) if v.is_zero() => {
            d.error(s.line, &s.field, "a timeout of 0 would stop every command at once: give e.g. \"30m\"");
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            d.error(s.line, &s.field, e.to_string());
            None
        }
    }
}

fn schedule_field(d: &mut Diag, o: &Obj, key: &str) -> Option<Schedule> {
    let s = o.str(d, key)?;
    match parse_schedule(&s.value) {
        Ok(sch) => Some(sch),
        Err(e) => {
            d.error(s.line, &s.field, e.to_string());
            None
        }
    }
}

fn required_schedule(d: &mut Diag, o: &Obj) -> Option<Schedule> {
    if o.get("schedule").is_none() {
        o.missing(d, "schedule", "a cron expression, e.g. \"30 2 * * *\"");
        return None;
    }
    schedule_field(d, o, "schedule")
}

fn jobs(d: &mut Diag, o: &Obj, base: &Path, remote_given: bool) -> Jobs {
    let mut jobs = Jobs::default();
    if let Some(r) = o.table(d, "replicate", &["schedule"]) {
        jobs.replicate = required_schedule(d, &r);
        if !remote_given {
            d.error(r.line, &r.path, "jobs.replicate needs a [remote] table naming the remote repository");
        }
    }
    if let Some(p) = o.table(d, "prune", &["schedule", "keep_last", "keep_daily", "keep_weekly", "keep_monthly"]) {
        let schedule = required_schedule(d, &p);
        let mut keep = |k: &str| -> Option<u32> {
            let v = p.int(d, k)?;
            match u32::try_from(v.value) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    d.error(v.line, &v.field, format!("{k} must be a positive number, not {}", v.value));
                    None
                }
            }
        };
        let (keep_last, keep_daily, keep_weekly, keep_monthly) =
            (keep("keep_last"), keep("keep_daily"), keep("keep_weekly"), keep("keep_monthly"));
        let any_given = ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"].iter().any(|k| p.get(k).is_some());
        if !any_given {
            d.error(
                p.line,
                &p.path,
                "a prune job needs a retention policy: at least one of keep_last, keep_daily, keep_weekly, \
                 keep_monthly (without one, every snapshot would be removed)",
            );
        }
        if let Some(schedule) = schedule {
            jobs.prune = Some(PruneJob { schedule, keep_last, keep_daily, keep_weekly, keep_monthly });
        }
    }
    if let Some(c) = o.table(d, "check", &["schedule", "read_data_subset"]) {
        let schedule = required_schedule(d, &c);
        let subset = match c.int(d, "read_data_subset") {
            None => Some(1),
            Some(v) => match u32::try_from(v.value) {
                // The store's rotation bound: beyond it some parts would hold no pack.
                Ok(n) if (1..=MAX_PARTS).contains(&n) => Some(n),
                _ => {
                    d.error(
                        v.line,
                        &v.field,
                        format!(
                            "read_data_subset must be a positive number N, at most {MAX_PARTS} (read 1/N per run), not {}",
                            v.value
                        ),
                    );
                    None
                }
            },
        };
        if let (Some(schedule), Some(read_data_subset)) = (schedule, subset) {
            jobs.check = Some(CheckJob { schedule, read_data_subset });
        }
    }
    if let Some(r) = o.table(d, "drill", &["schedule", "plan"]) {
        let schedule = required_schedule(d, &r);
        let plan = r.req_str(d, "plan", "the restoration plan to drill (a path, relative to this file)");
        if let (Some(schedule), Some(plan)) = (schedule, plan) {
            jobs.drill = Some(DrillJob { schedule, plan: resolve(base, &plan.value) });
        }
    }
    jobs
}

const NOTIFY: &[&str] = &["webhook", "command", "ca_file", "retry_initial", "retry_max", "repeat_after"];

fn notify(d: &mut Diag, o: &Obj, base: &Path) -> Notify {
    let webhook = o.req_opt_str(d, "webhook").and_then(|w| {
        if w.value.starts_with("http://") || w.value.starts_with("https://") {
            Some(w.value)
        } else {
            let shown = crate::notify::redact(&w.value);
            d.error(w.line, &w.field, format!("{shown:?} is not an http:// or https:// URL"));
            None
        }
    });
    let command = o.req_opt_str(d, "command").map(|c| c.value);
    let ca_file = o.req_opt_str(d, "ca_file").map(|c| resolve(base, &c.value));
    let mut n = Notify { webhook, command, ca_file, ..Notify::default() };
    for (key, slot) in [
        ("retry_initial", &mut n.retry_initial),
        ("retry_max", &mut n.retry_max),
        ("repeat_after", &mut n.repeat_after),
    ] {
        if let Some(v) = o.str(d, key) {
            match tree::parse_duration(&v.value) {
                Ok(t) if !t.is_zero() => *slot = t,
                Ok(_) => d.error(v.line, &v.field, "must be longer than 0 (e.g. \"1s\", \"5m\", \"24h\")"),
                Err(e) => d.error(v.line, &v.field, e.to_string()),
            }
        }
    }
    if n.retry_max < n.retry_initial {
        let line = o.get("retry_max").map_or(o.line, |e| e.node.line);
        d.error(line, &o.field("retry_max"), "must not be shorter than retry_initial");
    }
    n
}

/// `[http]`: the metrics and dashboard listener; given at all means on.
fn http(d: &mut Diag, o: &Obj, base: &Path) -> Option<Http> {
    let listen = match o.req_opt_str(d, "listen") {
        None => std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT)),
        Some(l) => match l.value.parse::<std::net::SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let msg = format!("{:?} is not an address and port, e.g. \"127.0.0.1:{DEFAULT_HTTP_PORT}\"", l.value);
                d.error(l.line, &l.field, msg);
                return None;
            }
        },
    };
    let token_file = o.req_opt_str(d, "token_file").map(|t| resolve(base, &t.value));
    Some(Http { listen, token_file })
}

const FLEET: &[&str] =
    &["listen", "name", "advertise", "agent_lost_after", "heartbeat", "shared_repository", "per_host_parallel"];

/// `[fleet]`: given at all means the coordinator listens for agents.
fn fleet(d: &mut Diag, o: &Obj) -> Option<Fleet> {
    let listen = match o.req_opt_str(d, "listen") {
        None => std::net::SocketAddr::from(([0, 0, 0, 0], DEFAULT_FLEET_PORT)),
        Some(l) => match l.value.parse::<std::net::SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let msg = format!("{:?} is not an address and port, e.g. \"0.0.0.0:{DEFAULT_FLEET_PORT}\"", l.value);
                d.error(l.line, &l.field, msg);
                return None;
            }
        },
    };
    let name = o.req_opt_str(d, "name").map(|n| n.value).unwrap_or_else(kura_store::host_name);
    let advertise =
        o.str_list(d, "advertise").map(|l| l.value.into_iter().map(|a| a.value).collect()).unwrap_or_default();
    let mut f = Fleet {
        listen,
        name,
        advertise,
        agent_lost_after: std::time::Duration::from_secs(600),
        heartbeat: std::time::Duration::from_secs(25),
        shared_repository: false,
        per_host_parallel: None,
    };
    if let Some(n) = o.int(d, "per_host_parallel") {
        match usize::try_from(n.value) {
            Ok(v) if v >= 1 => f.per_host_parallel = Some(v),
            _ => d.error(n.line, &n.field, format!("per_host_parallel must be 1 or more, not {}", n.value)),
        }
    }
    for (key, slot) in [("agent_lost_after", &mut f.agent_lost_after), ("heartbeat", &mut f.heartbeat)] {
        if let Some(v) = o.str(d, key) {
            match tree::parse_duration(&v.value) {
                Ok(t) if !t.is_zero() => *slot = t,
                Ok(_) => d.error(v.line, &v.field, "must be longer than 0 (e.g. \"25s\", \"10m\")"),
                Err(e) => d.error(v.line, &v.field, e.to_string()),
            }
        }
    }
    if let Some(b) = o.bool(d, "shared_repository") {
        f.shared_repository = b.value;
    }
    Some(f)
}

const DETECT: &[&str] = &["names", "min_history", "window"];

/// `[detect]`: the indicator list and the baseline's sizes (docs/DETECTION.md).
fn detect(d: &mut Diag, o: &Obj, base: &Path) -> Detect {
    let mut out = Detect { names: o.req_opt_str(d, "names").map(|n| resolve(base, &n.value)), ..Detect::default() };
    for (key, slot, min) in [("min_history", &mut out.rules.min_history, 1), ("window", &mut out.rules.window, 2)] {
        if let Some(v) = o.int(d, key) {
            match usize::try_from(v.value) {
                Ok(n) if n >= min && n <= 1000 => *slot = n,
                _ => d.error(v.line, &v.field, format!("must be a whole number from {min} to 1000")),
            }
        }
    }
    if out.rules.window < out.rules.min_history {
        let line = o.get("window").map_or(o.line, |e| e.node.line);
        d.error(line, &o.field("window"), "must not be smaller than min_history");
    }
    out
}
