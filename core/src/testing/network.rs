//! The harness's network model: a fixed latency per message, cut links, and optional seeded
//! faults (loss, extra delay, clock drift); what it carried; and an optional trip through the
//! wire format.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Time;
use crate::wire::{self, Message, WireError};

/// Network and clock faults, all off by default (the default keeps the fixed latency, no
/// loss and exact clocks).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Seeds the harness's random choices (loss, delay).
    pub seed: u64,
    /// Probability that a message is lost; also that a snapshot hand-off fails, and
    /// (separately) that a delivered hand-off is reported to its source as failed.
    pub loss: f64,
    /// Each message (and hand-off) is delayed by a uniform extra in `[0, delay_max]`.
    pub delay_max: Duration,
    /// Clock-rate error of node `k`: its clock reads `now × (1 + drift[k])` (missing: 0).
    pub drift: Vec<f64>,
}

impl Faults {
    fn drift(&self, k: usize) -> f64 {
        self.drift.get(k).copied().unwrap_or(0.0)
    }

    /// Node `k`'s clock at global time `t`.
    pub fn local(&self, k: usize, t: Time) -> Time {
        let d = self.drift(k);
        if d == 0.0 || t.0 >= 1 << 60 {
            return t;
        }
        Time((t.0 as f64 * (1.0 + d)) as u64)
    }

    /// The first global time at which node `k`'s clock reads at least `t`.
    pub fn to_global(&self, k: usize, t: Time) -> Time {
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
}

/// Puts every message through bytes on its way, as a real transport does: encoded when it is
/// sent, decoded when it is delivered. Without one, messages travel as values.
///
/// A bench implements it to time the codec; [`Cbor`] is the wire format as it is.
pub trait Wire {
    /// The bytes of `msg`.
    fn encode(&mut self, msg: &Message) -> Vec<u8>;
    /// The message in `bytes`; the harness panics on an error (it encoded them itself).
    fn decode(&mut self, bytes: &[u8]) -> Result<Message, WireError>;
}

/// The wire format: [`wire::encode`] and [`wire::decode`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Cbor;

impl Wire for Cbor {
    fn encode(&mut self, msg: &Message) -> Vec<u8> {
        wire::encode(msg)
    }

    fn decode(&mut self, bytes: &[u8]) -> Result<Message, WireError> {
        wire::decode(bytes)
    }
}

/// A message on its way: as a value, or as bytes when the cluster has a [`Wire`].
#[derive(Clone, Debug)]
pub enum Payload {
    /// The message itself.
    Value(Message),
    /// The message encoded by the cluster's [`Wire`].
    Encoded(Vec<u8>),
}

/// The subsystem a message belongs to, to count messages in flight by subsystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subsystem {
    /// [`Message::Membership`].
    Membership = 0,
    /// [`Message::Objects`].
    Objects = 1,
    /// [`Message::Functions`].
    Functions = 2,
}

impl Subsystem {
    /// The subsystem `msg` belongs to.
    pub fn of(msg: &Message) -> Subsystem {
        match msg {
            Message::Membership(_) => Subsystem::Membership,
            Message::Objects(_) => Subsystem::Objects,
            Message::Functions(_) => Subsystem::Functions,
        }
    }
}

/// What the network carried: messages that passed the cut links (lost ones included), by
/// kind. Tests and benches may reset it between phases.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// Messages and bytes by [`Message::kind`] (bytes only with a [`Wire`], else 0).
    pub by_kind: BTreeMap<&'static str, (u64, u64)>,
    /// The largest encoded message, in bytes (0 without a [`Wire`]).
    pub largest: u64,
}

impl Traffic {
    pub(super) fn count(&mut self, kind: &'static str, bytes: u64) {
        let e = self.by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 += bytes;
        self.largest = self.largest.max(bytes);
    }

    /// Messages and bytes in all, of object kinds only if `objects_only`.
    pub fn total(&self, objects_only: bool) -> (u64, u64) {
        self.by_kind
            .iter()
            .filter(|(k, _)| !objects_only || k.starts_with("obj_"))
            .fold((0, 0), |(m, b), (_, (m2, b2))| (m + m2, b + b2))
    }
}

/// What is in the cluster's queue now, and what it has delivered; kept as events are queued
/// and handled, so that checking for quiet costs nothing.
#[derive(Clone, Debug, Default)]
pub struct Flight {
    /// Messages queued and not yet delivered, by [`Subsystem`].
    pub messages: [usize; 3],
    /// Flushes queued and not yet answered.
    pub flushes: usize,
    /// Messages taken off the queue (delivered, or dropped at a node that is down), by
    /// [`Subsystem`].
    pub delivered: [u64; 3],
    /// When a message of each [`Subsystem`] was last taken off the queue.
    pub last_delivered: [Time; 3],
}

impl Flight {
    /// Messages of `s` queued and not yet delivered.
    pub fn in_flight(&self, s: Subsystem) -> usize {
        self.messages[s as usize]
    }

    /// Messages of `s` taken off the queue so far.
    pub fn delivered(&self, s: Subsystem) -> u64 {
        self.delivered[s as usize]
    }

    /// When a message of `s` was last taken off the queue.
    pub fn last_delivered(&self, s: Subsystem) -> Time {
        self.last_delivered[s as usize]
    }
}
