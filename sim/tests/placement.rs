//! Placement policies compared on `liquid-small.toml` (three edge sites of two devices and a
//! cloud region; one in-memory actor per site, deployed from the cloud; sites turn busy and
//! quiet; edge-2 is cut off and heals), and migrations interrupted by crashes and cuts.
//!
//! Under every policy and fault: no two executions of an actor on different nodes overlap in
//! virtual time (fencing) and every call made by a running caller gets exactly one outcome.
//! Under `liquid` the actors move (to their callers' sites: the median call gets faster than
//! from the cloud); under `cloud` and `pinned` they never do.
//!
//! 3 seeds by default; `LIQUID_SIM_SEEDS=N` runs N.

use std::path::Path;

use sim::{PolicyKind, PolicySummary, Report};

const SCENARIO: &str = "scenarios/liquid-small.toml";

fn path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(SCENARIO)
}

fn scenario() -> sim::Scenario {
    sim::Scenario::load(&path()).unwrap_or_else(|e| panic!("{e}"))
}

fn seeds(default: u64) -> u64 {
    std::env::var("LIQUID_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).map_or(default, |n: u64| n.min(50))
}

/// Fencing and one outcome per call, for one policy's run.
fn accountable(p: &PolicySummary, what: &str) {
    assert_eq!(p.fencing_violations, 0, "{what}: fencing violated: {p:?}");
    assert_eq!(p.duplicate_outcomes, 0, "{what}: a call got two outcomes");
    assert_eq!(p.pending_at_end, 0, "{what}: calls left without an outcome");
    assert_eq!(p.ok + p.failed_invocations + p.lost_with_caller + p.pending_at_end, p.calls, "{what}: {p:?}");
}

fn policy<'a>(r: &'a Report, name: &str) -> &'a PolicySummary {
    r.policies.iter().find(|p| p.policy == name).unwrap_or_else(|| panic!("no {name} in {:?}", r.policies))
}

#[test]
fn liquid_moves_actors_to_their_callers_and_cloud_and_pinned_never_move_them() {
    let scenario = scenario();
    let mut failures = Vec::new();
    for seed in 1..=seeds(3) {
        let report = sim::compare(&scenario, seed, &PolicyKind::ALL, |_| {});
        if let Some(failure) = report.failure() {
            eprintln!("{failure}\n{}", report.summary());
            failures.push(seed);
            continue;
        }
        let names: Vec<&str> = report.policies.iter().map(|p| p.policy).collect();
        assert_eq!(names, ["cloud", "pinned", "liquid"], "seed {seed}");
        for p in &report.policies {
            accountable(p, &format!("seed {seed} {}", p.policy));
            assert!(p.invariants_ok, "seed {seed} {}", p.policy);
            assert!(p.ok > 400, "seed {seed} {}: only {} calls succeeded", p.policy, p.ok);
        }
        let (cloud, pinned, liquid) = (policy(&report, "cloud"), policy(&report, "pinned"), policy(&report, "liquid"));
        assert_eq!((cloud.migrations, cloud.migrations_started), (0, 0), "seed {seed}");
        assert_eq!((pinned.migrations, pinned.migrations_started), (0, 0), "seed {seed}");
        assert!(liquid.migrations > 0, "seed {seed}: nothing moved under liquid: {:?}", liquid.moves);
        assert!(liquid.handoff_bytes >= liquid.migrations * 64 * 1024, "seed {seed}");
        let (l, c) = (liquid.p50_ms.unwrap_or(f64::MAX), cloud.p50_ms.unwrap_or(0.0));
        assert!(l < c, "seed {seed}: liquid's median call ({l} ms) is not faster than cloud's ({c} ms)");
        // The JSON carries the comparison.
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        for p in json["policies"].as_array().unwrap() {
            for field in ["policy", "p50_ms", "p99_ms", "wan_bytes", "migrations", "failed_invocations"] {
                assert!(p.get(field).is_some(), "seed {seed}: no {field} in {p}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "seeds {failures:?} failed; replay with `liquid sim run sim/{SCENARIO} --seed N --policy all`"
    );
}

#[test]
fn a_seed_reproduces_its_comparison_byte_for_byte() {
    let scenario = scenario();
    let a = sim::compare(&scenario, 5, &PolicyKind::ALL, |_| {});
    let b = sim::compare(&scenario, 5, &PolicyKind::ALL, |_| {});
    assert_eq!(a.to_json(), b.to_json());
    let dir = std::env::temp_dir().join(format!("liquid-sim-placement-{}", std::process::id()));
    let (da, db) = (dir.join("a"), dir.join("b"));
    a.write(&da).unwrap();
    b.write(&db).unwrap();
    let html = std::fs::read_to_string(da.join("report.html")).unwrap();
    assert_eq!(html, std::fs::read_to_string(db.join("report.html")).unwrap());
    assert!(html.contains("<svg") && html.contains("liquid") && html.contains("cloud"), "{html}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Faults appended to the small scenario, timed around its first migrations (the policy first
/// runs 10 s after the home's activation; the moves start at about 20 s and hand off within
/// half a second).
const FAULTS: &[(&str, &str)] = &[
    // The home (the migrations' source) dies in the middle of preparing, of handing off, and
    // just after.
    (
        "source crashes while preparing",
        "at = \"20.05s\"\ncrash = [\"cloud-0\"]\n[[faults]]\nat = \"32s\"\nrestart = [\"cloud-0\"]",
    ),
    (
        "source crashes while handing off",
        "at = \"20.2s\"\ncrash = [\"cloud-0\"]\n[[faults]]\nat = \"32s\"\nrestart = [\"cloud-0\"]",
    ),
    (
        "source crashes after the hand-off",
        "at = \"20.35s\"\ncrash = [\"cloud-0\"]\n[[faults]]\nat = \"32s\"\nrestart = [\"cloud-0\"]",
    ),
    // The targets die (every device of the busy sites), then come back.
    (
        "targets crash mid-migration",
        "at = \"20.15s\"\ncrash = [\"edge-0\", \"edge-2\"]\n[[faults]]\nat = \"33s\"\nrestart = [\"edge-0\", \"edge-2\"]",
    ),
    (
        "targets crash after activating",
        "at = \"20.6s\"\ncrash = [\"edge-0\"]\n[[faults]]\nat = \"26s\"\nrestart = [\"edge-0\"]",
    ),
    // The busy sites are cut off mid-migration, then heal.
    (
        "targets cut off mid-migration",
        "at = \"20.1s\"\npartition = [\"edge-0\"]\n[[faults]]\nat = \"35s\"\nheal = \"all\"",
    ),
    (
        "targets cut off during the hand-off",
        "at = \"20.25s\"\npartition = [\"edge-0\", \"edge-2\"]\n[[faults]]\nat = \"30s\"\nheal = \"all\"",
    ),
];

#[test]
fn crashes_and_cuts_during_migrations_keep_fencing_and_one_outcome() {
    let text = std::fs::read_to_string(path()).unwrap();
    let origin = path().display().to_string();
    let mut interrupted = 0;
    let mut failures = Vec::new();
    for (k, (what, faults)) in FAULTS.iter().enumerate() {
        let text = format!("{text}\n[[faults]]\n{faults}\n");
        let scenario = sim::Scenario::parse(&text, &origin).unwrap_or_else(|e| panic!("{what}: {e}"));
        for seed in 1..=seeds(2) {
            let report = sim::run_policy(&scenario, seed, PolicyKind::Liquid, |_| {});
            let p = &report.policies[0];
            if let Some(failure) = report.failure() {
                eprintln!("{what} (seed {seed}): {failure}\n{}", report.summary());
                failures.push((k, seed));
                continue;
            }
            accountable(p, &format!("{what}, seed {seed}"));
            if p.migrations_started > p.migrations || p.rolled_back > 0 || p.fenced > 0 {
                interrupted += 1;
            }
        }
    }
    assert!(failures.is_empty(), "(fault, seed) {failures:?} failed");
    assert!(interrupted > 0, "no fault interrupted a migration: the fault times missed them");
}
