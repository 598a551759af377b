//! `Config::check_environment`: what `load` cannot know from the text alone (the
//! paths to back up exist, the passphrase files can be read). Used by
//! `kura config check` and by the daemon before it starts anything.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::tree::{self, Kind, Node};
use super::{Config, Problems, RepoSpec};
use crate::plan::problems::{Problem, Severity};

impl Config {
    /// Checks the filesystem: local repository directories, passphrase files (exist,
    /// readable, not empty; a warning when others may read them), every backup path,
    /// and the drill plan. Each problem names the config line of the field.
    pub fn check_environment(&self) -> Problems {
        let lines = field_lines(&self.path);
        let mut out = Vec::new();
        let mut push = |sev: Severity, field: String, message: String| {
            out.push(Problem {
                file: self.path.clone(),
                line: lines.get(&field).copied(),
                field,
                message,
                severity: sev,
            });
        };
        let repo = |name: &str, spec: &RepoSpec, push: &mut dyn FnMut(Severity, String, String)| {
            if let Some(dir) = spec.location.local_path() {
                if dir.is_file() {
                    push(
                        Severity::Error,
                        format!("{name}.location"),
                        format!("{} is a file, not a repository directory", dir.display()),
                    );
                } else if !dir.is_dir() {
                    push(
                        Severity::Error,
                        format!("{name}.location"),
                        format!("no directory at {}: create the repository with `kura init --repo {0}`", dir.display()),
                    );
                }
            }
            let pf = &spec.password_file;
            let field = format!("{name}.password_file");
            match std::fs::File::open(pf).and_then(|f| f.metadata()) {
                Err(e) => push(Severity::Error, field, format!("cannot read password file {}: {e}", pf.display())),
                Ok(m) if m.is_dir() => {
                    push(Severity::Error, field, format!("password file {} is a directory", pf.display()))
                }
                // The same rule as every command that reads it: newlines alone are empty too.
                Ok(_)
                    if matches!(
                        kura_store::repo::keys::read_password_file(pf),
                        Err(kura_store::Error::EmptyPasswordFile { .. })
                    ) =>
                {
                    push(Severity::Error, field, format!("password file {} is empty", pf.display()))
                }
                Ok(m) if m.permissions().mode() & 0o077 != 0 => push(
                    Severity::Warning,
                    field,
                    format!("password file {} can be read by other users: chmod 600 it", pf.display()),
                ),
                Ok(_) => {}
            }
        };
        repo("repository", &self.repository, &mut push);
        if let Some(r) = &self.remote {
            repo("remote", r, &mut push);
        }
        for (i, s) in self.systems.iter().enumerate() {
            // An agent host's paths are on that host, not here.
            let here = self.agent_host(s).is_none();
            for (j, p) in s.paths.iter().enumerate().filter(|_| here) {
                if let Err(e) = std::fs::symlink_metadata(p) {
                    let why = if e.kind() == std::io::ErrorKind::NotFound {
                        "does not exist".to_string()
                    } else {
                        e.to_string()
                    };
                    push(
                        Severity::Error,
                        format!("system[{i}].paths[{j}]"),
                        format!("path {} of system {:?} {why}", p.display(), s.name),
                    );
                }
            }
        }
        for (i, s) in self.systems.iter().enumerate() {
            if let Some(prog) = s.stream.as_ref().and_then(|st| match &st.input {
                kura_store::backup::StreamInput::Command(argv) => argv.first(),
                kura_store::backup::StreamInput::Stdin => None,
            }) {
                if !program_exists(prog) {
                    push(
                        Severity::Warning,
                        format!("system[{i}].command"),
                        format!(
                            "program {prog:?} of system {:?} is not found on PATH here: its backups will fail",
                            s.name
                        ),
                    );
                }
            }
        }
        for (i, s) in self.systems.iter().enumerate() {
            if let Some(w) = s.readiness_warning() {
                push(Severity::Warning, format!("system[{i}].priority"), w);
            }
        }
        if let Some(ca) = &self.notify.ca_file {
            if let Err(e) = crate::notify::webhook::ca_certs(ca) {
                push(Severity::Error, "notify.ca_file".into(), e.to_string());
            }
        }
        if let Some(dj) = &self.jobs.drill {
            if !dj.plan.is_file() {
                push(Severity::Error, "jobs.drill.plan".into(), format!("no plan file at {}", dj.plan.display()));
            }
        }
        Problems(out)
    }
}

/// Whether `prog` (a path, or a name looked up on `PATH`) is a file here.
fn program_exists(prog: &str) -> bool {
    if prog.contains('/') {
        return Path::new(prog).is_file();
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| crate::orchestrate::hooks::DEFAULT_PATH.into());
    std::env::split_paths(&path).any(|d| d.join(prog).is_file())
}

/// Field (dotted, as in problems) -> line, read again from the file; empty when the
/// file cannot be read (the problems then have no line).
fn field_lines(path: &Path) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(root) = tree::parse(path, &text) {
            walk(&root, "", &mut map);
        }
    }
    map
}

fn walk(node: &Node, path: &str, map: &mut HashMap<String, usize>) {
    match &node.kind {
        Kind::Table(entries) => {
            for e in entries {
                let f = if path.is_empty() { e.key.clone() } else { format!("{path}.{}", e.key) };
                map.insert(f.clone(), e.node.line);
                walk(&e.node, &f, map);
            }
        }
        Kind::Array(items) => {
            for (i, n) in items.iter().enumerate() {
                let f = format!("{path}[{i}]");
                map.insert(f.clone(), n.line);
                walk(n, &f, map);
            }
        }
        _ => {}
    }
}
