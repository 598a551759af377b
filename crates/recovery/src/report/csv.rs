//! CSV: a header line, then one row per system (per incident or drill and system
//! for a period report). Columns are stable; see docs/REPORTS.md.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{ReportFacts, SystemRow};

/// The header, in order. Never reorder or rename (FORMAT_VERSION).
pub const COLUMNS: &[&str] = &[
    "report_kind",
    "entry_kind",
    "entry_id",
    "run_id",
    "system",
    "priority",
    "deadline_secs",
    "state",
    "predicted",
    "started_at",
    "ended_at",
    "start_secs",
    "time_secs",
    "verdict",
    "margin_secs",
    "snapshot",
    "snapshot_time",
    "rpo_secs",
    "bytes",
    "files",
    "restore_secs",
    "throughput_bps",
    "verification",
    "verification_detail",
    "hooks",
    "error",
    "confidence",
    "failover",
];

/// Quotes a field when it holds a comma, a quote, a line break, or leading or
/// trailing spaces (RFC 4180); quotes inside are doubled.
pub fn quote(field: &str) -> String {
    let needs = field.contains([',', '"', '\n', '\r'])
        || field.starts_with(' ')
        || field.ends_with(' ')
        || field.starts_with('\t')
        || field.ends_with('\t');
    if needs {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn ts(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)).unwrap_or_default()
}

fn num<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn row_fields(
    report_kind: &str,
    entry_kind: &str,
    entry_id: Option<i64>,
    run_id: Option<i64>,
    r: &SystemRow,
) -> Vec<String> {
    vec![
        report_kind.to_string(),
        entry_kind.to_string(),
        num(entry_id),
        num(run_id),
        r.name.clone(),
        r.priority.to_string(),
        num(r.deadline_secs),
        r.state.as_str().to_string(),
        r.predicted.to_string(),
        ts(r.started_at),
        ts(r.ended_at),
        num(r.start_secs),
        num(r.time_secs),
        r.verdict.as_str().to_string(),
        num(r.margin_secs),
        r.snapshot.clone().unwrap_or_default(),
        ts(r.snapshot_time),
        num(r.rpo_secs),
        num(r.bytes),
        num(r.files),
        num(r.restore_secs),
        num(r.throughput_bps),
        r.verification.result.as_str().to_string(),
        r.verification.detail.clone().unwrap_or_default(),
        r.hooks_summary(),
        r.error.clone().unwrap_or_default(),
        r.confidence.as_ref().map(|c| c.level.as_str().to_string()).unwrap_or_default(),
        r.failover.to_string(),
    ]
}

fn push_line(out: &mut String, fields: &[String]) {
    let line: Vec<String> = fields.iter().map(|f| quote(f)).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

/// Expects finalized facts.
pub(super) fn render(f: &ReportFacts) -> String {
    let mut out = String::new();
    push_line(&mut out, &COLUMNS.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    let kind = f.kind.as_str();
    match &f.period {
        Some(p) if f.kind == super::ReportKind::Period => {
            for e in &p.entries {
                for r in &e.systems {
                    push_line(&mut out, &row_fields(kind, e.kind.as_str(), Some(e.id), e.run_id, r));
                }
            }
        }
        _ => {
            let entry_id = f.incident_id.or(f.run_id);
            for r in &f.systems {
                push_line(&mut out, &row_fields(kind, kind, entry_id, f.run_id, r));
            }
        }
    }
    out
}
