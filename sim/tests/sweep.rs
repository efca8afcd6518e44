//! The seed sweeps: scenarios with a partition that heals, a crash and a restart, and lossy
//! links, under many seeds; after the last heal every live node's view must agree.
//!
//! - `small.toml` (38 nodes), 50 seeds: views small enough to be exchanged whole.
//! - `medium.toml` (192 nodes), 20 seeds: anti-entropy exchanges only the buckets of the
//!   views that differ, which only views of 64 members and more do.
//!
//! `LIQUID_SIM_SEEDS=N` runs N seeds of each.

use std::path::Path;

fn sweep(scenario: &str, default_seeds: u64) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(scenario);
    let loaded = sim::Scenario::load(&path).unwrap_or_else(|e| panic!("{scenario}: {e}"));
    let seeds: u64 = std::env::var("LIQUID_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_seeds);
    let mut failures = Vec::new();
    for seed in 1..=seeds {
        let report = sim::run(&loaded, seed, |_| {});
        if !report.final_check.ok {
            eprintln!("seed {seed} FAILED: {}", report.final_check.detail);
            eprintln!("{}", report.summary());
            eprintln!("replay: liquid sim run sim/{scenario} --seed {seed}");
            failures.push(seed);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed: {failures:?}; replay one with `liquid sim run sim/{scenario} --seed {}`",
        failures.len(),
        failures[0]
    );
}

#[test]
fn after_the_last_heal_every_live_view_agrees() {
    sweep("scenarios/small.toml", 50);
}

#[test]
fn after_the_last_heal_every_live_view_agrees_when_views_are_compared_by_bucket() {
    sweep("scenarios/medium.toml", 20);
}
