//! The execution order of a plan: pure functions over a validated `Plan`.

use std::collections::HashMap;

use super::{Order, Plan, Tier};
use kura_store::types::Priority;

/// For each system, the indexes of the systems it depends on (unknown names, which
/// a validated plan does not have, are left out).
pub fn dependency_indexes(plan: &Plan) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = plan.systems.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    plan.systems.iter().map(|s| s.depends_on.iter().filter_map(|d| index.get(d.as_str()).copied()).collect()).collect()
}

/// Tiers from priority 3 down to 0 (only tiers that have systems). Inside a tier,
/// wave k holds the systems whose longest chain of same-tier dependencies has k
/// links (a dependency in a higher tier is already done when the tier starts).
/// Inside a wave: earliest deadline first (no deadline last), then name.
pub fn order(plan: &Plan) -> Order {
    let deps = dependency_indexes(plan);
    let n = plan.systems.len();
    let mut tiers = Vec::new();
    for p in Priority::ALL {
        let members: Vec<usize> = (0..n).filter(|&i| plan.systems[i].priority == p).collect();
        if members.is_empty() {
            continue;
        }
        // Kahn's algorithm by layers, on the edges inside this tier.
        let mut pending = vec![0usize; n];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &a in &members {
            for &b in &deps[a] {
                if plan.systems[b].priority == p {
                    pending[a] += 1;
                    dependents[b].push(a);
                }
            }
        }
        let mut placed = 0;
        let mut wave: Vec<usize> = members.iter().copied().filter(|&a| pending[a] == 0).collect();
        let mut waves = Vec::new();
        while !wave.is_empty() {
            placed += wave.len();
            let mut next = Vec::new();
            for &b in &wave {
                for &a in &dependents[b] {
                    pending[a] -= 1;
                    if pending[a] == 0 {
                        next.push(a);
                    }
                }
            }
            sort_wave(plan, &mut wave);
            waves.push(wave);
            wave = next;
        }
        if placed < members.len() {
            // Only an unvalidated plan has a cycle: its systems go last rather than vanish.
            let mut rest: Vec<usize> = members.into_iter().filter(|&a| pending[a] > 0).collect();
            sort_wave(plan, &mut rest);
            waves.push(rest);
        }
        tiers.push(Tier { priority: p, waves });
    }
    Order { tiers }
}

fn sort_wave(plan: &Plan, wave: &mut [usize]) {
    wave.sort_by(|&a, &b| {
        let (sa, sb) = (&plan.systems[a], &plan.systems[b]);
        let key = |d: Option<chrono::Duration>| (d.is_none(), d.unwrap_or_else(chrono::Duration::zero));
        key(sa.deadline).cmp(&key(sb.deadline)).then_with(|| sa.name.cmp(&sb.name))
    });
}

/// `rank[i]` is system i's position in the execution order: a total order that the
/// recovery engine (`orchestrate::queue`) uses to pick, among the systems whose dependencies are done, the
/// one to start next.
pub fn rank(plan: &Plan) -> Vec<usize> {
    let mut rank = vec![0; plan.systems.len()];
    for (pos, i) in order(plan).flat().enumerate() {
        rank[i] = pos;
    }
    rank
}
