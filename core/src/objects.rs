//! Objects in the node: replica sets, sync with peers, anti-entropy, durability before
//! acknowledgement, and reads that wait for peers.
//!
//! The documents, operations, sync sessions and on-disk format come from `state-sync`; this
//! module decides *who* holds what, *when* to sync and *when* a write may be acknowledged.
//! See `docs/objects.md` for the rules in prose.
//!
//! # The rules
//! - **Replica set**: rendezvous hashing over the members that are alive, suspect, or down
//!   for less than [`Config::replace_after`] (see [`replica_set`]), `n` per namespace (default 3),
//!   with the best cloud node always in it when one exists.
//! - **Follower copies**: a node that reads or writes an object outside its replica set
//!   fetches it and keeps a *follower copy*, durable on its own disk, synced with the replica
//!   set like any replica. Writes are therefore always local-first, which is what keeps both
//!   sides of a partition writable.
//! - **Sync**: a change (a local write, an import, or changes received) marks the object; after
//!   [`Config::batch_delay`] every marked object runs automerge's sync protocol with each of
//!   its *sync peers* (the replica set, plus every peer with a live session) that is not down.
//! - **Anti-entropy**: every [`Config::anti_entropy_interval`], and whenever a peer connects or
//!   comes back to life, a node sends each peer the digests of the objects they share; only
//!   objects whose digests differ are synced, starting from what the session already knows.
//! - **Durability**: every change is appended to the object's log ([`DiskOp::Append`]) and
//!   made durable by one [`DiskOp::Flush`] for everything appended since the last one (group
//!   commit). A write is acknowledged after its flush; with [`Durability::Quorum`], also after
//!   a majority of the replica set said the write's heads are durable with them.
//! - **Unknown objects**: a read of an object this node does not hold asks the replica set;
//!   it waits (up to [`Config::fetch_timeout`]) while none of them is reachable and asks
//!   again as they come up; it is answered *not found* only when every member asked said so,
//!   never remembered as missing. A write to an unknown object tries the same first, for at
//!   most [`Config::write_fetch_timeout`], then creates the object locally.
//! - **Damaged logs**: an object restored from a log that lost changes others depend on is
//!   *damaged* ([`Objects::mark_damaged`]): it is held and synced like any copy, but requests
//!   for it are refused with [`ObjectError::Damaged`] until sync makes its document whole.
//! - **Hot and cold**: documents in memory are a cache of the disk, bounded by
//!   [`Config::cache_bytes`]. When it is exceeded, the least recently used documents that
//!   are *clean* (durable, not being synced, written, fetched or waited on) are dropped from
//!   memory; the node keeps only their heads and log sizes (enough for digests, listings
//!   and quotas). An input that needs a cold document (a request, a sync message, a digest
//!   that differs, an ack request for other heads) is parked, the document is read back
//!   ([`DiskOp::Load`], answered by [`Objects::handle_loaded`]), and the parked inputs run
//!   in order. Namespaces in [`Config::everywhere`] (the function registry) stay in memory.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use state_sync::automerge::ActorId;
use state_sync::ops::Op;
use state_sync::store::{Compaction, LogStats};
use state_sync::{Digest, Document, Heads, ObjectName, Replica, Snapshot, replica};

pub use crate::rendezvous::{ReplicaNode, hash64, replica_set};

use crate::membership::{Membership, Status};
use crate::shared::Sink;
use crate::{NodeId, Time};

/// Per-record overhead of the on-disk log (length, kind, checksum), for compaction estimates.
const RECORD_OVERHEAD: u64 = 9;

/// Object tuning.
#[derive(Clone, Debug)]
pub struct Config {
    /// Replicas per object unless its namespace is listed in `replication`.
    pub replication_default: usize,
    /// Replicas per object, by namespace.
    pub replication: BTreeMap<String, usize>,
    /// Namespaces replicated to every node unless `replication` names them. The node adds
    /// the function registry's: any node must resolve a function, offline included.
    pub everywhere: BTreeSet<String>,
    /// How long a read of an object this node does not hold waits for a replica.
    pub fetch_timeout: Duration,
    /// How long a write to an object this node does not hold waits for a replica before
    /// creating the object locally.
    pub write_fetch_timeout: Duration,
    /// How long a [`Durability::Quorum`] write waits for a majority.
    pub quorum_timeout: Duration,
    /// How often to re-ask replicas for a quorum acknowledgement.
    pub quorum_retry: Duration,
    /// How often each node compares digests with its peers.
    pub anti_entropy_interval: Duration,
    /// How long changes gather before they are pushed to peers.
    pub batch_delay: Duration,
    /// How long a member may be down before objects choose another replica in its place.
    pub replace_after: Duration,
    /// The most objects a node holds (replicas and follower copies).
    pub objects_max: usize,
    /// The most objects of one namespace a write may create on this node: a flood of
    /// creations in one namespace (an API client or a guest in a loop) is refused with
    /// [`ObjectError::Quota`] before it crowds out the others. Objects arriving from
    /// replicas are not refused by it (they exist already; `objects_max` still bounds them).
    pub namespace_objects_max: usize,
    /// The most bytes the documents kept in memory may take (an estimate: a fixed cost per
    /// document plus a multiple of its log's size). Past it, clean documents are dropped
    /// from memory, least recently used first, and read back from disk when needed.
    pub cache_bytes: u64,
    /// The most inputs (requests, sync messages, digests) parked while cold documents load.
    pub parked_max: usize,
    /// The most bytes of object logs this node holds before writes are refused with
    /// [`ObjectError::Storage`]: a budget for what this node's own writes may add, checked
    /// before each write. Changes from replicas are still taken in beyond it, so that data
    /// acknowledged elsewhere keeps its redundancy; a full disk is reported as
    /// [`ObjectError::Disk`] either way.
    pub storage_bytes_max: u64,
    /// The most digests in one anti-entropy message.
    pub digests_per_message: usize,
    /// The most pending "tell me when this is durable" requests from peers.
    pub ack_waits_max: usize,
    /// The most requests waiting on fetches, quorums and heads together.
    pub waiters_max: usize,
    /// When to compact an object's log.
    pub compaction: Compaction,
    /// Sync limits per object.
    pub replica: replica::Config,
    /// Microseconds between the Unix epoch and the driver's time zero: change timestamps
    /// are `unix_epoch_offset_us + now` (the simulator passes 0, so runs stay reproducible).
    pub unix_epoch_offset_us: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            replication_default: 3,
            replication: BTreeMap::new(),
            everywhere: BTreeSet::new(),
            fetch_timeout: Duration::from_secs(5),
            write_fetch_timeout: Duration::from_secs(2),
            quorum_timeout: Duration::from_secs(10),
            quorum_retry: Duration::from_secs(1),
            anti_entropy_interval: Duration::from_secs(10),
            batch_delay: Duration::from_millis(2),
            replace_after: Duration::from_secs(60),
            objects_max: 100_000,
            namespace_objects_max: 50_000,
            storage_bytes_max: u64::MAX,
            cache_bytes: 64 * 1024 * 1024,
            parked_max: 16_384,
            digests_per_message: 512,
            ack_waits_max: 4096,
            waiters_max: 16_384,
            compaction: Compaction::default(),
            replica: replica::Config::default(),
            unix_epoch_offset_us: 0,
        }
    }
}

impl Config {
    /// The replication factor of `namespace`: `replication`'s, else every node for the
    /// namespaces in `everywhere`, else `replication_default`.
    pub fn replication_of(&self, namespace: &str) -> usize {
        let default = if self.everywhere.contains(namespace) { usize::MAX } else { self.replication_default };
        self.replication.get(namespace).copied().unwrap_or(default).max(1)
    }
}

/// The automerge actor id of this node's changes in this boot: the node id plus the boot
/// counter, so that a node that lost unsynced changes in a crash never reuses a (actor,
/// sequence number) pair with different contents.
pub fn actor_id(node: &NodeId, boot: u64) -> ActorId {
    let mut bytes = Vec::with_capacity(40);
    bytes.extend_from_slice(&node.0);
    bytes.extend_from_slice(&boot.to_be_bytes());
    ActorId::from(bytes)
}

/// When a write counts as done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Durable on this node's disk.
    #[default]
    Local,
    /// Durable on this node's disk and on a majority of the object's replica set.
    Quorum,
}

/// Identifies a request so its reply can be matched; chosen by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Who a request's reply goes to: the driver (by the id it chose), or the node itself — a
/// request one of its own subsystems made (the functions registry), answered through the
/// node and never seen by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReplyTo {
    /// [`Objects::handle_request`]'s caller.
    Driver(RequestId),
    /// [`Objects::handle_internal_request`]'s caller, by its token.
    Internal(u64),
}

/// What the object layer asks of the node: the node maps it into its own
/// [`Output`](crate::Output), or answers its own requests itself.
#[derive(Clone, Debug)]
pub enum Output {
    /// Send `msg` to `to`.
    Send {
        /// The recipient.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Storage work, in order.
    Disk(DiskOp),
    /// The answer to a request.
    Reply {
        /// Who asked.
        id: ReplyTo,
        /// The answer.
        reply: Reply,
    },
    /// An object's document changed here (a local write or changes from a peer).
    Changed(ObjectName),
}

impl Output {
    fn send(to: NodeId, msg: Message) -> Output {
        Output::Send { to, msg }
    }
}

/// A change to an object.
#[derive(Clone, Debug)]
pub enum Change {
    /// A batch of operations, applied atomically as one automerge change.
    Ops(Vec<Op>),
    /// A binary automerge document (or changes) made elsewhere, merged in.
    Import(Vec<u8>),
}

/// A question or command about objects, from the API or (later) a function.
#[derive(Clone, Debug)]
pub enum Request {
    /// The object's value and heads. With `after`, waits until the document contains those
    /// heads (a client reading its own write at another node), up to the fetch timeout.
    Get {
        /// The object to read, by name (`namespace/key`).
        object: ObjectName,
        /// Heads the answer must include.
        after: Option<Heads>,
    },
    /// Change the object, creating it if needed.
    Write {
        /// The object to change; a write to an object no replica holds creates it.
        object: ObjectName,
        /// What to do.
        change: Change,
        /// When to acknowledge.
        durability: Durability,
    },
    /// Objects this node holds whose names start with `prefix`, sorted, at most `limit`,
    /// starting after `after`: a page of a listing, whose next page starts after the last
    /// name of this one.
    List {
        /// The name prefix (`app/` for a namespace).
        prefix: String,
        /// List only names that sort after this one (the last name of the previous page).
        after: Option<String>,
        /// The most entries.
        limit: usize,
    },
    /// The whole document, in automerge's binary format.
    Export {
        /// The object whose document to export.
        object: ObjectName,
    },
}

/// One object in a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    /// Its name.
    pub object: ObjectName,
    /// Its heads on this node.
    pub heads: Heads,
    /// Its replica set in this node's view.
    pub replicas: Vec<NodeId>,
}

/// The answer to a [`Request`].
#[derive(Clone, Debug)]
pub enum Reply {
    /// The object's value and heads (after a get or an acknowledged write).
    Value {
        /// The object read, or written by the acknowledged write.
        object: ObjectName,
        /// Its value and heads.
        snapshot: Snapshot,
        /// For an acknowledged write: how many replica-set members hold it durably (this
        /// node counts if it is one).
        durable_on: usize,
    },
    /// A listing.
    List(Vec<Listed>),
    /// An exported document.
    Export {
        /// The object exported.
        object: ObjectName,
        /// `Automerge::save` output.
        bytes: Vec<u8>,
        /// Its heads.
        heads: Heads,
    },
    /// The request failed.
    Error(ObjectError),
}

/// Why an object request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// Every replica asked answered that it does not hold the object.
    #[error("object {object} does not exist (no replica holds it)")]
    NotFound {
        /// The object no replica holds.
        object: ObjectName,
    },
    /// No replica could be asked, or none answered, in time.
    #[error(
        "object {object} is not on this node and no replica answered within {waited_ms} ms; retry when its replicas are reachable"
    )]
    Unavailable {
        /// The object this node lacks and could not fetch.
        object: ObjectName,
        /// How long the request waited.
        waited_ms: u64,
    },
    /// `after` heads did not arrive in time.
    #[error("object {object} did not reach the requested heads within {waited_ms} ms")]
    HeadsTimeout {
        /// The object read with `after`.
        object: ObjectName,
        /// How long the request waited.
        waited_ms: u64,
    },
    /// The change is invalid (a bad path, a `set` on a counter, a document that does not
    /// load); nothing was applied.
    #[error("{message}")]
    Invalid {
        /// What is wrong, naming the operation and path.
        message: String,
    },
    /// The change was applied in memory, but the disk refused it: it is not acknowledged.
    #[error("object {object}: the local disk failed ({message}); the write is not acknowledged")]
    Disk {
        /// The object whose write the disk refused.
        object: ObjectName,
        /// The driver's explanation.
        message: String,
    },
    /// Durable locally, but a majority of replicas did not confirm in time. The write is
    /// not lost: it keeps replicating.
    #[error(
        "object {object}: durable on {acks} of the {needed} replicas a quorum needs after {waited_ms} ms; it is durable here and keeps replicating"
    )]
    Quorum {
        /// The object written with `Quorum` durability.
        object: ObjectName,
        /// Replicas that confirmed.
        acks: usize,
        /// Replicas needed.
        needed: usize,
        /// How long the write waited.
        waited_ms: u64,
    },
    /// This node's log of the object was damaged on disk, and changes it held are missing
    /// until sync brings them back from a replica: reads and writes here are refused rather
    /// than served from an older document.
    #[error(
        "object {object}: its log on this node was damaged (the damaged file is kept at {kept}) and acknowledged changes are missing; it is awaiting repair from its replicas: retry later, or read it at another replica"
    )]
    Damaged {
        /// The object whose log was damaged.
        object: ObjectName,
        /// Where the damaged log file was kept.
        kept: String,
    },
    /// This node holds as many objects, or waits on as many requests, as it may.
    #[error("this node is at its limit of {max} {what}; try another node or raise the limit")]
    Full {
        /// What is full.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The write would create an object in a namespace that holds as many objects on this
    /// node as [`Config::namespace_objects_max`] allows.
    #[error(
        "namespace {namespace:?} is at its quota of {max} objects on this node: delete objects, or raise the quota (namespace_objects_max)"
    )]
    Quota {
        /// The namespace at its quota.
        namespace: String,
        /// The quota.
        max: usize,
    },
    /// This node's object logs hold [`Config::storage_bytes_max`] bytes or more: writes are
    /// refused until compaction or deletions make room, or the budget is raised.
    #[error(
        "this node's objects use {used} bytes of their {max}-byte storage budget: the write is refused; raise storage_max or write at another node"
    )]
    Storage {
        /// Bytes held now.
        used: u64,
        /// The budget.
        max: u64,
    },
}

/// Object messages between nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// An automerge sync message for one object.
    Sync {
        /// The object the sync message is about (one session per object and peer).
        object: ObjectName,
        /// `automerge::sync::Message::encode` output.
        data: ByteBuf,
    },
    /// The sender does not hold the object and is not in its replica set.
    NotHeld {
        /// The object the sender dropped or never held: stop syncing it with the sender.
        object: ObjectName,
    },
    /// Anti-entropy: the digests of objects the two nodes share (from the sender's view).
    Digests {
        /// Object and digest of its heads.
        entries: Vec<(ObjectName, Digest)>,
    },
    /// "Tell me when your copy durably contains these heads" (a quorum write).
    AckWanted {
        /// The object the quorum write changed.
        object: ObjectName,
        /// The write's heads.
        heads: Heads,
    },
    /// The sender's copy durably contains these heads.
    Ack {
        /// The object whose heads are durable at the sender.
        object: ObjectName,
        /// The heads from the `AckWanted`.
        heads: Heads,
    },
}

impl Message {
    /// A short, stable name of the message kind, for metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Sync { .. } => "obj_sync",
            Message::NotHeld { .. } => "obj_not_held",
            Message::Digests { .. } => "obj_digests",
            Message::AckWanted { .. } => "obj_ack_wanted",
            Message::Ack { .. } => "obj_ack",
        }
    }
}

/// Storage work for the driver, carried out **in order**.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DiskOp {
    /// Append an incremental save to the object's log (`Store::append`).
    Append {
        /// The object whose log grows.
        object: ObjectName,
        /// The changes.
        bytes: Vec<u8>,
    },
    /// Replace the object's log by a full save (`Store::compact`).
    Compact {
        /// The object whose log is replaced.
        object: ObjectName,
        /// The whole document: `Document::save_applied` output (`Document::save` for a
        /// damaged document, whose log keeps the changes that wait for lost ones).
        snapshot: Vec<u8>,
    },
    /// Make every append so far durable (`Store::sync`), then call
    /// [`Node::handle_flushed`](crate::Node::handle_flushed) with this ticket.
    Flush {
        /// Identifies the flush.
        ticket: u64,
    },
    /// Read a cold object's document back (`state_sync::store::restore` with
    /// [`Objects::actor`]) and hand it to [`Node::handle_loaded`](crate::Node::handle_loaded).
    /// Only clean documents are cold, so what is on disk is the whole document.
    Load {
        /// The object to read.
        object: ObjectName,
    },
}

/// A cold document read back from disk, for [`Objects::handle_loaded`].
#[derive(Debug)]
pub struct Loaded {
    /// The document, with [`Objects::actor`] as its actor, everything marked saved.
    pub doc: Document,
    /// Its log's sizes.
    pub log: LogStats,
    /// Where the damaged log was kept, if the load found damage that left the document
    /// lacking changes (`state_sync::store::Restored::incomplete`).
    pub damaged: Option<String>,
}

/// Counters and gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sync messages sent.
    pub sync_sent: u64,
    /// Sync messages received.
    pub sync_received: u64,
    /// Bytes of sync messages sent.
    pub sync_bytes_sent: u64,
    /// Bytes of sync messages received.
    pub sync_bytes_received: u64,
    /// Sync messages refused (undecodable or rejected by automerge).
    pub sync_refused: u64,
    /// Writes acknowledged.
    pub writes_acked: u64,
    /// Writes that failed (invalid, disk, quorum timeout).
    pub writes_failed: u64,
    /// Flushes completed.
    pub flushes: u64,
    /// Log compactions requested.
    pub compactions: u64,
    /// Documents dropped from memory (they stay on disk).
    pub evictions: u64,
    /// Cold documents read back from disk.
    pub loads: u64,
}

#[derive(Debug)]
struct Object {
    replica: Replica<NodeId>,
    hash: u64,
    set: Vec<NodeId>,
    set_view: u64,
    log: LogStats,
    snapshot_next: bool,
    /// Where its damaged log was kept, while the document lacks changes it had (see
    /// [`Objects::mark_damaged`]).
    damaged: Option<String>,
    /// When it was last used (a tick of [`Objects::lru`]).
    used: u64,
    /// Its estimated memory ([`doc_bytes`]), as counted in `Objects::hot_bytes`.
    mem: u64,
    /// When a sync message for it last arrived.
    synced_at: Time,
}

impl Object {
    fn new(replica: Replica<NodeId>, object: &ObjectName, log: LogStats, damaged: Option<String>) -> Self {
        Object {
            replica,
            hash: hash64(object.as_str().as_bytes()),
            set: Vec::new(),
            set_view: u64::MAX,
            log,
            snapshot_next: false,
            damaged,
            used: 0,
            mem: 0,
            synced_at: Time::ZERO,
        }
    }
}

/// The estimated memory of a document whose log has these sizes. Automerge keeps a
/// document's operations indexed in memory at several times their compressed size on disk,
/// plus a fixed cost per document and per sync session (measured: about 21 KB per 100-byte
/// object in the agent).
fn doc_bytes(log: &LogStats) -> u64 {
    16 * 1024 + log.bytes.saturating_mul(8)
}

/// How many documents one eviction pass looks at, at most.
const EVICT_SCAN_MAX: usize = 256;

/// An object held on this node whose document is not in memory: only clean documents are
/// dropped, so the disk holds all of it.
#[derive(Clone, Debug)]
struct Cold {
    heads: Heads,
    log: LogStats,
}

/// An input that needs a cold object's document, parked until the document is loaded.
#[derive(Debug)]
enum Parked {
    Request { id: ReplyTo, pending: Pending },
    Sync { from: NodeId, data: ByteBuf },
    Digest { from: NodeId, digest: Digest },
    AckWanted { from: NodeId, heads: Heads },
}

impl Object {
    /// Whether this node holds the object: it has changes, or had some it is waiting for.
    fn held(&self) -> bool {
        !self.replica.doc().heads().is_empty() || self.damaged.is_some()
    }
}

#[derive(Debug)]
enum Pending {
    Get { after: Option<Heads> },
    Export,
    Write { change: Change, durability: Durability },
}

#[derive(Debug)]
struct Waiter {
    id: ReplyTo,
    pending: Pending,
    since: Time,
    deadline: Time,
}

#[derive(Debug, Default)]
struct Fetch {
    waiters: Vec<Waiter>,
    asked: BTreeSet<NodeId>,
    answered: BTreeSet<NodeId>,
}

#[derive(Debug)]
struct HeadWait {
    id: ReplyTo,
    object: ObjectName,
    heads: Heads,
    since: Time,
    deadline: Time,
}

#[derive(Debug)]
struct Acked {
    id: ReplyTo,
    object: ObjectName,
    heads: Heads,
    durability: Durability,
    since: Time,
}

#[derive(Debug)]
struct Quorum {
    id: ReplyTo,
    object: ObjectName,
    heads: Heads,
    needed: usize,
    acks: BTreeSet<NodeId>,
    since: Time,
    next_ask: Time,
}

#[derive(Debug)]
struct Flushing {
    ticket: u64,
    objects: BTreeSet<ObjectName>,
    writes: Vec<Acked>,
}

/// The objects this node holds and everything in flight about them.
#[derive(Debug)]
pub struct Objects {
    cfg: Config,
    me: NodeId,
    actor: ActorId,
    started: Time,
    /// The time of the input being handled.
    now: Time,
    objects: BTreeMap<ObjectName, Object>,
    /// Candidates for replica sets with their id hashes, sorted by id; rebuilt when the
    /// membership view changes.
    view: Vec<(ReplicaNode, u64)>,
    view_digest: u64,
    view_gen: u64,
    view_built: Time,
    sync_dirty: BTreeSet<ObjectName>,
    sync_at: Option<Time>,
    disk_dirty: BTreeSet<ObjectName>,
    disk_waiting: Vec<Acked>,
    flushing: Option<Flushing>,
    next_ticket: u64,
    fetches: BTreeMap<ObjectName, Fetch>,
    head_waits: Vec<HeadWait>,
    quorums: Vec<Quorum>,
    ack_waits: VecDeque<(NodeId, ObjectName, Heads)>,
    next_anti_entropy: Time,
    /// Peers with a live transport session (as the driver reports them).
    connected: BTreeSet<NodeId>,
    /// The peers digests were sent to because they came up, at the instant in `.0`: a
    /// reconnection that is also a return to alive triggers both paths at the same instant;
    /// one exchange is enough. Only that instant matters, so earlier ones are forgotten: a
    /// map of every peer ever seen up was O(n) per node, 6 GB over 10,000 simulated nodes.
    digests_now: (Time, BTreeSet<NodeId>),
    /// Replicas added by placement beside the rendezvous set, per source (a function's
    /// registry record), and the same per object.
    added: BTreeMap<String, Vec<(ObjectName, NodeId)>>,
    extra: BTreeMap<ObjectName, Vec<NodeId>>,
    /// Entries of `objects` per namespace, for [`Config::namespace_objects_max`].
    per_namespace: BTreeMap<String, usize>,
    /// The sum of every object's `log.bytes`, for [`Config::storage_bytes_max`].
    log_bytes: u64,
    /// Held objects whose documents are not in memory.
    cold: BTreeMap<ObjectName, Cold>,
    /// Cold objects being loaded, with the inputs waiting for them, in arrival order.
    loading: BTreeMap<ObjectName, Vec<Parked>>,
    parked: usize,
    /// The documents in memory by last use (oldest first), and the last tick given out.
    lru: BTreeMap<u64, ObjectName>,
    tick: u64,
    /// The estimated memory of the documents in memory.
    hot_bytes: u64,
    stats: Stats,
}

impl Objects {
    /// No objects yet. `boot` must grow with every start of this node (see [`actor_id`]).
    pub fn new(cfg: Config, me: NodeId, boot: u64, now: Time) -> Self {
        let next_anti_entropy = now + cfg.anti_entropy_interval;
        Objects {
            actor: actor_id(&me, boot),
            cfg,
            me,
            started: now,
            now,
            objects: BTreeMap::new(),
            view: Vec::new(),
            view_digest: 0,
            view_gen: 0,
            view_built: now,
            sync_dirty: BTreeSet::new(),
            sync_at: None,
            disk_dirty: BTreeSet::new(),
            disk_waiting: Vec::new(),
            flushing: None,
            next_ticket: 1,
            fetches: BTreeMap::new(),
            head_waits: Vec::new(),
            quorums: Vec::new(),
            ack_waits: VecDeque::new(),
            next_anti_entropy,
            connected: BTreeSet::new(),
            digests_now: (now, BTreeSet::new()),
            added: BTreeMap::new(),
            extra: BTreeMap::new(),
            per_namespace: BTreeMap::new(),
            log_bytes: 0,
            cold: BTreeMap::new(),
            loading: BTreeMap::new(),
            parked: 0,
            lru: BTreeMap::new(),
            tick: 0,
            hot_bytes: 0,
            stats: Stats::default(),
        }
    }

    /// The actor id this node's changes carry in this boot.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// Adds an object loaded from disk (at startup). Its document must use [`Objects::actor`].
    ///
    /// Past [`Config::cache_bytes`], documents restored earlier are dropped from memory
    /// again (those not [marked damaged](Objects::mark_damaged)), so a start reads every
    /// document once but never holds more than the cache.
    pub fn restore(&mut self, object: ObjectName, doc: Document, log: LogStats) {
        let replica = Replica::new(doc, self.cfg.replica.clone());
        self.evict(Some(&object));
        let o = Object::new(replica, &object, log, None);
        self.insert_object(object, o);
    }

    /// Adds an entry to `objects`, keeping the per-namespace counts, byte totals and LRU.
    fn insert_object(&mut self, name: ObjectName, mut o: Object) {
        self.tick += 1;
        o.used = self.tick;
        o.mem = doc_bytes(&o.log);
        o.synced_at = self.now;
        self.lru.insert(self.tick, name.clone());
        self.log_bytes += o.log.bytes;
        self.hot_bytes += o.mem;
        let was_cold = self.cold.remove(&name);
        if let Some(c) = &was_cold {
            self.log_bytes -= c.log.bytes.min(self.log_bytes);
        }
        if let Some(old) = self.objects.insert(name.clone(), o) {
            self.log_bytes -= old.log.bytes.min(self.log_bytes);
            self.hot_bytes -= old.mem.min(self.hot_bytes);
            self.lru.remove(&old.used);
        } else if was_cold.is_none() {
            *self.per_namespace.entry(name.namespace().to_string()).or_default() += 1;
        }
    }

    /// Removes an entry from `objects`, keeping the per-namespace counts, byte totals and LRU.
    fn remove_object(&mut self, name: &ObjectName) {
        if let Some(old) = self.objects.remove(name) {
            self.lru.remove(&old.used);
            self.hot_bytes -= old.mem.min(self.hot_bytes);
            self.log_bytes -= old.log.bytes.min(self.log_bytes);
            if let Some(n) = self.per_namespace.get_mut(name.namespace()) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_namespace.remove(name.namespace());
                }
            }
        }
    }

    /// Marks a document in memory as just used.
    fn touch(&mut self, name: &ObjectName) {
        if let Some(o) = self.objects.get_mut(name) {
            self.lru.remove(&o.used);
            self.tick += 1;
            o.used = self.tick;
            self.lru.insert(self.tick, name.clone());
        }
    }

    /// The objects some in-flight work needs in memory.
    fn busy(&self) -> BTreeSet<&ObjectName> {
        let mut busy: BTreeSet<&ObjectName> = BTreeSet::new();
        busy.extend(self.disk_dirty.iter());
        busy.extend(self.sync_dirty.iter());
        busy.extend(self.disk_waiting.iter().map(|a| &a.object));
        if let Some(f) = &self.flushing {
            busy.extend(f.objects.iter());
            busy.extend(f.writes.iter().map(|a| &a.object));
        }
        busy.extend(self.fetches.keys());
        busy.extend(self.head_waits.iter().map(|w| &w.object));
        busy.extend(self.quorums.iter().map(|q| &q.object));
        busy.extend(self.ack_waits.iter().map(|(_, o, _)| o));
        busy
    }

    /// Drops clean documents from memory, least recently used first, until the cache is
    /// below 90 % of [`Config::cache_bytes`] (so that one more document does not evict one
    /// at every input), keeping `keep`.
    fn evict(&mut self, keep: Option<&ObjectName>) {
        if self.hot_bytes <= self.cfg.cache_bytes {
            return;
        }
        let target = self.cfg.cache_bytes / 10 * 9;
        let busy = self.busy();
        let mut victims = Vec::new();
        let mut skipped = Vec::new();
        let mut left = self.hot_bytes;
        // A bounded look from the oldest end: what cannot go now (pinned, damaged, busy) is
        // moved to the young end, so that the next look sees others, and an input never
        // costs a walk over every document in memory.
        for name in self.lru.values().take(EVICT_SCAN_MAX) {
            if left <= target {
                break;
            }
            let Some(o) = self.objects.get(name) else { continue };
            // Mid-exchange sessions would restart from scratch after a reload (see
            // `Replica::settled`); a peer that stopped answering holds it only so long.
            let quiet = o.replica.settled() || self.now.since(o.synced_at) >= self.cfg.anti_entropy_interval * 3;
            let clean = quiet
                && o.held()
                && o.damaged.is_none()
                && o.log.records > 0
                && !o.snapshot_next
                && !self.cfg.everywhere.contains(name.namespace())
                && !busy.contains(name)
                && keep != Some(name);
            if clean {
                left -= o.mem.min(left);
                victims.push(name.clone());
            } else {
                skipped.push(name.clone());
            }
        }
        drop(busy);
        for name in skipped {
            self.touch(&name);
        }
        for name in victims {
            let Some(o) = self.objects.remove(&name) else { continue };
            self.lru.remove(&o.used);
            self.hot_bytes -= o.mem.min(self.hot_bytes);
            self.stats.evictions += 1;
            self.cold.insert(name, Cold { heads: o.replica.doc().heads(), log: o.log });
        }
    }

    /// Parks `input` until `object`'s document is loaded, asking the driver to load it if
    /// no load is under way. `false` if too many inputs are parked (the input is dropped:
    /// requests must then be answered by the caller).
    fn park(&mut self, object: &ObjectName, input: Parked, out: &mut (impl Sink<Output> + ?Sized)) -> bool {
        if self.parked >= self.cfg.parked_max {
            return false;
        }
        self.parked += 1;
        match self.loading.get_mut(object) {
            Some(list) => list.push(input),
            None => {
                self.loading.insert(object.clone(), vec![input]);
                out.push(Output::Disk(DiskOp::Load { object: object.clone() }));
            }
        }
        true
    }

    /// The driver finished a [`DiskOp::Load`]: the document is in memory again, and the
    /// inputs parked for it run in the order they came. If it could not be read, parked
    /// requests fail with [`ObjectError::Disk`] and the object stays cold (the next input
    /// tries again).
    pub fn handle_loaded(
        &mut self,
        now: Time,
        object: &ObjectName,
        result: Result<Option<Loaded>, String>,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        self.now = now;
        let parked = self.loading.remove(object).unwrap_or_default();
        self.parked -= parked.len().min(self.parked);
        let loaded = match result {
            Ok(Some(l)) if self.cold.contains_key(object) => l,
            Ok(_) if !self.cold.contains_key(object) && self.objects.contains_key(object) => {
                // Already back in memory (restored meanwhile): just run the inputs.
                self.replay(now, object, parked, members, out);
                self.pump(now, members, out);
                return;
            }
            Ok(_) => {
                let message = "its log is gone from disk".to_string();
                tracing::error!(object = %object, "a cold object could not be read back: {message}");
                self.fail_parked(object, parked, &message, out);
                return;
            }
            Err(message) => {
                tracing::error!(object = %object, error = %message, "a cold object could not be read back from disk");
                self.fail_parked(object, parked, &message, out);
                return;
            }
        };
        self.stats.loads += 1;
        let replica = Replica::new(loaded.doc, self.cfg.replica.clone());
        let damaged = loaded.damaged.filter(|_| !replica.doc().missing_deps().is_empty());
        self.evict(Some(object));
        let o = Object::new(replica, object, loaded.log, damaged);
        self.insert_object(object.clone(), o);
        self.replay(now, object, parked, members, out);
        self.pump(now, members, out);
    }

    fn fail_parked(
        &mut self,
        object: &ObjectName,
        parked: Vec<Parked>,
        message: &str,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        for p in parked {
            if let Parked::Request { id, pending, .. } = p {
                if matches!(pending, Pending::Write { .. }) {
                    self.stats.writes_failed += 1;
                }
                let err = ObjectError::Disk { object: object.clone(), message: message.to_string() };
                out.push(Output::Reply { id, reply: Reply::Error(err) });
            }
        }
    }

    fn replay(
        &mut self,
        now: Time,
        object: &ObjectName,
        parked: Vec<Parked>,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        for p in parked {
            match p {
                Parked::Request { id, pending } => self.start(now, id, object.clone(), pending, members, out),
                Parked::Sync { from, data } => self.on_sync(now, from, object.clone(), &data, members, out),
                Parked::Digest { from, digest } => self.on_digest(now, from, object.clone(), digest, members, out),
                Parked::AckWanted { from, heads } => self.on_ack_wanted(from, object.clone(), heads, out),
            }
        }
    }

    /// The bytes of object logs this node holds (as far as the core has written them).
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// Marks a restored object as damaged: its log was damaged on disk (the damaged file
    /// kept at `kept`) and its document lacks changes that later ones depend on
    /// (`state_sync::store::Restored::incomplete`). Until sync brings them back from a
    /// replica, requests for it are answered [`ObjectError::Damaged`]; then it is whole again
    /// and served as usual. Changes that arrive meanwhile are stored as usual.
    pub fn mark_damaged(&mut self, object: &ObjectName, kept: String) {
        if let Some(o) = self.objects.get_mut(object)
            && !o.replica.doc().missing_deps().is_empty()
        {
            o.damaged = Some(kept);
        }
    }

    /// The objects marked damaged that are still awaiting repair, with where their damaged
    /// logs were kept.
    pub fn damaged(&self) -> impl Iterator<Item = (&ObjectName, &str)> {
        self.objects.iter().filter_map(|(n, o)| Some((n, o.damaged.as_deref()?)))
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How many objects this node holds.
    pub fn held(&self) -> usize {
        self.objects.values().filter(|o| !o.replica.doc().heads().is_empty()).count() + self.cold.len()
    }

    /// How many held objects have their document in memory, and the estimated bytes they
    /// take ([`Config::cache_bytes`] bounds it).
    pub fn in_memory(&self) -> (usize, u64) {
        (self.objects.len(), self.hot_bytes)
    }

    /// Whether `object` is held with its document on disk only.
    pub fn is_cold(&self, object: &ObjectName) -> bool {
        self.cold.contains_key(object)
    }

    /// Replica-set members (other than this node) whose last known heads differ from ours,
    /// summed over every object in memory: a measure of replication lag. (Cold objects are
    /// clean and have no sync sessions; anti-entropy compares them.)
    pub fn replicas_behind(&self) -> usize {
        self.objects
            .values()
            .map(|o| o.set.iter().filter(|p| **p != self.me && !o.replica.peer_in_sync(p)).count())
            .sum()
    }

    /// The document of `object`, if held and in memory (see [`Objects::is_cold`]).
    pub fn doc(&self, object: &ObjectName) -> Option<&Document> {
        self.objects.get(object).map(|o| o.replica.doc())
    }

    /// Every held object's name and digest, sorted (for simulation checks).
    pub fn digests(&self) -> impl Iterator<Item = (&ObjectName, Digest)> {
        let hot = self
            .objects
            .iter()
            .filter(|(_, o)| !o.replica.doc().heads().is_empty())
            .map(|(n, o)| (n, o.replica.digest()));
        let cold = self.cold.iter().map(|(n, c)| (n, Digest::of(&c.heads)));
        let mut all: Vec<(&ObjectName, Digest)> = hot.chain(cold).collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// The replica set of `object` in the current view (added replicas included).
    pub fn replica_set_of(&mut self, now: Time, members: &Membership, object: &ObjectName) -> Vec<NodeId> {
        self.now = now;
        self.set_of(members, object)
    }

    /// Sets the replicas that `source` (a function's placement record) added beside the
    /// rendezvous sets: each `(object, node)` makes `node` a member of `object`'s replica set
    /// while `node` is in the view. Every node learns the same list from the replicated
    /// registry, so every node computes the same sets; the added node holds a follower copy
    /// already, and the others start pushing changes to it directly.
    pub fn set_added_replicas(&mut self, source: &str, mut list: Vec<(ObjectName, NodeId)>) {
        list.sort();
        list.dedup();
        let old = if list.is_empty() { self.added.remove(source) } else { self.added.insert(source.to_string(), list) };
        if old.as_ref() == self.added.get(source) {
            return;
        }
        self.extra.clear();
        for (object, node) in self.added.values().flatten() {
            self.extra.entry(object.clone()).or_default().push(*node);
        }
        for nodes in self.extra.values_mut() {
            nodes.sort();
            nodes.dedup();
        }
        let touched = old.iter().flatten().chain(self.added.get(source).into_iter().flatten());
        for (object, _) in touched {
            if let Some(o) = self.objects.get_mut(object) {
                o.set_view = u64::MAX;
            }
        }
    }

    /// The next time [`Objects::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Time {
        let mut t = self.next_anti_entropy;
        if let Some(s) = self.sync_at {
            t = t.min(s);
        }
        for f in self.fetches.values() {
            for w in &f.waiters {
                t = t.min(w.deadline);
            }
        }
        for w in &self.head_waits {
            t = t.min(w.deadline);
        }
        for q in &self.quorums {
            t = t.min(q.next_ask).min(q.since + self.cfg.quorum_timeout);
        }
        t
    }

    // ---- inputs ----

    /// A request from the API.
    pub fn handle_request(
        &mut self,
        now: Time,
        id: RequestId,
        req: Request,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        self.request(now, ReplyTo::Driver(id), req, members, out);
    }

    /// A request the node makes for itself (the functions registry): answered like
    /// [`Objects::handle_request`], with an [`Output::Reply`] to [`ReplyTo::Internal`]`(token)`.
    pub fn handle_internal_request(
        &mut self,
        now: Time,
        token: u64,
        req: Request,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        self.request(now, ReplyTo::Internal(token), req, members, out);
    }

    fn request(
        &mut self,
        now: Time,
        id: ReplyTo,
        req: Request,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        self.now = now;
        match req {
            Request::List { prefix, after, limit } => {
                use std::ops::Bound;
                let mut list = Vec::new();
                // Start at the later of the prefix and the cursor, and stop at the first
                // name past the prefix: a page costs its own length, not the node's count.
                let from = match after {
                    Some(a) if a.as_str() >= prefix.as_str() => Bound::Excluded(a),
                    _ => Bound::Included(prefix.clone()),
                };
                let range = (from.as_ref().map(String::as_str), Bound::Unbounded);
                let hot = self
                    .objects
                    .range::<str, _>(range)
                    .take_while(|(n, _)| n.as_str().starts_with(&prefix))
                    .filter(|(_, o)| !o.replica.doc().heads().is_empty())
                    .map(|(n, o)| (n.clone(), o.replica.doc().heads()))
                    .take(limit);
                let cold = self
                    .cold
                    .range::<str, _>(range)
                    .take_while(|(n, _)| n.as_str().starts_with(&prefix))
                    .map(|(n, c)| (n.clone(), c.heads.clone()))
                    .take(limit);
                let mut page: Vec<(ObjectName, Heads)> = hot.chain(cold).collect();
                page.sort_by(|a, b| a.0.cmp(&b.0));
                page.truncate(limit);
                for (name, heads) in page {
                    let replicas = self.set_of(members, &name);
                    list.push(Listed { heads, object: name, replicas });
                }
                out.push(Output::Reply { id, reply: Reply::List(list) });
            }
            Request::Get { object, after } => self.start(now, id, object, Pending::Get { after }, members, out),
            Request::Export { object } => self.start(now, id, object, Pending::Export, members, out),
            Request::Write { object, change, durability } => {
                self.start(now, id, object, Pending::Write { change, durability }, members, out);
            }
        }
        self.pump(now, members, out);
    }

    /// A message from a peer.
    pub fn handle_message(
        &mut self,
        now: Time,
        from: NodeId,
        msg: Message,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        self.now = now;
        match msg {
            Message::Sync { object, data } => self.on_sync(now, from, object, &data, members, out),
            Message::NotHeld { object } => {
                if let Some(f) = self.fetches.get_mut(&object) {
                    f.answered.insert(from);
                }
                self.settle_fetch(now, &object, members, out);
            }
            Message::Digests { entries } => {
                for (object, digest) in entries {
                    self.on_digest(now, from, object, digest, members, out);
                }
            }
            Message::AckWanted { object, heads } => self.on_ack_wanted(from, object, heads, out),
            Message::Ack { object, heads } => {
                for q in &mut self.quorums {
                    if q.object == object && q.heads == heads {
                        q.acks.insert(from);
                    }
                }
                self.settle_quorums(now, out);
            }
        }
        self.pump(now, members, out);
    }

    fn on_ack_wanted(
        &mut self,
        from: NodeId,
        object: ObjectName,
        heads: Heads,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        if let Some(c) = self.cold.get(&object)
            && c.heads != heads
        {
            // Whether older heads are contained needs the document.
            self.park(&object, Parked::AckWanted { from, heads }, out);
            return;
        }
        if self.durably_has(&object, &heads) {
            out.push(Output::send(from, Message::Ack { object, heads }));
        } else {
            if self.ack_waits.len() >= self.cfg.ack_waits_max {
                self.ack_waits.pop_front();
            }
            self.ack_waits.push_back((from, object, heads));
        }
    }

    /// A transport session to `peer` came up: sessions may have lost messages, so restart
    /// them, and compare digests.
    pub fn handle_connected(
        &mut self,
        now: Time,
        peer: NodeId,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        self.now = now;
        for o in self.objects.values_mut() {
            o.replica.reset(&peer);
        }
        // A fresh session is better evidence than a stale "down": ask it even before
        // membership agrees it is back.
        self.connected.insert(peer);
        self.peer_up(now, peer, members, out);
    }

    /// The transport session to `peer` closed.
    pub fn handle_disconnected(&mut self, peer: NodeId) {
        self.connected.remove(&peer);
    }

    /// Whether [`Objects::peer_up`] has anything to do: with no object held, none being
    /// fetched and no pending storage, sync or quorum work there is nobody to send digests or
    /// fetch requests to.
    pub fn wants_peer_ups(&self) -> bool {
        !self.objects.is_empty()
            || !self.cold.is_empty()
            || !self.fetches.is_empty()
            || !self.quorums.is_empty()
            || self.sync_at.is_some()
            || !self.disk_dirty.is_empty()
            || !self.disk_waiting.is_empty()
    }

    /// `peer` became alive in the membership view (it joined, returned, or a partition
    /// healed): compare digests with it and re-ask it for anything still being fetched.
    pub fn peer_up(&mut self, now: Time, peer: NodeId, members: &Membership, out: &mut (impl Sink<Output> + ?Sized)) {
        self.now = now;
        // With nothing to describe there is nothing to send, and the bookkeeping of who was
        // sent digests at this instant (an allocation per instant) is most of the cost of a
        // peer coming up: a mesh-wide refutation makes every node call this for every member.
        if !self.objects.is_empty() || !self.cold.is_empty() {
            if self.digests_now.0 != now {
                self.digests_now = (now, BTreeSet::new());
            }
            if self.digests_now.1.insert(peer) {
                self.send_digests(Some(peer), members, out);
            }
        }
        let waiting: Vec<ObjectName> = self.fetches.keys().cloned().collect();
        for object in waiting {
            // Whatever was sent to it before may have been lost: ask it again.
            if let Some(f) = self.fetches.get_mut(&object)
                && !f.answered.contains(&peer)
            {
                f.asked.remove(&peer);
            }
            self.ask(now, &object, members, out);
        }
        self.pump(now, members, out);
    }

    /// The driver finished a [`DiskOp::Flush`].
    pub fn handle_flushed(
        &mut self,
        now: Time,
        ticket: u64,
        result: Result<(), String>,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        let Some(f) = self.flushing.take_if(|f| f.ticket == ticket) else { return };
        match result {
            Ok(()) => {
                self.stats.flushes += 1;
                // A group commit often acknowledges many writes to one object: read its value
                // (and replica set) once, not once per write.
                let mut read: BTreeMap<ObjectName, Reply> = BTreeMap::new();
                for w in f.writes {
                    match w.durability {
                        Durability::Local => {
                            if !read.contains_key(&w.object) {
                                let durable_on = usize::from(self.set_of(members, &w.object).contains(&self.me));
                                let reply = self.value_reply(&w.object, durable_on);
                                read.insert(w.object.clone(), reply);
                            }
                            if let Some(reply) = read.get(&w.object) {
                                self.stats.writes_acked += 1;
                                out.push(Output::Reply { id: w.id, reply: reply.clone() });
                            }
                        }
                        Durability::Quorum => {
                            let set = self.set_of(members, &w.object);
                            let mut acks = BTreeSet::new();
                            if set.contains(&self.me) {
                                acks.insert(self.me);
                            }
                            self.quorums.push(Quorum {
                                id: w.id,
                                needed: set.len() / 2 + 1,
                                object: w.object,
                                heads: w.heads,
                                acks,
                                since: w.since,
                                next_ask: now,
                            });
                        }
                    }
                }
                self.answer_ack_waits(out);
            }
            Err(message) => {
                for object in f.objects {
                    if let Some(o) = self.objects.get_mut(&object) {
                        // What the failed flush covered may be lost: rewrite everything.
                        o.snapshot_next = true;
                        self.disk_dirty.insert(object);
                    }
                }
                for w in f.writes {
                    self.stats.writes_failed += 1;
                    let err = ObjectError::Disk { object: w.object, message: message.clone() };
                    out.push(Output::Reply { id: w.id, reply: Reply::Error(err) });
                }
            }
        }
        self.settle_quorums(now, out);
        self.pump(now, members, out);
    }

    /// Timers: batched sync, deadlines, quorum retries, anti-entropy.
    pub fn handle_timeout(&mut self, now: Time, members: &Membership, out: &mut (impl Sink<Output> + ?Sized)) {
        self.now = now;
        if self.digests_now.0 != now {
            // A past instant's peers: free them (after a join, thousands) before the next one.
            self.digests_now = (now, BTreeSet::new());
        }
        self.expire(now, members, out);
        if now >= self.next_anti_entropy {
            self.next_anti_entropy = now + self.cfg.anti_entropy_interval;
            self.drop_empty();
            self.send_digests(None, members, out);
        }
        self.settle_quorums(now, out);
        self.pump(now, members, out);
    }

    // ---- the work ----

    fn start(
        &mut self,
        now: Time,
        id: ReplyTo,
        object: ObjectName,
        pending: Pending,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        if self.cold.contains_key(&object) {
            if !self.park(&object, Parked::Request { id, pending }, out) {
                let err = ObjectError::Full { what: "waiting requests", max: self.cfg.parked_max };
                out.push(Output::Reply { id, reply: Reply::Error(err) });
            }
            return;
        }
        self.touch(&object);
        if self.objects.get(&object).is_some_and(Object::held) {
            self.serve(now, id, &object, pending, out);
            return;
        }
        let waiting: usize = self.fetches.values().map(|f| f.waiters.len()).sum::<usize>() + self.head_waits.len();
        if waiting >= self.cfg.waiters_max {
            let err = ObjectError::Full { what: "waiting requests", max: self.cfg.waiters_max };
            out.push(Output::Reply { id, reply: Reply::Error(err) });
            return;
        }
        let timeout = match pending {
            Pending::Write { .. } => self.cfg.write_fetch_timeout,
            _ => self.cfg.fetch_timeout,
        };
        let is_write = matches!(pending, Pending::Write { .. });
        self.fetches.entry(object.clone()).or_default().waiters.push(Waiter {
            id,
            pending,
            since: now,
            deadline: now + timeout,
        });
        let asked = self.ask(now, &object, members, out);
        if asked == 0 && is_write {
            // Nobody to ask: writes are local-first, so create the object here now.
            self.settle_fetch_as_missing(now, &object, out);
        } else if asked == 0 && self.alone(now) {
            self.settle_fetch_as_missing(now, &object, out);
        }
    }

    /// Whether this node knows no other member and has been up long enough to have met its
    /// peers if it had any: then "not on this node" means "does not exist".
    fn alone(&self, now: Time) -> bool {
        self.view.iter().all(|(c, _)| c.id == self.me) && now.since(self.started) >= self.cfg.fetch_timeout
    }

    /// Asks every reachable replica-set member not yet asked for `object`; returns how many
    /// members have been asked in total.
    fn ask(
        &mut self,
        now: Time,
        object: &ObjectName,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) -> usize {
        if !self.fetches.contains_key(object) {
            return 0;
        }
        let set = self.set_of(members, object);
        let connected = &self.connected;
        let targets: Vec<NodeId> =
            set.into_iter().filter(|p| *p != self.me && (reachable(members, p) || connected.contains(p))).collect();
        let Some(f) = self.fetches.get_mut(object) else { return 0 };
        let fresh: Vec<NodeId> = targets.into_iter().filter(|p| !f.asked.contains(p)).collect();
        f.asked.extend(fresh.iter().copied());
        let total = f.asked.len();
        if !fresh.is_empty() {
            if !self.ensure(object) {
                return total;
            }
            let Some(o) = self.objects.get_mut(object) else { return total };
            for p in fresh {
                o.replica.reset(&p);
                if let Some(data) = o.replica.generate(&p) {
                    self.stats.sync_sent += 1;
                    self.stats.sync_bytes_sent += data.len() as u64;
                    out.push(Output::send(p, Message::Sync { object: object.clone(), data: ByteBuf::from(data) }));
                }
            }
        }
        let _ = now;
        total
    }

    /// Creates the object's state (empty) if needed; `false` if the node is full.
    fn ensure(&mut self, object: &ObjectName) -> bool {
        if !self.objects.contains_key(object) {
            if self.objects.len() + self.cold.len() >= self.cfg.objects_max {
                return false;
            }
            let doc = Document::new(self.actor.clone());
            let o = Object::new(Replica::new(doc, self.cfg.replica.clone()), object, LogStats::default(), None);
            self.insert_object(object.clone(), o);
        }
        true
    }

    /// Serves a request for an object that is (now) here, or creates it for a write.
    fn serve(
        &mut self,
        now: Time,
        id: ReplyTo,
        object: &ObjectName,
        pending: Pending,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        if let Some(kept) = self.objects.get(object).and_then(|o| o.damaged.clone()) {
            if matches!(pending, Pending::Write { .. }) {
                self.stats.writes_failed += 1;
            }
            let err = ObjectError::Damaged { object: object.clone(), kept };
            out.push(Output::Reply { id, reply: Reply::Error(err) });
            return;
        }
        match pending {
            Pending::Get { after: Some(heads) }
                if !self.objects.get(object).is_some_and(|o| o.replica.doc().has_heads(&heads)) =>
            {
                self.head_waits.push(HeadWait {
                    id,
                    object: object.clone(),
                    heads,
                    since: now,
                    deadline: now + self.cfg.fetch_timeout,
                });
            }
            Pending::Get { .. } => {
                let reply = match self.objects.get(object) {
                    Some(o) => Reply::Value { object: object.clone(), snapshot: o.replica.doc().read(), durable_on: 0 },
                    None => Reply::Error(ObjectError::NotFound { object: object.clone() }),
                };
                out.push(Output::Reply { id, reply });
            }
            Pending::Export => {
                let reply = match self.objects.get(object) {
                    Some(o) => Reply::Export {
                        object: object.clone(),
                        bytes: o.replica.doc().save(),
                        heads: o.replica.doc().heads(),
                    },
                    None => Reply::Error(ObjectError::NotFound { object: object.clone() }),
                };
                out.push(Output::Reply { id, reply });
            }
            Pending::Write { change, durability } => self.write(now, id, object, change, durability, out),
        }
    }

    fn write(
        &mut self,
        now: Time,
        id: ReplyTo,
        object: &ObjectName,
        change: Change,
        durability: Durability,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        let timestamp = i64::try_from((self.cfg.unix_epoch_offset_us.saturating_add(now.as_micros())) / 1_000_000)
            .unwrap_or(i64::MAX);
        let max = self.cfg.objects_max;
        if self.log_bytes >= self.cfg.storage_bytes_max {
            self.stats.writes_failed += 1;
            let err = ObjectError::Storage { used: self.log_bytes, max: self.cfg.storage_bytes_max };
            out.push(Output::Reply { id, reply: Reply::Error(err) });
            return;
        }
        if !self.objects.get(object).is_some_and(Object::held) {
            let ns = object.namespace();
            let here = usize::from(self.objects.contains_key(object));
            let count = self.per_namespace.get(ns).copied().unwrap_or(0).saturating_sub(here);
            if count >= self.cfg.namespace_objects_max {
                self.stats.writes_failed += 1;
                let err = ObjectError::Quota { namespace: ns.to_string(), max: self.cfg.namespace_objects_max };
                out.push(Output::Reply { id, reply: Reply::Error(err) });
                if here == 1 && !self.fetches.contains_key(object) {
                    self.remove_object(object);
                }
                return;
            }
        }
        let ok = self.ensure(object);
        let Some(o) = self.objects.get_mut(object).filter(|_| ok) else {
            out.push(Output::Reply { id, reply: Reply::Error(ObjectError::Full { what: "objects", max }) });
            return;
        };
        let result = match &change {
            Change::Ops(ops) => o.replica.doc_mut().apply(ops, timestamp).map(|_| true).map_err(|e| e.to_string()),
            Change::Import(bytes) => o.replica.doc_mut().import(bytes).map_err(|e| e.to_string()),
        };
        let empty = o.replica.doc().heads().is_empty();
        match result {
            Err(message) => {
                self.stats.writes_failed += 1;
                if empty {
                    self.remove_object(object);
                }
                out.push(Output::Reply { id, reply: Reply::Error(ObjectError::Invalid { message }) });
            }
            Ok(changed) => {
                let heads = o.replica.doc().heads();
                if changed {
                    self.changed(now, object, out);
                }
                if empty {
                    // An import of nothing into nothing: there is still no object.
                    self.remove_object(object);
                    out.push(Output::Reply {
                        id,
                        reply: Reply::Error(ObjectError::Invalid {
                            message: "the imported document is empty: nothing to create".into(),
                        }),
                    });
                    return;
                }
                self.disk_waiting.push(Acked { id, object: object.clone(), heads, durability, since: now });
            }
        }
    }

    /// The document changed: persist it, push it to peers, tell watchers.
    fn changed(&mut self, now: Time, object: &ObjectName, out: &mut (impl Sink<Output> + ?Sized)) {
        self.disk_dirty.insert(object.clone());
        self.sync_dirty.insert(object.clone());
        if self.sync_at.is_none() {
            self.sync_at = Some(now + self.cfg.batch_delay);
        }
        out.push(Output::Changed(object.clone()));
        if let Some(o) = self.objects.get_mut(object)
            && o.damaged.is_some()
            && o.replica.doc().missing_deps().is_empty()
        {
            tracing::info!(object = %object, kept = o.damaged.as_deref().unwrap_or_default(), "a damaged object is whole again: sync brought back the changes its log lost");
            o.damaged = None;
        }
        if let Some(o) = self.objects.get(object).filter(|o| o.damaged.is_none()) {
            let doc = o.replica.doc();
            let mut i = 0;
            while i < self.head_waits.len() {
                let w = &self.head_waits[i];
                if w.object == *object && doc.has_heads(&w.heads) {
                    let w = self.head_waits.swap_remove(i);
                    let reply = Reply::Value { object: w.object, snapshot: doc.read(), durable_on: 0 };
                    out.push(Output::Reply { id: w.id, reply });
                } else {
                    i += 1;
                }
            }
        }
    }

    fn on_sync(
        &mut self,
        now: Time,
        from: NodeId,
        object: ObjectName,
        data: &[u8],
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        if self.cold.contains_key(&object) {
            // Dropped if too much is parked: the peer's next digest exchange starts over.
            self.park(&object, Parked::Sync { from, data: ByteBuf::from(data.to_vec()) }, out);
            return;
        }
        self.stats.sync_received += 1;
        self.stats.sync_bytes_received += data.len() as u64;
        self.touch(&object);
        let held = self.objects.contains_key(&object);
        if !held && !self.fetches.contains_key(&object) && !self.set_of(members, &object).contains(&self.me) {
            out.push(Output::send(from, Message::NotHeld { object }));
            return;
        }
        if !self.ensure(&object) {
            return;
        }
        let Some(o) = self.objects.get_mut(&object) else { return };
        o.synced_at = now;
        match o.replica.receive(&from, data) {
            Ok(changed) => {
                let reply = o.replica.generate(&from);
                let empty_both =
                    o.replica.doc().heads().is_empty() && o.replica.peer_heads(&from).is_some_and(|h| h.is_empty());
                if let Some(data) = reply {
                    self.stats.sync_sent += 1;
                    self.stats.sync_bytes_sent += data.len() as u64;
                    out.push(Output::send(from, Message::Sync { object: object.clone(), data: ByteBuf::from(data) }));
                }
                if changed {
                    self.changed(now, &object, out);
                }
                if empty_both && let Some(f) = self.fetches.get_mut(&object) {
                    f.answered.insert(from);
                }
                self.settle_fetch(now, &object, members, out);
                self.answer_ack_waits(out);
            }
            Err(e) => {
                self.stats.sync_refused += 1;
                tracing::warn!(object = %object, peer = %from, error = %e, "refused a sync message; restarting the session");
                o.replica.reset(&from);
            }
        }
    }

    fn on_digest(
        &mut self,
        now: Time,
        from: NodeId,
        object: ObjectName,
        digest: Digest,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        let _ = now;
        if let Some(c) = self.cold.get(&object) {
            if Digest::of(&c.heads) != digest {
                self.park(&object, Parked::Digest { from, digest }, out);
            }
            return;
        }
        let Some(o) = self.objects.get_mut(&object) else {
            // An object we should replicate but do not hold yet: pull it.
            if self.set_of(members, &object).contains(&self.me)
                && self.ensure(&object)
                && let Some(o) = self.objects.get_mut(&object)
            {
                o.replica.reset(&from);
                if let Some(data) = o.replica.generate(&from) {
                    self.stats.sync_sent += 1;
                    self.stats.sync_bytes_sent += data.len() as u64;
                    out.push(Output::send(from, Message::Sync { object, data: ByteBuf::from(data) }));
                }
            }
            return;
        };
        if o.replica.digest() == digest {
            return;
        }
        let data = match o.replica.generate(&from) {
            Some(d) => Some(d),
            None => {
                // The session thinks it is done (or waits for a reply that was lost): restart it.
                o.replica.reset(&from);
                o.replica.generate(&from)
            }
        };
        if let Some(data) = data {
            self.stats.sync_sent += 1;
            self.stats.sync_bytes_sent += data.len() as u64;
            out.push(Output::send(from, Message::Sync { object, data: ByteBuf::from(data) }));
        }
    }

    /// Resolves the waiters of a fetch whose object arrived or that every asked member
    /// answered.
    fn settle_fetch(
        &mut self,
        now: Time,
        object: &ObjectName,
        members: &Membership,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        let _ = members;
        let Some(f) = self.fetches.get(object) else { return };
        let arrived = self.objects.get(object).is_some_and(|o| !o.replica.doc().heads().is_empty());
        if arrived {
            if let Some(f) = self.fetches.remove(object) {
                for w in f.waiters {
                    self.serve(now, w.id, object, w.pending, out);
                }
            }
        } else if !f.asked.is_empty() && f.asked.is_subset(&f.answered) {
            self.settle_fetch_as_missing(now, object, out);
        }
    }

    /// No replica holds `object`: reads are told so, writes create it.
    fn settle_fetch_as_missing(&mut self, now: Time, object: &ObjectName, out: &mut (impl Sink<Output> + ?Sized)) {
        let Some(f) = self.fetches.remove(object) else { return };
        for w in f.waiters {
            match w.pending {
                Pending::Write { change, durability } => self.write(now, w.id, object, change, durability, out),
                Pending::Get { .. } | Pending::Export => {
                    let err = ObjectError::NotFound { object: object.clone() };
                    out.push(Output::Reply { id: w.id, reply: Reply::Error(err) });
                }
            }
        }
        if self.objects.get(object).is_some_and(|o| !o.held()) {
            self.remove_object(object);
        }
    }

    fn expire(&mut self, now: Time, members: &Membership, out: &mut (impl Sink<Output> + ?Sized)) {
        if self.fetches.is_empty() && self.head_waits.is_empty() {
            return;
        }
        self.refresh_view(members);
        let due: Vec<ObjectName> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.waiters.iter().any(|w| w.deadline <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for object in due {
            let Some(f) = self.fetches.get_mut(&object) else { continue };
            let (expired, kept): (Vec<Waiter>, Vec<Waiter>) =
                std::mem::take(&mut f.waiters).into_iter().partition(|w| w.deadline <= now);
            f.waiters = kept;
            let nobody_else = f.asked.is_empty() && self.view.iter().all(|(c, _)| c.id == self.me);
            for w in expired {
                match w.pending {
                    Pending::Write { change, durability } => {
                        tracing::info!(object = %object, "no replica answered in time: creating the object locally");
                        self.write(now, w.id, &object, change, durability, out);
                    }
                    Pending::Get { .. } | Pending::Export => {
                        let waited_ms = now.since(w.since).as_millis() as u64;
                        let err = if nobody_else {
                            ObjectError::NotFound { object: object.clone() }
                        } else {
                            ObjectError::Unavailable { object: object.clone(), waited_ms }
                        };
                        out.push(Output::Reply { id: w.id, reply: Reply::Error(err) });
                    }
                }
            }
            if self.fetches.get(&object).is_some_and(|f| f.waiters.is_empty()) {
                self.fetches.remove(&object);
                if self.objects.get(&object).is_some_and(|o| !o.held()) {
                    self.remove_object(&object);
                }
            }
        }
        let mut i = 0;
        while i < self.head_waits.len() {
            if self.head_waits[i].deadline <= now {
                let w = self.head_waits.swap_remove(i);
                let waited_ms = now.since(w.since).as_millis() as u64;
                let err = ObjectError::HeadsTimeout { object: w.object, waited_ms };
                out.push(Output::Reply { id: w.id, reply: Reply::Error(err) });
            } else {
                i += 1;
            }
        }
    }

    fn ack_write(
        &mut self,
        id: ReplyTo,
        object: &ObjectName,
        durable_on: usize,
        out: &mut (impl Sink<Output> + ?Sized),
    ) {
        self.stats.writes_acked += 1;
        let reply = self.value_reply(object, durable_on);
        out.push(Output::Reply { id, reply });
    }

    /// The answer to an acknowledged write: the object's value and heads now.
    fn value_reply(&self, object: &ObjectName, durable_on: usize) -> Reply {
        match self.objects.get(object) {
            Some(o) => Reply::Value { object: object.clone(), snapshot: o.replica.doc().read(), durable_on },
            None => Reply::Error(ObjectError::NotFound { object: object.clone() }),
        }
    }

    fn settle_quorums(&mut self, now: Time, out: &mut (impl Sink<Output> + ?Sized)) {
        let mut i = 0;
        while i < self.quorums.len() {
            let q = &self.quorums[i];
            if q.acks.len() >= q.needed {
                let q = self.quorums.swap_remove(i);
                self.ack_write(q.id, &q.object, q.acks.len(), out);
            } else if now >= q.since + self.cfg.quorum_timeout {
                let q = self.quorums.swap_remove(i);
                self.stats.writes_failed += 1;
                let waited_ms = now.since(q.since).as_millis() as u64;
                let err = ObjectError::Quorum { object: q.object, acks: q.acks.len(), needed: q.needed, waited_ms };
                out.push(Output::Reply { id: q.id, reply: Reply::Error(err) });
            } else {
                i += 1;
            }
        }
    }

    /// Whether `object` durably contains `heads` here (nothing about it waits for the disk).
    fn durably_has(&self, object: &ObjectName, heads: &Heads) -> bool {
        let in_flight =
            self.disk_dirty.contains(object) || self.flushing.as_ref().is_some_and(|f| f.objects.contains(object));
        if let Some(c) = self.cold.get(object) {
            return c.heads == *heads;
        }
        !in_flight && self.objects.get(object).is_some_and(|o| o.replica.doc().has_heads(heads))
    }

    fn answer_ack_waits(&mut self, out: &mut (impl Sink<Output> + ?Sized)) {
        if self.ack_waits.is_empty() {
            return;
        }
        let waits = std::mem::take(&mut self.ack_waits);
        for (peer, object, heads) in waits {
            if self.durably_has(&object, &heads) {
                out.push(Output::send(peer, Message::Ack { object, heads }));
            } else {
                self.ack_waits.push_back((peer, object, heads));
            }
        }
    }

    /// Pushes pending changes to disk and to peers, and asks for quorum acks.
    fn pump(&mut self, now: Time, members: &Membership, out: &mut (impl Sink<Output> + ?Sized)) {
        // Disk: one group commit at a time; writes applied meanwhile wait for the next.
        if self.flushing.is_none() && (!self.disk_dirty.is_empty() || !self.disk_waiting.is_empty()) {
            let dirty = std::mem::take(&mut self.disk_dirty);
            for object in &dirty {
                let Some(o) = self.objects.get_mut(object) else { continue };
                let Some(unsaved) = o.replica.doc().unsaved() else { continue };
                let len = unsaved.bytes.len() as u64 + RECORD_OVERHEAD;
                let mut after = o.log;
                after.bytes += len;
                if o.snapshot_next || o.log.records == 0 || self.cfg.compaction.due(&after) {
                    // Changes waiting for dependencies stay out of the log (orphans a peer passed
                    // on would read back as damage), except a damaged document's own: its log
                    // keeps them until sync brings what they depend on.
                    let doc = o.replica.doc();
                    let snapshot = if o.damaged.is_some() { doc.save() } else { doc.save_applied() };
                    let size = snapshot.len() as u64 + RECORD_OVERHEAD * 2 + object.as_str().len() as u64 + 8;
                    self.log_bytes = (self.log_bytes - o.log.bytes.min(self.log_bytes)).saturating_add(size);
                    o.log = LogStats { bytes: size, base_bytes: size, records: 2 };
                    let mem = doc_bytes(&o.log);
                    self.hot_bytes = (self.hot_bytes - o.mem.min(self.hot_bytes)).saturating_add(mem);
                    o.mem = mem;
                    o.snapshot_next = false;
                    if after.records > 0 {
                        self.stats.compactions += 1;
                    }
                    out.push(Output::Disk(DiskOp::Compact { object: object.clone(), snapshot }));
                } else {
                    self.log_bytes = self.log_bytes.saturating_add(len);
                    o.log = LogStats { records: after.records + 1, ..after };
                    let mem = doc_bytes(&o.log);
                    self.hot_bytes = (self.hot_bytes - o.mem.min(self.hot_bytes)).saturating_add(mem);
                    o.mem = mem;
                    out.push(Output::Disk(DiskOp::Append { object: object.clone(), bytes: unsaved.bytes }));
                }
                o.replica.doc_mut().mark_saved(&unsaved.heads);
            }
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            out.push(Output::Disk(DiskOp::Flush { ticket }));
            self.flushing = Some(Flushing { ticket, objects: dirty, writes: std::mem::take(&mut self.disk_waiting) });
        }
        // Network: batched pushes to every sync peer.
        if self.sync_at.is_some_and(|t| now >= t) {
            self.sync_at = None;
            let dirty = std::mem::take(&mut self.sync_dirty);
            for object in dirty {
                let peers = self.sync_peers(&object, members);
                let Some(o) = self.objects.get_mut(&object) else { continue };
                for p in peers {
                    if let Some(data) = o.replica.generate(&p) {
                        self.stats.sync_sent += 1;
                        self.stats.sync_bytes_sent += data.len() as u64;
                        out.push(Output::send(p, Message::Sync { object: object.clone(), data: ByteBuf::from(data) }));
                    }
                }
            }
        }
        // Quorums: ask replicas that have not confirmed yet.
        for i in 0..self.quorums.len() {
            if now < self.quorums[i].next_ask {
                continue;
            }
            let object = self.quorums[i].object.clone();
            let set = self.set_of(members, &object);
            let q = &mut self.quorums[i];
            q.next_ask = now + self.cfg.quorum_retry;
            for p in set {
                if p != self.me && !q.acks.contains(&p) && reachable(members, &p) {
                    out.push(Output::send(p, Message::AckWanted { object: object.clone(), heads: q.heads.clone() }));
                }
            }
        }
        // Memory: whatever this input made hot beyond the cache goes back to disk.
        self.evict(None);
    }

    /// Who to push `object`'s changes to: its replica set and every peer with a session,
    /// this node and members known to be down excepted.
    fn sync_peers(&mut self, object: &ObjectName, members: &Membership) -> Vec<NodeId> {
        let mut peers = self.set_of(members, object);
        if let Some(o) = self.objects.get(object) {
            peers.extend(o.replica.peers().copied());
        }
        peers.sort();
        peers.dedup();
        peers.retain(|p| *p != self.me && reachable(members, p));
        peers
    }

    /// Sends digests of shared objects to `only` (or to every peer).
    fn send_digests(&mut self, only: Option<NodeId>, members: &Membership, out: &mut (impl Sink<Output> + ?Sized)) {
        let mut by_peer: BTreeMap<NodeId, Vec<(ObjectName, Digest)>> = BTreeMap::new();
        let names: Vec<ObjectName> = self.objects.keys().cloned().collect();
        for name in names {
            let set = self.set_of(members, &name);
            let Some(o) = self.objects.get(&name) else { continue };
            // A damaged object may have no applied change yet; its digest still asks peers.
            if !o.held() {
                continue;
            }
            let digest = o.replica.digest();
            let mut peers: Vec<NodeId> = set;
            peers.extend(o.replica.peers().copied());
            peers.sort();
            peers.dedup();
            for p in peers {
                if p != self.me && only.is_none_or(|x| x == p) {
                    by_peer.entry(p).or_default().push((name.clone(), digest));
                }
            }
        }
        let cold: Vec<(ObjectName, Digest)> =
            self.cold.iter().map(|(n, c)| (n.clone(), Digest::of(&c.heads))).collect();
        for (name, digest) in cold {
            for p in self.set_of(members, &name) {
                if p != self.me && only.is_none_or(|x| x == p) {
                    by_peer.entry(p).or_default().push((name.clone(), digest));
                }
            }
        }
        for (peer, entries) in by_peer {
            for chunk in entries.chunks(self.cfg.digests_per_message.max(1)) {
                out.push(Output::send(peer, Message::Digests { entries: chunk.to_vec() }));
            }
        }
    }

    /// Forgets empty documents nobody is fetching (left over from "not found" exchanges).
    fn drop_empty(&mut self) {
        let fetching = &self.fetches;
        let empty: Vec<ObjectName> = self
            .objects
            .iter()
            .filter(|(n, o)| !o.held() && !fetching.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in empty {
            self.remove_object(&name);
        }
    }

    /// The replica set of `object`, cached per view.
    fn set_of(&mut self, members: &Membership, object: &ObjectName) -> Vec<NodeId> {
        self.refresh_view(members);
        let n = self.cfg.replication_of(object.namespace());
        let extra = self.extra.get(object).map_or(&[][..], Vec::as_slice);
        let view = &self.view;
        let with_extra = |mut set: Vec<NodeId>| {
            for node in extra {
                if !set.contains(node) && view.iter().any(|(c, _)| c.id == *node) {
                    set.push(*node);
                }
            }
            set
        };
        match self.objects.get_mut(object) {
            Some(o) => {
                if o.set_view != self.view_gen {
                    o.set = with_extra(replica_set(o.hash, view, n));
                    o.set_view = self.view_gen;
                }
                o.set.clone()
            }
            None => with_extra(replica_set(hash64(object.as_str().as_bytes()), view, n)),
        }
    }

    /// Rebuilds the candidate list when the membership view changed (or a down member
    /// crossed [`Config::replace_after`], checked once per anti-entropy interval).
    fn refresh_view(&mut self, members: &Membership) {
        let now = self.now;
        let digest = members.digest();
        if digest == self.view_digest && now < self.view_built + self.cfg.anti_entropy_interval && self.view_gen > 0 {
            return;
        }
        let replace_after = self.cfg.replace_after;
        let view: Vec<(ReplicaNode, u64)> = members
            .members(now)
            .filter(|m| match m.status {
                Status::Alive | Status::Suspect => true,
                Status::Down => now.since(m.since) < replace_after,
                Status::Left => false,
            })
            .map(|m| (ReplicaNode { id: m.info.id, tier: m.info.tier }, hash64(&m.info.id.0)))
            .collect();
        self.view_digest = digest;
        self.view_built = now;
        if view != self.view || self.view_gen == 0 {
            self.view = view;
            self.view_gen += 1;
        }
    }
}

/// Whether messages to `peer` may get through: it is not known to be down or gone.
fn reachable(members: &Membership, peer: &NodeId) -> bool {
    matches!(members.status_of(peer), Some(Status::Alive | Status::Suspect))
}
