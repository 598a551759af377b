//! Validating and ordering a 1,000-system plan (issue #6: "well under a second").
//! `cargo bench --bench plan`; the median is recorded in docs/PLANS.md.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// A config and a plan of `n` systems with random priorities and up to three
/// dependencies each, on systems of the same or a higher priority.
fn texts(n: usize, seed: u64) -> (String, String) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let prio: Vec<u8> = (0..n).map(|_| rng.gen_range(0..4)).collect();
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rng);
    let mut config = String::from("[repository]\nlocation = \"/r\"\npassword_file = \"/p\"\n");
    let mut plan = String::from("name = \"bench\"\n");
    for (pos, &i) in perm.iter().enumerate() {
        let mut deps = Vec::new();
        for _ in 0..rng.gen_range(0..=3) {
            if pos > 0 {
                let j = perm[rng.gen_range(0..pos)];
                if prio[j] >= prio[i] && !deps.contains(&j) {
                    deps.push(j);
                }
            }
        }
        config += &format!(
            "[[system]]\nname = \"sys-{i}\"\npriority = {}\npaths = [\"/srv/sys-{i}\"]\nschedule = \"0 2 * * *\"\n",
            prio[i]
        );
        let deps: Vec<String> = deps.iter().map(|j| format!("\"sys-{j}\"")).collect();
        plan += &format!(
            "[[system]]\nname = \"sys-{i}\"\ntarget = \"/restore/sys-{i}\"\ndepends_on = [{}]\n\
             [[system.verify]]\ncommand = \"true\"\n",
            deps.join(", ")
        );
    }
    (config, plan)
}

fn bench(c: &mut Criterion) {
    let (config_text, plan_text) = texts(1000, 42);
    let config = kura::config::parse_str(Path::new("/bench/kura.toml"), &config_text).expect("config");
    let mut g = c.benchmark_group("plan");
    g.sample_size(20);
    g.bench_function("validate_and_order_1000", |b| {
        b.iter(|| {
            let (plan, _) =
                kura::plan::parse_str(Path::new("/bench/plan.toml"), &plan_text, Some(&config)).expect("plan");
            let order = kura::plan::order(&plan);
            assert_eq!(order.flat().count(), 1000);
        })
    });
    g.bench_function("config_parse_1000", |b| {
        b.iter(|| kura::config::parse_str(Path::new("/bench/kura.toml"), &config_text).expect("config"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
