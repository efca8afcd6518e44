//! The placement policy in the node: the home of each actor periodically weighs moving it
//! (docs/placement.md), from the facts it measured itself — every call of an actor runs at
//! its home, so the home sees all of them.

use crate::placement::{Candidate, Constraints, Decision, Nodes, Policy, Subject};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde_json::Value as Json;
use wasm_host::Kind;

use std::collections::BTreeMap;

use super::actors::Phase;
use super::registry::{self, Registered, record};
use super::{Ctx, Functions, event, secs};
use crate::membership::{Membership, Status};
use crate::placement::Facts;
use crate::rendezvous::hash64;
use crate::{NodeId, Time};
use state_sync::ObjectName;

/// Compute speed assumed per tier, fuel per ms (docs/placement.md: until nodes report a
/// measured speed, a cloud core is taken as four edge cores).
pub fn fuel_per_ms(tier: crate::Tier) -> f64 {
    match tier.as_str() {
        "cloud" => 1_000_000.0,
        "fog" => 500_000.0,
        _ => 250_000.0,
    }
}

/// Round trips as this node measured them, in ms: to and from itself only (other pairs are
/// unknown to it; the policy estimates them by tier and site).
pub(super) fn measured_rtt(me: NodeId, membership: &Membership) -> impl Fn(NodeId, NodeId) -> Option<f64> + '_ {
    move |a, b| {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        match (a == b, a == me, b == me) {
            (true, _, _) => Some(0.0),
            (_, true, _) => membership.rtt_of(&b).map(ms),
            (_, _, true) => membership.rtt_of(&a).map(ms),
            _ => None,
        }
    }
}

/// The random source of one decision about `name` at `now`: reproducible per node seed.
pub(super) fn decision_rng(seed: u64, name: &str, now: Time) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(hash64(format!("{seed}/{name}/{now}", now = now.0).as_bytes()))
}

/// The policy's candidates: every member, alive or not (the policy skips dead ones).
pub fn candidates(membership: &Membership, now: Time) -> Nodes<NodeId> {
    Nodes::new(membership.members(now).map(|m| Candidate {
        id: m.info.id,
        tier: m.info.tier,
        site: m.info.labels.get("site").cloned(),
        labels: m.info.labels.clone(),
        fuel_per_ms: fuel_per_ms(m.info.tier),
        slots: m.info.cpus.max(1),
        busy: 0,
        alive: m.status == Status::Alive,
    }))
}

/// The policy part's state: what this node measured of the functions it runs (the
/// policy's input) and what the policy decided about those homed here.
pub(super) struct Decider {
    /// Facts per function this node ran.
    pub(super) facts: BTreeMap<String, Facts<NodeId>>,
    /// When the placement policy runs next.
    pub(super) next_run: Time,
    /// The latest policy decision per actor homed here (for `fn where`).
    pub(super) decisions: BTreeMap<String, Json>,
}

impl Decider {
    pub(super) fn new(next_run: Time) -> Decider {
        Decider { facts: BTreeMap::new(), next_run, decisions: BTreeMap::new() }
    }
}

impl Functions {
    /// Runs the policy for every actor whose activation is here, serving, leased and on
    /// automatic placement; starts the migrations it decides.
    pub(super) fn run_policy(&mut self, now: Time, ctx: &mut Ctx<'_>) {
        let names: Vec<String> = self
            .actors
            .active
            .iter()
            .filter(|(_, a)| a.phase == Phase::Serving && a.holder.valid_for(now, std::time::Duration::ZERO))
            .map(|(n, _)| n.clone())
            .collect();
        if names.is_empty() {
            return;
        }
        let nodes = candidates(ctx.membership, now);
        let policy = Policy::new(self.cfg.policy.clone());
        for name in names {
            let Some(Ok(reg)) = registry::local_entry(ctx.objects, &name) else {
                continue;
            };
            if reg.placement.as_ref().is_some_and(|p| !p.auto) {
                self.decider.decisions.insert(name, Json::String("automatic placement is off".into()));
                continue;
            }
            let Some(act) = self.actors.active.get(&name) else { continue };
            let stale = stale_replicas(now, self.me, &reg.added_replicas, self.decider.facts.get(&name), act.since);
            if !stale.is_empty() {
                if let Err(e) = self.prune_replicas(now, &name, &reg, &stale, ctx) {
                    self.decider.decisions.insert(name, Json::String(format!("stale replicas not pruned: {e}")));
                }
                continue;
            }
            let Some(facts) = self.decider.facts.get(&name) else { continue };
            let manifest = &reg.entry.manifest;
            let subject = Subject {
                kind: Kind::Actor,
                home: self.me,
                // A first activation may move at once; a moved one waits out the cool-down.
                last_move_s: (act.holder.base != 0).then(|| secs(act.since)),
                module_bytes: reg.entry.size,
                module_holders: reg.holders.clone(),
                state_bytes: act.state_bytes,
                constraints: Constraints::from_manifest(manifest, NodeId::parse),
            };
            let rtt = measured_rtt(self.me, ctx.membership);
            let mut rng = decision_rng(self.calls.seed, &name, now);
            let decision = policy.decide(secs(now), &subject, facts, &nodes, &rtt, &mut rng);
            let described = ids_as_text(serde_json::to_value(&decision).unwrap_or(Json::Null));
            self.decider.decisions.insert(name.clone(), described.clone());
            if let Decision::AddReplica { object, near, replica, .. } = &decision {
                let why = format!(
                    "policy: {:.1} ms per call of data at {near}; gain {:.0} ms over the window vs a copy cost of {:.0} ms",
                    replica.object_ms, replica.gain_ms, replica.copy_cost_ms
                );
                if let Err(e) = self.add_replica(now, &name, &reg, object, *near, why, ctx) {
                    self.decider
                        .decisions
                        .insert(name, Json::String(format!("a replica was decided but not added: {e}")));
                }
                continue;
            }
            if let Decision::Move { to, reason, figures } = decision {
                let why = format!(
                    "policy: {reason:?}: {:.1} ms per call there vs {:.1} ms here, gain {:.0} ms over the window vs a move cost of {:.0} ms",
                    figures.best.as_ref().map_or(0.0, |b| b.cost_ms),
                    figures.home.as_ref().map_or(0.0, |h| h.cost_ms),
                    figures.gain_ms,
                    figures.move_cost_ms
                );
                let figures = serde_json::to_value(&figures).ok().map(ids_as_text);
                if let Err(e) = self.migrate(now, &name, to, why, figures, ctx) {
                    self.decider
                        .decisions
                        .insert(name, Json::String(format!("a move was decided but could not start: {e}")));
                }
            }
        }
    }

    /// Records in `name`'s registry document that `object` is also replicated at `node` (see
    /// `Objects::set_added_replicas`): every node reads the list from the replicated registry
    /// and counts `node` in the object's replica set.
    #[allow(clippy::too_many_arguments)]
    fn add_replica(
        &mut self,
        now: Time,
        name: &str,
        reg: &Registered,
        object: &str,
        node: NodeId,
        why: String,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        let object = ObjectName::parse(object).map_err(|e| e.to_string())?;
        let mut list = reg.added_replicas.clone();
        if list.iter().any(|(o, n)| *o == object && *n == node) {
            return Ok(());
        }
        if list.len() >= record::ADDED_REPLICAS_MAX {
            return Err(format!("{} replicas were added for it already", record::ADDED_REPLICAS_MAX));
        }
        list.push((object.clone(), node));
        let op = record::replicas_op(&list)?;
        self.write_registry(now, name, op, None, ctx)?;
        self.actors.migrations.replicas_added += 1;
        event(ctx.out, name, "replica_added", Some(node), 0, format!("{object}: {why}"));
        Ok(())
    }

    /// Removes `stale` entries from `name`'s added replicas (the registry's `replicas`): every
    /// node then counts the object's replica set without them.
    fn prune_replicas(
        &mut self,
        now: Time,
        name: &str,
        reg: &Registered,
        stale: &[(ObjectName, NodeId, &'static str)],
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        let list: Vec<(ObjectName, NodeId)> = reg
            .added_replicas
            .iter()
            .filter(|(o, n)| !stale.iter().any(|(so, sn, _)| so == o && sn == n))
            .cloned()
            .collect();
        let op = record::replicas_op(&list)?;
        self.write_registry(now, name, op, None, ctx)?;
        for (object, node, why) in stale {
            self.actors.migrations.replicas_pruned += 1;
            event(ctx.out, name, "replica_pruned", Some(*node), 0, format!("{object}: {why}"));
        }
        Ok(())
    }

    /// The latest policy decision for `name` made here (JSON), if any.
    pub fn decision(&self, name: &str) -> Option<&Json> {
        self.decider.decisions.get(name)
    }
}

/// Below this decayed count of accesses (reads and writes, with the facts' half-life), an
/// object added next to a function is no longer read by it: half an access left means no
/// access for about a half-life after the last one, and far fewer than the calls that
/// earned the replica.
const PRUNE_ACCESSES_BELOW: f64 = 0.5;

/// The added replicas of an actor homed here (`me`) that no longer serve it, with why:
/// - one at another node: the actor moved away from it (replicas are added at the home);
/// - one here whose object the actor's calls have stopped reading and writing — judged only
///   once the actor has run here for two half-lives of its facts, so that a fresh activation
///   (empty facts after a move or a restart) does not prune what it is about to read.
pub(super) fn stale_replicas(
    now: Time,
    me: NodeId,
    added: &[(ObjectName, NodeId)],
    facts: Option<&Facts<NodeId>>,
    since: Time,
) -> Vec<(ObjectName, NodeId, &'static str)> {
    let now_s = secs(now);
    let mut out = Vec::new();
    for (object, node) in added {
        if *node != me {
            out.push((object.clone(), *node, "the function moved away from it"));
            continue;
        }
        let Some(facts) = facts else { continue };
        if now_s - secs(since) < 2.0 * facts.half_life_s {
            continue;
        }
        let h = facts.half_life_s;
        let used = facts
            .objects
            .iter()
            .find(|o| o.object == object.as_str())
            .map_or(0.0, |o| o.reads.value(now_s, h) + o.writes.value(now_s, h));
        if used < PRUNE_ACCESSES_BELOW {
            out.push((object.clone(), *node, "the function stopped reading it"));
        }
    }
    out
}

/// Node ids inside policy JSON (`node`, `to`, `near` fields, serialized as key bytes) as
/// their text form, for people and tools.
pub fn ids_as_text(mut v: Json) -> Json {
    fn walk(v: &mut Json) {
        match v {
            Json::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if matches!(k.as_str(), "node" | "to" | "near")
                        && let Some(id) = as_id(x)
                    {
                        *x = Json::String(id.to_string());
                    } else {
                        walk(x);
                    }
                }
            }
            Json::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    fn as_id(x: &Json) -> Option<NodeId> {
        let a = x.as_array()?;
        if a.len() != 32 {
            return None;
        }
        let mut b = [0u8; 32];
        for (i, e) in a.iter().enumerate() {
            b[i] = u8::try_from(e.as_u64()?).ok()?;
        }
        Some(NodeId(b))
    }
    walk(&mut v);
    v
}
