//! The HTML report rendered by a real browser: headless Chromium (Debian's
//! `chromium`, installed by scripts/deps/chromium.sh) loads the file, and the test
//! checks the parsed DOM (Gantt chart with one bar per system and the deadline
//! markers, the systems table), a screenshot that is not blank and shows the
//! chart's colours, and a printed PDF.
//!
//! This test never skips: without Chromium it fails and says how to install it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use kura::report::{
    render, write_report, Format, HookOutcome, HookResult, IncidentFacts, ReportFacts, ReportKind, RunFacts, SystemRow,
    SystemState, TimelineEntry, Verification, VerifyResult,
};
use kura::types::Priority;

const CHROMIUM: &str = "chromium";
const TIMEOUT: Duration = Duration::from_secs(120);

fn at(h: i64, m: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 4, 6, 0, 0).unwrap() + chrono::Duration::minutes(h * 60 + m)
}

fn system(name: &str, prio: u8, state: SystemState, start: Option<(i64, i64)>, end: Option<(i64, i64)>) -> SystemRow {
    let p = Priority::new(prio).unwrap();
    let mut r = SystemRow::new(name, p, p.default_deadline().map(|d| d.num_seconds()), state);
    r.started_at = start.map(|(h, m)| at(h, m));
    r.ended_at = end.map(|(h, m)| at(h, m));
    if start.is_some() {
        r.snapshot = Some("5f1e0c2d".repeat(8));
        r.snapshot_time = Some(at(-9, 0));
        r.bytes = Some(3 << 30);
        r.files = Some(41_000);
        r.target = Some(format!("/srv/{name}"));
    }
    if state == SystemState::Done {
        r.verification = Verification { result: VerifyResult::Ok, detail: Some("41000 files match".into()) };
        r.hooks = vec![HookOutcome {
            phase: kura::report::HookStage::Verify,
            command: "curl -fsS http://localhost/health".into(),
            result: HookResult::Ok,
            attempts: 2,
            detail: None,
        }];
    }
    r
}

/// A recovery with one missed deadline (the database, priority 2, restored after
/// 25 h 30 min), a failed and a skipped system, and names that need escaping.
fn fixture() -> ReportFacts {
    let mut f = ReportFacts::new(ReportKind::Incident, "Encrypted file server <ransomware> & \"recovery\"", at(60, 0));
    f.incident_id = Some(12);
    f.run_id = Some(4);
    f.plan = Some("office".into());
    f.clock_start = Some(at(0, 0));
    f.run = Some(RunFacts {
        started_at: at(1, 10),
        ended_at: Some(at(40, 0)),
        status: kura::report::RunStatus::Done,
        from: Some("local".into()),
        parallel: Some(2),
        sandbox: None,
    });
    f.incident = Some(IncidentFacts {
        real: Some(true),
        category: Some("malware".into()),
        opened_at: Some(at(0, 25)),
        discovered_at: Some(at(0, 20)),
        down_since: Some(at(0, 0)),
        scope: Some("file server, database".into()),
        damage: Some("shares encrypted".into()),
        cause: Some("macro in a mail <attachment>".into()),
        response: Some("isolated the VLAN".into()),
        board_report: true,
        cause_resolved_at: Some(at(1, 5)),
        cause_note: Some("mail filter updated, host reimaged".into()),
        ..IncidentFacts::default()
    });
    f.timeline = vec![
        TimelineEntry {
            at: at(0, 25),
            kind: "opened".into(),
            text: "incident opened".into(),
            hash: Some("1a".repeat(32)),
        },
        TimelineEntry {
            at: at(1, 5),
            kind: "cause_resolved".into(),
            text: "host reimaged".into(),
            hash: Some("2b".repeat(32)),
        },
        TimelineEntry {
            at: at(1, 10),
            kind: "recovery_started".into(),
            text: "plan office".into(),
            hash: Some("3c".repeat(32)),
        },
        TimelineEntry {
            at: at(25, 30),
            kind: "system_restored".into(),
            text: "db: MISSED by 1 h 30 min".into(),
            hash: Some("4d".repeat(32)),
        },
    ];
    f.systems = vec![
        system("phones", 3, SystemState::Unaffected, None, None),
        system("web & mail", 2, SystemState::Done, Some((1, 10)), Some((3, 0))),
        system("db \"main\"", 2, SystemState::Done, Some((3, 0)), Some((25, 30))),
        system("files <share>", 1, SystemState::Done, Some((25, 30)), Some((40, 0))),
        system("crm", 1, SystemState::Failed, Some((25, 30)), Some((26, 0))),
        system("reports", 1, SystemState::Skipped, None, None),
        system("archive", 0, SystemState::Done, Some((40, 0)), Some((44, 0))),
    ];
    f.systems[4].error = Some("restore error: pack 9f3a is damaged".into());
    f.systems[5].error = Some("skipped: depends on crm, which failed".into());
    f
}

/// Runs Chromium headless on `url` with `args`, in a fresh profile, and returns
/// its stdout. Panics (loudly) when Chromium is missing, fails or hangs.
fn chromium(profile: &Path, args: &[String], url: &str) -> String {
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run `{CHROMIUM}` ({e}). This test needs Debian's chromium: run scripts/deps/chromium.sh \
             (apt-get install chromium) and try again"
        ),
    };
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out_reader.join().unwrap().expect("chromium's output is UTF-8");
    let err = err_reader.join().unwrap();
    assert!(status.success(), "chromium {args:?} failed with {status}\n--- stderr:\n{err}");
    out
}

/// The part of `dom` from `start` up to the first `end` after it.
fn section<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let i = dom.find(start).unwrap_or_else(|| panic!("{start} not in the DOM:\n{dom}"));
    let j = dom[i..].find(end).unwrap_or_else(|| panic!("{end} does not close {start}"));
    &dom[i..i + j]
}

struct Pixels {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

fn decode_png(path: &Path) -> Pixels {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("screenshot {} missing: {e}", path.display()));
    let decoder = png::Decoder::new(file);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "unexpected PNG depth");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let rgb = buf[..info.buffer_size()].chunks_exact(channels).map(|p| [p[0], p[1], p[2]]).collect();
    Pixels { width: info.width, height: info.height, rgb }
}

fn near(p: [u8; 3], c: [u8; 3]) -> bool {
    p.iter().zip(c).all(|(a, b)| (*a as i32 - b as i32).abs() <= 24)
}

#[test]
fn html_report_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let html_path: PathBuf = dir.path().join("report.html");
    let facts = fixture();
    write_report(&facts, Format::Html, &html_path).unwrap();
    let url = format!("file://{}", html_path.display());
    let systems = facts.systems.len();
    let with_deadline = facts.systems.iter().filter(|s| s.deadline_secs.is_some()).count();

    // 1. The DOM as Chromium parsed it.
    let dom = chromium(&dir.path().join("profile-dom"), &["--dump-dom".to_string()], &url);
    let gantt = section(&dom, "<svg id=\"gantt\"", "</svg>");
    assert_eq!(gantt.matches("<rect class=\"bar ").count(), systems, "one bar per system:\n{gantt}");
    assert_eq!(gantt.matches("<line class=\"deadline\"").count(), with_deadline, "one deadline marker per system");
    assert_eq!(gantt.matches("class=\"bar missed\"").count(), 1, "the database's bar is the missed one");
    assert!(gantt.contains(r#"class="bar missed" data-system="db &quot;main&quot;""#), "{gantt}");
    assert!(gantt.contains(r#"class="bar failed" data-system="crm""#));
    let table = section(&dom, "<table id=\"systems\"", "</table>");
    assert_eq!(table.matches("<tr class=\"verdict-").count(), systems, "one table row per system");
    assert!(table.contains("<td class=\"result missed\">MISSED</td>"));
    assert!(table.contains("files &lt;share&gt;"), "names are escaped, not parsed as tags");
    assert!(!dom.contains("<share>") && !dom.contains("<ransomware>") && !dom.contains("<attachment>"));
    assert!(dom.contains("<svg id=\"timeline\""));
    assert!(dom.contains("<table id=\"tiers\""));
    assert!(dom.contains("Overall: MISSED: 3 of 6 deadlines missed"), "db late, crm failed, reports skipped");

    // 2. A screenshot: not blank, and the chart's colours are on it.
    let png_path = dir.path().join("report.png");
    chromium(
        &dir.path().join("profile-png"),
        &[format!("--screenshot={}", png_path.display()), "--window-size=1200,1600".to_string()],
        &url,
    );
    let px = decode_png(&png_path);
    assert_eq!((px.width, px.height), (1200, 1600));
    let non_white = px.rgb.iter().filter(|p| p.iter().any(|c| *c < 240)).count();
    let share = non_white as f64 / px.rgb.len() as f64;
    assert!(share > 0.03, "screenshot is nearly blank: {non_white} non-white pixels ({:.2} %)", share * 100.0);
    let green = px.rgb.iter().filter(|p| near(**p, [0x2e, 0x7d, 0x32])).count();
    let red = px.rgb.iter().filter(|p| near(**p, [0xc6, 0x28, 0x28])).count();
    assert!(green > 500, "the met bars (green) are not on the screenshot: {green} pixels");
    assert!(red > 100, "the missed bar and labels (red) are not on the screenshot: {red} pixels");

    // 3. Printing: a non-empty PDF.
    let pdf_path = dir.path().join("report.pdf");
    chromium(
        &dir.path().join("profile-pdf"),
        &[format!("--print-to-pdf={}", pdf_path.display()), "--no-pdf-header-footer".to_string()],
        &url,
    );
    let pdf = std::fs::read(&pdf_path).unwrap_or_else(|e| panic!("no PDF at {}: {e}", pdf_path.display()));
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    assert!(pdf.len() > 10_000, "PDF is suspiciously small: {} bytes", pdf.len());
    // The print CSS asks for A4 landscape (842 x 595 points).
    let text = String::from_utf8_lossy(&pdf);
    assert!(text.contains("/MediaBox [0 0 841.9"), "the PDF's pages are not A4 landscape: @page was not applied");

    // KURA_KEEP_REPORT=DIR keeps the files for a look by eye.
    if let Some(keep) = std::env::var_os("KURA_KEEP_REPORT") {
        std::fs::create_dir_all(&keep).unwrap();
        for p in [&html_path, &png_path, &pdf_path] {
            std::fs::copy(p, Path::new(&keep).join(p.file_name().unwrap())).unwrap();
        }
    }

    // The same facts in the other formats agree on the missed deadline.
    let csv = render(&facts, Format::Csv);
    assert!(csv.lines().any(|l| l.contains("\"db \"\"main\"\"\"") && l.contains(",missed,")), "{csv}");
    let md = render(&facts, Format::Markdown);
    assert!(md.lines().any(|l| l.starts_with("| db \"main\" |") && l.contains("| MISSED |")), "{md}");
}
