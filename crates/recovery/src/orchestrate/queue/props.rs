//! Property tests of the queue on random acyclic plans: every start respects the
//! dependencies and the tiers, the systems offered are exactly the best startable
//! ones (priority 3 first, then dependency wave, earliest deadline, name), and a
//! run always completes with failures skipping exactly their dependents.

use chrono::Duration;
use proptest::prelude::*;

use super::tests::{plan, sys};
use super::{Phase, Queue};
use crate::plan::{OnFailure, Plan};

/// (priority, deadline in hours or none, dependency choices) per system.
type Spec = Vec<(u8, Option<u8>, Vec<prop::sample::Index>)>;

fn spec() -> impl Strategy<Value = Spec> {
    prop::collection::vec(
        (0u8..=3, prop::option::of(1u8..=4), prop::collection::vec(any::<prop::sample::Index>(), 0..3)),
        1..9,
    )
}

/// Dependencies point to earlier systems of the same or a higher priority (what a
/// valid plan allows), so the plan is acyclic and can always finish.
fn build(spec: &Spec) -> Plan {
    let mut systems = Vec::new();
    for (i, (prio, hours, picks)) in spec.iter().enumerate() {
        let allowed: Vec<usize> = (0..i).filter(|&j| spec[j].0 >= *prio).collect();
        let mut deps: Vec<String> = Vec::new();
        if !allowed.is_empty() {
            for p in picks {
                let d = format!("s{}", allowed[p.index(allowed.len())]);
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        let dep_refs: Vec<&str> = deps.iter().map(|d| d.as_str()).collect();
        let mut s = sys(&format!("s{i}"), *prio, &dep_refs);
        s.deadline = hours.map(|h| Duration::hours(h as i64));
        systems.push(s);
    }
    plan(systems)
}

/// Longest chain of same-priority dependencies below each system.
fn waves(p: &Plan, deps: &[Vec<usize>]) -> Vec<usize> {
    let mut w = vec![0; p.systems.len()];
    for i in 0..p.systems.len() {
        // Dependencies are earlier systems: already computed.
        w[i] = deps[i]
            .iter()
            .filter(|&&d| p.systems[d].priority == p.systems[i].priority)
            .map(|&d| w[d] + 1)
            .max()
            .unwrap_or(0);
    }
    w
}

fn startable(p: &Plan, deps: &[Vec<usize>], phases: &[Phase], i: usize) -> bool {
    phases[i] == Phase::Waiting
        && deps[i].iter().all(|&d| phases[d] == Phase::Done)
        && (p.allow_overlap
            || p.systems.iter().zip(phases).all(|(s, ph)| s.priority <= p.systems[i].priority || ph.is_terminal()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_queue_offers_the_best_startable_systems_and_always_completes(
        spec in spec(),
        parallel in 1usize..4,
        overlap in any::<bool>(),
        halt in any::<bool>(),
        outcomes in prop::collection::vec((any::<prop::sample::Index>(), prop::bool::weighted(0.8)), 40),
    ) {
        let mut p = build(&spec);
        p.allow_overlap = overlap;
        p.on_failure = if halt { OnFailure::Halt } else { OnFailure::Continue };
        let deps = crate::plan::dependency_indexes(&p);
        let wave = waves(&p, &deps);
        let n = p.systems.len();
        let mut q = Queue::new(&p, vec![Phase::Waiting; n], parallel);
        let mut phases = vec![Phase::Waiting; n];
        let mut failed_any = false;
        for (pick, ok) in outcomes.iter().cycle().take(4 * n + 4) {
            let ready = q.ready();
            // The model: every startable system, by tier, wave, deadline (none last), name.
            let mut model: Vec<usize> = if halt && failed_any {
                vec![]
            } else {
                (0..n).filter(|&i| startable(&p, &deps, &phases, i)).collect()
            };
            model.sort_by_key(|&i| {
                let s = &p.systems[i];
                (std::cmp::Reverse(s.priority), wave[i], s.deadline.is_none(), s.deadline, s.name.clone())
            });
            model.truncate(parallel.saturating_sub(q.running()));
            prop_assert_eq!(&ready, &model);
            for &i in &ready {
                prop_assert!(deps[i].iter().all(|&d| phases[d] == Phase::Done), "a dependency was not done");
                q.set_phase(i, Phase::Restoring);
                phases[i] = Phase::Restoring;
            }
            let running: Vec<usize> = (0..n).filter(|&i| phases[i].is_active()).collect();
            if running.is_empty() {
                break;
            }
            let i = running[pick.index(running.len())];
            let skipped = q.finish(i, *ok);
            phases[i] = if *ok { Phase::Done } else { Phase::Failed };
            failed_any |= !ok;
            for (j, _) in skipped {
                prop_assert!(deps[j].iter().any(|&d| matches!(phases[d], Phase::Failed | Phase::Skipped)));
                phases[j] = Phase::Skipped;
            }
            for (j, ph) in phases.iter().enumerate() {
                prop_assert_eq!(q.phase(j), *ph);
            }
        }
        for (j, _) in q.halt_leftovers() {
            phases[j] = Phase::Skipped;
        }
        prop_assert!(q.is_complete(), "the run did not complete: {:?}", phases);
        if !failed_any {
            prop_assert!(phases.iter().all(|p| *p == Phase::Done));
        }
        // Nothing was skipped unless it depends on a failure (or the plan halted).
        for j in 0..n {
            if phases[j] == Phase::Skipped && !halt {
                prop_assert!(deps[j].iter().any(|&d| matches!(phases[d], Phase::Failed | Phase::Skipped)));
            }
        }
    }
}
