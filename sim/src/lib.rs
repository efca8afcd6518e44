//! Liquid's deterministic simulated continuum.
//!
//! A [`Scenario`] declares tiers and sites (say 45 edge sites of 22 devices, 5 fog nodes and
//! 3 cloud regions), the network between them and timed faults. [`run`] boots one real
//! [`liquid_core::Node`] per simulated machine — the very state machine the agent runs, not a
//! model of it — and drives them all from a single seeded event queue in virtual time, over a
//! simulated network (latency, jitter, bandwidth, loss, partitions) and simulated disks (a crash
//! loses writes that were not yet durable, including object log appends not yet flushed).
//! Write workloads drive the core's objects alongside the faults. The [`Report`] says, per
//! phase, how long membership and objects took to converge, how many suspicions were false,
//! what became of the writes and which messages were sent, and whether the end-of-run
//! invariants hold (views agree; every object's copies agree; no acknowledged write is lost);
//! the same scenario and seed give a byte-identical `report.json`.
//!
//! It does **not** use threads, sockets, files (except [`Report::write`]) or the wall clock
//! (except to measure its own [`Speed`], which is kept out of the JSON). It does not encode
//! messages: they travel as structs, and their size is computed with
//! [`liquid_core::wire::encoded_len`]. It does not model congestion, clock drift or disk
//! corruption (yet).
//!
//! Modules:
//! - [`scenario`]: the TOML format (every option documented there) and its validation.
//! - [`network`]: the network model.
//! - `engine` (with `engine/queue.rs`, `engine/disk.rs`, `engine/exec.rs`,
//!   `engine/actors.rs`): the event loop, the nodes and how they connect, the event queue, the
//!   simulated disks and object stores, function executions, actor migrations (prefetch,
//!   hand-off) and the record of actor executions the fencing check reads.
//! - `policies`: placement policies compared ([`PolicyKind`]: `cloud`, `pinned`, `liquid`;
//!   [`compare`]), and how a run is summed up into the report's `policies`.
//! - `workload`: write workloads and the fate of every write.
//! - `checks` (with `checks/objects.rs`): convergence and false-suspicion checkers, object
//!   convergence and the object invariants.
//! - `metrics`: per-phase accounting (phases, false suspicions, writes, traffic), owned by the
//!   engine.
//! - `sizes`: exact encoded sizes of messages without re-encoding them.
//! - [`report`]: `report.json`, `report.html` (policies compared, inline SVG) and the human
//!   summary.
//!
//! ```
//! let scenario = sim::Scenario::parse(r#"
//!     name = "tiny"
//!     duration = "30s"
//!     [[sites]]
//!     name = "edge"
//!     tier = "edge"
//!     count = 2
//!     nodes = 3
//! "#, "tiny.toml").unwrap();
//! let report = sim::run(&scenario, 7, |_| {});
//! assert_eq!(report.nodes.total, 6);
//! assert!(report.final_check.ok, "{}", report.summary());
//! ```

/// Tunes the C library's allocator for simulations of thousands of nodes. Binaries call it
/// once, before [`run`]; it does nothing where the C library is not glibc.
///
/// Every simulated node grows its member table and gossip queue a little at a time, to
/// hundreds of KB each at 10,000 nodes. glibc raises its mmap threshold each time such a block
/// is freed, so these blocks end up on the heap, interleaved, and the holes left as they grow
/// are never given back. A fixed 128 KiB threshold (which also stops that adjustment) keeps
/// them in their own mappings, which grow in place: continuum-10000 peaked at 4.8 GiB instead
/// of 5.7 GiB, and ran 12 % faster. 64 KiB saved another 0.2 GiB but came near Linux's default
/// limit of 65,530 mappings per process at 10,000 nodes.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` only sets a tuning parameter of glibc's allocator, which takes its own
    // lock; it does not touch memory the program holds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

pub mod network;
pub mod report;
pub mod scenario;

mod checks;
mod engine;
mod metrics;
mod policies;
mod sizes;
mod workload;

use std::collections::BTreeMap;
use std::time::Duration;

pub use report::{PolicySummary, Report, Speed};
pub use scenario::{PolicyKind, Scenario, ScenarioError};

use engine::Engine;
use liquid_core::Time;

/// Where a run is, for progress bars.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Virtual time reached.
    pub virtual_now: Duration,
    /// Virtual time the run ends at.
    pub virtual_end: Duration,
    /// Events processed so far.
    pub events: u64,
}

/// The wall clock, read only to measure the simulator's own speed (never inside the run).
#[allow(clippy::disallowed_methods)] // Speed is reported outside report.json; nothing depends on it.
fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}

/// Runs `scenario` with `seed` and reports. `progress` is called once per sample (every
/// `sample_interval` of virtual time, 1 s by default).
/// The placement policy is the scenario's (`[placement] policy`, `liquid` by default).
pub fn run(scenario: &Scenario, seed: u64, progress: impl FnMut(&Progress)) -> Report {
    run_with(scenario, seed, engine::Sabotage::default(), scenario.placement.policy, progress)
}

/// Runs `scenario` with `seed` under `policy`.
pub fn run_policy(scenario: &Scenario, seed: u64, policy: PolicyKind, progress: impl FnMut(&Progress)) -> Report {
    run_with(scenario, seed, engine::Sabotage::default(), policy, progress)
}

/// Runs `scenario` with `seed` under each of `policies` (in that order) and reports the last
/// run in full, with every run summed up in `policies`; the final check holds only if it
/// holds for every run.
pub fn compare(scenario: &Scenario, seed: u64, policies: &[PolicyKind], mut progress: impl FnMut(&Progress)) -> Report {
    let mut summaries = Vec::new();
    let mut failures = Vec::new();
    let mut last = None;
    let mut wall = Duration::ZERO;
    for &p in policies {
        let report = run_policy(scenario, seed, p, &mut progress);
        wall += report.speed.wall;
        if let Some(f) = report.failure() {
            failures.push(format!("[{}] {f}", p.as_str()));
        }
        summaries.extend(report.policies.iter().cloned());
        last = Some(report);
    }
    let Some(mut report) = last else { return run(scenario, seed, progress) };
    report.policies = summaries;
    report.speed.wall = wall;
    if !failures.is_empty() {
        report.final_check.ok = false;
        report.final_check.detail = failures.join("; ");
    }
    report
}

/// How long a call may wait for its outcome before the final check calls it lost: longer
/// than any call's deadline (wall_ms of 5 s by default plus the 15 s forwarding margin).
const CALL_DEADLINE_S: f64 = 120.0;

fn run_with(
    scenario: &Scenario,
    seed: u64,
    sabotage: engine::Sabotage,
    policy: PolicyKind,
    mut progress: impl FnMut(&Progress),
) -> Report {
    let started = wall_clock();
    let end = Time::ZERO + scenario.duration;
    let mut engine = Engine::new(scenario, seed, policy);
    engine.sabotage = sabotage;
    engine.run_until(end, |e| {
        progress(&Progress { virtual_now: e.now.since(Time::ZERO), virtual_end: scenario.duration, events: e.events })
    });
    engine.metrics.finish(end);
    let agreement = engine.agreement(true);
    let mut core = report::CoreStats::default();
    for n in engine.nodes.iter().filter_map(|n| n.node.as_ref()) {
        let s = n.membership().stats();
        core.refutations += s.refutations;
        core.gossip_dropped += s.gossip_dropped;
        core.members_refused += s.members_refused;
        core.relays_refused += s.relays_refused;
    }
    let objects_check = scenario.has_workloads().then(|| engine.objects_final());
    if scenario.has_workloads() {
        core.objects = Some(engine.core_object_stats());
    }
    let mut by_tier = BTreeMap::new();
    for i in 0..scenario.node_count() as u32 {
        *by_tier.entry(scenario.node_tier(i).as_str()).or_insert(0) += 1;
    }
    let phases = std::mem::take(&mut engine.metrics.phases);
    let mut totals = report::totals(&phases);
    if let Some(o) = totals.objects.as_mut() {
        o.writes.ack_latency_ms = report::Latency::of(&mut engine.metrics.all_latencies);
    }
    let functions = (!scenario.invocations.is_empty() || !scenario.functions.is_empty()).then(|| {
        let (pending, oldest) = engine.calls_pending();
        let m = &mut engine.fnm;
        let mut all: Vec<u64> = m.latency_by_site.values().flatten().copied().collect();
        report::FunctionsReport {
            streams: scenario
                .invocations
                .iter()
                .map(|w| report::StreamInfo {
                    name: w.label.clone(),
                    function: w.function.clone(),
                    rate: w.rate,
                    callers: w.callers.len(),
                })
                .collect(),
            deploys: m.deploys,
            calls: m.calls,
            skipped_caller_down: m.skipped,
            lost_with_caller: m.lost_with_caller,
            outcomes: m.outcomes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            pending_at_end: pending,
            oldest_pending_s: oldest.as_secs_f64(),
            latency_by_site: m
                .latency_by_site
                .iter_mut()
                .map(|(site, l)| report::SiteLatency {
                    site: scenario.sites[*site as usize].name.clone(),
                    calls: l.len(),
                    latency_ms: report::Latency::of(l),
                })
                .collect(),
            latency_ms: report::Latency::of(&mut all),
            executions: m.executions,
            fuel: m.fuel,
            module_fetches: m.fetches,
            module_bytes: m.fetched_bytes,
        }
    });
    // Accountability: a call still waiting long after any deadline lost its outcome; no call
    // gets two. Fencing: no two executions of an actor on different nodes overlap.
    let calls_ok = functions.as_ref().is_none_or(|f| f.oldest_pending_s <= CALL_DEADLINE_S);
    let duplicates = engine.fnm.duplicate_outcomes;
    let fencing = policies::first_violation(&engine);
    let mut detail = agreement.detail.clone();
    if !calls_ok {
        detail = format!("{detail} an invocation has had no outcome for over {CALL_DEADLINE_S} s");
    }
    if duplicates > 0 {
        detail = format!("{detail} {duplicates} invocations got a second outcome");
    }
    if let Some(f) = &fencing {
        detail = format!("{detail} {f}");
    }
    let detail = detail.trim().to_string();
    let ok =
        agreement.ok && objects_check.as_ref().is_none_or(|o| o.ok) && calls_ok && duplicates == 0 && fencing.is_none();
    let policies = match &functions {
        Some(f) => vec![PolicySummary::of(&mut engine, f.pending_at_end, ok)],
        None => Vec::new(),
    };
    let wall = started.elapsed();
    let secs = wall.as_secs_f64().max(1e-9);
    Report {
        scenario: scenario.name.clone(),
        seed,
        duration_s: scenario.duration.as_secs_f64(),
        nodes: report::NodeCounts { total: scenario.node_count(), by_tier },
        events: engine.events,
        workloads: scenario
            .workloads
            .iter()
            .map(|w| report::WorkloadInfo {
                name: w.label.clone(),
                objects: w.objects.len(),
                writers: w.writers.len(),
                rate: w.rate,
                start_s: w.start.as_secs_f64(),
                stop_s: w.stop.as_secs_f64(),
                durability: w.durability,
            })
            .collect(),
        phases,
        totals,
        core,
        functions,
        policy: policy.as_str(),
        policies,
        final_check: report::FinalCheck {
            ok,
            live_nodes: agreement.live,
            islands: agreement.islands,
            detail,
            objects: objects_check,
        },
        speed: Speed {
            wall,
            virtual_per_wall: scenario.duration.as_secs_f64() / secs,
            events_per_s: engine.events as f64 / secs,
        },
    }
}

#[cfg(test)]
mod tests {
    //! The object checks can fail: deliberate defects must be caught.

    use super::*;

    /// Two edge nodes and a cloud node. `edge-0-0` writes while cut off, crashes, restarts and
    /// rejoins: its acknowledged writes exist only on its disk until it restarts.
    const ALONE: &str = r#"
        name = "alone"
        duration = "90s"
        join_window = "2s"
        [[sites]]
        name = "edge"
        tier = "edge"
        count = 2
        nodes = 1
        [[sites]]
        name = "cloud"
        tier = "cloud"
        nodes = 1
        [[workload]]
        objects = 2
        start = "5s"
        stop = "25s"
        rate = 4
        writers = ["edge-0-0", "edge-1-0"]
        [[faults]]
        at = "10s"
        partition = ["edge-0"]
        [[faults]]
        at = "26s"
        crash = ["edge-0-0"]
        [[faults]]
        at = "28s"
        restart = ["edge-0-0"]
        [[faults]]
        at = "30s"
        heal = "all"
    "#;

    fn alone() -> Scenario {
        Scenario::parse(ALONE, "alone.toml").unwrap()
    }

    #[test]
    fn a_restart_that_forgets_its_store_loses_acknowledged_writes() {
        let ok = run(&alone(), 1, |_| {});
        assert!(ok.final_check.ok, "{}", ok.summary());
        let check = ok.final_check.objects.as_ref().unwrap();
        assert!(check.acked_writes > 40 && check.verified == check.acked_writes, "{}", ok.summary());

        let sabotage = engine::Sabotage { skip_restore: true, ..Default::default() };
        let broken = run_with(&alone(), 1, sabotage, PolicyKind::Liquid, |_| {});
        let check = broken.final_check.objects.as_ref().unwrap();
        assert!(!broken.final_check.ok && check.lost > 0, "{}", broken.summary());
        let failure = broken.failure().unwrap();
        assert!(failure.contains("lost=") && failure.contains("acknowledged by edge-0-0"), "{failure}");
    }

    #[test]
    fn writes_acknowledged_before_they_are_durable_are_caught() {
        // One writer, cut off, writes fast on a slow disk and crashes with flushes in flight:
        // those writes are not acknowledged, so losing them is fine. Acknowledging without
        // an fsync is not.
        let text = r#"
            name = "burst"
            duration = "60s"
            join_window = "2s"
            fsync_latency = "50ms"
            [[sites]]
            name = "edge"
            tier = "edge"
            count = 2
            nodes = 1
            [[workload]]
            objects = 3
            start = "14s"
            stop = "30s"
            rate = 40
            writers = ["edge-0-0"]
            [[faults]]
            at = "5s"
            partition = ["edge-0"]
            [[faults]]
            at = "20s"
            crash = ["edge-0-0"]
            [[faults]]
            at = "22s"
            restart = ["edge-0-0"]
            [[faults]]
            at = "25s"
            heal = "all"
        "#;
        let scenario = Scenario::parse(text, "burst.toml").unwrap();
        let ok = run(&scenario, 3, |_| {});
        assert!(ok.final_check.ok, "{}", ok.summary());
        let unanswered = ok.totals.objects.as_ref().unwrap().writes.unanswered;
        assert!(unanswered > 0, "the crash must catch writes in flight: {}", ok.summary());

        let sabotage = engine::Sabotage { skip_fsync: true, ..Default::default() };
        let broken = run_with(&scenario, 3, sabotage, PolicyKind::Liquid, |_| {});
        let check = broken.final_check.objects.as_ref().unwrap();
        assert!(!broken.final_check.ok && check.lost > 0, "{}", broken.summary());
    }

    #[test]
    fn replicas_that_stop_syncing_do_not_converge() {
        let sabotage = engine::Sabotage {
            drop_object_messages_from: Some(Time::ZERO + Duration::from_secs(12)),
            ..Default::default()
        };
        let broken = run_with(&alone(), 1, sabotage, PolicyKind::Liquid, |_| {});
        let check = broken.final_check.objects.as_ref().unwrap();
        assert!(!broken.final_check.ok && !check.converged && check.lost > 0, "{}", broken.summary());
        let heal = broken.phases.iter().find(|p| p.name == "heal all").unwrap();
        assert_eq!(heal.objects.as_ref().unwrap().converged_after_s, None, "{}", broken.summary());
    }
}
