//! Words and units shared by the renderers.

use chrono::{DateTime, Utc};

pub use crate::human::human_secs;

use super::{HookOutcome, HookResult, SystemRow, Verdict};

/// A deadline for people: "none", "0 (must not stop)", "24 h".
pub fn deadline_text(deadline_secs: Option<i64>) -> String {
    match deadline_secs {
        None => "none".into(),
        Some(0) => "0 (must not stop)".into(),
        Some(d) => human_secs(d),
    }
}

/// The margin in words: "2 h early", "35 min late", "on time", "5 h left".
pub fn margin_text(verdict: Verdict, margin_secs: Option<i64>) -> String {
    match (verdict, margin_secs) {
        (_, None) => String::new(),
        (Verdict::Pending, Some(m)) => format!("{} left", human_secs(m)),
        (_, Some(0)) => "on time".into(),
        (_, Some(m)) if m > 0 => format!("{} early", human_secs(m)),
        (_, Some(m)) => format!("{} late", human_secs(-m)),
    }
}

/// The verdict as shown in every format: "met", "MISSED", "pending", "no deadline",
/// with "(predicted)" when the figure is a forecast.
pub fn verdict_label(verdict: Verdict, predicted: bool) -> String {
    let base = match verdict {
        Verdict::Met => "met",
        Verdict::Missed => "MISSED",
        Verdict::Pending => "pending",
        Verdict::NoDeadline => "no deadline",
    };
    if predicted && verdict != Verdict::NoDeadline {
        format!("{base} (predicted)")
    } else {
        base.into()
    }
}

/// "MISSED, 2 h late" / "met, 23 h early" / "failed: MISSED" ...
pub fn row_outcome(row: &SystemRow) -> String {
    let label = verdict_label(row.verdict, row.predicted);
    let margin = margin_text(row.verdict, row.margin_secs);
    if margin.is_empty() {
        label
    } else {
        format!("{label}, {margin}")
    }
}

/// The columns of a forecast's confidence table (Markdown and HTML).
pub const CONFIDENCE_HEADER: &[&str] = &["System", "Confidence", "Learned from", "Why less sure"];

/// One row per system that carries a forecast confidence: name, level, what it
/// learned from, and its warnings joined. Empty for measured reports.
pub fn confidence_rows(rows: &[SystemRow]) -> Vec<[String; 4]> {
    rows.iter()
        .filter_map(|r| {
            let c = r.confidence.as_ref()?;
            Some([r.name.clone(), c.level.as_str().to_string(), c.learned_from(), c.warnings.join("; ")])
        })
        .collect()
}

pub fn hooks_summary(hooks: &[HookOutcome]) -> String {
    hooks
        .iter()
        .map(|h| {
            let mut s = format!("{} {}", h.phase, h.result.as_str());
            if h.attempts > 1 {
                s.push_str(&format!(" ({} attempts)", h.attempts));
            }
            if h.result != HookResult::Ok {
                if let Some(d) = h.detail.as_deref().filter(|d| !d.is_empty()) {
                    s.push_str(&format!(": {d}"));
                }
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "2026-11-26 01:46:50 UTC"
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_default()
}

/// "T+1 h 20 min" relative to the clock start ("T-5 min" before it).
pub fn relative(secs: i64) -> String {
    if secs < 0 {
        format!("T-{}", human_secs(-secs))
    } else {
        format!("T+{}", human_secs(secs))
    }
}

/// Bytes for people, or empty.
pub fn opt_bytes(b: Option<u64>) -> String {
    b.map(|b| kura_store::types::HumanBytes(b).to_string()).unwrap_or_default()
}

pub fn opt_secs(s: Option<i64>) -> String {
    s.map(human_secs).unwrap_or_default()
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
