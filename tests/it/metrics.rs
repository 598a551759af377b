//! The daemon's `[http]` listener as a real process: `/metrics` read directly and
//! scraped by a real Prometheus (Debian's `prometheus`, installed by
//! scripts/deps/prometheus.sh), and the token that guards everything else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::daemon::{eventually, Setup};
pub use crate::servers::free_port;
use crate::util::*;

/// An answer: status code, header lines (lower-case names), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.1 GET over a std socket, `extra` added as header lines.
pub fn get(port: u16, path: &str, extra: &[(&str, &str)]) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Answer { status, headers, body: body.to_string() })
}

/// The config's `[http]` table on `port`, two systems: `web` (priority 2, backed
/// up by the test) and `db` (priority 3, never backed up, allowed 1 s: late).
fn configure(setup: &Setup, port: u16) {
    let web = setup.src("web");
    let db = setup.src("db");
    let tables = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[max_backup_age]\np3 = \"1s\"\np2 = \"1h\"\n\n\
         [[system]]\nname = \"web\"\npriority = 2\npaths = [\"{}\"]\n\n\
         [[system]]\nname = \"db\"\npriority = 3\npaths = [\"{}\"]\n",
        s(&web),
        s(&db)
    );
    setup.configure("", &tables);
}

fn token_of(setup: &Setup) -> String {
    let file = setup.state.parent().unwrap().join("http-token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file is owner-only");
    std::fs::read_to_string(&file).unwrap().trim().to_string()
}

#[test]
fn metrics_and_the_token_over_plain_http() {
    let setup = Setup::new();
    let port = free_port();
    configure(&setup, port);
    let d = setup.daemon();
    setup.cli(&["run", "web"]).ok();

    let m = get(port, "/metrics", &[]).unwrap();
    assert_eq!(m.status, 200, "{}", m.body);
    assert!(m.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    for line in [
        "# TYPE kura_system_priority gauge",
        "kura_system_priority{system=\"web\"} 2",
        "kura_system_priority{system=\"db\"} 3",
        "# TYPE kura_job_runs counter",
        "kura_job_runs_total{kind=\"backup\",outcome=\"ok\"} 1",
        "kura_system_backup_max_age_seconds{system=\"web\"} 3600",
        "kura_system_late{system=\"web\"} 0",
        "kura_system_last_backup_outcome{system=\"web\",outcome=\"ok\"} 1",
        "# TYPE kura_system_last_backup_bytes gauge",
        "# TYPE kura_recovery_system_seconds_left gauge",
        "kura_recovery_running 0",
        "# EOF",
    ] {
        assert!(m.body.lines().any(|l| l == line), "{line:?} missing from /metrics:\n{}", m.body);
    }
    assert!(m.body.contains("kura_system_backup_age_seconds{system=\"web\"} "), "{}", m.body);
    assert!(m.body.contains("kura_system_last_backup_duration_seconds{system=\"web\"} "), "{}", m.body);
    assert!(!m.body.contains("kura_system_last_backup_outcome{system=\"db\""), "db never ran");
    // db has no backup, is allowed one second and is watched since the start.
    eventually(30, "db to be late", || {
        get(port, "/metrics", &[]).unwrap().body.contains("kura_system_late{system=\"db\"} 1").then_some(())
    });

    // Everything but /metrics (on loopback) needs the token.
    let token = token_of(&setup);
    for path in ["/", "/api/dashboard", "/app.js", "/reports/incident/1"] {
        let a = get(port, path, &[]).unwrap();
        assert_eq!(a.status, 401, "{path} without a token: {}", a.body);
        assert!(a.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
        let a = get(port, path, &[("Authorization", "Bearer not-the-token")]).unwrap();
        assert_eq!(a.status, 401, "{path} with a wrong token");
    }
    assert_eq!(get(port, "/?token=wrong", &[]).unwrap().status, 401);
    let bearer = format!("Bearer {token}");
    let api = get(port, "/api/dashboard", &[("Authorization", &bearer)]).unwrap();
    assert_eq!(api.status, 200, "{}", api.body);
    let v: Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(v["status"]["systems"][0]["name"], "web");
    assert_eq!(v["status"]["systems"][0]["last_outcome"], "ok");
    assert!(v["recovery"].is_null(), "no recovery has run");
    let page = get(port, &format!("/?token={token}"), &[]).unwrap();
    assert_eq!(page.status, 200);
    assert!(page.header("content-security-policy").is_some_and(|c| c.contains("script-src 'self'")));
    let cookie = page.header("set-cookie").expect("the page sets the token cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let cookie_pair = cookie.split(';').next().unwrap();
    let js = get(port, "/app.js", &[("Cookie", cookie_pair)]).unwrap();
    assert_eq!(js.status, 200, "the cookie is accepted");
    assert!(js.body.contains("/api/dashboard"));
    assert!(!d.log().contains(&token), "the token is never logged:\n{}", d.log());
}

#[test]
fn a_bad_listen_address_or_token_file_stops_the_daemon_with_its_name() {
    let setup = Setup::new();
    setup.configure("", "[http]\nlisten = \"localhost\"\n");
    let o = run(bare_kura().args(["daemon", "--config", s(&setup.config), "--state", s(&setup.state)]));
    o.code(2).stderr_has("http.listen").stderr_has("not an address and port").stderr_has("kura.toml");

    let tok = setup.repo.base().join("tok");
    write(&tok, "secret\n");
    chmod(&tok, 0o644);
    setup.configure("", &format!("[http]\nlisten = \"127.0.0.1:{}\"\ntoken_file = \"{}\"\n", free_port(), s(&tok)));
    let o = run(bare_kura()
        .args(["daemon", "--config", s(&setup.config), "--state", s(&setup.state)])
        .args(["--socket", s(&setup.socket)]));
    o.code(2).stderr_has("token file").stderr_has(s(&tok)).stderr_has("chmod 600");
    assert!(!o.stderr.contains("secret"), "{o}");
}

/// Kills the process on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `prometheus` on PATH, installing it with scripts/deps/prometheus.sh when
/// missing; `None` (the reason printed) when it cannot be installed.
fn prometheus() -> Option<&'static str> {
    let works = || Command::new("prometheus").arg("--version").output().is_ok_and(|o| o.status.success());
    if works() {
        return Some("prometheus");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/deps/prometheus.sh");
    let installed = Command::new("bash").arg(&script).status().is_ok_and(|s| s.success());
    if installed && works() {
        return Some("prometheus");
    }
    eprintln!("SKIPPED: prometheus is not installed and {} could not install it", script.display());
    None
}

fn start_prometheus(bin: &str, dir: &Path, target: u16) -> (Killed, u16, PathBuf) {
    let port = free_port();
    let cfg = dir.join("prometheus.yml");
    write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: kura\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    );
    let log = dir.join("prometheus.log");
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start prometheus");
    (Killed(child), port, log)
}

/// The value of the one series `query` selects, through Prometheus's HTTP API.
fn query(port: u16, query: &str) -> Option<String> {
    let enc: String = query
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let a = get(port, &format!("/api/v1/query?query={enc}"), &[]).ok()?;
    let v: Value = serde_json::from_str(&a.body).ok()?;
    let result = v["data"]["result"].as_array()?;
    match result.as_slice() {
        [one] => one["value"][1].as_str().map(String::from),
        _ => None,
    }
}

#[test]
fn a_real_prometheus_scrapes_the_daemon() {
    let Some(bin) = prometheus() else { return };
    let setup = Setup::new();
    let port = free_port();
    configure(&setup, port);
    let d = setup.daemon();
    setup.cli(&["run", "web"]).ok();
    let (_prom, prom_port, log) = start_prometheus(bin, setup.repo.base(), port);
    let wait_for = |q: &str, want: &str| {
        eventually(90, &format!("Prometheus to answer {q} = {want}"), || {
            (query(prom_port, q).as_deref() == Some(want)).then_some(())
        })
    };
    let expect = |q: &str, want: &str| {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_for(q, want)));
        if r.is_err() {
            let raw = get(prom_port, "/api/v1/query?query=%7B__name__%3D~%22kura.*%22%7D", &[]).map(|a| a.body);
            panic!(
                "{q}: {:?}\n--- all kura series: {raw:?}\n--- prometheus log:\n{}\n--- daemon log:\n{}",
                query(prom_port, q),
                std::fs::read_to_string(&log).unwrap_or_default(),
                d.log()
            );
        }
    };
    expect("up{job=\"kura\"}", "1");
    expect("kura_system_priority{system=\"web\"}", "2");
    expect("kura_system_priority{system=\"db\"}", "3");
    expect("kura_system_late{system=\"web\"}", "0");
    expect("kura_system_late{system=\"db\"}", "1");
    expect("kura_job_runs_total{kind=\"backup\",outcome=\"ok\"}", "1");
    expect("kura_system_backup_max_age_seconds{system=\"web\"}", "3600");
    // A second run is counted at the next scrapes.
    setup.cli(&["run", "web"]).ok();
    expect("kura_job_runs_total{kind=\"backup\",outcome=\"ok\"}", "2");
}
