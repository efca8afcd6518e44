//! The event loop: one priority queue ordered by (virtual time, sequence number), and the
//! simulated nodes, each a real [`liquid_core::Node`] with a simulated disk.
//!
//! After every input to a node the engine drains its outputs: `Send` goes through the
//! [`Network`], `Persist` to the node's disk, `Event` to the checkers. Each node has at most one
//! live wake-up in the queue; an earlier `poll_timeout` schedules a new one, and a wake-up whose
//! time no longer matches the node's (`wake`) is skipped as stale.
//!
//! Connections, as the real driver makes them: a booting node dials the bootstrap node (a
//! restarted one also dials up to `rejoin_peers` peers it persisted); once the handshake (one
//! round trip) completes, both ends get `handle_connected`. A dial to a node that is down or
//! cut off is retried every `connect_retry`, and so is a join that left the node knowing no
//! other member (both `join` messages lost: the core itself never retries). A connection
//! ends when either end crashes or a partition separates them: the other end gets
//! `handle_disconnected`.
//!
//! Objects: every node has a [`SimStore`]. `Disk` outputs are applied to it in order at once;
//! a `Flush` completes `fsync_latency` later (the store is synced, then the node gets
//! `handle_flushed`). A crash loses what was not synced (with `torn_writes`, a random prefix
//! of each unsynced tail survives, as a torn append) and drops the flushes in flight. A
//! (re)start builds the node with boot number = its life (1, 2, …) and restores every object
//! in its store before the first input. Workload writes are requests to the writer's core;
//! see [`crate::workload`].

mod actors;
mod disk;
mod exec;
mod queue;

pub(crate) use actors::{ActorExec, MigrationRecord, fencing_violations};

use std::collections::BTreeSet;
use std::time::Duration;

use liquid_core::membership::Persisted;
use liquid_core::objects::{self, DiskOp, Reply, RequestId};
use liquid_core::wire::Message;
use liquid_core::{Node, NodeId, NodeInfo, Output, Time, node};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use state_sync::{ObjectName, SimStore, Store};

use crate::metrics::Metrics;
use crate::network::Network;
use crate::scenario::{Action, Scenario};
use crate::sizes::{Sizer, index_in};
use crate::workload::Workloads;
use disk::Disk;
use exec::{FnState, GuestEvent, HostAnswer};
use queue::{Ev, Queue};

/// Never: no wake-up scheduled.
const NEVER: Time = Time(u64::MAX);

/// A simulated machine.
pub(crate) struct SimNode {
    /// The running process; `None` before boot and while crashed.
    pub node: Option<Node>,
    /// Boots so far; messages and timers of an earlier life are dropped.
    pub life: u32,
    /// The time of this node's wake-up in the queue, [`NEVER`] if none.
    wake: Time,
    /// When the current life started.
    pub up_since: Time,
    /// The node's simulated disk (membership memory).
    disk: Disk,
    /// The node's object store.
    pub store: SimStore,
    /// Peers this node has a transport connection with (from dials).
    conns: Vec<u32>,
    /// Objects with appends not synced yet (a crash now loses something).
    unsynced: BTreeSet<ObjectName>,
}

/// Deliberate defects, for tests that prove the checks can fail.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sabotage {
    /// A restarted node does not load its object store.
    pub skip_restore: bool,
    /// Object messages sent at or after this time are dropped.
    pub drop_object_messages_from: Option<Time>,
    /// A flush is reported done as soon as it is asked and the store is never synced
    /// (writes are acknowledged but never made durable).
    pub skip_fsync: bool,
}

/// The whole simulated continuum.
pub(crate) struct Engine<'a> {
    pub sc: &'a Scenario,
    pub seed: u64,
    pub now: Time,
    queue: Queue,
    pub nodes: Vec<SimNode>,
    pub ids: Vec<NodeId>,
    pub net: Network,
    cfg: node::Config,
    /// Initial boots not yet done (a phase cannot converge before everyone joined).
    pub boots_pending: usize,
    /// Inputs processed (stale wake-ups excluded).
    pub events: u64,
    pub metrics: Metrics,
    sizer: Sizer,
    /// The workloads and every write they made.
    pub wl: Workloads,
    /// Randomness for torn writes.
    disk_rng: ChaCha8Rng,
    pub sabotage: Sabotage,
    /// Objects that failed to load on a restart: (node, object, error).
    pub restore_errors: Vec<(u32, String, String)>,
    /// Functions: executions, modules, host calls in flight.
    fx: FnState,
    /// Invocations from the scenario's streams, in flight: (caller, id) → (sent, stream).
    calls: std::collections::BTreeMap<(u32, u64), (Time, u32)>,
    inv_rng: ChaCha8Rng,
    /// What the functions did.
    pub fnm: FnMetrics,
    /// The placement policy of this run.
    pub policy: crate::PolicyKind,
}

/// Counters and latencies of functions in the simulator.
#[derive(Default, Debug)]
pub(crate) struct FnMetrics {
    pub deploys: u64,
    pub calls: u64,
    /// Calls not made because their caller was down.
    pub skipped: u64,
    /// Calls whose caller crashed before the outcome.
    pub lost_with_caller: u64,
    pub outcomes: std::collections::BTreeMap<&'static str, u64>,
    /// Latency of answered calls, µs, by the caller's site.
    pub latency_by_site: std::collections::BTreeMap<u32, Vec<u64>>,
    pub executions: u64,
    pub fuel: u64,
    pub fetches: u64,
    pub fetched_bytes: u64,
    /// Answered scenario calls: (sent, latency µs, ok), in answer order.
    pub call_log: Vec<(Time, u64, bool)>,
    /// Scenario calls answered (caller, id), to catch a second outcome.
    pub answered: BTreeSet<(u32, u64)>,
    /// Outcomes for calls that already had one.
    pub duplicate_outcomes: u64,
    /// Every actor execution, for the fencing check; and running ones by execution key.
    pub actor_runs: Vec<ActorExec>,
    pub actor_running: std::collections::BTreeMap<u64, usize>,
    /// Migration events of every node, in order.
    pub migration_events: Vec<MigrationRecord>,
    pub handoffs: u64,
    pub handoff_bytes: u64,
    pub deactivations: u64,
    /// Bytes of every message between sites (all kinds), and by message kind.
    pub wan_bytes: u64,
    pub wan_by_kind: std::collections::BTreeMap<&'static str, u64>,
    /// Bytes between sites that functions moved: function messages, module fetches, snapshots.
    pub wan_fn_bytes: u64,
}

/// splitmix64: a tiny, well-mixed hash for deriving seeds and ids.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Node `index`'s id for `seed`: 28 bytes derived from both, then the index (big-endian), so
/// the engine finds a node from its id without a map.
pub(crate) fn node_id(seed: u64, index: u32) -> NodeId {
    let mut bytes = [0u8; 32];
    let mut h = mix(seed ^ 0x6964_5f73_6565_6473) ^ u64::from(index);
    for chunk in bytes[..28].chunks_mut(8) {
        h = mix(h);
        chunk.copy_from_slice(&h.to_le_bytes()[..chunk.len()]);
    }
    bytes[28..].copy_from_slice(&index.to_be_bytes());
    NodeId(bytes)
}

fn time(d: Duration) -> Time {
    Time::ZERO + d
}

impl<'a> Engine<'a> {
    pub fn new(sc: &'a Scenario, seed: u64, policy: crate::PolicyKind) -> Self {
        let n = sc.node_count();
        let mut net = Network::new(sc.sites.len(), mix(seed ^ 0x6e65_7477_6f72_6b00));
        // The bootstrap node first, the others at uniform random times in the join window.
        let boot_at: Vec<Time> = (0..n as u32)
            .map(|i| if i == sc.bootstrap { Time::ZERO } else { time(net.uniform(sc.join_window)) })
            .collect();
        let mut e = Engine {
            sc,
            seed,
            now: Time::ZERO,
            queue: Queue::with_capacity(4 * n + 64),
            nodes: (0..n)
                .map(|_| SimNode {
                    node: None,
                    life: 0,
                    wake: NEVER,
                    up_since: Time::ZERO,
                    disk: Disk::default(),
                    store: SimStore::new(),
                    conns: Vec::new(),
                    unsynced: BTreeSet::new(),
                })
                .collect(),
            ids: (0..n as u32).map(|i| node_id(seed, i)).collect(),
            net,
            cfg: node::Config {
                membership: sc.membership.clone(),
                objects: objects::Config { unix_epoch_offset_us: 0, ..sc.objects.clone() },
                functions: liquid_core::functions::Config {
                    // Without functions there is nothing to place, and the policy's periodic run
                    // still indexes every member of every node's view (a third of the time at
                    // 1,000 nodes, for nothing).
                    policy_every: (policy == crate::PolicyKind::Liquid && !sc.functions.is_empty())
                        .then_some(sc.placement.every),
                    policy: sc.placement.params.clone(),
                    lease: sc.placement.lease,
                    ..Default::default()
                },
                boot: 0,
            },
            boots_pending: n,
            events: 0,
            metrics: Metrics::new(sc),
            sizer: Sizer::new(n),
            wl: Workloads::new(&sc.workloads, n, mix(seed ^ 0x776f_726b_6c6f_6164)),
            disk_rng: ChaCha8Rng::seed_from_u64(mix(seed ^ 0x6469_736b_7465_6172)),
            sabotage: Sabotage::default(),
            restore_errors: Vec::new(),
            fx: FnState::new(n),
            calls: Default::default(),
            inv_rng: ChaCha8Rng::seed_from_u64(mix(seed ^ 0x696e_766f_6b65)),
            fnm: FnMetrics::default(),
            policy,
        };
        for (k, f) in sc.functions.iter().enumerate() {
            e.fx.modules.insert(f.hash, f.module.clone());
            e.push(time(f.deploy_at), Ev::Deploy(k as u32));
        }
        for (k, w) in sc.invocations.iter().enumerate() {
            e.push(time(w.start), Ev::Invoke(k as u32));
        }
        for (k, f) in sc.faults.iter().enumerate() {
            e.push(time(f.at), Ev::Fault(k as u32));
        }
        for (k, w) in sc.workloads.iter().enumerate() {
            if let Some((_, at)) = w.create {
                e.push(time(at), Ev::Create(k as u32));
            }
            e.push(time(w.start), Ev::Write(k as u32));
        }
        for (i, at) in boot_at.into_iter().enumerate() {
            e.push(at, Ev::Boot(i as u32));
        }
        e.push(time(sc.sample_interval), Ev::Sample);
        e.objects_phase_started();
        e
    }

    fn push(&mut self, at: Time, ev: Ev) {
        self.queue.push(at, ev);
    }

    /// The node with this id, if it is one of ours.
    pub fn index_of(&self, id: &NodeId) -> Option<u32> {
        index_in(&self.ids, id)
    }

    pub fn running(&self, i: u32) -> bool {
        self.nodes[i as usize].node.is_some()
    }

    pub fn site(&self, i: u32) -> u32 {
        self.sc.node_sites[i as usize]
    }

    /// Runs until the queue is empty or the next event is after `end`; calls `on_sample` after
    /// every sample.
    pub fn run_until(&mut self, end: Time, mut on_sample: impl FnMut(&mut Self)) {
        while let Some((at, ev)) = self.queue.pop_until(end) {
            self.now = at;
            if self.dispatch(ev) {
                on_sample(self);
            }
        }
        self.now = end;
    }

    /// Handles one event; returns whether it was a sample.
    fn dispatch(&mut self, ev: Ev) -> bool {
        if !matches!(&ev, Ev::Wake { node, life } if !self.wake_current(*node, *life)) {
            self.events += 1;
        }
        match ev {
            Ev::Boot(i) => {
                self.boots_pending -= 1;
                self.start(i, None);
            }
            Ev::Dial { from, life, to, if_alone } => self.dial(from, life, to, if_alone),
            Ev::Connected { a, a_life, b, b_life } => self.connected(a, a_life, b, b_life),
            Ev::Deliver { from, to, to_life, msg } => self.deliver(from, to, to_life, msg),
            Ev::Wake { node, life } => self.wake(node, life),
            Ev::Fault(k) => self.fault(k as usize),
            Ev::Flushed { node, life, ticket } => self.flushed(node, life, ticket),
            Ev::Loaded { node, life, object } => self.loaded(node, life, &object),
            Ev::Create(k) => self.create(k as usize),
            Ev::Write(k) => self.write(k as usize),
            Ev::Deploy(k) => self.deploy(k as usize),
            Ev::Invoke(k) => self.invoke(k as usize),
            Ev::ExecReady(key) => self.exec_ready(key),
            Ev::Executed(key) => self.executed(key),
            Ev::Prefetched { node, life, name, result } => self.prefetched(node, life, name, result),
            Ev::SnapshotArrives { from, from_life, to, to_life, name, epoch, bytes, sent } => {
                self.snapshot_arrives(from, from_life, to, to_life, name, epoch, bytes, sent)
            }
            Ev::HandoffDone { node, life, name, epoch, result } => self.handoff_done(node, life, name, epoch, result),
            Ev::Sample => {
                self.sample();
                let next = self.now + self.sc.sample_interval;
                self.push(next, Ev::Sample);
                return true;
            }
        }
        false
    }

    fn wake_current(&self, i: u32, life: u32) -> bool {
        let sn = &self.nodes[i as usize];
        sn.life == life && sn.wake == self.now && sn.node.is_some()
    }

    fn info(&self, i: u32) -> NodeInfo {
        let sc = self.sc;
        let group = sc.group_of(i);
        let site = &sc.sites[sc.node_sites[i as usize] as usize];
        NodeInfo {
            id: self.ids[i as usize],
            name: sc.node_name(i),
            tier: group.tier,
            labels: [("site".to_string(), site.name.clone())].into_iter().collect(),
            arch: group.arch.clone(),
            cpus: group.cpus,
            memory_mib: group.memory_mib,
            addrs: vec![format!("/sim/node/{i}")],
            version: "sim".to_string(),
        }
    }

    /// Boots node `i` (a new life), from `restored` if given, and dials its way in.
    fn start(&mut self, i: u32, restored: Option<Persisted>) {
        let info = self.info(i);
        let sn = &mut self.nodes[i as usize];
        sn.life += 1;
        let seed = mix(self.seed ^ mix((u64::from(i) << 32) | u64::from(sn.life)));
        // The boot counter grows with every start, like the agent's `DATA_DIR/boot` (kept
        // across `fresh` restarts too: the node keeps its id, so its actor ids must stay new).
        let cfg = node::Config { boot: u64::from(sn.life), ..self.cfg.clone() };
        let mut node = Node::new(cfg, info, restored.as_ref(), seed, self.now);
        if !self.sabotage.skip_restore {
            self.restore_objects(i, &mut node);
        }
        let sn = &mut self.nodes[i as usize];
        sn.node = Some(node);
        sn.up_since = self.now;
        sn.wake = NEVER;
        let life = sn.life;
        let boot = self.sc.bootstrap;
        if i != boot {
            self.push(self.now, Ev::Dial { from: i, life, to: boot, if_alone: false });
        }
        // Like the real driver, a restarted node also dials peers it remembers.
        let remembered = restored.iter().flat_map(|p| p.peer_addrs.iter());
        let peers: Vec<u32> = remembered
            .filter_map(|a| a.strip_prefix("/sim/node/")?.parse().ok())
            .filter(|&p: &u32| p != i && p != boot && (p as usize) < self.nodes.len())
            .take(self.sc.rejoin_peers)
            .collect();
        for to in peers {
            self.push(self.now, Ev::Dial { from: i, life, to, if_alone: false });
        }
        self.drain(i);
    }

    /// Loads every object in node `i`'s store into `node`, as the agent does at startup.
    fn restore_objects(&mut self, i: u32, node: &mut Node) {
        let sn = &mut self.nodes[i as usize];
        let actor = objects::actor_id(&node.id(), u64::from(sn.life));
        let names = match sn.store.list() {
            Ok(names) => names,
            Err(e) => {
                self.restore_errors.push((i, "(list)".to_string(), e.to_string()));
                return;
            }
        };
        for name in names {
            match state_sync::store::restore(&mut sn.store, &name, actor.clone()) {
                Ok(Some(r)) => {
                    let stats = sn.store.stats(&name).unwrap_or_default();
                    let incomplete = r.incomplete();
                    let kept =
                        r.damage.map_or_else(|| "(kept at an earlier start)".into(), |d| d.kept.display().to_string());
                    node.restore_object(name.clone(), r.doc, stats);
                    if incomplete {
                        node.mark_object_damaged(&name, kept);
                    }
                }
                Ok(None) => {}
                Err(e) => self.restore_errors.push((i, name.to_string(), e.to_string())),
            }
        }
    }

    fn dial(&mut self, from: u32, life: u32, to: u32, if_alone: bool) {
        let sn = &self.nodes[from as usize];
        let Some(node) = &sn.node else { return };
        if sn.life != life || (if_alone && node.membership().counts().iter().sum::<usize>() > 0) {
            return;
        }
        if self.running(to) && self.net.reachable(self.site(from), self.site(to)) {
            // One round trip for the handshake.
            let link = self.link(from, to);
            let at = self.now + 2 * link.latency;
            let b_life = self.nodes[to as usize].life;
            self.push(at, Ev::Connected { a: from, a_life: life, b: to, b_life });
        } else {
            let at = self.now + self.sc.connect_retry;
            self.push(at, Ev::Dial { from, life, to, if_alone });
        }
    }

    fn connected(&mut self, a: u32, a_life: u32, b: u32, b_life: u32) {
        let alive = |e: &Self, i: u32, life: u32| e.nodes[i as usize].life == life && e.running(i);
        if !alive(self, a, a_life) {
            return;
        }
        if !alive(self, b, b_life) || !self.net.reachable(self.site(a), self.site(b)) {
            let at = self.now + self.sc.connect_retry;
            self.push(at, Ev::Dial { from: a, life: a_life, to: b, if_alone: false });
            return;
        }
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.ids[y as usize];
            let sn = &mut self.nodes[x as usize];
            if !sn.conns.contains(&y) {
                sn.conns.push(y);
            }
            if let Some(n) = sn.node.as_mut() {
                n.handle_connected(now, peer);
            }
            self.drain(x);
        }
        // The core does not retry a join: if both `join`s were lost, `a` would stay alone for
        // ever. Like a real driver, dial again while it knows nobody.
        let at = self.now + self.sc.connect_retry;
        self.push(at, Ev::Dial { from: a, life: a_life, to: b, if_alone: true });
    }

    fn deliver(&mut self, from: u32, to: u32, to_life: u32, msg: Message) {
        let sn = &self.nodes[to as usize];
        if sn.life != to_life || sn.node.is_none() {
            self.metrics.dropped_down(self.now);
            return;
        }
        if !self.net.reachable(self.site(from), self.site(to)) {
            self.metrics.dropped_partition(self.now);
            return;
        }
        let (now, from_id) = (self.now, self.ids[from as usize]);
        if let Some(n) = self.nodes[to as usize].node.as_mut() {
            n.handle_message(now, from_id, msg);
        }
        self.drain(to);
    }

    fn wake(&mut self, i: u32, life: u32) {
        if !self.wake_current(i, life) {
            return;
        }
        let now = self.now;
        let sn = &mut self.nodes[i as usize];
        sn.wake = NEVER;
        if let Some(n) = sn.node.as_mut() {
            let t = n.poll_timeout();
            if t > now {
                // A wake-up for a timer that has since moved later (mostly a probe answered
                // before its deadline: a third of all wake-ups). Nothing is due, and every
                // output was carried out after the input that moved it: queue the real one.
                sn.wake = t;
                let life = sn.life;
                self.push(t, Ev::Wake { node: i, life });
                return;
            }
            n.handle_timeout(now);
        }
        self.drain(i);
    }

    /// Carries out node `i`'s outputs, then makes sure its next wake-up is queued.
    fn drain(&mut self, i: u32) {
        while let Some(out) = self.nodes[i as usize].node.as_mut().and_then(Node::poll_output) {
            match out {
                Output::Send { to, msg } => self.send(i, to, msg),
                Output::Persist(p) => {
                    let sn = &mut self.nodes[i as usize];
                    sn.disk.write(self.now, self.now + self.sc.disk_latency, p);
                }
                Output::Event(change) => self.observe(i, &change),
                Output::Disk(op) => self.disk_op(i, op),
                Output::Reply { id, reply } if id.0 >= exec::SIM_IDS => self.host_reply(i, id.0, reply),
                Output::Reply { id, reply } => self.reply(i, id, &reply),
                Output::Execute(exec) => self.execute(i, *exec),
                Output::Invoked { id, result } => self.invoked(i, id.0, result),
                Output::Prefetch(p) => self.prefetch(i, *p),
                Output::Handoff(h) => self.handoff(i, *h),
                Output::Deactivate { .. } => self.fnm.deactivations += 1,
                Output::Migration(event) => {
                    self.fnm.migration_events.push(MigrationRecord { at: self.now, node: i, event })
                }
                _ => {}
            }
        }
        let sn = &mut self.nodes[i as usize];
        let Some(n) = &sn.node else { return };
        // A timer due now was just handled; never schedule a wake-up in the past.
        let t = n.poll_timeout().max(self.now);
        if t < sn.wake {
            sn.wake = t;
            let life = sn.life;
            self.push(t, Ev::Wake { node: i, life });
        }
    }

    fn link(&self, a: u32, b: u32) -> crate::network::Link {
        let (sa, sb) = (self.site(a), self.site(b));
        *self.sc.links.between(sa == sb, self.sc.node_tier(a), self.sc.node_tier(b))
    }

    /// Storage work from node `i`, in order.
    fn disk_op(&mut self, i: u32, op: DiskOp) {
        let sn = &mut self.nodes[i as usize];
        let res = match op {
            DiskOp::Append { object, bytes } => {
                let res = sn.store.append(&object, &bytes);
                sn.unsynced.insert(object);
                res
            }
            DiskOp::Compact { object, snapshot } => {
                // A compaction is durable when it returns, and contains every earlier append.
                sn.unsynced.remove(&object);
                sn.store.compact(&object, &snapshot)
            }
            DiskOp::Flush { ticket } if self.sabotage.skip_fsync => {
                if let Some(n) = sn.node.as_mut() {
                    n.handle_flushed(self.now, ticket, Ok(()));
                }
                return;
            }
            DiskOp::Flush { ticket } => {
                let (at, life) = (self.now + self.sc.fsync_latency, sn.life);
                self.push(at, Ev::Flushed { node: i, life, ticket });
                return;
            }
            DiskOp::Load { object } => {
                // A read from the page cache or the device: a fraction of an fsync.
                let (at, life) = (self.now + self.sc.fsync_latency / 4, sn.life);
                self.push(at, Ev::Loaded { node: i, life, object });
                return;
            }
            _ => Ok(()),
        };
        // The simulated store cannot fail; if it ever did, the flush would report it.
        if let Err(e) = res {
            self.restore_errors.push((i, "(write)".to_string(), e.to_string()));
        }
    }

    /// A flush of node `i` completed (unless the node crashed since).
    fn flushed(&mut self, i: u32, life: u32, ticket: u64) {
        let now = self.now;
        let sn = &mut self.nodes[i as usize];
        let Some(node) = sn.node.as_mut().filter(|_| sn.life == life) else { return };
        let res = sn.store.sync().map_err(|e| e.to_string());
        sn.unsynced.clear();
        node.handle_flushed(now, ticket, res);
        self.drain(i);
    }

    /// A cold object of node `i` was read back (unless the node crashed since).
    fn loaded(&mut self, i: u32, life: u32, object: &ObjectName) {
        let now = self.now;
        let sn = &mut self.nodes[i as usize];
        let Some(node) = sn.node.as_mut().filter(|_| sn.life == life) else { return };
        let actor = node.objects().actor().clone();
        let result = match state_sync::store::restore(&mut sn.store, object, actor) {
            Ok(Some(r)) => {
                let log = sn.store.stats(object).unwrap_or_default();
                let damaged = r.incomplete().then(|| "(simulated store)".to_string());
                Ok(Some(objects::Loaded { doc: r.doc, log, damaged }))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        node.handle_loaded(now, object, result);
        self.drain(i);
    }

    fn reply(&mut self, i: u32, id: RequestId, reply: &Reply) {
        if let Some((sent, result)) = self.wl.reply(self.now, i, id, reply) {
            self.metrics.write_answered(self.now.since(sent), result);
        }
    }

    /// Workload `k`'s creator creates every object of it.
    fn create(&mut self, k: usize) {
        let w = &self.sc.workloads[k];
        let Some((creator, _)) = w.create else { return };
        let objects = self.wl.objects_of(k).to_vec();
        for object in objects {
            if !self.running(creator) {
                self.metrics.write_skipped();
                continue;
            }
            let sub = self.wl.submit(self.now, creator, object, Some(0), w.value_bytes, w.durability);
            self.request(sub);
        }
    }

    /// Workload `k`'s next write, and the one after scheduled.
    fn write(&mut self, k: usize) {
        let w = &self.sc.workloads[k];
        let next = self.now + self.wl.gap(w);
        if next < time(w.stop) {
            self.push(next, Ev::Write(k as u32));
        }
        let (writer, object, inc) = self.wl.draw(k, w);
        if !self.running(writer) {
            self.metrics.write_skipped();
            return;
        }
        let sub = self.wl.submit(self.now, writer, object, inc.then_some(1), w.value_bytes, w.durability);
        self.request(sub);
    }

    fn request(&mut self, sub: crate::workload::Submit) {
        self.metrics.write_attempted();
        let now = self.now;
        if let Some(n) = self.nodes[sub.node as usize].node.as_mut() {
            n.handle_request(now, sub.id, sub.request);
        }
        self.drain(sub.node);
    }

    /// Function `k` is deployed from its deployer: its module is on the deployer's disk and
    /// its registry entry is written there (the registry replicates like any object).
    fn deploy(&mut self, k: usize) {
        let f = &self.sc.functions[k];
        let i = f.deployer;
        if !self.running(i) {
            return;
        }
        self.fx.held[i as usize].insert(f.hash);
        let me = self.ids[i as usize];
        let mut manifest = f.manifest.clone();
        if self.policy == crate::PolicyKind::Cloud {
            // Everything runs in the cloud: the placement allows cloud nodes only.
            manifest.placement.tier = Some("cloud".to_string());
        }
        let entry = liquid_core::functions::Entry {
            hash: f.hash,
            size: f.module.len() as u64,
            manifest,
            deployed_by: me.to_string(),
            deployed_at_ms: self.now.as_micros() / 1000,
            deleted: false,
            signature: None,
        };
        let now = self.now;
        let write = self.nodes[i as usize].node.as_ref().map(|n| n.deploy_request(now, &entry));
        if let Some(Ok(req)) = write {
            let id = self.fx.id();
            if let Some(n) = self.nodes[i as usize].node.as_mut() {
                n.handle_request(now, RequestId(id), req);
            }
            self.fnm.deploys += 1;
            self.drain(i);
        }
    }

    /// Invocation stream `k`'s next call, and the one after scheduled.
    fn invoke(&mut self, k: usize) {
        let w = &self.sc.invocations[k];
        let u = (self.inv_rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let gap = -(1.0 - u).ln() / w.rate;
        let next = self.now + Duration::from_secs_f64(gap.min(1e6));
        if next < time(w.stop) {
            self.push(next, Ev::Invoke(k as u32));
        }
        let caller = w.callers[(self.inv_rng.next_u64() % w.callers.len() as u64) as usize];
        if !self.running(caller) {
            self.fnm.skipped += 1;
            return;
        }
        let id = self.fx.id();
        self.calls.insert((caller, id), (self.now, k as u32));
        self.fnm.calls += 1;
        let (now, name, input) = (self.now, w.function.clone(), w.input.clone());
        if let Some(n) = self.nodes[caller as usize].node.as_mut() {
            n.handle_invoke(now, liquid_core::functions::InvokeId(id), name, input, 0);
        }
        self.drain(caller);
    }

    /// An invocation's outcome at node `i`: a scenario call's, or a nested call's answer to
    /// a parked guest.
    fn invoked(&mut self, i: u32, id: u64, result: Result<Vec<u8>, wasm_host::InvokeError>) {
        if let Some((sent, _)) = self.calls.remove(&(i, id)) {
            let kind = match &result {
                Ok(_) => "ok",
                Err(e) => e.kind(),
            };
            *self.fnm.outcomes.entry(kind).or_default() += 1;
            let latency = self.now.since(sent).as_micros() as u64;
            if result.is_ok() {
                let site = self.site(i);
                self.fnm.latency_by_site.entry(site).or_default().push(latency);
            }
            self.fnm.call_log.push((sent, latency, result.is_ok()));
            self.fnm.answered.insert((i, id));
            return;
        }
        if self.fnm.answered.contains(&(i, id)) {
            self.fnm.duplicate_outcomes += 1;
            return;
        }
        if let Some((key, _)) = self.fx.host_waits.remove(&(i, id)) {
            let answer = liquid_core::functions::host_invoke_answer(result);
            let ev = self.fx.resume(key, HostAnswer::Invoke(answer));
            self.guest_event(key, ev);
        }
    }

    /// The core asks node `i` to run a function.
    fn execute(&mut self, i: u32, exec: liquid_core::functions::Execution) {
        let key = self.fx.next_exec;
        self.fx.next_exec += 1;
        let hash = exec.hash;
        let size = exec.size;
        let have = self.fx.held[i as usize].contains(&hash);
        let source = (!have)
            .then(|| {
                exec.sources.iter().filter_map(|s| self.index_of(s)).find(|&s| {
                    self.running(s)
                        && self.fx.held[s as usize].contains(&hash)
                        && self.net.reachable(self.site(i), self.site(s))
                })
            })
            .flatten();
        let life = self.nodes[i as usize].life;
        if let Some(run) = exec.actor.as_ref() {
            self.fnm.actor_running.insert(key, self.fnm.actor_runs.len());
            self.fnm.actor_runs.push(ActorExec {
                name: exec.name.clone(),
                node: i,
                epoch: run.epoch,
                start: self.now,
                end: None,
            });
        }
        self.fx.execs.insert(
            key,
            exec::Exec { node: i, life, exec, fetched: !have, to_guest: None, from_guest: None, outcome: None },
        );
        if have {
            return self.run_exec(key);
        }
        match source {
            Some(s) => {
                let link = self.link(i, s);
                let d = self.net.delay(&link, 64) + self.net.delay(&link, size as usize);
                self.fnm.fetches += 1;
                self.fnm.fetched_bytes += size;
                self.count_wan(i, s, size + 64, "module");
                self.push(self.now + d, Ev::ExecReady(key));
            }
            None => {
                let err = wasm_host::InvokeError::Unavailable(format!(
                    "module {} is not here and no reachable node holds it",
                    hash.short()
                ));
                self.finish_exec(key, Err(err), 0);
            }
        }
    }

    fn exec_ready(&mut self, key: u64) {
        let Some(e) = self.fx.execs.get(&key) else { return };
        let (i, hash) = (e.node, e.exec.hash);
        if self.nodes[i as usize].life != e.life || !self.running(i) {
            self.fx.execs.remove(&key);
            if let Some(k) = self.fnm.actor_running.remove(&key) {
                self.fnm.actor_runs[k].end = Some(self.now);
            }
            return;
        }
        self.fx.held[i as usize].insert(hash);
        self.run_exec(key);
    }

    fn run_exec(&mut self, key: u64) {
        let ev = self.fx.start(key);
        self.guest_event(key, ev);
    }

    /// A guest finished or made a host call.
    fn guest_event(&mut self, key: u64, ev: Result<GuestEvent, wasm_host::InvokeError>) {
        let Some(i) = self.fx.execs.get(&key).map(|e| e.node) else { return };
        let now = self.now;
        match ev {
            Err(e) => self.finish_exec(key, Err(e), 0),
            Ok(GuestEvent::Done(out)) => {
                let d = self.sc.cost.time(out.fuel, self.sc.node_tier(i));
                if let Some(e) = self.fx.execs.get_mut(&key) {
                    e.outcome = Some(out);
                }
                self.push(now + d, Ev::Executed(key));
            }
            Ok(GuestEvent::Object(call)) => {
                let id = self.fx.id();
                let (req, is_write) = liquid_core::functions::host_request(call);
                self.fx.host_waits.insert((i, id), (key, is_write));
                let exec = self.fx.execs.get(&key).map(|e| e.exec.id);
                if let (Some(n), Some(exec)) = (self.nodes[i as usize].node.as_mut(), exec) {
                    n.handle_host_request(now, exec, RequestId(id), req);
                }
                self.drain(i);
            }
            Ok(GuestEvent::Invoke { name, input, depth }) => {
                let id = self.fx.id();
                self.fx.host_waits.insert((i, id), (key, false));
                if let Some(n) = self.nodes[i as usize].node.as_mut() {
                    n.handle_invoke(now, liquid_core::functions::InvokeId(id), name, input, depth);
                }
                self.drain(i);
            }
        }
    }

    /// The core answered a parked guest's object call.
    fn host_reply(&mut self, i: u32, id: u64, reply: Reply) {
        let Some((key, is_write)) = self.fx.host_waits.remove(&(i, id)) else { return };
        let answer = liquid_core::functions::host_answer(reply, is_write);
        let ev = self.fx.resume(key, HostAnswer::Object(answer));
        self.guest_event(key, ev);
    }

    fn executed(&mut self, key: u64) {
        let Some(out) = self.fx.execs.get_mut(&key).and_then(|e| e.outcome.take()) else { return };
        self.finish_exec(key, out.result, out.fuel);
    }

    fn finish_exec(&mut self, key: u64, result: Result<Vec<u8>, wasm_host::InvokeError>, fuel: u64) {
        if let Some(k) = self.fnm.actor_running.remove(&key) {
            self.fnm.actor_runs[k].end = Some(self.now);
        }
        let Some(e) = self.fx.execs.remove(&key) else { return };
        let i = e.node;
        if self.nodes[i as usize].life != e.life {
            return;
        }
        self.fnm.executions += 1;
        self.fnm.fuel += fuel;
        let now = self.now;
        if let Some(n) = self.nodes[i as usize].node.as_mut() {
            let done = liquid_core::functions::Executed { result, fuel, fetched: e.fetched, state_bytes: 0 };
            n.handle_executed(now, e.exec.id, done);
        }
        self.drain(i);
    }

    /// Calls still waiting at the end: (count, the oldest's age).
    pub fn calls_pending(&self) -> (u64, Duration) {
        let oldest = self.calls.values().map(|(sent, _)| self.now.since(*sent)).max().unwrap_or_default();
        (self.calls.len() as u64, oldest)
    }

    /// Ends the connection between `a` and `b`; the ends that run get `handle_disconnected`.
    fn disconnect(&mut self, a: u32, b: u32) {
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            let sn = &mut self.nodes[x as usize];
            let Some(k) = sn.conns.iter().position(|&p| p == y) else { continue };
            sn.conns.swap_remove(k);
            let peer = self.ids[y as usize];
            if let Some(n) = sn.node.as_mut() {
                n.handle_disconnected(now, peer);
                self.drain(x);
            }
        }
    }

    fn send(&mut self, from: u32, to: NodeId, msg: Message) {
        let bytes = self.sizer.len(&self.ids, &msg);
        self.metrics.sent(self.now, msg.kind(), bytes);
        if matches!(msg, Message::Objects(_)) && self.sabotage.drop_object_messages_from.is_some_and(|t| self.now >= t)
        {
            self.metrics.dropped_loss(self.now);
            return;
        }
        let Some(to) = self.index_of(&to) else {
            self.metrics.dropped_down(self.now);
            return;
        };
        if !self.running(to) {
            // No process to connect to: it could only come back as a new life.
            self.metrics.dropped_down(self.now);
            return;
        }
        if !self.net.reachable(self.site(from), self.site(to)) {
            self.metrics.dropped_partition(self.now);
            return;
        }
        if self.site(from) != self.site(to) {
            self.fnm.wan_bytes += bytes as u64;
            *self.fnm.wan_by_kind.entry(msg.kind()).or_default() += bytes as u64;
            if matches!(msg, Message::Functions(_)) {
                self.fnm.wan_fn_bytes += bytes as u64;
            }
        }
        let link = self.link(from, to);
        if self.net.lost(&link) {
            self.metrics.dropped_loss(self.now);
            return;
        }
        let at = self.now + self.net.delay(&link, bytes);
        let to_life = self.nodes[to as usize].life;
        self.push(at, Ev::Deliver { from, to, to_life, msg });
    }

    fn fault(&mut self, k: usize) {
        let sc = self.sc;
        let f = &sc.faults[k];
        self.metrics.begin_phase(self.now, &f.label);
        match &f.action {
            Action::Partition(sites) => {
                self.net.partition(self.now, sites);
                self.cut_connections();
            }
            Action::Heal(sites) => self.net.heal(self.now, sites.as_deref()),
            Action::Crash(nodes) => {
                for &i in nodes {
                    self.crash(i);
                }
            }
            Action::Restart { nodes, fresh } => {
                for &i in nodes {
                    let sn = &mut self.nodes[i as usize];
                    if *fresh {
                        sn.disk = Disk::default();
                        sn.store = SimStore::new();
                        self.wl.wiped(i);
                    }
                    let restored = sn.disk.durable().cloned();
                    self.start(i, restored);
                }
            }
        }
        self.objects_phase_started();
    }

    /// Node `i`'s process dies: unsynced writes are lost, its connections close.
    fn crash(&mut self, i: u32) {
        let torn = self.sc.torn_writes;
        let sn = &mut self.nodes[i as usize];
        sn.disk.crash(self.now);
        if !std::mem::take(&mut sn.unsynced).is_empty() {
            self.metrics.crash_lost_unsynced();
        }
        let sn = &mut self.nodes[i as usize];
        if torn {
            let rng = &mut self.disk_rng;
            sn.store.crash_torn(|_, unsynced| (rng.next_u64() % (unsynced as u64 + 1)) as usize);
        } else {
            sn.store.crash();
        }
        sn.node = None;
        sn.wake = NEVER;
        let unanswered = self.wl.crashed(i);
        self.metrics.writes_unanswered(unanswered);
        let ended: Vec<u64> = self.fx.execs.iter().filter(|(_, e)| e.node == i).map(|(k, _)| *k).collect();
        for key in ended {
            if let Some(k) = self.fnm.actor_running.remove(&key) {
                self.fnm.actor_runs[k].end = Some(self.now);
            }
        }
        self.fx.crashed(i);
        let before = self.calls.len();
        self.calls.retain(|(caller, _), _| *caller != i);
        self.fnm.lost_with_caller += (before - self.calls.len()) as u64;
        for peer in self.nodes[i as usize].conns.clone() {
            self.disconnect(i, peer);
        }
    }

    /// Closes every connection whose ends a partition just separated.
    fn cut_connections(&mut self) {
        let mut cut = Vec::new();
        for (a, sn) in self.nodes.iter().enumerate() {
            for &b in &sn.conns {
                if (a as u32) < b && !self.net.reachable(self.site(a as u32), self.site(b)) {
                    cut.push((a as u32, b));
                }
            }
        }
        for (a, b) in cut {
            self.disconnect(a, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_the_seed_and_carry_their_index() {
        let ids: Vec<NodeId> = (0..1000).map(|i| node_id(7, i)).collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index_in(&ids, id), Some(i as u32));
        }
        assert_ne!(node_id(7, 3), node_id(8, 3));
        assert_eq!(index_in(&ids, &node_id(8, 3)), None);
        let mut sorted = ids.clone();
        sorted.sort();
        assert_ne!(sorted, ids, "id order is not index order");
    }
}
