//! The node: every subsystem's state machine behind one input/output interface.

use std::collections::{HashMap, VecDeque};

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use state_sync::store::LogStats;
use state_sync::{Document, ObjectName};

use crate::functions::{self, ExecId, Executed, Execution, Functions, Handoff, InvokeId, MigrationEvent, Prefetch};
use crate::membership::{self, Membership, Persisted, Status, StatusChange};
use crate::objects::{self, DiskOp, Objects, Reply, ReplyTo, Request, RequestId};
use crate::shared::Sink;
use crate::wire::Message;
use crate::{NodeId, NodeInfo, Time};

/// A node's configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Membership tuning.
    pub membership: membership::Config,
    /// Object tuning.
    pub objects: objects::Config,
    /// Function routing tuning.
    pub functions: functions::Config,
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
    /// [`Node::handle_flushed`], a [`DiskOp::Load`] with
    /// [`Node::handle_loaded`].
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
    /// Run a function here; answer with [`Node::handle_executed`].
    Execute(Box<Execution>),
    /// The outcome of [`Node::handle_invoke`]: exactly one per invocation.
    Invoked {
        /// The invocation's id.
        id: InvokeId,
        /// The output, or why there is none.
        result: Result<Vec<u8>, wasm_host::InvokeError>,
    },
    /// Fetch and compile a module ahead of a migration; answer with
    /// [`Node::handle_prefetched`].
    Prefetch(Box<Prefetch>),
    /// Snapshot an actor and stream it to another node; answer with
    /// [`Node::handle_handoff_sent`].
    Handoff(Box<Handoff>),
    /// Drop actor `name`'s live instance (its activation here ended); keep its checkpoints.
    Deactivate {
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// The epoch that ended.
        epoch: u64,
    },
    /// An actor's activation or migration took a step here (for logs and metrics).
    Migration(MigrationEvent),
}

impl From<membership::Output> for Output {
    fn from(o: membership::Output) -> Output {
        match o {
            membership::Output::Send { to, msg } => Output::Send { to, msg: Message::Membership(msg) },
            membership::Output::Persist(p) => Output::Persist(p),
            membership::Output::Event(e) => Output::Event(e),
        }
    }
}

impl From<functions::Output> for Output {
    fn from(o: functions::Output) -> Output {
        match o {
            functions::Output::Send { to, msg } => Output::Send { to, msg: Message::Functions(Box::new(msg)) },
            functions::Output::Execute(e) => Output::Execute(e),
            functions::Output::Invoked { id, result } => Output::Invoked { id, result },
            functions::Output::Prefetch(p) => Output::Prefetch(p),
            functions::Output::Handoff(h) => Output::Handoff(h),
            functions::Output::Deactivate { name, epoch } => Output::Deactivate { name, epoch },
            functions::Output::Migration(e) => Output::Migration(e),
        }
    }
}

/// An entry of the node's queue: an output for the driver, or the answer to a request the
/// node made of its own object layer, which the node handles itself when it comes up — in
/// queue order, as the driver would have seen it.
#[derive(Debug)]
enum Queued {
    Out(Output),
    Internal { token: u64, reply: Reply },
}

impl Sink<membership::Output> for VecDeque<Queued> {
    fn push(&mut self, o: membership::Output) {
        self.push_back(Queued::Out(o.into()));
    }
}

impl Sink<objects::Output> for VecDeque<Queued> {
    fn push(&mut self, o: objects::Output) {
        self.push_back(match o {
            objects::Output::Reply { id: ReplyTo::Internal(token), reply } => Queued::Internal { token, reply },
            objects::Output::Reply { id: ReplyTo::Driver(id), reply } => Queued::Out(Output::Reply { id, reply }),
            objects::Output::Send { to, msg } => Queued::Out(Output::Send { to, msg: Message::Objects(msg) }),
            objects::Output::Disk(op) => Queued::Out(Output::Disk(op)),
            objects::Output::Changed(object) => Queued::Out(Output::ObjectChanged(object)),
        });
    }
}

impl Sink<functions::Output> for VecDeque<Queued> {
    fn push(&mut self, o: functions::Output) {
        self.push_back(Queued::Out(o.into()));
    }
}

/// Membership alone, driven by a test, answers into a plain queue of outputs.
impl Sink<membership::Output> for VecDeque<Output> {
    fn push(&mut self, o: membership::Output) {
        self.push_back(o.into());
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
    functions: Functions,
    out: VecDeque<Queued>,
    /// The time of the latest input: internal replies are handled when they are polled.
    now: Time,
    /// Reads made by running functions, not answered yet: what they return counts in the
    /// function's facts (bounded by [`HOST_READS_MAX`]).
    host_reads: HashMap<RequestId, ExecId>,
}

/// Host reads whose answer size is tracked at once; beyond it, reads go uncounted.
const HOST_READS_MAX: usize = 4096;

/// The output queue's capacity kept once it is drained; a larger one is freed.
const OUT_KEPT: usize = 64;

impl Node {
    /// A node that knows only itself. `seed` drives every random choice; `restored` is what a
    /// previous life persisted.
    pub fn new(cfg: Config, info: NodeInfo, restored: Option<&Persisted>, seed: u64, now: Time) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let mut objects_cfg = cfg.objects;
        objects_cfg.everywhere.insert(functions::REGISTRY_NS.to_string());
        let objects = Objects::new(objects_cfg, info.id, cfg.boot, now);
        let functions = Functions::new(cfg.functions, info.id, seed ^ cfg.boot.rotate_left(32), now);
        Node {
            membership: Membership::new(cfg.membership, info, restored, rng, now),
            objects,
            functions,
            out: VecDeque::new(),
            now,
            host_reads: HashMap::new(),
        }
    }

    /// Adds an object loaded from disk; call before the first input. Its document's actor
    /// must be [`objects::actor_id`] of this node and boot.
    pub fn restore_object(&mut self, object: ObjectName, doc: Document, log: LogStats) {
        let name = object.clone();
        self.objects.restore(object, doc, log);
        self.note_registry(&name);
    }

    /// Marks an object restored with [`Node::restore_object`] as damaged: its log was
    /// damaged on disk (the damaged file kept at `kept`) and changes are missing until a
    /// replica sends them back (see [`Objects::mark_damaged`](crate::objects::Objects::mark_damaged)).
    pub fn mark_object_damaged(&mut self, object: &ObjectName, kept: String) {
        self.objects.mark_damaged(object, kept);
    }

    /// The objects this node holds.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// The functions subsystem (for its counters).
    pub fn functions(&self) -> &Functions {
        &self.functions
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
        self.now = now;
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
        self.now = now;
        match msg {
            Message::Membership(m) => {
                let before = self.out.len();
                self.membership.handle_message(now, from, m, &mut self.out);
                self.after_membership(now, before);
            }
            Message::Objects(m) => self.objects.handle_message(now, from, m, &self.membership, &mut self.out),
            Message::Functions(m) => {
                let mut ctx =
                    functions::Ctx { objects: &mut self.objects, membership: &self.membership, out: &mut self.out };
                self.functions.handle_message(now, from, *m, &mut ctx);
            }
        }
    }

    /// A request from the API (or a function), answered by an [`Output::Reply`] with the
    /// same id — at once, or after the disk, peers or a timeout.
    pub fn handle_request(&mut self, now: Time, id: RequestId, req: Request) {
        self.now = now;
        self.objects.handle_request(now, id, req, &self.membership, &mut self.out);
    }

    /// The driver finished the [`DiskOp::Flush`] with this ticket (`Err` with the reason if
    /// the disk failed).
    pub fn handle_flushed(&mut self, now: Time, ticket: u64, result: Result<(), String>) {
        self.now = now;
        self.objects.handle_flushed(now, ticket, result, &self.membership, &mut self.out);
    }

    /// The driver finished a [`DiskOp::Load`]: the cold
    /// object's document (`Ok(None)` if its log is gone, `Err` with the reason if the disk
    /// failed).
    pub fn handle_loaded(
        &mut self,
        now: Time,
        object: &ObjectName,
        result: Result<Option<crate::objects::Loaded>, String>,
    ) {
        self.now = now;
        self.objects.handle_loaded(now, object, result, &self.membership, &mut self.out);
    }

    /// The time from [`Node::poll_timeout`] was reached (calling earlier is harmless).
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = now;
        let before = self.out.len();
        self.membership.handle_timeout(now, &mut self.out);
        self.after_membership(now, before);
        self.objects.handle_timeout(now, &self.membership, &mut self.out);
        let mut ctx = functions::Ctx { objects: &mut self.objects, membership: &self.membership, out: &mut self.out };
        self.functions.handle_timeout(now, &mut ctx);
    }

    /// Invoke function `name` (from the API, or from a function running here with
    /// `depth` > 0). Answered by exactly one [`Output::Invoked`] with this id.
    pub fn handle_invoke(&mut self, now: Time, id: InvokeId, name: String, input: Vec<u8>, depth: u32) {
        self.now = now;
        let mut ctx = functions::Ctx { objects: &mut self.objects, membership: &self.membership, out: &mut self.out };
        self.functions.handle_invoke(now, id, name, input, depth, &mut ctx);
    }

    /// An object request made by a running function (a host call of execution `exec`):
    /// answered like [`Node::handle_request`], and counted in the function's facts.
    pub fn handle_host_request(&mut self, now: Time, exec: ExecId, id: RequestId, req: Request) {
        self.functions.note_access(exec, &req);
        if matches!(req, Request::Get { .. }) && self.host_reads.len() < HOST_READS_MAX {
            self.host_reads.insert(id, exec);
        }
        self.handle_request(now, id, req);
    }

    /// The driver finished an [`Output::Execute`].
    pub fn handle_executed(&mut self, now: Time, id: ExecId, done: Executed) {
        self.now = now;
        let mut ctx = functions::Ctx { objects: &mut self.objects, membership: &self.membership, out: &mut self.out };
        self.functions.handle_executed(now, id, done, &mut ctx);
    }

    /// The driver finished an [`Output::Prefetch`] (`Err`: why the module cannot run here).
    pub fn handle_prefetched(&mut self, now: Time, name: &str, result: Result<(), String>) {
        self.now = now;
        let mut ctx = functions::Ctx { objects: &mut self.objects, membership: &self.membership, out: &mut self.out };
        self.functions.handle_prefetched(now, name, result, &mut ctx);
    }

    /// The driver finished an [`Output::Handoff`]: the snapshot's size, or why it failed.
    pub fn handle_handoff_sent(&mut self, now: Time, name: &str, epoch: u64, result: Result<u64, String>) {
        self.now = now;
        let mut ctx = functions::Ctx { objects: &mut self.objects, membership: &self.membership, out: &mut self.out };
        self.functions.handle_handoff_sent(now, name, epoch, result, &mut ctx);
    }

    /// The driver received (and durably stored, as the checkpoint of `epoch`) an actor's
    /// snapshot from `from`.
    pub fn handle_snapshot_received(&mut self, now: Time, from: NodeId, name: &str, epoch: u64) {
        self.now = now;
        let mut ctx = functions::Ctx { objects: &mut self.objects, membership: &self.membership, out: &mut self.out };
        self.functions.handle_snapshot_received(now, from, name, epoch, &mut ctx);
    }

    /// The driver stored a copy of actor `name`'s checkpoint of `epoch` on this node (a
    /// standby's copy from its home), or found one on disk at boot: this node may take the
    /// actor over if its home goes down (see [`crate::functions::actors::failover`]).
    ///
    /// Returns whether the copy may be acknowledged to the home: not when this node promised
    /// a later epoch (the copy comes from a home that epoch replaced).
    pub fn handle_replica_stored(&mut self, now: Time, name: &str, pos: crate::functions::actors::lease::Pos) -> bool {
        self.now = now;
        let ctx = functions::Ctx { objects: &mut self.objects, membership: &self.membership, out: &mut self.out };
        self.functions.note_replica(name, pos, &ctx)
    }

    /// An operator asks to move actor `name` to `to`: its home starts the migration (this
    /// node, or the home named by the registry, which is asked). `Err` if it cannot start.
    pub fn handle_migrate(&mut self, now: Time, name: &str, to: NodeId, reason: String) -> Result<NodeId, String> {
        self.now = now;
        let mut ctx = functions::Ctx { objects: &mut self.objects, membership: &self.membership, out: &mut self.out };
        self.functions.request_migration(now, name, to, reason, &mut ctx)
    }

    /// The registry write that deploys `entry` from this node: the entry, this node as a
    /// holder, and the function's initial placement ([`functions::initial_placement`]). The
    /// driver sends it with [`Node::handle_request`].
    pub fn deploy_request(&self, now: Time, entry: &functions::Entry) -> Result<Request, String> {
        let object = functions::registry_object(&entry.manifest.name)?;
        let placement =
            functions::initial_placement(&entry.manifest, &self.objects, &self.membership, now, "deployed here")?;
        let ops = functions::deploy_ops(entry, &self.id(), &placement)?;
        Ok(Request::Write { object, change: objects::Change::Ops(ops), durability: objects::Durability::Local })
    }

    /// Tells the other subsystems about members that came (back) to life among the outputs
    /// membership just produced.
    fn after_membership(&mut self, now: Time, before: usize) {
        // A node with no objects and nothing to fetch has nothing to do for a peer coming up;
        // collecting them anyway cost every node a growing list per merged full state.
        let wants_ups = self.objects.wants_peer_ups();
        let mut ups = Vec::new();
        let mut downs = Vec::new();
        for o in self.out.range(before..) {
            match o {
                Queued::Out(Output::Event(c))
                    if wants_ups && c.to == Status::Alive && c.from != Some(Status::Alive) =>
                {
                    ups.push(c.id)
                }
                Queued::Out(Output::Event(c)) if matches!(c.to, Status::Down | Status::Left) => downs.push(c.id),
                _ => {}
            }
        }
        for id in ups {
            self.objects.peer_up(now, id, &self.membership, &mut self.out);
        }
        for id in downs {
            let mut ctx =
                functions::Ctx { objects: &mut self.objects, membership: &self.membership, out: &mut self.out };
            self.functions.peer_down(now, id, &mut ctx);
        }
    }

    /// The node is shutting down on purpose.
    pub fn handle_leave(&mut self, now: Time) {
        self.now = now;
        self.membership.handle_leave(now, &mut self.out);
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            let Some(next) = self.out.pop_front() else {
                // Merging a full state queues one event per newcomer: give that space back
                // once drained, or every node keeps its largest burst for ever (at 10,000
                // simulated nodes, 10,000 outputs each: most of the memory).
                if self.out.capacity() > OUT_KEPT {
                    self.out = VecDeque::new();
                }
                return None;
            };
            match next {
                Queued::Internal { token, reply } => {
                    let now = self.now;
                    let mut ctx =
                        functions::Ctx { objects: &mut self.objects, membership: &self.membership, out: &mut self.out };
                    self.functions.handle_object_reply(now, token, reply, &mut ctx);
                }
                Queued::Out(Output::Reply { id, reply }) if !self.host_reads.is_empty() => {
                    if let Some(exec) = self.host_reads.remove(&id)
                        && let Reply::Value { object, snapshot, .. } = &reply
                    {
                        self.functions.note_read(exec, object, &snapshot.value);
                    }
                    return Some(Output::Reply { id, reply });
                }
                Queued::Out(Output::ObjectChanged(object)) => {
                    self.note_registry(&object);
                    return Some(Output::ObjectChanged(object));
                }
                Queued::Out(other) => return Some(other),
            }
        }
    }

    /// A function's registry record may list replicas placement added next to it: the
    /// object layer counts them in the replica sets.
    fn note_registry(&mut self, object: &ObjectName) {
        if object.namespace() != functions::REGISTRY_NS {
            return;
        }
        let list = self.objects.doc(object).map(functions::registry::record::added_replicas_of).unwrap_or_default();
        self.objects.set_added_replicas(object.as_str(), list);
    }

    /// When to call [`Node::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Time {
        self.membership.poll_timeout().min(self.objects.poll_timeout()).min(self.functions.poll_timeout())
    }
}
