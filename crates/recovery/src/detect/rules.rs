//! The detection rules: pure functions from a system's signal history to a verdict
//! per snapshot. No I/O, no clock. docs/DETECTION.md states the same rules in prose.
//!
//! Each system's own history is its baseline. For every metric, the baseline is the
//! median and the median absolute deviation (MAD, scaled by 1.4826 so that it
//! estimates a standard deviation) over the last `window` snapshots that are clean
//! or were marked false positives. A value is an outlier when it exceeds
//! `median + k * max(MAD, spread floor)`, and a rule fires only when the value also
//! passes the rule's absolute floor (so a quiet system does not alarm on a small
//! change) and exceeds every false-positive snapshot's value in the window by
//! `fp_margin` (so a change an operator called normal does not alarm again).
//! Nothing is judged before `min_history` comparable snapshots exist.

use kura_store::signals::Signals;
use serde::{Deserialize, Serialize};

/// The knobs of the rules; `Default` is what kura ships (docs/DETECTION.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Baseline: at most this many of the newest earlier snapshots.
    pub window: usize,
    /// Snapshots with signals needed before any verdict (a new system is `learning`).
    pub min_history: usize,
    /// How many (robust) standard deviations above the median is an outlier.
    pub k: f64,
    /// Floors of the rules.
    pub min_change_rate: f64,
    pub min_incompressible: f64,
    /// New data below this many bytes says nothing about entropy.
    pub min_new_bytes: u64,
    /// Files renamed with a new extension, or carrying a malware extension.
    pub min_files: u64,
    /// Share of the parent's files renamed with a new extension.
    pub min_ext_rate: f64,
    /// New files named like ransom notes.
    pub min_notes: u64,
    /// A false positive's value must be exceeded by this factor to alarm again.
    pub fp_margin: f64,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            window: 20,
            min_history: 5,
            k: 6.0,
            min_change_rate: 0.20,
            min_incompressible: 0.50,
            min_new_bytes: 64 * 1024,
            min_files: 10,
            min_ext_rate: 0.05,
            min_notes: 2,
            fp_margin: 1.5,
        }
    }
}

/// What fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleKind {
    /// Many files changed and the new data is incompressible (encrypted in place).
    EncryptedChange,
    /// Many files renamed to a new extension.
    ExtensionRenames,
    /// New files named like ransom notes.
    RansomNotes,
    /// New files with an extension encrypting malware appends.
    MalwareExtensions,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::EncryptedChange => "encrypted-change",
            RuleKind::ExtensionRenames => "extension-renames",
            RuleKind::RansomNotes => "ransom-notes",
            RuleKind::MalwareExtensions => "malware-extensions",
        }
    }
}

/// One fired rule with the figures behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub rule: RuleKind,
    /// The value that fired and the threshold it crossed.
    pub value: f64,
    pub threshold: f64,
    /// One line for people.
    pub detail: String,
}

/// The verdict of one snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// No signals recorded (an older kura, `--no-signals`, or the first snapshot).
    Unmeasured,
    /// Too little history to judge: `have` of `need` snapshots.
    Learning {
        have: usize,
        need: usize,
    },
    Clean,
    Suspect {
        reasons: Vec<Reason>,
    },
}

impl Verdict {
    pub fn is_suspect(&self) -> bool {
        matches!(self, Verdict::Suspect { .. })
    }
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Unmeasured => "unmeasured",
            Verdict::Learning { .. } => "learning",
            Verdict::Clean => "clean",
            Verdict::Suspect { .. } => "suspect",
        }
    }
}

/// One snapshot of a series as the rules see it.
#[derive(Clone, Debug)]
pub struct Point<'a> {
    pub signals: Option<&'a Signals>,
    /// An operator marked it a false positive: it joins the baseline whatever it scored.
    pub false_positive: bool,
}

/// The metrics the rules read, in one place.
#[derive(Clone, Copy, Debug, Default)]
struct Metrics {
    change: f64,
    incompressible: f64,
    ext_rate: f64,
    notes: f64,
    malware: f64,
}

impl Metrics {
    fn of(s: &Signals, rules: &Rules) -> Metrics {
        let entropy_counts = s.bytes_new >= rules.min_new_bytes;
        Metrics {
            change: s.change_rate(),
            incompressible: if entropy_counts { s.incompressible_share() } else { 0.0 },
            ext_rate: s.ext_changed as f64 / s.parent_files.max(1) as f64,
            notes: s.note_names as f64,
            malware: s.suspicious_ext as f64,
        }
    }
}

/// Verdicts for a series of one system, oldest first: each snapshot is judged
/// against the clean (or false-positive) snapshots before it.
pub fn assess_series(series: &[Point<'_>], rules: &Rules) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = Vec::with_capacity(series.len());
    // (metrics, was a false positive) of the baseline candidates so far.
    let mut base: Vec<(Metrics, bool)> = Vec::new();
    for p in series {
        let Some(s) = p.signals.filter(|s| s.has_parent) else {
            out.push(Verdict::Unmeasured);
            continue;
        };
        let m = Metrics::of(s, rules);
        let from = base.len().saturating_sub(rules.window);
        let verdict = judge(s, &m, &base[from..], rules);
        if !verdict.is_suspect() || p.false_positive {
            base.push((m, p.false_positive));
        }
        out.push(verdict);
    }
    out
}

fn judge(s: &Signals, m: &Metrics, base: &[(Metrics, bool)], rules: &Rules) -> Verdict {
    if base.len() < rules.min_history {
        return Verdict::Learning { have: base.len(), need: rules.min_history };
    }
    let limit = |pick: fn(&Metrics) -> f64, spread: f64, floor: f64| -> f64 {
        let values: Vec<f64> = base.iter().map(|(b, _)| pick(b)).collect();
        let (med, mad) = median_mad(&values);
        let fp = base.iter().filter(|(_, fp)| *fp).map(|(b, _)| pick(b) * rules.fp_margin).fold(0.0, f64::max);
        (med + rules.k * mad.max(spread)).max(floor).max(fp)
    };
    let mut reasons = Vec::new();
    let change = limit(|x| x.change, 0.02, rules.min_change_rate);
    let incompressible = limit(|x| x.incompressible, 0.05, rules.min_incompressible);
    if m.change > change && m.incompressible > incompressible {
        reasons.push(Reason {
            rule: RuleKind::EncryptedChange,
            value: m.change,
            threshold: change,
            detail: format!(
                "{:.0}% of the files changed (threshold {:.0}%) and {:.0}% of the new data is incompressible (threshold {:.0}%)",
                m.change * 100.0,
                change * 100.0,
                m.incompressible * 100.0,
                incompressible * 100.0
            ),
        });
    }
    let ext = limit(|x| x.ext_rate, 0.01, rules.min_ext_rate);
    if s.ext_changed >= rules.min_files && m.ext_rate > ext {
        reasons.push(Reason {
            rule: RuleKind::ExtensionRenames,
            value: m.ext_rate,
            threshold: ext,
            detail: format!(
                "{} files renamed to a new extension ({:.0}% of the files, threshold {:.0}%)",
                s.ext_changed,
                m.ext_rate * 100.0,
                ext * 100.0
            ),
        });
    }
    let notes = limit(|x| x.notes, 0.25, rules.min_notes as f64 - 0.5);
    if m.notes > notes {
        reasons.push(Reason {
            rule: RuleKind::RansomNotes,
            value: m.notes,
            threshold: notes,
            detail: format!("{} new files named like ransom notes", s.note_names),
        });
    }
    let malware = limit(|x| x.malware, 0.25, rules.min_files as f64 - 0.5);
    if m.malware > malware {
        reasons.push(Reason {
            rule: RuleKind::MalwareExtensions,
            value: m.malware,
            threshold: malware,
            detail: format!("{} new files with an extension ransomware uses", s.suspicious_ext),
        });
    }
    if reasons.is_empty() {
        Verdict::Clean
    } else {
        Verdict::Suspect { reasons }
    }
}

/// The median and the scaled MAD of `v` (0, 0 when empty).
pub fn median_mad(v: &[f64]) -> (f64, f64) {
    fn median(v: &mut [f64]) -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    let mut a = v.to_vec();
    let med = median(&mut a);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    (med, 1.4826 * median(&mut dev))
}
