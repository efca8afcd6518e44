//! The real driver: runs the pure core on tokio, feeding it mesh events, timers and API
//! requests, and carrying out its outputs. Everything it decides is in the core; this loop
//! only translates.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use liquid_core::membership::Persisted;
use liquid_core::objects::{self, DiskOp, Reply, RequestId};
use liquid_core::{Node, NodeId, Output, Time};
use mesh::{Event, Mesh};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use state_sync::store::Store;
use state_sync::{FileStore, ObjectName};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::daemon::executor::{Executor, FnMetrics};
use crate::daemon::inbox::{DriverMsg, InvokeReply};
use crate::views::{MemberJson, StatusJson};
use liquid_core::functions::{ExecId, Executed, InvokeId};
use std::sync::Arc;

/// The driver's own metrics.
#[derive(Clone, Default)]
pub struct DriverMetrics {
    members: Family<Vec<(String, String)>, Gauge>,
    changes: Family<Vec<(String, String)>, Counter>,
    objects_held: Gauge,
    objects_damaged: Gauge,
    object_log_bytes: Gauge,
    cache_documents: Gauge,
    cache_bytes: Gauge,
    evictions: Counter,
    loads: Counter,
    logs_damaged: Counter,
    replicas_behind: Gauge,
    sync_messages: Family<Vec<(String, String)>, Counter>,
    sync_bytes: Family<Vec<(String, String)>, Counter>,
    writes: Family<Vec<(String, String)>, Counter>,
    flushes: Counter,
    seen: objects::Stats,
}

impl DriverMetrics {
    /// Registers the metrics.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("liquid");
        r.register("members", "Members in this node's view, by status (this node included)", self.members.clone());
        r.register("member_changes", "Status changes in this node's view, by new status", self.changes.clone());
        r.register("objects_held", "Objects this node holds (replicas and follower copies)", self.objects_held.clone());
        r.register(
            "objects_damaged",
            "Objects whose log was damaged and that lack changes until a replica sends them back (reads refused)",
            self.objects_damaged.clone(),
        );
        r.register(
            "object_cache_documents",
            "Object documents in memory (the others are on disk only, read back when needed)",
            self.cache_documents.clone(),
        );
        r.register(
            "object_cache_bytes",
            "Estimated memory of the object documents in memory (--object-cache bounds it)",
            self.cache_bytes.clone(),
        );
        r.register("object_evictions", "Object documents dropped from memory (kept on disk)", self.evictions.clone());
        r.register("object_loads", "Object documents read back from disk", self.loads.clone());
        r.register(
            "object_log_bytes",
            "Bytes of object logs on this node, as written (what --storage-max budgets)",
            self.object_log_bytes.clone(),
        );
        r.register(
            "object_logs_corrupt",
            "Object logs found damaged at start (bad bytes with intact records after them; kept as *.corrupt-*)",
            self.logs_damaged.clone(),
        );
        r.register(
            "object_replicas_behind",
            "Replica-set members whose last known heads differ from this node's, summed over objects",
            self.replicas_behind.clone(),
        );
        r.register("object_sync_messages", "Object sync messages, by direction", self.sync_messages.clone());
        r.register("object_sync_bytes", "Bytes of object sync messages, by direction", self.sync_bytes.clone());
        r.register("object_writes", "Object writes answered, by outcome", self.writes.clone());
        r.register("object_flushes", "Group commits of object changes to disk", self.flushes.clone());
    }

    /// Counts object logs found damaged when the store was loaded.
    pub fn count_damaged_logs(&self, n: u64) {
        self.logs_damaged.inc_by(n);
    }

    /// Brings the object metrics up to date with the core's counters.
    fn observe_objects(&mut self, o: &objects::Objects) {
        let s = o.stats().clone();
        let label = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let d = |now: u64, before: u64| now.saturating_sub(before);
        self.sync_messages.get_or_create(&label("direction", "sent")).inc_by(d(s.sync_sent, self.seen.sync_sent));
        self.sync_messages
            .get_or_create(&label("direction", "received"))
            .inc_by(d(s.sync_received, self.seen.sync_received));
        self.sync_bytes
            .get_or_create(&label("direction", "sent"))
            .inc_by(d(s.sync_bytes_sent, self.seen.sync_bytes_sent));
        self.sync_bytes
            .get_or_create(&label("direction", "received"))
            .inc_by(d(s.sync_bytes_received, self.seen.sync_bytes_received));
        self.writes.get_or_create(&label("outcome", "acked")).inc_by(d(s.writes_acked, self.seen.writes_acked));
        self.writes.get_or_create(&label("outcome", "failed")).inc_by(d(s.writes_failed, self.seen.writes_failed));
        self.flushes.inc_by(d(s.flushes, self.seen.flushes));
        self.evictions.inc_by(d(s.evictions, self.seen.evictions));
        self.loads.inc_by(d(s.loads, self.seen.loads));
        let (documents, bytes) = o.in_memory();
        self.cache_documents.set(i64::try_from(documents).unwrap_or(i64::MAX));
        self.cache_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.objects_held.set(i64::try_from(o.held()).unwrap_or(i64::MAX));
        self.objects_damaged.set(i64::try_from(o.damaged().count()).unwrap_or(i64::MAX));
        self.object_log_bytes.set(i64::try_from(o.log_bytes()).unwrap_or(i64::MAX));
        self.replicas_behind.set(i64::try_from(o.replicas_behind()).unwrap_or(i64::MAX));
        self.seen = s;
    }
}

/// Carries out storage work in order on its own thread, so an fsync never stalls the loop.
/// Answers every flush with its ticket and outcome; an append that failed fails the next
/// flush (its changes' durability is unknown).
pub fn disk_worker(
    mut store: FileStore,
    actor: state_sync::automerge::ActorId,
    ops: std::sync::mpsc::Receiver<DiskOp>,
    done: mpsc::UnboundedSender<DiskDone>,
) {
    let mut failed: Option<String> = None;
    while let Ok(op) = ops.recv() {
        let res = match op {
            DiskOp::Append { object, bytes } => store.append(&object, &bytes),
            DiskOp::Compact { object, snapshot } => store.compact(&object, &snapshot),
            DiskOp::Flush { ticket } => {
                let result = match failed.take() {
                    Some(e) => Err(e),
                    None => store.sync().map_err(|e| e.to_string()),
                };
                if done.send(DiskDone::Flushed { ticket, result }).is_err() {
                    return;
                }
                continue;
            }
            DiskOp::Load { object } => {
                let result = load(&mut store, &object, actor.clone());
                if done.send(DiskDone::Loaded { object, result: Box::new(result) }).is_err() {
                    return;
                }
                continue;
            }
            _ => Ok(()),
        };
        if let Err(e) = res {
            warn!(error = %e, "object store write failed; the writes it covers will not be acknowledged");
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// What the disk thread finished.
pub enum DiskDone {
    /// A [`DiskOp::Flush`].
    Flushed {
        /// Its ticket.
        ticket: u64,
        /// Its outcome.
        result: Result<(), String>,
    },
    /// A [`DiskOp::Load`].
    Loaded {
        /// The object read.
        object: ObjectName,
        /// Its document, `None` if its log is gone (boxed: a document is large next to a
        /// flush's outcome).
        result: Box<Result<Option<objects::Loaded>, String>>,
    },
}

/// Reads a cold object back, reporting damage found on the way like a restore at start.
fn load(
    store: &mut FileStore,
    object: &ObjectName,
    actor: state_sync::automerge::ActorId,
) -> Result<Option<objects::Loaded>, String> {
    let Some(r) = state_sync::store::restore(store, object, actor).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let damaged = r.incomplete().then(|| match &r.damage {
        Some(d) => d.kept.display().to_string(),
        None => store.kept(object).ok().and_then(|k| k.last().map(|p| p.display().to_string())).unwrap_or_default(),
    });
    let log = store.stats(object).unwrap_or_default();
    Ok(Some(objects::Loaded { doc: r.doc, log, damaged }))
}

/// Everything the loop needs.
pub struct Driver {
    /// The core.
    node: Node,
    /// The transport.
    mesh: Mesh,
    /// Transport events.
    events: mpsc::Receiver<Event>,
    /// Events that arrived before the core existed.
    early: Vec<Event>,
    /// The inbox: API questions, executor completions, guest host calls.
    inbox: mpsc::Receiver<DriverMsg>,
    /// The core's epoch.
    epoch: Instant,
    /// Where the membership memory is persisted.
    state_file: PathBuf,
    /// Addresses actually listened on.
    listen_addrs: Vec<String>,
    /// Metrics.
    metrics: DriverMetrics,
    /// Storage work, to the disk worker.
    disk: std::sync::mpsc::Sender<DiskOp>,
    /// Flush completions, from the disk worker.
    flushed: mpsc::UnboundedReceiver<DiskDone>,
    /// Object changes, for watchers.
    changes: broadcast::Sender<ObjectName>,
    /// Replies the core owes, by request id.
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// The next request id.
    next_request: u64,
    /// Peers whose messages are dropped both ways (fault injection, `--dev` only).
    blocked: std::collections::BTreeSet<NodeId>,
    /// Runs functions.
    executor: Arc<Executor>,
    /// Finished executions, from the executor.
    executed: mpsc::UnboundedReceiver<(ExecId, Executed)>,
    /// Invocations the core owes an outcome, by id, with when they started.
    invokes: HashMap<u64, (InvokeReply, Instant)>,
    /// Function metrics.
    fn_metrics: FnMetrics,
}

/// What the driver runs besides the core: the transport, the executor, where the
/// membership memory goes, and the metrics.
pub struct Parts {
    /// The transport.
    pub mesh: Mesh,
    /// Addresses the mesh actually listens on.
    pub listen_addrs: Vec<String>,
    /// Runs functions.
    pub executor: Arc<Executor>,
    /// Where the membership memory is persisted.
    pub state_file: PathBuf,
    /// The driver's metrics.
    pub metrics: DriverMetrics,
    /// Function metrics.
    pub fn_metrics: FnMetrics,
}

/// The channels the driver loop reads and writes.
pub struct Channels {
    /// Transport events.
    pub events: mpsc::Receiver<Event>,
    /// Events that arrived before the core existed.
    pub early: Vec<Event>,
    /// The inbox: API questions, executor completions, guest host calls.
    pub inbox: mpsc::Receiver<DriverMsg>,
    /// Storage work, to the disk worker.
    pub disk: std::sync::mpsc::Sender<DiskOp>,
    /// Flush completions, from the disk worker.
    pub flushed: mpsc::UnboundedReceiver<DiskDone>,
    /// Finished executions, from the executor.
    pub executed: mpsc::UnboundedReceiver<(ExecId, Executed)>,
    /// Object changes, for watchers.
    pub changes: broadcast::Sender<ObjectName>,
}

impl Driver {
    /// A driver for `node`, whose clock started at `epoch`. It owes no replies yet and blocks
    /// no peer.
    pub fn new(node: Node, epoch: Instant, parts: Parts, channels: Channels) -> Driver {
        let Parts { mesh, listen_addrs, executor, state_file, metrics, fn_metrics } = parts;
        let Channels { events, early, inbox, disk, flushed, executed, changes } = channels;
        Driver {
            node,
            mesh,
            events,
            early,
            inbox,
            epoch,
            state_file,
            listen_addrs,
            metrics,
            disk,
            flushed,
            changes,
            pending: HashMap::new(),
            next_request: 0,
            blocked: std::collections::BTreeSet::new(),
            executor,
            executed,
            invokes: HashMap::new(),
            fn_metrics,
        }
    }
}

impl Driver {
    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Runs until `shutdown` fires, then leaves the mesh gracefully.
    pub async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
        let (persist_tx, persist_rx) = mpsc::unbounded_channel();
        let persister = tokio::spawn(persist_loop(self.state_file.clone(), persist_rx));
        for ev in std::mem::take(&mut self.early) {
            self.on_event(ev);
        }
        self.flush(&persist_tx);
        let mut gauges = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            let wake = self.epoch + std::time::Duration::from_micros(self.node.poll_timeout().as_micros());
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                }
                ev = self.events.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => break,
                },
                Some(msg) = self.inbox.recv() => self.on_msg(msg),
                Some((id, done)) = self.executed.recv() => {
                    let now = self.now();
                    self.node.handle_executed(now, id, done);
                }
                Some(done) = self.flushed.recv() => {
                    let now = self.now();
                    match done {
                        DiskDone::Flushed { ticket, result } => self.node.handle_flushed(now, ticket, result),
                        DiskDone::Loaded { object, result } => self.node.handle_loaded(now, &object, *result),
                    }
                }
                _ = gauges.tick() => self.metrics.observe_objects(self.node.objects()),
                _ = &mut shutdown => {
                    info!("leaving the mesh");
                    let now = self.now();
                    self.node.handle_leave(now);
                    self.flush(&persist_tx);
                    // Give the farewells a moment to leave before closing connections.
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    self.mesh.shutdown().await;
                    break;
                }
            }
            self.flush(&persist_tx);
        }
        drop(persist_tx);
        let _ = persister.await;
    }

    fn on_event(&mut self, ev: Event) {
        let now = self.now();
        match ev {
            Event::Listening(addr) => {
                let addr = addr.to_string();
                if !self.listen_addrs.contains(&addr) {
                    self.listen_addrs.push(addr);
                }
            }
            Event::Authenticated(peer) => match mesh::node_id(&peer) {
                Some(id) => self.node.handle_connected(now, id),
                None => warn!(%peer, "peer id is not an Ed25519 key: ignored"),
            },
            Event::Message { from, msg } => match mesh::node_id(&from) {
                Some(id) if self.blocked.contains(&id) => {}
                Some(id) => self.node.handle_message(now, id, msg),
                None => warn!(%from, "message from a non-Ed25519 peer id: ignored"),
            },
            Event::Request { from, msg, reply } => {
                // No request kinds exist yet; dropping the reply fails the call at the caller.
                debug!(%from, kind = msg.kind(), "no handler for this request");
                drop(reply);
            }
            Event::Bulk { from, stream } => self.executor.serve_bulk(from, stream),
            Event::Disconnected(peer) => {
                debug!(%peer, "disconnected");
                if let Some(id) = mesh::node_id(&peer) {
                    self.node.handle_disconnected(now, id);
                }
            }
            _ => {}
        }
    }

    fn flush(&mut self, persist: &mpsc::UnboundedSender<Persisted>) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Send { to, .. } if self.blocked.contains(&to) => {}
                Output::Send { to, msg } => {
                    let Some(peer) = mesh::peer_id(&to) else { continue };
                    let addrs = self
                        .node
                        .membership()
                        .addrs_of(&to)
                        .map(|a| a.iter().filter_map(|s| s.parse().ok()).collect())
                        .unwrap_or_default();
                    self.mesh.send(peer, addrs, &msg);
                }
                Output::Persist(p) => {
                    let _ = persist.send(p);
                }
                Output::Event(change) => {
                    let name = self.name_of(&change.id);
                    info!(member = %name, id = %change.id, from = ?change.from, to = ?change.to, "member status changed");
                    self.metrics.changes.get_or_create(&vec![("status".into(), change.to.as_str().into())]).inc();
                }
                Output::Disk(op) => {
                    let sent = self.disk.send(op);
                    if sent.is_err() {
                        warn!("the disk worker stopped: object writes cannot be made durable");
                    }
                }
                Output::Reply { id, reply } => {
                    if let Some(tx) = self.pending.remove(&id.0) {
                        let _ = tx.send(reply);
                    }
                }
                Output::ObjectChanged(name) => {
                    // Nobody watching is fine.
                    let _ = self.changes.send(name);
                }
                Output::Execute(exec) => self.executor.spawn(*exec),
                Output::Prefetch(p) => self.executor.prefetch(*p),
                Output::Handoff(h) => self.executor.handoff(*h),
                Output::Deactivate { name, epoch } => self.executor.deactivate(&name, epoch),
                Output::Migration(e) => {
                    let peer = e.peer.map(|p| self.name_of(&p)).unwrap_or_default();
                    info!(actor = %e.name, event = e.what, peer = %peer, epoch = e.epoch, reason = %e.reason, "migration");
                    self.fn_metrics.migrations.get_or_create(&vec![("event".into(), e.what.into())]).inc();
                }
                Output::Invoked { id, result } => {
                    if let Some((tx, started)) = self.invokes.remove(&id.0) {
                        let outcome = match &result {
                            Ok(_) => "ok",
                            Err(e) => e.kind(),
                        };
                        self.fn_metrics.invocations.get_or_create(&vec![("outcome".into(), outcome.into())]).inc();
                        self.fn_metrics.latency.observe(started.elapsed().as_secs_f64());
                        let _ = tx.send(result);
                    }
                }
                _ => {}
            }
        }
        let counts = self.node.membership().counts();
        for (status, n) in [("alive", counts[0] + 1), ("suspect", counts[1]), ("down", counts[2] + counts[3])] {
            self.metrics.members.get_or_create(&vec![("status".into(), status.into())]).set(n as i64);
        }
    }

    fn name_of(&self, id: &NodeId) -> String {
        let now = self.now();
        self.node.membership().members(now).find(|m| m.info.id == *id).map(|m| m.info.name.clone()).unwrap_or_default()
    }

    fn on_msg(&mut self, msg: DriverMsg) {
        let now = self.now();
        match msg {
            DriverMsg::Status(tx) => {
                let m = self.node.membership();
                let me = m.me();
                let c = m.counts();
                let _ = tx.send(StatusJson {
                    id: me.id.to_string(),
                    name: me.name.clone(),
                    tier: me.tier.as_str().to_string(),
                    labels: me.labels.clone(),
                    arch: me.arch.clone(),
                    version: me.version.clone(),
                    incarnation: m.incarnation(),
                    listen_addrs: self.listen_addrs.clone(),
                    uptime_s: self.epoch.elapsed().as_secs_f64(),
                    peers: crate::views::PeerCounts {
                        alive: c[0],
                        suspect: c[1],
                        down: c[2] + c[3],
                        total: c.iter().sum(),
                    },
                    damaged_objects: self
                        .node
                        .objects()
                        .damaged()
                        .map(|(o, kept)| crate::views::DamagedJson { object: o.to_string(), kept: kept.to_string() })
                        .collect(),
                });
            }
            DriverMsg::Nodes(tx) => {
                let list = self.node.membership().members(now).map(|m| MemberJson::from_view(&m, now)).collect();
                let _ = tx.send(list);
            }
            DriverMsg::Block(peers, tx) => {
                let now_blocked: std::collections::BTreeSet<NodeId> = peers.into_iter().collect();
                let healed: Vec<NodeId> = self.blocked.difference(&now_blocked).copied().collect();
                self.blocked = now_blocked;
                info!(blocked = self.blocked.len(), healed = healed.len(), "fault injection: blocked peers changed");
                // Healing is a reconnection for the core: sessions restart, digests are compared.
                for peer in healed {
                    self.node.handle_connected(now, peer);
                }
                let _ = tx.send(self.blocked.iter().copied().collect());
            }
            DriverMsg::Object(req, tx) => {
                self.next_request += 1;
                let id = self.next_request;
                self.pending.insert(id, tx);
                self.node.handle_request(now, RequestId(id), req);
            }
            DriverMsg::HostObject(exec, req, tx) => {
                self.next_request += 1;
                let id = self.next_request;
                self.pending.insert(id, tx);
                self.node.handle_host_request(now, exec, RequestId(id), req);
            }
            DriverMsg::Invoke { name, input, depth, reply } => {
                self.next_request += 1;
                let id = self.next_request;
                self.invokes.insert(id, (reply, Instant::now()));
                self.node.handle_invoke(now, InvokeId(id), name, input, depth);
            }
            DriverMsg::Deploy(entry, tx) => match self.node.deploy_request(now, &entry) {
                Ok(write) => {
                    self.next_request += 1;
                    let id = self.next_request;
                    self.pending.insert(id, tx);
                    self.node.handle_request(now, RequestId(id), write);
                }
                Err(message) => {
                    let _ = tx.send(Reply::Error(objects::ObjectError::Invalid { message }));
                }
            },
            DriverMsg::Functions(tx) => {
                let m = self.node.membership();
                let now_s = liquid_core::functions::secs(now);
                let list = liquid_core::functions::registry(self.node.objects())
                    .into_iter()
                    .map(|(name, reg)| {
                        let mut f = crate::views::FunctionJson::new(&name, reg, m, now);
                        f.facts_here =
                            self.node.functions().facts(&name).map(|x| crate::views::FactsJson::new(x, now_s));
                        f.activation_here = self.node.functions().activation(now, &name);
                        f.decision_here = self.node.functions().decision(&name).cloned();
                        f
                    })
                    .collect();
                let _ = tx.send(list);
            }
            DriverMsg::Logs(name, tx) => {
                let _ = tx.send(self.executor.logs(&name));
            }
            DriverMsg::Prefetched { name, result } => self.node.handle_prefetched(now, &name, result),
            DriverMsg::HandoffSent { name, epoch, result } => self.node.handle_handoff_sent(now, &name, epoch, result),
            DriverMsg::ReplicaStored { name, pos, reply } => {
                let _ = reply.send(self.node.handle_replica_stored(now, &name, pos));
            }
            DriverMsg::SnapshotReceived { from, name, epoch } => {
                self.node.handle_snapshot_received(now, from, &name, epoch)
            }
            DriverMsg::Migrate { name, to, reply } => {
                let _ =
                    reply.send(self.node.handle_migrate(now, &name, to, "moved by hand (liquid fn migrate)".into()));
            }
            DriverMsg::SetPlacement { name, change, reply } => {
                match liquid_core::functions::registry::placement_change(self.node.objects(), &name, &change) {
                    Ok(write) => {
                        self.next_request += 1;
                        let id = self.next_request;
                        let (tx, rx) = oneshot::channel();
                        self.pending.insert(id, tx);
                        self.node.handle_request(now, RequestId(id), write);
                        tokio::spawn(async move {
                            let r = match rx.await {
                                Ok(Reply::Value { .. }) => Ok(()),
                                Ok(Reply::Error(e)) => Err(e.to_string()),
                                Ok(_) => Err("unexpected answer".to_string()),
                                Err(_) => Err("the agent is shutting down".to_string()),
                            };
                            let _ = reply.send(r);
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }
}

/// Writes the membership memory, one write at a time so an older one never lands last.
async fn persist_loop(path: PathBuf, mut rx: mpsc::UnboundedReceiver<Persisted>) {
    while let Some(mut p) = rx.recv().await {
        while let Ok(newer) = rx.try_recv() {
            p = newer;
        }
        let path = path.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::new();
            encode_persisted(&p, &mut bytes)?;
            mesh::identity::write_private(&path, &bytes)
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "could not persist the membership state"),
            Err(e) => warn!(error = %e, "persist task failed"),
        }
    }
}

fn encode_persisted(p: &Persisted, out: &mut Vec<u8>) -> std::io::Result<()> {
    serde_json::to_writer(out, p).map_err(std::io::Error::other)
}

/// Reads what a previous life persisted; a missing or damaged file means a fresh start.
pub fn load_persisted(path: &std::path::Path) -> Option<Persisted> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(p) => Some(p),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "ignoring a damaged membership state file");
            None
        }
    }
}
