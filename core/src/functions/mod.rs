//! Functions in the core: where each call runs, forwarding and redirects, exactly one outcome
//! per invocation, actors (activation, leases, migration, fencing), the serving sets of
//! stateless functions, and applying the placement policy's decisions
//! ([`crate::placement`] makes them).
//!
//! [`Functions`] is a composition of parts that own their state, one file or folder each:
//! - [`registry`](mod@registry): every read and write of the registry documents (objects in the reserved
//!   namespace `liquid-fn`, replicated to every node), and the writes waiting for their
//!   answer;
//! - [`invocations`]: calls in progress — routing, forwarding, execution, exactly one outcome
//!   — and what each call measured;
//! - [`actors`]: activations, leases ([`actors::lease`]), migrations and fencing;
//! - [`serving`]: the serving sets of stateless functions that only some nodes may run;
//! - [`policy`]: the facts the placement policy reads and the decisions it made.
//!
//! Execution itself is an output ([`Execution`]): the driver runs the module (wasmtime, with
//! the limits of its manifest) and answers with [`Functions::handle_executed`]. The module's
//! bytes are fetched by the driver from the `sources` the core lists, by hash.
//!
//! Where a call runs (until the placement policy of docs/placement.md decides it): the nodes
//! whose tier, labels and pin match the manifest are *eligible*. A stateless function runs
//! where it is invoked if that node is eligible, else on the eligible node with the best
//! rendezvous score for the function's name; an actor always runs on that best node (one
//! activation). A node asked to run a call that, in its own view, belongs elsewhere answers
//! with a redirect, and the caller follows it (at most [`HOPS_MAX`] hops).

pub mod actors;
pub mod invocations;
pub mod message;
pub mod policy;
#[cfg(test)]
mod prop;
pub mod registry;
pub mod serving;

use std::time::Duration;

pub use actors::{ActivationView, ActorRun, Handoff, MigrationEvent, MigrationStats, Phase, Prefetch};
pub use invocations::{
    FACTS_HALF_LIFE_S, HOPS_MAX, Stats, allows, choose, describe_placement, eligible, host_answer, host_invoke_answer,
    host_request, json_len, placement_of, secs,
};
pub use message::Message;
pub use registry::{
    Entry, PackageSignature, PlacementChange, PlacementRecord, REGISTRY_NS, RESERVED_PREFIX, Registered, deploy_ops,
    initial_placement, registry, registry_object,
};

use crate::placement::Facts;
use serde::{Deserialize, Serialize};
use wasm_host::{InvokeError, Manifest, ModuleHash};

use crate::membership::Membership;
use crate::objects::{Objects, Reply};
use crate::shared::Sink;
use crate::{NodeId, Time};

/// Tuning.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a forwarded call may take beyond its manifest's wall-time limit before the
    /// caller gives up on the node it was sent to (module fetch and compile included).
    pub forward_margin: Duration,
    /// Actor leases.
    pub lease: actors::lease::LeaseConfig,
    /// How often the home of a function runs the placement policy; `None`: never (placement
    /// stays where it was deployed unless moved by hand).
    pub policy_every: Option<Duration>,
    /// The policy's knobs.
    pub policy: crate::placement::Params,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            forward_margin: Duration::from_secs(15),
            lease: actors::lease::LeaseConfig::default(),
            policy_every: Some(Duration::from_secs(10)),
            policy: crate::placement::Params::default(),
        }
    }
}

/// An invocation's id at the driver (the API's), unique per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvokeId(pub u64);

/// An execution's id, unique per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExecId(pub u64);

/// Run this function here, now.
#[derive(Clone, Debug)]
pub struct Execution {
    /// Answer with [`Functions::handle_executed`] under this id.
    pub id: ExecId,
    /// The function.
    pub name: String,
    /// Its module.
    pub hash: ModuleHash,
    /// The module's size (for progress and simulated transfer time).
    pub size: u64,
    /// Its manifest (limits, namespaces, kind).
    pub manifest: Manifest,
    /// The input.
    pub input: Vec<u8>,
    /// The invocation's time (the driver maps it to Unix time).
    pub now: Time,
    /// Seeds the function's randomness.
    pub seed: u64,
    /// Nesting depth.
    pub depth: u32,
    /// Nodes holding the module bytes, best first, if this node lacks them.
    pub sources: Vec<NodeId>,
    /// The package's signature, from the registry (the agent checks it against the
    /// publishers it trusts before running the module).
    pub signature: Option<PackageSignature>,
    /// An actor's call: which activation runs it.
    pub actor: Option<ActorRun>,
}

/// What the driver reports after an execution.
#[derive(Clone, Debug)]
pub struct Executed {
    /// The output, or why there is none.
    pub result: Result<Vec<u8>, InvokeError>,
    /// Fuel used.
    pub fuel: u64,
    /// The module bytes were fetched from a peer for this execution (this node now holds
    /// them and says so in the registry).
    pub fetched: bool,
    /// An actor's state after the call, as checkpointed (bytes; 0: not measured). The
    /// placement policy counts it in the cost of a move.
    pub state_bytes: u64,
}

/// What the functions subsystem asks of the node: the node maps it into its own
/// [`Output`](crate::Output).
#[derive(Clone, Debug)]
pub enum Output {
    /// Send `msg` to `to`.
    Send {
        /// The recipient.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Run a function here; answered with [`Functions::handle_executed`].
    Execute(Box<Execution>),
    /// The outcome of [`Functions::handle_invoke`]: exactly one per invocation.
    Invoked {
        /// The invocation's id.
        id: InvokeId,
        /// The output, or why there is none.
        result: Result<Vec<u8>, InvokeError>,
    },
    /// Fetch and compile a module ahead of a migration or a warm-up.
    Prefetch(Box<Prefetch>),
    /// Snapshot an actor and stream it to another node.
    Handoff(Box<Handoff>),
    /// Drop actor `name`'s live instance (its activation here ended); keep its checkpoints.
    Deactivate {
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// The epoch that ended.
        epoch: u64,
    },
    /// An actor's activation or migration took a step here.
    Migration(MigrationEvent),
}

impl Output {
    fn send(to: NodeId, msg: Message) -> Output {
        Output::Send { to, msg }
    }
}

/// Where the functions subsystem puts its outputs and those of the object requests it makes
/// (the node's queue, which keeps them in one order).
pub trait Outbox: Sink<Output> + Sink<crate::objects::Output> {}

impl<T: Sink<Output> + Sink<crate::objects::Output> + ?Sized> Outbox for T {}

/// Records an actor's activation or migration step as an output (logs, metrics, the
/// simulator's record).
fn event(
    out: &mut (impl Sink<Output> + ?Sized),
    name: &str,
    what: &'static str,
    peer: Option<NodeId>,
    epoch: u64,
    reason: String,
) {
    out.push(Output::Migration(MigrationEvent { name: name.to_string(), what, peer, epoch, reason }));
}

/// The functions subsystem: its parts, each owning its state.
pub struct Functions {
    cfg: Config,
    me: NodeId,
    registry: registry::Registry,
    calls: invocations::Calls,
    actors: actors::Actors,
    serving: serving::Serving,
    decider: policy::Decider,
}

impl Functions {
    /// Pending calls and their stages, for debugging tests.
    #[cfg(test)]
    pub(crate) fn debug_calls(&self) -> String {
        let calls: Vec<String> = self
            .calls
            .pending
            .iter()
            .map(|(k, p)| format!("{k}: {} {:?} arrived {:?}", p.name, p.stage, p.arrived))
            .collect();
        let parked: Vec<_> = self.actors.parked.iter().collect();
        let active: Vec<String> = self
            .actors
            .active
            .iter()
            .map(|(n, a)| format!("{n} e{} {:?} held {:?} running {:?}", a.holder.epoch, a.phase, a.held, a.running))
            .collect();
        format!("pending [{}] parked {parked:?} active {active:?}", calls.join("; "))
    }
}

impl Functions {
    /// A fresh subsystem; `seed` makes executions' randomness reproducible.
    pub fn new(cfg: Config, me: NodeId, seed: u64, now: Time) -> Functions {
        Functions {
            registry: registry::Registry::default(),
            calls: invocations::Calls::new(seed),
            actors: actors::Actors::new(cfg.lease, now),
            serving: serving::Serving::default(),
            decider: policy::Decider::new(now + cfg.policy_every.unwrap_or(Duration::ZERO)),
            cfg,
            me,
        }
    }

    /// The facts measured here about `function`'s calls (those it ran on this node).
    pub fn facts(&self, function: &str) -> Option<&Facts<NodeId>> {
        self.decider.facts.get(function)
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.calls.stats
    }

    /// Invocations in progress here (waiting, forwarded or executing).
    pub fn in_flight(&self) -> usize {
        self.calls.pending.len()
    }

    /// The object layer answered a request this subsystem made
    /// ([`Objects::handle_internal_request`]) with this token.
    pub fn handle_object_reply(&mut self, now: Time, token: u64, reply: Reply, ctx: &mut Ctx<'_>) {
        let ok = matches!(reply, Reply::Value { .. });
        match self.registry.answered(token) {
            Some(registry::Awaiting::Route(key)) => self.resolved(now, key, reply, ctx),
            Some(registry::Awaiting::Grant { to, msg }) if ok => self.reply_lease(now, to, msg, ctx),
            Some(registry::Awaiting::HandOff { name, epoch }) => self.mark_written(now, name, epoch, ok, ctx),
            // A holder record, a grant whose promise failed, or a call already answered.
            _ => {}
        }
    }

    /// A message from a peer.
    pub fn handle_message(&mut self, now: Time, from: NodeId, msg: Message, ctx: &mut Ctx<'_>) {
        match msg {
            m @ (Message::Invoke { .. } | Message::Done { .. } | Message::Redirect { .. }) => {
                self.handle_call_message(now, from, m, ctx)
            }
            m @ (Message::Facts { .. } | Message::Warm { .. } | Message::Warmed { .. }) => {
                self.handle_serving_message(now, from, m, ctx)
            }
            other => self.handle_lease_message(now, from, other, ctx),
        }
    }

    /// A member went down: calls forwarded to it fail now rather than at their deadline.
    pub fn peer_down(&mut self, now: Time, peer: NodeId, ctx: &mut Ctx<'_>) {
        // A migration to it rolls back now rather than at its step deadline.
        self.target_down(now, peer, ctx);
        self.lost_to(peer, ctx.out);
    }

    /// Deadlines of forwarded and held calls, lease rounds, migration steps, the policy.
    pub fn handle_timeout(&mut self, now: Time, ctx: &mut Ctx<'_>) {
        self.actor_timeouts(now, ctx);
        self.serving_timeouts(now, ctx);
        if let Some(every) = self.cfg.policy_every
            && now >= self.decider.next_run
        {
            self.decider.next_run = now + every;
            self.run_policy(now, ctx);
            self.stateless_policy(now, ctx);
        }
        self.late_calls(now, ctx.out);
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Time {
        let busy =
            !self.actors.active.is_empty() || !self.decider.facts.is_empty() || !self.serving.remote_facts.is_empty();
        let policy = if self.cfg.policy_every.is_some() && busy { self.decider.next_run } else { Time(u64::MAX) };
        let parked = self.actors.parked.values().min().copied().unwrap_or(Time(u64::MAX));
        let t = self.actor_poll_timeout().min(policy).min(parked).min(self.serving_poll_timeout());
        self.calls.poll_timeout().min(t)
    }
}

/// What the subsystem may touch while handling an input.
pub struct Ctx<'a> {
    /// The objects (for registry reads and holder records).
    pub objects: &'a mut Objects,
    /// The membership view.
    pub membership: &'a Membership,
    /// Outputs.
    pub out: &'a mut dyn Outbox,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value as Json;
    use state_sync::ObjectName;
    use state_sync::ops::Op;
    use wasm_host::Kind;

    use super::*;
    use crate::objects::{Change, Durability, Request, RequestId};
    use crate::testing::Cluster as H;

    fn deploy(h: &mut H, k: usize, manifest: Manifest) {
        h.deploy(k, manifest);
    }

    #[test]
    fn a_constrained_stateless_function_gets_a_serving_node_at_its_busy_site() {
        use crate::Tier;
        let layout = [
            (Tier::Cloud, None),
            (Tier::Fog, Some("b")),
            (Tier::Edge, Some("a")),
            (Tier::Fog, Some("a")),
            (Tier::Edge, Some("b")),
        ];
        let cfg = Config { policy_every: Some(Duration::from_secs(2)), ..Default::default() };
        let mut h = H::with_layout(&layout, cfg);
        let mut m = Manifest::for_module("near");
        m.placement.tier = Some("fog".into());
        deploy(&mut h, 3, m);
        // The edge devices of sites a and b call it; only fog nodes may run it. With no
        // serving set, the rendezvous choice (node 1, at site b) runs every call and ships
        // its facts to the home (node 3, at site a). The home gives each busy site its own
        // fog node: itself for site a, and node 1 for site b, warmed first.
        let mut ran_at: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..80 {
            let caller = if i % 2 == 0 { 2 } else { 4 };
            let inv = h.invoke(caller, "near", b"");
            h.run_for(Duration::from_millis(50));
            ran_at.entry(caller).or_default().extend(h.executions.iter().map(|(k, _)| *k));
            h.execute_all(|_, _| ok(b"done"));
            h.run_for(Duration::from_millis(200));
            assert_eq!(h.invoked.remove(&(caller, inv)), Some(Ok(b"done".to_vec())), "answered once, never failed");
        }
        let reg = registry_object("near").ok().and_then(|o| h.nodes[2].as_ref()?.objects().doc(&o).map(|d| d.value()));
        let placement = reg.and_then(|v| Registered::from_value(&v).ok()).and_then(|r| r.placement);
        let mut serving = placement.map(|p| p.serving).unwrap_or_default();
        serving.sort();
        assert_eq!(serving, vec![crate::testing::id(1), crate::testing::id(3)], "a fog node per busy site");
        let (a, b) = (&ran_at[&2], &ran_at[&4]);
        assert_eq!((a.first(), a.last()), (Some(&1), Some(&3)), "site a's calls moved to site a: {a:?}");
        assert!(b.iter().all(|k| *k == 1), "site b's calls stayed at site b: {b:?}");
    }

    #[test]
    fn a_pinned_actor_far_from_what_it_reads_gets_a_replica_next_to_it() {
        use crate::Tier;
        let layout = [(Tier::Cloud, None); 6];
        let cfg = Config { policy_every: Some(Duration::from_secs(2)), ..Default::default() };
        let mut h = H::with_layout(&layout, cfg);
        // A feed written at node 0; the actor, pinned to a node outside its replica set,
        // only reads it, so its copy lags one push behind the replicas.
        let feed = ObjectName::parse("app/feed").unwrap_or_else(|e| panic!("{e}"));
        let body = format!(r#"[{{"op":"set","path":"v","value":"{}"}}]"#, "x".repeat(2_000));
        assert!(matches!(h.write(0, "app/feed", &body), Reply::Value { .. }));
        h.run_for(Duration::from_secs(1));
        let replicas_at = |h: &mut H, k: usize| {
            let list = Request::List { prefix: "app/".into(), after: None, limit: 10 };
            match h.ask(k, list, Duration::from_secs(1)) {
                Some(Reply::List(l)) => l.into_iter().find(|o| o.object == feed).map(|o| o.replicas),
                other => panic!("{other:?}"),
            }
        };
        let set = replicas_at(&mut h, 0).unwrap_or_default();
        let p = (0..6).find(|k| !set.contains(&crate::testing::id(*k))).unwrap_or_else(|| panic!("{set:?}"));
        let mut m = Manifest::for_module("reader");
        m.kind = Kind::Actor;
        m.placement.node = Some(crate::testing::id(p).to_string());
        deploy(&mut h, p, m);
        for i in 0..60 {
            let inv = h.invoke(p, "reader", b"");
            h.run_for(Duration::from_millis(50));
            for (k, exec) in h.executions.clone() {
                let now = h.clock(k);
                if let Some(n) = h.nodes[k].as_mut() {
                    let get = Request::Get { object: feed.clone(), after: None };
                    n.handle_host_request(now, exec.id, RequestId(997_000 + exec.id.0), get);
                }
            }
            h.run_for(Duration::from_millis(20));
            h.execute_all(|_, _| ok(b"read"));
            h.run_for(Duration::from_millis(130));
            assert_eq!(h.invoked.remove(&(p, inv)), Some(Ok(b"read".to_vec())), "call {i}");
        }
        // The home added itself to the feed's replica set; every node now counts it.
        let me = crate::testing::id(p);
        let mut holders = 0;
        for k in 0..6 {
            if let Some(set) = replicas_at(&mut h, k) {
                holders += 1;
                assert!(set.contains(&me), "node {k} does not count the added replica: {set:?}");
            }
        }
        let expected = (0..6).filter(|k| *k == 0 || *k == p || set.contains(&crate::testing::id(*k))).count();
        assert_eq!(holders, expected, "the writer, the replicas and the home hold it");
        let stats = h.nodes[p].as_ref().map(|n| n.functions().migration_stats().replicas_added);
        assert_eq!(stats, Some(1), "added once, not again once it exists");
        // The facts now see the replica at home: nothing more to add, and the decision says so.
        let decision = h.nodes[p].as_ref().and_then(|n| n.functions().decision("reader").cloned());
        assert!(decision.is_some_and(|d| d.to_string().contains("Pinned")), "stays pinned");

        // The actor stops reading the feed: once its reads have decayed away (60 reads at a
        // 60 s half-life fall below half a read after about 7 minutes), its home prunes the
        // replica, and every node counts the feed's replica set without it again.
        h.run_for(Duration::from_secs(480));
        let pruned = h.nodes[p].as_ref().map(|n| n.functions().migration_stats().replicas_pruned);
        assert_eq!(pruned, Some(1), "pruned once the actor stopped reading the feed");
        for k in 0..6 {
            if let Some(set) = replicas_at(&mut h, k) {
                assert!(!set.contains(&me), "node {k} still counts the pruned replica: {set:?}");
            }
        }
    }

    #[test]
    fn added_replicas_go_stale_when_the_actor_moves_away_or_stops_reading() {
        use crate::placement::{Access, Call, Facts};
        let (me, other) = (crate::testing::id(1), crate::testing::id(2));
        let (feed, log) = (
            ObjectName::parse("app/feed").unwrap_or_else(|e| panic!("{e}")),
            ObjectName::parse("app/log").unwrap_or_else(|e| panic!("{e}")),
        );
        let added = vec![(feed.clone(), me), (log.clone(), me), (feed.clone(), other)];
        let mut facts: Facts<NodeId> = Facts::new(FACTS_HALF_LIFE_S);
        let t = |s: u64| Time::from_micros(s * 1_000_000);
        for i in 0..100u64 {
            let reads = [Access { object: "app/feed", reads: 1, writes: 0, read_bytes: 10, write_bytes: 0 }];
            let call = Call { origin: me, site: None, fuel: 1, latency_ms: 1.0, accesses: &reads };
            facts.observe(secs(t(i * 6)), &call);
        }
        let now = t(600);
        let names = |v: Vec<(ObjectName, NodeId, &str)>| v.into_iter().map(|(o, n, _)| (o, n)).collect::<Vec<_>>();
        // Activated just now: only the replica left behind at another node is stale.
        assert_eq!(names(policy::stale_replicas(now, me, &added, Some(&facts), t(590))), vec![(feed.clone(), other)]);
        // Serving here for long: the object it still reads stays, the one it never reads goes.
        assert_eq!(
            names(policy::stale_replicas(now, me, &added, Some(&facts), t(0))),
            vec![(log.clone(), me), (feed.clone(), other)]
        );
        // Ten minutes after its last read, the feed goes too.
        let later = t(600 + 600);
        assert_eq!(names(policy::stale_replicas(later, me, &added, Some(&facts), t(0))).len(), 3);
        // No facts at all (a restart): only what is elsewhere.
        assert_eq!(names(policy::stale_replicas(now, me, &added, None, t(0))), vec![(feed, other)]);
    }

    fn ok(out: &[u8]) -> Executed {
        Executed { result: Ok(out.to_vec()), fuel: 1, fetched: true, state_bytes: 0 }
    }

    #[test]
    fn a_stateless_call_runs_where_it_is_invoked_and_fetches_from_the_deployer() {
        let mut h = H::new(3);
        deploy(&mut h, 0, Manifest::for_module("f"));
        let id = h.invoke(2, "f", b"in");
        h.run_for(Duration::from_millis(100));
        assert_eq!(h.executions.len(), 1);
        let (k, exec) = &h.executions[0];
        assert_eq!((*k, exec.input.as_slice()), (2, &b"in"[..]));
        assert_eq!(exec.sources, vec![crate::testing::id(0)], "the deployer holds the module");
        h.execute_all(|_, _| ok(b"out"));
        assert_eq!(h.invoked.remove(&(2, id)), Some(Ok(b"out".to_vec())));
        // The fetch was recorded: the next execution anywhere may fetch from node 2 too.
        h.run_for(Duration::from_secs(1));
        let id = h.invoke(1, "f", b"");
        h.run_for(Duration::from_millis(100));
        let mut sources = h.executions[0].1.sources.clone();
        sources.sort();
        assert_eq!(sources, vec![crate::testing::id(0), crate::testing::id(2)]);
        h.execute_all(|_, _| ok(b""));
        assert!(h.invoked.contains_key(&(1, id)));
    }

    #[test]
    fn the_serving_node_records_where_calls_come_from() {
        let mut h = H::new(3);
        let mut m = Manifest::for_module("measured");
        m.placement.node = Some(crate::testing::id(1).to_string());
        deploy(&mut h, 0, m);
        let object = ObjectName::parse("app/data").unwrap_or_else(|e| panic!("{e}"));
        let text = Json::String("x".repeat(100));
        let set = |value: Json| {
            let path = state_sync::Path::parse("v").unwrap_or_else(|e| panic!("{e}"));
            Change::Ops(vec![Op::Set { path, value, text: false }])
        };
        let write = Request::Write { object: object.clone(), change: set(text.clone()), durability: Durability::Local };
        assert!(h.ask(1, write, Duration::from_secs(5)).is_some());
        for caller in [0, 2, 2, 2] {
            h.invoke(caller, "measured", b"");
            h.run_for(Duration::from_millis(100));
            // The guest reads and writes an object (host calls) before it finishes.
            for (k, exec) in h.executions.clone() {
                let now = h.now;
                if let Some(n) = h.nodes[k].as_mut() {
                    let get = Request::Get { object: object.clone(), after: None };
                    n.handle_host_request(now, exec.id, RequestId(999_000 + exec.id.0), get);
                    let put = Request::Write {
                        object: object.clone(),
                        change: set(text.clone()),
                        durability: Durability::Local,
                    };
                    n.handle_host_request(now, exec.id, RequestId(998_000 + exec.id.0), put);
                }
            }
            h.run_for(Duration::from_millis(20));
            h.execute_all(|_, _| Executed { result: Ok(vec![]), fuel: 1000, fetched: false, state_bytes: 0 });
        }
        let now = secs(h.now);
        let node = h.nodes[1].as_ref().unwrap_or_else(|| panic!("node 1 runs"));
        let facts = node.functions().facts("measured").unwrap_or_else(|| panic!("no facts on the serving node"));
        assert!((facts.fuel_per_call(now) - 1000.0).abs() < 1e-6);
        let top = facts
            .origins
            .iter()
            .max_by(|a, b| a.calls.value(now, FACTS_HALF_LIFE_S).total_cmp(&b.calls.value(now, FACTS_HALF_LIFE_S)));
        assert_eq!(top.map(|o| o.node), Some(crate::testing::id(2)), "most calls came from node 2");
        // From the call's arrival here to its execution's end (the harness answers after 100 ms).
        assert!(facts.latency_per_call(now) >= 50.0, "{}", facts.latency_per_call(now));
        assert!(h.nodes[2].as_ref().is_some_and(|n| n.functions().facts("measured").is_none()), "only where it ran");
        let o = facts.objects.iter().find(|o| o.object == "app/data").unwrap_or_else(|| panic!("no access recorded"));
        assert!(!o.replicas.is_empty(), "the object's replica set is recorded");
        // Each call read the ~110-byte document and wrote ~100 bytes.
        let h = FACTS_HALF_LIFE_S;
        let per_call = o.bytes.value(now, h) / facts.calls.value(now, h);
        assert!((200.0..300.0).contains(&per_call), "{per_call}");
        assert!((100..150).contains(&o.size_bytes), "{}", o.size_bytes);
    }

    #[test]
    fn a_pinned_function_is_forwarded_and_answered_once() {
        let mut h = H::new(3);
        let mut m = Manifest::for_module("pinned");
        m.placement.node = Some(crate::testing::id(1).to_string());
        deploy(&mut h, 0, m);
        let id = h.invoke(2, "pinned", b"x");
        h.run_for(Duration::from_millis(100));
        assert_eq!(h.executions.len(), 1);
        assert_eq!(h.executions[0].0, 1, "runs on the pinned node");
        h.execute_all(|_, _| Executed {
            result: Err(InvokeError::Trap("boom".into())),
            fuel: 5,
            fetched: false,
            state_bytes: 0,
        });
        assert_eq!(h.invoked.remove(&(2, id)), Some(Err(InvokeError::Trap("boom".into()))));
        assert!(h.invoked.is_empty());
        assert_eq!(h.nodes[2].as_ref().map(|n| n.functions().in_flight()), Some(0));
    }

    #[test]
    fn unknown_functions_and_impossible_placements_fail_clearly() {
        let mut h = H::new(2);
        let id = h.invoke(1, "nope", b"");
        h.run_for(Duration::from_secs(6));
        assert!(matches!(h.invoked.remove(&(1, id)), Some(Err(InvokeError::NotFound(_)))));
        let id = h.invoke(1, "Not A Name", b"");
        assert!(matches!(h.invoked.remove(&(1, id)), Some(Err(InvokeError::NotFound(_)))));
        let mut m = Manifest::for_module("fog-only");
        m.placement.tier = Some("fog".into());
        deploy(&mut h, 0, m);
        let id = h.invoke(1, "fog-only", b"");
        h.run_for(Duration::from_millis(100));
        match h.invoked.remove(&(1, id)) {
            Some(Err(InvokeError::Unavailable(msg))) => assert!(msg.contains("tier fog"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_forwarded_call_fails_once_when_its_node_is_cut_off() {
        let mut h = H::new(3);
        let mut m = Manifest::for_module("far");
        m.placement.node = Some(crate::testing::id(1).to_string());
        m.limits.wall_ms = 100;
        deploy(&mut h, 0, m);
        h.partition(&[1], &[0, 2]);
        let id = h.invoke(2, "far", b"");
        h.run_for(Duration::from_secs(30));
        match h.invoked.remove(&(2, id)) {
            Some(Err(InvokeError::Unavailable(_))) => {}
            other => panic!("{other:?}"),
        }
        // The node that was cut off may still run it; its late answer changes nothing.
        h.cut.clear();
        h.execute_all(|_, _| ok(b"late"));
        h.run_for(Duration::from_secs(5));
        assert!(!h.invoked.contains_key(&(2, id)));
    }

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }
    #[test]
    fn stateless_runs_locally_when_eligible_actor_on_one_node() {
        let nodes: Vec<NodeId> = (1..=5).map(id).collect();
        let me = nodes[2];
        assert_eq!(choose("f", Kind::Stateless, &nodes, &me), Some(me));
        let actor = choose("f", Kind::Actor, &nodes, &me);
        for n in &nodes {
            assert_eq!(choose("f", Kind::Actor, &nodes, n), actor, "every node picks the same home");
        }
        assert_eq!(choose("f", Kind::Stateless, &nodes[..2], &me), choose("f", Kind::Actor, &nodes[..2], &me));
        assert_eq!(choose("f", Kind::Stateless, &[], &me), None);
    }

    #[test]
    fn registry_documents_round_trip() {
        let entry = Entry {
            hash: ModuleHash::of(b"x"),
            size: 1,
            manifest: Manifest::for_module("f"),
            deployed_by: id(1).to_string(),
            deployed_at_ms: 5,
            deleted: false,
            signature: None,
        };
        let value = serde_json::json!({
            "current": serde_json::to_value(&entry).unwrap_or_default(),
            "holders": {id(1).to_string(): true, id(2).to_string(): true, "garbage": true},
        });
        let r = Registered::from_value(&value).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.entry, entry);
        assert_eq!(r.holders.len(), 2);
        assert!(Registered::from_value(&serde_json::json!({"current": 3})).is_err());
        assert!(registry_object("Bad").is_err());
    }
}
