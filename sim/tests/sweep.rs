//! The seed sweep: the small scenario (a partition that heals, a crash and a restart, lossy
//! links) under many seeds; after the last heal every live node's view must agree.
//!
//! 50 seeds by default; `LIQUID_SIM_SEEDS=N` runs N.

use std::path::Path;

const SCENARIO: &str = "scenarios/small.toml";

#[test]
fn after_the_last_heal_every_live_view_agrees() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SCENARIO);
    let scenario = sim::Scenario::load(&path).unwrap();
    let seeds: u64 = std::env::var("LIQUID_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let mut failures = Vec::new();
    for seed in 1..=seeds {
        let report = sim::run(&scenario, seed, |_| {});
        if !report.final_check.ok {
            eprintln!("seed {seed} FAILED: {}", report.final_check.detail);
            eprintln!("{}", report.summary());
            eprintln!("replay: liquid sim run sim/{SCENARIO} --seed {seed}");
            failures.push(seed);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed: {failures:?}; replay one with `liquid sim run sim/{SCENARIO} --seed {}`",
        failures.len(),
        failures[0]
    );
}
