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
    deadline_text, html_escape as e, human_secs, margin_text, opt_bytes, opt_secs, opt_time, relative, time, truncate,
    verdict_label,
};
use super::{ReportFacts, ReportKind, SystemRow, SystemState, TierSummary, Verdict};

const CSS: &str = r#"
:root { --met: #2e7d32; --missed: #c62828; --failed: #6a1b9a; --pending: #ef6c00; --none: #78909c; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #111; margin: 24px auto;
  max-width: 1160px; padding: 0 16px; line-height: 1.4; font-size: 14px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; border-bottom: 2px solid #333; padding-bottom: 2px; margin-top: 1.6em; }
h3 { font-size: 1.05em; }
.meta { color: #444; margin: 0 0 12px; }
.note { border-left: 4px solid #555; padding: 4px 10px; background: #f4f4f4; }
.overall { font-size: 1.2em; padding: 8px 12px; border: 3px solid #333; display: inline-block; }
.overall.verdict-missed { border-style: double; border-width: 6px; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 0.92em; }
th, td { border: 1px solid #999; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #e8e8e8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.wrap { max-width: 320px; overflow-wrap: break-word; }
td.err { min-width: 140px; }
td.snap { white-space: nowrap; font-size: 0.95em; }
table.systems { width: 100%; font-size: 0.85em; }
.verdict-met .result { color: var(--met); font-weight: bold; }
.verdict-missed .result, td.result.missed { color: var(--missed); font-weight: bold; text-decoration: underline; }
.verdict-pending .result { color: var(--pending); font-weight: bold; }
tr.verdict-missed td:first-child { border-left: 5px solid var(--missed); }
tr.verdict-met td:first-child { border-left: 5px solid var(--met); }
.hash { font-family: "DejaVu Sans Mono", monospace; font-size: 0.85em; color: #555; }
svg { max-width: 100%; height: auto; display: block; margin: 6px 0 12px; }
svg text { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 12px; fill: #111; }
svg .axis text { font-size: 11px; fill: #333; }
svg .grid { stroke: #ddd; stroke-width: 1; }
svg .bar { stroke: #111; stroke-width: 1; }
svg .bar.predicted { stroke-dasharray: 4 2; fill-opacity: 0.6; }
svg .deadline { stroke: #000; stroke-width: 3; }
svg .now { stroke: #1565c0; stroke-width: 1.5; stroke-dasharray: 6 3; }
svg .clock { stroke: #000; stroke-width: 1.5; }
svg .spine { stroke: #555; stroke-width: 2; }
svg .label-missed { font-weight: bold; fill: var(--missed); }
svg .label-met { fill: var(--met); }
dl.fields { display: grid; grid-template-columns: 220px 1fr; gap: 2px 12px; }
dl.fields dt { font-weight: bold; }
dl.fields dd { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
footer { margin-top: 2em; color: #666; font-size: 0.85em; }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { margin: 0; max-width: none; padding: 0; font-size: 10pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  section { break-inside: avoid-page; page-break-inside: avoid; }
  section.long { break-inside: auto; page-break-inside: auto; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  tr, svg { break-inside: avoid; page-break-inside: avoid; }
  thead { display: table-header-group; }
  a { color: inherit; text-decoration: none; }
}
"#;

/// Patterns so that the bars read in black and white too.
const PATTERNS: &str = r##"<defs>
<pattern id="pat-missed" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)"><rect width="8" height="8" fill="#c62828"/><line x1="0" y1="0" x2="0" y2="8" stroke="#000" stroke-width="3"/></pattern>
<pattern id="pat-failed" patternUnits="userSpaceOnUse" width="8" height="8"><rect width="8" height="8" fill="#6a1b9a"/><path d="M0 0L8 8M8 0L0 8" stroke="#fff" stroke-width="1.5"/></pattern>
<pattern id="pat-pending" patternUnits="userSpaceOnUse" width="6" height="6"><rect width="6" height="6" fill="#ef6c00"/><circle cx="3" cy="3" r="1.3" fill="#000"/></pattern>
<pattern id="pat-skipped" patternUnits="userSpaceOnUse" width="6" height="6"><rect width="6" height="6" fill="#fff"/><line x1="0" y1="3" x2="6" y2="3" stroke="#555" stroke-width="1"/></pattern>
</defs>"##;

fn bar_kind(r: &SystemRow) -> &'static str {
    match r.state {
        SystemState::Failed => "failed",
        SystemState::Skipped => "skipped",
        _ => match r.verdict {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::Pending => "pending",
            Verdict::NoDeadline => "nodeadline",
        },
    }
}

fn fill(kind: &str) -> &'static str {
    match kind {
        "met" => "#2e7d32",
        "missed" => "url(#pat-missed)",
        "failed" => "url(#pat-failed)",
        "pending" => "url(#pat-pending)",
        "skipped" => "url(#pat-skipped)",
        _ => "#b0bec5",
    }
}

/// A tick step giving at most about 8 ticks over `max` seconds.
fn tick_step(max: i64) -> i64 {
    const STEPS: &[i64] = &[
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800,
        259_200, 604_800, 1_209_600, 2_592_000,
    ];
    for &s in STEPS {
        if max / s <= 8 {
            return s;
        }
    }
    let last = *STEPS.last().expect("non-empty");
    (max / 8 / last + 1) * last
}

/// Where a row's bar ends, in seconds from the clock start, if anywhere.
fn bar_end(r: &SystemRow, clock_start: Option<DateTime<Utc>>, elapsed: Option<i64>) -> Option<i64> {
    if let Some(t) = r.time_secs {
        return Some(t);
    }
    if let (Some(c), Some(end)) = (clock_start, r.ended_at) {
        return Some((end - c).num_seconds());
    }
    if r.state.in_progress() && r.start_secs.is_some() {
        return elapsed;
    }
    None
}

/// The latest bar end (or start) and, separately, the latest deadline, in seconds
/// from the clock start.
fn extents(f: &ReportFacts) -> (i64, i64) {
    let elapsed = elapsed(f);
    let mut bars = 0i64;
    let mut deadlines = 0i64;
    for r in &f.systems {
        bars = bars.max(bar_end(r, f.clock_start, elapsed).unwrap_or(0));
        bars = bars.max(r.start_secs.unwrap_or(0));
        deadlines = deadlines.max(r.deadline_secs.unwrap_or(0));
    }
    if f.systems.iter().any(|r| r.state.in_progress()) {
        bars = bars.max(elapsed.unwrap_or(0));
    }
    (bars, deadlines)
}

fn elapsed(f: &ReportFacts) -> Option<i64> {
    f.clock_start.map(|c| (f.generated_at - c).num_seconds()).filter(|_| f.kind != ReportKind::Forecast)
}

/// True when the bars would be slivers on an axis long enough for the deadlines
/// (e.g. a drill of minutes against deadlines of days): then a second chart,
/// scaled to the restores, follows the first.
fn needs_detail(f: &ReportFacts) -> bool {
    let (bars, deadlines) = extents(f);
    bars > 0 && bars * 5 < deadlines
}

/// The Gantt chart. `detail` scales the axis to the restores only: deadlines
/// beyond it are written at the right edge instead of drawn.
fn gantt(out: &mut String, f: &ReportFacts, detail: bool) {
    let rows = &f.systems;
    let elapsed = elapsed(f);
    let any_running = rows.iter().any(|r| r.state.in_progress());
    let (bars, deadlines) = extents(f);
    // The detail axis leaves room at its end for the "deadline … →" notes.
    let max = if detail { bars.max(10) * 13 / 10 } else { bars.max(deadlines).max(60) };
    let step = tick_step(max);
    let axis_max = (max + max / 25 + step - 1) / step * step;
    let axis_max = axis_max.max(step);

    const W: f64 = 1100.0;
    const LABEL_W: f64 = 210.0;
    const RIGHT_W: f64 = 300.0;
    const TOP: f64 = 44.0;
    const ROW_H: f64 = 30.0;
    let plot_w = W - LABEL_W - RIGHT_W;
    let x = |secs: i64| LABEL_W + plot_w * (secs.clamp(0, axis_max) as f64) / axis_max as f64;
    let plot_bottom = TOP + ROW_H * rows.len() as f64;
    let h = plot_bottom + 70.0;

    let (id, what) = if detail {
        ("gantt-detail", "scaled to the restores; deadlines beyond the axis are written at its end")
    } else {
        ("gantt", "with a deadline marker per system")
    };
    let _ = write!(
        out,
        r#"<svg id="{id}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="Gantt chart: one bar per system from the start to the end of its restore, measured from the clock start, {what}">"#
    );
    if !detail {
        out.push_str(PATTERNS);
    }
    // Axis: ticks and grid.
    out.push_str(r#"<g class="axis">"#);
    let mut t = 0;
    while t <= axis_max {
        let xt = x(t);
        let label = if t == 0 { "0".to_string() } else { human_secs(t) };
        let _ = write!(
            out,
            r#"<line class="grid" x1="{xt:.1}" y1="{y1}" x2="{xt:.1}" y2="{plot_bottom}"/><text x="{xt:.1}" y="{ty}" text-anchor="middle">{}</text>"#,
            e(&label),
            y1 = TOP - 6.0,
            ty = TOP - 10.0,
        );
        t += step;
    }
    let _ = write!(
        out,
        r#"<text x="{LABEL_W}" y="14" text-anchor="start">time from the clock start{}</text>"#,
        f.clock_start.map(|c| format!(" ({})", e(&time(c)))).unwrap_or_default()
    );
    out.push_str("</g>");
    let x0 = x(0);
    let _ =
        write!(out, r#"<line class="clock" x1="{x0:.1}" y1="{y1}" x2="{x0:.1}" y2="{plot_bottom}"/>"#, y1 = TOP - 6.0);

    for (i, r) in rows.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let kind = bar_kind(r);
        let pred = if r.predicted { " predicted" } else { "" };
        let _ = write!(
            out,
            r#"<g class="row" data-system="{}"><text x="6" y="{ty:.1}">{} (P{})</text>"#,
            e(&r.name),
            e(&truncate(&r.name, 24)),
            r.priority,
            ty = y + 19.0,
        );
        let end = bar_end(r, f.clock_start, elapsed);
        let (bx, bw, note) = match (r.start_secs, end) {
            (Some(s), Some(en)) => {
                let (a, b) = (x(s), x(en.max(s)));
                (a, (b - a).max(3.0), String::new())
            }
            (None, Some(en)) => {
                let b = x(en);
                (x(0), (b - x(0)).max(3.0), String::new())
            }
            (Some(s), None) => (x(s), 3.0, String::new()),
            (None, None) => (x(0), 5.0, format!(" ({})", r.state.as_str())),
        };
        let title = format!("{}: {}{}; {}", r.name, r.state.as_str(), note, super::text::row_outcome(r));
        let _ = write!(
            out,
            r#"<rect class="bar {kind}{pred}" data-system="{}" data-verdict="{}" x="{bx:.1}" y="{by:.1}" width="{bw:.1}" height="16" fill="{}"><title>{}</title></rect>"#,
            e(&r.name),
            r.verdict.as_str(),
            fill(kind),
            e(&title),
            by = y + 7.0,
        );
        if let Some(d) = r.deadline_secs.filter(|d| detail && *d > axis_max) {
            let _ = write!(
                out,
                r#"<text class="deadline-beyond" x="{tx:.1}" y="{ty:.1}" text-anchor="end">deadline {} →</text>"#,
                e(&deadline_text(Some(d))),
                tx = W - RIGHT_W - 4.0,
                ty = y + 19.0,
            );
        } else if let Some(d) = r.deadline_secs {
            let xd = x(d);
            let _ = write!(
                out,
                r##"<line class="deadline" data-system="{}" data-deadline-secs="{d}" x1="{xd:.1}" y1="{y1:.1}" x2="{xd:.1}" y2="{y2:.1}"><title>deadline {}</title></line><path d="M{a:.1} {y1:.1}L{b:.1} {y1:.1}L{xd:.1} {tip:.1}Z" fill="#000"/>"##,
                e(&r.name),
                e(&deadline_text(Some(d))),
                y1 = y + 3.0,
                y2 = y + ROW_H - 3.0,
                a = xd - 4.0,
                b = xd + 4.0,
                tip = y + 8.0,
            );
        }
        let outcome = match r.state {
            SystemState::Failed | SystemState::Skipped => {
                let v = verdict_label(r.verdict, r.predicted);
                if r.verdict == Verdict::NoDeadline {
                    r.state.as_str().to_string()
                } else {
                    format!("{}: {v}", r.state.as_str())
                }
            }
            SystemState::Unaffected => format!("never went down · {}", super::text::row_outcome(r)),
            _ => {
                let time = r.time_secs.map(|t| format!("{} · ", human_secs(t))).unwrap_or_default();
                format!("{time}{}", super::text::row_outcome(r))
            }
        };
        let cls = match r.verdict {
            Verdict::Missed => "label-missed",
            Verdict::Met => "label-met",
            _ => "label",
        };
        let _ = write!(
            out,
            r#"<text class="{cls}" x="{tx:.1}" y="{ty:.1}">{}</text></g>"#,
            e(&truncate(&outcome, 44)),
            tx = W - RIGHT_W + 8.0,
            ty = y + 19.0,
        );
    }
    if let (true, Some(el)) = (any_running, elapsed) {
        let xn = x(el);
        let _ = write!(
            out,
            r#"<line class="now" x1="{xn:.1}" y1="{y1}" x2="{xn:.1}" y2="{plot_bottom}"/><text x="{xn:.1}" y="{ty}" text-anchor="middle">report time</text>"#,
            y1 = TOP - 6.0,
            ty = plot_bottom + 14.0,
        );
    }
    // Legend.
    let ly = plot_bottom + 34.0;
    let mut lx = 10.0;
    let legend: &[(&str, &str)] = &[
        ("met", "met"),
        ("missed", "MISSED"),
        ("failed", "failed"),
        ("skipped", "skipped"),
        ("pending", "pending"),
        ("nodeadline", "no deadline"),
    ];
    out.push_str(r#"<g class="legend">"#);
    for (kind, label) in legend {
        let _ = write!(
            out,
            r##"<rect x="{lx}" y="{ly}" width="22" height="12" fill="{}" stroke="#111"/><text x="{tx}" y="{ty}">{label}</text>"##,
            fill(kind),
            tx = lx + 27.0,
            ty = ly + 11.0,
        );
        lx += 40.0 + 8.0 * label.len() as f64;
    }
    let _ = write!(
        out,
        r##"<line x1="{a}" y1="{ly}" x2="{a}" y2="{y2}" stroke="#000" stroke-width="3"/><text x="{tx}" y="{ty}">deadline</text>"##,
        a = lx + 6.0,
        y2 = ly + 14.0,
        tx = lx + 14.0,
        ty = ly + 11.0,
    );
    lx += 90.0;
    let _ = write!(
        out,
        r##"<rect x="{lx}" y="{ly}" width="22" height="12" fill="#2e7d32" fill-opacity="0.6" stroke="#111" stroke-dasharray="4 2"/><text x="{tx}" y="{ty}">predicted</text>"##,
        tx = lx + 27.0,
        ty = ly + 11.0,
    );
    out.push_str("</g></svg>\n");
}

struct Event {
    at: DateTime<Utc>,
    kind: String,
    text: String,
    milestone: bool,
}

fn timeline_svg(out: &mut String, f: &ReportFacts) {
    let mut events: Vec<Event> = f
        .timeline
        .iter()
        .map(|t| Event { at: t.at, kind: t.kind.clone(), text: t.text.clone(), milestone: false })
        .collect();
    if let Some(c) = f.clock_start {
        events.push(Event {
            at: c,
            kind: "clock start".into(),
            text: "deadlines count from here".into(),
            milestone: true,
        });
        let mut deadlines: Vec<(i64, u8)> =
            f.systems.iter().filter_map(|r| r.deadline_secs.map(|d| (d, r.priority.get()))).collect();
        deadlines.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        deadlines.dedup_by_key(|d| d.0);
        for (d, p) in deadlines {
            events.push(Event {
                at: c + chrono::Duration::seconds(d),
                kind: "deadline".into(),
                text: format!("deadline {} (priority {p})", deadline_text(Some(d))),
                milestone: true,
            });
        }
    }
    if events.is_empty() {
        return;
    }
    events.sort_by_key(|ev| ev.at);
    const W: f64 = 1100.0;
    const ROW_H: f64 = 24.0;
    const TOP: f64 = 14.0;
    const SPINE: f64 = 330.0;
    let h = TOP * 2.0 + ROW_H * events.len() as f64;
    let _ = write!(
        out,
        r#"<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="Timeline of the events, oldest first">"#
    );
    let _ = write!(out, r#"<line class="spine" x1="{SPINE}" y1="{TOP}" x2="{SPINE}" y2="{y2}"/>"#, y2 = h - TOP);
    for (i, ev) in events.iter().enumerate() {
        let y = TOP + ROW_H * i as f64 + ROW_H / 2.0;
        let cls = if ev.milestone { "event milestone" } else { "event" };
        let _ = write!(
            out,
            r#"<g class="{cls}"><text x="4" y="{ty:.1}" class="axis">{}</text>"#,
            e(&time(ev.at)),
            ty = y + 4.0
        );
        if let Some(c) = f.clock_start {
            let _ = write!(
                out,
                r#"<text x="{rx}" y="{ty:.1}" text-anchor="end">{}</text>"#,
                e(&relative((ev.at - c).num_seconds())),
                rx = SPINE - 14.0,
                ty = y + 4.0
            );
        }
        if ev.milestone {
            let _ = write!(
                out,
                r##"<path d="M{SPINE} {a:.1}L{r:.1} {y:.1}L{SPINE} {b:.1}L{l:.1} {y:.1}Z" fill="#fff" stroke="#000" stroke-width="2"/>"##,
                a = y - 7.0,
                b = y + 7.0,
                r = SPINE + 7.0,
                l = SPINE - 7.0
            );
        } else {
            let _ = write!(out, r##"<circle cx="{SPINE}" cy="{y:.1}" r="5" fill="#111"/>"##);
        }
        let weight = if ev.milestone { r#" font-style="italic""# } else { "" };
        let _ = write!(
            out,
            r#"<text x="{tx}" y="{ty:.1}"{weight}><tspan font-weight="bold">{}</tspan> {}</text></g>"#,
            e(&truncate(&ev.kind, 24)),
            e(&truncate(&ev.text.replace(['\n', '\r'], " "), 100)),
            tx = SPINE + 16.0,
            ty = y + 4.0
        );
    }
    out.push_str("</svg>\n");
}

fn trend_svg(out: &mut String, trend: &[super::TrendPoint]) {
    if trend.is_empty() {
        return;
    }
    const H: f64 = 220.0;
    const TOP: f64 = 20.0;
    const PLOT_H: f64 = 140.0;
    let col = 70.0;
    let w = 60.0 + col * trend.len() as f64;
    let _ = write!(
        out,
        r#"<svg id="trend" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {H}" width="{w}" height="{H}" role="img" aria-label="Share of deadlines met per month">"#
    );
    out.push_str(PATTERNS);
    out.push_str(r#"<g class="axis">"#);
    for pct in [0, 50, 100] {
        let y = TOP + PLOT_H * (1.0 - pct as f64 / 100.0);
        let _ = write!(
            out,
            r#"<line class="grid" x1="50" y1="{y}" x2="{w}" y2="{y}"/><text x="44" y="{ty}" text-anchor="end">{pct} %</text>"#,
            ty = y + 4.0
        );
    }
    out.push_str("</g>");
    for (i, p) in trend.iter().enumerate() {
        let x = 60.0 + col * i as f64;
        if let Some(pct) = p.met_pct {
            let bh = PLOT_H * pct / 100.0;
            let _ = write!(
                out,
                r##"<rect class="trend-bar" x="{x}" y="{y:.1}" width="{bw}" height="{bh:.1}" fill="#2e7d32" stroke="#111"><title>{} met</title></rect>"##,
                e(&format!("{pct:.0} %")),
                y = TOP + PLOT_H - bh,
                bw = col - 20.0
            );
            if p.missed > 0 {
                let _ = write!(
                    out,
                    r#"<text class="label-missed" x="{tx}" y="{ty}" text-anchor="middle">{} missed</text>"#,
                    p.missed,
                    tx = x + (col - 20.0) / 2.0,
                    ty = TOP + PLOT_H + 30.0
                );
            }
        }
        let _ = write!(
            out,
            r#"<text x="{tx}" y="{ty}" text-anchor="middle">{}</text><text x="{tx}" y="{ty2}" text-anchor="middle">{} run{}</text>"#,
            e(&p.month),
            p.runs,
            if p.runs == 1 { "" } else { "s" },
            tx = x + (col - 20.0) / 2.0,
            ty = TOP + PLOT_H + 14.0,
            ty2 = TOP + PLOT_H + 46.0
        );
    }
    out.push_str("</svg>\n");
}

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
        r#"<table id="{id}" class="systems"><thead><tr><th>System</th><th>Priority</th><th>Deadline</th><th>State</th><th>Time from clock start</th><th>Result</th><th>Margin</th><th>Snapshot</th><th>Data lost (RPO)</th><th>Bytes</th><th>Restore took</th><th>Verification</th><th>Hooks</th><th>Error</th></tr></thead><tbody>"#
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
            r#"<tr class="verdict-{v}" data-system="{name}" data-verdict="{v}"><td>{name}</td><td class="num">{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="result {v}">{}</td><td class="num">{}</td><td class="snap">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="wrap">{}</td><td class="wrap">{}</td><td class="wrap err">{}</td></tr>"#,
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
            name = e(&r.name),
            v = r.verdict.as_str(),
        );
    }
    out.push_str("</tbody></table>\n");
}

/// "2026-05-04 07:10" (UTC), for table cells.
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
