//! Predicting a recovery before it happens: the same `Queue` as the real engine,
//! driven by predicted durations instead of real restores (pure, no I/O).
//!
//! A system's predicted duration is its restore time plus the time its hooks took
//! in its last drill. The restore time comes from the cost model (`model`): bytes,
//! files and directories, pack objects, each with a cost learned from the plan's
//! drills, anchored on the system's own drills when it has any. Each figure
//! carries its confidence: the drills it learned from, their age, how far the
//! data changed since. `assemble` gathers these inputs from the repository and
//! the state database.

mod assemble;
pub mod model;

use serde::Serialize;

pub use assemble::{assemble, Forecast, ForecastOptions, Resources, DEFAULT_THROUGHPUT};
pub use model::{Confidence, Costs, Level, Shape};

use super::queue::{Phase, Queue};
use crate::plan::Plan;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ThroughputSource {
    /// This many past drills of the system, scaled by the cost model to its data now.
    Drills { count: usize },
    /// The cost model alone (its costs learned from the plan's other drills, else assumed).
    Default,
    /// A system with a standby: its measured failovers (drills and real ones), the
    /// roll-back by difference and the switch (docs/STANDBY.md).
    Failovers { count: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct SystemInput {
    /// What the restore does now: bytes written, files, directories, pack objects.
    pub shape: Shape,
    /// Predicted seconds of the restore step.
    pub restore_secs: f64,
    pub source: ThroughputSource,
    /// Seconds spent outside the restore itself (hooks), from the last drill.
    pub overhead_secs: f64,
    pub confidence: Confidence,
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub priority: u8,
    pub deadline_secs: Option<i64>,
    pub bytes: u64,
    pub files: u64,
    pub dirs: u64,
    /// Pack objects the restore reads.
    pub objects: u64,
    /// Predicted seconds of the restore step (without hooks).
    pub restore_secs: f64,
    /// Bytes over the predicted restore seconds.
    pub throughput_bytes_per_sec: f64,
    pub throughput_source: ThroughputSource,
    /// Predicted start and completion, seconds after the incident clock starts.
    pub start_secs: f64,
    pub end_secs: f64,
    /// `None` without a deadline.
    pub fits: Option<bool>,
    pub margin_secs: Option<i64>,
    pub confidence: Confidence,
}

/// Simulates the plan; `inputs` is indexed like `plan.systems`.
pub fn simulate(plan: &Plan, inputs: &[SystemInput], parallel: usize) -> Vec<Row> {
    let n = plan.systems.len();
    let dur: Vec<f64> = inputs
        .iter()
        .map(|x| x.overhead_secs.max(0.0) + if x.restore_secs.is_finite() { x.restore_secs.max(0.0) } else { 0.0 })
        .collect();
    let mut queue = Queue::new(plan, vec![Phase::Waiting; n], parallel);
    let mut start = vec![0.0; n];
    let mut end = vec![f64::INFINITY; n];
    let mut running: Vec<usize> = vec![];
    let mut t = 0.0f64;
    loop {
        for i in queue.ready() {
            queue.set_phase(i, Phase::Restoring);
            start[i] = t;
            end[i] = t + dur[i];
            running.push(i);
        }
        if queue.is_complete() || running.is_empty() {
            break;
        }
        let (k, &i) =
            running.iter().enumerate().min_by(|a, b| end[*a.1].total_cmp(&end[*b.1])).expect("something runs");
        running.swap_remove(k);
        t = end[i];
        queue.finish(i, true);
    }
    plan.systems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let deadline = s.deadline.map(|d| d.num_seconds());
            let margin = deadline.map(|d| (d as f64 - end[i]).floor() as i64);
            let x = &inputs[i];
            Row {
                name: s.name.clone(),
                priority: s.priority.get(),
                deadline_secs: deadline,
                bytes: x.shape.bytes,
                files: x.shape.files,
                dirs: x.shape.dirs,
                objects: x.shape.objects,
                restore_secs: x.restore_secs,
                throughput_bytes_per_sec: if x.restore_secs > 0.0 {
                    x.shape.bytes as f64 / x.restore_secs
                } else {
                    0.0
                },
                throughput_source: x.source,
                start_secs: start[i],
                end_secs: end[i],
                fits: margin.map(|m| m >= 0),
                margin_secs: margin,
                confidence: x.confidence.clone(),
            }
        })
        .collect()
}

/// The median of measured throughputs, or `None`.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::super::queue::tests::{plan, sys};
    use super::*;

    const MB: u64 = 1_000_000;

    fn input(bytes: u64, mbps: f64) -> SystemInput {
        let shape = Shape { bytes, ..Shape::default() };
        SystemInput {
            shape,
            restore_secs: bytes as f64 / (mbps * MB as f64),
            source: ThroughputSource::Default,
            overhead_secs: 0.0,
            confidence: model::confidence(&[], &shape, chrono::Utc::now()),
        }
    }

    #[test]
    fn arithmetic_with_fixed_throughputs() {
        // Tier 3: dns 100 MB at 10 MB/s = 10 s. Tier 2: db 3600 MB at 1 MB/s = 3600 s,
        // then app (depends on db) 1800 MB at 1 MB/s = 1800 s. Tier 1: web 360000 MB at 1 MB/s.
        let p = plan(vec![sys("dns", 3, &[]), sys("db", 2, &[]), sys("app", 2, &["db"]), sys("web", 1, &[])]);
        let inputs = [input(100 * MB, 10.0), input(3600 * MB, 1.0), input(1800 * MB, 1.0), input(360_000 * MB, 1.0)];
        let rows = simulate(&p, &inputs, 2);
        assert_eq!(rows[0].end_secs, 10.0);
        assert_eq!(rows[0].fits, Some(false), "priority 3 with a zero deadline never fits a restore");
        assert_eq!((rows[1].start_secs, rows[1].end_secs), (10.0, 3610.0));
        assert_eq!((rows[2].start_secs, rows[2].end_secs), (3610.0, 5410.0));
        assert_eq!(rows[2].fits, Some(true));
        assert_eq!(rows[2].margin_secs, Some(86_400 - 5410));
        assert_eq!((rows[3].start_secs, rows[3].end_secs), (5410.0, 365_410.0));
        assert_eq!(rows[3].fits, Some(false), "3 days = 259200 s");
    }

    #[test]
    fn parallel_systems_share_the_clock() {
        let p = plan(vec![sys("a", 2, &[]), sys("b", 2, &[]), sys("c", 2, &[])]);
        let inputs = [input(10 * MB, 1.0), input(20 * MB, 1.0), input(5 * MB, 1.0)];
        let rows = simulate(&p, &inputs, 2);
        assert_eq!(rows.iter().map(|r| r.end_secs).collect::<Vec<_>>(), [10.0, 20.0, 15.0]);
    }

    #[test]
    fn median_of_measurements() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
