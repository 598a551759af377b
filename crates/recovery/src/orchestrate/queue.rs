//! Which system starts next: the pure heart of recovery ordering, shared by the
//! real engine and the forecast simulation so the two can never disagree.
//!
//! Rules: a system starts when every dependency is done and, unless the plan
//! allows overlap, every system of a higher priority has finished. Among the
//! ready ones, the plan's order (`plan::order`: tier, wave, deadline, name). A failed
//! system's dependents (transitively) are skipped; with `on_failure = halt`
//! nothing new starts after a failure.

use serde::{Deserialize, Serialize};

use crate::plan::{OnFailure, Plan};

/// Declared in execution order (`Ord` follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Waiting,
    /// Running the pre hooks.
    Pre,
    Restoring,
    /// Running the verify hooks (after the restore verified the file contents).
    Verifying,
    /// Running the post hooks.
    Post,
    Done,
    Failed,
    Skipped,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Done | Phase::Failed | Phase::Skipped)
    }
    pub fn is_active(self) -> bool {
        matches!(self, Phase::Pre | Phase::Restoring | Phase::Verifying | Phase::Post)
    }
}

pub struct Queue<'a> {
    plan: &'a Plan,
    phases: Vec<Phase>,
    deps: Vec<Vec<usize>>,
    /// Every system, in the plan's execution order.
    rank: Vec<usize>,
    parallel: usize,
    halted: bool,
}

impl<'a> Queue<'a> {
    /// `phases` is the stored state of every system (all `Waiting` for a new run).
    pub fn new(plan: &'a Plan, phases: Vec<Phase>, parallel: usize) -> Self {
        // The plan's own order (tier, dependency wave, deadline, name) ranks the
        // ready systems, so `kura plan show` prints the order a recovery follows.
        let deps = crate::plan::dependency_indexes(plan);
        let rank: Vec<usize> = crate::plan::order(plan).flat().collect();
        let halted = plan.on_failure == OnFailure::Halt && phases.contains(&Phase::Failed);
        Queue { plan, phases, deps, rank, parallel: parallel.max(1), halted }
    }

    pub fn phase(&self, i: usize) -> Phase {
        self.phases[i]
    }

    pub fn set_phase(&mut self, i: usize, p: Phase) {
        self.phases[i] = p;
    }

    pub fn running(&self) -> usize {
        self.phases.iter().filter(|p| p.is_active()).count()
    }

    /// Systems to start now, best first, at most the free parallel slots.
    pub fn ready(&self) -> Vec<usize> {
        if self.halted {
            return vec![];
        }
        let free = self.parallel.saturating_sub(self.running());
        self.rank.iter().copied().filter(|&i| self.can_start(i)).take(free).collect()
    }

    fn can_start(&self, i: usize) -> bool {
        if self.phases[i] != Phase::Waiting {
            return false;
        }
        if !self.deps[i].iter().all(|&d| self.phases[d] == Phase::Done) {
            return false;
        }
        if self.plan.allow_overlap {
            return true;
        }
        let p = self.plan.systems[i].priority;
        self.plan.systems.iter().zip(&self.phases).all(|(s, ph)| s.priority <= p || ph.is_terminal())
    }

    /// Records a finished system. Returns the systems skipped because of it, with
    /// the reason, so the caller can store them.
    pub fn finish(&mut self, i: usize, ok: bool) -> Vec<(usize, String)> {
        self.phases[i] = if ok { Phase::Done } else { Phase::Failed };
        if ok {
            return vec![];
        }
        let mut skipped = vec![];
        let failed = self.plan.systems[i].name.clone();
        loop {
            let next = (0..self.phases.len()).find(|&j| {
                self.phases[j] == Phase::Waiting
                    && self.deps[j].iter().any(|&d| matches!(self.phases[d], Phase::Failed | Phase::Skipped))
            });
            let Some(j) = next else { break };
            self.phases[j] = Phase::Skipped;
            let via: Vec<&str> = self.deps[j]
                .iter()
                .filter(|&&d| matches!(self.phases[d], Phase::Failed | Phase::Skipped))
                .map(|&d| self.plan.systems[d].name.as_str())
                .collect();
            skipped.push((
                j,
                format!("depends on {} which did not come back (root cause: {failed} failed)", via.join(", ")),
            ));
        }
        if self.plan.on_failure == OnFailure::Halt {
            self.halted = true;
        }
        skipped
    }

    /// With `halt`, once nothing runs any more: the systems never started, with the reason.
    pub fn halt_leftovers(&mut self) -> Vec<(usize, String)> {
        if !self.halted || self.running() > 0 {
            return vec![];
        }
        let mut out = vec![];
        for i in 0..self.phases.len() {
            if self.phases[i] == Phase::Waiting {
                self.phases[i] = Phase::Skipped;
                out.push((i, "not started: the plan halts after a failure (on_failure = \"halt\")".to_string()));
            }
        }
        out
    }

    pub fn is_complete(&self) -> bool {
        self.phases.iter().all(|p| p.is_terminal())
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::{Hooks, PlanSystem, Source};
    use kura_store::types::Priority;

    pub fn sys(name: &str, prio: u8, deps: &[&str]) -> PlanSystem {
        let priority = Priority::new(prio).unwrap();
        PlanSystem {
            name: name.into(),
            priority,
            deadline: priority.default_deadline(),
            source: Source::Tag(format!("system:{name}")),
            subpath: None,
            target: format!("/restore/{name}").into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            hooks: Hooks::default(),
            agent: None,
            replacement_host: None,
            scan: None,
            standby: None,
            tolerance: chrono::Duration::minutes(5),
            snapshot: None,
        }
    }

    pub fn plan(systems: Vec<PlanSystem>) -> Plan {
        Plan {
            path: "test.toml".into(),
            name: "test".into(),
            description: String::new(),
            allow_overlap: false,
            on_failure: OnFailure::Continue,
            hook_env: Vec::new(),
            systems,
        }
    }

    fn names(p: &Plan, v: &[usize]) -> Vec<String> {
        v.iter().map(|&i| p.systems[i].name.clone()).collect()
    }

    #[test]
    fn tiers_gate_and_dependencies_order() {
        let p = plan(vec![sys("web", 2, &["db"]), sys("db", 2, &[]), sys("dns", 3, &[]), sys("wiki", 0, &[])]);
        let mut q = Queue::new(&p, vec![Phase::Waiting; 4], 4);
        assert_eq!(names(&p, &q.ready()), ["dns"]);
        q.set_phase(2, Phase::Restoring);
        assert!(q.ready().is_empty(), "tier 2 waits for tier 3");
        q.finish(2, true);
        assert_eq!(names(&p, &q.ready()), ["db"]);
        q.set_phase(1, Phase::Restoring);
        q.finish(1, true);
        assert_eq!(names(&p, &q.ready()), ["web"]);
        q.set_phase(0, Phase::Restoring);
        q.finish(0, true);
        assert_eq!(names(&p, &q.ready()), ["wiki"]);
    }

    #[test]
    fn failure_skips_dependents_transitively_and_halt_stops() {
        let p = plan(vec![sys("db", 2, &[]), sys("app", 2, &["db"]), sys("web", 1, &["app"]), sys("mail", 2, &[])]);
        let mut q = Queue::new(&p, vec![Phase::Waiting; 4], 1);
        assert_eq!(names(&p, &q.ready()), ["db"]);
        q.set_phase(0, Phase::Restoring);
        let skipped = q.finish(0, false);
        assert_eq!(names(&p, &skipped.iter().map(|s| s.0).collect::<Vec<_>>()), ["app", "web"]);
        assert!(skipped[1].1.contains("root cause: db failed"));
        assert_eq!(names(&p, &q.ready()), ["mail"]);

        let mut halting = p.clone();
        halting.on_failure = OnFailure::Halt;
        let mut q = Queue::new(&halting, vec![Phase::Waiting; 4], 1);
        q.set_phase(0, Phase::Restoring);
        q.finish(0, false);
        assert!(q.ready().is_empty());
        assert_eq!(q.halt_leftovers().len(), 1);
        assert!(q.is_complete());
    }

    #[test]
    fn parallel_slots_and_overlap() {
        let mut p = plan(vec![sys("a", 3, &[]), sys("b", 3, &[]), sys("c", 3, &[]), sys("d", 1, &[])]);
        let q = Queue::new(&p, vec![Phase::Waiting; 4], 2);
        assert_eq!(names(&p, &q.ready()), ["a", "b"]);
        p.allow_overlap = true;
        let q = Queue::new(&p, vec![Phase::Waiting; 4], 8);
        assert_eq!(names(&p, &q.ready()), ["a", "b", "c", "d"]);
    }
}
