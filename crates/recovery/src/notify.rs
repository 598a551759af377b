//! Notifications: when a job fails, or a system becomes late, the daemon sends a
//! JSON event to the configured webhook (HTTP POST) and/or command.
//!
//! * The webhook is posted with a small built-in HTTP/1.1 client: `http://` URLs
//!   only, 10 s timeouts, any 2xx status counts as delivered. For an `https://`
//!   endpoint, use the command instead (for example
//!   `curl -fsS -H 'Content-Type: application/json' --data-binary @- https://...`).
//! * The command runs through `sh -c` with the event JSON on its standard input,
//!   `KURA_EVENT` set to the same JSON and `KURA_EVENT_KIND` to the event's kind. It
//!   is killed after 60 s; a non-zero exit counts as a failed delivery.
//!
//! Delivery failures are returned to the caller (the daemon logs them); they never
//! stop the daemon. Events carry no secrets.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Notify;

pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A job run ended with outcome `failed`.
    JobFailed,
    /// A system's last good backup became older than its priority allows.
    SystemLate,
    /// During a recovery: at the current pace a system will be back after its deadline.
    DeadlineAtRisk,
    /// During a recovery: a system's deadline passed and it is not back.
    DeadlineBreach,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::JobFailed => "job_failed",
            EventKind::SystemLate => "system_late",
            EventKind::DeadlineAtRisk => "deadline_at_risk",
            EventKind::DeadlineBreach => "deadline_breach",
        }
    }
}

/// The JSON document sent.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub event: EventKind,
    pub at: DateTime<Utc>,
    /// The host the daemon runs on.
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `system_late`: when its last good backup ended (absent if never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<i64>,
    /// One line for people.
    pub message: String,
}

impl Event {
    pub fn new(event: EventKind, at: DateTime<Utc>, message: String) -> Event {
        Event {
            event,
            at,
            host: kura_store::host_name(),
            job: None,
            system: None,
            priority: None,
            run: None,
            error: None,
            last_backup: None,
            age_secs: None,
            max_age_secs: None,
            message,
        }
    }
}

/// Sends `event` everywhere `notify` says. Returns one message per failed delivery.
pub fn send(notify: &Notify, event: &Event) -> Vec<String> {
    let json = serde_json::to_string(event).expect("events serialize");
    let mut failures = Vec::new();
    if let Some(url) = &notify.webhook {
        if let Err(e) = post_json(url, &json, HTTP_TIMEOUT) {
            failures.push(format!("webhook {}: {e}", redact(url)));
        }
    }
    if let Some(cmd) = &notify.command {
        if let Err(e) = run_command(cmd, event.event, &json, COMMAND_TIMEOUT) {
            failures.push(format!("notify command: {e}"));
        }
    }
    failures
}

/// The URL without any `user:password@` part, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s && !url[s + 3..at].contains('/') => {
            format!("{}{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Why a notification was not delivered. The causes are part of the messages,
/// deliberately not `#[source]`s (they would print twice in a chain).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("https is not supported by the built-in client: use notify.command with curl instead")]
    Https,
    #[error("expected an http:// URL")]
    NotHttp,
    #[error("the URL has no host")]
    NoHost,
    #[error("bad port {0:?}")]
    BadPort(String),
    #[error("cannot resolve {host}: {cause}")]
    Resolve { host: String, cause: std::io::Error },
    #[error("{0} has no address")]
    NoAddress(String),
    #[error("cannot connect to {addr}: {cause}")]
    Connect { addr: std::net::SocketAddr, cause: std::io::Error },
    /// Setting a socket option, sending or reading the answer.
    #[error("{what}{cause}")]
    Io { what: &'static str, cause: std::io::Error },
    #[error("not an HTTP answer: {0:?}")]
    NotHttpAnswer(String),
    #[error("answered {0}")]
    Status(String),
    #[error("cannot start sh: {0}")]
    Spawn(std::io::Error),
    #[error("`{command}` exited with {status}{}", if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    Exit { command: String, status: std::process::ExitStatus, stderr: String },
    #[error("`{command}` did not finish within {secs} s and was killed")]
    TimedOut { command: String, secs: u64 },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DeliveryError {
    move |cause| DeliveryError::Io { what, cause }
}

/// Splits `http://host[:port][/path]` into (host, port, path).
fn parse_http_url(url: &str) -> Result<(String, u16, String), DeliveryError> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => return Err(DeliveryError::Https),
        _ => return Err(DeliveryError::NotHttp),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.is_empty() {
        return Err(DeliveryError::NoHost);
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h.to_string(), p.parse::<u16>().map_err(|_| DeliveryError::BadPort(p.into()))?)
        }
        _ => (authority.to_string(), 80),
    };
    Ok((host, port, path.to_string()))
}

/// POSTs `body` as JSON; any 2xx answer is success.
pub fn post_json(url: &str, body: &str, timeout: Duration) -> Result<(), DeliveryError> {
    let (host, port, path) = parse_http_url(url)?;
    let addrs: Vec<_> = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|cause| DeliveryError::Resolve { host: host.clone(), cause })?
        .collect();
    let mut last = DeliveryError::NoAddress(host.clone());
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(cause) => last = DeliveryError::Connect { addr: a, cause },
        }
    }
    let mut s = stream.ok_or(last)?;
    s.set_read_timeout(Some(timeout)).map_err(io(""))?;
    s.set_write_timeout(Some(timeout)).map_err(io(""))?;
    let host_header = if port == 80 { host.clone() } else { format!("{host}:{port}") };
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: kura/{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    s.write_all(req.as_bytes()).and_then(|_| s.write_all(body.as_bytes())).map_err(io("sending: "))?;
    // Only the status line matters.
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 8192 {
        let n = s.read(&mut buf).map_err(io("reading the answer: "))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or("").trim();
    let status: u16 = line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| DeliveryError::NotHttpAnswer(line.into()))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(DeliveryError::Status(line.into()))
    }
}

/// Runs `sh -c CMD` with the event on stdin; fails on a non-zero exit or after `timeout`.
/// The command gets a clean environment (as plan hooks do): PATH, HOME, LANG and a
/// few more, KURA_EVENT and KURA_EVENT_KIND; never kura's passphrase.
pub fn run_command(cmd: &str, kind: EventKind, json: &str, timeout: Duration) -> Result<(), DeliveryError> {
    let mut command = Command::new("sh");
    crate::orchestrate::hooks::clean_env(&mut command);
    let mut child = command
        .arg("-c")
        .arg(cmd)
        .env("KURA_EVENT", json)
        .env("KURA_EVENT_KIND", kind.as_str())
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
        match child.try_wait().map_err(io(""))? {
            Some(st) if st.success() => return Ok(()),
            Some(st) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let stderr = err.trim().to_string();
                return Err(DeliveryError::Exit { command: cmd.into(), status: st, stderr });
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

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn event() -> Event {
        let mut e = Event::new(EventKind::JobFailed, Utc::now(), "backup of web failed".into());
        e.job = Some("backup".into());
        e.system = Some("web".into());
        e.error = Some("no such file".into());
        e
    }

    /// A one-shot HTTP server: returns the raw request it got, answers `status`.
    fn server(status: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/hooks/kura", l.local_addr().unwrap().port());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            loop {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap();
                    if req.len() >= i + 4 + len || n == 0 {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap();
            String::from_utf8(req).unwrap()
        });
        (url, h)
    }

    #[test]
    fn webhook_posts_the_event_as_json() {
        let (url, h) = server("204 No Content");
        let n = Notify { webhook: Some(url), command: None };
        assert_eq!(send(&n, &event()), Vec::<String>::new());
        let req = h.join().unwrap();
        assert!(req.starts_with("POST /hooks/kura HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Content-Type: application/json"), "{req}");
        let body: serde_json::Value = serde_json::from_str(req.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["event"], "job_failed");
        assert_eq!(body["system"], "web");
        assert_eq!(body["error"], "no such file");
    }

    #[test]
    fn webhook_errors_are_reported() {
        let (url, h) = server("500 Internal Server Error");
        let f = send(&Notify { webhook: Some(url), command: None }, &event());
        h.join().unwrap();
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("500"), "{f:?}");
        // Nothing listens on a port just released.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let f = send(&Notify { webhook: Some(format!("http://127.0.0.1:{port}/")), command: None }, &event());
        assert!(f[0].contains("cannot connect"), "{f:?}");
        let f = send(&Notify { webhook: Some("https://user:secret@example.com/x".into()), command: None }, &event());
        assert!(f[0].contains("https is not supported"), "{f:?}");
        assert!(!f[0].contains("secret"), "{f:?}");
    }

    #[test]
    fn url_parsing() {
        assert_eq!(parse_http_url("http://h").unwrap(), ("h".into(), 80, "/".into()));
        assert_eq!(parse_http_url("http://h:8080/a/b?c=d").unwrap(), ("h".into(), 8080, "/a/b?c=d".into()));
        assert_eq!(parse_http_url("http://u:p@h:81/x").unwrap(), ("h".into(), 81, "/x".into()));
        assert!(parse_http_url("ftp://h").is_err());
        assert!(parse_http_url("http://h:notaport/").is_err());
    }

    #[test]
    fn command_gets_the_event_on_stdin_and_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("event.json");
        let env_out = dir.path().join("kind");
        let cmd = format!("cat > '{}'; printf %s \"$KURA_EVENT_KIND\" > '{}'", out.display(), env_out.display());
        assert!(send(&Notify { webhook: None, command: Some(cmd) }, &event()).is_empty());
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(v["event"], "job_failed");
        assert_eq!(std::fs::read_to_string(&env_out).unwrap(), "job_failed");

        let f = send(&Notify { webhook: None, command: Some("echo nope >&2; exit 3".into()) }, &event());
        assert!(f[0].contains("exit status: 3") && f[0].contains("nope"), "{f:?}");
        let e = run_command("sleep 5", EventKind::SystemLate, "{}", Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("killed"), "{e}");
    }

    #[test]
    fn command_gets_a_clean_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let cmd = format!("env > '{}'", out.display());
        assert!(send(&Notify { webhook: None, command: Some(cmd) }, &event()).is_empty());
        let text = std::fs::read_to_string(&out).unwrap();
        let allowed = crate::orchestrate::hooks::INHERITED_ENV;
        for line in text.lines() {
            let Some((name, _)) = line.split_once('=') else { continue };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // the rest of a multi-line value
            }
            assert!(
                allowed.contains(&name)
                    || ["KURA_EVENT", "KURA_EVENT_KIND", "PWD", "OLDPWD", "SHLVL", "_"].contains(&name),
                "{name} reached the notification command:\n{text}"
            );
        }
        assert!(text.lines().any(|l| l == "KURA_EVENT_KIND=job_failed"), "{text}");
    }
}
