//! A small in-crate harness for tests of whole [`Node`]s: virtual time, a fixed latency,
//! cut links, simulated disks that lose unsynced writes on a crash, and executions that the
//! test answers by hand. Optional [`Faults`] (all off by default) add seeded message loss,
//! extra delay and per-node clock drift.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use state_sync::store::{self, Store};
use state_sync::{ObjectName, SimStore};

use crate::functions::{Executed, Execution, InvokeId};
use crate::node::{Config as NodeConfig, Node};
use crate::objects::*;
use crate::{NodeId, Output, Time};
use crate::{NodeInfo, Tier};
use state_sync::Document;
use state_sync::ops::Op;
use std::collections::BTreeSet;
use std::time::Duration;

pub(crate) const LATENCY: Duration = Duration::from_millis(5);
pub(crate) const DISK: Duration = Duration::from_millis(1);

pub(crate) fn id(k: usize) -> NodeId {
    NodeId([k as u8 + 1; 32])
}

pub(crate) fn info(k: usize, tier: Tier) -> NodeInfo {
    NodeInfo {
        id: id(k),
        name: format!("n{k}"),
        tier,
        labels: Default::default(),
        arch: "x86_64".into(),
        cpus: 1,
        memory_mib: 512,
        addrs: vec![],
        version: "test".into(),
    }
}

pub(crate) enum Ev {
    Deliver {
        from: usize,
        to: usize,
        msg: crate::wire::Message,
    },
    Flushed {
        node: usize,
        ticket: u64,
        boot: u64,
    },
    Prefetched {
        node: usize,
        name: String,
        boot: u64,
    },
    /// A snapshot arrives at `to`, and the source hears it was sent.
    Handoff {
        from: usize,
        to: usize,
        name: String,
        epoch: u64,
        state: Option<i64>,
        boot: u64,
    },
}

/// Network and clock faults, all off by default (the default keeps the fixed latency, no
/// loss and exact clocks).
#[derive(Clone, Debug, Default)]
pub(crate) struct Faults {
    /// Seeds the harness's random choices (loss, delay).
    pub(crate) seed: u64,
    /// Probability that a message is lost; also that a snapshot hand-off fails, and
    /// (separately) that a delivered hand-off is reported to its source as failed.
    pub(crate) loss: f64,
    /// Each message (and hand-off) is delayed by a uniform extra in `[0, delay_max]`.
    pub(crate) delay_max: Duration,
    /// Clock-rate error of node `k`: its clock reads `now × (1 + drift[k])` (missing: 0).
    pub(crate) drift: Vec<f64>,
}

/// One execution of an actor call by [`H::run_actors`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ActorExec {
    /// Global time it ran.
    pub(crate) at: Time,
    pub(crate) node: usize,
    pub(crate) name: String,
    pub(crate) epoch: u64,
    /// The count it answered (`None`: it found no state and failed).
    pub(crate) count: Option<i64>,
}

/// One answer to an invocation, in the order they were given.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    /// Global time of the answer.
    pub(crate) at: Time,
    pub(crate) node: usize,
    pub(crate) id: u64,
    pub(crate) result: Result<Vec<u8>, wasm_host::InvokeError>,
}

/// A test actor's state on one node: checkpoints by epoch (durable), and the live instance.
#[derive(Clone, Debug, Default)]
pub(crate) struct ActorDisk {
    pub(crate) checkpoints: BTreeMap<u64, i64>,
    pub(crate) live: Option<(u64, i64)>,
}

pub(crate) struct H {
    pub(crate) now: Time,
    pub(crate) nodes: Vec<Option<Node>>,
    pub(crate) boots: Vec<u64>,
    pub(crate) disks: Vec<SimStore>,
    pub(crate) queue: BTreeMap<(Time, u64), Ev>,
    pub(crate) seq: u64,
    pub(crate) cut: BTreeSet<(usize, usize)>,
    pub(crate) replies: BTreeMap<(usize, u64), Reply>,
    pub(crate) next_req: u64,
    pub(crate) cfg: Config,
    pub(crate) executions: Vec<(usize, Execution)>,
    pub(crate) invoked: BTreeMap<(usize, u64), Result<Vec<u8>, wasm_host::InvokeError>>,
    /// Actor state per (node, actor), as the agent's driver keeps it.
    pub(crate) actor_disks: BTreeMap<(usize, String), ActorDisk>,
    /// Prefetches fail on these nodes.
    pub(crate) prefetch_fails: BTreeSet<usize>,
    pub(crate) deactivated: Vec<(usize, String, u64)>,
    /// Per node, its tier and `site` label (default: node 0 cloud, the others edge, no site).
    pub(crate) layout: Vec<(Tier, Option<String>)>,
    pub(crate) node_cfg: crate::functions::Config,
    /// Loss, delay and drift (none by default).
    pub(crate) faults: Faults,
    pub(crate) rng: ChaCha8Rng,
    /// Every actor execution by [`H::run_actors`], in order.
    pub(crate) actor_log: Vec<ActorExec>,
    /// Every answer to an invocation, in order (an invocation answered twice shows twice).
    pub(crate) answers: Vec<Answer>,
    /// At most this many outputs are taken from a node in one [`H::drain`] (unbounded by
    /// default); a node that produces more is stuck in a loop at one instant, recorded in
    /// [`H::runaway`], and its further outputs are dropped.
    pub(crate) outputs_max: usize,
    /// The first node that exceeded [`H::outputs_max`], and when.
    pub(crate) runaway: Option<(usize, Time)>,
}

pub(crate) fn obj(s: &str) -> ObjectName {
    ObjectName::parse(s).unwrap()
}

pub(crate) fn ops(json: &str) -> Change {
    Change::Ops(Op::parse_batch(json).unwrap())
}

impl H {
    pub(crate) fn new(n: usize) -> H {
        H::with(n, Config::default())
    }

    pub(crate) fn with(n: usize, cfg: Config) -> H {
        H::with_faults(n, cfg, Faults::default())
    }

    /// A cluster of `n` nodes under `faults` from the start (clocks drift from time zero).
    /// Deploys a function with `manifest` (its module's hash from its name) at node `k`, and
    /// runs a second for the registry to spread.
    pub(crate) fn deploy(&mut self, k: usize, manifest: wasm_host::Manifest) {
        let entry = crate::functions::Entry {
            hash: wasm_host::ModuleHash::of(manifest.name.as_bytes()),
            size: 10,
            deployed_by: id(k).to_string(),
            deployed_at_ms: 0,
            deleted: false,
            manifest,
        };
        let now = self.clock(k);
        let req = self.nodes[k]
            .as_ref()
            .map(|n| n.deploy_request(now, &entry))
            .unwrap_or_else(|| panic!("node {k} is down"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(self.ask(k, req, Duration::from_secs(5)).is_some());
        self.run_for(Duration::from_secs(1));
    }

    pub(crate) fn with_faults(n: usize, cfg: Config, faults: Faults) -> H {
        let layout = (0..n).map(|k| (if k == 0 { Tier::Cloud } else { Tier::Edge }, None)).collect();
        H::build(cfg, faults, layout, crate::functions::Config { policy_every: None, ..Default::default() })
    }

    /// Nodes with these tiers and sites, and this functions configuration.
    pub(crate) fn with_layout(layout: &[(Tier, Option<&str>)], node_cfg: crate::functions::Config) -> H {
        let layout = layout.iter().map(|(t, s)| (*t, s.map(str::to_string))).collect();
        H::build(Config::default(), Faults::default(), layout, node_cfg)
    }

    fn build(
        cfg: Config,
        faults: Faults,
        layout: Vec<(Tier, Option<String>)>,
        node_cfg: crate::functions::Config,
    ) -> H {
        let n = layout.len();
        let mut h = H {
            now: Time::ZERO,
            nodes: Vec::new(),
            boots: vec![0; n],
            disks: (0..n).map(|_| SimStore::new()).collect(),
            queue: BTreeMap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            replies: BTreeMap::new(),
            next_req: 0,
            cfg,
            executions: Vec::new(),
            invoked: BTreeMap::new(),
            actor_disks: BTreeMap::new(),
            prefetch_fails: BTreeSet::new(),
            deactivated: Vec::new(),
            node_cfg,
            layout,
            rng: ChaCha8Rng::seed_from_u64(faults.seed),
            faults,
            actor_log: Vec::new(),
            answers: Vec::new(),
            outputs_max: usize::MAX,
            runaway: None,
        };
        for k in 0..n {
            h.nodes.push(None);
            h.start(k);
        }
        for k in 1..n {
            h.connect(k, 0);
        }
        h.run_for(Duration::from_secs(3));
        h
    }

    fn drift(&self, k: usize) -> f64 {
        self.faults.drift.get(k).copied().unwrap_or(0.0)
    }

    /// Node `k`'s clock at global time `t`.
    pub(crate) fn local(&self, k: usize, t: Time) -> Time {
        let d = self.drift(k);
        if d == 0.0 || t.0 >= 1 << 60 {
            return t;
        }
        Time((t.0 as f64 * (1.0 + d)) as u64)
    }

    /// Node `k`'s clock now: every call into node `k` passes this.
    pub(crate) fn clock(&self, k: usize) -> Time {
        self.local(k, self.now)
    }

    /// The first global time at which node `k`'s clock reads at least `t`.
    pub(crate) fn to_global(&self, k: usize, t: Time) -> Time {
        let d = self.drift(k);
        if d == 0.0 || t.0 >= 1 << 60 {
            return t;
        }
        let mut g = Time((t.0 as f64 / (1.0 + d)).ceil() as u64);
        while self.local(k, g) < t {
            g.0 += 1;
        }
        while g.0 > 0 && self.local(k, Time(g.0 - 1)) >= t {
            g.0 -= 1;
        }
        g
    }

    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether the next message is lost (never, without faults).
    fn lost(&mut self) -> bool {
        self.faults.loss > 0.0 && self.unit() < self.faults.loss
    }

    /// The extra delay of the next message (none, without faults).
    fn extra_delay(&mut self) -> Duration {
        if self.faults.delay_max.is_zero() {
            return Duration::ZERO;
        }
        self.faults.delay_max.mul_f64(self.unit())
    }

    pub(crate) fn start(&mut self, k: usize) {
        self.boots[k] += 1;
        let boot = self.boots[k];
        let cfg =
            NodeConfig { objects: self.cfg.clone(), functions: self.node_cfg.clone(), boot, ..Default::default() };
        let (tier, site) = self.layout[k].clone();
        let mut me = info(k, tier);
        if let Some(site) = site {
            me.labels.insert("site".into(), site);
        }
        let mut node = Node::new(cfg, me, None, k as u64, self.clock(k));
        let disk = &mut self.disks[k];
        for name in disk.list().unwrap() {
            let r = store::restore(disk, &name, actor_id(&id(k), boot)).unwrap().unwrap();
            let stats = disk.stats(&name).unwrap();
            node.restore_object(name, r.doc, stats);
        }
        self.nodes[k] = Some(node);
    }

    pub(crate) fn crash(&mut self, k: usize) {
        self.nodes[k] = None;
        self.disks[k].crash();
        for ((node, _), d) in self.actor_disks.iter_mut() {
            if *node == k {
                d.live = None;
            }
        }
    }

    pub(crate) fn connect(&mut self, a: usize, b: usize) {
        let now = self.clock(a);
        if let Some(n) = self.nodes[a].as_mut() {
            n.handle_connected(now, id(b));
        }
        self.drain(a);
    }

    pub(crate) fn request(&mut self, k: usize, req: Request) -> u64 {
        self.next_req += 1;
        let rid = self.next_req;
        let now = self.clock(k);
        self.nodes[k].as_mut().unwrap().handle_request(now, RequestId(rid), req);
        self.drain(k);
        rid
    }

    /// Sends a request and runs until it is answered (or `limit` passes).
    pub(crate) fn ask(&mut self, k: usize, req: Request, limit: Duration) -> Option<Reply> {
        let rid = self.request(k, req);
        let end = self.now + limit;
        while self.now < end {
            if let Some(r) = self.replies.remove(&(k, rid)) {
                return Some(r);
            }
            self.step(end);
        }
        self.replies.remove(&(k, rid))
    }

    pub(crate) fn write(&mut self, k: usize, name: &str, json: &str) -> Reply {
        let req = Request::Write { object: obj(name), change: ops(json), durability: Durability::Local };
        self.ask(k, req, Duration::from_secs(30)).expect("a write is answered")
    }

    pub(crate) fn get(&mut self, k: usize, name: &str) -> Reply {
        self.ask(k, Request::Get { object: obj(name), after: None }, Duration::from_secs(30)).expect("answered")
    }

    pub(crate) fn drain(&mut self, k: usize) {
        let Some(node) = self.nodes[k].as_mut() else { return };
        let mut outs = Vec::new();
        while let Some(o) = node.poll_output() {
            outs.push(o);
            if outs.len() >= self.outputs_max {
                self.runaway = self.runaway.or(Some((k, self.now)));
                break;
            }
        }
        for o in outs {
            match o {
                Output::Send { to, msg } => {
                    let to = usize::from(to.0[0]) - 1;
                    if self.cut.contains(&(k.min(to), k.max(to))) || self.lost() {
                        continue;
                    }
                    self.seq += 1;
                    let at = self.now + LATENCY + self.extra_delay();
                    self.queue.insert((at, self.seq), Ev::Deliver { from: k, to, msg });
                }
                Output::Disk(op) => match op {
                    DiskOp::Append { object, bytes } => self.disks[k].append(&object, &bytes).unwrap(),
                    DiskOp::Compact { object, snapshot } => self.disks[k].compact(&object, &snapshot).unwrap(),
                    DiskOp::Flush { ticket } => {
                        self.seq += 1;
                        let boot = self.boots[k];
                        self.queue.insert((self.now + DISK, self.seq), Ev::Flushed { node: k, ticket, boot });
                    }
                },
                Output::Reply { id, reply } => {
                    self.replies.insert((k, id.0), reply);
                }
                Output::Execute(exec) => self.executions.push((k, *exec)),
                Output::Invoked { id, result } => {
                    self.answers.push(Answer { at: self.now, node: k, id: id.0, result: result.clone() });
                    self.invoked.insert((k, id.0), result);
                }
                Output::Prefetch(p) => {
                    self.seq += 1;
                    let boot = self.boots[k];
                    self.queue.insert(
                        (self.now + Duration::from_millis(20), self.seq),
                        Ev::Prefetched { node: k, name: p.name, boot },
                    );
                }
                Output::Handoff(h) => {
                    let to = usize::from(h.to.0[0]) - 1;
                    let state = self.actor_disks.get(&(k, h.name.clone())).and_then(|d| {
                        d.live.map(|(_, v)| v).or_else(|| d.checkpoints.range(..h.epoch).next_back().map(|(_, v)| *v))
                    });
                    self.seq += 1;
                    let boot = self.boots[k];
                    let at = self.now + LATENCY * 4 + self.extra_delay();
                    self.queue
                        .insert((at, self.seq), Ev::Handoff { from: k, to, name: h.name, epoch: h.epoch, state, boot });
                }
                Output::Deactivate { name, epoch } => {
                    if let Some(d) = self.actor_disks.get_mut(&(k, name.clone())) {
                        d.live = None;
                    }
                    self.deactivated.push((k, name, epoch));
                }
                _ => {}
            }
        }
    }

    pub(crate) fn step(&mut self, end: Time) {
        let next_timer = (0..self.nodes.len())
            .filter_map(|k| self.nodes[k].as_ref().map(|n| self.to_global(k, n.poll_timeout())))
            .min()
            .unwrap_or(end);
        let next_ev = self.queue.keys().next().map(|k| k.0).unwrap_or(end);
        let t = next_timer.min(next_ev).min(end);
        self.now = self.now.max(t);
        if next_ev <= t
            && let Some((_, ev)) = self.queue.pop_first()
        {
            match ev {
                Ev::Deliver { from, to, msg } => {
                    let now = self.clock(to);
                    if let Some(n) = self.nodes[to].as_mut() {
                        n.handle_message(now, id(from), msg);
                        self.drain(to);
                    }
                }
                Ev::Prefetched { node, name, boot } => {
                    let now = self.clock(node);
                    if self.boots[node] == boot
                        && let Some(n) = self.nodes[node].as_mut()
                    {
                        let r = if self.prefetch_fails.contains(&node) { Err("no room".into()) } else { Ok(()) };
                        n.handle_prefetched(now, &name, r);
                        self.drain(node);
                    }
                }
                Ev::Handoff { from, to, name, epoch, state, boot } => {
                    let now = self.clock(to);
                    let delivered =
                        state.is_some() && !self.cut.contains(&(from.min(to), from.max(to))) && !self.lost();
                    // The stream may break after its last byte: delivered, reported failed.
                    let reported = delivered && !self.lost();
                    if delivered && let (Some(n), Some(v)) = (self.nodes[to].as_mut(), state) {
                        self.actor_disks.entry((to, name.clone())).or_default().checkpoints.insert(epoch, v);
                        n.handle_snapshot_received(now, id(from), &name, epoch);
                        self.drain(to);
                    }
                    let now = self.clock(from);
                    if self.boots[from] == boot
                        && let Some(n) = self.nodes[from].as_mut()
                    {
                        let r = if reported { Ok(8) } else { Err("the target could not be reached".into()) };
                        n.handle_handoff_sent(now, &name, epoch, r);
                        self.drain(from);
                    }
                }
                Ev::Flushed { node, ticket, boot } => {
                    let now = self.clock(node);
                    if self.boots[node] == boot
                        && let Some(n) = self.nodes[node].as_mut()
                    {
                        self.disks[node].sync().unwrap();
                        n.handle_flushed(now, ticket, Ok(()));
                        self.drain(node);
                    }
                }
            }
            return;
        }
        for k in 0..self.nodes.len() {
            let now = self.clock(k);
            if let Some(n) = self.nodes[k].as_mut()
                && n.poll_timeout() <= now
            {
                n.handle_timeout(now);
                self.drain(k);
            }
        }
    }

    pub(crate) fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step(end);
        }
    }

    pub(crate) fn value(&self, k: usize, name: &str) -> Option<serde_json::Value> {
        self.nodes[k].as_ref()?.objects().doc(&obj(name)).map(Document::value)
    }

    pub(crate) fn partition(&mut self, left: &[usize], right: &[usize]) {
        for &a in left {
            for &b in right {
                self.cut.insert((a.min(b), a.max(b)));
            }
        }
    }
}

pub(crate) fn value_of(r: &Reply) -> serde_json::Value {
    match r {
        Reply::Value { snapshot, .. } => snapshot.value.clone(),
        other => panic!("expected a value, got {other:?}"),
    }
}

impl H {
    /// Invokes `name` on node `k` and returns the invocation's id.
    pub(crate) fn invoke(&mut self, k: usize, name: &str, input: &[u8]) -> u64 {
        self.next_req += 1;
        let id = self.next_req;
        let now = self.clock(k);
        self.nodes[k].as_mut().unwrap().handle_invoke(now, InvokeId(id), name.into(), input.to_vec(), 0);
        self.drain(k);
        id
    }

    /// Runs every pending execution of an actor as the agent does: on the live instance of its
    /// epoch, else the newest checkpoint not above it, else fresh if allowed; the actor counts
    /// its calls and answers the count. Checkpoints after the call. Stateless executions get
    /// an empty output.
    pub(crate) fn run_actors(&mut self) {
        let execs = std::mem::take(&mut self.executions);
        for (k, exec) in execs {
            let result = match exec.actor {
                None => Ok(Vec::new()),
                Some(run) => {
                    let d = self.actor_disks.entry((k, exec.name.clone())).or_default();
                    let state = match d.live {
                        Some((e, v)) if e == run.epoch => Some(v),
                        _ => d
                            .checkpoints
                            .get(&run.epoch)
                            .copied()
                            .or_else(|| {
                                if run.fresh {
                                    None
                                } else {
                                    d.checkpoints.range(..run.epoch).next_back().map(|(_, v)| *v)
                                }
                            })
                            .or(if run.fresh { Some(0) } else { None }),
                    };
                    let count = state.map(|v| v + 1);
                    let at = self.now;
                    self.actor_log.push(ActorExec { at, node: k, name: exec.name.clone(), epoch: run.epoch, count });
                    match state {
                        Some(v) => {
                            let v = v + 1;
                            d.live = Some((run.epoch, v));
                            d.checkpoints.insert(run.epoch, v);
                            Ok(v.to_string().into_bytes())
                        }
                        None => Err(wasm_host::InvokeError::Unavailable("no state".into())),
                    }
                }
            };
            let now = self.clock(k);
            if let Some(n) = self.nodes[k].as_mut() {
                n.handle_executed(now, exec.id, Executed { result, fuel: 1, fetched: false, state_bytes: 0 });
                self.drain(k);
            }
        }
    }

    /// Answers every pending execution with `f`, then runs a moment for the answers to travel.
    pub(crate) fn execute_all(&mut self, f: impl Fn(usize, &Execution) -> Executed) {
        for (k, exec) in std::mem::take(&mut self.executions) {
            let done = f(k, &exec);
            let now = self.clock(k);
            if let Some(n) = self.nodes[k].as_mut() {
                n.handle_executed(now, exec.id, done);
                self.drain(k);
            }
        }
        self.run_for(Duration::from_millis(50));
    }
}
