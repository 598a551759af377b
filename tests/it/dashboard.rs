//! The live dashboard in a real browser: the real `kura daemon` serves it, a real
//! `kura recover` runs beside it, and headless Chromium (Debian's `chromium`,
//! scripts/deps/chromium.sh) is driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: NUL-terminated JSON on fds 3 and 4). The page is
//! loaded once while a system waits, and shows it done without a reload.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::daemon::{eventually, Setup};
use crate::metrics::{free_port, get};
use crate::util::*;

const WAIT: Duration = Duration::from_secs(60);

/// Headless Chromium with the DevTools protocol on a pipe, one page attached.
struct Browser {
    child: Child,
    to: File,
    from: mpsc::Receiver<Value>,
    next: u64,
    session: Option<String>,
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-element array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
    (fds[0], fds[1])
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let (cmd_r, cmd_w) = pipe(); // the browser reads commands on its fd 3
        let (ev_r, ev_w) = pipe(); // and writes answers and events on its fd 4
        let mut c = Command::new("chromium");
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,1400",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec. The fds are
        // first moved above 10 so that placing them on 3 and 4 cannot clobber one.
        unsafe {
            c.pre_exec(move || {
                let r = libc::fcntl(cmd_r, libc::F_DUPFD, 10);
                let w = libc::fcntl(ev_w, libc::F_DUPFD, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().unwrap_or_else(|e| {
            panic!("cannot run `chromium` ({e}): this test needs Debian's chromium (scripts/deps/chromium.sh)")
        });
        // SAFETY: the fds are ours; each is wrapped once and the child's ends closed.
        let (to, from_file) = unsafe {
            libc::close(cmd_r);
            libc::close(ev_w);
            (File::from_raw_fd(cmd_w), File::from_raw_fd(ev_r))
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(from_file);
            let mut buf = Vec::new();
            while r.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop();
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                buf.clear();
            }
        });
        Browser { child, to, from: rx, next: 1, session: None }
    }

    /// Sends one command (to the attached page once there is one), returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium's pipe");
        loop {
            let v = self.from.recv_timeout(WAIT).unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({ "url": url }))["targetId"].clone();
        let session = self.call("Target.attachToTarget", json!({ "targetId": target, "flatten": true }));
        self.session = Some(session["sessionId"].as_str().expect("a session id").to_string());
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({ "expression": expr, "returnByValue": true }));
        assert!(r.get("exceptionDetails").is_none(), "{expr} threw: {r}");
        r["result"]["value"].clone()
    }

    fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().expect("png data")).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Share of pixels that are not (near) white in a PNG.
fn non_white_share(png_bytes: &[u8]) -> f64 {
    let decoder = png::Decoder::new(png_bytes);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let px: Vec<&[u8]> = buf[..info.buffer_size()].chunks_exact(channels).collect();
    let dark = px.iter().filter(|p| p[..3].iter().any(|c| *c < 240)).count();
    dark as f64 / px.len() as f64
}

/// A recovery of `db` (its pre hook waits for `release`) then `web` (depends on db).
fn write_plan(setup: &Setup, release: &Path) -> PathBuf {
    let base = setup.repo.base();
    let plan = base.join("plan.toml");
    write(
        &plan,
        format!(
            "name = 'dashboard plan'\nconfig = '{}'\n\n[[system]]\nname = 'db'\ntarget = '{}'\n\n\
             [[system.pre]]\ncommand = 'while [ ! -e {} ]; do sleep 0.1; done'\ntimeout = '5m'\n\n\
             [[system]]\nname = 'web'\ntarget = '{}'\ndepends_on = ['db']\n",
            s(&setup.config),
            s(&base.join("restore/db")),
            s(release),
            s(&base.join("restore/web")),
        ),
    );
    plan
}

fn kura_at(setup: &Setup, args: &[&str]) -> Command {
    let mut c = bare_kura();
    c.arg("--state").arg(&setup.state).args(args).env("KURA_PASSWORD", PASSWORD).env("KURA_CONFIG", &setup.config);
    c
}

/// The state of `system` in the page's recovery table (null while not shown).
fn page_state(b: &mut Browser, system: &str) -> Value {
    b.eval(&format!(
        "(() => {{ const r = document.querySelector('#recovery-table tr[data-system=\"{system}\"]'); \
         return r ? r.dataset.state : null; }})()"
    ))
}

#[test]
fn the_dashboard_follows_a_real_recovery_without_a_reload() {
    let setup = Setup::new();
    let port = free_port();
    let (db, web) = (setup.src("db"), setup.src("web"));
    setup.configure(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[deadlines]\np3 = \"1h\"\np2 = \"2h\"\n\n\
             [[system]]\nname = \"db\"\npriority = 3\npaths = [\"{}\"]\n\n\
             [[system]]\nname = \"web\"\npriority = 2\npaths = [\"{}\"]\n",
            s(&db),
            s(&web)
        ),
    );
    let d = setup.daemon();
    setup.cli(&["run", "db"]).ok();
    setup.cli(&["run", "web"]).ok();
    let token = std::fs::read_to_string(setup.state.parent().unwrap().join("http-token")).unwrap();
    let token = token.trim();

    let release = setup.repo.base().join("RELEASE");
    let plan = write_plan(&setup, &release);
    let o = run(&mut kura_at(&setup, &["--json", "incident", "open", "--title", "ransomware on the file server"]));
    let id = o.ok().json()["id"].as_i64().expect("incident id").to_string();
    run(&mut kura_at(&setup, &["incident", "resolve-cause", &id, "--note", "fixed"])).ok();
    let recover_log = setup.repo.base().join("recover.log");
    let mut recover = kura_at(&setup, &["recover", "--incident", &id, "--plan", s(&plan)])
        .stdout(Stdio::null())
        .stderr(File::create(&recover_log).unwrap())
        .spawn()
        .unwrap();

    // The daemon sees the run: db in its pre hook, web waiting for it.
    let bearer = format!("Bearer {token}");
    eventually(60, "the recovery on /api/dashboard", || {
        let v: Value =
            serde_json::from_str(&get(port, "/api/dashboard", &[("Authorization", &bearer)]).ok()?.body).ok()?;
        let states: Vec<&str> =
            v["recovery"]["systems"].as_array()?.iter().filter_map(|s| s["state"].as_str()).collect();
        (states == ["pre", "waiting"]).then_some(())
    });

    // /metrics shows the running recovery too.
    let m = get(port, "/metrics", &[]).unwrap().body;
    for line in [
        "kura_recovery_running 1",
        "kura_recovery_system_state{run=\"1\",system=\"db\",state=\"pre\"} 1",
        "kura_recovery_system_state{run=\"1\",system=\"web\",state=\"waiting\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line:?} missing from /metrics:\n{m}");
    }
    let left = m.lines().find_map(|l| l.strip_prefix("kura_recovery_system_seconds_left{run=\"1\",system=\"web\"} "));
    let left: i64 = left.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("web's seconds left:\n{m}"));
    assert!(left > 0 && left <= 7200, "web's deadline is 2 h from the incident clock: {left}");
    let due = m
        .lines()
        .find_map(|l| l.strip_prefix("kura_recovery_system_deadline_timestamp_seconds{run=\"1\",system=\"db\"} "));
    let due: i64 = due.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("db's deadline:\n{m}"));
    assert!((due - chrono::Utc::now().timestamp() - 3600).abs() < 600, "db's deadline is about 1 h ahead: {due}");

    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::start(profile.path());
    b.open(&format!("http://127.0.0.1:{port}/?token={token}"));
    eventually(60, "the page to show web waiting", || (page_state(&mut b, "web") == "waiting").then_some(()));
    assert_eq!(page_state(&mut b, "db"), "pre");
    b.eval("window.kuraLoadedOnce = 'yes'");
    let countdown = b.eval("document.querySelector('#recovery-table tr[data-system=\"web\"] .countdown').textContent");
    assert!(countdown.as_str().is_some_and(|t| t.ends_with(" left")), "a live countdown: {countdown}");
    let systems = b.eval("document.getElementById('systems-table').innerText");
    assert!(systems.as_str().is_some_and(|t| t.contains("Priority 3") && t.contains("web")), "{systems}");
    let shot = b.screenshot();
    let share = non_white_share(&shot);
    assert!(share > 0.03, "the screenshot is nearly blank ({:.2} % non-white)", share * 100.0);

    // Release db: both finish, and the same page (no reload) shows it.
    write(&release, "go");
    eventually(120, "the page to show web done", || (page_state(&mut b, "web") == "done").then_some(()));
    assert_eq!(page_state(&mut b, "db"), "done");
    assert_eq!(b.eval("window.kuraLoadedOnce"), "yes", "the page was not reloaded");
    let bars = b.eval("[...document.querySelectorAll('#gantt .span.done')].map(e => e.getBoundingClientRect().width)");
    let widths: Vec<f64> = bars.as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    assert_eq!(widths.len(), 2, "the Gantt chart has a finished bar per system: {bars}");
    assert!(widths.iter().all(|w| *w > 0.5), "the bars are drawn (styles pass the page's CSP): {bars}");
    assert_eq!(b.eval("location.search"), "", "the token is taken out of the address bar");
    let kinds = b.eval("[...document.querySelectorAll('#timeline li')].map(li => li.dataset.kind).join(' ')");
    let kinds = kinds.as_str().unwrap_or_default().to_string();
    assert!(kinds.contains("opened") && kinds.contains("recovery-started"), "{kinds}");
    eventually(30, "the timeline to show both systems finished", || {
        let v = b.eval("document.querySelectorAll('#timeline li[data-kind=\"system-finished\"]').length");
        (v == 2).then_some(())
    });
    let link = b.eval("document.getElementById('incident-report').getAttribute('href')");
    assert_eq!(link, format!("/reports/incident/{id}").as_str());
    let report = get(port, &format!("/reports/incident/{id}"), &[("Authorization", &bearer)]).unwrap();
    assert_eq!(report.status, 200);
    assert!(report.body.contains("<svg id=\"gantt\""), "the incident's HTML report");

    let st = recover.wait().unwrap();
    assert!(st.success(), "kura recover: {st}\n{}", std::fs::read_to_string(&recover_log).unwrap_or_default());
    drop(d);
}
