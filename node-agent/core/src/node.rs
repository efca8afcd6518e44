//! The node: every subsystem's state machine behind one input/output interface.

use std::collections::VecDeque;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use state_sync::store::LogStats;
use state_sync::{Document, ObjectName};

use crate::membership::{self, Membership, Persisted, Status, StatusChange};
use crate::objects::{self, DiskOp, Objects, Reply, Request, RequestId};
use crate::wire::Message;
use crate::{NodeId, NodeInfo, Time};

/// A node's configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Membership tuning.
    pub membership: membership::Config,
    /// Object tuning.
    pub objects: objects::Config,
    /// How many times this node has started, this start included; must grow with every
    /// start (the driver keeps it on disk), because it makes this boot's object changes
    /// distinct from any a previous life made but lost in a crash.
    pub boot: u64,
}

/// What the node asks its driver to do.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Output {
    /// Send `msg` to `to` (the driver dials it at its known addresses if not connected).
    Send {
        /// The recipient.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Durably store the membership memory, replacing the previous one.
    Persist(Persisted),
    /// A member's status changed in this node's view (for logs and metrics).
    Event(StatusChange),
    /// Storage work: carry these out in order; a [`DiskOp::Flush`] is answered with
    /// [`Node::handle_flushed`].
    Disk(DiskOp),
    /// The answer to [`Node::handle_request`].
    Reply {
        /// The request's id.
        id: RequestId,
        /// The answer.
        reply: Reply,
    },
    /// An object's document changed here (a local write or changes from a peer), for
    /// watchers.
    ObjectChanged(ObjectName),
}

impl Output {
    pub(crate) fn send(to: NodeId, msg: membership::Message) -> Output {
        Output::Send { to, msg: Message::Membership(msg) }
    }

    pub(crate) fn send_obj(to: NodeId, msg: objects::Message) -> Output {
        Output::Send { to, msg: Message::Objects(msg) }
    }
}

/// A Liquid node's logic: a deterministic state machine.
///
/// It reads no clock, spawns nothing and opens no socket. Call order, for both drivers:
/// 1. feed every input with `handle_*`, passing the current time;
/// 2. drain [`Node::poll_output`] until it returns `None`, carrying out each output;
/// 3. call [`Node::handle_timeout`] when the time from [`Node::poll_timeout`] is reached.
///
/// The same inputs at the same times, from the same seed, give the same outputs.
pub struct Node {
    membership: Membership,
    objects: Objects,
    out: VecDeque<Output>,
}

impl Node {
    /// A node that knows only itself. `seed` drives every random choice; `restored` is what a
    /// previous life persisted.
    pub fn new(cfg: Config, info: NodeInfo, restored: Option<&Persisted>, seed: u64, now: Time) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let objects = Objects::new(cfg.objects, info.id, cfg.boot, now);
        Node { membership: Membership::new(cfg.membership, info, restored, rng, now), objects, out: VecDeque::new() }
    }

    /// Adds an object loaded from disk; call before the first input. Its document's actor
    /// must be [`objects::actor_id`] of this node and boot.
    pub fn restore_object(&mut self, object: ObjectName, doc: Document, log: LogStats) {
        self.objects.restore(object, doc, log);
    }

    /// The objects this node holds.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.membership.me().id
    }

    /// The membership view.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// An authenticated transport session to `peer` came up.
    pub fn handle_connected(&mut self, now: Time, peer: NodeId) {
        let before = self.out.len();
        self.membership.handle_connected(now, peer, &mut self.out);
        self.objects.handle_connected(now, peer, &self.membership, &mut self.out);
        self.after_membership(now, before);
    }

    /// The transport session to `peer` closed (it may come back; membership decides whether
    /// the peer is down).
    pub fn handle_disconnected(&mut self, _now: Time, peer: NodeId) {
        self.objects.handle_disconnected(peer);
    }

    /// A message arrived from an authenticated peer.
    pub fn handle_message(&mut self, now: Time, from: NodeId, msg: Message) {
        match msg {
            Message::Membership(m) => {
                let before = self.out.len();
                self.membership.handle_message(now, from, m, &mut self.out);
                self.after_membership(now, before);
            }
            Message::Objects(m) => self.objects.handle_message(now, from, m, &self.membership, &mut self.out),
        }
    }

    /// A request from the API (or a function), answered by an [`Output::Reply`] with the
    /// same id — at once, or after the disk, peers or a timeout.
    pub fn handle_request(&mut self, now: Time, id: RequestId, req: Request) {
        self.objects.handle_request(now, id, req, &self.membership, &mut self.out);
    }

    /// The driver finished the [`DiskOp::Flush`] with this ticket (`Err` with the reason if
    /// the disk failed).
    pub fn handle_flushed(&mut self, now: Time, ticket: u64, result: Result<(), String>) {
        self.objects.handle_flushed(now, ticket, result, &self.membership, &mut self.out);
    }

    /// The time from [`Node::poll_timeout`] was reached (calling earlier is harmless).
    pub fn handle_timeout(&mut self, now: Time) {
        let before = self.out.len();
        self.membership.handle_timeout(now, &mut self.out);
        self.after_membership(now, before);
        self.objects.handle_timeout(now, &self.membership, &mut self.out);
    }

    /// Tells the other subsystems about members that came (back) to life among the outputs
    /// membership just produced.
    fn after_membership(&mut self, now: Time, before: usize) {
        let ups: Vec<NodeId> = self
            .out
            .range(before..)
            .filter_map(|o| match o {
                Output::Event(c) if c.to == Status::Alive && c.from != Some(Status::Alive) => Some(c.id),
                _ => None,
            })
            .collect();
        for id in ups {
            self.objects.peer_up(now, id, &self.membership, &mut self.out);
        }
    }

    /// The node is shutting down on purpose.
    pub fn handle_leave(&mut self, now: Time) {
        self.membership.handle_leave(now, &mut self.out);
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`Node::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Time {
        self.membership.poll_timeout().min(self.objects.poll_timeout())
    }
}
