//! Compliance reports (issue #7): would we have met, or did we meet, the
//! 0 / 24 h / 3-day deadlines?
//!
//! This module is pure. The caller (the CLI, reading the state database) builds a
//! [`ReportFacts`] from what was recorded; [`finalize`](ReportFacts::finalize)
//! derives every computed figure (times from the clock start, met/missed, margins,
//! RPO, tier summaries, the trend) from those facts; [`render`] turns the result
//! into Markdown, HTML, JSON or CSV. Nothing here reads a clock or the database:
//! "now" is the report's `generated_at`.
//!
//! Field names of the JSON and CSV outputs are stable and documented in
//! docs/REPORTS.md. Figures that are predicted (forecasts) carry `predicted: true`
//! and are labelled "predicted" in every format.

pub mod collect;
mod compute;
mod csv;
mod html;
mod markdown;
mod system;
#[cfg(test)]
mod tests;
mod text;

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::orchestrate::hooks::HookStage;
pub use crate::state::recovery::RunStatus;
use kura_store::types::Priority;

pub use crate::orchestrate::deadline::Verdict;
pub use compute::{deadline_verdict, overall_summary, tier_summary, trend};
pub use system::{HookOutcome, HookResult, SystemRow, SystemState, Verification, VerifyResult};
pub use text::{human_secs, margin_text};

/// The version of the JSON layout and CSV columns. Bumped only when a field is
/// renamed, removed or changes meaning; adding a field does not bump it.
pub const FORMAT_VERSION: u32 = 1;

fn format_version() -> u32 {
    FORMAT_VERSION
}

/// What the report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// A real incident and its recovery run.
    Incident,
    /// A drill: the plan restored into a sandbox, clock started at the drill's start.
    Drill,
    /// Every incident and drill between two dates, with the trend.
    Period,
    /// A forecast: predicted restore times, before any incident. Figures are predicted.
    Forecast,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Incident => "incident",
            ReportKind::Drill => "drill",
            ReportKind::Period => "period",
            ReportKind::Forecast => "forecast",
        }
    }
    fn label(self) -> &'static str {
        match self {
            ReportKind::Incident => "Incident report",
            ReportKind::Drill => "Drill report",
            ReportKind::Period => "Period report",
            ReportKind::Forecast => "Recovery forecast",
        }
    }
}

/// Everything a report shows, as recorded in the state database, plus the figures
/// kura derives from it (marked "computed": [`ReportFacts::finalize`] overwrites
/// them, and they may be left at their defaults on input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportFacts {
    /// [`FORMAT_VERSION`] of the layout.
    #[serde(default = "format_version")]
    pub format_version: u32,
    pub kind: ReportKind,
    pub title: String,
    /// When the report was produced; also "now" for systems still in progress.
    pub generated_at: DateTime<Utc>,
    /// The incident this report is about (incident reports).
    #[serde(default)]
    pub incident_id: Option<i64>,
    /// The recovery run or drill (`recovery_runs.id`).
    #[serde(default)]
    pub run_id: Option<i64>,
    /// The restoration plan's name.
    #[serde(default)]
    pub plan: Option<String>,
    /// Every deadline counts from here: the incident's down-since time, the drill's
    /// start, or the notional start of a forecast. None for period reports.
    #[serde(default)]
    pub clock_start: Option<DateTime<Utc>>,
    /// The recovery run or drill itself.
    #[serde(default)]
    pub run: Option<RunFacts>,
    /// The standard's incident fields (incident reports).
    #[serde(default)]
    pub incident: Option<IncidentFacts>,
    /// The incident's (or drill's) timeline, oldest first.
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    /// One row per system of the plan, in execution order.
    #[serde(default)]
    pub systems: Vec<SystemRow>,
    /// Post-incident reviews or drill reviews, oldest first.
    #[serde(default)]
    pub reviews: Vec<Review>,
    /// The incidents and drills of a period report.
    #[serde(default)]
    pub period: Option<PeriodFacts>,
    /// Computed: the overall verdict and counts.
    #[serde(default)]
    pub summary: Summary,
    /// Computed: one summary per priority tier present, 3 first.
    #[serde(default)]
    pub tiers: Vec<TierSummary>,
    /// Per system, the detection's verdicts over time: the HTML signal timeline.
    #[serde(default)]
    pub signals: Vec<SignalSeries>,
}

/// One system's snapshots as the detection judged them (crate::detect), oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalSeries {
    pub system: String,
    pub points: Vec<SignalPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalPoint {
    pub snapshot: String,
    pub time: DateTime<Utc>,
    /// Files changed over the parent's files.
    pub change_rate: f64,
    /// The incompressible share of the new data.
    pub incompressible: f64,
    pub suspect: bool,
    #[serde(default)]
    pub false_positive: bool,
    /// The clean point chosen (held from forget and prune).
    #[serde(default)]
    pub clean_point: bool,
}

/// A recovery run or drill as recorded in `recovery_runs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFacts {
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    /// Where the snapshots came from: local | remote.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub parallel: Option<u32>,
    /// The drill's sandbox directory.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// The standard's incident fields, and what happened at the gate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IncidentFacts {
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub opened_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    /// true = a real incident, false = a false alarm, None = not yet assessed.
    #[serde(default)]
    pub real: Option<bool>,
    #[serde(default)]
    pub discovered_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub down_since: Option<DateTime<Utc>>,
    /// Snapshots taken after this are never restored.
    #[serde(default)]
    pub compromised_since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub damage: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub response: Option<String>,
    /// Must be reported to the board (outside attack on the company, or harm to outsiders).
    #[serde(default)]
    pub board_report: bool,
    #[serde(default)]
    pub cause_resolved_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub cause_note: Option<String>,
    /// Set when recovery started before the cause was resolved (`--force --reason`).
    #[serde(default)]
    pub gate_override: Option<GateOverride>,
    #[serde(default)]
    pub prevention_plan: Option<PreventionPlan>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateOverride {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// The recurrence-prevention plan, in the standard's two parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreventionPlan {
    pub at: DateTime<Utc>,
    pub technical: String,
    pub organizational: String,
}

/// A post-incident review (findings) or a drill review (evaluation), with its actions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub at: DateTime<Utc>,
    pub text: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

/// One timeline entry. `hash` is the entry's blake3 chain hash (hex) when the
/// entry comes from the tamper-evident incident timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub text: String,
    #[serde(default)]
    pub hash: Option<String>,
}

/// The incidents and drills of a period report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodFacts {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Oldest first.
    #[serde(default)]
    pub entries: Vec<PeriodEntry>,
    /// Computed: one point per calendar month (UTC) from `since` to `until`.
    #[serde(default)]
    pub trend: Vec<TrendPoint>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Incident,
    Drill,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Incident => "incident",
            EntryKind::Drill => "drill",
        }
    }
}

/// One incident or drill of a period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodEntry {
    pub kind: EntryKind,
    /// The incident id, or the drill's run id.
    pub id: i64,
    /// The recovery run (incidents) or the drill run.
    #[serde(default)]
    pub run_id: Option<i64>,
    pub title: String,
    /// Its clock start (down-since, or the drill's start): its date in the period.
    pub at: DateTime<Utc>,
    /// Its systems, as in a single report; empty for an incident without recovery.
    #[serde(default)]
    pub systems: Vec<SystemRow>,
    /// Computed.
    #[serde(default)]
    pub summary: Summary,
    /// Computed.
    #[serde(default)]
    pub tiers: Vec<TierSummary>,
}

/// Counts and extremes over a set of systems.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// missed if any system missed; else pending if any is pending; else met if any
    /// deadline applied; else none.
    pub verdict: Verdict,
    pub systems: usize,
    pub met: usize,
    pub missed: usize,
    pub pending: usize,
    pub no_deadline: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Some figure is predicted.
    pub predicted: bool,
    /// The smallest margin (most negative = latest) among systems with a deadline.
    pub worst_margin_secs: Option<i64>,
    /// The largest time from the clock start until a system was restored.
    pub longest_time_secs: Option<i64>,
    /// The largest data loss (RPO) among the systems.
    pub worst_rpo_secs: Option<i64>,
    pub bytes: u64,
}

/// The summary of one priority tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierSummary {
    pub priority: Priority,
    /// The tier's deadline, when all its systems share one; else the tightest.
    pub deadline_secs: Option<i64>,
    pub verdict: Verdict,
    pub systems: usize,
    pub met: usize,
    pub missed: usize,
    pub pending: usize,
    pub no_deadline: usize,
    pub failed: usize,
    pub skipped: usize,
    pub predicted: bool,
    pub worst_margin_secs: Option<i64>,
    pub longest_time_secs: Option<i64>,
}

/// One month of a period's trend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    /// "YYYY-MM" (UTC).
    pub month: String,
    /// Incidents plus drills whose clock started that month.
    pub runs: usize,
    pub incidents: usize,
    pub drills: usize,
    /// Systems with a deadline that met or missed it.
    pub met: usize,
    pub missed: usize,
    /// met / (met + missed) x 100; None when no deadline was decided that month.
    pub met_pct: Option<f64>,
    pub worst_margin_secs: Option<i64>,
}

impl ReportFacts {
    /// A report with only its identity; fill the rest, then [`finalize`](Self::finalize).
    pub fn new(kind: ReportKind, title: impl Into<String>, generated_at: DateTime<Utc>) -> Self {
        ReportFacts {
            format_version: FORMAT_VERSION,
            kind,
            title: title.into(),
            generated_at,
            incident_id: None,
            run_id: None,
            plan: None,
            clock_start: None,
            run: None,
            incident: None,
            timeline: Vec::new(),
            systems: Vec::new(),
            reviews: Vec::new(),
            period: None,
            summary: Summary::default(),
            tiers: Vec::new(),
            signals: Vec::new(),
        }
    }

    /// Recomputes every computed field from the recorded facts. Idempotent;
    /// [`render`] calls it on a copy, so callers need not.
    pub fn finalize(&mut self) {
        self.format_version = FORMAT_VERSION;
        let now = self.generated_at;
        for row in &mut self.systems {
            compute::derive_row(row, self.clock_start, now);
        }
        if let Some(period) = &mut self.period {
            for entry in &mut period.entries {
                for row in &mut entry.systems {
                    compute::derive_row(row, Some(entry.at), now);
                }
                entry.summary = overall_summary(&entry.systems);
                entry.tiers = tier_summary(&entry.systems);
            }
            period.trend = trend(period.since, period.until, &period.entries);
        }
        // A period report sums up its entries; the others their own systems.
        let all: Vec<SystemRow> = match (&self.period, self.kind) {
            (Some(p), ReportKind::Period) => p.entries.iter().flat_map(|e| e.systems.iter().cloned()).collect(),
            _ => self.systems.clone(),
        };
        self.summary = overall_summary(&all);
        self.tiers = tier_summary(&all);
    }

    /// Reads facts from their JSON form (e.g. a saved report).
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::invalid("report JSON", e.to_string()))
    }
}

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Html,
    Json,
    Csv,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Markdown => "md",
            Format::Html => "html",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "md" | "markdown" => Ok(Format::Markdown),
            "html" | "htm" => Ok(Format::Html),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            _ => Err(Error::invalid("report format", format!("{s:?}: use md, html, json or csv"))),
        }
    }
}

/// The report as text in the given format. Computed fields are recomputed first.
pub fn render(facts: &ReportFacts, format: Format) -> String {
    let mut facts = facts.clone();
    facts.finalize();
    match format {
        Format::Markdown => markdown::render(&facts),
        Format::Html => html::render(&facts),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&facts).expect("report facts serialize to JSON");
            s.push('\n');
            s
        }
        Format::Csv => csv::render(&facts),
    }
}

/// Renders the report and writes it to `output` atomically (temporary file in the
/// same directory, fsync, rename). Returns the number of bytes written.
pub fn write_report(facts: &ReportFacts, format: Format, output: &Path) -> Result<u64> {
    use std::io::Write;
    let body = render(facts, format);
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = output
        .file_name()
        .ok_or_else(|| Error::invalid("report output", format!("{} is not a file path", output.display())))?;
    let tmp = dir.join(format!(".{}.kura-tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(body.as_bytes()).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, output).map_err(|e| Error::io(output, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| body.len() as u64)
}
