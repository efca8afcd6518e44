//! Placement policies compared: the same scenario and seed run under each, summed up in the
//! report's `policies` array ([`PolicySummary`], charted in `report.html`).
//!
//! - [`PolicyKind::Cloud`]: every function is deployed with `tier = "cloud"` placement (its home is
//!   a cloud node: the deployer if it is one), and the placement policy is off.
//! - [`PolicyKind::Pinned`]: the home is where the function was first deployed (the scenario's
//!   `deployer`, or the rendezvous choice if the manifest does not allow it), policy off.
//! - [`PolicyKind::Liquid`]: deployed like `pinned`, and the home of each actor runs the placement
//!   policy every `[placement] every` (10 s by default) with `[placement.params]`.
//!
//! [`PolicyKind::Cloud`]: crate::PolicyKind::Cloud
//! [`PolicyKind::Pinned`]: crate::PolicyKind::Pinned
//! [`PolicyKind::Liquid`]: crate::PolicyKind::Liquid

use crate::engine::{Engine, fencing_violations};
use crate::report::{Bucket, Latency, MOVES_MAX, Move, PolicySummary, SiteLatency};

// `PolicySummary` is a report type (report.rs); it is computed here, from the engine, so the
// report does not import the engine.
impl PolicySummary {
    /// Sums up a finished run (`pending` calls still waiting; `final_ok`: the run's final check).
    pub(crate) fn of(engine: &mut Engine<'_>, pending: u64, final_ok: bool) -> PolicySummary {
        let sc = engine.sc;
        let end = engine.now;
        let m = &mut engine.fnm;
        let name = |i: u32| sc.node_name(i);
        let id_name = |id: &liquid_core::NodeId| {
            crate::sizes::index_in(&engine.ids, id).map_or_else(|| id.short().to_string(), name)
        };
        let violations = fencing_violations(&m.actor_runs, end);
        let count = |what: &str| m.migration_events.iter().filter(|r| r.event.what == what).count() as u64;
        let (migrations, started, rolled_back, fenced) =
            (count("finished"), count("started"), count("rolled_back"), count("fenced"));
        let ok = m.outcomes.get("ok").copied().unwrap_or(0);
        let failed: u64 = m.outcomes.iter().filter(|(k, _)| **k != "ok").map(|(_, v)| *v).sum();
        let mut all: Vec<u64> = m.call_log.iter().filter(|c| c.2).map(|c| c.1).collect();
        let mean = (!all.is_empty()).then(|| all.iter().sum::<u64>() as f64 / all.len() as f64 / 1e3);
        let lat = Latency::of(&mut all);
        // Slices of a sixtieth of the run, in whole seconds.
        let slice = (sc.duration.as_secs() / 60).max(1);
        let slices = sc.duration.as_secs().div_ceil(slice) as usize;
        let mut per: Vec<(Vec<u64>, u64)> = vec![(Vec::new(), 0); slices.max(1)];
        for &(sent, us, good) in &m.call_log {
            let k = ((sent.as_micros() / 1_000_000) / slice) as usize;
            let b = &mut per[k.min(slices.saturating_sub(1))];
            if good {
                b.0.push(us);
            } else {
                b.1 += 1;
            }
        }
        let mut moved = vec![0u64; per.len()];
        for r in m.migration_events.iter().filter(|r| r.event.what == "finished") {
            let k = ((r.at.as_micros() / 1_000_000) / slice) as usize;
            moved[k.min(per.len() - 1)] += 1;
        }
        let timeline = per
            .into_iter()
            .zip(moved)
            .enumerate()
            .map(|(k, ((mut lat, failed), migrations))| {
                let l = Latency::of(&mut lat);
                Bucket {
                    start_s: (k as u64 * slice) as f64,
                    calls: lat.len() as u64 + failed,
                    failed,
                    p50_ms: l.map(|l| l.p50),
                    p99_ms: l.map(|l| l.p99),
                    migrations,
                }
            })
            .collect();
        let moves = m
            .migration_events
            .iter()
            .take(MOVES_MAX)
            .map(|r| Move {
                at_s: r.at.since(liquid_core::Time::ZERO).as_secs_f64(),
                actor: r.event.name.clone(),
                what: r.event.what,
                node: name(r.node),
                peer: r.event.peer.as_ref().map(id_name),
                epoch: r.event.epoch,
            })
            .collect();
        let latency_by_site = m
            .latency_by_site
            .iter()
            .map(|(site, l)| {
                let mut l = l.clone();
                SiteLatency {
                    site: sc.sites[*site as usize].name.clone(),
                    calls: l.len(),
                    latency_ms: Latency::of(&mut l),
                }
            })
            .collect();
        PolicySummary {
            policy: engine.policy.as_str(),
            calls: m.calls,
            ok,
            failed_invocations: failed,
            lost_with_caller: m.lost_with_caller,
            pending_at_end: pending,
            p50_ms: lat.map(|l| l.p50),
            p99_ms: lat.map(|l| l.p99),
            mean_ms: mean.map(|x| (x * 1e3).round() / 1e3),
            wan_bytes: m.wan_bytes,
            wan_bytes_functions: m.wan_fn_bytes,
            wan_bytes_by_kind: m.wan_by_kind.clone(),
            handoff_bytes: m.handoff_bytes,
            migrations,
            migrations_started: started,
            rolled_back,
            fenced,
            replicas_added: count("replica_added"),
            replicas_pruned: count("replica_pruned"),
            fencing_violations: violations.len(),
            duplicate_outcomes: m.duplicate_outcomes,
            invariants_ok: final_ok && violations.is_empty() && m.duplicate_outcomes == 0,
            latency_by_site,
            timeline,
            moves,
        }
    }
}

/// The first fencing violation, described (for the final check's detail).
pub(crate) fn first_violation(engine: &Engine<'_>) -> Option<String> {
    let v = fencing_violations(&engine.fnm.actor_runs, engine.now);
    let o = v.first()?;
    let t = |x: liquid_core::Time| x.since(liquid_core::Time::ZERO).as_secs_f64();
    Some(format!(
        "fencing: {} overlapping executions; e.g. actor {} ran on {} (epoch {}, from {:.3} s) and on {} (epoch {}, from {:.3} s)",
        v.len(),
        o.name,
        engine.sc.node_name(o.a.0),
        o.a.1,
        t(o.a.2),
        engine.sc.node_name(o.b.0),
        o.b.1,
        t(o.b.2)
    ))
}
