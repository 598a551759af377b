//! The command channel: `sh -c CMD` with the event on stdin.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::DeliveryError;

/// Runs `sh -c CMD` with the event on stdin; fails on a non-zero exit or after `timeout`.
/// The command gets a clean environment (as plan hooks do): PATH, HOME, LANG and a
/// few more, KURA_EVENT, KURA_EVENT_KIND and KURA_EVENT_ID; never kura's passphrase.
pub fn run_command(cmd: &str, kind: &str, event_id: &str, json: &str, timeout: Duration) -> Result<(), DeliveryError> {
    let mut command = Command::new("sh");
    crate::orchestrate::hooks::clean_env(&mut command);
    let mut child = command
        .arg("-c")
        .arg(cmd)
        .env("KURA_EVENT", json)
        .env("KURA_EVENT_KIND", kind)
        .env("KURA_EVENT_ID", event_id)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(DeliveryError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is fine.
        let _ = stdin.write_all(json.as_bytes());
    }
    let start = Instant::now();
    loop {
        match child.try_wait().map_err(DeliveryError::Wait)? {
            Some(st) if st.success() => return Ok(()),
            Some(status) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let stderr = err.trim().to_string();
                return Err(DeliveryError::Exit { command: cmd.into(), status, stderr });
            }
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DeliveryError::TimedOut { command: cmd.into(), secs: timeout.as_secs() });
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
