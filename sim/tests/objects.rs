//! The objects seed sweep: `objects-small.toml` (writers on both sides of a partition, a
//! writer crashing while cut off, the cloud replica and a writer crashing and restarting, torn
//! tails, lossy links) under many seeds. After the quiet end of every run, all copies of every
//! object agree and every acknowledged write is in all of them (see `sim::report::ObjectsCheck`).
//!
//! 100 seeds by default; `LIQUID_SIM_SEEDS=N` runs N.

use std::path::Path;

const SCENARIO: &str = "scenarios/objects-small.toml";

#[test]
fn replicas_converge_and_no_acknowledged_write_is_lost() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SCENARIO);
    let scenario = sim::Scenario::load(&path).unwrap();
    let seeds: u64 = std::env::var("LIQUID_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let mut failures = Vec::new();
    let (mut acked, mut verified, mut unanswered, mut torn_crashes, mut counters) = (0, 0, 0, 0, 0);
    let mut heal_convergence: Vec<f64> = Vec::new();
    for seed in 1..=seeds {
        let report = sim::run(&scenario, seed, |_| {});
        if let Some(failure) = report.failure() {
            eprintln!("{failure}");
            eprintln!("{}", report.summary());
            eprintln!("replay: liquid sim run sim/{SCENARIO} --seed {seed}");
            failures.push(seed);
            continue;
        }
        let check = report.final_check.objects.as_ref().expect("the scenario has workloads");
        let totals = report.totals.objects.as_ref().expect("the scenario has workloads");
        assert!(check.acked_writes > 50, "seed {seed}: only {} writes acknowledged", check.acked_writes);
        acked += check.acked_writes;
        verified += check.verified;
        counters += check.counters_checked;
        unanswered += totals.writes.unanswered;
        torn_crashes += totals.crashes_losing_unsynced;
        for p in report.phases.iter().filter(|p| p.name.starts_with("heal")) {
            heal_convergence.push(p.objects.as_ref().and_then(|o| o.converged_after_s).unwrap_or(f64::INFINITY));
        }
    }
    heal_convergence.sort_by(f64::total_cmp);
    let median = heal_convergence.get(heal_convergence.len() / 2).copied().unwrap_or(f64::NAN);
    let max = heal_convergence.last().copied().unwrap_or(f64::NAN);
    eprintln!(
        "{seeds} seeds: {acked} acknowledged writes, {verified} verified; {unanswered} writes unanswered at a crash; \
         {torn_crashes} crashes lost unsynced appends; {counters} counters checked; \
         object convergence after the heal: median {median}s, max {max}s"
    );
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed: {failures:?}; replay one with `liquid sim run sim/{SCENARIO} --seed {}`",
        failures.len(),
        failures[0]
    );
    // The sweep must exercise what it claims to check.
    if seeds >= 50 {
        assert!(torn_crashes > 0, "no crash ever lost unsynced appends: raise fsync_latency or the write rate");
        assert!(counters > 0, "no counter was ever checkable");
    }
}

/// The same faults with every counter created at first use, concurrently, on both sides of a
/// partition (issue 17): every counter is one counter and equals its acknowledged increments.
/// 50 seeds by default; `LIQUID_SIM_SEEDS=N` runs N.
#[test]
fn counters_created_concurrently_at_first_use_count_every_acknowledged_increment() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/objects-first-use.toml");
    let scenario = sim::Scenario::load(&path).unwrap();
    let seeds: u64 = std::env::var("LIQUID_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let (mut failures, mut counters) = (Vec::new(), 0);
    for seed in 1..=seeds {
        let report = sim::run(&scenario, seed, |_| {});
        if let Some(failure) = report.failure() {
            eprintln!("{failure}\nreplay: liquid sim run sim/scenarios/objects-first-use.toml --seed {seed}");
            failures.push(seed);
            continue;
        }
        let check = report.final_check.objects.as_ref().expect("the scenario has workloads");
        assert_eq!(check.counters_conflicted, 0, "seed {seed}");
        counters += check.counters_checked;
    }
    assert!(failures.is_empty(), "{} of {seeds} seeds failed: {failures:?}", failures.len());
    assert!(counters >= seeds, "every run checks its counters: {counters} in {seeds} seeds");
}

/// objects-small's faults with 64 objects and 256 KiB of document memory per node (issue
/// 23): most documents go cold and are read back for requests, syncs and digests under
/// partitions, crashes and torn tails, and no acknowledged write is lost. 4 seeds by
/// default (about 15 s each in the dev profile); `LIQUID_SIM_SEEDS=N` runs N.
#[test]
fn cold_documents_lose_nothing_under_every_fault() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/objects-cold.toml");
    let scenario = sim::Scenario::load(&path).unwrap();
    let seeds: u64 = std::env::var("LIQUID_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let (mut failures, mut loads) = (Vec::new(), 0);
    for seed in 1..=seeds {
        let report = sim::run(&scenario, seed, |_| {});
        if let Some(failure) = report.failure() {
            eprintln!("{failure}\nreplay: liquid sim run sim/scenarios/objects-cold.toml --seed {seed}");
            failures.push(seed);
            continue;
        }
        let core = report.core.objects.as_ref().expect("the scenario has workloads");
        assert!(core.evictions > 0, "seed {seed}: nothing went cold");
        loads += core.loads;
    }
    assert!(failures.is_empty(), "{} of {seeds} seeds failed: {failures:?}", failures.len());
    assert!(loads >= seeds, "cold documents were read back: {loads} loads in {seeds} seeds");
}
