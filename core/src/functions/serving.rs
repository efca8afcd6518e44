//! Serving sets of stateless functions that not every node may run (a `tier`, `labels`).
//!
//! A node the manifest allows runs a call that enters at it, as always. Any other node passes
//! the call to the nearest alive node of the function's **serving set**, recorded under
//! `placement.serving` in its registry document; with no set yet, to the rendezvous choice
//! among the eligible nodes. The function's home decides the set:
//!
//! 1. every node that ran calls of such a function ships its facts to the home each policy
//!    period (`Message::Facts`, rebased to clock 0, since node clocks have different origins);
//!    the home keeps the latest from each sender and merges them with its own;
//! 2. the home runs [`Policy::spread`]: one node per busy site, the cheapest eligible node *of
//!    that site* for *its* callers, plus the home for everyone else;
//! 3. new members of the set are **warmed** first (`Message::Warm`: fetch and compile the
//!    module, answered by `Message::Warmed`); only then is the set written (routes switch),
//!    without the nodes that failed or did not answer within [`WARM_MAX`]. A call never waits
//!    on a cold node, and the old set's nodes still run what reaches them, so none fails.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::placement::{Constraints, Facts, Policy, Subject};
use serde_json::Value as Json;
use wasm_host::{Kind, Manifest, ModuleHash};

use super::actors::Prefetch;
use super::policy::{decision_rng, measured_rtt};
use super::registry::record::PlacementRecord;
use super::registry::{Registered, registry_object};
use super::{Ctx, FACTS_HALF_LIFE_S, Functions, Message, Outbox, Output, secs};
use crate::membership::Status;
use crate::{NodeId, Time};

/// How long a new serving node may take to fetch and compile the module before the set
/// switches without it.
pub const WARM_MAX: Duration = Duration::from_secs(30);

/// Facts from a sender older than this are no longer merged (it stopped serving).
const FACTS_STALE: Duration = Duration::from_secs(120);

/// Senders whose facts a home keeps per function (the oldest is dropped beyond it).
const SENDERS_MAX: usize = 64;

/// A serving set being warmed before it is written.
#[derive(Debug)]
pub(super) struct Spreading {
    want: Vec<NodeId>,
    waiting: BTreeSet<NodeId>,
    deadline: Time,
    reason: String,
}

/// Whether not every node may run functions with this manifest (only those need a set).
pub fn constrained(m: &Manifest) -> bool {
    m.placement.tier.is_some() || !m.placement.labels.is_empty() || m.placement.node.is_some()
}

/// The serving sets part's state.
#[derive(Default)]
pub(super) struct Serving {
    /// Facts peers sent about stateless functions homed here.
    pub(super) remote_facts: RemoteFacts,
    /// Serving sets being warmed before they are written.
    pub(super) spreading: BTreeMap<String, Spreading>,
    /// Warm-ups asked of this node: function → the home that asked.
    pub(super) warming: BTreeMap<String, NodeId>,
    /// When each serving set homed here last changed (its cool-down).
    pub(super) spread_at: BTreeMap<String, Time>,
}

impl Functions {
    /// The nearest alive node of `reg`'s serving set other than this one, if any: one of this
    /// node's site first, then by measured round trip.
    pub(super) fn nearest_serving(&self, reg: &Registered, ctx: &Ctx<'_>) -> Option<NodeId> {
        let pl = reg.placement.as_ref()?;
        let site = |n: &NodeId| ctx.membership.info_of(n).and_then(|i| i.labels.get("site").cloned());
        let mine = ctx.membership.me().labels.get("site").cloned();
        pl.serving
            .iter()
            .filter(|n| **n != self.me && ctx.membership.status_of(n) == Some(Status::Alive))
            .min_by_key(|n| {
                let elsewhere = mine.is_none() || site(n) != mine;
                (elsewhere, ctx.membership.rtt_of(n).unwrap_or(Duration::MAX), **n)
            })
            .copied()
    }

    /// Each policy period: ships the facts of constrained stateless functions to their homes,
    /// and decides the serving sets of those homed here.
    pub(super) fn stateless_policy(&mut self, now: Time, ctx: &mut Ctx<'_>) {
        let now_s = secs(now);
        self.serving.remote_facts.retain(|_, by| {
            by.retain(|_, (t, _)| now.since(*t) < FACTS_STALE);
            !by.is_empty()
        });
        let names: BTreeSet<String> =
            self.decider.facts.keys().chain(self.serving.remote_facts.keys()).cloned().collect();
        // Indexing every member is the costly part: only when some function is decided here.
        let mut nodes = None;
        let policy = Policy::new(self.cfg.policy.clone());
        for name in names {
            let Some(Ok(reg)) = super::registry::local_entry(ctx.objects, &name) else {
                continue;
            };
            let manifest = &reg.entry.manifest;
            if reg.entry.deleted || manifest.kind != Kind::Stateless || !constrained(manifest) {
                continue;
            }
            let Some(pl) = reg.placement.clone() else { continue };
            if pl.home != self.me {
                if let Some(f) = self.decider.facts.get(&name)
                    && f.rate(now_s) > 0.0
                {
                    let facts = Box::new(f.rebased(now_s, 0.0));
                    ctx.out.push(Output::send(pl.home, Message::Facts { name, facts }));
                }
                continue;
            }
            if !pl.auto || self.serving.spreading.contains_key(&name) {
                continue;
            }
            let mut merged = self.decider.facts.get(&name).cloned().unwrap_or_else(|| Facts::new(FACTS_HALF_LIFE_S));
            for (_, f) in self.serving.remote_facts.get(&name).into_iter().flat_map(|by| by.values()) {
                merged.merge(now_s, f);
            }
            if merged.rate(now_s) <= 0.0 {
                continue;
            }
            let subject = Subject {
                kind: Kind::Stateless,
                home: self.me,
                last_move_s: self.serving.spread_at.get(&name).map(|t| secs(*t)),
                module_bytes: reg.entry.size,
                module_holders: reg.holders.clone(),
                state_bytes: 0,
                constraints: Constraints::from_manifest(manifest, NodeId::parse),
            };
            let rtt = measured_rtt(self.me, ctx.membership);
            let mut rng = decision_rng(self.calls.seed, &name, now);
            let nodes = nodes.get_or_insert_with(|| super::policy::candidates(ctx.membership, now));
            let set = policy.spread(now_s, &subject, &merged, nodes, &rtt, &pl.serving, &mut rng);
            let mut want: Vec<NodeId> = Vec::new();
            for s in &set {
                if !want.contains(&s.node) {
                    want.push(s.node);
                }
            }
            let sites: Vec<String> = set.iter().filter_map(|s| s.site.clone()).collect();
            let reason = if sites.is_empty() {
                format!("serving set: the home only ({:.1} calls/s, no busy site of its own)", merged.rate(now_s))
            } else {
                format!("serving set: a node for each busy site ({}) and the home", sites.join(", "))
            };
            let described = Json::String(format!("{reason}: {}", ids(&want)));
            self.decider.decisions.insert(name.clone(), described);
            let (mut a, mut b) = (want.clone(), pl.serving.clone());
            a.sort();
            b.sort();
            if a == b {
                continue;
            }
            let waiting: BTreeSet<NodeId> =
                want.iter().filter(|n| **n != self.me && !pl.serving.contains(n)).copied().collect();
            for n in &waiting {
                ctx.out.push(Output::send(*n, Message::Warm { name: name.clone(), hash: reg.entry.hash }));
            }
            let spreading = Spreading { want, waiting, deadline: now + WARM_MAX, reason };
            self.serving.spreading.insert(name.clone(), spreading);
            self.settle_spreading(now, &name, ctx);
        }
    }

    /// Writes a serving set once nothing is left to warm.
    fn settle_spreading(&mut self, now: Time, name: &str, ctx: &mut Ctx<'_>) {
        let Some(sp) = self.serving.spreading.get(name) else { return };
        if !sp.waiting.is_empty() && now < sp.deadline {
            return;
        }
        let Some(sp) = self.serving.spreading.remove(name) else { return };
        // Whoever did not answer in time is left out.
        let want: Vec<NodeId> = sp.want.into_iter().filter(|n| !sp.waiting.contains(n)).collect();
        let Ok(object) = registry_object(name) else { return };
        let Some(mut pl) =
            ctx.objects.doc(&object).and_then(|d| d.value().get("placement").and_then(PlacementRecord::from_value))
        else {
            return;
        };
        if pl.home != self.me {
            return;
        }
        pl.serving = want;
        pl.reason = sp.reason;
        let Ok(op) = pl.op() else { return };
        self.serving.spread_at.insert(name.to_string(), now);
        let _ = self.write_registry(now, name, op, None, ctx);
    }

    /// Serving-set messages.
    pub(super) fn handle_serving_message(&mut self, now: Time, from: NodeId, msg: Message, ctx: &mut Ctx<'_>) {
        match msg {
            Message::Facts { name, facts } => {
                if !facts.is_sane() {
                    return;
                }
                let by = self.serving.remote_facts.entry(name).or_default();
                if !by.contains_key(&from)
                    && by.len() >= SENDERS_MAX
                    && let Some(oldest) = by.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k)
                {
                    by.remove(&oldest);
                }
                by.insert(from, (now, facts.rebased(0.0, secs(now))));
            }
            Message::Warm { name, hash } => self.warm(now, from, name, hash, ctx),
            Message::Warmed { name, result } => {
                if let Some(sp) = self.serving.spreading.get_mut(&name)
                    && sp.waiting.remove(&from)
                {
                    if result.is_err() {
                        sp.want.retain(|n| *n != from);
                    }
                    self.settle_spreading(now, &name, ctx);
                }
            }
            _ => {}
        }
    }

    /// The home asks this node to get ready to serve `name`.
    fn warm(&mut self, _now: Time, from: NodeId, name: String, hash: ModuleHash, ctx: &mut Ctx<'_>) {
        let reg = super::registry::local_entry(ctx.objects, &name);
        let refuse = |why: &str, out: &mut dyn Outbox| {
            out.push(Output::send(from, Message::Warmed { name: name.clone(), result: Err(why.to_string()) }));
        };
        let reg = match reg {
            Some(Ok(r)) if r.entry.hash == hash && !r.entry.deleted => r,
            _ => return refuse("this node's registry does not have that module", ctx.out),
        };
        if !super::allows(&reg.entry.manifest, ctx.membership.me()) {
            return refuse("the manifest's placement does not allow this node", ctx.out);
        }
        if self.actors.incoming.contains_key(&name) {
            return refuse("busy with another preparation of this function", ctx.out);
        }
        let sources = self.sources(&reg, ctx);
        self.serving.warming.insert(name.clone(), from);
        ctx.out.push(Output::Prefetch(Box::new(Prefetch {
            name,
            hash,
            size: reg.entry.size,
            manifest: reg.entry.manifest,
            sources,
        })));
    }

    /// The driver prefetched a module the home asked this node to warm. Returns `false` if
    /// no warm-up was waiting for it.
    pub(super) fn warmed(&mut self, name: &str, result: &Result<(), String>, ctx: &mut Ctx<'_>) -> bool {
        let Some(home) = self.serving.warming.remove(name) else { return false };
        ctx.out.push(Output::send(home, Message::Warmed { name: name.to_string(), result: result.clone() }));
        true
    }

    /// Serving sets whose warm-up ran out of time are written without the laggards.
    pub(super) fn serving_timeouts(&mut self, now: Time, ctx: &mut Ctx<'_>) {
        let due: Vec<String> =
            self.serving.spreading.iter().filter(|(_, s)| s.deadline <= now).map(|(n, _)| n.clone()).collect();
        for name in due {
            self.settle_spreading(now, &name, ctx);
        }
    }

    /// The next warm-up deadline.
    pub(super) fn serving_poll_timeout(&self) -> Time {
        self.serving.spreading.values().map(|s| s.deadline).min().unwrap_or(Time(u64::MAX))
    }
}

fn ids(list: &[NodeId]) -> String {
    list.iter().map(|n| n.short()).collect::<Vec<_>>().join(", ")
}

/// Facts received from peers, per function: sender → (when, facts on this node's clock).
pub(super) type RemoteFacts = BTreeMap<String, BTreeMap<NodeId, (Time, Facts<NodeId>)>>;
