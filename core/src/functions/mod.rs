//! Functions in the core: the registry (objects in the reserved namespace `liquid-fn`, replicated
//! to every node), choosing where an invocation runs, forwarding and redirects, and giving
//! every invocation exactly one outcome.
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

pub mod actor;
pub mod lease;
pub mod policy;
#[cfg(test)]
mod prop;
pub mod record;
pub mod serving;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

pub use actor::{ActivationView, ActorRun, Handoff, MigrationEvent, MigrationStats, Phase, Prefetch};
pub use record::Placement;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use state_sync::ObjectName;
use state_sync::ops::Op;
use wasm_host::placement::{Access, Call, Facts};
use wasm_host::{InvokeError, Kind, Manifest, ModuleHash};

use crate::membership::{Membership, Status};
use crate::node::Output;
use crate::objects::placement::{hash64, score};
use crate::objects::{Change, Durability, Objects, Reply, Request, RequestId};
use crate::{NodeId, Time};

/// The reserved object namespace of the function registry: `liquid-fn/<name>`.
pub const REGISTRY_NS: &str = "liquid-fn";

/// Namespaces starting with this are the system's own: the API and functions may read them but
/// never write them.
pub const RESERVED_PREFIX: &str = "liquid-";

/// How many times a call may be passed on (forwards plus redirects).
pub const HOPS_MAX: u8 = 3;

/// Request ids at or above this are the functions subsystem's own object requests.
pub const INTERNAL_REQUEST: u64 = 1 << 62;

/// Tuning.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a forwarded call may take beyond its manifest's wall-time limit before the
    /// caller gives up on the node it was sent to (module fetch and compile included).
    pub forward_margin: Duration,
    /// Actor leases.
    pub lease: lease::LeaseConfig,
    /// How often the home of a function runs the placement policy; `None`: never (placement
    /// stays where it was deployed unless moved by hand).
    pub policy_every: Option<Duration>,
    /// The policy's knobs.
    pub policy: wasm_host::placement::Params,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            forward_margin: Duration::from_secs(15),
            lease: lease::LeaseConfig::default(),
            policy_every: Some(Duration::from_secs(10)),
            policy: wasm_host::placement::Params::default(),
        }
    }
}

/// A registered function, as stored at `liquid-fn/<name>` under `current`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The module's hash.
    pub hash: ModuleHash,
    /// The module's size, bytes.
    pub size: u64,
    /// The manifest.
    pub manifest: Manifest,
    /// The node it was deployed on (a peer id).
    pub deployed_by: String,
    /// When, Unix ms (for humans).
    pub deployed_at_ms: u64,
    /// Set by `fn rm`: the name is free and calls get "not found".
    #[serde(default)]
    pub deleted: bool,
}

/// A registry document: the current entry and the nodes known to hold the module's bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    /// The entry.
    pub entry: Entry,
    /// Nodes that hold the module (the deployer, and every node that fetched it).
    pub holders: Vec<NodeId>,
    /// Where it runs, if recorded.
    pub placement: Option<Placement>,
    /// Per node, the highest epoch of the actor it handed over (made durable before its
    /// snapshot left): it never serves at that epoch again.
    pub handoffs: BTreeMap<NodeId, u64>,
    /// Replicas placement added next to the function (`replicas`; see
    /// [`record::replicas_op`]): each object is also replicated at its node.
    pub added_replicas: Vec<(ObjectName, NodeId)>,
}

impl Registered {
    /// Reads a registry document's JSON value.
    pub fn from_value(value: &Json) -> Result<Registered, String> {
        let entry: Entry = serde_json::from_value(value.get("current").cloned().unwrap_or(Json::Null))
            .map_err(|e| format!("damaged registry entry: {e}"))?;
        let holders = value
            .get("holders")
            .and_then(Json::as_object)
            .map(|m| {
                m.iter().filter(|(_, v)| v.as_bool() == Some(true)).filter_map(|(k, _)| NodeId::parse(k)).collect()
            })
            .unwrap_or_default();
        let placement = value.get("placement").and_then(Placement::from_value);
        let handoffs = value
            .get("handoffs")
            .and_then(Json::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((NodeId::parse(k)?, v.as_u64()?))).collect())
            .unwrap_or_default();
        let added_replicas = record::added_replicas(value);
        Ok(Registered { entry, holders, placement, handoffs, added_replicas })
    }
}

/// Function `name`'s registry entry as this node holds it (`None`: not here; `Err`: damaged).
pub(super) fn local_entry(objects: &Objects, name: &str) -> Option<Result<Registered, String>> {
    let object = registry_object(name).ok()?;
    objects.doc(&object).map(|d| Registered::from_value(&d.value()))
}

/// The registry object of function `name`.
pub fn registry_object(name: &str) -> Result<ObjectName, String> {
    wasm_host::manifest::validate_name(name).map_err(|e| e.to_string())?;
    ObjectName::parse(&format!("{REGISTRY_NS}/{name}")).map_err(|e| e.to_string())
}

/// The operations that register `entry` (deploy), record this node as a holder, and set the
/// function's placement (see [`initial_placement`]).
pub fn deploy_ops(entry: &Entry, me: &NodeId, placement: &Placement) -> Result<Vec<Op>, String> {
    let value = serde_json::to_value(entry).map_err(|e| e.to_string())?;
    let parse = |p: &str| state_sync::Path::parse(p).map_err(|e| e.to_string());
    Ok(vec![
        Op::Set { path: parse("current")?, value, text: false },
        Op::Set { path: parse(&format!("holders.{me}"))?, value: Json::Bool(true), text: false },
        placement.op()?,
    ])
}

/// Where a function deployed from this node starts: its previous home if it had one and the
/// manifest still allows it, else this node if allowed, else the eligible node chosen by
/// rendezvous hashing. A (re)deployed actor starts a new epoch from fresh state; its lease
/// granters are kept, or chosen among the alive nodes by rendezvous hashing.
pub fn initial_placement(
    manifest: &Manifest,
    objects: &Objects,
    membership: &Membership,
    now: Time,
    reason: &str,
) -> Result<Placement, String> {
    let previous = registry_object(&manifest.name)
        .ok()
        .and_then(|o| objects.doc(&o).and_then(|d| d.value().get("placement").and_then(Placement::from_value)));
    let me = membership.me();
    let eligible = eligible(manifest, membership, now);
    let home = match &previous {
        Some(p) if eligible.contains(&p.home) => p.home,
        _ if allows(manifest, me) => me.id,
        _ => match choose(&manifest.name, Kind::Actor, &eligible, &me.id) {
            Some(h) => h,
            // A stateless function may wait for a matching node to join; an actor needs a home.
            None if manifest.kind == Kind::Stateless => me.id,
            None => {
                return Err(format!(
                    "no alive node matches the placement of actor {:?} ({})",
                    manifest.name,
                    describe(manifest)
                ));
            }
        },
    };
    let granters = match &previous {
        Some(p) if !p.granters.is_empty() => p.granters.clone(),
        _ => {
            let alive: Vec<NodeId> =
                membership.members(now).filter(|m| m.status == Status::Alive).map(|m| m.info.id).collect();
            let f = hash64(format!("granters/{}", manifest.name).as_bytes());
            let mut ranked: Vec<(u64, NodeId)> =
                alive.into_iter().map(|id| (score(f, hash64(&id.to_peer_id_bytes())), id)).collect();
            ranked.sort_by(|a, b| b.cmp(a));
            ranked.into_iter().take(record::GRANTERS).map(|(_, id)| id).collect()
        }
    };
    Ok(Placement {
        home,
        epoch: previous.as_ref().map_or(1, |p| p.epoch + 1),
        base: 0,
        serving: Vec::new(),
        // A pin keeps the policy on: it never moves the function off its node, but may still
        // add replicas of what it reads next to it.
        auto: previous.as_ref().is_none_or(|p| p.auto),
        granters,
        reason: reason.to_string(),
        figures: None,
    })
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

/// Function messages between nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// Run this call (or pass it on).
    Invoke {
        /// The caller's id for it.
        id: u64,
        /// The function.
        name: String,
        /// The input.
        #[serde(with = "serde_bytes")]
        input: Vec<u8>,
        /// Nesting depth.
        depth: u32,
        /// How many times it was passed on already.
        hops: u8,
    },
    /// The outcome of an `Invoke`.
    Done {
        /// The caller's id.
        id: u64,
        /// The output or the error.
        result: Result<serde_bytes::ByteBuf, InvokeError>,
    },
    /// "Not here: try `to`." The caller follows it.
    Redirect {
        /// The caller's id.
        id: u64,
        /// Where the function runs in the answering node's view.
        to: NodeId,
    },
    /// Lease actor `name` at `epoch` to the sender, whose state is that of epoch `base`.
    LeaseAsk {
        /// The actor.
        name: String,
        /// The epoch.
        epoch: u64,
        /// The state's epoch (0: fresh).
        base: u64,
        /// The asker's time when it asked (echoed back).
        sent: u64,
    },
    /// Granted.
    LeaseGrant {
        /// The actor.
        name: String,
        /// The epoch.
        epoch: u64,
        /// The `sent` of the request.
        sent: u64,
    },
    /// Refused.
    LeaseDeny {
        /// The actor.
        name: String,
        /// The epoch asked for.
        epoch: u64,
        /// The `sent` of the request.
        sent: u64,
        /// Why.
        denial: lease::Denial,
    },
    /// The sender gives up its lease at `epoch`.
    LeaseRelease {
        /// The actor.
        name: String,
        /// The epoch.
        epoch: u64,
    },
    /// Prepare to take over actor `name` at `epoch` (from state `base`): fetch and compile.
    Prepare {
        /// The actor.
        name: String,
        /// The target's epoch.
        epoch: u64,
        /// The source's epoch (the state's).
        base: u64,
        /// The module.
        hash: ModuleHash,
        /// The actor's lease granters.
        granters: Vec<NodeId>,
        /// Why it moves.
        reason: String,
        /// The policy's figures (JSON text), if the policy moved it.
        figures: Option<String>,
    },
    /// The answer to `Prepare`.
    Prepared {
        /// The actor.
        name: String,
        /// The target's epoch.
        epoch: u64,
        /// Ready, or why not.
        result: Result<(), String>,
    },
    /// Move actor `name` (whose home is the recipient) to `to` (an operator's request).
    MigrateAsk {
        /// The actor.
        name: String,
        /// The target.
        to: NodeId,
        /// Why (for logs and `fn where`).
        reason: String,
    },
    /// A `MigrateAsk` was refused.
    MigrateRefused {
        /// The actor.
        name: String,
        /// Why.
        reason: String,
    },
    /// What the sender measured of a stateless function it serves, for its home (rebased to
    /// clock 0: see [`Facts::rebased`]).
    Facts {
        /// The function.
        name: String,
        /// The facts.
        facts: Box<Facts<NodeId>>,
    },
    /// Fetch and compile this function's module: it is about to join its serving set.
    Warm {
        /// The function.
        name: String,
        /// Its module.
        hash: ModuleHash,
    },
    /// The answer to `Warm`.
    Warmed {
        /// The function.
        name: String,
        /// Ready, or why not.
        result: Result<(), String>,
    },
}

impl Message {
    /// A short, stable name of the message kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Invoke { .. } => "fn_invoke",
            Message::Done { .. } => "fn_done",
            Message::Redirect { .. } => "fn_redirect",
            Message::LeaseAsk { .. } => "lease_ask",
            Message::LeaseGrant { .. } => "lease_grant",
            Message::LeaseDeny { .. } => "lease_deny",
            Message::LeaseRelease { .. } => "lease_release",
            Message::Prepare { .. } => "fn_prepare",
            Message::Prepared { .. } => "fn_prepared",
            Message::MigrateAsk { .. } => "fn_migrate",
            Message::MigrateRefused { .. } => "fn_migrate_refused",
            Message::Facts { .. } => "fn_facts",
            Message::Warm { .. } => "fn_warm",
            Message::Warmed { .. } => "fn_warmed",
        }
    }
}

/// Who is waiting for an invocation's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// The local API (or a function running here), by its id.
    Local(InvokeId),
    /// A peer that forwarded the call, by its id for it.
    Peer(NodeId, u64),
}

#[derive(Clone, Debug)]
enum Stage {
    /// Reading the registry entry.
    Resolving,
    /// Sent to a peer; give up at `deadline`.
    Forwarded { to: NodeId, deadline: Time },
    /// Running here.
    Executing(ExecId),
    /// Waiting for its actor's activation here (a lease, a migration step, a snapshot).
    Held,
}

/// What one call did to one object.
#[derive(Clone, Copy, Debug, Default)]
struct Touched {
    reads: u32,
    writes: u32,
    /// The size of what the reads returned (JSON bytes).
    read_bytes: u64,
    /// The size of the operations written (JSON bytes).
    write_bytes: u64,
}

#[derive(Debug)]
struct Pending {
    /// When the call reached this node.
    arrived: Time,
    /// Objects its execution here read and wrote: (reads, writes).
    accesses: BTreeMap<ObjectName, Touched>,
    origin: Origin,
    name: String,
    input: Vec<u8>,
    depth: u32,
    hops: u8,
    stage: Stage,
    wall: Duration,
}

/// Counters, for metrics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Invocations that ended here, by outcome (`ok` or the error's kind).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Calls forwarded to another node.
    pub forwarded: u64,
    /// Redirects sent.
    pub redirects: u64,
    /// Executions started here.
    pub executions: u64,
    /// Fuel used by executions here.
    pub fuel: u64,
}

/// The functions subsystem's state.
pub struct Functions {
    cfg: Config,
    me: NodeId,
    next: u64,
    /// Invocations in progress, by our own id (also the id we use on the wire).
    pending: HashMap<u64, Pending>,
    /// Registry reads in flight: internal request id → invocation.
    resolving: HashMap<u64, u64>,
    /// Executions in flight → invocation.
    executing: HashMap<ExecId, u64>,
    seed: u64,
    stats: Stats,
    /// What this node measured of the functions it runs (the placement policy's input).
    facts: BTreeMap<String, Facts<NodeId>>,
    lease_cfg: lease::LeaseConfig,
    /// This node as a lease granter.
    granter: lease::Granter,
    /// Actor activations on this node.
    actors: BTreeMap<String, actor::Activation>,
    /// Migrations into this node waiting for their snapshot.
    incoming: BTreeMap<String, actor::Incoming>,
    /// Calls held by an activation: their registry entry, to run them later.
    held_entries: HashMap<u64, Registered>,
    /// Calls waiting for an incoming snapshot.
    waiting_for_snapshot: BTreeMap<String, Vec<u64>>,
    /// Grants waiting for their promise to be durable: internal request → (asker, grant).
    grants_waiting: HashMap<u64, (NodeId, Message)>,
    /// Hand-off markers being made durable: internal request → (actor, epoch handed off).
    marks_waiting: HashMap<u64, (String, u64)>,
    /// Per actor, the highest epoch this node knows it may no longer serve at (it was fenced
    /// there): a registry record naming this node at or below it is stale. Kept with the
    /// deployment it applies to (`deployed_at_ms`): a redeploy starts afresh.
    fenced: BTreeMap<String, (u64, u64)>,
    /// Calls whose registry record is stale (see `fenced`): when to read it again.
    parked: BTreeMap<u64, Time>,
    /// When this subsystem started (a restart forgets migrations in progress).
    booted: Time,
    /// Facts peers sent about stateless functions homed here.
    remote_facts: serving::RemoteFacts,
    /// Serving sets being warmed before they are written.
    spreading: BTreeMap<String, serving::Spreading>,
    /// Warm-ups asked of this node: function → the home that asked.
    warming: BTreeMap<String, NodeId>,
    /// When each serving set homed here last changed (its cool-down).
    spread_at: BTreeMap<String, Time>,
    migrations: MigrationStats,
    events: Vec<MigrationEvent>,
    /// When the placement policy runs next.
    next_policy: Time,
    /// The latest policy decision per actor homed here (for `fn where`).
    decisions: BTreeMap<String, Json>,
}

/// How fast facts fade: a call counts half after this long.
pub const FACTS_HALF_LIFE_S: f64 = 60.0;

/// Distinct objects counted per call.
const ACCESSES_MAX: usize = 64;

/// Functions with facts kept on one node; beyond it the least recently used are dropped.
const FACTS_MAX: usize = 10_000;

impl Functions {
    /// A fresh subsystem; `seed` makes executions' randomness reproducible.
    pub fn new(cfg: Config, me: NodeId, seed: u64, now: Time) -> Functions {
        Functions {
            lease_cfg: cfg.lease,
            granter: lease::Granter::new(cfg.lease, now),
            actors: BTreeMap::new(),
            incoming: BTreeMap::new(),
            held_entries: HashMap::new(),
            waiting_for_snapshot: BTreeMap::new(),
            grants_waiting: HashMap::new(),
            marks_waiting: HashMap::new(),
            fenced: BTreeMap::new(),
            parked: BTreeMap::new(),
            booted: now,
            remote_facts: BTreeMap::new(),
            spreading: BTreeMap::new(),
            warming: BTreeMap::new(),
            spread_at: BTreeMap::new(),
            migrations: MigrationStats::default(),
            events: Vec::new(),
            next_policy: now + cfg.policy_every.unwrap_or(Duration::ZERO),
            decisions: BTreeMap::new(),
            cfg,
            me,
            next: 0,
            pending: HashMap::new(),
            resolving: HashMap::new(),
            executing: HashMap::new(),
            seed,
            stats: Stats::default(),
            facts: BTreeMap::new(),
        }
    }

    /// The facts measured here about `function`'s calls (those it ran on this node).
    pub fn facts(&self, function: &str) -> Option<&Facts<NodeId>> {
        self.facts.get(function)
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Invocations in progress here (waiting, forwarded or executing).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Applies `op` to `name`'s registry document as this node's own local write (durable on
    /// this node's disk, then synced like any object); returns the internal request id its
    /// reply will carry.
    fn write_registry(&mut self, now: Time, name: &str, op: Op, ctx: &mut Ctx<'_>) -> Result<u64, String> {
        let object = registry_object(name)?;
        let req = INTERNAL_REQUEST + self.next_id();
        let request = Request::Write { object, change: Change::Ops(vec![op]), durability: Durability::Local };
        ctx.objects.handle_request(now, RequestId(req), request, ctx.membership, ctx.out);
        Ok(req)
    }

    /// An invocation from the API or from a running function (`depth` > 0).
    pub fn handle_invoke(
        &mut self,
        now: Time,
        id: InvokeId,
        name: String,
        input: Vec<u8>,
        depth: u32,
        ctx: &mut Ctx<'_>,
    ) {
        self.start(now, Origin::Local(id), name, input, depth, 0, ctx);
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        now: Time,
        origin: Origin,
        name: String,
        input: Vec<u8>,
        depth: u32,
        hops: u8,
        ctx: &mut Ctx<'_>,
    ) {
        let object = match registry_object(&name) {
            Ok(o) => o,
            Err(_) => {
                let err = InvokeError::NotFound(name);
                return self.answer(origin, Err(err), ctx.out);
            }
        };
        let key = self.next_id();
        self.pending.insert(
            key,
            Pending {
                arrived: now,
                accesses: BTreeMap::new(),
                origin,
                name,
                input,
                depth,
                hops,
                stage: Stage::Resolving,
                wall: Duration::ZERO,
            },
        );
        self.resolve(now, key, object, ctx);
    }

    /// Reads call `key`'s registry record (again); the answer routes it.
    fn resolve(&mut self, now: Time, key: u64, object: ObjectName, ctx: &mut Ctx<'_>) {
        let Some(p) = self.pending.get_mut(&key) else { return };
        p.stage = Stage::Resolving;
        let req = INTERNAL_REQUEST + key;
        self.resolving.insert(req, key);
        ctx.objects.handle_request(now, RequestId(req), Request::Get { object, after: None }, ctx.membership, ctx.out);
    }

    /// An internal object request was answered. Returns `false` if it was not ours.
    pub fn handle_object_reply(&mut self, now: Time, id: RequestId, reply: Reply, ctx: &mut Ctx<'_>) -> bool {
        if id.0 < INTERNAL_REQUEST {
            return false;
        }
        if self.grants_waiting.contains_key(&id.0) {
            let ok = matches!(reply, Reply::Value { .. });
            self.promise_written(now, id.0, ok, ctx);
            return true;
        }
        if self.marks_waiting.contains_key(&id.0) {
            let ok = matches!(reply, Reply::Value { .. });
            self.mark_written(now, id.0, ok, ctx);
            return true;
        }
        let Some(key) = self.resolving.remove(&id.0) else {
            // A holder-record write (or an invocation already answered): nothing waits for it.
            return true;
        };
        let Some(p) = self.pending.get(&key) else { return true };
        let resolved = match reply {
            Reply::Value { snapshot, .. } => match Registered::from_value(&snapshot.value) {
                Ok(r) if !r.entry.deleted => Ok(r),
                Ok(_) => Err(InvokeError::NotFound(p.name.clone())),
                Err(e) => Err(InvokeError::Invalid(e)),
            },
            Reply::Error(crate::objects::ObjectError::NotFound { .. }) => Err(InvokeError::NotFound(p.name.clone())),
            Reply::Error(e) => Err(InvokeError::Unavailable(format!("the function registry could not be read: {e}"))),
            _ => Err(InvokeError::Unavailable("unexpected registry answer".into())),
        };
        match resolved {
            Ok(reg) => self.route(now, key, reg, ctx),
            Err(e) => self.finish(key, Err(e), ctx.out),
        }
        true
    }

    fn route(&mut self, now: Time, key: u64, reg: Registered, ctx: &mut Ctx<'_>) {
        let manifest = &reg.entry.manifest;
        // The common case needs no scan of the membership: a stateless call runs where it
        // entered when this node is allowed to run it; else at the nearest serving node.
        let here = manifest.kind == Kind::Stateless && allows(manifest, ctx.membership.me());
        let serving = if here || manifest.kind == Kind::Actor { None } else { self.nearest_serving(&reg, ctx) };
        let Some(p) = self.pending.get_mut(&key) else { return };
        p.wall = Duration::from_millis(manifest.limits.wall_ms);
        if manifest.kind == Kind::Actor {
            return self.route_actor(now, key, reg, ctx);
        }
        let target = if here {
            Some(self.me)
        } else if serving.is_some() {
            serving
        } else {
            choose(&p.name, manifest.kind, &eligible(manifest, ctx.membership, now), &self.me)
        };
        let target = match target {
            Some(t) => t,
            None => {
                let err = InvokeError::Unavailable(format!(
                    "no alive node matches the placement of {:?} ({})",
                    p.name,
                    describe(manifest)
                ));
                return self.finish(key, Err(err), ctx.out);
            }
        };
        if target == self.me {
            return self.execute(now, key, reg, None, ctx);
        }
        if let Origin::Peer(from, id) = p.origin {
            // Someone sent us a call that runs elsewhere in our view: point them there
            // rather than adding a hop they cannot see.
            self.pending.remove(&key);
            self.stats.redirects += 1;
            ctx.out.push_back(Output::send_fn(from, Message::Redirect { id, to: target }));
            return;
        }
        self.forward(now, key, target, ctx.out);
    }

    fn forward(&mut self, now: Time, key: u64, to: NodeId, out: &mut VecDeque<Output>) {
        let margin = self.cfg.forward_margin;
        let Some(p) = self.pending.get_mut(&key) else { return };
        if p.hops >= HOPS_MAX {
            let err =
                InvokeError::Unavailable(format!("passed on {HOPS_MAX} times without reaching a node that runs it"));
            return self.finish(key, Err(err), out);
        }
        p.hops += 1;
        p.stage = Stage::Forwarded { to, deadline: now + p.wall + margin };
        self.stats.forwarded += 1;
        out.push_back(Output::send_fn(
            to,
            Message::Invoke { id: key, name: p.name.clone(), input: p.input.clone(), depth: p.depth, hops: p.hops },
        ));
    }

    fn execute(&mut self, now: Time, key: u64, reg: Registered, actor: Option<ActorRun>, ctx: &mut Ctx<'_>) {
        let sources = self.sources(&reg, ctx);
        let Some(p) = self.pending.get_mut(&key) else { return };
        let exec = ExecId(key);
        p.stage = Stage::Executing(exec);
        self.executing.insert(exec, key);
        self.stats.executions += 1;
        let seed = hash64(&[self.seed.to_le_bytes(), key.to_le_bytes()].concat());
        ctx.out.push_back(Output::Execute(Box::new(Execution {
            id: exec,
            name: p.name.clone(),
            hash: reg.entry.hash,
            size: reg.entry.size,
            manifest: reg.entry.manifest,
            input: std::mem::take(&mut p.input),
            now,
            seed,
            depth: p.depth,
            sources,
            actor,
        })));
    }

    /// The holders of `reg`'s module other than this node: alive ones first, nearest first.
    fn sources(&self, reg: &Registered, ctx: &Ctx<'_>) -> Vec<NodeId> {
        let mut sources: Vec<(u8, Option<Duration>, NodeId)> = Vec::new();
        for h in reg.holders.iter().filter(|h| **h != self.me) {
            // Alive holders first, nearest first; others last (they may still answer).
            let rtt = ctx.membership.rtt_of(h);
            match ctx.membership.status_of(h) {
                Some(Status::Alive) => sources.push((0, rtt, *h)),
                Some(Status::Suspect) => sources.push((1, rtt, *h)),
                _ => sources.push((2, None, *h)),
            }
        }
        sources.sort_by_key(|(rank, rtt, id)| (*rank, rtt.unwrap_or(Duration::MAX), *id));
        sources.into_iter().map(|(_, _, id)| id).collect()
    }

    /// The driver finished an execution.
    pub fn handle_executed(&mut self, now: Time, id: ExecId, done: Executed, ctx: &mut Ctx<'_>) {
        self.stats.fuel += done.fuel;
        if done.fetched
            && let Some(key) = self.executing.get(&id)
            && let Some(p) = self.pending.get(key)
            && let Ok(path) = state_sync::Path::parse(&format!("holders.{}", self.me))
        {
            let name = p.name.clone();
            // A name that made it this far has a registry object: nothing to report.
            let _ = self.write_registry(now, &name, Op::Set { path, value: Json::Bool(true), text: false }, ctx);
        }
        if let Some(key) = self.executing.remove(&id) {
            if let Some(p) = self.pending.get(&key) {
                let origin = match p.origin {
                    Origin::Local(_) => self.me,
                    Origin::Peer(from, _) => from,
                };
                let (name, arrived) = (p.name.clone(), p.arrived);
                let accesses: Vec<(ObjectName, Touched)> = p.accesses.iter().map(|(o, a)| (o.clone(), *a)).collect();
                self.observe(now, &name, origin, arrived, done.fuel, &accesses, ctx);
                if done.state_bytes > 0
                    && let Some(act) = self.actors.get_mut(&name)
                {
                    act.state_bytes = done.state_bytes;
                }
                self.finish(key, done.result, ctx.out);
                if self.actors.contains_key(&name) {
                    self.actor_call_ended(now, &name, key, ctx);
                }
            } else {
                self.finish(key, done.result, ctx.out);
            }
        }
    }

    /// Records a call this node ran: where it came from (the node it entered at and its
    /// `site` label), its fuel and its latency here.
    #[allow(clippy::too_many_arguments)]
    fn observe(
        &mut self,
        now: Time,
        name: &str,
        origin: NodeId,
        arrived: Time,
        fuel: u64,
        touched: &[(ObjectName, Touched)],
        ctx: &mut Ctx<'_>,
    ) {
        if !self.facts.contains_key(name) && self.facts.len() >= FACTS_MAX {
            // Bounded: forget the function with the fewest recent calls.
            let now_s = secs(now);
            let coldest = self
                .facts
                .iter()
                .min_by(|a, b| a.1.rate(now_s).total_cmp(&b.1.rate(now_s)).then(a.0.cmp(b.0)))
                .map(|(k, _)| k.clone());
            if let Some(k) = coldest {
                self.facts.remove(&k);
            }
        }
        let site = ctx.membership.info_of(&origin).and_then(|i| i.labels.get("site").cloned());
        let accesses: Vec<Access<'_>> = touched
            .iter()
            .map(|(o, t)| Access {
                object: o.as_str(),
                reads: t.reads,
                writes: t.writes,
                read_bytes: t.read_bytes,
                write_bytes: t.write_bytes,
            })
            .collect();
        let call = Call {
            origin,
            site: site.as_deref(),
            fuel,
            latency_ms: now.since(arrived).as_secs_f64() * 1e3,
            accesses: &accesses,
        };
        let facts = self.facts.entry(name.to_string()).or_insert_with(|| Facts::new(FACTS_HALF_LIFE_S));
        facts.observe(secs(now), &call);
        for (object, t) in touched {
            // Where its replicas live now, in this node's view: the data term of the cost. A
            // read returns the whole document, so its size is what a new replica copies.
            let replicas = ctx.objects.replica_set_of(now, ctx.membership, object);
            let size = t.read_bytes.checked_div(u64::from(t.reads)).unwrap_or(0);
            facts.set_replicas(object.as_str(), &replicas, size);
        }
    }

    /// A running execution's object request (a host call): counted in the call's facts.
    pub fn note_access(&mut self, exec: ExecId, req: &Request) {
        let (object, write) = match req {
            Request::Get { object, .. } | Request::Export { object } => (object, false),
            Request::Write { object, .. } => (object, true),
            Request::List { .. } => return,
        };
        let Some(p) = self.executing.get(&exec).and_then(|k| self.pending.get_mut(k)) else { return };
        if p.accesses.len() >= ACCESSES_MAX && !p.accesses.contains_key(object) {
            return;
        }
        let a = p.accesses.entry(object.clone()).or_default();
        if write {
            a.writes += 1;
            if let Request::Write { change: Change::Ops(ops), .. } = req {
                a.write_bytes += ops.iter().map(op_len).sum::<u64>();
            }
        } else {
            a.reads += 1;
        }
    }

    /// A running execution's read of `object` returned `value`: its size counts in the facts.
    pub fn note_read(&mut self, exec: ExecId, object: &ObjectName, value: &Json) {
        let Some(p) = self.executing.get(&exec).and_then(|k| self.pending.get_mut(k)) else { return };
        if let Some(a) = p.accesses.get_mut(object) {
            a.read_bytes += json_len(value);
        }
    }

    /// A message from a peer.
    pub fn handle_message(&mut self, now: Time, from: NodeId, msg: Message, ctx: &mut Ctx<'_>) {
        match msg {
            Message::Invoke { id, name, input, depth, hops } => {
                self.start(now, Origin::Peer(from, id), name, input, depth, hops, ctx)
            }
            Message::Done { id, result } => {
                if matches!(self.pending.get(&id), Some(Pending { stage: Stage::Forwarded { to, .. }, .. }) if *to == from)
                {
                    self.finish(id, result.map(|b| b.into_vec()), ctx.out);
                }
            }
            Message::Redirect { id, to } => {
                let ok = matches!(self.pending.get(&id), Some(Pending { stage: Stage::Forwarded { to: t, .. }, .. }) if *t == from);
                if ok {
                    if to == self.me {
                        // Our view disagreed with theirs; re-resolve and decide afresh.
                        if let Some(p) = self.pending.remove(&id) {
                            self.start(now, p.origin, p.name, p.input, p.depth, p.hops, ctx);
                        }
                    } else {
                        self.forward(now, id, to, ctx.out);
                    }
                }
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
        let out = &mut *ctx.out;
        let lost: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p.stage, Stage::Forwarded { to, .. } if to == peer))
            .map(|(k, _)| *k)
            .collect();
        for key in lost {
            let err = InvokeError::Unavailable(format!("node {} went down while running the call", peer.short()));
            self.finish(key, Err(err), out);
        }
    }

    /// Deadlines of forwarded and held calls, lease rounds, migration steps, the policy.
    pub fn handle_timeout(&mut self, now: Time, ctx: &mut Ctx<'_>) {
        self.actor_timeouts(now, ctx);
        self.serving_timeouts(now, ctx);
        if let Some(every) = self.cfg.policy_every
            && now >= self.next_policy
        {
            self.next_policy = now + every;
            self.run_policy(now, ctx);
            self.stateless_policy(now, ctx);
        }
        let out = &mut *ctx.out;
        let late: Vec<(u64, NodeId)> = self
            .pending
            .iter()
            .filter_map(|(k, p)| match p.stage {
                Stage::Forwarded { to, deadline } if deadline <= now => Some((*k, to)),
                _ => None,
            })
            .collect();
        for (key, to) in late {
            let err = InvokeError::Unavailable(format!("node {} did not answer in time", to.short()));
            self.finish(key, Err(err), out);
        }
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Time {
        let busy = !self.actors.is_empty() || !self.facts.is_empty() || !self.remote_facts.is_empty();
        let policy = if self.cfg.policy_every.is_some() && busy { self.next_policy } else { Time(u64::MAX) };
        let parked = self.parked.values().min().copied().unwrap_or(Time(u64::MAX));
        let t = self.actor_poll_timeout().min(policy).min(parked).min(self.serving_poll_timeout());
        self.pending
            .values()
            .filter_map(|p| match p.stage {
                Stage::Forwarded { deadline, .. } => Some(deadline),
                _ => None,
            })
            .min()
            .unwrap_or(Time(u64::MAX))
            .min(t)
    }

    fn finish(&mut self, key: u64, result: Result<Vec<u8>, InvokeError>, out: &mut VecDeque<Output>) {
        let Some(p) = self.pending.remove(&key) else { return };
        if let Stage::Executing(e) = p.stage {
            self.executing.remove(&e);
        }
        self.answer(p.origin, result, out);
    }

    fn answer(&mut self, origin: Origin, result: Result<Vec<u8>, InvokeError>, out: &mut VecDeque<Output>) {
        let kind = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        match origin {
            Origin::Local(id) => {
                *self.stats.outcomes.entry(kind).or_default() += 1;
                out.push_back(Output::Invoked { id, result });
            }
            Origin::Peer(from, id) => {
                out.push_back(Output::send_fn(
                    from,
                    Message::Done { id, result: result.map(serde_bytes::ByteBuf::from) },
                ));
            }
        }
    }
}

/// About the size of `v` as compact JSON, without writing it out.
pub fn json_len(v: &Json) -> u64 {
    match v {
        Json::Null => 4,
        Json::Bool(b) => 4 + u64::from(!*b),
        // Digits of the common integers; floats rarely exceed this.
        Json::Number(n) => n.as_u64().map_or(12, |u| u64::from(u.checked_ilog10().unwrap_or(0)) + 1),
        Json::String(s) => s.len() as u64 + 2,
        Json::Array(a) => 2 + a.iter().map(|x| json_len(x) + 1).sum::<u64>(),
        Json::Object(m) => 2 + m.iter().map(|(k, x)| k.len() as u64 + 4 + json_len(x)).sum::<u64>(),
    }
}

/// About the size of one operation as JSON: its value or text, plus its path and kind.
fn op_len(op: &Op) -> u64 {
    const OVERHEAD: u64 = 16;
    match op {
        Op::Set { value, .. } | Op::Insert { value, .. } => OVERHEAD + json_len(value),
        Op::Splice { insert, .. } => OVERHEAD + insert.len() as u64,
        _ => OVERHEAD,
    }
}

/// What the subsystem may touch while handling an input.
pub struct Ctx<'a> {
    /// The objects (for registry reads and holder records).
    pub objects: &'a mut Objects,
    /// The membership view.
    pub membership: &'a Membership,
    /// Outputs.
    pub out: &'a mut VecDeque<Output>,
}

/// Every function registered in this node's copy of the registry (deleted ones included),
/// by name; a damaged entry is reported as an error string.
pub fn registry(objects: &Objects) -> Vec<(String, Result<Registered, String>)> {
    let mut out: Vec<(String, Result<Registered, String>)> = objects
        .digests()
        .filter(|(name, _)| name.namespace() == REGISTRY_NS)
        .filter_map(|(name, _)| {
            let doc = objects.doc(name)?;
            Some((name.key().to_string(), Registered::from_value(&doc.value())))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Where a function runs in this node's view: the eligible nodes and, for an actor or a
/// call entering at a node that is not eligible, the one chosen by rendezvous hashing.
pub fn placement_of(
    name: &str,
    manifest: &Manifest,
    membership: &Membership,
    now: Time,
) -> (Vec<NodeId>, Option<NodeId>) {
    let eligible = eligible(manifest, membership, now);
    let home = choose(name, Kind::Actor, &eligible, &membership.me().id);
    (eligible, home)
}

/// A human description of a manifest's placement constraints.
pub fn describe_placement(m: &Manifest) -> String {
    describe(m)
}

/// The object request a running function's host call makes (both drivers send it with
/// [`crate::Node::handle_host_request`]); `true` if it is a write.
pub fn host_request(call: wasm_host::abi::ObjCall) -> (Request, bool) {
    use wasm_host::abi::ObjCall;
    match call {
        ObjCall::Get { object, .. } => (Request::Get { object, after: None }, false),
        ObjCall::Apply { object, ops } => {
            (Request::Write { object, change: Change::Ops(ops), durability: Durability::Local }, true)
        }
        ObjCall::List { prefix } => (Request::List { prefix, limit: 10_000 }, false),
    }
}

/// What the guest gets for the core's answer to [`host_request`]: the value for a read,
/// `null` for a write, a JSON array of names for a listing, or the error with its ABI code.
pub fn host_answer(reply: Reply, is_write: bool) -> Result<Json, wasm_host::abi::AbiError> {
    use crate::objects::ObjectError;
    use wasm_host::abi::{self, AbiError};
    match reply {
        Reply::Value { snapshot, .. } => Ok(if is_write { Json::Null } else { snapshot.value }),
        Reply::List(list) => Ok(Json::Array(list.into_iter().map(|l| Json::String(l.object.to_string())).collect())),
        Reply::Error(e) => {
            let code = match e {
                ObjectError::NotFound { .. } => abi::ERR_NOT_FOUND,
                ObjectError::Invalid { .. } => abi::ERR_INVALID,
                ObjectError::Unavailable { .. } | ObjectError::HeadsTimeout { .. } | ObjectError::Full { .. } => {
                    abi::ERR_UNAVAILABLE
                }
                _ => abi::ERR_FAILED,
            };
            Err(AbiError::new(code, e.to_string()))
        }
        _ => Err(AbiError::new(abi::ERR_FAILED, "unexpected answer from the node")),
    }
}

/// What the guest gets for a nested call's outcome.
pub fn host_invoke_answer(result: Result<Vec<u8>, InvokeError>) -> Result<Vec<u8>, wasm_host::abi::AbiError> {
    use wasm_host::abi::{self, AbiError};
    result.map_err(|e| match e {
        InvokeError::NotFound(n) => AbiError::new(abi::ERR_NOT_FOUND, format!("no function {n:?}")),
        other => AbiError::new(abi::ERR_FAILED, other.to_string()),
    })
}

/// Seconds since the core's epoch, for the decaying counters.
pub fn secs(t: Time) -> f64 {
    t.as_micros() as f64 / 1e6
}

/// The alive members (this node included) that the manifest's placement allows.
pub fn eligible(manifest: &Manifest, membership: &Membership, now: Time) -> Vec<NodeId> {
    membership
        .members(now)
        .filter(|m| m.status == Status::Alive && allows(manifest, &m.info))
        .map(|m| m.info.id)
        .collect()
}

/// Whether the manifest's tier, labels and pin allow a node.
pub fn allows(manifest: &Manifest, info: &crate::NodeInfo) -> bool {
    let p = &manifest.placement;
    p.tier.as_deref().is_none_or(|t| info.tier.as_str() == t)
        && p.labels.iter().all(|(k, v)| info.labels.get(k) == Some(v))
        && p.node.as_deref().is_none_or(|n| info.id.to_string() == n)
}

/// Where a call runs among `eligible` nodes (see the module docs).
pub fn choose(name: &str, kind: Kind, eligible: &[NodeId], me: &NodeId) -> Option<NodeId> {
    if kind == Kind::Stateless && eligible.contains(me) {
        return Some(*me);
    }
    let f = hash64(name.as_bytes());
    eligible.iter().max_by_key(|id| (score(f, hash64(&id.to_peer_id_bytes())), **id)).copied()
}

fn describe(m: &Manifest) -> String {
    let p = &m.placement;
    let mut parts = Vec::new();
    if let Some(t) = &p.tier {
        parts.push(format!("tier {t}"));
    }
    for (k, v) in &p.labels {
        parts.push(format!("label {k}={v}"));
    }
    if let Some(n) = &p.node {
        parts.push(format!("node {n}"));
    }
    if parts.is_empty() { "anywhere".into() } else { parts.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            let list = Request::List { prefix: "app/".into(), limit: 10 };
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
