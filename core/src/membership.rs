//! Membership: who is in the mesh, whether each member is alive, and how far away it is.
//!
//! # Assumptions
//! - Every message arrives, if at all, from an authenticated peer: the driver admits only
//!   nodes that proved they hold the cluster secret, and tells us who sent what.
//! - Messages may be lost, delayed, duplicated and reordered. Clocks are not compared
//!   between nodes: every timeout is measured on the local `now` alone.
//!
//! # The protocol
//! SWIM (Das et al., 2002) with the refinements of HashiCorp's memberlist and serf:
//! 1. **Probing.** Every `probe_interval` a node pings one random member. No ack within
//!    `probe_timeout` → it asks `indirect_probes` other members to ping the target for it. No
//!    ack by the end of the interval → the target becomes *suspect*. Acks measure RTTs.
//! 2. **Suspicion.** A suspect that does not refute within `suspicion_mult × log10(n) ×
//!    probe_interval` is declared *down*. A node that hears it is suspected or down refutes by
//!    raising its *incarnation* number; a higher incarnation always wins, and at equal
//!    incarnations `left > down > suspect > alive`.
//! 3. **Dissemination.** Changes are piggybacked on pings and acks, each retransmitted
//!    `retransmit_mult × log10(n + 1)` times.
//! 4. **Anti-entropy.** Every `sync_interval` a node sends a 64-bit digest of its whole view to
//!    a random member, with the digests of its buckets (the view cut by the first bits of
//!    member ids); only if the digests differ do the two exchange states (push-pull), and
//!    only the buckets that differ. During a boot or after a heal views differ in a few dozen
//!    members out of thousands: full states were 63 % of all bytes at 1,000 nodes.
//!    Every `reconnect_interval` a node does the same with a random *down* member, which is how
//!    the two sides of a healed partition find each other again.
//! 5. **Joining.** When the driver connects to a peer (bootstrap address, mDNS, a remembered
//!    address), the node sends `Join`; the peer adds it and answers with its full state.
//! 6. **Leaving.** A node shutting down gossips `left` about itself to a few members.
//!
//! # Bounds
//! Members: `members_max` (further newcomers are refused and counted). Gossip queue:
//! `gossip_queue_max` (the most-retransmitted update is dropped first). Indirect-probe relays:
//! `relays_max` (further requests are ignored; the requester then suspects, as if lost).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use self::queue::GossipQueue;
use self::table::Table;
use crate::shared::Sink;
use crate::{NodeId, NodeInfo, Time};

/// Membership tuning. The defaults suit a LAN or WAN mesh of up to tens of thousands of nodes.
#[derive(Clone, Debug)]
pub struct Config {
    /// How often a node probes one random member.
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others to probe.
    pub probe_timeout: Duration,
    /// How many members are asked to probe indirectly.
    pub indirect_probes: usize,
    /// Suspicion lasts `suspicion_mult × max(1, log10(n)) × probe_interval`.
    pub suspicion_mult: u32,
    /// Each change is piggybacked `retransmit_mult × ceil(log10(n + 1))` times (at most
    /// 65,535).
    pub retransmit_mult: u32,
    /// The most changes piggybacked on one message.
    pub gossip_per_message: usize,
    /// How often to compare digests with a random alive member.
    pub sync_interval: Duration,
    /// How often to try a random down member again.
    pub reconnect_interval: Duration,
    /// The most members a view holds.
    pub members_max: usize,
    /// The most pending changes to disseminate.
    pub gossip_queue_max: usize,
    /// The most indirect probes run on behalf of others at once.
    pub relays_max: usize,
    /// How many members a leaving node tells directly.
    pub leave_fanout: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_probes: 3,
            suspicion_mult: 4,
            retransmit_mult: 4,
            gossip_per_message: 16,
            sync_interval: Duration::from_secs(15),
            reconnect_interval: Duration::from_secs(10),
            members_max: 100_000,
            gossip_queue_max: 8192,
            relays_max: 1024,
            leave_fanout: 8,
        }
    }
}

/// A member's liveness as this node sees it.
///
/// The order is the precedence at equal incarnations.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Answering probes.
    Alive,
    /// Missed a probe; declared down unless it refutes in time.
    Suspect,
    /// Failed: missed probes and did not refute.
    Down,
    /// Left the mesh on purpose.
    Left,
}

impl Status {
    /// The status users see: a member that left is shown as down.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Alive => "alive",
            Status::Suspect => "suspect",
            Status::Down | Status::Left => "down",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One claim about one member, as gossiped and as held in full states.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// Whom the claim is about.
    pub id: NodeId,
    /// The incarnation the claim is about.
    pub incarnation: u32,
    /// The claimed status.
    pub status: Status,
    /// The member's self-description; always present in full states and `alive` claims.
    pub info: Option<Arc<NodeInfo>>,
}

/// Membership messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// "Are you alive?" Carries gossip.
    Ping {
        /// Matches the ack to the probe.
        seq: u64,
        /// Piggybacked changes.
        gossip: Vec<Update>,
    },
    /// "Yes." Carries gossip.
    Ack {
        /// The probe's sequence number.
        seq: u64,
        /// Piggybacked changes.
        gossip: Vec<Update>,
    },
    /// "Please probe `target` for me and relay its ack."
    PingReq {
        /// The requester's probe sequence number.
        seq: u64,
        /// The member to probe.
        target: NodeId,
        /// Piggybacked changes.
        gossip: Vec<Update>,
    },
    /// Changes sent on their own (a leaving node's farewell, a refutation).
    Gossip {
        /// The changes.
        updates: Vec<Update>,
    },
    /// "I am here": sent on every new connection; answered with the full state.
    Join {
        /// The sender's self-description.
        info: Arc<NodeInfo>,
        /// The sender's current incarnation.
        incarnation: u32,
    },
    /// "This is the digest of my view": answered, if they differ, with the part of the view
    /// whose buckets differ (or the whole view, if `buckets` is empty).
    Digest {
        /// The sender's view digest.
        digest: u64,
        /// The digests of the sender's view cut into `buckets.len()` buckets by the first bits
        /// of member ids (a power of two, at most 256); empty from small views and older
        /// agents, which get the whole view back.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        buckets: Vec<u64>,
    },
    /// A view, or the part of it in some buckets, for push-pull anti-entropy.
    State {
        /// The sender itself, then the members it knows (those in `part`'s buckets, if given),
        /// in id order.
        entries: Vec<Update>,
        /// The sender's digest, so the receiver can tell if it should push back.
        digest: u64,
        /// Whether the receiver should answer with its own state if the views still differ.
        respond: bool,
        /// `None`: the whole view. Otherwise the buckets `entries` covers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        part: Option<Part>,
    },
}

/// Which buckets of a view a [`Message::State`] carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// How many buckets the id space is cut into (a power of two, at most 256).
    pub buckets: u16,
    /// Each bucket carried, in ascending order, with the sender's digest of it: the receiver
    /// pushes back only the buckets that still differ once it has merged.
    pub digests: Vec<(u16, u64)>,
}

impl Message {
    /// A short, stable name of the message kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Ping { .. } => "ping",
            Message::Ack { .. } => "ack",
            Message::PingReq { .. } => "ping_req",
            Message::Gossip { .. } => "gossip",
            Message::Join { .. } => "join",
            Message::Digest { .. } => "digest",
            Message::State { .. } => "state",
        }
    }
}

/// What membership asks of the node: the node maps it into its own
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
    /// Durably store the membership memory, replacing the previous one.
    Persist(Persisted),
    /// A member's status changed in this node's view.
    Event(StatusChange),
}

impl Output {
    fn send(to: NodeId, msg: Message) -> Output {
        Output::Send { to, msg }
    }
}

/// A change in this node's view, for logs, metrics and the simulator's checkers.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    /// The member.
    pub id: NodeId,
    /// Its status before, `None` if it was unknown.
    pub from: Option<Status>,
    /// Its status now.
    pub to: Status,
    /// Whether this node itself decided it (a failed probe or an expired suspicion), as
    /// opposed to learning it from gossip.
    pub local: bool,
}

/// One member as seen from this node.
#[derive(Clone, Debug)]
pub struct MemberView {
    /// Its self-description.
    pub info: Arc<NodeInfo>,
    /// Its incarnation.
    pub incarnation: u32,
    /// Its status.
    pub status: Status,
    /// When the status last changed, on this node's clock.
    pub since: Time,
    /// Smoothed round-trip time of direct probes, if any were answered.
    pub rtt: Option<Duration>,
    /// Whether this is the node itself.
    pub is_self: bool,
}

/// What a node remembers across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    /// The last incarnation used: a restart continues above it, so its `join` wins over any
    /// "down" claim about its previous life.
    pub incarnation: u32,
    /// Addresses of some alive members, dialled at start so a node rejoins without bootstrap.
    pub peer_addrs: Vec<String>,
}

/// Counters, for metrics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Newcomers refused because the view was full.
    pub members_refused: u64,
    /// Gossip dropped because the queue was full.
    pub gossip_dropped: u64,
    /// Indirect probe requests ignored because too many were running.
    pub relays_refused: u64,
    /// Times this node refuted a claim about itself.
    pub refutations: u64,
}

#[derive(Clone, Debug)]
struct Member {
    info: Arc<NodeInfo>,
    /// When the status last changed (µs on this node's clock), shifted left by two, with
    /// the status in the low two bits: one word for both keeps a member at 24 bytes, and the
    /// simulator holds n² members (100 M at 10,000 nodes).
    stamp: u64,
    incarnation: u32,
    rtt_us: u32,
}

impl Member {
    fn new(info: Arc<NodeInfo>, incarnation: u32, status: Status, since: Time) -> Self {
        Member { info, stamp: stamp(status, since), incarnation, rtt_us: 0 }
    }

    fn status(&self) -> Status {
        match self.stamp & 3 {
            0 => Status::Alive,
            1 => Status::Suspect,
            2 => Status::Down,
            _ => Status::Left,
        }
    }

    fn since(&self) -> Time {
        Time(self.stamp >> 2)
    }

    fn set_status(&mut self, status: Status, since: Time) {
        self.stamp = stamp(status, since);
    }
}

/// A member's entry in a state.
fn entry_of(m: &Member) -> Update {
    Update { id: m.info.id, incarnation: m.incarnation, status: m.status(), info: Some(m.info.clone()) }
}

/// [`Member::stamp`]: times beyond 2⁶² µs (146,000 years) are cut to it.
fn stamp(status: Status, since: Time) -> u64 {
    (since.0.min(u64::MAX >> 2) << 2) | status as u64
}

struct Probe {
    seq: u64,
    target: NodeId,
    sent_at: Time,
    deadline: Time,
    indirect_sent: bool,
}

struct Relay {
    seq: u64,
    requester: NodeId,
    their_seq: u64,
    expires: Time,
}

/// The membership state machine. See the module docs for the protocol.
///
/// Call order: `handle_*` with the current time for every input, then drain
/// [`Output`]s (the caller owns the queue) and ask [`Membership::poll_timeout`] when to call
/// [`Membership::handle_timeout`] next.
pub struct Membership {
    cfg: Config,
    me: Arc<NodeInfo>,
    incarnation: u32,
    leaving: bool,
    /// The node itself is not in it.
    members: Table,
    counts: [usize; 4],
    /// XOR of the entry hashes of `members` (the node itself is mixed in on demand).
    members_digest: u64,
    /// The same per bucket of [`BUCKETS`]: partial states send only the buckets that differ.
    bucket_digests: Box<[u64; BUCKETS]>,
    gossip: GossipQueue,
    probe: Option<Probe>,
    next_probe_at: Time,
    relays: VecDeque<Relay>,
    suspicions: BTreeSet<(Time, NodeId)>,
    next_sync_at: Time,
    next_reconnect_at: Time,
    next_persist_at: Time,
    persist_dirty: bool,
    seq: u64,
    rng: ChaCha8Rng,
    stats: Stats,
}

/// The finest cut of the id space that digests are kept for: by an id's first byte.
const BUCKETS: usize = 256;

/// The bucket of `id` when the id space is cut into `buckets` (a power of two ≤ [`BUCKETS`]).
fn bucket_of(id: &NodeId, buckets: usize) -> usize {
    usize::from(id.0[0]) / (BUCKETS / buckets)
}

/// How many buckets a view of `n` members (the node itself included) is compared by: about
/// four members each, so that a handful of differences costs a handful of buckets, and none
/// below 64 members, where the whole view is smaller than the 256 bucket digests.
fn buckets_for(n: usize) -> usize {
    if n < 64 { 0 } else { (n / 4).next_power_of_two().min(BUCKETS) }
}

/// Whether a peer's bucket count is one this node can compare against.
fn valid_buckets(b: usize) -> bool {
    b.is_power_of_two() && b <= BUCKETS
}

fn entry_hash(id: &NodeId, incarnation: u32, status: Status) -> u64 {
    // splitmix64 finaliser over the id fingerprint, incarnation and status.
    let mut z = id.fingerprint() ^ (u64::from(incarnation) << 8) ^ (status as u64);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The first eight bytes of an id, big-endian: comparing these first orders ids as comparing
/// them whole does.
fn id_key(id: &NodeId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(b)
}

/// [`id_key`] cut to what [`Member::key`] holds.
fn member_key(id: &NodeId) -> u32 {
    (id_key(id) >> 32) as u32
}

fn log10_ceil(n: usize) -> u32 {
    let mut k = 1;
    let mut p = 10usize;
    while p < n {
        k += 1;
        p = p.saturating_mul(10);
    }
    k
}

impl Membership {
    /// A node that knows only itself. `restored` continues a previous life's incarnation.
    pub fn new(cfg: Config, me: NodeInfo, restored: Option<&Persisted>, rng: ChaCha8Rng, now: Time) -> Self {
        // The table's hash key comes from another stream of the same generator: drawing it
        // from `rng` itself would shift every later random choice.
        let secret = {
            let mut r = rng.clone();
            r.set_stream(r.get_stream() ^ 0x6d65_6d62_6572_7321);
            r.next_u64()
        };
        let mut m = Membership {
            incarnation: restored.map_or(0, |p| p.incarnation.saturating_add(1)),
            me: Arc::new(me),
            leaving: false,
            members: Table::new(secret),
            counts: [0; 4],
            members_digest: 0,
            bucket_digests: Box::new([0; BUCKETS]),
            gossip: GossipQueue::default(),
            probe: None,
            next_probe_at: now,
            relays: VecDeque::new(),
            suspicions: BTreeSet::new(),
            next_sync_at: now,
            next_reconnect_at: now,
            next_persist_at: now,
            persist_dirty: true,
            seq: 0,
            rng,
            stats: Stats::default(),
            cfg,
        };
        // Spread the first timers over one period so simulated nodes started together do not
        // all probe in the same instant.
        m.next_probe_at = now + m.jitter(m.cfg.probe_interval);
        m.next_sync_at = now + m.cfg.sync_interval + m.jitter(m.cfg.sync_interval);
        m.next_reconnect_at = now + m.cfg.reconnect_interval + m.jitter(m.cfg.reconnect_interval);
        m
    }

    /// This node's self-description.
    pub fn me(&self) -> &Arc<NodeInfo> {
        &self.me
    }

    /// This node's current incarnation.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// The digest of the whole view (the node itself included): equal digests mean equal
    /// views, with overwhelming probability.
    pub fn digest(&self) -> u64 {
        self.members_digest ^ entry_hash(&self.me.id, self.incarnation, self.my_status())
    }

    /// The node's own status: `left` once it is leaving.
    fn my_status(&self) -> Status {
        if self.leaving { Status::Left } else { Status::Alive }
    }

    /// The view's digests in `b` buckets (a power of two ≤ [`BUCKETS`]), the node itself
    /// included.
    fn bucket_digests(&self, b: usize) -> Vec<u64> {
        let mut out = vec![0u64; b];
        let per = BUCKETS / b;
        for (i, d) in self.bucket_digests.iter().enumerate() {
            out[i / per] ^= d;
        }
        out[bucket_of(&self.me.id, b)] ^= entry_hash(&self.me.id, self.incarnation, self.my_status());
        out
    }

    /// Adds or removes a member's entry from the digests.
    fn toggle_digest(&mut self, id: &NodeId, incarnation: u32, status: Status) {
        let h = entry_hash(id, incarnation, status);
        self.members_digest ^= h;
        self.bucket_digests[bucket_of(id, BUCKETS)] ^= h;
    }

    /// The digest message for anti-entropy.
    fn digest_message(&self) -> Message {
        let b = buckets_for(self.members.len() + 1);
        let buckets = if b == 0 { Vec::new() } else { self.bucket_digests(b) };
        Message::Digest { digest: self.digest(), buckets }
    }

    /// Members known, the node itself excluded, by status: `[alive, suspect, down, left]`.
    pub fn counts(&self) -> [usize; 4] {
        self.counts
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Every member including this node, ordered by id.
    pub fn members(&self, now: Time) -> impl Iterator<Item = MemberView> + '_ {
        let me = MemberView {
            info: self.me.clone(),
            incarnation: self.incarnation,
            status: self.my_status(),
            since: Time::ZERO,
            rtt: Some(Duration::ZERO),
            is_self: true,
        };
        let _ = now;
        let pos = self.members.rank(&self.me.id);
        let view = |m: &Member| MemberView {
            info: m.info.clone(),
            incarnation: m.incarnation,
            status: m.status(),
            since: m.since(),
            rtt: (m.rtt_us > 0).then(|| Duration::from_micros(u64::from(m.rtt_us))),
            is_self: false,
        };
        let n = self.members.len();
        let below = self.members.range_by_id(0..pos).map(view);
        below.chain(std::iter::once(me)).chain(self.members.range_by_id(pos..n).map(view))
    }

    /// A member's self-description (this node's own included), `None` if unknown.
    pub fn info_of(&self, id: &NodeId) -> Option<&Arc<NodeInfo>> {
        if *id == self.me.id {
            return Some(&self.me);
        }
        self.members.find(id).map(|i| &self.members.get(i).info)
    }

    /// The smoothed round-trip time to a member, if a direct probe was answered.
    pub fn rtt_of(&self, id: &NodeId) -> Option<Duration> {
        let m = self.members.get(self.members.find(id)?);
        (m.rtt_us > 0).then(|| Duration::from_micros(u64::from(m.rtt_us)))
    }

    /// A member's status in this view (`None` if unknown).
    pub fn status_of(&self, id: &NodeId) -> Option<Status> {
        self.members.find(id).map(|i| self.members.get(i).status())
    }

    /// The addresses of a member, for the driver to dial.
    pub fn addrs_of(&self, id: &NodeId) -> Option<&[String]> {
        self.members.find(id).map(|i| self.members.get(i).info.addrs.as_slice())
    }

    /// What to remember across a restart.
    pub fn persisted(&self) -> Persisted {
        const PEERS_REMEMBERED: usize = 32;
        Persisted {
            incarnation: self.incarnation,
            peer_addrs: self
                .members
                .iter_by_id()
                .filter(|m| m.status() == Status::Alive)
                .flat_map(|m| m.info.addrs.iter().take(1).cloned())
                .take(PEERS_REMEMBERED)
                .collect(),
        }
    }

    /// The next time [`Membership::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Time {
        let mut t = self.next_probe_at.min(self.next_sync_at).min(self.next_reconnect_at);
        if let Some(p) = &self.probe {
            t = t.min(p.deadline);
        }
        if let Some(r) = self.relays.front() {
            t = t.min(r.expires);
        }
        if let Some((s, _)) = self.suspicions.first() {
            t = t.min(*s);
        }
        if self.persist_dirty {
            t = t.min(self.next_persist_at);
        }
        t
    }

    /// A transport session to `peer` was established and authenticated: introduce ourselves.
    pub fn handle_connected(&mut self, _now: Time, peer: NodeId, out: &mut (impl Sink<Output> + ?Sized)) {
        if peer == self.me.id {
            return;
        }
        let msg = Message::Join { info: self.me.clone(), incarnation: self.incarnation };
        out.push(Output::send(peer, msg));
    }

    /// The node is shutting down: tell a few members, so they need not wait for suspicion.
    pub fn handle_leave(&mut self, _now: Time, out: &mut (impl Sink<Output> + ?Sized)) {
        self.leaving = true;
        let update = Update { id: self.me.id, incarnation: self.incarnation, status: Status::Left, info: None };
        let targets = self.random_members(self.cfg.leave_fanout, |m| m.status() == Status::Alive, None);
        for to in targets {
            out.push(Output::send(to, Message::Gossip { updates: vec![update.clone()] }));
        }
    }

    /// A message from an authenticated peer.
    pub fn handle_message(&mut self, now: Time, from: NodeId, msg: Message, out: &mut (impl Sink<Output> + ?Sized)) {
        match msg {
            Message::Ping { seq, gossip } => {
                self.merge_all(now, gossip, Some(from), out);
                let gossip = self.take_gossip();
                out.push(Output::send(from, Message::Ack { seq, gossip }));
            }
            Message::Ack { seq, gossip } => {
                self.merge_all(now, gossip, Some(from), out);
                self.handle_ack(now, from, seq, out);
            }
            Message::PingReq { seq, target, gossip } => {
                self.merge_all(now, gossip, Some(from), out);
                if self.relays.len() >= self.cfg.relays_max || target == self.me.id {
                    self.stats.relays_refused += 1;
                    return;
                }
                let my_seq = self.next_seq();
                self.relays.push_back(Relay {
                    seq: my_seq,
                    requester: from,
                    their_seq: seq,
                    expires: now + self.cfg.probe_interval,
                });
                let gossip = self.take_gossip();
                out.push(Output::send(target, Message::Ping { seq: my_seq, gossip }));
            }
            Message::Gossip { updates } => self.merge_all(now, updates, Some(from), out),
            Message::Join { info, incarnation } => {
                if info.id != from {
                    // A peer may only introduce itself.
                    return;
                }
                let update = Update { id: info.id, incarnation, status: Status::Alive, info: Some(info) };
                self.merge(now, update, Some(from), out);
                // Both ends of a new connection send `join`, so each receives the other's
                // state: no need to ask for one back (that tripled the cost of every join).
                self.send_state(from, false, out);
            }
            Message::Digest { digest, buckets } => {
                if digest == self.digest() {
                    return;
                }
                let b = buckets.len();
                if b == 0 || !valid_buckets(b) {
                    self.send_state(from, true, out);
                    return;
                }
                let mine = self.bucket_digests(b);
                let differ = (0..b).filter(|&i| mine[i] != buckets[i]).collect();
                self.send_part(from, true, &mine, differ, out);
            }
            Message::State { entries, digest, respond, part } => {
                // States are not re-gossiped: anti-entropy spreads them by itself, and
                // re-gossiping every entry of every join would cost O(n²) messages.
                self.merge_state(now, entries, from, out);
                if !respond || digest == self.digest() {
                    return;
                }
                match part.filter(|p| valid_buckets(usize::from(p.buckets))) {
                    None => self.send_state(from, false, out),
                    Some(p) => {
                        let b = usize::from(p.buckets);
                        let mine = self.bucket_digests(b);
                        let mut differ: Vec<usize> = p
                            .digests
                            .iter()
                            .map(|&(i, d)| (usize::from(i), d))
                            .filter(|&(i, d)| i < b && mine[i] != d)
                            .map(|(i, _)| i)
                            .collect();
                        differ.sort_unstable();
                        differ.dedup();
                        self.send_part(from, false, &mine, differ, out);
                    }
                }
            }
        }
    }

    /// Time passed: run whatever is due.
    pub fn handle_timeout(&mut self, now: Time, out: &mut (impl Sink<Output> + ?Sized)) {
        // A pending probe's deadline comes before the next probe at the same instant.
        if let Some(p) = &self.probe
            && now >= p.deadline
        {
            self.probe_deadline(now, out);
        }
        if now >= self.next_probe_at {
            if self.probe.is_some() {
                // Only reachable if timeouts were configured longer than the interval.
                self.probe_failed(now, out);
            }
            self.next_probe_at = now + self.cfg.probe_interval;
            self.start_probe(now, out);
        }
        while self.relays.front().is_some_and(|r| r.expires <= now) {
            self.relays.pop_front();
        }
        while let Some(&(at, id)) = self.suspicions.first() {
            if at > now {
                break;
            }
            self.suspicions.pop_first();
            if let Some(i) = self.members.find(&id) {
                let m = self.members.get(i);
                if m.status() == Status::Suspect && now >= m.since() + self.suspicion_timeout() {
                    let update = Update { id, incarnation: m.incarnation, status: Status::Down, info: None };
                    self.merge_local(now, update, out);
                }
            }
        }
        if now >= self.next_sync_at {
            self.next_sync_at = now + self.cfg.sync_interval;
            if let Some(to) = self.random_member(|m| m.status() == Status::Alive, None) {
                out.push(Output::send(to, self.digest_message()));
            }
        }
        if now >= self.next_reconnect_at {
            self.next_reconnect_at = now + self.cfg.reconnect_interval;
            if self.counts[Status::Down.index()] > 0
                && let Some(to) = self.random_member(|m| m.status() == Status::Down, None)
            {
                out.push(Output::send(to, self.digest_message()));
            }
        }
        if self.persist_dirty && now >= self.next_persist_at {
            self.persist_dirty = false;
            // Persisting member addresses at most this often keeps a large join cheap.
            self.next_persist_at = now + Duration::from_secs(30);
            out.push(Output::Persist(self.persisted()));
        }
    }

    fn start_probe(&mut self, now: Time, out: &mut (impl Sink<Output> + ?Sized)) {
        let Some(target) = self.random_member(|m| matches!(m.status(), Status::Alive | Status::Suspect), None) else {
            return;
        };
        let seq = self.next_seq();
        self.probe =
            Some(Probe { seq, target, sent_at: now, deadline: now + self.cfg.probe_timeout, indirect_sent: false });
        let gossip = self.take_gossip();
        out.push(Output::send(target, Message::Ping { seq, gossip }));
    }

    fn probe_deadline(&mut self, now: Time, out: &mut (impl Sink<Output> + ?Sized)) {
        let Some(p) = &mut self.probe else { return };
        if p.indirect_sent {
            self.probe_failed(now, out);
            return;
        }
        p.indirect_sent = true;
        p.deadline = p.sent_at + self.cfg.probe_interval;
        let (seq, target) = (p.seq, p.target);
        let helpers = self.random_members(self.cfg.indirect_probes, |m| m.status() == Status::Alive, Some(target));
        for helper in helpers {
            let gossip = self.take_gossip();
            out.push(Output::send(helper, Message::PingReq { seq, target, gossip }));
        }
    }

    fn probe_failed(&mut self, now: Time, out: &mut (impl Sink<Output> + ?Sized)) {
        let Some(p) = self.probe.take() else { return };
        if let Some(i) = self.members.find(&p.target) {
            let m = self.members.get(i);
            if m.status() == Status::Alive {
                let update = Update { id: p.target, incarnation: m.incarnation, status: Status::Suspect, info: None };
                self.merge_local(now, update, out);
            }
        }
    }

    fn handle_ack(&mut self, now: Time, from: NodeId, seq: u64, out: &mut (impl Sink<Output> + ?Sized)) {
        if let Some(p) = &self.probe
            && p.seq == seq
        {
            if from == p.target {
                let sample = u32::try_from(now.since(p.sent_at).as_micros()).unwrap_or(u32::MAX).max(1);
                if let Some(i) = self.members.find(&from) {
                    let m = self.members.get_mut(i);
                    m.rtt_us = if m.rtt_us == 0 {
                        sample
                    } else {
                        // EWMA with weight 1/5 for the new sample.
                        u32::try_from((u64::from(m.rtt_us) * 4 + u64::from(sample)) / 5).unwrap_or(u32::MAX)
                    };
                }
            }
            self.probe = None;
            return;
        }
        if let Some(pos) = self.relays.iter().position(|r| r.seq == seq)
            && let Some(r) = self.relays.remove(pos)
            && r.expires > now
        {
            let gossip = self.take_gossip();
            out.push(Output::send(r.requester, Message::Ack { seq: r.their_seq, gossip }));
        }
    }

    /// The node's own entry, first in every state.
    fn my_entry(&self) -> Update {
        Update { id: self.me.id, incarnation: self.incarnation, status: self.my_status(), info: Some(self.me.clone()) }
    }

    fn send_state(&mut self, to: NodeId, respond: bool, out: &mut (impl Sink<Output> + ?Sized)) {
        let mut entries = Vec::with_capacity(self.members.len() + 1);
        entries.push(self.my_entry());
        entries.extend(self.members.iter_by_id().map(entry_of));
        out.push(Output::send(to, Message::State { entries, digest: self.digest(), respond, part: None }));
    }

    /// Sends the members in buckets `differ` (ascending, each below `mine.len()`), where
    /// `mine` are this view's bucket digests. Nothing if no bucket differs: the views then
    /// differ only in buckets the peer did not ask about, which the next exchange compares.
    fn send_part(
        &mut self,
        to: NodeId,
        respond: bool,
        mine: &[u64],
        differ: Vec<usize>,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        if differ.is_empty() {
            return;
        }
        let b = mine.len();
        // A bucket is a range of first bytes, so a range of ranks in id order.
        let per = (BUCKETS / b) as u32;
        let start = |i: usize| self.members.rank_of_key((i as u32 * per) << 24);
        let ranges: Vec<std::ops::Range<usize>> =
            differ.iter().map(|&i| start(i)..if i + 1 == b { self.members.len() } else { start(i + 1) }).collect();
        let mut entries = Vec::with_capacity(1 + ranges.iter().map(|r| r.len()).sum::<usize>());
        entries.push(self.my_entry());
        for r in ranges {
            entries.extend(self.members.range_by_id(r).map(entry_of));
        }
        // At most 256 buckets, so indices fit.
        let digests = differ.iter().map(|&i| (i as u16, mine[i])).collect();
        let part = Some(Part { buckets: b as u16, digests });
        out.push(Output::send(to, Message::State { entries, digest: self.digest(), respond, part }));
    }

    fn merge_all(
        &mut self,
        now: Time,
        updates: Vec<Update>,
        from: Option<NodeId>,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        self.members.warm(updates.iter().map(|u| (&u.id, u.info.as_ref())));
        for u in updates {
            self.merge(now, u, from, out);
        }
    }

    fn merge_local(&mut self, now: Time, update: Update, out: &mut (impl Sink<Output> + ?Sized)) {
        self.merge(now, update, None, out);
    }

    fn merge(&mut self, now: Time, update: Update, from: Option<NodeId>, out: &mut (impl Sink<Output> + ?Sized)) {
        if let Some((u, info)) = self.apply(now, update, from, out) {
            self.enqueue_gossip(u, info);
        }
    }

    /// Applies one claim; returns it (completed with the member's info if it is an `alive`
    /// claim) when it changed the view and should be spread, with the member's info (which the
    /// gossip queue keeps, so it need not look the member up again). `from` is the peer that
    /// told us, `None` for this node's own decisions.
    fn apply(
        &mut self,
        now: Time,
        mut u: Update,
        from: Option<NodeId>,
        out: &mut (impl Sink<Output> + ?Sized),
    ) -> Option<(Update, Arc<NodeInfo>)> {
        if u.id == self.me.id {
            self.about_me(&u, from, out);
            return None;
        }
        if u.info.as_ref().is_some_and(|i| i.id != u.id) {
            return None;
        }
        let info = match self.members.find_claimed(&u.id, u.info.as_ref()) {
            None => {
                let m = self.admit(now, &u, from, self.members.len(), out)?;
                let info = m.info.clone();
                self.members.insert(m);
                info
            }
            Some(i) => {
                let timeout = self.suspicion_timeout();
                if !self.refresh(now, i, &mut u, from, timeout, out) {
                    return None;
                }
                self.members.get(i).info.clone()
            }
        };
        if u.status == Status::Alive && u.info.is_none() {
            return None;
        }
        Some((u, info))
    }

    /// Merges a full state: what [`Membership::apply`] does for each entry in turn, without
    /// spreading the changes, but as one walk along both lists when they are sorted alike.
    ///
    /// A binary search and a `Vec::insert` per entry made every state cost
    /// O(n log n) cache misses plus O(n) moves per newcomer; states are about a fifth of all
    /// bytes at a thousand nodes.
    fn merge_state(&mut self, now: Time, entries: Vec<Update>, from: NodeId, out: &mut (impl Sink<Output> + ?Sized)) {
        // Senders list themselves first, then their members in id order. Anything else (an
        // older or foreign sender, a duplicate id) is merged entry by entry.
        let sorted = entries.len() < 2
            || entries[1..].windows(2).all(|w| (id_key(&w[0].id), &w[0].id) < (id_key(&w[1].id), &w[1].id));
        if !sorted {
            for u in entries {
                self.apply(now, u, Some(from), out);
            }
            return;
        }
        let mut entries = entries.into_iter();
        if let Some(first) = entries.next() {
            self.apply(now, first, Some(from), out);
        }
        let n = self.members.len();
        // Newcomers, each with the rank among `members` it goes at; added all at once at the
        // end, so ranks stay valid during the walk.
        let mut fresh: Vec<(usize, Member)> = Vec::new();
        let mut k = 0;
        for mut u in entries {
            if u.id == self.me.id {
                self.about_me(&u, Some(from), out);
                continue;
            }
            if u.info.as_ref().is_some_and(|info| info.id != u.id) {
                continue;
            }
            let key = member_key(&u.id);
            // A partial state skips whole buckets: gallop over them.
            k = self.members.seek(k, key, &u.id);
            let known = n + fresh.len();
            if k < n && self.members.nth_is(k, key, &u.id, u.info.as_ref()) {
                let slot = self.members.nth_slot(k);
                let timeout = self.suspicion_timeout_for(known + 1);
                self.refresh(now, slot, &mut u, Some(from), timeout, out);
            } else if let Some(m) = self.admit(now, &u, Some(from), known, out) {
                fresh.push((k, m));
            }
        }
        if !fresh.is_empty() {
            self.members.insert_ranked(fresh);
        }
    }

    /// A new member from a claim, with its counters, digest, suspicion timer and event
    /// accounted for; `None` if the claim has no info or the view is full. `known` is how many
    /// members the view holds before it.
    fn admit(
        &mut self,
        now: Time,
        u: &Update,
        from: Option<NodeId>,
        known: usize,
        out: &mut (impl Sink<Output> + ?Sized),
    ) -> Option<Member> {
        let info = u.info.clone()?;
        if known >= self.cfg.members_max {
            self.stats.members_refused += 1;
            return None;
        }
        self.counts[u.status.index()] += 1;
        self.toggle_digest(&u.id, u.incarnation, u.status);
        if u.status == Status::Suspect {
            // The newcomer counts, and so does the node itself.
            self.suspicions.insert((now + self.suspicion_timeout_for(known + 2), u.id));
        }
        self.persist_dirty |= u.status == Status::Alive;
        out.push(Output::Event(StatusChange { id: u.id, from: None, to: u.status, local: from.is_none() }));
        Some(Member::new(info, u.incarnation, u.status, now))
    }

    /// Applies a claim to the known member in `slot` if it is newer, with its counters,
    /// digest, suspicion timer and event; returns whether it was. An `alive` claim without
    /// info is completed with the member's.
    fn refresh(
        &mut self,
        now: Time,
        slot: usize,
        u: &mut Update,
        from: Option<NodeId>,
        suspicion_timeout: Duration,
        out: &mut (impl Sink<Output> + ?Sized),
    ) -> bool {
        let m = self.members.get(slot);
        let (incarnation, old) = (m.incarnation, m.status());
        let newer = u.incarnation > incarnation || (u.incarnation == incarnation && u.status > old);
        if !newer {
            return false;
        }
        self.toggle_digest(&u.id, incarnation, old);
        self.toggle_digest(&u.id, u.incarnation, u.status);
        let m = self.members.get_mut(slot);
        m.incarnation = u.incarnation;
        if let Some(info) = &u.info {
            m.info = info.clone();
        } else if u.status == Status::Alive {
            u.info = Some(m.info.clone());
        }
        if old != u.status {
            m.set_status(u.status, now);
            self.counts[old.index()] -= 1;
            self.counts[u.status.index()] += 1;
            if u.status == Status::Suspect {
                self.suspicions.insert((now + suspicion_timeout, u.id));
            }
            out.push(Output::Event(StatusChange { id: u.id, from: Some(old), to: u.status, local: from.is_none() }));
        }
        true
    }

    fn about_me(&mut self, u: &Update, from: Option<NodeId>, out: &mut (impl Sink<Output> + ?Sized)) {
        if self.leaving || u.incarnation < self.incarnation {
            return;
        }
        let current = u.status == Status::Alive
            && u.incarnation == self.incarnation
            && u.info.as_ref().is_none_or(|i| **i == *self.me);
        if current {
            return;
        }
        // Someone believes something older or worse about us: refute with a higher incarnation.
        self.incarnation = u.incarnation.saturating_add(1);
        self.stats.refutations += 1;
        self.persist_dirty = true;
        let alive = Update {
            id: self.me.id,
            incarnation: self.incarnation,
            status: Status::Alive,
            info: Some(self.me.clone()),
        };
        self.enqueue_gossip(alive.clone(), self.me.clone());
        if let Some(peer) = from {
            // Tell the one who said it directly: across a healed partition, nobody else would.
            out.push(Output::send(peer, Message::Gossip { updates: vec![alive] }));
        }
    }

    /// Queues a change about the node itself or a member; `info` is that node's info, which
    /// the queue keeps (a change without info takes it from there when sent).
    fn enqueue_gossip(&mut self, update: Update, info: Arc<NodeInfo>) {
        if self.gossip.push(&update, info, self.cfg.gossip_queue_max) {
            self.stats.gossip_dropped += 1;
        }
    }

    fn take_gossip(&mut self) -> Vec<Update> {
        if self.gossip.is_empty() {
            return Vec::new();
        }
        let limit = self.cfg.retransmit_mult * log10_ceil(self.members.len() + 2);
        self.gossip.take(self.cfg.gossip_per_message, limit)
    }

    fn suspicion_timeout(&self) -> Duration {
        self.suspicion_timeout_for(self.members.len() + 1)
    }

    /// The suspicion timeout in a view of `n` members, the node itself included.
    fn suspicion_timeout_for(&self, n: usize) -> Duration {
        let scale = log10_ceil(n).max(1);
        self.cfg.probe_interval * self.cfg.suspicion_mult * scale
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn jitter(&mut self, max: Duration) -> Duration {
        let us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX).max(1);
        Duration::from_micros(self.rng.next_u64() % us)
    }

    /// A random member matching `pred`: a random start, then the next match in id order.
    fn random_member(&mut self, pred: impl Fn(&Member) -> bool, except: Option<NodeId>) -> Option<NodeId> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = usize::try_from(self.rng.next_u64() % n as u64).unwrap_or(0);
        (0..n)
            .map(|k| self.members.nth_by_id((start + k) % n))
            .find(|m| pred(m) && Some(m.info.id) != except)
            .map(|m| m.info.id)
    }

    fn random_members(&mut self, k: usize, pred: impl Fn(&Member) -> bool, except: Option<NodeId>) -> Vec<NodeId> {
        let mut picked: Vec<NodeId> = Vec::with_capacity(k);
        for _ in 0..k * 3 {
            if picked.len() == k {
                break;
            }
            if let Some(id) = self.random_member(&pred, except)
                && !picked.contains(&id)
            {
                picked.push(id);
            }
        }
        picked
    }
}

mod queue;
mod table;
#[cfg(test)]
mod tests;
