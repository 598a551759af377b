//! Streams as backup sources: a command's stdout (a database dump) or kura's own
//! stdin, chunked as it arrives (no temporary file) and stored as one regular file
//! `/NAME` at the snapshot's root.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::repo::tree::RawName;

/// How much of a failing command's stderr its error quotes (the end of it).
pub const STDERR_TAIL: usize = 4096;

/// Names a command gets of kura's environment (as hooks do): secrets such as
/// `KURA_PASSWORD` never reach it.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One stream to back up, stored as the file `/filename`.
#[derive(Clone, Debug)]
pub struct StreamSource {
    pub filename: String,
    pub input: StreamInput,
    /// A command still running after this long is killed (its whole process group)
    /// and the backup fails without a snapshot. `None`: no limit.
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug)]
pub enum StreamInput {
    /// Program and arguments, run without a shell in a clean environment.
    Command(Vec<String>),
    /// kura's own standard input.
    Stdin,
}

impl StreamSource {
    /// The snapshot path this stream is recorded under (`/NAME`).
    pub fn snapshot_path(&self) -> String {
        format!("/{}", self.filename)
    }

    /// The file name must be one plain path component.
    pub fn validate(&self) -> Result<RawName> {
        let name = RawName(self.filename.as_bytes().to_vec());
        let bad = self.filename.contains('/') || name.check_component().is_err();
        if bad {
            return Err(Error::invalid(
                "stream file name",
                format!("{:?}: give one plain file name (no `/`, not `.` or `..`), e.g. mydb.dump", self.filename),
            ));
        }
        if let StreamInput::Command(argv) = &self.input {
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err(Error::invalid("stream command", "no program given: put it after `--`"));
            }
        }
        Ok(name)
    }
}

/// A running stream: read it to the end, then `finish` says whether it succeeded.
pub enum Running {
    Command { child: Child, argv: Vec<String>, stderr: Option<JoinHandle<Vec<u8>>>, watchdog: Option<Watchdog> },
    Stdin(std::io::Stdin),
}

/// Kills a command's process group once its time is up, unless stopped first.
pub struct Watchdog {
    timeout: Duration,
    fired: Arc<AtomicBool>,
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    fn start(pgid: u32, timeout: Duration) -> Result<Watchdog> {
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let f = fired.clone();
        let thread = std::thread::Builder::new()
            .name("kura-stream-timeout".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
                    f.store(true, Ordering::SeqCst);
                    // SAFETY: a negative pid names the process group the command leads.
                    unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
                }
            })
            .map_err(|e| Error::io("<stream command timeout thread>", e))?;
        Ok(Watchdog { timeout, fired, stop, thread })
    }

    /// Stops the watchdog; true when it had already killed the command.
    fn stop(self) -> bool {
        let _ = self.stop.send(());
        let _ = self.thread.join();
        self.fired.load(Ordering::SeqCst)
    }
}

impl Running {
    /// Starts the stream; a command with a timeout runs in a process group of its own,
    /// so that the whole group (a shell's children too) is killed when time is up.
    pub fn start(input: &StreamInput, timeout: Option<Duration>) -> Result<Running> {
        let argv = match input {
            StreamInput::Stdin => return Ok(Running::Stdin(std::io::stdin())),
            StreamInput::Command(argv) => argv.clone(),
        };
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).env_clear().stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for name in INHERITED_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", DEFAULT_PATH);
        }
        if timeout.is_some() {
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().map_err(|e| Error::CommandFailed {
            command: argv.join(" "),
            status: format!("could not start: {e}"),
            stderr: String::new(),
        })?;
        let stderr = child.stderr.take().map(|s| {
            std::thread::Builder::new().name("kura-stream-stderr".into()).spawn(move || tail(s)).expect("spawn")
        });
        let watchdog = match timeout {
            Some(t) => match Watchdog::start(child.id(), t) {
                Ok(w) => Some(w),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            },
            None => None,
        };
        Ok(Running::Command { child, argv, stderr, watchdog })
    }

    pub fn reader(&mut self) -> &mut dyn Read {
        match self {
            Running::Command { child, .. } => child.stdout.as_mut().expect("stdout is piped"),
            Running::Stdin(s) => s,
        }
    }

    /// Waits for the command; an error when it exited non-zero or was killed.
    /// `read_failed` stops a command still writing (kura could not take its output).
    pub fn finish(self, read_failed: bool) -> Result<()> {
        let Running::Command { mut child, argv, stderr, watchdog } = self else { return Ok(()) };
        if read_failed {
            let _ = child.kill();
        }
        drop(child.stdout.take());
        let status = child.wait().map_err(|e| Error::io(&argv[0], e));
        let timed_out = watchdog.map(|w| (w.timeout, w.stop()));
        let status = status?;
        if let Some((timeout, true)) = timed_out {
            return Err(Error::CommandTimedOut { command: argv.join(" "), timeout: human_secs(timeout) });
        }
        let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        use std::os::unix::process::ExitStatusExt;
        let status = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => status.to_string(),
        };
        Err(Error::CommandFailed {
            command: argv.join(" "),
            status,
            stderr: String::from_utf8_lossy(&stderr).trim_end().to_string(),
        })
    }
}

/// A timeout as given: `90s`, `5m`, `1h30m`.
fn human_secs(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (sec, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        format!("{}ms", d.as_millis())
    } else {
        out
    }
}

/// Reads `r` to the end, keeping only its last `STDERR_TAIL` bytes.
fn tail(mut r: ChildStderr) -> Vec<u8> {
    let mut keep: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL);
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        keep.extend(&buf[..n]);
        let extra = keep.len().saturating_sub(STDERR_TAIL);
        keep.drain(..extra);
    }
    keep.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> StreamInput {
        StreamInput::Command(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn failing_command_reports_status_and_stderr_tail() {
        let mut r =
            Running::start(&cmd(&["sh", "-c", "yes x | head -c 20000 >&2; echo oops >&2; exit 3"]), None).unwrap();
        std::io::copy(r.reader(), &mut std::io::sink()).unwrap();
        let e = r.finish(false).unwrap_err().to_string();
        assert!(e.contains("exit status 3") && e.ends_with("oops"), "{e}");
        assert!(e.len() < STDERR_TAIL + 300, "{}", e.len());
    }

    /// The whole process group goes: the shell and the `sleep` it started, which
    /// holds the pipe open too (the read would not end if only the shell died).
    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_children() {
        let mut r =
            Running::start(&cmd(&["sh", "-c", "sleep 30; echo late"]), Some(Duration::from_millis(200))).unwrap();
        let mut out = Vec::new();
        r.reader().read_to_end(&mut out).unwrap();
        let e = r.finish(false).unwrap_err();
        assert!(
            matches!(&e, Error::CommandTimedOut { command, timeout } if command == "sh -c sleep 30; echo late" && timeout == "200ms"),
            "{e}"
        );
        assert!(out.is_empty());
        assert_eq!(human_secs(Duration::from_secs(5430)), "1h30m30s");
    }

    #[test]
    fn names_must_be_one_component() {
        for bad in ["", ".", "..", "a/b", "/x"] {
            let s = StreamSource { filename: bad.into(), input: StreamInput::Stdin, timeout: None };
            assert!(s.validate().is_err(), "{bad:?}");
        }
        let s = StreamSource { filename: "db.dump".into(), input: cmd(&[]), timeout: None };
        assert!(s.validate().is_err());
    }
}
