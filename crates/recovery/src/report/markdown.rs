//! Markdown: headings, tables per tier and per system, the timeline.

use std::fmt::Write;

use super::text::{
    self, deadline_text, html_escape, human_secs, margin_text, opt_bytes, opt_secs, opt_time, relative, time,
    verdict_label,
};
use super::{ReportFacts, ReportKind, SystemRow, TierSummary, Verdict};

/// Makes text safe inside a table cell: no line breaks, no pipes, no raw HTML
/// or code spans.
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '|' | '<' | '>' | '`' | '*' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", header.iter().map(|_| "---|").collect::<String>());
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

fn verdict_sentence(f: &ReportFacts) -> String {
    let s = &f.summary;
    let with_deadline = s.met + s.missed + s.pending;
    let pred = if s.predicted { " (predicted)" } else { "" };
    match s.verdict {
        Verdict::Missed => {
            let names: Vec<String> = missed_names(f);
            format!(
                "**MISSED**{pred}: {} of {} deadlines missed ({}).",
                s.missed,
                with_deadline,
                cell(&names.join(", "))
            )
        }
        Verdict::Pending => format!("**PENDING**{pred}: {} met, {} still within their deadline.", s.met, s.pending),
        Verdict::Met => format!("**MET**{pred}: all {} deadlines met.", s.met),
        Verdict::NoDeadline => "No system in this report has a deadline.".into(),
    }
}

pub(super) fn missed_names(f: &ReportFacts) -> Vec<String> {
    let mut names = Vec::new();
    let mut add = |prefix: String, rows: &[SystemRow]| {
        for r in rows.iter().filter(|r| r.verdict == Verdict::Missed) {
            names.push(format!("{prefix}{} (priority {})", r.name, r.priority));
        }
    };
    match (&f.period, f.kind) {
        (Some(p), ReportKind::Period) => {
            for e in &p.entries {
                add(format!("{} {}: ", e.kind.as_str(), e.id), &e.systems);
            }
        }
        _ => add(String::new(), &f.systems),
    }
    names
}

fn tier_rows(tiers: &[TierSummary]) -> Vec<Vec<String>> {
    tiers
        .iter()
        .map(|t| {
            vec![
                t.priority.to_string(),
                deadline_text(t.deadline_secs),
                verdict_label(t.verdict, t.predicted),
                t.systems.to_string(),
                t.met.to_string(),
                t.missed.to_string(),
                t.pending.to_string(),
                t.no_deadline.to_string(),
                t.failed.to_string(),
                t.skipped.to_string(),
                opt_secs(t.worst_margin_secs),
                opt_secs(t.longest_time_secs),
            ]
        })
        .collect()
}

const TIER_HEADER: &[&str] = &[
    "Priority",
    "Deadline",
    "Result",
    "Systems",
    "Met",
    "Missed",
    "Pending",
    "No deadline",
    "Failed",
    "Skipped",
    "Worst margin",
    "Longest time",
];

fn time_cell(r: &SystemRow) -> String {
    match r.time_secs {
        Some(t) if r.predicted => format!("{} (predicted)", human_secs(t)),
        Some(t) => human_secs(t),
        None => String::new(),
    }
}

fn system_rows(rows: &[SystemRow]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            let verify = match &r.verification.detail {
                Some(d) => format!("{}: {d}", r.verification.result.as_str()),
                None => r.verification.result.as_str().to_string(),
            };
            vec![
                r.name.clone(),
                r.priority.to_string(),
                deadline_text(r.deadline_secs),
                r.state.as_str().to_string(),
                time_cell(r),
                verdict_label(r.verdict, r.predicted),
                margin_text(r.verdict, r.margin_secs),
                r.snapshot.as_deref().map(|s| s.chars().take(8).collect()).unwrap_or_default(),
                opt_time(r.snapshot_time),
                opt_secs(r.rpo_secs),
                opt_bytes(r.bytes),
                verify,
                r.hooks_summary(),
                r.error.clone().unwrap_or_default(),
                r.how().to_string(),
            ]
        })
        .collect()
}

const SYSTEM_HEADER: &[&str] = &[
    "System",
    "Priority",
    "Deadline",
    "State",
    "Time from clock start",
    "Result",
    "Margin",
    "Snapshot",
    "Snapshot taken",
    "Data lost (RPO)",
    "Bytes",
    "Verification",
    "Hooks",
    "Error",
    "How",
];

pub(super) fn render(f: &ReportFacts) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", cell(&f.title));
    let mut meta = vec![format!("{}", f.kind.label()), format!("generated {}", time(f.generated_at))];
    if let Some(id) = f.incident_id {
        meta.push(format!("incident {id}"));
    }
    if let Some(id) = f.run_id {
        meta.push(format!("run {id}"));
    }
    if let Some(p) = &f.plan {
        meta.push(format!("plan {}", cell(p)));
    }
    if let Some(c) = f.clock_start {
        meta.push(format!("clock start {}", time(c)));
    }
    if let Some(p) = &f.period {
        meta.push(format!("from {} to {}", time(p.since), time(p.until)));
    }
    let _ = writeln!(out, "{}\n", meta.join(" · "));
    if f.summary.predicted {
        out.push_str("> Times marked *predicted* are a forecast, not a measurement.\n\n");
    }

    out.push_str("## Verdict\n\n");
    let _ = writeln!(out, "{}\n", verdict_sentence(f));

    out.push_str("## Summary per priority tier\n\n");
    table(&mut out, TIER_HEADER, &tier_rows(&f.tiers));

    if let Some(i) = &f.incident {
        out.push_str("## Incident\n\n");
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        let real = match i.real {
            Some(true) => "real incident".to_string(),
            Some(false) => "false alarm".to_string(),
            None => "not yet assessed".to_string(),
        };
        let mut rows = vec![
            vec!["Real or false alarm".into(), real],
            vec!["Category".into(), i.category.clone().unwrap_or_default()],
            vec!["Opened".into(), opt_time(i.opened_at)],
            vec!["Discovered at".into(), opt_time(i.discovered_at)],
            vec!["Down since".into(), opt_time(i.down_since)],
            vec!["Compromised since".into(), opt_time(i.compromised_since)],
            vec!["Scope".into(), i.scope.clone().unwrap_or_default()],
            vec!["Damage".into(), i.damage.clone().unwrap_or_default()],
            vec!["Cause".into(), i.cause.clone().unwrap_or_default()],
            vec!["Response".into(), i.response.clone().unwrap_or_default()],
            vec!["Report to the board".into(), yes_no(i.board_report)],
            vec!["Cause resolved at".into(), opt_time(i.cause_resolved_at)],
            vec!["Cause resolution note".into(), i.cause_note.clone().unwrap_or_default()],
        ];
        match &i.gate_override {
            Some(g) => rows.push(vec!["Gate override".into(), format!("{}: {}", time(g.at), g.reason)]),
            None => rows.push(vec!["Gate override".into(), "none".into()]),
        }
        rows.push(vec!["Closed".into(), opt_time(i.closed_at)]);
        table(&mut out, &["Field", "Value"], &rows);
    }

    if let Some(r) = &f.run {
        out.push_str("## Run\n\n");
        let rows = vec![
            vec!["Status".into(), r.status.to_string()],
            vec!["Started".into(), time(r.started_at)],
            vec!["Ended".into(), opt_time(r.ended_at)],
            vec!["Restored from".into(), r.from.clone().unwrap_or_default()],
            vec!["Parallel".into(), r.parallel.map(|p| p.to_string()).unwrap_or_default()],
            vec!["Sandbox".into(), r.sandbox.clone().unwrap_or_default()],
        ];
        table(&mut out, &["Field", "Value"], &rows);
    }

    if f.kind != ReportKind::Period {
        out.push_str("## Systems\n\n");
        if f.systems.is_empty() {
            out.push_str("No system was recovered.\n\n");
        } else {
            table(&mut out, SYSTEM_HEADER, &system_rows(&f.systems));
        }
        let rows = text::confidence_rows(&f.systems);
        if !rows.is_empty() {
            out.push_str("## Forecast confidence\n\n");
            table(
                &mut out,
                text::CONFIDENCE_HEADER,
                &rows.into_iter().map(|r| r.map(|c| cell(&c)).to_vec()).collect::<Vec<_>>(),
            );
        }
    }

    if let Some(p) = &f.period {
        out.push_str("## Incidents and drills\n\n");
        let rows: Vec<Vec<String>> = p
            .entries
            .iter()
            .map(|e| {
                let per_tier = e
                    .tiers
                    .iter()
                    .map(|t| format!("P{}: {} met, {} missed", t.priority, t.met, t.missed))
                    .collect::<Vec<_>>()
                    .join("; ");
                vec![
                    e.kind.as_str().to_string(),
                    e.id.to_string(),
                    e.title.clone(),
                    time(e.at),
                    verdict_label(e.summary.verdict, e.summary.predicted),
                    per_tier,
                    opt_secs(e.summary.worst_margin_secs),
                ]
            })
            .collect();
        if rows.is_empty() {
            out.push_str("No incident or drill in this period.\n\n");
        } else {
            table(&mut out, &["Kind", "Id", "Title", "Clock start", "Result", "Per tier", "Worst margin"], &rows);
        }
        for e in p.entries.iter().filter(|e| !e.systems.is_empty()) {
            let _ = writeln!(out, "### {} {}: {}\n", e.kind.as_str(), e.id, cell(&e.title));
            table(&mut out, SYSTEM_HEADER, &system_rows(&e.systems));
        }
        out.push_str("## Trend\n\n");
        let rows: Vec<Vec<String>> = p
            .trend
            .iter()
            .map(|t| {
                vec![
                    t.month.clone(),
                    t.runs.to_string(),
                    t.incidents.to_string(),
                    t.drills.to_string(),
                    t.met.to_string(),
                    t.missed.to_string(),
                    t.met_pct.map(|p| format!("{p:.0} %")).unwrap_or_default(),
                    opt_secs(t.worst_margin_secs),
                ]
            })
            .collect();
        table(&mut out, &["Month", "Runs", "Incidents", "Drills", "Met", "Missed", "Met %", "Worst margin"], &rows);
    }

    if !f.timeline.is_empty() {
        out.push_str("## Timeline\n\n");
        let rows: Vec<Vec<String>> = f
            .timeline
            .iter()
            .map(|e| {
                vec![
                    time(e.at),
                    f.clock_start.map(|c| relative((e.at - c).num_seconds())).unwrap_or_default(),
                    e.kind.clone(),
                    e.text.clone(),
                    e.hash.as_deref().map(|h| h.chars().take(16).collect()).unwrap_or_default(),
                ]
            })
            .collect();
        table(&mut out, &["Time", "From clock start", "Kind", "Entry", "Hash"], &rows);
    }

    for (n, r) in f.reviews.iter().enumerate() {
        let _ = writeln!(out, "## Review {} ({})\n", n + 1, time(r.at));
        let _ = writeln!(out, "{}\n", html_escape(&r.text));
        for a in &r.actions {
            let _ = writeln!(out, "- {}", html_escape(a));
        }
        if !r.actions.is_empty() {
            out.push('\n');
        }
    }
    if let Some(pp) = f.incident.as_ref().and_then(|i| i.prevention_plan.as_ref()) {
        let _ = writeln!(out, "## Recurrence prevention plan ({})\n", time(pp.at));
        let _ = writeln!(out, "**Technical:** {}\n", html_escape(&pp.technical));
        let _ = writeln!(out, "**Organizational:** {}\n", html_escape(&pp.organizational));
    }
    let _ = writeln!(out, "---\nkura report format {}", f.format_version);
    out
}
