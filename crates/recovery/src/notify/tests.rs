use std::io::{Read, Write};
use std::net::TcpListener;

use super::*;

fn event() -> Event {
    let mut e = Event::new(EventKind::JobFailed, Utc::now(), "backup of web failed".into());
    e.job = Some("backup".into());
    e.system = Some("web".into());
    e.error = Some("no such file".into());
    e
}

fn only(webhook: Option<String>, command: Option<String>) -> Notify {
    Notify { webhook, command, ..Notify::default() }
}

/// A one-shot HTTP server: returns the raw request it got, answers `status`.
fn server(status: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/hooks/kura", l.local_addr().unwrap().port());
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            req.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&req).to_string();
            if let Some(i) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().to_string()))
                    .map(|v| v.parse().unwrap())
                    .unwrap();
                if req.len() >= i + 4 + len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
        String::from_utf8(req).unwrap()
    });
    (url, h)
}

#[test]
fn webhook_posts_the_event_as_json_with_its_id() {
    let (url, h) = server("204 No Content");
    let mut ev = event();
    let res = send_now(&only(Some(url), None), &mut ev);
    assert!(matches!(res.as_slice(), [(Channel::Webhook, Ok(()))]), "{res:?}");
    let req = h.join().unwrap();
    assert!(req.starts_with("POST /hooks/kura HTTP/1.1\r\n"), "{req}");
    let lower = req.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/json"), "{req}");
    assert!(lower.contains(&format!("idempotency-key: {}", ev.id)), "{req}");
    assert!(lower.contains(&format!("x-kura-event-id: {}", ev.id)), "{req}");
    let body: serde_json::Value = serde_json::from_str(req.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["event"], "job_failed");
    assert_eq!(body["id"], ev.id.as_str());
    assert_eq!(body["system"], "web");
    assert_eq!(body["error"], "no such file");
}

#[test]
fn webhook_errors_are_reported_without_secrets() {
    let (url, h) = server("500 Internal Server Error");
    let url = url.replace("http://", "http://user:hunter2@") + "?token=s3cret";
    let f = send_now(&only(Some(url), None), &mut event());
    h.join().unwrap();
    let msg = f[0].1.as_ref().unwrap_err().to_string();
    assert!(msg.contains("500"), "{msg}");
    assert!(!msg.contains("hunter2") && !msg.contains("s3cret"), "{msg}");
    assert!(msg.contains("token=***"), "{msg}");
    // Nothing listens on a port just released.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/x?key=abc");
    let msg = send_now(&only(Some(url), None), &mut event())[0].1.as_ref().unwrap_err().to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")) && !msg.contains("abc"), "{msg}");
}

#[test]
fn redaction() {
    assert_eq!(redact("https://u:p@h.example/x?token=t&a=b"), "https://***@h.example/x?token=***&a=***");
    assert_eq!(redact("http://h:8080/a"), "http://h:8080/a");
    assert_eq!(redact("not a url secret"), "<URL that does not parse>");
}

#[test]
fn a_bad_ca_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not pem").unwrap();
    let mut n = only(Some("https://127.0.0.1:1/".into()), None);
    n.ca_file = Some(ca.clone());
    let msg = send_now(&n, &mut event())[0].1.as_ref().unwrap_err().to_string();
    assert!(msg.contains(&format!("cannot read ca_file {}", ca.display())), "{msg}");
}

#[test]
fn command_gets_the_event_on_stdin_and_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("event.json");
    let env_out = dir.path().join("kind");
    let cmd = format!("cat > '{}'; printf %s \"$KURA_EVENT_KIND\" > '{}'", out.display(), env_out.display());
    let res = send_now(&only(None, Some(cmd)), &mut event());
    assert!(res.iter().all(|(_, r)| r.is_ok()), "{res:?}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["event"], "job_failed");
    assert_eq!(std::fs::read_to_string(&env_out).unwrap(), "job_failed");

    let f = send_now(&only(None, Some("echo nope >&2; exit 3".into())), &mut event());
    let msg = f[0].1.as_ref().unwrap_err().to_string();
    assert!(msg.contains("exit status: 3") && msg.contains("nope"), "{msg}");
    let e = run_command("sleep 5", "system_late", "x", "{}", Duration::from_millis(200)).unwrap_err();
    assert!(e.to_string().contains("killed"), "{e}");
}

#[test]
fn command_gets_a_clean_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let cmd = format!("env > '{}'", out.display());
    assert!(send_now(&only(None, Some(cmd)), &mut event()).iter().all(|(_, r)| r.is_ok()));
    let text = std::fs::read_to_string(&out).unwrap();
    let allowed = crate::orchestrate::hooks::INHERITED_ENV;
    for line in text.lines() {
        let Some((name, _)) = line.split_once('=') else { continue };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // the rest of a multi-line value
        }
        assert!(
            allowed.contains(&name)
                || ["KURA_EVENT", "KURA_EVENT_KIND", "KURA_EVENT_ID", "PWD", "OLDPWD", "SHLVL", "_"].contains(&name),
            "{name} reached the notification command:\n{text}"
        );
    }
    assert!(text.lines().any(|l| l == "KURA_EVENT_KIND=job_failed"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("KURA_EVENT_ID=") && l.len() == "KURA_EVENT_ID=".len() + 36), "{text}");
}
