//! Calls in progress: where each runs (here, forwarded, or redirected), its execution, and
//! exactly one outcome per invocation; what each call measured (the placement policy's facts).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::Value as Json;
use state_sync::ObjectName;
use state_sync::ops::Op;
use wasm_host::{InvokeError, Kind, Manifest};

use super::actors::ActorRun;
use super::registry::{self, Registered, registry_object};
use super::{Ctx, ExecId, Executed, Execution, Functions, InvokeId, Message, Output};
use crate::membership::{Membership, Status};
use crate::objects::{Change, Durability, Reply, Request};
use crate::placement::{Access, Call, Facts};
use crate::rendezvous::{hash64, score};
use crate::shared::Sink;
use crate::{NodeId, Time};

/// How many times a call may be passed on (forwards plus redirects).
pub const HOPS_MAX: u8 = 3;

/// How fast facts fade: a call counts half after this long.
pub const FACTS_HALF_LIFE_S: f64 = 60.0;

/// Distinct objects counted per call.
const ACCESSES_MAX: usize = 64;

/// Functions with facts kept on one node; beyond it the least recently used are dropped.
const FACTS_MAX: usize = 10_000;

/// Who is waiting for an invocation's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// The local API (or a function running here), by its id.
    Local(InvokeId),
    /// A peer that forwarded the call, by its id for it.
    Peer(NodeId, u64),
}

#[derive(Clone, Debug)]
pub(super) enum Stage {
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
pub(super) struct Touched {
    pub(super) reads: u32,
    pub(super) writes: u32,
    /// The size of what the reads returned (JSON bytes).
    pub(super) read_bytes: u64,
    /// The size of the operations written (JSON bytes).
    pub(super) write_bytes: u64,
}

#[derive(Debug)]
pub(super) struct Pending {
    /// When the call reached this node.
    pub(super) arrived: Time,
    /// Objects its execution here read and wrote: (reads, writes).
    pub(super) accesses: BTreeMap<ObjectName, Touched>,
    pub(super) origin: Origin,
    pub(super) name: String,
    pub(super) input: Vec<u8>,
    pub(super) depth: u32,
    pub(super) hops: u8,
    pub(super) stage: Stage,
    pub(super) wall: Duration,
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

/// The calls part's state.
pub(super) struct Calls {
    /// The last key given out (calls' keys, and the tokens of registry requests).
    next: u64,
    /// Invocations in progress, by our own key (also the id we use on the wire).
    pub(super) pending: HashMap<u64, Pending>,
    /// Executions in flight → invocation.
    pub(super) executing: HashMap<ExecId, u64>,
    /// Seeds executions' randomness.
    pub(super) seed: u64,
    pub(super) stats: Stats,
}

impl Calls {
    pub(super) fn new(seed: u64) -> Calls {
        Calls { next: 0, pending: HashMap::new(), executing: HashMap::new(), seed, stats: Stats::default() }
    }

    /// The earliest deadline of a forwarded call.
    pub(super) fn poll_timeout(&self) -> Time {
        self.pending
            .values()
            .filter_map(|p| match p.stage {
                Stage::Forwarded { deadline, .. } => Some(deadline),
                _ => None,
            })
            .min()
            .unwrap_or(Time(u64::MAX))
    }

    /// A fresh key: for a call, or as the token of a registry request.
    pub(super) fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

impl Functions {
    /// A call message from a peer: a call to run here, or the answer or redirect for one
    /// this node forwarded.
    pub(super) fn handle_call_message(&mut self, now: Time, from: NodeId, msg: Message, ctx: &mut Ctx<'_>) {
        match msg {
            Message::Invoke { id, name, input, depth, hops } => {
                self.start(now, Origin::Peer(from, id), name, input, depth, hops, ctx)
            }
            Message::Done { id, result } => {
                if matches!(self.calls.pending.get(&id), Some(Pending { stage: Stage::Forwarded { to, .. }, .. }) if *to == from)
                {
                    self.finish(id, result.map(|b| b.into_vec()), ctx.out);
                }
            }
            Message::Redirect { id, to } => {
                let ok = matches!(self.calls.pending.get(&id), Some(Pending { stage: Stage::Forwarded { to: t, .. }, .. }) if *t == from);
                if ok {
                    if to == self.me {
                        // Our view disagreed with theirs; re-resolve and decide afresh.
                        if let Some(p) = self.calls.pending.remove(&id) {
                            self.start(now, p.origin, p.name, p.input, p.depth, p.hops, ctx);
                        }
                    } else {
                        self.forward(now, id, to, ctx.out);
                    }
                }
            }
            _ => {}
        }
    }

    /// Calls forwarded to `peer`, which went down, fail now rather than at their deadline.
    pub(super) fn lost_to(&mut self, peer: NodeId, out: &mut (impl Sink<Output> + ?Sized)) {
        let lost: Vec<u64> = self
            .calls
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

    /// Forwarded calls past their deadline fail.
    pub(super) fn late_calls(&mut self, now: Time, out: &mut (impl Sink<Output> + ?Sized)) {
        let late: Vec<(u64, NodeId)> = self
            .calls
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
    pub(super) fn start(
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
        let key = self.calls.next_id();
        self.calls.pending.insert(
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
    pub(super) fn resolve(&mut self, now: Time, key: u64, object: ObjectName, ctx: &mut Ctx<'_>) {
        let Some(p) = self.calls.pending.get_mut(&key) else { return };
        p.stage = Stage::Resolving;
        // The call's own key is the read's token.
        self.registry.read(now, key, object, registry::Awaiting::Route(key), ctx);
    }

    /// Call `key`'s registry record was read: route it, or answer why it cannot run.
    pub(super) fn resolved(&mut self, now: Time, key: u64, reply: Reply, ctx: &mut Ctx<'_>) {
        let Some(p) = self.calls.pending.get(&key) else { return };
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
    }

    pub(super) fn route(&mut self, now: Time, key: u64, reg: Registered, ctx: &mut Ctx<'_>) {
        let manifest = &reg.entry.manifest;
        // The common case needs no scan of the membership: a stateless call runs where it
        // entered when this node is allowed to run it; else at the nearest serving node.
        let here = manifest.kind == Kind::Stateless && allows(manifest, ctx.membership.me());
        let serving = if here || manifest.kind == Kind::Actor { None } else { self.nearest_serving(&reg, ctx) };
        let Some(p) = self.calls.pending.get_mut(&key) else { return };
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
            self.calls.pending.remove(&key);
            self.calls.stats.redirects += 1;
            ctx.out.push(Output::send(from, Message::Redirect { id, to: target }));
            return;
        }
        self.forward(now, key, target, ctx.out);
    }

    pub(super) fn forward(&mut self, now: Time, key: u64, to: NodeId, out: &mut (impl Sink<Output> + ?Sized)) {
        let margin = self.cfg.forward_margin;
        let Some(p) = self.calls.pending.get_mut(&key) else { return };
        if p.hops >= HOPS_MAX {
            let err =
                InvokeError::Unavailable(format!("passed on {HOPS_MAX} times without reaching a node that runs it"));
            return self.finish(key, Err(err), out);
        }
        p.hops += 1;
        p.stage = Stage::Forwarded { to, deadline: now + p.wall + margin };
        self.calls.stats.forwarded += 1;
        out.push(Output::send(
            to,
            Message::Invoke { id: key, name: p.name.clone(), input: p.input.clone(), depth: p.depth, hops: p.hops },
        ));
    }

    pub(super) fn execute(&mut self, now: Time, key: u64, reg: Registered, actor: Option<ActorRun>, ctx: &mut Ctx<'_>) {
        let sources = self.sources(&reg, ctx);
        let Some(p) = self.calls.pending.get_mut(&key) else { return };
        let exec = ExecId(key);
        p.stage = Stage::Executing(exec);
        self.calls.executing.insert(exec, key);
        self.calls.stats.executions += 1;
        let seed = hash64(&[self.calls.seed.to_le_bytes(), key.to_le_bytes()].concat());
        ctx.out.push(Output::Execute(Box::new(Execution {
            id: exec,
            name: p.name.clone(),
            hash: reg.entry.hash,
            size: reg.entry.size,
            manifest: reg.entry.manifest,
            signature: reg.entry.signature,
            input: std::mem::take(&mut p.input),
            now,
            seed,
            depth: p.depth,
            sources,
            actor,
        })));
    }

    /// The holders of `reg`'s module other than this node: alive ones first, nearest first.
    pub(super) fn sources(&self, reg: &Registered, ctx: &Ctx<'_>) -> Vec<NodeId> {
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
        self.calls.stats.fuel += done.fuel;
        if done.fetched
            && let Some(key) = self.calls.executing.get(&id)
            && let Some(p) = self.calls.pending.get(key)
            && let Ok(path) = state_sync::Path::parse(&format!("holders.{}", self.me))
        {
            let name = p.name.clone();
            // A name that made it this far has a registry object: nothing to report.
            let _ = self.write_registry(now, &name, Op::Set { path, value: Json::Bool(true), text: false }, None, ctx);
        }
        if let Some(key) = self.calls.executing.remove(&id) {
            if let Some(p) = self.calls.pending.get(&key) {
                let origin = match p.origin {
                    Origin::Local(_) => self.me,
                    Origin::Peer(from, _) => from,
                };
                let (name, arrived) = (p.name.clone(), p.arrived);
                let accesses: Vec<(ObjectName, Touched)> = p.accesses.iter().map(|(o, a)| (o.clone(), *a)).collect();
                self.observe(now, &name, origin, arrived, done.fuel, &accesses, ctx);
                if done.state_bytes > 0
                    && let Some(act) = self.actors.active.get_mut(&name)
                {
                    act.state_bytes = done.state_bytes;
                }
                self.finish(key, done.result, ctx.out);
                if self.actors.active.contains_key(&name) {
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
    pub(super) fn observe(
        &mut self,
        now: Time,
        name: &str,
        origin: NodeId,
        arrived: Time,
        fuel: u64,
        touched: &[(ObjectName, Touched)],
        ctx: &mut Ctx<'_>,
    ) {
        if !self.decider.facts.contains_key(name) && self.decider.facts.len() >= FACTS_MAX {
            // Bounded: forget the function with the fewest recent calls.
            let now_s = secs(now);
            let coldest = self
                .decider
                .facts
                .iter()
                .min_by(|a, b| a.1.rate(now_s).total_cmp(&b.1.rate(now_s)).then(a.0.cmp(b.0)))
                .map(|(k, _)| k.clone());
            if let Some(k) = coldest {
                self.decider.facts.remove(&k);
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
        let facts = self.decider.facts.entry(name.to_string()).or_insert_with(|| Facts::new(FACTS_HALF_LIFE_S));
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
        let Some(p) = self.calls.executing.get(&exec).and_then(|k| self.calls.pending.get_mut(k)) else { return };
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
        let Some(p) = self.calls.executing.get(&exec).and_then(|k| self.calls.pending.get_mut(k)) else { return };
        if let Some(a) = p.accesses.get_mut(object) {
            a.read_bytes += json_len(value);
        }
    }

    pub(super) fn finish(
        &mut self,
        key: u64,
        result: Result<Vec<u8>, InvokeError>,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        let Some(p) = self.calls.pending.remove(&key) else { return };
        if let Stage::Executing(e) = p.stage {
            self.calls.executing.remove(&e);
        }
        self.answer(p.origin, result, out);
    }

    pub(super) fn answer(
        &mut self,
        origin: Origin,
        result: Result<Vec<u8>, InvokeError>,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        let kind = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        match origin {
            Origin::Local(id) => {
                *self.calls.stats.outcomes.entry(kind).or_default() += 1;
                out.push(Output::Invoked { id, result });
            }
            Origin::Peer(from, id) => {
                out.push(Output::send(from, Message::Done { id, result: result.map(serde_bytes::ByteBuf::from) }));
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
        ObjCall::List { prefix } => (Request::List { prefix, after: None, limit: 10_000 }, false),
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
                ObjectError::Quota { .. } | ObjectError::Storage { .. } => abi::ERR_TOO_LARGE,
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

pub(super) fn describe(m: &Manifest) -> String {
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
