//! [`Cluster`]: whole nodes on one virtual clock, with a queue of messages and disk
//! completions ordered by (time, sequence).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use state_sync::store::{self, Store};
use state_sync::{Document, SimStore};

use super::actors::{ActorDisk, ActorExec, Answer};
use super::network::{Faults, Flight, Payload, Subsystem, Traffic, Wire};
use super::{id, info, obj, ops};
use crate::functions::{self, Execution};
use crate::membership::{Persisted, Status, StatusChange};
use crate::node::{Config as NodeConfig, Node};
use crate::objects::{self, DiskOp, Durability, Reply, Request, RequestId, actor_id};
use crate::wire::Message;
use crate::{NodeId, Output, Tier, Time};

/// The one-way latency of a message unless [`Setup::latency`] says otherwise.
pub const LATENCY: Duration = Duration::from_millis(5);
/// How long a flush takes unless [`Setup::disk`] says otherwise.
pub const DISK: Duration = Duration::from_millis(1);
/// How long a prefetch takes.
const PREFETCH: Duration = Duration::from_millis(20);

/// How the nodes meet when the cluster starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// Every node but node 0 connects to node 0 (one side of the session only); gossip
    /// does the rest.
    Star,
    /// Every pair connects, both sides.
    Mesh,
}

/// How a [`Cluster`] is built: its nodes, their configuration and the network.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Per node, its tier and `site` label.
    pub layout: Vec<(Tier, Option<String>)>,
    /// Every node's object configuration.
    pub objects: objects::Config,
    /// Every node's functions configuration.
    pub functions: functions::Config,
    /// Loss, delay and drift (none by default).
    pub faults: Faults,
    /// The one-way latency of every message (before [`Faults::delay_max`]); a snapshot
    /// hand-off takes four times as long.
    pub latency: Duration,
    /// How long a flush takes.
    pub disk: Duration,
    /// How the nodes meet.
    pub join: Join,
    /// How long the cluster runs after the nodes meet, before [`Cluster::build`] returns.
    pub settle: Duration,
}

impl Setup {
    /// `n` nodes, node 0 cloud and the others edge, with no site; default configurations
    /// except that the functions placement policy never runs on its own; no faults,
    /// [`LATENCY`], [`DISK`]; a [`Join::Star`], then 3 s.
    pub fn new(n: usize) -> Setup {
        Setup {
            layout: (0..n).map(|k| (if k == 0 { Tier::Cloud } else { Tier::Edge }, None)).collect(),
            objects: objects::Config::default(),
            functions: functions::Config { policy_every: None, ..Default::default() },
            faults: Faults::default(),
            latency: LATENCY,
            disk: DISK,
            join: Join::Star,
            settle: Duration::from_secs(3),
        }
    }
}

/// Something due at a time in the cluster's queue.
#[derive(Debug)]
pub enum Event {
    /// A message arrives.
    Deliver {
        /// Its sender.
        from: usize,
        /// Its recipient.
        to: usize,
        /// The message.
        msg: Payload,
    },
    /// A flush finished (ignored if the node restarted since).
    Flushed {
        /// The node.
        node: usize,
        /// The flush's ticket.
        ticket: u64,
        /// The node's boot that asked.
        boot: u64,
    },
    /// A cold object was read back (ignored if the node restarted since).
    Loaded {
        /// The node.
        node: usize,
        /// The object.
        object: state_sync::ObjectName,
        /// The node's boot that asked.
        boot: u64,
    },
    /// A prefetch finished (ignored if the node restarted since).
    Prefetched {
        /// The node.
        node: usize,
        /// The function.
        name: String,
        /// The node's boot that asked.
        boot: u64,
    },
    /// A snapshot arrives at `to`, and the source hears it was sent.
    Handoff {
        /// The source.
        from: usize,
        /// The target.
        to: usize,
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// The epoch of the snapshot.
        epoch: u64,
        /// The actor's state (`None`: the source had none to send).
        state: Option<i64>,
        /// The source's boot that asked.
        boot: u64,
    },
}

/// Whole [`Node`]s on one virtual clock, driven as the agent drives one node: messages
/// through a queue ordered by (time, sequence) with the latency of [`Setup`], cut links,
/// [`SimStore`] disks that lose unsynced writes on a crash, and executions the test answers
/// by hand (see [`Cluster::run_actors`] and [`Cluster::execute_all`]).
///
/// Node `k` has the id [`id`]`(k)`. Its fields are open: tests read them and change the
/// network (`cut`) as they go.
pub struct Cluster {
    /// The global virtual time.
    pub now: Time,
    /// The nodes; `None` while one is down.
    pub nodes: Vec<Option<Node>>,
    /// How many times each node has started.
    pub boots: Vec<u64>,
    /// Each node's disk.
    pub disks: Vec<SimStore>,
    /// Everything due, by (time, sequence).
    pub queue: BTreeMap<(Time, u64), Event>,
    /// The last sequence number given out.
    pub seq: u64,
    /// Cut links, as (lower index, higher index): messages across them are dropped when sent.
    pub cut: BTreeSet<(usize, usize)>,
    /// Answers to requests by (node, request id), until a test takes them.
    pub replies: BTreeMap<(usize, u64), Reply>,
    /// The last request (and invocation) id given out.
    pub next_req: u64,
    /// How the cluster was built; restarts read it.
    pub setup: Setup,
    /// Executions asked for and not yet answered, by node.
    pub executions: Vec<(usize, Execution)>,
    /// The latest answer to each invocation by (node, id).
    pub invoked: BTreeMap<(usize, u64), Result<Vec<u8>, wasm_host::InvokeError>>,
    /// Actor state per (node, actor), as the agent's driver keeps it.
    pub actor_disks: BTreeMap<(usize, String), ActorDisk>,
    /// Prefetches fail on these nodes.
    pub prefetch_fails: BTreeSet<usize>,
    /// Every [`Output::Deactivate`]: (node, actor, epoch).
    pub deactivated: Vec<(usize, String, u64)>,
    /// Loss, delay and drift (a copy of [`Setup::faults`] that tests may change).
    pub faults: Faults,
    /// Draws loss and delay.
    pub rng: ChaCha8Rng,
    /// Every actor execution by [`Cluster::run_actors`], in order.
    pub actor_log: Vec<ActorExec>,
    /// Every answer to an invocation, in order (an invocation answered twice shows twice).
    pub answers: Vec<Answer>,
    /// At most this many outputs are taken from a node in one [`Cluster::drain`]
    /// (unbounded by default); a node that produces more is stuck in a loop at one instant,
    /// recorded in [`Cluster::runaway`], and its further outputs are dropped.
    pub outputs_max: usize,
    /// The first node that exceeded [`Cluster::outputs_max`], and when.
    pub runaway: Option<(usize, Time)>,
    /// What each node last asked to persist of its membership ([`Output::Persist`]).
    pub persisted: Vec<Option<Persisted>>,
    /// Every status change a node reported ([`Output::Event`]), by node, in order.
    pub events: Vec<(usize, StatusChange)>,
    /// Puts messages through bytes when set (see [`Wire`]); they travel as values otherwise.
    pub wire: Option<Box<dyn Wire>>,
    /// What the network carried.
    pub traffic: Traffic,
    /// What is in the queue now.
    pub flight: Flight,
    /// Every placement event ([`Output::Migration`]): (global time, node, event).
    pub migration_events: Vec<(Time, usize, crate::functions::MigrationEvent)>,
}

impl Cluster {
    /// `n` nodes from [`Setup::new`].
    pub fn new(n: usize) -> Cluster {
        Cluster::build(Setup::new(n))
    }

    /// `n` nodes from [`Setup::new`] with this object configuration.
    pub fn with(n: usize, cfg: objects::Config) -> Cluster {
        Cluster::build(Setup { objects: cfg, ..Setup::new(n) })
    }

    /// `n` nodes from [`Setup::new`] under `faults` from the start (clocks drift from time
    /// zero).
    pub fn with_faults(n: usize, cfg: objects::Config, faults: Faults) -> Cluster {
        Cluster::build(Setup { objects: cfg, faults, ..Setup::new(n) })
    }

    /// Nodes with these tiers and sites, and this functions configuration.
    pub fn with_layout(layout: &[(Tier, Option<&str>)], functions: functions::Config) -> Cluster {
        let layout = layout.iter().map(|(t, s)| (*t, s.map(str::to_string))).collect();
        Cluster::build(Setup { layout, functions, ..Setup::new(0) })
    }

    /// Starts the nodes of `setup`, lets them meet and runs for [`Setup::settle`].
    pub fn build(setup: Setup) -> Cluster {
        let n = setup.layout.len();
        let mut h = Cluster {
            now: Time::ZERO,
            nodes: (0..n).map(|_| None).collect(),
            boots: vec![0; n],
            disks: (0..n).map(|_| SimStore::new()).collect(),
            queue: BTreeMap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            replies: BTreeMap::new(),
            next_req: 0,
            executions: Vec::new(),
            invoked: BTreeMap::new(),
            migration_events: Vec::new(),
            actor_disks: BTreeMap::new(),
            prefetch_fails: BTreeSet::new(),
            deactivated: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(setup.faults.seed),
            faults: setup.faults.clone(),
            actor_log: Vec::new(),
            answers: Vec::new(),
            outputs_max: usize::MAX,
            runaway: None,
            persisted: vec![None; n],
            events: Vec::new(),
            wire: None,
            traffic: Traffic::default(),
            flight: Flight::default(),
            setup,
        };
        for k in 0..n {
            h.boot(k, None);
        }
        match h.setup.join {
            Join::Star => {
                for k in 1..n {
                    h.connect(k, 0);
                }
            }
            Join::Mesh => {
                for a in 0..n {
                    for b in a + 1..n {
                        h.connect(a, b);
                        h.connect(b, a);
                    }
                }
            }
        }
        h.run_for(h.setup.settle);
        h
    }

    /// Node `k`'s clock at global time `t`.
    pub fn local(&self, k: usize, t: Time) -> Time {
        self.faults.local(k, t)
    }

    /// Node `k`'s clock now: every call into node `k` passes this.
    pub fn clock(&self, k: usize) -> Time {
        self.local(k, self.now)
    }

    /// The first global time at which node `k`'s clock reads at least `t`.
    pub fn to_global(&self, k: usize, t: Time) -> Time {
        self.faults.to_global(k, t)
    }

    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether the next message is lost (never, without faults).
    pub(super) fn lost(&mut self) -> bool {
        self.faults.loss > 0.0 && self.unit() < self.faults.loss
    }

    /// The extra delay of the next message (none, without faults).
    fn extra_delay(&mut self) -> Duration {
        if self.faults.delay_max.is_zero() {
            return Duration::ZERO;
        }
        self.faults.delay_max.mul_f64(self.unit())
    }

    fn cut_between(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }

    /// Node `k`, which must be up.
    pub fn node(&self, k: usize) -> &Node {
        self.nodes[k].as_ref().unwrap_or_else(|| panic!("node {k} is down"))
    }

    /// Starts node `k` (again) with its objects from its disk and no membership memory.
    pub fn start(&mut self, k: usize) {
        self.boot(k, None);
    }

    /// Starts node `k` again with the membership memory it last persisted.
    pub fn start_remembering(&mut self, k: usize) {
        let memory = self.persisted[k].clone();
        self.boot(k, memory.as_ref());
    }

    /// Node `k` starts again and its sessions with every running node come up on both sides
    /// (as after a crash: the agent redials and its peers accept).
    pub fn restart(&mut self, k: usize) {
        self.start(k);
        for j in 0..self.nodes.len() {
            if j != k && self.nodes[j].is_some() {
                self.connect(k, j);
                self.connect(j, k);
            }
        }
    }

    fn boot(&mut self, k: usize, memory: Option<&Persisted>) {
        self.boots[k] += 1;
        let boot = self.boots[k];
        let cfg = NodeConfig {
            objects: self.setup.objects.clone(),
            functions: self.setup.functions.clone(),
            boot,
            ..Default::default()
        };
        let (tier, site) = self.setup.layout[k].clone();
        let mut me = info(k, tier);
        if let Some(site) = site {
            me.labels.insert("site".into(), site);
        }
        let mut node = Node::new(cfg, me, memory, k as u64, self.clock(k));
        let disk = &mut self.disks[k];
        for name in disk.list().unwrap() {
            let r = store::restore(disk, &name, actor_id(&id(k), boot)).unwrap().unwrap();
            let stats = disk.stats(&name).unwrap();
            let incomplete = r.incomplete();
            let kept = r.damage.map_or_else(|| "(kept at an earlier start)".into(), |d| d.kept.display().to_string());
            node.restore_object(name.clone(), r.doc, stats);
            if incomplete {
                node.mark_object_damaged(&name, kept);
            }
        }
        self.nodes[k] = Some(node);
    }

    /// Node `k` stops at once: its disk loses what was not synced, its actors' live
    /// instances are gone.
    pub fn crash(&mut self, k: usize) {
        self.nodes[k] = None;
        self.disks[k].crash();
        for ((node, _), d) in self.actor_disks.iter_mut() {
            if *node == k {
                d.live = None;
            }
        }
    }

    /// Node `k` leaves on purpose ([`Node::handle_leave`]).
    pub fn leave(&mut self, k: usize) {
        let now = self.clock(k);
        if let Some(n) = self.nodes[k].as_mut() {
            n.handle_leave(now);
        }
        self.drain(k);
    }

    /// A session from `a` to `b` came up, on `a`'s side.
    pub fn connect(&mut self, a: usize, b: usize) {
        let now = self.clock(a);
        if let Some(n) = self.nodes[a].as_mut() {
            n.handle_connected(now, id(b));
        }
        self.drain(a);
    }

    /// Cuts every link between `left` and `right`.
    pub fn partition(&mut self, left: &[usize], right: &[usize]) {
        for &a in left {
            for &b in right {
                self.cut.insert((a.min(b), a.max(b)));
            }
        }
    }

    /// Mends every cut link, each as a reconnection on both sides (as the agent redials).
    /// Clearing [`Cluster::cut`] mends them without telling the nodes.
    pub fn heal(&mut self) {
        for (a, b) in std::mem::take(&mut self.cut) {
            self.connect(a, b);
            self.connect(b, a);
        }
    }

    /// Sends a request to node `k`; the answer lands in [`Cluster::replies`].
    pub fn request(&mut self, k: usize, req: Request) -> u64 {
        self.next_req += 1;
        let rid = self.next_req;
        let now = self.clock(k);
        self.nodes[k].as_mut().unwrap().handle_request(now, RequestId(rid), req);
        self.drain(k);
        rid
    }

    /// Sends a request and runs until it is answered (or `limit` passes).
    pub fn ask(&mut self, k: usize, req: Request, limit: Duration) -> Option<Reply> {
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

    /// Writes `json` ops to object `name` at node `k`, and waits for the answer.
    pub fn write(&mut self, k: usize, name: &str, json: &str) -> Reply {
        let req = Request::Write { object: obj(name), change: ops(json), durability: Durability::Local };
        self.ask(k, req, Duration::from_secs(30)).expect("a write is answered")
    }

    /// Reads object `name` at node `k`, and waits for the answer.
    pub fn get(&mut self, k: usize, name: &str) -> Reply {
        self.ask(k, Request::Get { object: obj(name), after: None }, Duration::from_secs(30)).expect("answered")
    }

    /// Carries out node `k`'s outputs.
    pub fn drain(&mut self, k: usize) {
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
                Output::Send { to, msg } => self.send(k, to, msg),
                Output::Persist(p) => self.persisted[k] = Some(p),
                Output::Event(e) => self.events.push((k, e)),
                Output::Disk(op) => match op {
                    DiskOp::Append { object, bytes } => self.disks[k].append(&object, &bytes).unwrap(),
                    DiskOp::Compact { object, snapshot } => self.disks[k].compact(&object, &snapshot).unwrap(),
                    DiskOp::Flush { ticket } => {
                        self.seq += 1;
                        self.flight.flushes += 1;
                        let boot = self.boots[k];
                        let at = self.now + self.setup.disk;
                        self.queue.insert((at, self.seq), Event::Flushed { node: k, ticket, boot });
                    }
                    DiskOp::Load { object } => {
                        self.seq += 1;
                        let boot = self.boots[k];
                        let at = self.now + self.setup.disk / 4;
                        self.queue.insert((at, self.seq), Event::Loaded { node: k, object, boot });
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
                    self.queue
                        .insert((self.now + PREFETCH, self.seq), Event::Prefetched { node: k, name: p.name, boot });
                }
                Output::Handoff(h) => {
                    let to = index(&h.to);
                    let state = self.actor_disks.get(&(k, h.name.clone())).and_then(|d| {
                        d.live.map(|(_, v)| v).or_else(|| d.checkpoints.range(..h.epoch).next_back().map(|(_, v)| *v))
                    });
                    self.seq += 1;
                    let boot = self.boots[k];
                    let at = self.now + self.setup.latency * 4 + self.extra_delay();
                    self.queue.insert(
                        (at, self.seq),
                        Event::Handoff { from: k, to, name: h.name, epoch: h.epoch, state, boot },
                    );
                }
                Output::Migration(e) => self.migration_events.push((self.now, k, e)),
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

    /// Puts a message from `k` on the network, unless its link is cut or it is lost.
    fn send(&mut self, k: usize, to: NodeId, msg: Message) {
        let to = index(&to);
        if self.cut_between(k, to) {
            return;
        }
        let (kind, subsystem) = (msg.kind(), Subsystem::of(&msg));
        let msg = match self.wire.as_mut() {
            Some(wire) => Payload::Encoded(wire.encode(&msg)),
            None => Payload::Value(msg),
        };
        self.traffic.count(kind, if let Payload::Encoded(b) = &msg { b.len() as u64 } else { 0 });
        if self.lost() {
            return;
        }
        self.seq += 1;
        self.flight.messages[subsystem as usize] += 1;
        let at = self.now + self.setup.latency + self.extra_delay();
        self.queue.insert((at, self.seq), Event::Deliver { from: k, to, msg });
    }

    /// Handles the next event or the due timers, not past `end`.
    pub fn step(&mut self, end: Time) {
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
            self.handle(ev);
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

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Deliver { from, to, msg } => {
                let msg = match msg {
                    Payload::Value(m) => m,
                    Payload::Encoded(bytes) => match self.wire.as_mut().map(|w| w.decode(&bytes)) {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => panic!("a message from node {from} to node {to} does not decode: {e}"),
                        None => panic!("an encoded message in flight after the wire was taken away"),
                    },
                };
                let s = Subsystem::of(&msg) as usize;
                self.flight.messages[s] -= 1;
                let now = self.clock(to);
                if let Some(n) = self.nodes[to].as_mut() {
                    n.handle_message(now, id(from), msg);
                    self.drain(to);
                }
                self.flight.delivered[s] += 1;
                self.flight.last_delivered[s] = self.now;
            }
            Event::Prefetched { node, name, boot } => {
                let now = self.clock(node);
                if self.boots[node] == boot
                    && let Some(n) = self.nodes[node].as_mut()
                {
                    let r = if self.prefetch_fails.contains(&node) { Err("no room".into()) } else { Ok(()) };
                    n.handle_prefetched(now, &name, r);
                    self.drain(node);
                }
            }
            Event::Handoff { from, to, name, epoch, state, boot } => {
                let now = self.clock(to);
                let delivered = state.is_some() && !self.cut_between(from, to) && !self.lost();
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
            Event::Loaded { node, object, boot } => {
                let now = self.clock(node);
                if self.boots[node] == boot
                    && let Some(n) = self.nodes[node].as_mut()
                {
                    let actor = n.objects().actor().clone();
                    let result = match store::restore(&mut self.disks[node], &object, actor) {
                        Ok(Some(r)) => {
                            let log = self.disks[node].stats(&object).unwrap_or_default();
                            let damaged = r.incomplete().then(|| "(test store)".to_string());
                            Ok(Some(objects::Loaded { doc: r.doc, log, damaged }))
                        }
                        Ok(None) => Ok(None),
                        Err(e) => Err(e.to_string()),
                    };
                    n.handle_loaded(now, &object, result);
                    self.drain(node);
                }
            }
            Event::Flushed { node, ticket, boot } => {
                self.flight.flushes -= 1;
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
    }

    /// Runs for `d` of virtual time. Events due exactly at the end may be left for the next
    /// run.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step(end);
        }
    }

    /// The value of object `name` at node `k`, if it is up and holds it (read from its disk
    /// if the document is cold, without making it hot).
    pub fn value(&mut self, k: usize, name: &str) -> Option<serde_json::Value> {
        let node = self.nodes[k].as_ref()?;
        let name = obj(name);
        if node.objects().is_cold(&name) {
            let actor = node.objects().actor().clone();
            return store::restore(&mut self.disks[k], &name, actor).ok()?.map(|r| r.doc.value());
        }
        node.objects().doc(&name).map(Document::value)
    }

    /// How `observer` sees node `of`, if it is up and knows it.
    pub fn status(&self, observer: usize, of: usize) -> Option<Status> {
        self.nodes[observer].as_ref().and_then(|n| n.membership().status_of(&id(of)))
    }
}

/// The index of the node with id `node` (see [`id`]).
pub fn index(node: &NodeId) -> usize {
    usize::from(node.0[0]) - 1
}
