//! The node: every subsystem's state machine behind one input/output interface.

use std::collections::VecDeque;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::membership::{self, Membership, Persisted, StatusChange};
use crate::wire::Message;
use crate::{NodeId, NodeInfo, Time};

/// A node's configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Membership tuning.
    pub membership: membership::Config,
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
}

impl Output {
    pub(crate) fn send(to: NodeId, msg: membership::Message) -> Output {
        Output::Send { to, msg: Message::Membership(msg) }
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
    out: VecDeque<Output>,
}

impl Node {
    /// A node that knows only itself. `seed` drives every random choice; `restored` is what a
    /// previous life persisted.
    pub fn new(cfg: Config, info: NodeInfo, restored: Option<&Persisted>, seed: u64, now: Time) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(seed);
        Node { membership: Membership::new(cfg.membership, info, restored, rng, now), out: VecDeque::new() }
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
        self.membership.handle_connected(now, peer, &mut self.out);
    }

    /// A message arrived from an authenticated peer.
    pub fn handle_message(&mut self, now: Time, from: NodeId, msg: Message) {
        match msg {
            Message::Membership(m) => self.membership.handle_message(now, from, m, &mut self.out),
        }
    }

    /// The time from [`Node::poll_timeout`] was reached (calling earlier is harmless).
    pub fn handle_timeout(&mut self, now: Time) {
        self.membership.handle_timeout(now, &mut self.out);
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
        self.membership.poll_timeout()
    }
}
