//! Liquid's deterministic simulated continuum.
//!
//! A [`Scenario`] declares tiers and sites (say 45 edge sites of 22 devices, 5 fog nodes and
//! 3 cloud regions), the network between them and timed faults. [`run`] boots one real
//! [`liquid_core::Node`] per simulated machine — the very state machine the agent runs, not a
//! model of it — and drives them all from a single seeded event queue in virtual time, over a
//! simulated network (latency, jitter, bandwidth, loss, partitions) and simulated disks (a crash
//! loses writes that were not yet durable). The [`Report`] says, per phase, how long
//! membership took to converge, how many suspicions were false, and which messages were sent;
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
//!   they connect, the event queue, the simulated disks.
//! - `checks`: convergence and false-suspicion checkers, per-phase accounting.
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
pub fn run(scenario: &Scenario, seed: u64, mut progress: impl FnMut(&Progress)) -> Report {
    let started = wall_clock();
    let end = Time::ZERO + scenario.duration;
    let mut engine = Engine::new(scenario, seed);
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
    let mut by_tier = BTreeMap::new();
    for i in 0..scenario.node_count() as u32 {
        *by_tier.entry(scenario.node_tier(i).as_str()).or_insert(0) += 1;
    }
    let phases = std::mem::take(&mut engine.metrics.phases);
    let totals = report::totals(&phases);
    let wall = started.elapsed();
    let secs = wall.as_secs_f64().max(1e-9);
    Report {
        scenario: scenario.name.clone(),
        seed,
        duration_s: scenario.duration.as_secs_f64(),
        nodes: report::NodeCounts { total: scenario.node_count(), by_tier },
        events: engine.events,
        phases,
        totals,
        core,
        final_check: report::FinalCheck {
            ok: agreement.ok,
            live_nodes: agreement.live,
            islands: agreement.islands,
            detail: agreement.detail,
        },
        speed: Speed {
            wall,
            virtual_per_wall: scenario.duration.as_secs_f64() / secs,
            events_per_s: engine.events as f64 / secs,
        },
    }
}
