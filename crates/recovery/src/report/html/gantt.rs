//! The Gantt chart (`svg#gantt`, and `svg#gantt-detail` when the restores are
//! slivers on the deadlines' axis): one bar per system from the clock start, a
//! deadline tick per system, patterns so that it reads in black and white.

use super::*;

/// Patterns so that the bars read in black and white too.
pub(super) const PATTERNS: &str = r##"<defs>
<pattern id="pat-missed" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)"><rect width="8" height="8" fill="#c62828"/><line x1="0" y1="0" x2="0" y2="8" stroke="#000" stroke-width="3"/></pattern>
<pattern id="pat-failed" patternUnits="userSpaceOnUse" width="8" height="8"><rect width="8" height="8" fill="#6a1b9a"/><path d="M0 0L8 8M8 0L0 8" stroke="#fff" stroke-width="1.5"/></pattern>
<pattern id="pat-pending" patternUnits="userSpaceOnUse" width="6" height="6"><rect width="6" height="6" fill="#ef6c00"/><circle cx="3" cy="3" r="1.3" fill="#000"/></pattern>
<pattern id="pat-skipped" patternUnits="userSpaceOnUse" width="6" height="6"><rect width="6" height="6" fill="#fff"/><line x1="0" y1="3" x2="6" y2="3" stroke="#555" stroke-width="1"/></pattern>
</defs>"##;

pub(super) fn bar_kind(r: &SystemRow) -> &'static str {
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

pub(super) fn fill(kind: &str) -> &'static str {
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
pub(super) fn tick_step(max: i64) -> i64 {
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
pub(super) fn bar_end(r: &SystemRow, clock_start: Option<DateTime<Utc>>, elapsed: Option<i64>) -> Option<i64> {
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
pub(super) fn extents(f: &ReportFacts) -> (i64, i64) {
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

pub(super) fn elapsed(f: &ReportFacts) -> Option<i64> {
    f.clock_start.map(|c| (f.generated_at - c).num_seconds()).filter(|_| f.kind != ReportKind::Forecast)
}

/// True when the bars would be slivers on an axis long enough for the deadlines
/// (e.g. a drill of minutes against deadlines of days): then a second chart,
/// scaled to the restores, follows the first.
pub(super) fn needs_detail(f: &ReportFacts) -> bool {
    let (bars, deadlines) = extents(f);
    bars > 0 && bars * 5 < deadlines
}

/// The Gantt chart. `detail` scales the axis to the restores only: deadlines
/// beyond it are written at the right edge instead of drawn.
pub(super) fn gantt(out: &mut String, f: &ReportFacts, detail: bool) {
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
        let title = format!("{}: {}{}; {}", r.name, r.state.as_str(), note, crate::report::text::row_outcome(r));
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
            SystemState::Unaffected => format!("never went down · {}", crate::report::text::row_outcome(r)),
            _ => {
                let time = r.time_secs.map(|t| format!("{} · ", human_secs(t))).unwrap_or_default();
                format!("{time}{}", crate::report::text::row_outcome(r))
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
