//! Reading a plan file and validating it against the config: every problem is
//! reported with its line and field, and a `Plan` is returned only when there is
//! no error (warnings come back beside it).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::config::tree::{self, At, Diag, Obj};
use crate::config::{parse_duration, Config};

use super::*;

const TOP: &[&str] =
    &["name", "description", "config", "allow_overlap", "on_failure", "hook_env", "scan", "on_scan_hit", "system"];
const SYSTEM: &[&str] = &[
    "name",
    "target",
    "subpath",
    "host",
    "paths",
    "depends_on",
    "pre",
    "verify",
    "post",
    "replacement_host",
    "snapshot",
];
const HOOK: &[&str] = &["command", "timeout", "retries", "retry_delay", "drill"];

/// Default hook timeout.
pub const DEFAULT_HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Default retries of a verify hook (pre and post hooks: 0).
pub const DEFAULT_VERIFY_RETRIES: u32 = 3;
/// Default pause between two attempts of a hook.
pub const DEFAULT_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the config for `plan_path` comes from, first found wins: `explicit`
/// (`--config` or `KURA_CONFIG`), the plan's own `config` key (relative to the
/// plan file), `./kura.toml` when it exists, `/etc/kura/kura.toml`.
pub fn resolve_config(plan_path: &Path, explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Ok(text) = std::fs::read_to_string(plan_path) {
        if let Ok(root) = tree::parse(plan_path, &text) {
            if let tree::Kind::Table(entries) = &root.kind {
                if let Some(tree::Kind::Str(c)) = entries.iter().find(|e| e.key == "config").map(|e| &e.node.kind) {
                    return tree::resolve_path(&base_dir(plan_path), c);
                }
            }
        }
    }
    let local = Path::new("kura.toml");
    if local.is_file() {
        return local.to_path_buf();
    }
    PathBuf::from("/etc/kura/kura.toml")
}

fn base_dir(file: &Path) -> PathBuf {
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Reads the plan at `path` and checks only its TOML syntax: a plan that cannot be
/// read or parsed is reported before its config is looked for.
pub fn check_syntax(path: &Path) -> Result<(), Problems> {
    let text = read_text(path)?;
    tree::parse(path, &text).map(|_| ()).map_err(|p| Problems(vec![p]))
}

fn read_text(path: &Path) -> Result<String, Problems> {
    std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: path.to_path_buf(),
            line: None,
            field: "(file)".into(),
            message: format!("cannot read the plan file: {e}"),
            severity: Severity::Error,
        }])
    })
}

/// Reads and validates the plan at `path`. Without a config the plan is still
/// checked (fields, names, dependencies, cycles, targets) but cannot be resolved:
/// priorities live in the config, so that is an error too.
pub fn load(path: &Path, config: Option<&Config>) -> Result<(Plan, Vec<Problem>), Problems> {
    let text = read_text(path)?;
    parse_str(path, &text, config)
}

/// Validates plan text as if read from `path`.
pub fn parse_str(path: &Path, text: &str, config: Option<&Config>) -> Result<(Plan, Vec<Problem>), Problems> {
    let root = tree::parse(path, text).map_err(|p| Problems(vec![p]))?;
    let mut d = Diag::new(path);
    d.top_keys = &["description", "config", "allow_overlap", "on_failure", "hook_env", "scan", "on_scan_hit"];
    let plan = read(&mut d, &root, path, config);
    match plan {
        Some(p) if !d.has_errors() => Ok((p, d.problems)),
        _ => Err(Problems(d.problems)),
    }
}

/// One `[[system]]` as written, before it is checked against the others.
struct Raw {
    index: usize,
    line: usize,
    name: At<String>,
    target: Option<(PathBuf, At<String>)>,
    subpath: Option<String>,
    host: Option<String>,
    replacement_host: Option<String>,
    paths: Option<Vec<String>>,
    depends_on: Vec<At<String>>,
    hooks: Hooks,
    snapshot: Option<String>,
}

fn config_hint(config: Option<&Config>) -> String {
    match config {
        Some(c) => c.path.display().to_string(),
        None => "kura.toml".into(),
    }
}

fn read(d: &mut Diag, root: &tree::Node, path: &Path, config: Option<&Config>) -> Option<Plan> {
    let top = Obj::open(d, root, "", TOP, &[])?;
    let base = base_dir(path);
    let name = top.req_str(d, "name", "a short name for the plan");
    let description = top.str(d, "description").map(|s| s.value).unwrap_or_default();
    top.str(d, "config");
    let allow_overlap = top.bool(d, "allow_overlap").map(|b| b.value).unwrap_or(false);
    let on_failure = match top.str(d, "on_failure") {
        None => OnFailure::Continue,
        Some(s) => match s.value.as_str() {
            "halt" => OnFailure::Halt,
            "continue" => OnFailure::Continue,
            other => {
                d.error(s.line, &s.field, format!("{other:?} is not a failure policy: use \"halt\" or \"continue\""));
                OnFailure::Continue
            }
        },
    };
    let hook_env = top.str_list(d, "hook_env").map(|l| check_hook_env(d, l.value)).unwrap_or_default();
    // Indicators that restored files are scanned against before a system is promoted.
    let on_hit_at = top.str(d, "on_scan_hit");
    let on_hit = match &on_hit_at {
        None => OnScanHit::Stop,
        Some(s) => match s.value.as_str() {
            "stop" => OnScanHit::Stop,
            "quarantine" => OnScanHit::Quarantine,
            other => {
                d.error(s.line, &s.field, format!("{other:?} is not a scan action: use \"stop\" or \"quarantine\""));
                OnScanHit::Stop
            }
        },
    };
    let scan = top.str(d, "scan").and_then(|v| {
        let p = tree::resolve_path(&base_dir(path), &v.value);
        match crate::detect::indicators::Indicators::load(&p) {
            Ok(_) => Some(ScanStep { indicators: p, on_hit }),
            Err(e) => {
                d.error(v.line, &v.field, e.to_string());
                None
            }
        }
    });
    if let (Some(at), None) = (&on_hit_at, top.get("scan")) {
        d.error(at.line, &at.field, "on_scan_hit needs `scan = \"INDICATOR FILE\"`: without it nothing is scanned");
    }
    if config.is_none() {
        d.error(
            root.line,
            "config",
            "no config to resolve the systems against: priorities live in the config; \
             pass --config PATH, set KURA_CONFIG, or set `config = \"...\"` in the plan",
        );
    }

    // 1. Each system as written.
    let mut raws = Vec::new();
    if let Some(e) = top.get("system") {
        if !matches!(e.node.kind, tree::Kind::Array(_)) {
            d.error(e.line, "system", "expected [[system]] tables");
        }
    }
    for (i, o) in top.tables(d, "system", SYSTEM, &["priority"]) {
        if let Some(p) = o.get("priority") {
            d.error(
                p.line,
                &o.field("priority"),
                format!(
                    "priorities live in the config ({}), not in plans: remove `priority` here and set it \
                     on the system's [[system]] in the config",
                    config_hint(config)
                ),
            );
        }
        if let Some(r) = raw_system(d, &o, i, &base) {
            raws.push(r);
        }
    }
    if top.get("system").is_none() {
        d.error(root.line, "system", "the plan restores nothing: add [[system]] tables");
    }

    // 2. Names: unique, and declared in the config.
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(raws.len());
    let mut dup = vec![false; raws.len()];
    for (k, r) in raws.iter().enumerate() {
        if let Some(&first) = by_name.get(r.name.value.as_str()) {
            d.error(
                r.name.line,
                &r.name.field,
                format!("duplicate system {:?} (first on line {})", r.name.value, raws[first].name.line),
            );
            dup[k] = true;
        } else {
            by_name.insert(&r.name.value, k);
        }
    }
    let declared: HashMap<&str, &crate::config::SystemConfig> =
        config.iter().flat_map(|c| &c.systems).map(|s| (s.name.as_str(), s)).collect();
    let prios: Vec<Option<Priority>> =
        raws.iter().map(|r| declared.get(r.name.value.as_str()).map(|s| s.priority)).collect();
    let mut resolved: Vec<Option<PlanSystem>> = Vec::with_capacity(raws.len());
    for r in &raws {
        let decl = config.and_then(|c| declared.get(r.name.value.as_str()).map(|s| (c, *s)));
        if let (Some(c), None) = (config, decl) {
            d.error(
                r.name.line,
                &r.name.field,
                format!(
                    "system {:?} is not declared in the config {}: add a [[system]] with this name and its \
                     priority there",
                    r.name.value,
                    c.path.display()
                ),
            );
        }
        resolved.push(decl.and_then(|(c, s)| {
            let source = match (&r.host, &r.paths) {
                (None, None) => Source::Tag(s.tag()),
                (host, paths) => Source::HostPaths {
                    host: host.clone().or_else(|| s.host.clone()).unwrap_or_else(kura_store::host_name),
                    paths: paths.clone().unwrap_or_else(|| s.snapshot_paths()),
                },
            };
            Some(PlanSystem {
                name: r.name.value.clone(),
                priority: s.priority,
                deadline: c.deadline(s.priority),
                source,
                subpath: r.subpath.clone(),
                target: r.target.as_ref()?.0.clone(),
                depends_on: r.depends_on.iter().map(|x| x.value.clone()).collect(),
                hooks: r.hooks.clone(),
                agent: c.agent_host(s).map(str::to_string),
                replacement_host: r.replacement_host.clone(),
                scan: scan.clone(),
                standby: s.standby.clone(),
                tolerance: s.tolerance(),
                snapshot: r.snapshot.clone(),
            })
        }));
    }

    // 3. Dependencies: known, not itself, not of a lower priority.
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); raws.len()];
    for (k, r) in raws.iter().enumerate() {
        let mut seen = Vec::new();
        for dep in &r.depends_on {
            if dep.value == r.name.value {
                d.error(dep.line, &dep.field, format!("system {:?} depends on itself", r.name.value));
                continue;
            }
            let Some(&j) = by_name.get(dep.value.as_str()) else {
                d.error(
                    dep.line,
                    &dep.field,
                    format!("unknown dependency {:?}: this plan restores no system of that name", dep.value),
                );
                continue;
            };
            if seen.contains(&j) {
                d.warning(dep.line, &dep.field, format!("{:?} is listed twice", dep.value));
                continue;
            }
            seen.push(j);
            edges[k].push(j);
            if let (Some(pa), Some(pb)) = (prios[k], prios[j]) {
                if pb < pa {
                    d.error(
                        dep.line,
                        &dep.field,
                        format!(
                            "{:?} (priority {}) depends on {:?} (priority {}): a dependency on a lower priority \
                             would hold the higher tier hostage; raise {:?}'s priority in the config or drop \
                             the dependency",
                            r.name.value, pa, raws[j].name.value, pb, raws[j].name.value
                        ),
                    );
                }
            }
        }
    }

    // 4. Cycles, each named.
    for cycle in find_cycles(&edges) {
        let names: Vec<&str> = cycle.iter().map(|&k| raws[k].name.value.as_str()).collect();
        let first = &raws[cycle[0]];
        let line = first.depends_on.first().map(|x| x.line).unwrap_or(first.line);
        d.error(
            line,
            &format!("system[{}].depends_on", first.index),
            format!("dependency cycle: {} -> {}", names.join(" -> "), names[0]),
        );
    }

    // 5. Targets must not overlap.
    let mut targets: Vec<(Vec<String>, usize)> = raws
        .iter()
        .enumerate()
        .filter(|(k, _)| !dup[*k])
        .filter_map(|(k, r)| r.target.as_ref().map(|(p, _)| (components(p), k)))
        .collect();
    targets.sort();
    for i in 0..targets.len() {
        for j in i + 1..targets.len() {
            if !targets[j].0.starts_with(&targets[i].0) {
                break;
            }
            let (a, b) = (&raws[targets[i].1], &raws[targets[j].1]);
            let (ta, tb) = (&a.target.as_ref().expect("has target").1, &b.target.as_ref().expect("has target").1);
            let (first, second, t1, t2) = if ta.line <= tb.line { (a, b, ta, tb) } else { (b, a, tb, ta) };
            let how = if targets[i].0 == targets[j].0 { "is the same directory as" } else { "overlaps" };
            d.error(
                t2.line,
                &t2.field,
                format!(
                    "target {:?} of {:?} {how} target {:?} of {:?} (line {}): restores would overwrite each other",
                    t2.value, second.name.value, t1.value, first.name.value, t1.line
                ),
            );
        }
    }

    let systems: Vec<PlanSystem> = resolved.into_iter().flatten().collect();
    Some(Plan {
        path: path.to_path_buf(),
        name: name?.value,
        description,
        allow_overlap,
        on_failure,
        hook_env,
        systems,
    })
}

/// The names in `hook_env`: environment variable names, none of kura's own.
fn check_hook_env(d: &mut Diag, names: Vec<At<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        let v = &n.value;
        let valid = v.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            d.error(n.line, &n.field, format!("{v:?} is not an environment variable name (letters, digits, _)"));
        } else if v.starts_with("KURA_") {
            d.error(
                n.line,
                &n.field,
                format!(
                    "{v} is one of kura's own variables: hooks never get kura's passphrase or settings; \
                     the KURA_* variables a hook needs (KURA_SYSTEM, KURA_TARGET, ...) are always set"
                ),
            );
        } else if out.contains(v) {
            d.warning(n.line, &n.field, format!("{v:?} is listed twice"));
        } else {
            out.push(n.value);
        }
    }
    out
}

/// Normal components of an absolute path, with `.` and `..` resolved lexically.
fn components(p: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn raw_system(d: &mut Diag, o: &Obj, index: usize, base: &Path) -> Option<Raw> {
    let name = o.req_str(d, "name", "the name of a system declared in the config");
    let target = o
        .req_str(d, "target", "the directory to restore into (absolute, or relative to the plan file)")
        .map(|t| (tree::resolve_path(base, &t.value), t));
    let subpath = o.str(d, "subpath").and_then(|s| {
        if Path::new(&s.value).components().any(|c| c == Component::ParentDir) || s.value.trim().is_empty() {
            d.error(
                s.line,
                &s.field,
                format!("subpath {:?} must be a path inside the snapshot, without '..'", s.value),
            );
            None
        } else {
            Some(s.value)
        }
    });
    let host = o.str(d, "host").map(|h| h.value);
    let replacement_host = o.str(d, "replacement_host").and_then(|h| {
        if crate::config::valid_system_name(&h.value) {
            Some(h.value)
        } else {
            d.error(h.line, &h.field, format!("{:?} is not a valid host name", h.value));
            None
        }
    });
    let paths = o.str_list(d, "paths").map(|l| {
        if l.value.is_empty() {
            d.error(l.line, &l.field, "the paths list is empty: leave it out to use the config's paths");
        }
        for p in &l.value {
            if !p.value.starts_with('/') {
                d.error(p.line, &p.field, format!("{:?} is not an absolute path", p.value));
            }
        }
        l.value.into_iter().map(|p| p.value).collect()
    });
    let depends_on = o.str_list(d, "depends_on").map(|l| l.value).unwrap_or_default();
    let hooks = Hooks {
        pre: hooks(d, o, "pre", 0, false),
        verify: hooks(d, o, "verify", DEFAULT_VERIFY_RETRIES, true),
        post: hooks(d, o, "post", 0, false),
    };
    // A snapshot to restore whatever else decides (clean point, compromised-since).
    let snapshot = o.str(d, "snapshot").and_then(|v| {
        let ok = (8..=64).contains(&v.value.len()) && v.value.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            d.error(v.line, &v.field, format!("{:?} is not a snapshot id (8 to 64 hex digits)", v.value));
        }
        ok.then(|| v.value.to_ascii_lowercase())
    });
    Some(Raw {
        index,
        line: o.line,
        name: name?,
        target,
        subpath,
        host,
        replacement_host,
        paths,
        depends_on,
        hooks,
        snapshot,
    })
}

fn hooks(d: &mut Diag, o: &Obj, key: &str, retries: u32, drill: bool) -> Vec<Hook> {
    let mut out = Vec::new();
    for (_, h) in o.tables(d, key, HOOK, &[]) {
        let command = h.req_str(d, "command", "the command to run (through sh -c)");
        let dur = |d: &mut Diag, k: &str, default: std::time::Duration| match h.str(d, k) {
            None => default,
            Some(s) => parse_duration(&s.value).unwrap_or_else(|e| {
                d.error(s.line, &s.field, e.to_string());
                default
            }),
        };
        let timeout = dur(d, "timeout", DEFAULT_HOOK_TIMEOUT);
        if timeout.is_zero() {
            if let Some(e) = h.get("timeout") {
                d.error(e.node.line, &h.field("timeout"), "a hook timeout of 0 would kill it at once");
            }
        }
        let retry_delay = dur(d, "retry_delay", DEFAULT_RETRY_DELAY);
        let retries = match h.int(d, "retries") {
            None => retries,
            Some(r) => u32::try_from(r.value).ok().filter(|&n| n <= 100).unwrap_or_else(|| {
                d.error(r.line, &r.field, format!("retries must be 0 to 100, not {}", r.value));
                retries
            }),
        };
        let drill = h.bool(d, "drill").map(|b| b.value).unwrap_or(drill);
        if let Some(c) = command {
            out.push(Hook { command: c.value, timeout, retries, retry_delay, drill });
        }
    }
    out
}

/// Disjoint dependency cycles of the graph (`edges[a]` = what `a` depends on), each
/// as the systems along it, starting from its lowest index.
pub(crate) fn find_cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut alive = vec![true; n];
    // Peel systems whose dependencies can all be satisfied; what stays is on or
    // behind a cycle. Repeat after removing each cycle found.
    let mut cycles = Vec::new();
    loop {
        peel(edges, &mut alive);
        let Some(start) = (0..n).find(|&k| alive[k]) else { break };
        // Every remaining system has a remaining dependency: walk until one repeats.
        let mut pos = vec![usize::MAX; n];
        let mut walk = Vec::new();
        let mut cur = start;
        while pos[cur] == usize::MAX {
            pos[cur] = walk.len();
            walk.push(cur);
            cur = *edges[cur].iter().find(|&&j| alive[j]).expect("a remaining system has a remaining dependency");
        }
        let mut cycle = walk[pos[cur]..].to_vec();
        let min = (0..cycle.len()).min_by_key(|&i| cycle[i]).expect("a cycle is not empty");
        cycle.rotate_left(min);
        for &k in &cycle {
            alive[k] = false;
        }
        cycles.push(cycle);
    }
    cycles
}

fn peel(edges: &[Vec<usize>], alive: &mut [bool]) {
    let n = edges.len();
    // Reverse edges among the alive, and how many alive dependencies each has.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pending = vec![0usize; n];
    for a in 0..n {
        if !alive[a] {
            continue;
        }
        for &b in &edges[a] {
            if alive[b] {
                dependents[b].push(a);
                pending[a] += 1;
            }
        }
    }
    let mut stack: Vec<usize> = (0..n).filter(|&a| alive[a] && pending[a] == 0).collect();
    while let Some(b) = stack.pop() {
        alive[b] = false;
        for &a in &dependents[b] {
            pending[a] -= 1;
            if pending[a] == 0 {
                stack.push(a);
            }
        }
    }
}
