//! The SVG timeline of events (`svg#timeline`) and a period's trend (`svg#trend`).

use super::*;

struct Event {
    at: DateTime<Utc>,
    kind: String,
    text: String,
    milestone: bool,
}

pub(super) fn timeline_svg(out: &mut String, f: &ReportFacts) {
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

pub(super) fn trend_svg(out: &mut String, trend: &[crate::report::TrendPoint]) {
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
