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
//! - `engine` (with `engine/queue.rs`, `engine/disk.rs`): the event loop, the nodes and how
//!   they connect, the event queue, the simulated disks and object stores.
//! - `workload`: write workloads and the fate of every write.
//! - `checks` (with `checks/objects.rs`): convergence and false-suspicion checkers, per-phase
//!   accounting, object convergence and the object invariants.
//! - `sizes`: exact encoded sizes of messages without re-encoding them.
//! - [`report`]: `report.json` and the human summary.
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

pub mod network;
pub mod report;
pub mod scenario;

mod checks;
mod engine;
mod sizes;
mod workload;

use std::collections::BTreeMap;
use std::time::Duration;

pub use report::{Report, Speed};
pub use scenario::{Scenario, ScenarioError};

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
pub fn run(scenario: &Scenario, seed: u64, progress: impl FnMut(&Progress)) -> Report {
    run_with(scenario, seed, engine::Sabotage::default(), progress)
}

fn run_with(scenario: &Scenario, seed: u64, sabotage: engine::Sabotage, mut progress: impl FnMut(&Progress)) -> Report {
    let started = wall_clock();
    let end = Time::ZERO + scenario.duration;
    let mut engine = Engine::new(scenario, seed);
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
        final_check: report::FinalCheck {
            ok: agreement.ok && objects_check.as_ref().is_none_or(|o| o.ok),
            live_nodes: agreement.live,
            islands: agreement.islands,
            detail: agreement.detail,
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
        let broken = run_with(&alone(), 1, sabotage, |_| {});
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
        let broken = run_with(&scenario, 3, sabotage, |_| {});
        let check = broken.final_check.objects.as_ref().unwrap();
        assert!(!broken.final_check.ok && check.lost > 0, "{}", broken.summary());
    }

    #[test]
    fn replicas_that_stop_syncing_do_not_converge() {
        let sabotage = engine::Sabotage {
            drop_object_messages_from: Some(Time::ZERO + Duration::from_secs(12)),
            ..Default::default()
        };
        let broken = run_with(&alone(), 1, sabotage, |_| {});
        let check = broken.final_check.objects.as_ref().unwrap();
        assert!(!broken.final_check.ok && !check.converged && check.lost > 0, "{}", broken.summary());
        let heal = broken.phases.iter().find(|p| p.name == "heal all").unwrap();
        assert_eq!(heal.objects.as_ref().unwrap().converged_after_s, None, "{}", broken.summary());
    }
}
