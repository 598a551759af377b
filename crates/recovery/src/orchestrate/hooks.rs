//! Running plan hooks: behind a small trait so the engine can be tested with a
//! recording runner, and the real one runs `sh -c` with a timeout.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::plan::Hook;

/// When a hook runs in a system's recovery. Its home is the fleet protocol (a
/// hook task names its stage); its serde text is what the state database's
/// `hooks` column stores (checked against `state::codec`).
pub use kura_fleet::proto::HookStage;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookOutcome {
    pub stage: HookStage,
    pub command: String,
    pub ok: bool,
    /// How many times it ran (verify hooks are retried).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    /// The end of its output, for the record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Not run: a hook not marked safe for drills, during a drill.
    #[serde(default)]
    pub skipped: bool,
}

/// What a hook (or a notification command) gets of kura's own environment: these
/// names when they are set, and nothing else. Secrets such as `KURA_PASSWORD`
/// never reach it; a plan passes more names with `hook_env`.
pub const INHERITED_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// `PATH` for commands when kura itself has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Clears `cmd`'s environment, then passes `INHERITED_ENV` (with a default `PATH`).
/// The caller adds what the command should get besides.
pub fn clean_env(cmd: &mut Command) {
    cmd.env_clear();
    for name in INHERITED_ENV {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
}

/// The plan's `hook_env` names that are set in kura's environment, with their values.
pub fn allowed_env(names: &[String]) -> Vec<(String, String)> {
    names.iter().filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v))).collect()
}

pub trait HookRunner: Send + Sync {
    /// Runs one attempt of `hook` in a clean environment (`clean_env`) with only
    /// `env` added: the KURA_* variables and the plan's `hook_env`.
    fn run_once(&self, hook: &Hook, env: &[(String, String)]) -> HookOutcome;
}

/// Runs hooks through `sh -c` in their own process group, killed on timeout.
impl HookOutcome {
    /// One attempt of `command` that has not run (yet): failed until told otherwise.
    pub fn not_run(command: &str) -> HookOutcome {
        HookOutcome {
            stage: HookStage::default(),
            command: command.to_string(),
            ok: false,
            attempts: 1,
            exit_code: None,
            timed_out: false,
            duration_ms: 0,
            output: String::new(),
            skipped: false,
        }
    }
}

pub struct ShellRunner;

const OUTPUT_TAIL: usize = 2048;

impl HookRunner for ShellRunner {
    fn run_once(&self, hook: &Hook, env: &[(String, String)]) -> HookOutcome {
        let started = Instant::now();
        let mut out = HookOutcome::not_run(&hook.command);
        let mut cmd = Command::new("sh");
        clean_env(&mut cmd);
        cmd.arg("-c").arg(&hook.command).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.envs(env.iter().map(|(k, v)| (k, v))).process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                out.output = format!("could not start sh: {e}");
                return out;
            }
        };
        let readers: Vec<_> = [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|mut r| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                buf
            })
        })
        .collect();
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if started.elapsed() >= hook.timeout => {
                    // SAFETY: kill(2) on the child's process group, which it leads.
                    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                    out.timed_out = true;
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break None,
            }
        };
        let mut text = Vec::new();
        for r in readers {
            text.extend(r.join().unwrap_or_default());
        }
        let start = text.len().saturating_sub(OUTPUT_TAIL);
        out.output = String::from_utf8_lossy(&text[start..]).trim_end().to_string();
        out.exit_code = status.and_then(|s| s.code());
        out.ok = status.is_some_and(|s| s.success());
        out.duration_ms = started.elapsed().as_millis() as u64;
        out
    }
}

/// Runs a hook with its retries: the first success wins; between attempts it
/// waits `retry_delay`.
pub fn run_with_retries(
    runner: &dyn HookRunner,
    stage: HookStage,
    hook: &Hook,
    env: &[(String, String)],
) -> HookOutcome {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut o = runner.run_once(hook, env);
        o.stage = stage;
        o.attempts = attempt;
        if o.ok || attempt > hook.retries {
            return o;
        }
        std::thread::sleep(hook.retry_delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(cmd: &str, timeout_ms: u64, retries: u32) -> Hook {
        Hook {
            command: cmd.into(),
            timeout: Duration::from_millis(timeout_ms),
            retries,
            retry_delay: Duration::from_millis(1),
            drill: true,
        }
    }

    #[test]
    fn success_failure_env_and_timeout() {
        let env = vec![("KURA_SYSTEM".to_string(), "db".to_string())];
        let o = ShellRunner.run_once(&hook("echo hello $KURA_SYSTEM", 5000, 0), &env);
        assert!(o.ok && o.output == "hello db", "{o:?}");
        let o = ShellRunner.run_once(&hook("echo oops >&2; exit 3", 5000, 0), &env);
        assert!(!o.ok && o.exit_code == Some(3) && o.output == "oops", "{o:?}");
        let o = ShellRunner.run_once(&hook("sleep 5", 200, 0), &env);
        assert!(!o.ok && o.timed_out && o.duration_ms < 3000, "{o:?}");
    }

    #[test]
    fn hooks_get_a_clean_environment() {
        let env = vec![("KURA_SYSTEM".to_string(), "db".to_string())];
        let o = ShellRunner.run_once(&hook("env", 5000, 0), &env);
        assert!(o.ok, "{o:?}");
        let names: Vec<&str> = o
            .output
            .lines()
            .filter_map(|l| l.split_once('=').map(|(n, _)| n))
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        assert!(names.contains(&"KURA_SYSTEM") && names.contains(&"PATH"), "{}", o.output);
        // Only the inherited names, what the engine passed, and what sh sets itself.
        for n in names {
            assert!(
                INHERITED_ENV.contains(&n) || n == "KURA_SYSTEM" || ["PWD", "OLDPWD", "SHLVL", "_"].contains(&n),
                "{n} reached the hook:\n{}",
                o.output
            );
        }
    }

    #[test]
    fn retries_until_success() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n");
        // Fails twice, then succeeds.
        let cmd = format!("echo x >> {0}; test $(wc -l < {0}) -ge 3", f.display());
        let o = run_with_retries(&ShellRunner, HookStage::Verify, &hook(&cmd, 5000, 5), &[]);
        assert!(o.ok);
        assert_eq!(o.attempts, 3);
        let o = run_with_retries(&ShellRunner, HookStage::Verify, &hook("false", 5000, 2), &[]);
        assert!(!o.ok);
        assert_eq!(o.attempts, 3);
    }
}
