//! A plan's forecast from what is recorded: the snapshot each system would
//! restore (its size, the packs to fetch), the throughput and hook time of its
//! past drills, then [`simulate`]. The one place that gathers these, so that
//! `kura plan forecast` and the forecast report show the same figures.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::{self, Costs, Drill, Shape};
use super::{simulate, Row, SystemInput, ThroughputSource};
use crate::error::Result;
use crate::orchestrate::queue::Phase;
use crate::orchestrate::{choose_snapshot, target_for};
use crate::plan::{Plan, Source};
use crate::report::{ReportFacts, ReportKind, SystemRow, SystemState};
use crate::state::recovery::{RunKind, Site};
use crate::state::State;
use kura_store::repo::Repository;
use kura_store::types::{BlobId, PackId, Priority};

/// Assumed restore throughput when no drill measured one: 50 MiB/s.
pub const DEFAULT_THROUGHPUT: f64 = 50.0 * 1048576.0;

/// What the forecast is asked for.
pub struct ForecastOptions {
    /// The repository the restore would read.
    pub from: Site,
    pub parallel: usize,
    /// Bytes per second for systems never drilled (else the cost model learned from all drills).
    pub throughput: Option<f64>,
    /// When the forecast is made (the age of the drills counts from here).
    pub now: DateTime<Utc>,
}

/// What a full recovery needs besides time.
#[derive(Clone, Debug, Serialize)]
pub struct Resources {
    pub bytes_to_restore: u64,
    pub disk_per_target: BTreeMap<String, u64>,
    /// Distinct stored bytes read from the repository (after dedup, compressed and encrypted).
    pub bytes_to_fetch: u64,
    /// Pack objects read (GETs of whole packs or ranges of them).
    pub objects_to_fetch: usize,
    pub from: Site,
}

/// A plan's forecast. Its JSON is the output of `kura plan forecast --json`.
#[derive(Clone, Debug, Serialize)]
pub struct Forecast {
    pub plan: String,
    pub parallel: usize,
    pub predicted: bool,
    pub systems: Vec<Row>,
    /// Predicted completion of the whole plan, seconds after the clock starts.
    pub total_secs: f64,
    pub deadlines_not_met: Vec<String>,
    pub resources: Resources,
    /// The costs the model learned from every drill of the plan's systems (else assumed).
    pub costs: Costs,
    /// Drills the costs were learned from.
    pub drills_learned_from: usize,
    /// What the forecast had to guess (e.g. a system without a snapshot), for the caller to show.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// Gathers the inputs of every system of `plan` and simulates the recovery.
pub fn assemble(state: &State, repo: &Repository, plan: &Plan, opts: ForecastOptions) -> Result<Forecast> {
    let snapshots = repo.snapshots()?;
    let index = repo.load_index()?;
    let mut drills: Vec<Vec<Drill>> = vec![];
    for s in &plan.systems {
        let samples = state.drill_samples(&s.name)?;
        drills.push(
            samples
                .into_iter()
                .map(|d| Drill {
                    bytes: d.bytes,
                    files: d.files,
                    dirs: d.dirs,
                    objects: d.objects,
                    secs: d.restore_ms as f64 / 1000.0,
                    at: d.at,
                })
                .collect(),
        );
    }
    let all: Vec<Drill> = drills.iter().flatten().cloned().collect();
    let costs = model::fit(&all, Costs::PRIOR);
    // A system never drilled: the learned costs, at the given throughput if one is.
    let undrilled = opts.throughput.map_or(costs, |t| costs.with_throughput(t));
    let (mut inputs, mut warnings) = (vec![], vec![]);
    // A readiness view: a priority-3 system without a standby cannot meet its deadline.
    for s in plan.systems.iter().filter(|s| s.priority.get() == 3 && s.standby.is_none()) {
        warnings.push(format!(
            "{}: priority 3 (must not stop) without a standby: a restore cannot meet its deadline (docs/STANDBY.md)",
            s.name
        ));
    }
    let mut disk: BTreeMap<String, u64> = BTreeMap::new();
    let mut blobs: HashMap<BlobId, u32> = HashMap::new();
    let mut packs: HashSet<PackId> = HashSet::new();
    for (s, drilled) in plan.systems.iter().zip(&drills) {
        let shape = match choose_snapshot(&snapshots, &s.source, None) {
            Some((id, snap)) => {
                let sub = s.subpath.clone().or_else(|| (snap.paths.len() == 1).then(|| snap.paths[0].clone()));
                let needs = kura_store::restore::needs(repo, &index, id, snap, sub)?;
                let mut own: HashSet<PackId> = HashSet::new();
                for (pack, blob, len) in needs.blobs {
                    own.insert(pack);
                    packs.insert(pack);
                    blobs.insert(blob, len);
                }
                Shape { bytes: needs.bytes, files: needs.files, dirs: needs.dirs, objects: own.len() as u64 }
            }
            None => {
                let what = match &s.source {
                    Source::Tag(t) => format!("tagged {t}"),
                    Source::HostPaths { host, .. } => format!("of host {host}"),
                };
                warnings.push(format!("{}: no snapshot {what}; predicted as 0 bytes", s.name));
                Shape::default()
            }
        };
        *disk.entry(target_for(s, None).display().to_string()).or_default() += shape.bytes;
        let overhead_secs = last_overhead(state, &s.name)?;
        let confidence = model::confidence(drilled, &shape, opts.now);
        for w in &confidence.warnings {
            if !drilled.is_empty() {
                warnings.push(format!("{}: {w}; the figure is less sure", s.name));
            }
        }
        let (mut restore_secs, mut source) = match model::predict(drilled, &shape, &costs) {
            Some(t) => (t, ThroughputSource::Drills { count: drilled.len() }),
            None => (undrilled.secs(&shape), ThroughputSource::Default),
        };
        let mut overhead_secs = overhead_secs;
        if let Some(m) =
            s.standby.as_ref().map(|_| crate::standby::measured_failovers(state, &s.name)).transpose()?.flatten()
        {
            (restore_secs, overhead_secs, source) =
                (m.apply_secs, m.switch_secs, ThroughputSource::Failovers { count: m.count });
        }
        inputs.push(SystemInput { shape, restore_secs, source, overhead_secs, confidence });
    }
    let parallel = opts.parallel.max(1);
    // A system with a standby is predicted to fail over: judged on its tolerance.
    let mut judged = plan.clone();
    for s in judged.systems.iter_mut().filter(|s| s.standby.is_some()) {
        s.deadline = Some(s.tolerance);
    }
    let rows = simulate(&judged, &inputs, parallel);
    Ok(Forecast {
        plan: plan.name.clone(),
        parallel,
        predicted: true,
        deadlines_not_met: rows.iter().filter(|r| r.fits == Some(false)).map(|r| r.name.clone()).collect(),
        total_secs: rows.iter().map(|r| r.end_secs).fold(0.0, f64::max),
        resources: Resources {
            bytes_to_restore: inputs.iter().map(|i| i.shape.bytes).sum(),
            disk_per_target: disk,
            bytes_to_fetch: blobs.values().map(|&l| l as u64).sum(),
            objects_to_fetch: packs.len(),
            from: opts.from,
        },
        systems: rows,
        costs,
        drills_learned_from: all.len(),
        warnings,
    })
}

/// Seconds outside the restore (hooks) in the last successful drill of a system.
fn last_overhead(state: &State, name: &str) -> Result<f64> {
    for run in state.recovery_runs(Some(RunKind::Drill), None)?.iter().rev() {
        let done = state.run_systems(run.id)?.into_iter().find(|s| s.name == name && s.state == Phase::Done);
        if let Some(s) = done {
            if let (Some(a), Some(b), Some(ms)) = (s.started_at, s.ended_at, s.restore_ms) {
                return Ok(((b - a).num_milliseconds() as f64 - ms as f64).max(0.0) / 1000.0);
            }
        }
    }
    Ok(0.0)
}

impl Forecast {
    /// The forecast as a report (`kind: forecast`): one predicted row per system,
    /// its clock starting at `now`. Times are whole seconds, the completion rounded
    /// up as every deadline verdict is (`deadline::time_secs`).
    pub fn facts(&self, plan: &Plan, now: DateTime<Utc>) -> ReportFacts {
        let mut f = ReportFacts::new(ReportKind::Forecast, format!("Forecast for {}", self.plan), now);
        f.clock_start = Some(now);
        f.plan = Some(self.plan.clone());
        f.systems = self
            .systems
            .iter()
            .zip(&plan.systems)
            .map(|(r, s)| {
                let priority = Priority::new(r.priority).unwrap_or(Priority::ALL[3]);
                let mut row = SystemRow::new(r.name.clone(), priority, r.deadline_secs, SystemState::Planned);
                row.predicted = true;
                row.target = Some(target_for(s, None).display().to_string());
                row.start_secs = Some(r.start_secs.floor() as i64);
                row.time_secs = Some(r.end_secs.ceil() as i64);
                row.bytes = Some(r.bytes);
                row.files = Some(r.files);
                row.confidence = Some(r.confidence.clone());
                row
            })
            .collect();
        f.finalize();
        f
    }
}
