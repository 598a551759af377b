//! Notifications through the real binary: the outbox, retries, deduplication and
//! exactly-once delivery across a `kill -9` of the daemon (webhook on loopback that
//! fails its first requests), https with a custom CA (rcgen + rustls in the test),
//! `kura notify test`, and secrets kept out of logs and errors.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::daemon::{eventually, Setup};
use crate::util::*;

/// One request the receiver got: the `X-Kura-Event-Id` header, the body, and whether
/// it was accepted (2xx).
#[derive(Clone, Debug)]
struct Got {
    header_id: String,
    body: Value,
    accepted: bool,
}

/// A webhook receiver on loopback: fails its first `fail_first` requests (500),
/// and every request while `failing` is set; accepts the others (200).
#[derive(Clone)]
struct Receiver {
    url: String,
    fail_first: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    fn start(fail_first: usize, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}/hook"),
            None => format!("http://127.0.0.1:{port}/hook"),
        };
        let r = Receiver {
            url,
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            failing: Arc::new(AtomicBool::new(false)),
            got: Arc::default(),
        };
        let me = r.clone();
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(tcp) = stream else { continue };
                match &tls {
                    Some(cfg) => {
                        let Ok(conn) = rustls::ServerConnection::new(cfg.clone()) else { continue };
                        me.serve(rustls::StreamOwned::new(conn, tcp));
                    }
                    None => me.serve(tcp),
                }
            }
        });
        r
    }

    /// Answers one request on `s`; a broken connection (e.g. a refused certificate) is ignored.
    fn serve(&self, mut s: impl Read + Write) {
        let Some((head, body)) = read_request(&mut s) else { return };
        let header_id = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-kura-event-id:").map(|v| v.trim().to_string()))
            .unwrap_or_default();
        let fail = self.failing.load(Ordering::SeqCst)
            || self.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let status = if fail { "500 Internal Server Error" } else { "200 OK" };
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        // Recorded before answering: an accepted delivery is counted even if the
        // sender dies before it reads the answer.
        self.got.lock().unwrap().push(Got { header_id, body, accepted: !fail });
        let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        let _ = s.flush();
    }

    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<Value> {
        self.all().into_iter().filter(|g| g.accepted).map(|g| g.body).collect()
    }
}

/// The head and the body of one HTTP request.
fn read_request(s: &mut impl Read) -> Option<(String, String)> {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).ok()?;
        req.extend_from_slice(&buf[..n]);
        let t = String::from_utf8_lossy(&req).to_string();
        if let Some(i) = t.find("\r\n\r\n") {
            let len: usize = t
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if req.len() >= i + 4 + len {
                return Some((t[..i].to_string(), t[i + 4..i + 4 + len].to_string()));
            }
        }
        if n == 0 {
            return None;
        }
    }
}

/// Asserts that every accepted event was accepted once, with its id in the header too.
#[track_caller]
fn exactly_once(r: &Receiver) {
    let all = r.all();
    let mut ids: Vec<&str> = all.iter().filter(|g| g.accepted).map(|g| g.body["id"].as_str().unwrap()).collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "an event was delivered twice: {all:#?}");
    assert!(all.iter().all(|g| g.header_id == g.body["id"].as_str().unwrap_or("")), "{all:#?}");
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn failed_runs(events: &[Value]) -> Vec<i64> {
    let mut runs: Vec<i64> = of_kind(events, "job_failed").iter().map(|e| e["run"].as_i64().unwrap()).collect();
    runs.sort();
    runs
}

/// The events the notify command wrote, one file each.
fn command_events(dir: &Path) -> Vec<Value> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).ok())
        .collect()
}

/// `kura run gone`: its backup fails (the path is gone); returns the run id.
fn fail_once(setup: &Setup) -> i64 {
    let o = setup.cli(&["--json", "run", "gone"]);
    assert_eq!(o.code, 2, "{o}");
    let runs = setup.jobs(&["--system", "gone"]);
    runs.iter().map(|r| r["id"].as_i64().unwrap()).max().unwrap()
}

#[test]
fn events_are_delivered_exactly_once_with_retries_across_a_kill_9() {
    let r = Receiver::start(3, None);
    let hook = format!("{}?token=hunter2", r.url);
    let setup = Setup::new();
    let events = setup.repo.base().join("events");
    std::fs::create_dir(&events).unwrap();
    let gone = setup.src("gone");
    let late = setup.src("late");
    setup.configure(
        "",
        &format!(
            "[max_backup_age]\np1 = \"3s\"\n\n\
             [[system]]\nname = \"gone\"\npriority = 1\npaths = [\"{}\"]\n\n\
             [[system]]\nname = \"late\"\npriority = 1\npaths = [\"{}\"]\n\n\
             [notify]\nwebhook = \"{hook}\"\ncommand = \"cat > \\\"$(mktemp '{}/ev.XXXXXX')\\\"\"\n\
             retry_initial = \"1s\"\nretry_max = \"2s\"\n",
            s(&gone),
            s(&late),
            s(&events)
        ),
    );
    let mut d = setup.daemon();
    std::fs::remove_dir_all(&gone).unwrap();
    let run1 = fail_once(&setup);

    // The first three requests fail; retries deliver the failure and both late systems.
    let got = eventually(60, "job_failed and two system_late accepted", || {
        let a = r.accepted();
        (failed_runs(&a) == [run1] && of_kind(&a, "system_late").len() == 2).then_some(a)
    });
    exactly_once(&r);
    assert!(r.all().iter().filter(|g| !g.accepted).count() >= 3);
    let mut late_systems: Vec<&str> = of_kind(&got, "system_late").iter().map(|e| text(e, "system")).collect();
    late_systems.sort();
    assert_eq!(late_systems, ["gone", "late"]);
    let failure = of_kind(&got, "job_failed")[0].clone();
    assert_eq!((text(&failure, "system"), text(&failure, "job")), ("gone", "backup"));
    assert!(text(&failure, "key").contains(&format!(":{run1}")), "{failure}");
    let log = d.log();
    assert!(log.contains("notification not delivered") && log.contains("token=***"), "{log}");
    assert!(!log.contains("hunter2"), "the webhook's token reached the log:\n{log}");

    // The receiver fails from now on; a second failure is tried and kept pending.
    r.failing.store(true, Ordering::SeqCst);
    let run2 = fail_once(&setup);
    eventually(30, "two failed attempts of the second failure", || {
        let tries = r.all().iter().filter(|g| g.body["run"] == run2 && !g.accepted).count();
        (tries >= 2).then_some(())
    });
    // `kura status` shows what is pending and why.
    let n = setup.status()["notifications"].clone();
    assert!(n["pending"].as_u64().unwrap() >= 1 && n["oldest_pending"].is_string(), "{n}");
    assert!(text(&n, "last_error").contains("500") && !text(&n, "last_error").contains("hunter2"), "{n}");
    setup.cli(&["status"]).stdout_has("PENDING").stdout_has("last error");
    d.kill9();

    // A new daemon sends what is pending, and does not announce the late systems again.
    r.failing.store(false, Ordering::SeqCst);
    // The config check at start wants the path; it vanishes again afterwards.
    let gone = setup.src("gone");
    let d2 = setup.daemon();
    std::fs::remove_dir_all(&gone).unwrap();
    eventually(60, "the second failure accepted after the restart", || {
        (failed_runs(&r.accepted()) == [run1, run2]).then_some(())
    });
    eventually(30, "both systems late again in the new daemon", || {
        let st = setup.status();
        st["systems"].as_array().unwrap().iter().all(|s| s["late"] == true).then_some(())
    });
    // A third failure, after the lateness was seen: what was written before it is
    // delivered before it.
    let run3 = fail_once(&setup);
    eventually(60, "the third failure accepted", || (failed_runs(&r.accepted()) == [run1, run2, run3]).then_some(()));
    exactly_once(&r);
    eventually(30, "nothing pending", || (setup.status()["notifications"]["pending"] == 0).then_some(()));
    let accepted = r.accepted();
    assert_eq!(of_kind(&accepted, "system_late").len(), 2, "a still-late system was announced again: {accepted:#?}");
    assert!(d2.log().contains("already notified"), "{}", d2.log());

    // The command got each event once too.
    let from_cmd = eventually(30, "five events from the command", || {
        let c = command_events(&events);
        (c.len() >= 5).then_some(c)
    });
    assert_eq!(failed_runs(&from_cmd), [run1, run2, run3], "{from_cmd:#?}");
    assert_eq!(of_kind(&from_cmd, "system_late").len(), 2, "{from_cmd:#?}");
}

/// A CA and a server certificate for `localhost`, signed by it: (CA PEM, server config).
fn tls_server() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "kura test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert =
        CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca_cert, &ca_key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    (ca_cert.pem(), Arc::new(cfg))
}

#[test]
fn https_webhook_with_a_custom_ca_and_a_clear_certificate_error_without_it() {
    let (ca_pem, tls) = tls_server();
    let r = Receiver::start(0, Some(tls));
    let dir = TestRepo::uninit();
    let base = dir.base();
    let ca = base.join("ca.pem");
    write(&ca, &ca_pem);
    let config = base.join("kura.toml");
    let head = format!("[repository]\nlocation = \"{}\"\npassword_file = \"/p\"\n", s(&base.join("repo")));

    write(&config, format!("{head}[notify]\nwebhook = \"{}\"\nca_file = \"ca.pem\"\n", r.url));
    let o = run(bare_kura().args(["--json", "notify", "test", "--config", s(&config)]));
    let v = o.ok().json();
    assert_eq!(v["ok"], true, "{o}");
    let got = r.accepted();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!((got[0]["event"].as_str(), got[0]["id"].as_str()), (Some("test"), v["id"].as_str()));

    // Without the CA the server's certificate is not trusted: said plainly, exit 2.
    write(&config, format!("{head}[notify]\nwebhook = \"{}\"\n", r.url));
    let o = run(bare_kura().args(["notify", "test", "--config", s(&config)]));
    o.code(2).stderr_has(&r.url).stderr_has("certificate");
    assert_eq!(r.accepted().len(), 1);

    // The daemon posts over https with the same CA.
    let setup = Setup::new();
    write(&setup.repo.base().join("ca.pem"), &ca_pem);
    let gone = setup.src("gone");
    setup.configure(
        "",
        &format!(
            "[[system]]\nname = \"gone\"\npriority = 1\npaths = [\"{}\"]\n\n\
             [notify]\nwebhook = \"{}\"\nca_file = \"ca.pem\"\n",
            s(&gone),
            r.url
        ),
    );
    let _d = setup.daemon();
    std::fs::remove_dir_all(&gone).unwrap();
    let run1 = fail_once(&setup);
    eventually(30, "the failure posted over https", || (failed_runs(&r.accepted()) == [run1]).then_some(()));
    exactly_once(&r);
}

#[test]
fn notify_test_names_an_unreachable_url_without_its_secrets_and_runs_the_command() {
    let dir = TestRepo::uninit();
    let base = dir.base();
    let config = base.join("kura.toml");
    let head = format!("[repository]\nlocation = \"{}\"\npassword_file = \"/p\"\n", s(&base.join("repo")));
    // Nothing listens on a port just released.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = base.join("event.json");
    write(
        &config,
        format!(
            "{head}[notify]\nwebhook = \"http://kura:s3cret@127.0.0.1:{port}/x?token=abc\"\ncommand = \"cat > '{}'\"\n",
            s(&out)
        ),
    );
    let o = run(bare_kura().args(["notify", "test", "--config", s(&config)]));
    o.code(2).stderr_has(&format!("127.0.0.1:{port}")).stdout_has("command");
    assert!(!o.stderr.contains("s3cret") && !o.stderr.contains("abc"), "{o}");
    let ev: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(ev["event"], "test");
    let v = run(bare_kura().args(["--json", "notify", "test", "--config", s(&config)])).code(2).json();
    assert_eq!(v["ok"], false);
    let web = v["channels"].as_array().unwrap().iter().find(|c| c["channel"] == "webhook").unwrap().clone();
    assert_eq!(web["ok"], false);
    assert!(text(&web, "target").contains("token=***"), "{web}");

    write(&config, &head);
    run(bare_kura().args(["notify", "test", "--config", s(&config)])).code(2).stderr_has("no webhook and no command");
    run(bare_kura().args(["notify", "test", "--help"])).ok().stdout_has("--config");
}
