//! Functions in the simulator: `functions-small.toml` (counter and hello, built by
//! scripts/build-guests.sh, invoked from edge sites and the fog through a partition and a
//! caller's crash) under several seeds. Every call made by a running caller gets exactly one
//! outcome, the guests really run (fuel is used, modules are fetched), and a seed reproduces
//! its report byte for byte.
//!
//! 5 seeds by default; `LIQUID_SIM_SEEDS=N` runs N.

use std::path::Path;

const SCENARIO: &str = "scenarios/functions-small.toml";

fn scenario() -> sim::Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SCENARIO);
    sim::Scenario::load(&path).unwrap_or_else(|e| panic!("{e} (the example modules are committed: restore them with git checkout, or rebuild with scripts/build-guests.sh)"))
}

#[test]
fn every_call_gets_one_outcome_and_guests_really_run() {
    let scenario = scenario();
    let seeds: u64 = std::env::var("LIQUID_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).map_or(5, |n: u64| n.min(50));
    let mut failures = Vec::new();
    for seed in 1..=seeds {
        let report = sim::run(&scenario, seed, |_| {});
        if let Some(failure) = report.failure() {
            eprintln!("{failure}\n{}", report.summary());
            failures.push(seed);
            continue;
        }
        let f = report.functions.as_ref().unwrap_or_else(|| panic!("seed {seed}: no functions report"));
        let answered: u64 = f.outcomes.values().sum();
        assert_eq!(answered + f.lost_with_caller + f.pending_at_end, f.calls, "seed {seed}: {f:?}");
        assert_eq!(f.pending_at_end, 0, "seed {seed}: calls left without an outcome");
        let ok = f.outcomes.get("ok").copied().unwrap_or(0);
        assert!(ok > 300, "seed {seed}: only {ok} calls succeeded: {:?}", f.outcomes);
        assert!(f.executions >= ok && f.fuel > 100_000, "seed {seed}: guests did not run: {f:?}");
        assert!(f.module_fetches >= 3, "seed {seed}: modules were not fetched to the callers");
        assert_eq!(f.deploys, 2);
        let sites: Vec<&str> = f.latency_by_site.iter().map(|s| s.site.as_str()).collect();
        assert_eq!(sites, ["edge-0", "edge-1", "fog"], "seed {seed}");
    }
    assert!(failures.is_empty(), "seeds {failures:?} failed; replay with `liquid sim run sim/{SCENARIO} --seed N`");
}

#[test]
fn a_seed_reproduces_its_report() {
    let scenario = scenario();
    let a = sim::run(&scenario, 11, |_| {}).to_json();
    let b = sim::run(&scenario, 11, |_| {}).to_json();
    assert_eq!(a, b);
}
