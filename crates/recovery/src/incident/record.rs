//! The complete record of an incident, as one self-contained document: the
//! standard's fields, the timeline (with its hash chain), the recovery results per
//! system, the review and the recurrence-prevention plan.

use serde::Serialize;

use super::{Entry, Incident};
use crate::human::human_secs;
use crate::orchestrate::deadline::Verdict;
use crate::orchestrate::queue::Phase;
use crate::state::recovery::{RunRecord, SystemRecord};

#[derive(Serialize)]
pub struct Record {
    pub incident: Incident,
    pub timeline: Vec<Entry>,
    pub recoveries: Vec<Recovery>,
    /// Whether the timeline's keyed chain verified, against its anchors, when the
    /// record was written.
    pub chain_verified: bool,
    /// The chain as verified: entry count, head MAC, anchors, findings. `None` when
    /// the repository (which holds the key and the anchors) could not be opened.
    pub chain: Option<super::chain::Verification>,
    /// Why the chain was not verified, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_unverified: Option<String>,
}

#[derive(Serialize)]
pub struct Recovery {
    pub run: RunRecord,
    pub systems: Vec<SystemRecord>,
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("(not recorded)")
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "(not recorded)",
    }
}

/// The standard's fields as "label: value" lines.
pub fn fields_text(i: &Incident) -> String {
    let f = &i.fields;
    let t = |v: Option<chrono::DateTime<chrono::Utc>>| v.map(rfc).unwrap_or_else(|| "(not recorded)".into());
    let real = match f.real {
        Some(true) => "real incident",
        Some(false) => "false alarm",
        None => "(not decided)",
    };
    let lines = [
        ("Incident", format!("{} — {}", i.id, i.title())),
        ("Status", serde_json::to_value(i.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()),
        ("Category", opt(&f.category).to_string()),
        ("Real or false alarm", real.to_string()),
        ("Discovered at", t(f.discovered_at)),
        ("Down since (incident clock)", rfc(i.clock_start())),
        ("Compromised since", t(f.compromised_since)),
        ("Scope", opt(&f.scope).to_string()),
        ("Damage", opt(&f.damage).to_string()),
        ("Cause", opt(&f.cause).to_string()),
        ("Response", opt(&f.response).to_string()),
        ("Outside attack (company is the victim)", yes_no(f.outside_attack).to_string()),
        ("Harm to outsiders", yes_no(f.harm_to_outsiders).to_string()),
        ("Report to the board", yes_no(i.report_to_board).to_string()),
        ("Cause resolved at", t(i.cause_resolved_at)),
        ("Closed at", t(i.closed_at)),
    ];
    lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
}

/// RFC 3339 to the second, UTC.
pub fn rfc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(r: &Record) -> String {
    let i = &r.incident;
    let mut out = format!(
        "# Incident {}: {}\n\n## The standard's fields\n\n| field | value |\n|---|---|\n",
        i.id,
        md_escape(i.title())
    );
    for line in fields_text(i).lines() {
        let (k, v) = line.split_once(": ").unwrap_or((line, ""));
        out += &format!("| {} | {} |\n", k, md_escape(v));
    }
    if let Some(reason) = i.gate_overrides.first() {
        out += &format!(
            "\n**The recovery gate was overridden** at {}: {}\n",
            reason.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            md_escape(&reason.1)
        );
    }
    out += "\n## Recovery results\n\n";
    if r.recoveries.is_empty() {
        out += "No recovery was run.\n";
    }
    for rec in &r.recoveries {
        out += &format!(
            "### Run {} — plan {} ({})\n\nClock start {}, started {}, ended {}.\n\n",
            rec.run.id,
            md_escape(&rec.run.plan_name),
            rec.run.status,
            rec.run.clock_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            rec.run.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            rec.run
                .ended_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "(running)".into())
        );
        out += "| system | priority | state | snapshot | deadline | back after | verdict | margin | verification | error |\n";
        out += "|---|---|---|---|---|---|---|---|---|---|\n";
        for s in &rec.systems {
            let back = s
                .ended_at
                .filter(|_| s.state == Phase::Done)
                .map(|e| human_secs((e - rec.run.clock_start).num_seconds()));
            let verify = s.verify.as_ref().map(|v| if v.ok { "ok" } else { "FAILED" }).unwrap_or("not run");
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                s.name,
                s.priority,
                s.state,
                s.snapshot.as_deref().map(|x| &x[..x.len().min(8)]).unwrap_or("-"),
                s.deadline_secs.map(human_secs).unwrap_or_else(|| "none".into()),
                back.unwrap_or_else(|| "-".into()),
                s.verdict
                    .map(|v| if v == Verdict::Missed { "**MISSED**".into() } else { v.to_string() })
                    .unwrap_or_else(|| "-".into()),
                s.margin_secs.map(human_secs).unwrap_or_else(|| "-".into()),
                verify,
                md_escape(s.error.as_deref().unwrap_or(""))
            );
        }
        out += "\n";
    }
    out += "## Post-incident review\n\n";
    if i.reviews.is_empty() {
        out += "Not recorded yet.\n";
    }
    for (at, findings, actions) in &i.reviews {
        out += &format!(
            "Recorded {}.\n\nFindings: {}\n\nActions:\n",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            findings
        );
        out += &actions.iter().map(|a| format!("- {a}\n")).collect::<String>();
        out += "\n";
    }
    out += "\n## Recurrence-prevention plan\n\n";
    if i.prevention_plans.is_empty() {
        out += "Not recorded yet.\n";
    }
    for (at, tech, org) in &i.prevention_plans {
        out += &format!("Recorded {}.\n\nTechnical measures:\n", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        out += &tech.iter().map(|a| format!("- {a}\n")).collect::<String>();
        out += "\nOrganizational measures:\n";
        out += &org.iter().map(|a| format!("- {a}\n")).collect::<String>();
        out += "\n";
    }
    out += "\n## Timeline\n\n";
    out += &chain_text(r);
    out += "\n| # | time | event | hash |\n|---|---|---|---|\n";
    for e in &r.timeline {
        out += &format!(
            "| {} | {} | {} | {} |\n",
            e.seq,
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            md_escape(&e.event.describe()),
            &e.hash[..16]
        );
    }
    out
}

/// The chain's verdict, count, head and anchors, as markdown lines.
fn chain_text(r: &Record) -> String {
    let Some(v) = &r.chain else {
        return format!(
            "Hash chain: **not verified**: {}.\n",
            r.chain_unverified.as_deref().unwrap_or("the repository could not be opened")
        );
    };
    let mut out = if r.chain_verified {
        "Hash chain: verified.\n".to_string()
    } else {
        "Hash chain: **BROKEN: the record was edited**.\n".to_string()
    };
    out += &format!(
        "\nEntries: {} ({} keyed, {} unkeyed, {} legacy). Head: `{}`.\n",
        v.entries, v.keyed, v.unkeyed, v.legacy, v.head
    );
    for (site, n) in &v.anchored {
        out += &format!("\nAnchored in {site}: {n} entries.\n");
    }
    for f in v.problems.iter().chain(&v.warnings) {
        out += &format!("\n- {}\n", md_escape(&f.message));
    }
    out
}
