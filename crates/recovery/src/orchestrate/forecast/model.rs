//! The restore cost model: what a restore costs grows with its bytes, with the
//! files and directories it makes and with the pack objects it reads, not only
//! with bytes (pure, no I/O).
//!
//! `restore time = fixed + bytes * per_byte + (files + dirs) * per_file + objects * per_object`
//!
//! [`fit`] learns the four costs from every drill of the plan (a least-squares fit
//! pulled towards [`Costs::PRIOR`], never negative), and [`predict`] anchors a
//! system on its own drills: each drill's measured time scaled by the model's
//! cost of the data now over its cost of the data the drill restored. Unchanged
//! data predicts the drill's time exactly, three times the bytes about three
//! times the time, and 20,000 more small files add about 20,000 per-file costs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a restore does: bytes written, files and directories made, pack objects read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Shape {
    pub bytes: u64,
    pub files: u64,
    pub dirs: u64,
    pub objects: u64,
}

/// One drill of a system: the shape it restored and the restore's seconds.
/// `dirs` and `objects` are `None` in drills recorded before they were.
#[derive(Clone, Debug, PartialEq)]
pub struct Drill {
    pub bytes: u64,
    pub files: u64,
    pub dirs: Option<u64>,
    pub objects: Option<u64>,
    pub secs: f64,
    pub at: DateTime<Utc>,
}

/// Seconds per unit of each cost.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Costs {
    /// Per restore (open the snapshot, plan it).
    pub fixed_secs: f64,
    pub secs_per_byte: f64,
    /// Per file or directory made (create, write, set metadata, verify).
    pub secs_per_file: f64,
    /// Per pack object read.
    pub secs_per_object: f64,
}

impl Costs {
    /// What is assumed before any drill: 250 µs per file, restored and verified
    /// (the median of five restores of 20,000 small files on a busy 2-core VM,
    /// docs/PERFORMANCE.md, "Forecasts that hold when the data changes"); the
    /// conservative 50 MiB/s of [`super::DEFAULT_THROUGHPUT`]; 1 ms per pack;
    /// 50 ms per restore. Drills replace these by what they measure.
    pub const PRIOR: Costs = Costs {
        fixed_secs: 0.05,
        secs_per_byte: 1.0 / super::DEFAULT_THROUGHPUT,
        secs_per_file: 2.5e-4,
        secs_per_object: 1e-3,
    };

    /// The prior with a given byte rate (bytes per second; ignored unless positive and finite).
    pub fn with_throughput(self, bytes_per_sec: f64) -> Costs {
        if bytes_per_sec.is_finite() && bytes_per_sec > 0.0 {
            Costs { secs_per_byte: 1.0 / bytes_per_sec, ..self }
        } else {
            self
        }
    }

    /// The terms of a shape's cost; a term the drill did not record (`None`) is left out.
    fn terms(&self, bytes: u64, files: u64, dirs: Option<u64>, objects: Option<u64>) -> [f64; 4] {
        [
            self.fixed_secs,
            bytes as f64 * self.secs_per_byte,
            (files + dirs.unwrap_or(0)) as f64 * self.secs_per_file,
            objects.map_or(0.0, |o| o as f64 * self.secs_per_object),
        ]
    }

    /// Predicted restore seconds of a shape by the model alone (a system never drilled).
    pub fn secs(&self, s: &Shape) -> f64 {
        self.terms(s.bytes, s.files, Some(s.dirs), Some(s.objects)).iter().sum()
    }

    fn scale(&self, y: [f64; 4]) -> Costs {
        Costs {
            fixed_secs: self.fixed_secs * y[0],
            secs_per_byte: self.secs_per_byte * y[1],
            secs_per_file: self.secs_per_file * y[2],
            secs_per_object: self.secs_per_object * y[3],
        }
    }
}

/// How strongly the fit holds to the prior: as many drills' worth per cost.
const PULL: f64 = 0.5;

/// Fits the four costs to `drills` (of all systems): least squares of the relative
/// error of each drill's time, pulled towards `prior` so that drills that cannot
/// tell two costs apart (every system with the same bytes per file) keep the
/// prior's proportion between them. No cost is negative; without drills, `prior`.
pub fn fit(drills: &[Drill], prior: Costs) -> Costs {
    let rows: Vec<[f64; 4]> = drills
        .iter()
        .filter(|d| d.secs.is_finite() && d.secs > 0.0)
        .map(|d| prior.terms(d.bytes, d.files, d.dirs, d.objects).map(|t| t / d.secs))
        .collect();
    if rows.is_empty() {
        return prior;
    }
    // Solve for the factors y of the prior's costs; a factor that comes out
    // negative is fixed at zero and the rest are solved again.
    let mut free = [true; 4];
    for _ in 0..4 {
        let idx: Vec<usize> = (0..4).filter(|&j| free[j]).collect();
        let n = idx.len();
        let mut a = vec![vec![0.0; n + 1]; n];
        for (r, &j) in idx.iter().enumerate() {
            for (c, &k) in idx.iter().enumerate() {
                a[r][c] = rows.iter().map(|x| x[j] * x[k]).sum::<f64>() + if r == c { PULL } else { 0.0 };
            }
            a[r][n] = rows.iter().map(|x| x[j]).sum::<f64>() + PULL;
        }
        let Some(sol) = solve(a) else { return prior };
        let mut y = [0.0; 4];
        for (r, &j) in idx.iter().enumerate() {
            y[j] = sol[r];
        }
        let negative: Vec<usize> = idx.iter().copied().filter(|&j| y[j] < 0.0).collect();
        if negative.is_empty() {
            return prior.scale(y);
        }
        for j in negative {
            free[j] = false;
        }
        if !free.iter().any(|&f| f) {
            break;
        }
    }
    prior
}

/// Gaussian elimination with partial pivoting of an augmented n x (n+1) matrix.
fn solve(mut a: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let n = a.len();
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() <= 1e-12 || a[p][c].is_nan() {
            return None;
        }
        a.swap(c, p);
        let pivot = a[c].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot[c];
                for (x, y) in row.iter_mut().zip(&pivot).skip(c) {
                    *x -= f * y;
                }
            }
        }
    }
    let x: Vec<f64> = (0..n).map(|i| a[i][n] / a[i][i]).collect();
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// A system's predicted restore seconds from its own drills (newest first): the
/// median over its drills of the drill's time times the model's cost of `now` over
/// its cost of what the drill restored. `None` without drills.
pub fn predict(drills: &[Drill], now: &Shape, costs: &Costs) -> Option<f64> {
    let each: Vec<f64> = drills
        .iter()
        .filter(|d| d.secs.is_finite() && d.secs > 0.0)
        .map(|d| {
            // Leave out of `now` what the drill did not record, so both sides count the same terms.
            let then: f64 = costs.terms(d.bytes, d.files, d.dirs, d.objects).iter().sum();
            let dirs = d.dirs.map(|_| now.dirs);
            let objects = d.objects.map(|_| now.objects);
            let later: f64 = costs.terms(now.bytes, now.files, dirs, objects).iter().sum();
            if then > 0.0 {
                d.secs * later / then
            } else {
                d.secs + later
            }
        })
        .collect();
    super::median(each)
}

/// How far a forecast figure can be trusted: what it learned from and how far
/// the data moved since.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Confidence {
    /// Drills of this system the figure learned from.
    pub drills: usize,
    pub newest_drill_at: Option<DateTime<Utc>>,
    /// Seconds since the newest drill.
    pub newest_drill_age_secs: Option<i64>,
    /// The data now over what the newest drill restored (`None` without a drill, or 0 then).
    pub bytes_ratio: Option<f64>,
    pub files_ratio: Option<f64>,
    pub level: Level,
    /// Why the figure is less sure (empty when it is).
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Learned from a recent drill of data much like today's.
    High,
    /// Learned from a drill, but an old one or of data that changed a lot.
    Medium,
    /// No drill of this system: the model's costs alone.
    Low,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::High => "high",
            Level::Medium => "medium",
            Level::Low => "low",
        }
    }
}

impl Confidence {
    /// What the figure learned from, in words: "2 drills, newest 3 days ago; data
    /// since: bytes 1.02x, files 1.00x", or "never drilled". The one wording of the
    /// CLI's table and of the reports.
    pub fn learned_from(&self) -> String {
        match (self.drills, self.newest_drill_age_secs) {
            (0, _) | (_, None) => "never drilled".into(),
            (n, Some(age)) => {
                let r = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}x"));
                format!(
                    "{n} drill{}, newest {} ago; data since: bytes {}, files {}",
                    if n == 1 { "" } else { "s" },
                    crate::human::human_secs(age),
                    r(self.bytes_ratio),
                    r(self.files_ratio)
                )
            }
        }
    }
}

/// A drill older than this is old.
pub const OLD_DRILL_SECS: i64 = 90 * 86_400;
/// Data grown or shrunk more than this factor since the drill has changed a lot.
pub const LARGE_CHANGE: f64 = 2.0;

/// The confidence of a system's figure from its drills (newest first) and its data now.
pub fn confidence(drills: &[Drill], now: &Shape, at: DateTime<Utc>) -> Confidence {
    let Some(newest) = drills.first() else {
        return Confidence {
            drills: 0,
            newest_drill_at: None,
            newest_drill_age_secs: None,
            bytes_ratio: None,
            files_ratio: None,
            level: Level::Low,
            warnings: vec!["never drilled: predicted from the cost model alone".into()],
        };
    };
    let ratio = |now: u64, then: u64| (then > 0).then(|| now as f64 / then as f64);
    let (bytes_ratio, files_ratio) = (ratio(now.bytes, newest.bytes), ratio(now.files, newest.files));
    let age = (at - newest.at).num_seconds().max(0);
    let mut warnings = vec![];
    if age > OLD_DRILL_SECS {
        warnings.push(format!("the newest drill is {} days old", age / 86_400));
    }
    for (what, r, now, then) in
        [("bytes", bytes_ratio, now.bytes, newest.bytes), ("files", files_ratio, now.files, newest.files)]
    {
        match r {
            Some(r) if !(1.0 / LARGE_CHANGE..=LARGE_CHANGE).contains(&r) => {
                warnings.push(format!("{what} changed {r:.1}x since the newest drill ({then} then, {now} now)"))
            }
            None if now > 0 => warnings.push(format!("{what}: the newest drill restored none, {now} now")),
            _ => {}
        }
    }
    Confidence {
        drills: drills.len(),
        newest_drill_at: Some(newest.at),
        newest_drill_age_secs: Some(age),
        bytes_ratio,
        files_ratio,
        level: if warnings.is_empty() { Level::High } else { Level::Medium },
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time")
    }

    fn drill(bytes: u64, files: u64, secs: f64) -> Drill {
        Drill { bytes, files, dirs: Some(files / 100), objects: Some(bytes / 16_000_000 + 1), secs, at: at() }
    }

    fn shape(d: &Drill) -> Shape {
        Shape { bytes: d.bytes, files: d.files, dirs: d.dirs.unwrap_or(0), objects: d.objects.unwrap_or(0) }
    }

    /// Drill times made by known costs, as a machine would measure them.
    fn truth() -> Costs {
        Costs { fixed_secs: 0.02, secs_per_byte: 4e-9, secs_per_file: 8e-5, secs_per_object: 5e-4 }
    }

    #[test]
    fn unchanged_data_predicts_the_drill() {
        let d = drill(200_000_000, 8_000, 3.21);
        let p = predict(std::slice::from_ref(&d), &shape(&d), &Costs::PRIOR).expect("a drill");
        assert!((p - 3.21).abs() < 1e-9, "{p}");
    }

    #[test]
    fn three_times_the_data_about_three_times_the_time() {
        let d = drill(200_000_000, 8_000, 2.0);
        let mut now = shape(&d);
        (now.bytes, now.files, now.dirs, now.objects) = (now.bytes * 3, now.files * 3, now.dirs * 3, now.objects * 3);
        let p = predict(&[d], &now, &Costs::PRIOR).expect("a drill");
        assert!(p > 5.8 && p < 6.0, "{p}: only the fixed cost does not grow");
    }

    #[test]
    fn added_small_files_add_their_per_file_cost() {
        let costs = truth();
        let d = drill(50_000_000, 2_000, costs.secs(&shape(&drill(50_000_000, 2_000, 0.0))));
        let mut now = shape(&d);
        now.files += 20_000;
        now.bytes += 20_000 * 300;
        let p = predict(std::slice::from_ref(&d), &now, &costs).expect("a drill");
        let want = d.secs + 20_000.0 * costs.secs_per_file + 6e6 * costs.secs_per_byte;
        assert!((p - want).abs() < 1e-9, "{p} vs {want}");
        // Bytes alone would have missed most of it.
        let by_bytes = d.secs * now.bytes as f64 / d.bytes as f64;
        assert!(p > by_bytes * 1.5, "{p} vs {by_bytes}");
    }

    #[test]
    fn fit_learns_the_costs_when_drills_differ_in_shape() {
        let t = truth();
        let shapes = [(200_000_000, 800), (10_000_000, 40_000), (80_000_000, 4_000), (1_000_000, 20_000)];
        let drills: Vec<Drill> = shapes
            .iter()
            .map(|&(b, f)| {
                let d = drill(b, f, 0.0);
                Drill { secs: t.secs(&shape(&d)), ..d }
            })
            .collect();
        let c = fit(&drills, Costs::PRIOR);
        for d in &drills {
            let p = c.secs(&shape(d));
            assert!((p - d.secs).abs() / d.secs < 0.15, "{p} vs {}", d.secs);
        }
        let ratio = c.secs_per_file / c.secs_per_byte;
        let want = t.secs_per_file / t.secs_per_byte;
        assert!(ratio > want / 2.0 && ratio < want * 2.0, "{ratio} vs {want}");
    }

    #[test]
    fn fit_without_drills_or_with_nonsense_keeps_the_prior() {
        assert_eq!(fit(&[], Costs::PRIOR), Costs::PRIOR);
        let bad = Drill { secs: f64::NAN, ..drill(1, 1, 0.0) };
        assert_eq!(fit(&[bad.clone(), Drill { secs: -1.0, ..bad }], Costs::PRIOR), Costs::PRIOR);
        assert_eq!(predict(&[], &Shape::default(), &Costs::PRIOR), None);
    }

    #[test]
    fn old_rows_without_dirs_and_objects_still_predict() {
        let d = Drill { dirs: None, objects: None, ..drill(100_000_000, 1_000, 2.0) };
        let now = Shape { bytes: 100_000_000, files: 1_000, dirs: 500, objects: 50 };
        assert_eq!(
            predict(std::slice::from_ref(&d), &now, &Costs::PRIOR),
            Some(2.0),
            "terms not recorded are left out"
        );
        assert!(fit(&[d], Costs::PRIOR).secs_per_byte > 0.0);
    }

    #[test]
    fn confidence_says_what_it_learned_from() {
        let d = drill(100, 10, 1.0);
        let c = confidence(std::slice::from_ref(&d), &shape(&d), at() + chrono::Duration::days(3));
        assert_eq!((c.drills, c.newest_drill_age_secs, c.level), (1, Some(3 * 86_400), Level::High));
        assert_eq!((c.bytes_ratio, c.files_ratio), (Some(1.0), Some(1.0)));
        let grown = Shape { bytes: 300, files: 10_010, ..shape(&d) };
        let c = confidence(std::slice::from_ref(&d), &grown, at() + chrono::Duration::days(100));
        assert_eq!(c.level, Level::Medium);
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("100 days old"));
        let c = confidence(&[], &grown, at());
        assert_eq!((c.drills, c.level), (0, Level::Low));
    }

    proptest! {
        #[test]
        fn predictions_are_finite_and_grow_with_the_data(
            bytes in 0u64..1 << 40, files in 0u64..10_000_000, secs in 0.001f64..100_000.0,
            more_bytes in 0u64..1 << 40, more_files in 0u64..10_000_000,
        ) {
            let d = drill(bytes, files, secs);
            let costs = fit(std::slice::from_ref(&d), Costs::PRIOR);
            for c in [costs.fixed_secs, costs.secs_per_byte, costs.secs_per_file, costs.secs_per_object] {
                prop_assert!(c.is_finite() && c >= 0.0);
            }
            let same = predict(std::slice::from_ref(&d), &shape(&d), &costs).unwrap();
            prop_assert!((same - secs).abs() <= secs * 1e-9);
            let bigger = Shape { bytes: bytes + more_bytes, files: files + more_files, ..shape(&d) };
            let p = predict(std::slice::from_ref(&d), &bigger, &costs).unwrap();
            prop_assert!(p.is_finite() && p >= same * (1.0 - 1e-9));
        }
    }
}
