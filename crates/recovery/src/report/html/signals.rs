//! The signal timeline (`section#signals`): per system, one SVG with the change rate
//! and the incompressible share of each judged snapshot, suspect snapshots marked
//! red, false positives grey and the clean point green. Each mark has a tooltip.

use super::*;
use crate::report::SignalSeries;

pub(super) fn section(out: &mut String, series: &[SignalSeries]) {
    if series.iter().all(|s| s.points.is_empty()) {
        return;
    }
    out.push_str("<section id=\"signals\" class=\"long\"><h2>Signals in the backups</h2>\n");
    out.push_str(
        "<p class=\"note\">Per snapshot: the share of files changed (solid) and of new data that is \
         incompressible (dashed). Red: suspect; grey: marked a false positive; green: the clean point.</p>\n",
    );
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let _ = writeln!(out, "<h3>{}</h3>", e(&s.system));
        svg(out, s);
    }
    out.push_str("</section>\n");
}

fn svg(out: &mut String, s: &SignalSeries) {
    const W: f64 = 1100.0;
    const H: f64 = 180.0;
    const PAD: f64 = 40.0;
    let n = s.points.len();
    let x = |i: usize| PAD + if n > 1 { (W - 2.0 * PAD) * i as f64 / (n - 1) as f64 } else { (W - 2.0 * PAD) / 2.0 };
    let y = |v: f64| H - PAD + (2.0 * PAD - H) * v.clamp(0.0, 1.0);
    let _ = write!(
        out,
        r#"<svg class="signals" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="Signal timeline of {}">"#,
        e(&s.system)
    );
    for (v, label) in [(0.0, "0%"), (0.5, "50%"), (1.0, "100%")] {
        let _ = write!(
            out,
            r##"<line class="grid" x1="{PAD}" y1="{yy:.1}" x2="{x2}" y2="{yy:.1}" stroke="#ddd"/><text class="axis" x="2" y="{ty:.1}">{label}</text>"##,
            yy = y(v),
            x2 = W - PAD,
            ty = y(v) + 4.0
        );
    }
    for (pick, dash) in [(0, ""), (1, r#" stroke-dasharray="5,4""#)] {
        let pts: Vec<String> = s
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(if pick == 0 { p.change_rate } else { p.incompressible })))
            .collect();
        let _ = write!(out, r##"<polyline fill="none" stroke="#357"{dash} points="{}"/>"##, pts.join(" "));
    }
    for (i, p) in s.points.iter().enumerate() {
        let (class, color) = match (p.suspect, p.false_positive, p.clean_point) {
            (_, _, true) => ("clean-point", "#2a2"),
            (true, false, _) => ("suspect", "#c22"),
            (true, true, _) => ("false-positive", "#999"),
            _ => ("snapshot", "#357"),
        };
        let r = if class == "snapshot" { 3.0 } else { 6.0 };
        let _ = write!(
            out,
            r#"<circle class="{class}" cx="{cx:.1}" cy="{cy:.1}" r="{r}" fill="{color}"><title>{}</title></circle>"#,
            e(&format!(
                "{} {}: {:.1}% of files changed, {:.0}% of new data incompressible{}",
                &p.snapshot[..8.min(p.snapshot.len())],
                time(p.time),
                p.change_rate * 100.0,
                p.incompressible * 100.0,
                match class {
                    "clean-point" => " (clean point)",
                    "suspect" => " (SUSPECT)",
                    "false-positive" => " (false positive)",
                    _ => "",
                }
            )),
            cx = x(i),
            cy = y(p.change_rate.max(p.incompressible))
        );
    }
    out.push_str("</svg>\n");
}
