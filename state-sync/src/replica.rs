//! Replicating one object: automerge's sync protocol, one session per peer.
//!
//! # Assumptions
//! - Automerge's sync protocol ([`automerge::sync`]) is sans-IO and assumes a reliable,
//!   in-order stream per session. The network loses, duplicates and reorders messages, so
//!   the caller **resets a session** ([`Replica::reset`]) whenever that assumption may have
//!   broken: on (re)connecting to the peer, and when anti-entropy finds the peer's
//!   [`Digest`] still differs from ours after an exchange went quiet. A reset keeps what the
//!   two sides are known to share, so it costs one round trip, not a full resend.
//! - Peers are identified by any ordered id `P` (the node core's `NodeId`).
//!
//! # The steps
//! 1. After a local change (or on a timer, batched), call [`Replica::generate`] for each
//!    peer and send what it returns. `None` means nothing to say right now (up to date, or
//!    waiting for the peer's reply to an earlier message).
//! 2. On a message from a peer, call [`Replica::receive`]; if it reports a change, persist
//!    [`Document::unsaved`](crate::Document::unsaved). Then `generate` for that peer again
//!    (and for the others if the document changed).
//! 3. Repeat until every `generate` returns `None`: the two documents are equal.
//!
//! # Bounds
//! - **Message size.** Automerge 0.12 has no size limit of its own: a message carries every
//!   change the peer lacks, or the whole compressed document when that is over a third of
//!   it. So when a message would exceed [`Config::message_bytes_max`], this module generates
//!   it again as individual changes and keeps the longest dependency-ordered prefix that
//!   fits; the peer's reply asks for the rest, which follows in the next messages (one round
//!   trip per `message_bytes_max` bytes). A *single* change larger than the limit still
//!   travels alone, whole: bound changes at their source (the API bounds batch size).
//!   Splitting costs bytes: separate changes are several times larger than the compressed
//!   whole document (10,000 small `set`s: ~1 MB in 64 KiB messages against ~170 KB in one
//!   message), so keep the bound above typical catch-ups; `usize::MAX` turns splitting off
//!   (then fragment big messages in the transport instead).
//! - **Sessions.** At most [`Config::peers_max`] peers per object; a new peer beyond that
//!   evicts the least recently used session, which is the same as resetting it.
//!
//! # Example
//! ```
//! use state_sync::{Document, Replica, replica::Config, ops::Op};
//! use automerge::ActorId;
//!
//! let mut a = Replica::new(Document::new(ActorId::from(b"a".as_slice())), Config::default());
//! let mut b = Replica::new(Document::new(ActorId::from(b"b".as_slice())), Config::default());
//! a.doc_mut().apply(&Op::parse_batch(r#"[{"op":"inc","path":"n","by":2}]"#).unwrap(), 0).unwrap();
//! b.doc_mut().apply(&Op::parse_batch(r#"[{"op":"set","path":"x","value":1}]"#).unwrap(), 0).unwrap();
//! loop {
//!     let to_b = a.generate(&"b");
//!     if let Some(m) = &to_b { b.receive(&"a", m).unwrap(); }
//!     let to_a = b.generate(&"a");
//!     if let Some(m) = &to_a { a.receive(&"b", m).unwrap(); }
//!     if to_a.is_none() && to_b.is_none() { break; }
//! }
//! assert_eq!(a.doc().read(), b.doc().read());
//! assert_eq!(a.digest(), b.digest());
//! ```

use std::collections::{BTreeMap, HashSet};

use automerge::sync::{self, Capability, ChunkList, SyncDoc};
use automerge::{Change, ChangeHash};

use crate::doc::{Document, Heads};

/// Replication limits.
#[derive(Clone, Debug)]
pub struct Config {
    /// The size above which a sync message is split into several (see the module docs).
    pub message_bytes_max: usize,
    /// The most peers with a sync session for this object.
    pub peers_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { message_bytes_max: 1024 * 1024, peers_max: 64 }
    }
}

/// Why a sync message from a peer was refused. The document is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The bytes are not an automerge sync message.
    #[error("not an automerge sync message: {message}")]
    Decode {
        /// The decoder's explanation.
        message: String,
    },
    /// The message decoded but its changes could not be applied.
    #[error("sync message refused by automerge: {message}")]
    Apply {
        /// Automerge's explanation.
        message: String,
    },
}

/// A short fingerprint of a document's heads: equal digests mean equal documents (up to a
/// 2⁻¹²⁸ chance). Anti-entropy compares digests per object and syncs only those that differ.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, serde::Serialize, serde::Deserialize)]
pub struct Digest(pub [u8; 16]);

impl Digest {
    /// The digest of `heads` (BLAKE3 of the sorted hashes, truncated to 128 bits).
    pub fn of(heads: &Heads) -> Self {
        let mut h = blake3::Hasher::new();
        for head in &heads.0 {
            h.update(head.as_ref());
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Digest(out)
    }
}

#[derive(Debug)]
struct Session {
    state: sync::State,
    used: u64,
}

/// One object and its sync sessions with peers.
#[derive(Debug)]
pub struct Replica<P> {
    doc: Document,
    peers: BTreeMap<P, Session>,
    config: Config,
    clock: u64,
}

impl<P: Ord + Clone> Replica<P> {
    /// Replicates `doc`, with no sessions yet.
    pub fn new(doc: Document, config: Config) -> Self {
        Replica { doc, peers: BTreeMap::new(), config, clock: 0 }
    }

    /// The document.
    pub fn doc(&self) -> &Document {
        &self.doc
    }

    /// The document, to apply local writes. Call [`Replica::generate`] afterwards.
    pub fn doc_mut(&mut self) -> &mut Document {
        &mut self.doc
    }

    /// The document, dropping the sessions.
    pub fn into_doc(self) -> Document {
        self.doc
    }

    /// The digest of the current heads.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.doc.heads())
    }

    /// The next message for `peer`, if there is anything to say.
    pub fn generate(&mut self, peer: &P) -> Option<Vec<u8>> {
        let max = self.config.message_bytes_max;
        let doc = self.doc.automerge();
        let state = &mut session(&mut self.peers, &mut self.clock, self.config.peers_max, peer).state;
        let before = state.clone();
        let bytes = doc.generate_sync_message(state)?.encode();
        if bytes.len() <= max {
            return Some(bytes);
        }
        // Too big: generate the same message again as individual changes, then trim it.
        *state = before;
        let caps = state.their_capabilities.clone();
        if let Some(c) = &mut state.their_capabilities {
            c.retain(|c| *c != Capability::MessageV2);
        }
        let msg = doc.generate_sync_message(state);
        state.their_capabilities = caps;
        Some(trim(msg?, state, max))
    }

    /// Applies a message from `peer`; returns whether the document changed.
    pub fn receive(&mut self, peer: &P, bytes: &[u8]) -> Result<bool, SyncError> {
        let msg = sync::Message::decode(bytes).map_err(|e| SyncError::Decode { message: e.to_string() })?;
        let state = &mut session(&mut self.peers, &mut self.clock, self.config.peers_max, peer).state;
        let doc = self.doc.automerge_mut();
        let before = doc.get_heads();
        doc.receive_sync_message(state, msg).map_err(|e| SyncError::Apply { message: e.to_string() })?;
        Ok(doc.get_heads() != before)
    }

    /// Starts a new session with `peer`, keeping only what both are known to share. Call it
    /// on (re)connecting and when an exchange stalled (see the module docs).
    pub fn reset(&mut self, peer: &P) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.state = sync::State::decode(&s.state.encode()).unwrap_or_default();
        }
    }

    /// Forgets the session with `peer` (it left the replica set).
    pub fn remove(&mut self, peer: &P) {
        self.peers.remove(peer);
    }

    /// The heads `peer` last told us, if it has in this session.
    pub fn peer_heads(&self, peer: &P) -> Option<Heads> {
        self.peers.get(peer)?.state.their_heads.clone().map(Heads)
    }

    /// Whether `peer`'s last message in this session advertised exactly our current heads
    /// (a hint: the peer may have changed since).
    pub fn peer_in_sync(&self, peer: &P) -> bool {
        self.peers.get(peer).and_then(|s| s.state.their_heads.as_ref()).is_some_and(|h| *h == self.doc.heads().0)
    }

    /// Whether every session is at rest: the peer last said it has exactly our heads, and
    /// we last sent them. (Automerge leaves `in_flight` set after the last message of an
    /// exchange, so it says nothing here.) Dropping the sessions of a settled replica costs
    /// one message per peer at most when it is next synced; dropping them mid-exchange
    /// restarts the exchange, and two replicas that keep doing so never finish.
    pub fn settled(&self) -> bool {
        let ours = self.doc.heads().0;
        self.peers.values().all(|s| s.state.last_sent_heads == ours && s.state.their_heads.as_ref() == Some(&ours))
    }

    /// The peers with a session.
    pub fn peers(&self) -> impl Iterator<Item = &P> {
        self.peers.keys()
    }
}

fn session<'a, P: Ord + Clone>(
    peers: &'a mut BTreeMap<P, Session>,
    clock: &mut u64,
    peers_max: usize,
    peer: &P,
) -> &'a mut Session {
    *clock += 1;
    if !peers.contains_key(peer) && peers.len() >= peers_max.max(1) {
        let oldest = peers.iter().min_by_key(|(_, s)| s.used).map(|(p, _)| p.clone());
        if let Some(oldest) = oldest {
            peers.remove(&oldest);
        }
    }
    let s = peers.entry(peer.clone()).or_insert_with(|| Session { state: sync::State::new(), used: 0 });
    s.used = *clock;
    s
}

/// Keeps the longest dependency-ordered prefix of `msg`'s changes that fits `max` bytes (at
/// least one change), and un-marks the others as sent so a later message carries them.
fn trim(msg: sync::Message, state: &mut sync::State, max: usize) -> Vec<u8> {
    if msg.changes.len() <= 1 {
        return msg.encode();
    }
    let Ok(changes) = msg.changes.iter().map(|c| Change::from_bytes(c.to_vec())).collect::<Result<Vec<_>, _>>() else {
        return msg.encode(); // not expected: these are our own changes
    };
    let overhead = sync::Message { changes: ChunkList::empty(), ..msg.clone() }.encode().len();
    let mut budget = max.saturating_sub(overhead);
    let (mut kept, mut full) = (Vec::new(), false);
    for change in topo_order(changes) {
        let len = change.raw_bytes().len() + 5; // + its length prefix, at most
        if kept.is_empty() || (!full && len <= budget) {
            budget = budget.saturating_sub(len);
            kept.push(change.raw_bytes().to_vec());
        } else {
            full = true; // a prefix: once one change does not fit, none after it goes
            state.sent_hashes.remove(&change.hash());
        }
    }
    sync::Message { changes: ChunkList::from(kept), ..msg }.encode()
}

/// `changes` reordered so each comes after those of its dependencies that are also in the
/// list (the input is nearly always in that order already).
fn topo_order(mut pending: Vec<Change>) -> Vec<Change> {
    let in_set: HashSet<ChangeHash> = pending.iter().map(Change::hash).collect();
    let mut done = HashSet::new();
    let mut out = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let emitted = out.len();
        let mut rest = Vec::new();
        for c in pending {
            if c.deps().iter().all(|d| !in_set.contains(d) || done.contains(d)) {
                done.insert(c.hash());
                out.push(c);
            } else {
                rest.push(c);
            }
        }
        if out.len() == emitted {
            out.extend(rest); // a cycle cannot happen; do not loop forever if it did
            break;
        }
        pending = rest;
    }
    out
}

#[cfg(test)]
mod tests;
