//! Unit tests of the report arithmetic and the four renderers.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::csv::{quote, COLUMNS};
use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 8, 0, 0).unwrap()
}

fn p(n: u8) -> Priority {
    Priority::new(n).unwrap()
}

const H: i64 = 3600;

/// A done system restored from `start` to `end` hours after the clock start.
fn done(name: &str, prio: u8, start_h: f64, end_h: f64) -> SystemRow {
    let mut r = SystemRow::new(name, p(prio), p(prio).default_deadline().map(|d| d.num_seconds()), SystemState::Done);
    r.started_at = Some(t0() + Duration::seconds((start_h * H as f64) as i64));
    r.ended_at = Some(t0() + Duration::seconds((end_h * H as f64) as i64));
    r.snapshot = Some("a1b2c3d4e5f6".repeat(5));
    r.snapshot_time = Some(t0() - Duration::hours(6));
    r.bytes = Some(10 << 30);
    r.files = Some(1234);
    r.verification = Verification { result: VerifyResult::Ok, detail: Some("1234 files match".into()) };
    r.hooks = vec![
        HookOutcome {
            phase: HookStage::Pre,
            command: "systemctl stop x".into(),
            result: HookResult::Ok,
            attempts: 1,
            detail: None,
        },
        HookOutcome {
            phase: HookStage::Verify,
            command: "curl -f localhost".into(),
            result: HookResult::Ok,
            attempts: 3,
            detail: None,
        },
    ];
    r
}

/// An incident whose recovery missed exactly one deadline: `db` (priority 2) was
/// restored 26 h after the clock start, 2 h after its 24 h deadline.
fn one_missed() -> ReportFacts {
    let mut f = ReportFacts::new(ReportKind::Incident, "Ransomware on the file server", t0() + Duration::hours(48));
    f.incident_id = Some(7);
    f.run_id = Some(3);
    f.plan = Some("office".into());
    f.clock_start = Some(t0());
    let mut core = SystemRow::new("core", p(3), Some(0), SystemState::Unaffected);
    core.verification.detail = Some("never went down".into());
    f.systems = vec![
        core,
        done("web", 2, 0.5, 3.0),
        done("db", 2, 3.0, 26.0),
        done("files", 1, 26.0, 30.0),
        done("archive", 0, 30.0, 40.0),
    ];
    f.incident = Some(IncidentFacts {
        real: Some(true),
        discovered_at: Some(t0() + Duration::minutes(20)),
        down_since: Some(t0()),
        cause: Some("phishing mail".into()),
        board_report: true,
        cause_resolved_at: Some(t0() + Duration::minutes(30)),
        ..IncidentFacts::default()
    });
    f.timeline = vec![
        TimelineEntry {
            at: t0() + Duration::minutes(20),
            kind: "opened".into(),
            text: "incident opened".into(),
            hash: Some("ab".repeat(32)),
        },
        TimelineEntry {
            at: t0() + Duration::minutes(30),
            kind: "cause_resolved".into(),
            text: "cleaned".into(),
            hash: Some("cd".repeat(32)),
        },
    ];
    f
}

fn finalized(mut f: ReportFacts) -> ReportFacts {
    f.finalize();
    f
}

fn row<'a>(f: &'a ReportFacts, name: &str) -> &'a SystemRow {
    f.systems.iter().find(|r| r.name == name).unwrap()
}

// ---- arithmetic ----

#[test]
fn verdict_arithmetic() {
    use SystemState::*;
    // Priority 3, deadline 0: met only if it never went down.
    assert_eq!(deadline_verdict(Some(0), Unaffected, Some(0), Some(100)), (Verdict::Met, Some(0)));
    assert_eq!(deadline_verdict(Some(0), Done, Some(1), Some(100)), (Verdict::Missed, Some(-1)));
    // Priority 0: no deadline, whatever happened.
    assert_eq!(deadline_verdict(None, Done, Some(999_999), None), (Verdict::NoDeadline, None));
    assert_eq!(deadline_verdict(None, Failed, None, None), (Verdict::NoDeadline, None));
    // Exactly on the deadline is met, one second later is missed.
    assert_eq!(deadline_verdict(Some(86_400), Done, Some(86_400), None), (Verdict::Met, Some(0)));
    assert_eq!(deadline_verdict(Some(86_400), Done, Some(86_401), None), (Verdict::Missed, Some(-1)));
    assert_eq!(deadline_verdict(Some(86_400), Done, Some(3600), None), (Verdict::Met, Some(82_800)));
    // Not restored: missed.
    assert_eq!(deadline_verdict(Some(86_400), Failed, None, Some(10)), (Verdict::Missed, None));
    assert_eq!(deadline_verdict(Some(86_400), Skipped, None, Some(10)), (Verdict::Missed, None));
    // In progress: pending with time left, then missed once past the deadline.
    assert_eq!(deadline_verdict(Some(86_400), Restoring, None, Some(400)), (Verdict::Pending, Some(86_000)));
    assert_eq!(deadline_verdict(Some(86_400), Waiting, None, Some(90_000)), (Verdict::Missed, Some(-3600)));
    assert_eq!(deadline_verdict(Some(0), Restoring, None, Some(5)), (Verdict::Missed, Some(-5)));
    // Predicted.
    assert_eq!(deadline_verdict(Some(3600), Planned, Some(4000), None), (Verdict::Missed, Some(-400)));
}

#[test]
fn rows_derive_times_margin_and_rpo() {
    let f = finalized(one_missed());
    let db = row(&f, "db");
    assert_eq!(db.start_secs, Some(3 * H));
    assert_eq!(db.time_secs, Some(26 * H));
    assert_eq!(db.verdict, Verdict::Missed);
    assert_eq!(db.margin_secs, Some(-2 * H));
    assert_eq!(db.rpo_secs, Some(6 * H));
    assert_eq!(db.restore_secs, Some(23 * H));
    assert_eq!(db.throughput_bps, Some((10u64 << 30) / (23 * H) as u64));
    let web = row(&f, "web");
    assert_eq!((web.verdict, web.margin_secs), (Verdict::Met, Some(21 * H)));
    let core = row(&f, "core");
    assert_eq!((core.verdict, core.time_secs, core.margin_secs), (Verdict::Met, Some(0), Some(0)));
    let archive = row(&f, "archive");
    assert_eq!((archive.verdict, archive.margin_secs), (Verdict::NoDeadline, None));

    // A snapshot newer than the clock start lost nothing.
    let mut r = done("x", 2, 0.0, 1.0);
    r.snapshot_time = Some(t0() + Duration::minutes(5));
    compute::derive_row(&mut r, Some(t0()), t0() + Duration::hours(2));
    assert_eq!(r.rpo_secs, Some(0));

    // A predicted row keeps the forecast's times.
    let mut r = SystemRow::new("y", p(1), Some(72 * H), SystemState::Planned);
    r.predicted = true;
    r.start_secs = Some(H);
    r.time_secs = Some(80 * H);
    compute::derive_row(&mut r, Some(t0()), t0());
    assert_eq!(
        (r.start_secs, r.time_secs, r.verdict, r.margin_secs),
        (Some(H), Some(80 * H), Verdict::Missed, Some(-8 * H))
    );
}

#[test]
fn tier_summary_counts_and_extremes() {
    let mut rows = vec![
        SystemRow::new("a", p(3), Some(0), SystemState::Unaffected),
        done("b", 3, 0.0, 0.25),
        done("c", 2, 0.0, 5.0),
        done("d", 2, 1.0, 30.0),
        SystemRow::new("e", p(2), Some(24 * H), SystemState::Failed),
        SystemRow::new("f", p(2), Some(24 * H), SystemState::Skipped),
        done("g", 0, 0.0, 50.0),
    ];
    for r in &mut rows {
        compute::derive_row(r, Some(t0()), t0() + Duration::hours(60));
    }
    let tiers = tier_summary(&rows);
    let prios: Vec<u8> = tiers.iter().map(|t| t.priority.get()).collect();
    assert_eq!(prios, vec![3, 2, 0], "highest first, absent tier 1 left out");
    let t3 = &tiers[0];
    assert_eq!((t3.systems, t3.met, t3.missed, t3.verdict), (2, 1, 1, Verdict::Missed));
    assert_eq!(t3.worst_margin_secs, Some(-900));
    assert_eq!(t3.longest_time_secs, Some(900));
    assert_eq!(t3.deadline_secs, Some(0));
    let t2 = &tiers[1];
    assert_eq!((t2.systems, t2.met, t2.missed, t2.failed, t2.skipped), (4, 1, 3, 1, 1));
    assert_eq!(t2.worst_margin_secs, Some(-6 * H));
    assert_eq!(t2.longest_time_secs, Some(30 * H));
    let t0_ = &tiers[2];
    assert_eq!((t0_.systems, t0_.no_deadline, t0_.verdict, t0_.worst_margin_secs), (1, 1, Verdict::NoDeadline, None));
    assert_eq!(t0_.deadline_secs, None);

    let all = overall_summary(&rows);
    assert_eq!((all.systems, all.met, all.missed, all.no_deadline, all.verdict), (7, 2, 4, 1, Verdict::Missed));
    assert_eq!(all.longest_time_secs, Some(50 * H));
    assert!(tier_summary(&[]).is_empty());
}

#[test]
fn overall_verdict_pending_and_met() {
    let mut rows = vec![done("a", 2, 0.0, 1.0), SystemRow::new("b", p(1), Some(72 * H), SystemState::Restoring)];
    rows[1].started_at = Some(t0() + Duration::hours(1));
    for r in &mut rows {
        compute::derive_row(r, Some(t0()), t0() + Duration::hours(2));
    }
    let s = overall_summary(&rows);
    assert_eq!((s.verdict, s.met, s.pending), (Verdict::Pending, 1, 1));
    assert_eq!(rows[1].margin_secs, Some(70 * H));
    let s = overall_summary(&rows[..1]);
    assert_eq!(s.verdict, Verdict::Met);
}

fn entry(kind: EntryKind, id: i64, at: DateTime<Utc>, rows: Vec<SystemRow>) -> PeriodEntry {
    PeriodEntry {
        kind,
        id,
        run_id: Some(id * 10),
        title: format!("{} {id}", kind.as_str()),
        at,
        systems: rows,
        summary: Summary::default(),
        tiers: Vec::new(),
    }
}

/// Rows timed relative to `at` rather than t0.
fn shifted(mut r: SystemRow, at: DateTime<Utc>) -> SystemRow {
    let d = at - t0();
    r.started_at = r.started_at.map(|t| t + d);
    r.ended_at = r.ended_at.map(|t| t + d);
    r.snapshot_time = r.snapshot_time.map(|t| t + d);
    r
}

fn period() -> ReportFacts {
    let jan = Utc.with_ymd_and_hms(2025, 12, 20, 9, 0, 0).unwrap();
    let feb = Utc.with_ymd_and_hms(2026, 2, 3, 9, 0, 0).unwrap();
    let feb2 = Utc.with_ymd_and_hms(2026, 2, 25, 9, 0, 0).unwrap();
    let mut f = ReportFacts::new(ReportKind::Period, "Q1 review", Utc.with_ymd_and_hms(2026, 3, 31, 0, 0, 0).unwrap());
    f.period = Some(PeriodFacts {
        since: Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap(),
        until: Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
        entries: vec![
            entry(
                EntryKind::Drill,
                1,
                jan,
                vec![shifted(done("web", 2, 0.0, 2.0), jan), shifted(done("db", 2, 2.0, 25.0), jan)],
            ),
            entry(EntryKind::Incident, 4, feb, vec![shifted(done("web", 2, 0.0, 1.0), feb)]),
            entry(EntryKind::Drill, 2, feb2, vec![shifted(done("files", 1, 0.0, 10.0), feb2)]),
        ],
        trend: Vec::new(),
    });
    f
}

#[test]
fn trend_per_month_with_empty_months_and_year_boundary() {
    let f = finalized(period());
    let tr = &f.period.as_ref().unwrap().trend;
    let months: Vec<&str> = tr.iter().map(|t| t.month.as_str()).collect();
    // `until` (March 1st, midnight) is exclusive: March is not in the period.
    assert_eq!(months, vec!["2025-12", "2026-01", "2026-02"]);
    assert_eq!((tr[0].runs, tr[0].drills, tr[0].met, tr[0].missed), (1, 1, 1, 1));
    assert_eq!(tr[0].met_pct, Some(50.0));
    assert_eq!(tr[0].worst_margin_secs, Some(-H));
    assert_eq!((tr[1].runs, tr[1].met_pct, tr[1].worst_margin_secs), (0, None, None));
    assert_eq!((tr[2].runs, tr[2].incidents, tr[2].drills, tr[2].met, tr[2].missed), (2, 1, 1, 2, 0));
    assert_eq!(tr[2].met_pct, Some(100.0));
    assert_eq!(tr[2].worst_margin_secs, Some(23 * H));
    let one_more = trend(t0(), Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 1).unwrap(), &[]);
    assert_eq!(one_more.iter().map(|t| t.month.as_str()).collect::<Vec<_>>(), vec!["2026-03", "2026-04"]);
    // The period's own summary counts every entry's systems.
    assert_eq!((f.summary.systems, f.summary.met, f.summary.missed), (4, 3, 1));
    assert!(trend(t0(), t0() - Duration::days(1), &[]).is_empty());
}

#[test]
fn human_units() {
    assert_eq!(human_secs(0), "0 s");
    assert_eq!(human_secs(59), "59 s");
    assert_eq!(human_secs(60), "1 min");
    assert_eq!(human_secs(725), "12 min 5 s");
    assert_eq!(human_secs(3 * H + 20 * 60), "3 h 20 min");
    assert_eq!(human_secs(86_400), "24 h");
    assert_eq!(human_secs(52 * H + 60), "52 h 1 min");
    assert_eq!(human_secs(100 * H), "4 d 4 h");
    assert_eq!(human_secs(120 * H), "5 d");
    assert_eq!(human_secs(-7200), "-2 h");
    assert_eq!(margin_text(Verdict::Missed, Some(-7200)), "2 h late");
    assert_eq!(margin_text(Verdict::Met, Some(60)), "1 min early");
    assert_eq!(margin_text(Verdict::Met, Some(0)), "on time");
    assert_eq!(margin_text(Verdict::Pending, Some(60)), "1 min left");
}

// ---- renderers ----

#[test]
fn markdown_shows_the_missed_deadline() {
    let md = render(&one_missed(), Format::Markdown);
    let db = md.lines().find(|l| l.starts_with("| db |")).expect(&md);
    assert!(db.contains("| MISSED |"), "{db}");
    assert!(db.contains("2 h late"), "{db}");
    let web = md.lines().find(|l| l.starts_with("| web |")).unwrap();
    assert!(web.contains("| met |") && web.contains("21 h early"), "{web}");
    assert!(md.contains("**MISSED**: 1 of 4 deadlines missed (db (priority 2))"), "{md}");
    // Tier table: priority 2 missed once.
    let tier2 = md.lines().find(|l| l.starts_with("| 2 | 24 h |")).expect(&md);
    assert!(tier2.contains("| MISSED | 2 | 1 | 1 |"), "{tier2}");
    assert!(md.contains("## Timeline") && md.contains("cause_resolved"));
    assert!(md.contains("| Cause resolved at | 2026-03-10 08:30:00 UTC |"));
    assert!(md.contains("| Gate override | none |"));
}

#[test]
fn html_shows_the_missed_deadline() {
    let html = render(&one_missed(), Format::Html);
    assert!(html.contains(r#"<rect class="bar missed" data-system="db" data-verdict="missed""#), "gantt bar");
    assert!(html.contains(r#"<tr class="verdict-missed" data-system="db" data-verdict="missed">"#));
    assert!(html.contains(r#"<td class="result missed">MISSED</td>"#));
    assert!(html.contains(r#"id="verdict" class="overall verdict-missed">Overall: MISSED: 1 of 4 deadlines missed"#));
    assert_eq!(html.matches("<rect class=\"bar ").count(), 5, "one bar per system");
    assert_eq!(html.matches("<line class=\"deadline\"").count(), 4, "one marker per system with a deadline");
    // Priority 3's zero deadline sits at t = 0, the left edge of the plot.
    assert!(html.contains(r#"data-system="core" data-deadline-secs="0" x1="210.0""#), "{html}");
    assert!(html.contains(r#"<svg id="timeline""#) && html.contains(r#"<table id="systems""#));
    assert!(html.contains("@media print"));
    // Self-contained: nothing fetched, nothing run.
    for bad in ["<script", "src=", "href=", "@import", "url(http"] {
        assert!(!html.contains(bad), "{bad}");
    }
}

#[test]
fn json_shows_the_missed_deadline_and_round_trips() {
    let json = render(&one_missed(), Format::Json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["kind"], "incident");
    let db = v["systems"].as_array().unwrap().iter().find(|s| s["name"] == "db").unwrap();
    assert_eq!(db["verdict"], "missed");
    assert_eq!(db["margin_secs"], -7200);
    assert_eq!(db["time_secs"], 26 * H);
    assert_eq!(db["rpo_secs"], 6 * H);
    assert_eq!(db["priority"], 2);
    assert_eq!(db["deadline_secs"], 86_400);
    assert_eq!(db["predicted"], false);
    assert_eq!(db["verification"]["result"], "ok");
    let archive = v["systems"].as_array().unwrap().iter().find(|s| s["name"] == "archive").unwrap();
    assert_eq!(archive["verdict"], "none");
    assert_eq!(archive["deadline_secs"], serde_json::Value::Null);
    assert_eq!(v["summary"]["verdict"], "missed");
    assert_eq!(v["summary"]["missed"], 1);
    let t2 = v["tiers"].as_array().unwrap().iter().find(|t| t["priority"] == 2).unwrap();
    assert_eq!((t2["missed"].as_u64(), t2["met"].as_u64()), (Some(1), Some(1)));
    assert_eq!(v["incident"]["board_report"], true);
    assert_eq!(v["timeline"][0]["hash"], "ab".repeat(32));
    // Facts read back render the same report.
    let back = ReportFacts::from_json(&json).unwrap();
    assert_eq!(render(&back, Format::Json), json);
    assert_eq!(back, finalized(one_missed()));
    assert!(ReportFacts::from_json("{\"kind\": \"meeting\"}").is_err());
}

/// Splits CSV text into records (RFC 4180: quoted fields, doubled quotes, CRLF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut rec = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => rec.push(std::mem::take(&mut field)),
                '\r' => {}
                '\n' => {
                    rec.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut rec));
                }
                _ => field.push(c),
            }
        }
    }
    assert!(field.is_empty() && rec.is_empty(), "CSV ends with a line break");
    records
}

#[test]
fn csv_shows_the_missed_deadline() {
    let csv = render(&one_missed(), Format::Csv);
    let recs = parse_csv(&csv);
    assert_eq!(recs[0], COLUMNS.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    assert_eq!(recs.len(), 1 + 5);
    let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
    let db = recs.iter().find(|r| r[col("system")] == "db").unwrap();
    assert_eq!(db[col("verdict")], "missed");
    assert_eq!(db[col("margin_secs")], "-7200");
    assert_eq!(db[col("time_secs")], "93600");
    assert_eq!(db[col("deadline_secs")], "86400");
    assert_eq!(db[col("report_kind")], "incident");
    assert_eq!(db[col("entry_id")], "7");
    assert_eq!(db[col("started_at")], "2026-03-10T11:00:00Z");
    assert_eq!(db[col("hooks")], "pre ok, verify ok (3 attempts)");
    assert!(recs.iter().all(|r| r.len() == COLUMNS.len()));
    let missed: Vec<&str> =
        recs[1..].iter().filter(|r| r[col("verdict")] == "missed").map(|r| r[col("system")].as_str()).collect();
    assert_eq!(missed, vec!["db"]);
}

#[test]
fn csv_quoting() {
    assert_eq!(quote("plain"), "plain");
    assert_eq!(quote(""), "");
    assert_eq!(quote("a,b"), "\"a,b\"");
    assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(quote("two\nlines"), "\"two\nlines\"");
    assert_eq!(quote(" padded"), "\" padded\"");
    let mut f = one_missed();
    f.systems[2].name = "db, \"main\"\nreplica".into();
    f.systems[2].error = Some("disk full, retried".into());
    let recs = parse_csv(&render(&f, Format::Csv));
    assert_eq!(recs.len(), 6);
    assert_eq!(recs[3][4], "db, \"main\"\nreplica");
    assert_eq!(recs[3][COLUMNS.iter().position(|c| *c == "error").unwrap()], "disk full, retried");
}

#[test]
fn text_is_escaped_everywhere() {
    let mut f = one_missed();
    let evil = "<script>alert(\"x\")</script> & 'co' | `x`";
    f.title = evil.into();
    f.systems[2].name = evil.into();
    f.systems[2].error = Some(evil.into());
    f.incident.as_mut().unwrap().cause = Some(evil.into());
    f.timeline[0].text = evil.into();
    f.reviews.push(Review { at: t0(), text: evil.into(), actions: vec![evil.into()] });
    let html = render(&f, Format::Html);
    assert!(!html.contains("<script"), "raw tag in HTML");
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;"));
    assert!(
        html.contains(r#"data-system="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39; | `x`""#)
    );
    let md = render(&f, Format::Markdown);
    let bad: Vec<&str> = md.lines().filter(|l| l.replace("\\<", "").contains('<')).collect();
    assert!(bad.is_empty(), "unescaped < in Markdown: {bad:?}");
    // The system's row keeps its 15 cells: the pipe inside the name is escaped.
    let sys = md.lines().find(|l| l.starts_with("| ") && l.contains("alert") && l.contains("MISSED")).expect(&md);
    assert_eq!(sys.replace("\\|", "").matches('|').count(), 16, "{sys}");
    let json = render(&f, Format::Json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["systems"][2]["name"], evil);
}

#[test]
fn failed_and_skipped_systems_are_missed() {
    let mut f = one_missed();
    let mut mail = SystemRow::new("mail", p(1), Some(72 * H), SystemState::Failed);
    mail.started_at = Some(t0() + Duration::hours(4));
    mail.ended_at = Some(t0() + Duration::hours(5));
    mail.error = Some("restore error: pack abc is damaged".into());
    let mut wiki = SystemRow::new("wiki", p(1), Some(72 * H), SystemState::Skipped);
    wiki.error = Some("skipped: depends on mail, which failed".into());
    f.systems.push(mail);
    f.systems.push(wiki);
    let html = render(&f, Format::Html);
    assert!(html.contains(r#"<rect class="bar failed" data-system="mail" data-verdict="missed""#));
    assert!(html.contains(r#"<rect class="bar skipped" data-system="wiki" data-verdict="missed""#));
    assert_eq!(html.matches("<rect class=\"bar ").count(), 7);
    let v: serde_json::Value = serde_json::from_str(&render(&f, Format::Json)).unwrap();
    assert_eq!(v["summary"]["missed"], 3);
    assert_eq!(v["summary"]["failed"], 1);
    assert_eq!(v["summary"]["skipped"], 1);
    let md = render(&f, Format::Markdown);
    assert!(md.lines().any(|l| l.starts_with("| wiki |") && l.contains("MISSED") && l.contains("depends on mail")));
}

#[test]
fn forecast_figures_are_labelled_predicted() {
    let mut f = ReportFacts::new(ReportKind::Forecast, "Forecast for office", t0());
    f.clock_start = Some(t0());
    f.plan = Some("office".into());
    let mut a = SystemRow::new("db", p(2), Some(24 * H), SystemState::Planned);
    a.predicted = true;
    a.start_secs = Some(0);
    a.time_secs = Some(30 * H);
    a.bytes = Some(5 << 40);
    let mut b = SystemRow::new("web", p(2), Some(24 * H), SystemState::Planned);
    b.predicted = true;
    b.start_secs = Some(0);
    b.time_secs = Some(2 * H);
    f.systems = vec![a, b];
    let md = render(&f, Format::Markdown);
    assert!(md.contains("| 30 h (predicted) |"), "{md}");
    assert!(md.contains("| MISSED (predicted) |"));
    let html = render(&f, Format::Html);
    assert!(html.contains(r#"<rect class="bar missed predicted" data-system="db""#));
    assert!(html.contains("MISSED (predicted)"));
    let v: serde_json::Value = serde_json::from_str(&render(&f, Format::Json)).unwrap();
    assert_eq!(v["systems"][0]["predicted"], true);
    assert_eq!(v["systems"][0]["verdict"], "missed");
    assert_eq!(v["summary"]["predicted"], true);
    let recs = parse_csv(&render(&f, Format::Csv));
    assert_eq!(recs[1][COLUMNS.iter().position(|c| *c == "predicted").unwrap()], "true");
    assert_eq!(recs[1][COLUMNS.iter().position(|c| *c == "verdict").unwrap()], "missed");
}

#[test]
fn period_report_lists_entries_and_trend() {
    let f = period();
    let html = render(&f, Format::Html);
    assert!(html.contains(r#"<svg id="trend""#));
    assert!(html.contains(r#"<table id="entries">"#) && html.contains(r#"<table id="trend-table">"#));
    assert_eq!(html.matches("class=\"trend-bar\"").count(), 2, "two months had decided deadlines");
    assert!(!html.contains(r#"<svg id="gantt""#));
    let md = render(&f, Format::Markdown);
    assert!(md.contains("| drill | 1 | drill 1 | 2025-12-20 09:00:00 UTC | MISSED | P2: 1 met, 1 missed |"), "{md}");
    assert!(md.contains("| 2026-01 | 0 | 0 | 0 | 0 | 0 |  |  |"), "{md}");
    let recs = parse_csv(&render(&f, Format::Csv));
    assert_eq!(recs.len(), 1 + 4);
    assert_eq!(&recs[2][..5], &["period", "drill", "1", "10", "db"]);
    assert_eq!(recs[2][COLUMNS.iter().position(|c| *c == "verdict").unwrap()], "missed");
    let v: serde_json::Value = serde_json::from_str(&render(&f, Format::Json)).unwrap();
    assert_eq!(v["period"]["trend"][0]["met_pct"], 50.0);
    assert_eq!(v["period"]["entries"][0]["summary"]["verdict"], "missed");
}

#[test]
fn live_report_marks_pending_and_report_time() {
    let mut f = one_missed();
    f.generated_at = t0() + Duration::hours(10);
    let r = f.systems.iter_mut().find(|r| r.name == "db").unwrap();
    r.state = SystemState::Restoring;
    r.ended_at = None;
    let html = render(&f, Format::Html);
    assert!(html.contains(r#"<rect class="bar pending" data-system="db" data-verdict="pending""#));
    assert!(html.contains(r#"<line class="now""#));
    let v: serde_json::Value = serde_json::from_str(&render(&f, Format::Json)).unwrap();
    let db = v["systems"].as_array().unwrap().iter().find(|s| s["name"] == "db").unwrap();
    assert_eq!((db["verdict"].as_str(), db["margin_secs"].as_i64()), (Some("pending"), Some(14 * H)));
}

#[test]
fn formats_parse_and_reports_write() {
    assert_eq!("md".parse::<Format>().unwrap(), Format::Markdown);
    assert_eq!("HTML".parse::<Format>().unwrap(), Format::Html);
    assert_eq!("json".parse::<Format>().unwrap(), Format::Json);
    assert_eq!("csv".parse::<Format>().unwrap(), Format::Csv);
    let err = "pdf".parse::<Format>().unwrap_err().to_string();
    assert!(err.contains("use md, html, json or csv"), "{err}");
    assert!("exploded".parse::<SystemState>().is_err());
    assert_eq!("done".parse::<SystemState>().unwrap(), SystemState::Done);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.html");
    let n = write_report(&one_missed(), Format::Html, &out).unwrap();
    let body = std::fs::read_to_string(&out).unwrap();
    assert_eq!(n as usize, body.len());
    assert!(body.starts_with("<!DOCTYPE html>"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    let err = write_report(&one_missed(), Format::Html, &dir.path().join("missing/r.html")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn short_drill_gets_a_detail_chart() {
    let mut f = ReportFacts::new(ReportKind::Drill, "Quarterly drill", t0() + Duration::minutes(5));
    f.run_id = Some(9);
    f.clock_start = Some(t0());
    let mut rows = Vec::new();
    for (i, (name, prio)) in [("core", 3u8), ("web", 2), ("files", 1), ("archive", 0)].into_iter().enumerate() {
        let mut r =
            SystemRow::new(name, p(prio), p(prio).default_deadline().map(|d| d.num_seconds()), SystemState::Done);
        r.started_at = Some(t0() + Duration::seconds(10 * i as i64));
        r.ended_at = Some(t0() + Duration::seconds(10 * i as i64 + 8));
        rows.push(r);
    }
    f.systems = rows;
    let html = render(&f, Format::Html);
    let detail = &html[html.find(r#"<svg id="gantt-detail""#).expect("detail chart")..];
    let detail = &detail[..detail.find("</svg>").unwrap()];
    assert_eq!(detail.matches("<rect class=\"bar ").count(), 4);
    assert!(detail.contains("deadline 24 h →") && detail.contains("deadline 72 h →"), "{detail}");
    // Priority 3's zero deadline is inside the detail axis: drawn, and missed (8 s).
    assert_eq!(detail.matches(r#"<line class="deadline""#).count(), 1);
    assert!(detail.contains(r#"<rect class="bar missed" data-system="core""#));
    // The main chart still has every deadline marker.
    let main = &html[html.find(r#"<svg id="gantt""#).unwrap()..];
    assert_eq!(main[..main.find("</svg>").unwrap()].matches(r#"<line class="deadline""#).count(), 3);
    // A recovery that used a good part of its deadlines has no detail chart.
    assert!(!render(&one_missed(), Format::Html).contains("gantt-detail"));
}
