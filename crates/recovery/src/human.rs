//! Figures for people. One formatter per unit, so that a duration reads the same
//! in the CLI, the incident record, the reports and the forecast.

/// A duration for people: "0 s", "45 s", "12 min 5 s", "3 h 20 min", "72 h", "5 d 4 h".
/// Hours up to 100 h, so that the standard's 24 h and 72 h read as such.
/// Negative durations get a leading minus.
pub fn human_secs(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    let body = if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        let (m, r) = (s / 60, s % 60);
        if r == 0 {
            format!("{m} min")
        } else {
            format!("{m} min {r} s")
        }
    } else if s < 100 * 3600 {
        let (h, m) = (s / 3600, (s % 3600) / 60);
        if m == 0 {
            format!("{h} h")
        } else {
            format!("{h} h {m} min")
        }
    } else {
        let (d, h) = (s / 86_400, (s % 86_400) / 3600);
        if h == 0 {
            format!("{d} d")
        } else {
            format!("{d} d {h} h")
        }
    };
    format!("{sign}{body}")
}
