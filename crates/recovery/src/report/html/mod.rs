//! HTML: one self-contained file (inline CSS and SVG, no script, no external
//! asset) with the verdict, the tier and system tables, an SVG timeline and an SVG
//! Gantt chart with deadline markers. Prints on A4 landscape, and reads in black and
//! white: results are spelled out and bars carry patterns, not only colours.
//!
//! Ids and classes are part of the contract the tests check: `svg#gantt` with one
//! `rect.bar` per system and one `line.deadline` per system with a deadline,
//! `table#systems`, `table#tiers`, `svg#timeline`, `svg#trend` (period reports).

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::markdown::missed_names;
use super::text::{
    self, deadline_text, html_escape as e, human_secs, margin_text, opt_bytes, opt_secs, opt_time, relative, time,
    truncate, verdict_label,
};
use super::{ReportFacts, ReportKind, SystemRow, SystemState, TierSummary, Verdict};

mod gantt;
mod signals;
mod timeline;

use gantt::{gantt, needs_detail, PATTERNS};
use timeline::{timeline_svg, trend_svg};

/// The stylesheet, inlined into every report (no external asset).
const CSS: &str = include_str!("style.css");

fn tier_table(out: &mut String, tiers: &[TierSummary], id: &str) {
    let _ = write!(
        out,
        r#"<table id="{id}"><thead><tr><th>Priority</th><th>Deadline</th><th>Result</th><th>Systems</th><th>Met</th><th>Missed</th><th>Pending</th><th>No deadline</th><th>Failed</th><th>Skipped</th><th>Worst margin</th><th>Longest time</th></tr></thead><tbody>"#
    );
    for t in tiers {
        let _ = write!(
            out,
            r#"<tr class="verdict-{v}"><td>{}</td><td>{}</td><td class="result {v}">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            t.priority,
            e(&deadline_text(t.deadline_secs)),
            e(&verdict_label(t.verdict, t.predicted)),
            t.systems,
            t.met,
            t.missed,
            t.pending,
            t.no_deadline,
            t.failed,
            t.skipped,
            e(&opt_secs(t.worst_margin_secs)),
            e(&opt_secs(t.longest_time_secs)),
            v = t.verdict.as_str(),
        );
    }
    out.push_str("</tbody></table>\n");
}

fn systems_table(out: &mut String, rows: &[SystemRow], id: &str) {
    let _ = write!(
        out,
        r#"<table id="{id}" class="systems"><thead><tr><th>System</th><th>Priority</th><th>Deadline</th><th>State</th><th>Time from clock start</th><th>Result</th><th>Margin</th><th>Snapshot</th><th>Data lost (RPO)</th><th>Bytes</th><th>Restore took</th><th>Verification</th><th>Hooks</th><th>Error</th><th>How</th></tr></thead><tbody>"#
    );
    for r in rows {
        let time = match r.time_secs {
            Some(t) if r.predicted => format!("{} (predicted)", human_secs(t)),
            Some(t) => human_secs(t),
            None => String::new(),
        };
        let snapshot = match (&r.snapshot, r.snapshot_time) {
            (Some(s), Some(t)) => format!("{}<br>{}", e(&s.chars().take(8).collect::<String>()), e(&time_str(t))),
            (Some(s), None) => e(&s.chars().take(8).collect::<String>()),
            (None, Some(t)) => e(&time_str(t)),
            (None, None) => String::new(),
        };
        let verify = match &r.verification.detail {
            Some(d) => format!("{}: {d}", r.verification.result.as_str()),
            None => r.verification.result.as_str().to_string(),
        };
        let _ = write!(
            out,
            r#"<tr class="verdict-{v}" data-system="{name}" data-verdict="{v}"><td>{name}</td><td class="num">{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="result {v}">{}</td><td class="num">{}</td><td class="snap">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="wrap">{}</td><td class="wrap">{}</td><td class="wrap err">{}</td><td class="how">{}</td></tr>"#,
            r.priority,
            e(&deadline_text(r.deadline_secs)),
            e(r.state.as_str()),
            e(&time),
            e(&verdict_label(r.verdict, r.predicted)),
            e(&margin_text(r.verdict, r.margin_secs)),
            snapshot,
            e(&opt_secs(r.rpo_secs)),
            e(&opt_bytes(r.bytes)),
            e(&opt_secs(r.restore_secs)),
            e(&verify),
            e(&r.hooks_summary()),
            e(r.error.as_deref().unwrap_or("")),
            r.how(),
            name = e(&r.name),
            v = r.verdict.as_str(),
        );
    }
    out.push_str("</tbody></table>\n");
}

/// "2026-05-04 07:10" (UTC), for table cells.
/// A forecast's confidence per system (nothing for measured reports).
fn confidence_table(out: &mut String, rows: &[SystemRow]) {
    let rows = text::confidence_rows(rows);
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"confidence-section\"><h2>Forecast confidence</h2>\n<table id=\"confidence\"><thead><tr>",
    );
    for h in text::CONFIDENCE_HEADER {
        let _ = write!(out, "<th>{}</th>", e(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for [name, level, learned, warnings] in rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"confidence-{}\">{}</td><td>{}</td><td>{}</td></tr>",
            e(&name),
            e(&level),
            e(&level),
            e(&learned),
            e(&warnings)
        );
    }
    out.push_str("</tbody></table></section>\n");
}

fn time_str(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

fn field(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", e(name), e(value));
}

pub(super) fn render(f: &ReportFacts) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta name=\"generator\" content=\"kura report format {}\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        f.format_version,
        e(&f.title)
    );
    let _ = write!(out, "<header><h1>{}</h1><p class=\"meta\">", e(&f.title));
    let mut meta = vec![f.kind.label().to_string(), format!("generated {}", time(f.generated_at))];
    if let Some(id) = f.incident_id {
        meta.push(format!("incident {id}"));
    }
    if let Some(id) = f.run_id {
        meta.push(format!("run {id}"));
    }
    if let Some(p) = &f.plan {
        meta.push(format!("plan {p}"));
    }
    if let Some(c) = f.clock_start {
        meta.push(format!("clock start {}", time(c)));
    }
    if let Some(p) = &f.period {
        meta.push(format!("from {} to {}", time(p.since), time(p.until)));
    }
    let _ = writeln!(out, "{}</p></header>", e(&meta.join(" · ")));

    // Summary.
    let s = &f.summary;
    out.push_str("<section id=\"summary\"><h2>Summary</h2>\n");
    if s.predicted {
        out.push_str("<p class=\"note\">Times marked <b>predicted</b> are a forecast, not a measurement.</p>\n");
    }
    let with_deadline = s.met + s.missed + s.pending;
    let sentence = match s.verdict {
        Verdict::Missed => format!(
            "Overall: MISSED: {} of {} deadlines missed ({})",
            s.missed,
            with_deadline,
            missed_names(f).join(", ")
        ),
        Verdict::Pending => format!("Overall: PENDING: {} met, {} still within their deadline", s.met, s.pending),
        Verdict::Met => format!("Overall: MET: all {} deadlines met", s.met),
        Verdict::NoDeadline => "Overall: no system in this report has a deadline".to_string(),
    };
    let sentence = if s.predicted { format!("{sentence} (predicted)") } else { sentence };
    let _ = writeln!(out, "<p id=\"verdict\" class=\"overall verdict-{}\">{}</p>", s.verdict.as_str(), e(&sentence));
    let mut facts = Vec::new();
    facts.push(format!("{} systems", s.systems));
    if s.failed > 0 {
        facts.push(format!("{} failed", s.failed));
    }
    if s.skipped > 0 {
        facts.push(format!("{} skipped", s.skipped));
    }
    if let Some(m) = s.worst_margin_secs {
        facts.push(format!("worst margin {}", human_secs(m)));
    }
    if let Some(t) = s.longest_time_secs {
        facts.push(format!("longest time to restore {}", human_secs(t)));
    }
    if let Some(r) = s.worst_rpo_secs {
        facts.push(format!("largest data loss (RPO) {}", human_secs(r)));
    }
    if s.bytes > 0 {
        facts.push(format!("{} restored", opt_bytes(Some(s.bytes))));
    }
    let _ = writeln!(out, "<p>{}</p>", e(&facts.join(" · ")));
    out.push_str("<h3>Per priority tier</h3>\n");
    tier_table(&mut out, &f.tiers, "tiers");
    out.push_str("</section>\n");

    if let Some(i) = &f.incident {
        out.push_str("<section id=\"incident\"><h2>Incident</h2><dl class=\"fields\">");
        let real = match i.real {
            Some(true) => "real incident",
            Some(false) => "false alarm",
            None => "not yet assessed",
        };
        field(&mut out, "Real or false alarm", real);
        field(&mut out, "Category", i.category.as_deref().unwrap_or(""));
        field(&mut out, "Opened", &opt_time(i.opened_at));
        field(&mut out, "Discovered at", &opt_time(i.discovered_at));
        field(&mut out, "Down since", &opt_time(i.down_since));
        field(&mut out, "Compromised since", &opt_time(i.compromised_since));
        field(&mut out, "Scope", i.scope.as_deref().unwrap_or(""));
        field(&mut out, "Damage", i.damage.as_deref().unwrap_or(""));
        field(&mut out, "Cause", i.cause.as_deref().unwrap_or(""));
        field(&mut out, "Response", i.response.as_deref().unwrap_or(""));
        field(&mut out, "Report to the board", if i.board_report { "yes" } else { "no" });
        field(&mut out, "Cause resolved at", &opt_time(i.cause_resolved_at));
        field(&mut out, "Cause resolution note", i.cause_note.as_deref().unwrap_or(""));
        match &i.gate_override {
            Some(g) => field(&mut out, "Gate override", &format!("{}: {}", time(g.at), g.reason)),
            None => field(&mut out, "Gate override", "none"),
        }
        field(&mut out, "Closed", &opt_time(i.closed_at));
        out.push_str("</dl></section>\n");
    }
    if let Some(r) = &f.run {
        out.push_str("<section id=\"run\"><h2>Run</h2><dl class=\"fields\">");
        field(&mut out, "Status", &r.status.to_string());
        field(&mut out, "Started", &time(r.started_at));
        field(&mut out, "Ended", &opt_time(r.ended_at));
        field(&mut out, "Restored from", r.from.as_deref().unwrap_or(""));
        field(&mut out, "Parallel", &r.parallel.map(|p| p.to_string()).unwrap_or_default());
        if let Some(sb) = &r.sandbox {
            field(&mut out, "Sandbox", sb);
        }
        out.push_str("</dl></section>\n");
    }

    if f.kind != ReportKind::Period {
        out.push_str("<section id=\"chart\"><h2>Recovery chart</h2>\n");
        if f.systems.is_empty() {
            out.push_str("<p>No system was recovered.</p>\n");
        } else {
            out.push_str("<p>One bar per system, from the start to the end of its restore, measured from the clock start. The black tick on each row is that system's deadline.</p>\n");
            gantt(&mut out, f, false);
            if needs_detail(f) {
                out.push_str("<p>The same restores on a shorter axis, since they took a small part of the time the deadlines allow:</p>\n");
                gantt(&mut out, f, true);
            }
        }
        out.push_str("</section>\n<section id=\"systems-section\" class=\"long\"><h2>Systems</h2>\n");
        systems_table(&mut out, &f.systems, "systems");
        out.push_str("</section>\n");
        confidence_table(&mut out, &f.systems);
    }

    if let Some(p) = &f.period {
        out.push_str("<section id=\"entries-section\" class=\"long\"><h2>Incidents and drills</h2>\n");
        out.push_str(r#"<table id="entries"><thead><tr><th>Kind</th><th>Id</th><th>Title</th><th>Clock start</th><th>Result</th><th>Per tier</th><th>Worst margin</th></tr></thead><tbody>"#);
        for en in &p.entries {
            let per_tier = en
                .tiers
                .iter()
                .map(|t| format!("P{}: {} met, {} missed", t.priority, t.met, t.missed))
                .collect::<Vec<_>>()
                .join("; ");
            let _ = write!(
                out,
                r#"<tr class="verdict-{v}"><td>{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td class="result {v}">{}</td><td>{}</td><td class="num">{}</td></tr>"#,
                en.kind.as_str(),
                en.id,
                e(&en.title),
                e(&time(en.at)),
                e(&verdict_label(en.summary.verdict, en.summary.predicted)),
                e(&per_tier),
                e(&opt_secs(en.summary.worst_margin_secs)),
                v = en.summary.verdict.as_str(),
            );
        }
        out.push_str("</tbody></table>\n");
        if p.entries.is_empty() {
            out.push_str("<p>No incident or drill in this period.</p>\n");
        }
        out.push_str("</section>\n<section id=\"trend-section\"><h2>Trend</h2>\n");
        trend_svg(&mut out, &p.trend);
        out.push_str(r#"<table id="trend-table"><thead><tr><th>Month</th><th>Runs</th><th>Incidents</th><th>Drills</th><th>Met</th><th>Missed</th><th>Met %</th><th>Worst margin</th></tr></thead><tbody>"#);
        for t in &p.trend {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                e(&t.month),
                t.runs,
                t.incidents,
                t.drills,
                t.met,
                t.missed,
                t.met_pct.map(|p| format!("{p:.0} %")).unwrap_or_default(),
                e(&opt_secs(t.worst_margin_secs)),
            );
        }
        out.push_str("</tbody></table>\n</section>\n");
        for (n, en) in p.entries.iter().filter(|en| !en.systems.is_empty()).enumerate() {
            let _ = writeln!(out, "<section class=\"long\"><h3>{} {}: {}</h3>", en.kind.as_str(), en.id, e(&en.title));
            systems_table(&mut out, &en.systems, &format!("systems-{}", n + 1));
            out.push_str("</section>\n");
        }
    }

    signals::section(&mut out, &f.signals);

    if !f.timeline.is_empty() || (f.clock_start.is_some() && f.kind != ReportKind::Forecast) {
        out.push_str("<section id=\"timeline-section\" class=\"long\"><h2>Timeline</h2>\n");
        timeline_svg(&mut out, f);
        if !f.timeline.is_empty() {
            out.push_str(r#"<table id="timeline-entries"><thead><tr><th>Time</th><th>From clock start</th><th>Kind</th><th>Entry</th><th>Hash</th></tr></thead><tbody>"#);
            for t in &f.timeline {
                let _ = write!(
                    out,
                    r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="wrap">{}</td><td class="hash">{}</td></tr>"#,
                    e(&time(t.at)),
                    e(&f.clock_start.map(|c| relative((t.at - c).num_seconds())).unwrap_or_default()),
                    e(&t.kind),
                    e(&t.text),
                    e(&t.hash.as_deref().map(|h| h.chars().take(16).collect::<String>()).unwrap_or_default()),
                );
            }
            out.push_str("</tbody></table>\n");
        }
        out.push_str("</section>\n");
    }

    for (n, r) in f.reviews.iter().enumerate() {
        let _ = write!(
            out,
            "<section class=\"review\"><h2>Review {} ({})</h2><p>{}</p>",
            n + 1,
            e(&time(r.at)),
            e(&r.text)
        );
        if !r.actions.is_empty() {
            out.push_str("<ul>");
            for a in &r.actions {
                let _ = write!(out, "<li>{}</li>", e(a));
            }
            out.push_str("</ul>");
        }
        out.push_str("</section>\n");
    }
    if let Some(pp) = f.incident.as_ref().and_then(|i| i.prevention_plan.as_ref()) {
        let _ = write!(
            out,
            "<section id=\"prevention\"><h2>Recurrence prevention plan ({})</h2><dl class=\"fields\">",
            e(&time(pp.at))
        );
        field(&mut out, "Technical", &pp.technical);
        field(&mut out, "Organizational", &pp.organizational);
        out.push_str("</dl></section>\n");
    }
    let _ = write!(
        out,
        "<footer>Produced by kura from its state database (report format {}). Deadlines count from the clock start; the margin is the deadline minus the time (positive = early); the data lost (RPO) is the restored snapshot's age at the clock start.</footer>\n</body>\n</html>\n",
        f.format_version
    );
    out
}
