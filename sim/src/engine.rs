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
//! other member (both `join` messages lost: the core itself never retries).

mod disk;
mod queue;

use std::time::Duration;

use liquid_core::membership::Persisted;
use liquid_core::wire::Message;
use liquid_core::{Node, NodeId, NodeInfo, Output, Time, node};

use crate::checks::Metrics;
use crate::network::Network;
use crate::scenario::{Action, Scenario};
use crate::sizes::{Sizer, index_in};
use disk::Disk;
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
    /// The node's simulated disk.
    disk: Disk,
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
            queue: Queue::with_capacity(4 * n + 64),
            nodes: (0..n)
                .map(|_| SimNode { node: None, life: 0, wake: NEVER, up_since: Time::ZERO, disk: Disk::default() })
                .collect(),
            ids: (0..n as u32).map(|i| node_id(seed, i)).collect(),
            net,
            cfg: node::Config { membership: sc.membership.clone(), ..Default::default() },
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
            if let Some(n) = self.nodes[x as usize].node.as_mut() {
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
        self.nodes[i as usize].wake = NEVER;
        let now = self.now;
        if let Some(n) = self.nodes[i as usize].node.as_mut()
            && n.poll_timeout() <= now
        {
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
                    sn.disk.crash(self.now);
                    sn.node = None;
                    sn.wake = NEVER;
                }
            }
            Action::Restart { nodes, fresh } => {
                for &i in nodes {
                    let sn = &mut self.nodes[i as usize];
                    if *fresh {
                        sn.disk = Disk::default();
                    }
                    let restored = sn.disk.durable().cloned();
                    self.start(i, restored);
                }
            }
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
