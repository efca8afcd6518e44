//! The event loop: one priority queue ordered by (virtual time, sequence number), and the
//! simulated nodes, each a real [`liquid_core::Node`] with a simulated disk.
//!
//! After every input to a node the engine drains its outputs: `Send` goes through the
//! [`Network`], `Persist` to the node's disk, `Event` to the checkers. Each node has at most one
//! live wake-up in the queue; an earlier `poll_timeout` schedules a new one, and a wake-up whose
//! time no longer matches the node's (`wake`) is skipped as stale.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use liquid_core::membership::Persisted;
use liquid_core::wire::Message;
use liquid_core::{Node, NodeId, NodeInfo, Output, Time, node};

use crate::checks::Metrics;
use crate::network::Network;
use crate::scenario::{Action, Scenario};
use crate::sizes::{Sizer, index_in};

/// Never: no wake-up scheduled.
const NEVER: Time = Time(u64::MAX);

/// What happens at a point of virtual time.
pub(crate) enum Ev {
    /// A node's first boot.
    Boot(u32),
    /// `from` dials `to` (to join through it).
    Dial { from: u32, life: u32, to: u32 },
    /// The transport handshake finished: both ends learn of the connection.
    Connected { a: u32, a_life: u32, b: u32, b_life: u32 },
    /// A message arrives.
    Deliver { from: u32, to: u32, to_life: u32, msg: Message },
    /// A node's timer.
    Wake { node: u32, life: u32 },
    /// The scenario's fault number k.
    Fault(u32),
    /// Check convergence and report progress.
    Sample,
}

struct Entry {
    at: Time,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` pops the earliest (then the first scheduled) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

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
    /// The last durable membership memory.
    durable: Option<Persisted>,
    /// Writes not yet durable: (durable at, data), in write order.
    pending: VecDeque<(Time, Persisted)>,
}

/// The whole simulated continuum.
pub(crate) struct Engine<'a> {
    pub sc: &'a Scenario,
    pub seed: u64,
    pub now: Time,
    queue: BinaryHeap<Entry>,
    seq: u64,
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
    pub fn new(sc: &'a Scenario, seed: u64) -> Self {
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
            queue: BinaryHeap::with_capacity(4 * n + 64),
            seq: 0,
            nodes: (0..n)
                .map(|_| SimNode {
                    node: None,
                    life: 0,
                    wake: NEVER,
                    up_since: Time::ZERO,
                    durable: None,
                    pending: VecDeque::new(),
                })
                .collect(),
            ids: (0..n as u32).map(|i| node_id(seed, i)).collect(),
            net,
            cfg: node::Config { membership: sc.membership.clone() },
            boots_pending: n,
            events: 0,
            metrics: Metrics::new(sc),
            sizer: Sizer::new(n),
        };
        for (k, f) in sc.faults.iter().enumerate() {
            e.push(time(f.at), Ev::Fault(k as u32));
        }
        for (i, at) in boot_at.into_iter().enumerate() {
            e.push(at, Ev::Boot(i as u32));
        }
        e.push(time(sc.sample_interval), Ev::Sample);
        e
    }

    fn push(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queue.push(Entry { at, seq: self.seq, ev });
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
        while let Some(top) = self.queue.peek() {
            if top.at > end {
                break;
            }
            let Some(Entry { at, ev, .. }) = self.queue.pop() else { break };
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
            Ev::Dial { from, life, to } => self.dial(from, life, to),
            Ev::Connected { a, a_life, b, b_life } => self.connected(a, a_life, b, b_life),
            Ev::Deliver { from, to, to_life, msg } => self.deliver(from, to, to_life, msg),
            Ev::Wake { node, life } => self.wake(node, life),
            Ev::Fault(k) => self.fault(k as usize),
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
        sn.node = Some(Node::new(self.cfg.clone(), info, restored.as_ref(), seed, self.now));
        sn.up_since = self.now;
        sn.wake = NEVER;
        let life = sn.life;
        let boot = self.sc.bootstrap;
        if i != boot {
            self.push(self.now, Ev::Dial { from: i, life, to: boot });
        }
        // Like the real driver, a restarted node also dials peers it remembers.
        let remembered = restored.iter().flat_map(|p| p.peer_addrs.iter());
        let peers: Vec<u32> = remembered
            .filter_map(|a| a.strip_prefix("/sim/node/")?.parse().ok())
            .filter(|&p: &u32| p != i && p != boot && (p as usize) < self.nodes.len())
            .take(self.sc.rejoin_peers)
            .collect();
        for to in peers {
            self.push(self.now, Ev::Dial { from: i, life, to });
        }
        self.drain(i);
    }

    fn dial(&mut self, from: u32, life: u32, to: u32) {
        let sn = &self.nodes[from as usize];
        if sn.life != life || sn.node.is_none() {
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
            self.push(at, Ev::Dial { from, life, to });
        }
    }

    fn connected(&mut self, a: u32, a_life: u32, b: u32, b_life: u32) {
        let alive = |e: &Self, i: u32, life: u32| e.nodes[i as usize].life == life && e.running(i);
        if !alive(self, a, a_life) {
            return;
        }
        if !alive(self, b, b_life) || !self.net.reachable(self.site(a), self.site(b)) {
            let at = self.now + self.sc.connect_retry;
            self.push(at, Ev::Dial { from: a, life: a_life, to: b });
            return;
        }
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.ids[y as usize];
            if let Some(n) = self.nodes[x as usize].node.as_mut() {
                n.handle_connected(now, peer);
            }
            self.drain(x);
        }
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
        self.nodes[i as usize].wake = NEVER;
        let now = self.now;
        if let Some(n) = self.nodes[i as usize].node.as_mut() {
            if n.poll_timeout() <= now {
                n.handle_timeout(now);
            }
        }
        self.drain(i);
    }

    /// Carries out node `i`'s outputs, then makes sure its next wake-up is queued.
    fn drain(&mut self, i: u32) {
        loop {
            let Some(out) = self.nodes[i as usize].node.as_mut().and_then(Node::poll_output) else { break };
            match out {
                Output::Send { to, msg } => self.send(i, to, msg),
                Output::Persist(p) => {
                    let sn = &mut self.nodes[i as usize];
                    settle(sn, self.now);
                    sn.pending.push_back((self.now + self.sc.disk_latency, p));
                }
                Output::Event(change) => self.observe(i, &change),
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

    fn send(&mut self, from: u32, to: NodeId, msg: Message) {
        let bytes = self.sizer.len(&self.ids, &msg);
        self.metrics.sent(self.now, msg.kind(), bytes);
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
            Action::Partition(sites) => self.net.partition(self.now, sites),
            Action::Heal(sites) => self.net.heal(self.now, sites.as_deref()),
            Action::Crash(nodes) => {
                for &i in nodes {
                    let sn = &mut self.nodes[i as usize];
                    settle(sn, self.now);
                    sn.pending.clear();
                    sn.node = None;
                    sn.wake = NEVER;
                }
            }
            Action::Restart { nodes, fresh } => {
                for &i in nodes {
                    let sn = &mut self.nodes[i as usize];
                    if *fresh {
                        sn.durable = None;
                    }
                    let restored = sn.durable.clone();
                    self.start(i, restored);
                }
            }
        }
    }
}

/// Moves writes that became durable by `now` to the durable image.
fn settle(sn: &mut SimNode, now: Time) {
    while sn.pending.front().is_some_and(|(at, _)| *at <= now) {
        if let Some((_, p)) = sn.pending.pop_front() {
            sn.durable = Some(p);
        }
    }
}
