//! Fencing, as a property: a migration under arbitrary message loss, delay and clock drift
//! within the lease's bound ([`super::lease::LeaseConfig::drift`]) never leaves two
//! activations accepting work at the same time and never loses an acknowledged actor state
//! update.
//!
//! Each case runs one actor (deployed on node 0, a counter that answers its count) on 3–5
//! nodes of the [`H`] harness with seeded loss (0–30 %), extra delay (0–200 ms) and per-node
//! clock drift, a stream of calls from random nodes, 1–3 migrations asked for by hand, and
//! maybe a partition that heals and a crash and restart; then the faults stop and everything
//! settles. Checked:
//!
//! - after every step, at most one node's activation holds a valid lease (by its own clock);
//! - acknowledged counts are distinct, and a call invoked after another was acknowledged
//!   answers a higher count (two activations serving from diverging state, or state that
//!   went back, break one or the other);
//! - every invocation is answered exactly once (failures are allowed), except those whose
//!   node crashed before answering;
//! - time advances, and no node produces unbounded output at one instant (a loop).
//!
//! A failure prints the scenario; the suite runs a fixed seed. The one counterexample found
//! so far is kept below as a regression test.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use wasm_host::{Kind, Manifest};

use super::actors::lease::LeaseConfig;
use crate::Time;
use crate::testing::{Cluster as H, Faults, id};

const ACTOR: &str = "a";
/// How long the faults last.
const CHAOS: Duration = Duration::from_secs(60);
/// How long everything settles afterwards: beyond every deadline a call can wait on
/// (an incoming migration's is three steps).
const HEAL: Duration = Duration::from_secs(100);
/// Steps at one instant before the run counts as stuck (a timer that never advances).
const STEPS_MAX: u32 = 100_000;
/// Outputs of one node at one instant before it counts as looping.
const OUTPUTS_MAX: usize = 100_000;
/// The property's seed.
const SEED: u64 = 0x1b9e_57a7;

#[derive(Clone, Debug)]
struct Scenario {
    nodes: usize,
    seed: u64,
    loss: f64,
    delay_ms: u64,
    /// Per node, as a fraction of the allowed per-node drift (-1..1).
    drift: Vec<f64>,
    /// (ms into the chaos, node asked).
    calls: Vec<(u64, usize)>,
    /// (ms into the chaos, node asked, target).
    migrations: Vec<(u64, usize, usize)>,
    /// (from ms, for ms, side of each node).
    partition: Option<(u64, u64, Vec<bool>)>,
    /// (at ms, down for ms, node).
    crash: Option<(u64, u64, usize)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let ms = 0..CHAOS.as_millis() as u64;
    (
        3usize..=5,
        any::<u64>(),
        0.0..0.3f64,
        0u64..=200,
        proptest::collection::vec(-1.0..1.0f64, 5),
        proptest::collection::vec((ms.clone(), 0usize..5), 20..60),
        proptest::collection::vec((ms.clone(), 0usize..5, 0usize..5), 1..=3),
        proptest::option::of((ms.clone(), 500u64..15_000, proptest::collection::vec(any::<bool>(), 5))),
        proptest::option::of((ms, 1_000u64..20_000, 0usize..5)),
    )
        .prop_map(|(nodes, seed, loss, delay_ms, drift, calls, migrations, partition, crash)| Scenario {
            nodes,
            seed,
            loss,
            delay_ms,
            drift,
            calls: calls.into_iter().map(|(t, k)| (t, k % nodes)).collect(),
            migrations: migrations.into_iter().map(|(t, k, to)| (t, k % nodes, to % nodes)).collect(),
            partition,
            crash: crash.map(|(t, d, k)| (t, d, k % nodes)),
        })
}

fn deploy_actor(h: &mut H, k: usize, name: &str) {
    let mut manifest = Manifest::for_module(name);
    manifest.kind = Kind::Actor;
    h.deploy(k, manifest);
}

enum Action {
    Call(usize),
    Migrate(usize, usize),
    Cut(Vec<bool>),
    Heal,
    Crash(usize),
    Restart(usize),
}

/// What the run saw.
#[derive(Default)]
struct Run {
    /// (node, id) → when it was invoked.
    invoked: BTreeMap<(usize, u64), Time>,
    /// (node, when it crashed).
    crashes: Vec<(usize, Time)>,
}

/// Runs the harness to `end`, executing actors at once and checking the lease after each step.
fn run_to(h: &mut H, end: Time) -> Result<(), String> {
    let (mut at, mut steps) = (h.now, 0u32);
    while h.now < end {
        h.step(end);
        h.run_actors();
        check_one_leased(h)?;
        if let Some((k, t)) = h.runaway {
            return Err(format!("node {k} looped at {t:?}: over {} outputs at one instant", h.outputs_max));
        }
        if h.now != at {
            (at, steps) = (h.now, 0);
        }
        steps += 1;
        if steps > STEPS_MAX {
            let timers: Vec<_> = (0..h.nodes.len())
                .filter_map(|k| h.nodes[k].as_ref().map(|n| (k, h.clock(k), n.poll_timeout())))
                .collect();
            return Err(format!(
                "time stopped at {:?}: {steps} steps, (node, clock, timeout): {timers:?}, queue: {}",
                h.now,
                h.queue.len()
            ));
        }
    }
    Ok(())
}

fn check_one_leased(h: &H) -> Result<(), String> {
    let leased: Vec<_> = (0..h.nodes.len())
        .filter_map(|k| {
            let n = h.nodes[k].as_ref()?;
            let v = n.functions().activation(h.clock(k), ACTOR)?;
            v.leased.then_some((k, v))
        })
        .collect();
    if leased.len() > 1 {
        return Err(format!("two activations hold a lease at {:?}: {leased:?}", h.now));
    }
    Ok(())
}

fn run(s: &Scenario, drift_max: f64) -> Result<(), String> {
    let faults =
        Faults { seed: s.seed, drift: s.drift[..s.nodes].iter().map(|d| d * drift_max).collect(), ..Faults::default() };
    let mut h = H::with_faults(s.nodes, Default::default(), faults);
    h.outputs_max = OUTPUTS_MAX;
    deploy_actor(&mut h, 0, ACTOR);
    let mut r = Run::default();
    // Activate it before the faults begin.
    let first = h.invoke(0, ACTOR, b"");
    r.invoked.insert((0, first), h.now);
    let until = h.now + Duration::from_secs(2);
    run_to(&mut h, until)?;

    let start = h.now;
    h.faults.loss = s.loss;
    h.faults.delay_max = Duration::from_millis(s.delay_ms);
    let mut plan: Vec<(u64, Action)> = Vec::new();
    plan.extend(s.calls.iter().map(|&(t, k)| (t, Action::Call(k))));
    plan.extend(s.migrations.iter().map(|&(t, k, to)| (t, Action::Migrate(k, to))));
    if let Some((t, d, side)) = &s.partition {
        plan.push((*t, Action::Cut(side[..s.nodes].to_vec())));
        plan.push((t + d, Action::Heal));
    }
    if let Some((t, d, k)) = s.crash {
        plan.push((t, Action::Crash(k)));
        plan.push((t + d, Action::Restart(k)));
    }
    plan.sort_by_key(|(t, _)| *t);
    for (t, action) in plan {
        run_to(&mut h, start + Duration::from_millis(t))?;
        match action {
            Action::Call(k) if h.nodes[k].is_some() => {
                let inv = h.invoke(k, ACTOR, b"");
                r.invoked.insert((k, inv), h.now);
            }
            Action::Migrate(k, to) => {
                let now = h.clock(k);
                if let Some(n) = h.nodes[k].as_mut() {
                    let _ = n.handle_migrate(now, ACTOR, id(to), "prop".into());
                    h.drain(k);
                }
            }
            Action::Cut(side) => {
                let left: Vec<usize> = (0..s.nodes).filter(|&k| side[k]).collect();
                let right: Vec<usize> = (0..s.nodes).filter(|&k| !side[k]).collect();
                h.partition(&left, &right);
            }
            Action::Heal => h.cut.clear(),
            Action::Crash(k) if h.nodes[k].is_some() => {
                // A crashed process runs none of its pending executions.
                h.executions.retain(|(j, _)| *j != k);
                h.crash(k);
                r.crashes.push((k, h.now));
            }
            Action::Restart(k) if h.nodes[k].is_none() => h.restart(k),
            _ => {}
        }
    }
    run_to(&mut h, start + CHAOS)?;

    // Heal: no more faults, every node up, and time for every deadline to pass.
    h.faults.loss = 0.0;
    h.faults.delay_max = Duration::ZERO;
    h.cut.clear();
    for k in 0..s.nodes {
        if h.nodes[k].is_none() {
            h.restart(k);
        }
    }
    let until = h.now + HEAL;
    run_to(&mut h, until)?;
    if std::env::var_os("LIQUID_FENCING_DEBUG").is_some() {
        for k in 0..s.nodes {
            if let Some(n) = h.nodes[k].as_ref() {
                eprintln!("node {k}: {}", n.functions().debug_calls());
            }
        }
        for e in &h.migration_events {
            eprintln!("{e:?}");
        }
    }
    check_answers(&h, &r)
}

fn check_answers(h: &H, r: &Run) -> Result<(), String> {
    let mut answered: BTreeMap<(usize, u64), usize> = BTreeMap::new();
    // (invoked, acknowledged, count) of every successful call.
    let mut acked: Vec<(Time, Time, i64, (usize, u64))> = Vec::new();
    for a in &h.answers {
        *answered.entry((a.node, a.id)).or_default() += 1;
        let Some(&invoked) = r.invoked.get(&(a.node, a.id)) else {
            return Err(format!("an answer to a call never made: {a:?}"));
        };
        if let Ok(bytes) = &a.result {
            let count = std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| format!("not a count: {a:?}"))?;
            acked.push((invoked, a.at, count, (a.node, a.id)));
        }
    }
    for (&(k, inv), &at) in &r.invoked {
        let n = answered.get(&(k, inv)).copied().unwrap_or(0);
        let crashed_since = r.crashes.iter().any(|&(c, t)| c == k && t >= at);
        if n > 1 || (n == 0 && !crashed_since) {
            return Err(format!("call {inv} at node {k} (invoked {at:?}) was answered {n} times"));
        }
    }
    let mut seen: BTreeMap<i64, (usize, u64)> = BTreeMap::new();
    for &(_, _, count, call) in &acked {
        if let Some(other) = seen.insert(count, call) {
            return Err(format!("count {count} acknowledged twice: calls {other:?} and {call:?}"));
        }
    }
    for a in &acked {
        for b in &acked {
            if a.1 < b.0 && a.2 >= b.2 {
                return Err(format!(
                    "lost update: call {:?} acknowledged {} at {:?}, then call {:?} invoked at {:?} answered {}",
                    a.3, a.2, a.1, b.3, b.0, b.2
                ));
            }
        }
    }
    Ok(())
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    // A fixed seed keeps the suite reproducible; sweep others with LIQUID_FENCING_SEED and
    // LIQUID_FENCING_CASES (the failing scenario is printed in full).
    #![proptest_config(ProptestConfig {
        rng_seed: RngSeed::Fixed(env_or("LIQUID_FENCING_SEED", SEED)),
        ..ProptestConfig::with_cases(env_or("LIQUID_FENCING_CASES", 48) as u32)
    })]

    /// Each node's clock drifts by up to [`LeaseConfig::drift`] (so two clocks' rates may
    /// differ by twice the bound the lease assumes: a stronger test than the lease promises).
    #[test]
    fn a_migration_under_loss_delay_and_drift_never_splits_or_loses_state(s in scenario()) {
        if let Err(e) = run(&s, LeaseConfig::default().drift) {
            prop_assert!(false, "{}\nscenario: {:?}", e, s);
        }
    }
}

/// The counterexample the property found (reduced by hand): a source that crashes right after handing off and restarts while the
/// target cannot reach the granters. The registry still names the source as home at epoch
/// `e` (the target has not announced itself), so a call at the restarted source starts an
/// activation at `e`; once its quiet time ends, its own granter (which promised `e + 1` to
/// the target) answers its lease ask synchronously with `Fenced`; `fence` restarts the held
/// call, which reads the registry, which names this node again, which starts an activation
/// at `e` again, and so on: the node looped at one instant and never returned. Fixed by
/// remembering the epoch a node was fenced at (and, durably, the one it handed over): a
/// record naming it there is stale, and calls wait for the new home instead.
#[test]
fn a_source_restarted_after_handing_off_does_not_loop() {
    let mut h = H::with_faults(3, Default::default(), Faults::default());
    h.outputs_max = OUTPUTS_MAX;
    deploy_actor(&mut h, 0, ACTOR);
    let mut r = Run::default();
    let call = |h: &mut H, r: &mut Run, k: usize| {
        let inv = h.invoke(k, ACTOR, b"");
        r.invoked.insert((k, inv), h.now);
    };
    for _ in 0..3 {
        call(&mut h, &mut r, 2);
        let t = h.now + Duration::from_millis(500);
        run_to(&mut h, t).unwrap();
    }
    let now = h.clock(0);
    assert!(h.nodes[0].as_mut().is_some_and(|n| n.handle_migrate(now, ACTOR, id(1), "test".into()).is_ok()));
    h.drain(0);
    while !h.deactivated.iter().any(|(k, _, _)| *k == 0) {
        let t = h.now + Duration::from_millis(1);
        run_to(&mut h, t).unwrap();
    }
    // Handed off: the target is cut from the granters, and the source crashes and restarts.
    h.partition(&[1], &[0, 2]);
    h.crash(0);
    r.crashes.push((0, h.now));
    h.restart(0);
    let mut res = Ok(());
    for _ in 0..30 {
        call(&mut h, &mut r, 2);
        let t = h.now + Duration::from_millis(500);
        res = res.and_then(|()| run_to(&mut h, t));
    }
    h.cut.clear();
    let t = h.now + HEAL;
    res = res.and_then(|()| run_to(&mut h, t));
    assert_eq!(res.and_then(|()| check_answers(&h, &r)), Ok(()));
}

/// Found by the property once standbys took over (issue 18): kept as a regression test.
#[test]
fn a_call_during_a_move_after_a_partition_is_answered() {
    let s = Scenario {
        nodes: 4,
        seed: 289382623997312682,
        loss: 0.0,
        delay_ms: 0,
        drift: vec![0.0; 5],
        calls: vec![(37917, 2)],
        migrations: vec![(38158, 0, 2), (16067, 0, 2)],
        partition: Some((12006, 6001, vec![false, true, false, true, false])),
        crash: None,
    };
    assert_eq!(run(&s, LeaseConfig::default().drift), Ok(()));
}
