//! Objects benchmark: the node core's object replication and durability (`liquid_core::Node`)
//! against raw baselines measured in the same run.
//!
//! Run with `cargo bench -p node-agent --bench objects` (add `-- --json` for JSON output).
//!
//! 1. **Durable writes on one node.** A lone `Node` with a real `FileStore` in a temporary
//!    directory (real `fdatasync`), driven like the agent drives it: disk operations go, in
//!    order, to a disk thread that answers every flush (see `disk_worker` in the agent's
//!    `driver.rs`). *Unbatched*: one write at a time, each waiting for its acknowledgement
//!    (one flush per write). *Batched*: `LIQUID_BENCH_WINDOW` (64) writes outstanding, so the
//!    core groups them into shared flushes (group commit). Small single-op `inc`/`set` writes
//!    on `LIQUID_BENCH_NODE_OBJECTS` (4) objects, `LIQUID_BENCH_UNBATCHED` (2,000) and
//!    `LIQUID_BENCH_BATCHED` (20,000) writes. Baselines: the very disk operations the node
//!    emitted, replayed on a fresh `FileStore` without the node (the store's share of the
//!    time), and raw single-write appends with one sync per `WINDOW` appends (ideal group
//!    commit).
//! 2. **Two replicas converging after working apart.** Two nodes share one object; with no
//!    message passing between them each applies `LIQUID_BENCH_APART_OPS` (10,000) single-op
//!    writes (`set`, `inc`, `insert` in turn); then the link heals (a reconnection on both
//!    sides) and messages flow until quiet. Baseline: automerge's own sync protocol between
//!    two in-memory documents loaded from the nodes' saves taken just before the heal.
//! 3. **Many objects after a partition heals.** Three nodes, `LIQUID_BENCH_OBJECTS` (1,000)
//!    objects replicated on all three; node 0 is cut off from nodes 1 and 2 for 30 virtual
//!    seconds (long enough for membership to declare the other side down) while every object
//!    is written on both sides; then the links heal (reconnections) and the run goes on until
//!    the three nodes hold equal digests for every object.
//!
//! Parts 2 and 3 run whole nodes in the core's virtual-time harness (`liquid_core::testing`,
//! the cargo feature `testing`, as the core's own tests do): a fixed 1 ms latency per message,
//! in-order links, `SimStore` disks whose flushes take 1 ms. Every message is CBOR-encoded
//! with `liquid_core::wire::encode` and decoded on delivery, so byte counts are real envelope
//! sizes. Wall times are real CPU work of the nodes (encoding included, the convergence checks
//! excluded). Every part checks its result (equal documents, expected values, acknowledged
//! writes on disk after a reload) and fails instead of printing numbers of a broken run.

// A bench binary, not library code: it reads the clock and spawns a disk thread, and it has no
// public API to document.
#![allow(missing_docs)]

mod support;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use liquid_core::node::Config as NodeConfig;
use liquid_core::objects::{Change, DiskOp, Durability, Reply, Request, RequestId, actor_id};
use liquid_core::testing::{Cluster, Join, Setup, Subsystem, Traffic, Wire};
use liquid_core::{Node, NodeId, NodeInfo, Output, Tier, Time, wire};
use serde_json::{Value, json};
use state_sync::automerge::Automerge;
use state_sync::automerge::sync::{self, SyncDoc};
use state_sync::ops::Op;
use state_sync::store::{self, Store};
use state_sync::{Digest, FileStore, ObjectName};
use support::env_usize;

/// Virtual per-message latency in parts 2 and 3.
const LATENCY: Duration = Duration::from_millis(1);
/// Virtual flush duration of the simulated disks in parts 2 and 3.
const DISK: Duration = Duration::from_millis(1);
/// How long a partition lasts in part 3 (membership declares the other side down).
const PARTITION: Duration = Duration::from_secs(30);
/// No object message for this long (virtual) after convergence: quiet.
const QUIET: Duration = Duration::from_millis(100);
/// Upper bound for any virtual-time phase.
const PHASE_LIMIT: Duration = Duration::from_secs(120);

struct Settings {
    unbatched: usize,
    batched: usize,
    window: usize,
    node_objects: usize,
    apart_ops: usize,
    objects: usize,
    rounds: usize,
    json: bool,
}

impl Settings {
    fn from_env() -> Result<Self> {
        // `cargo bench` also passes `--bench`; it and any filter are ignored.
        let json = std::env::args().skip(1).any(|a| a == "--json");
        Ok(Settings {
            unbatched: env_usize("LIQUID_BENCH_UNBATCHED", 2_000)?.max(1),
            batched: env_usize("LIQUID_BENCH_BATCHED", 20_000)?.max(1),
            window: env_usize("LIQUID_BENCH_WINDOW", 64)?.max(1),
            node_objects: env_usize("LIQUID_BENCH_NODE_OBJECTS", 4)?.max(1),
            apart_ops: env_usize("LIQUID_BENCH_APART_OPS", 10_000)?.max(3),
            objects: env_usize("LIQUID_BENCH_OBJECTS", 1_000)?.max(1),
            rounds: env_usize("LIQUID_BENCH_ROUNDS", 3)?.max(1),
            json,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

fn id(k: usize) -> NodeId {
    NodeId([k as u8 + 1; 32])
}

fn info(k: usize) -> NodeInfo {
    NodeInfo {
        id: id(k),
        name: format!("n{k}"),
        tier: if k == 0 { Tier::Cloud } else { Tier::Edge },
        labels: Default::default(),
        arch: "x86_64".into(),
        cpus: 2,
        memory_mib: 1024,
        addrs: vec![],
        version: "bench".into(),
    }
}

fn new_node(k: usize, now: Time) -> Node {
    let cfg = NodeConfig { boot: 1, ..Default::default() };
    Node::new(cfg, info(k), None, k as u64, now)
}

fn obj(s: &str) -> Result<ObjectName> {
    ObjectName::parse(s).with_context(|| format!("object name {s}"))
}

fn change(json: &str) -> Result<Change> {
    Ok(Change::Ops(Op::parse_batch(json).with_context(|| format!("ops {json}"))?))
}

fn write(object: &ObjectName, change: Change) -> Request {
    Request::Write { object: object.clone(), change, durability: Durability::Local }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// Part 1: durable writes on one node, real FileStore

enum Job {
    Op(DiskOp),
    /// Ends the warm-up: counters and recorded operations start afresh.
    Mark,
}

#[derive(Clone, Copy, Debug, Default)]
struct DiskCounts {
    /// `Store::sync` calls (one per `DiskOp::Flush`).
    flushes: u64,
    /// Files `fdatasync`ed by those syncs (objects appended to since the previous one).
    files_synced: u64,
    appends: u64,
    append_bytes: u64,
    /// Compactions (each fsyncs a temporary file and the directory).
    compacts: u64,
}

struct Worked {
    counts: DiskCounts,
    warmup: Vec<DiskOp>,
    measured: Vec<DiskOp>,
}

/// Carries out storage work in order, like the agent's disk worker, and records it.
fn disk_worker(
    mut store: FileStore,
    jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<(u64, Result<(), String>)>,
) -> Result<Worked> {
    let mut counts = DiskCounts::default();
    let mut dirty: BTreeSet<ObjectName> = BTreeSet::new();
    let mut warmup = Vec::new();
    let mut recorded = Vec::new();
    while let Ok(job) = jobs.recv() {
        let op = match job {
            Job::Mark => {
                counts = DiskCounts::default();
                warmup = std::mem::take(&mut recorded);
                continue;
            }
            Job::Op(op) => op,
        };
        match &op {
            DiskOp::Append { object, bytes } => {
                store.append(object, bytes)?;
                counts.appends += 1;
                counts.append_bytes += bytes.len() as u64;
                dirty.insert(object.clone());
            }
            DiskOp::Compact { object, snapshot } => {
                store.compact(object, snapshot)?;
                counts.compacts += 1;
            }
            DiskOp::Flush { ticket } => {
                let res = store.sync().map_err(|e| e.to_string());
                counts.flushes += 1;
                counts.files_synced += dirty.len() as u64;
                dirty.clear();
                if done.send((*ticket, res)).is_err() {
                    break;
                }
            }
            other => bail!("unexpected disk operation {other:?}"),
        }
        recorded.push(op);
    }
    Ok(Worked { counts, warmup, measured: recorded })
}

/// One timed phase of writes through the node.
#[derive(Default)]
struct Drive {
    wall: Duration,
    writes: usize,
    /// Writes acknowledged by each completed flush.
    per_flush: Vec<usize>,
}

struct Driving<'a> {
    node: &'a mut Node,
    jobs: &'a mpsc::Sender<Job>,
    done: &'a mpsc::Receiver<(u64, Result<(), String>)>,
    epoch: Instant,
    next_request: u64,
}

impl Driving<'_> {
    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Carries out the node's outputs; returns how many writes were acknowledged.
    fn outputs(&mut self) -> Result<usize> {
        let mut acked = 0;
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Disk(op) => self.jobs.send(Job::Op(op)).map_err(|_| anyhow!("the disk thread stopped"))?,
                Output::Reply { reply: Reply::Value { .. }, .. } => acked += 1,
                Output::Reply { id, reply } => bail!("request {id:?} failed: {reply:?}"),
                Output::Send { to, msg } => bail!("a lone node sent {} to {to}", msg.kind()),
                _ => {}
            }
        }
        Ok(acked)
    }

    /// Submits `writes`, keeping at most `window` unacknowledged, until all are acknowledged.
    fn run(&mut self, writes: Vec<(ObjectName, Change)>, window: usize) -> Result<Drive> {
        let total = writes.len();
        let mut pending = writes.into_iter();
        let (mut outstanding, mut acked) = (0usize, 0usize);
        let mut per_flush = Vec::new();
        let start = Instant::now();
        while acked < total {
            while outstanding < window {
                let Some((object, change)) = pending.next() else { break };
                self.next_request += 1;
                let now = self.now();
                self.node.handle_request(now, RequestId(self.next_request), write(&object, change));
                outstanding += 1;
            }
            let n = self.outputs()?;
            outstanding -= n;
            acked += n;
            if acked >= total {
                break;
            }
            let (ticket, res) = self.done.recv().map_err(|_| anyhow!("the disk thread stopped"))?;
            res.map_err(|e| anyhow!("flush failed: {e}"))?;
            let now = self.now();
            self.node.handle_flushed(now, ticket, Ok(()));
            let n = self.outputs()?;
            per_flush.push(n);
            outstanding -= n;
            acked += n;
            let now = self.now();
            if self.node.poll_timeout() <= now {
                self.node.handle_timeout(now);
                let n = self.outputs()?;
                outstanding -= n;
                acked += n;
            }
        }
        Ok(Drive { wall: start.elapsed(), writes: total, per_flush })
    }
}

struct NodeRun {
    drive: Drive,
    counts: DiskCounts,
    warmup: Vec<DiskOp>,
    measured: Vec<DiskOp>,
}

/// The op of write `i` (single-op `inc`s and `set`s, round-robin over the objects).
fn node_write(names: &[ObjectName], i: usize) -> Result<(ObjectName, Change)> {
    let object = names[i % names.len()].clone();
    let json = if (i / names.len()).is_multiple_of(2) {
        r#"[{"op":"inc","path":"n"}]"#.to_string()
    } else {
        format!(r#"[{{"op":"set","path":"k{}","value":{i}}}]"#, i % 64)
    };
    Ok((object, change(&json)?))
}

/// `writes` durable writes through a lone node on a real `FileStore`, `window` outstanding.
fn node_writes(names: &[ObjectName], writes: usize, window: usize) -> Result<NodeRun> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let store = FileStore::open(dir.path().join("objects"))?;
    let (jobs_tx, jobs_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || disk_worker(store, jobs_rx, done_tx));
    let epoch = Instant::now();
    let mut node = new_node(0, Time::ZERO);
    // Prepared before timing: the JSON parsing belongs to the HTTP API, not to the core.
    let warm: Vec<(ObjectName, Change)> =
        names.iter().map(|n| Ok((n.clone(), change(r#"[{"op":"inc","path":"n","by":0}]"#)?))).collect::<Result<_>>()?;
    let measured: Vec<(ObjectName, Change)> = (0..writes).map(|i| node_write(names, i)).collect::<Result<_>>()?;
    let drive = {
        let mut d = Driving { node: &mut node, jobs: &jobs_tx, done: &done_rx, epoch, next_request: 0 };
        d.run(warm, 1)?;
        d.jobs.send(Job::Mark).map_err(|_| anyhow!("the disk thread stopped"))?;
        d.run(measured, window)?
    };
    drop(jobs_tx);
    let worked = worker.join().map_err(|_| anyhow!("the disk thread panicked"))??;
    ensure!(drive.per_flush.iter().sum::<usize>() == writes, "acknowledgements do not add up");
    check_node_writes(&node, names, writes, dir.path())?;
    Ok(NodeRun { drive, counts: worked.counts, warmup: worked.warmup, measured: worked.measured })
}

/// The node's documents hold every write, and so does the disk after a reload.
fn check_node_writes(node: &Node, names: &[ObjectName], writes: usize, dir: &Path) -> Result<()> {
    let mut incs = vec![0i64; names.len()];
    for i in 0..writes {
        if (i / names.len()).is_multiple_of(2) {
            incs[i % names.len()] += 1;
        }
    }
    let mut reopened = FileStore::open(dir.join("objects"))?;
    for (k, name) in names.iter().enumerate() {
        let doc = node.objects().doc(name).with_context(|| format!("{name} missing"))?;
        ensure!(doc.value()["n"] == json!(incs[k]), "{name}: n = {} instead of {}", doc.value()["n"], incs[k]);
        let restored =
            store::restore(&mut reopened, name, actor_id(&id(0), 2))?.with_context(|| format!("{name} not on disk"))?;
        ensure!(restored.doc.heads() == doc.heads(), "{name}: the disk does not hold every acknowledged write");
    }
    Ok(())
}

/// Carries out `ops` on a fresh `FileStore`: `warmup` untimed, then `measured` timed.
fn replay(warmup: &[DiskOp], measured: &[DiskOp]) -> Result<Duration> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut store = FileStore::open(dir.path().join("objects"))?;
    let mut run = |ops: &[DiskOp]| -> Result<()> {
        for op in ops {
            match op {
                DiskOp::Append { object, bytes } => store.append(object, bytes)?,
                DiskOp::Compact { object, snapshot } => store.compact(object, snapshot)?,
                DiskOp::Flush { .. } => store.sync()?,
                other => bail!("unexpected disk operation {other:?}"),
            }
        }
        Ok(())
    };
    run(warmup)?;
    let start = Instant::now();
    run(measured)?;
    Ok(start.elapsed())
}

/// Raw appends of the given records, one `sync` per `per_sync`, on a fresh `FileStore`.
fn raw_appends(warmup: &[DiskOp], records: &[(ObjectName, Vec<u8>)], per_sync: usize) -> Result<Duration> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut store = FileStore::open(dir.path().join("objects"))?;
    for op in warmup {
        match op {
            DiskOp::Append { object, bytes } => store.append(object, bytes)?,
            DiskOp::Compact { object, snapshot } => store.compact(object, snapshot)?,
            DiskOp::Flush { .. } => store.sync()?,
            other => bail!("unexpected disk operation {other:?}"),
        }
    }
    let start = Instant::now();
    for (i, (object, bytes)) in records.iter().enumerate() {
        store.append(object, bytes)?;
        if (i + 1) % per_sync == 0 || i + 1 == records.len() {
            store.sync()?;
        }
    }
    Ok(start.elapsed())
}

/// One round of part 1: the node and its baselines, back to back.
struct Round {
    unbatched: NodeRun,
    batched: NodeRun,
    replay_unbatched: Duration,
    replay_batched: Duration,
    raw_grouped: Duration,
}

struct Part1 {
    rounds: Vec<Round>,
    raw_records: usize,
    window: usize,
}

fn part1(s: &Settings) -> Result<Part1> {
    let names: Vec<ObjectName> = (0..s.node_objects).map(|k| obj(&format!("bench/o{k}"))).collect::<Result<_>>()?;
    let mut rounds = Vec::new();
    let mut raw_records = 0;
    for _ in 0..s.rounds {
        // fsync latency on a shared machine varies with other processes' writes: each
        // measurement runs right next to its baseline, in several rounds.
        let unbatched = node_writes(&names, s.unbatched, 1)?;
        ensure!(unbatched.drive.per_flush.iter().all(|&n| n == 1), "unbatched writes shared a flush");
        let replay_unbatched = replay(&unbatched.warmup, &unbatched.measured)?;
        let batched = node_writes(&names, s.batched, s.window)?;
        let replay_batched = replay(&batched.warmup, &batched.measured)?;
        // Ideal group commit: single-write records (what one unbatched write appends), as
        // many as the batched run has writes, `window` per sync.
        let singles: Vec<(ObjectName, Vec<u8>)> = unbatched
            .measured
            .iter()
            .filter_map(|op| match op {
                DiskOp::Append { object, bytes } => Some((object.clone(), bytes.clone())),
                _ => None,
            })
            .collect();
        ensure!(!singles.is_empty(), "the unbatched run appended nothing");
        let records: Vec<(ObjectName, Vec<u8>)> = singles.iter().cycle().take(s.batched).cloned().collect();
        raw_records = records.len();
        let raw_grouped = raw_appends(&unbatched.warmup, &records, s.window)?;
        rounds.push(Round { unbatched, batched, replay_unbatched, replay_batched, raw_grouped });
    }
    Ok(Part1 { rounds, raw_records, window: s.window })
}

// ---------------------------------------------------------------------------------------------
// Parts 2 and 3: whole nodes on virtual time with in-memory links

/// The wire format, timed: what encoding and decoding cost adds up in the shared cell.
struct TimedWire(Rc<Cell<Duration>>);

impl Wire for TimedWire {
    fn encode(&mut self, msg: &wire::Message) -> Vec<u8> {
        let t = Instant::now();
        let bytes = wire::encode(msg);
        self.0.set(self.0.get() + t.elapsed());
        bytes
    }

    fn decode(&mut self, bytes: &[u8]) -> Result<wire::Message, wire::WireError> {
        let t = Instant::now();
        let msg = wire::decode(bytes);
        self.0.set(self.0.get() + t.elapsed());
        msg
    }
}

fn traffic_json(t: &Traffic) -> Value {
    let kinds: serde_json::Map<String, Value> =
        t.by_kind.iter().map(|(k, (m, b))| ((*k).to_string(), json!({ "messages": m, "bytes": b }))).collect();
    Value::Object(kinds)
}

/// Nodes in the core's virtual-time harness ([`Cluster`]), with what the pure harness does
/// not keep: wall-clock times and the count of answered writes.
struct Net {
    h: Cluster,
    /// Wall time spent in `wire::encode`/`decode` (see [`TimedWire`]).
    codec: Rc<Cell<Duration>>,
    acked: u64,
    failed: Vec<String>,
    /// When an object message was last delivered: virtual and wall time.
    last_object_delivery: (Time, Instant),
}

impl Net {
    /// `n` nodes that all know each other (every pair connected on both sides, 3 s), with the
    /// agent's default configuration; every message then goes through the wire format.
    fn new(n: usize) -> Result<Net> {
        let setup = Setup {
            functions: Default::default(),
            latency: LATENCY,
            disk: DISK,
            join: Join::Mesh,
            settle: Duration::from_secs(3),
            ..Setup::new(n)
        };
        let mut h = Cluster::build(setup);
        for k in 0..n {
            let [alive, ..] = h.node(k).membership().counts();
            ensure!(alive == n - 1, "node {k} sees {alive} of {} peers alive after 3 s", n - 1);
        }
        let codec = Rc::new(Cell::new(Duration::ZERO));
        h.wire = Some(Box::new(TimedWire(codec.clone())));
        Ok(Net { h, codec, acked: 0, failed: Vec::new(), last_object_delivery: (Time::ZERO, Instant::now()) })
    }

    fn request(&mut self, k: usize, req: Request) {
        self.h.request(k, req);
        self.count_replies();
    }

    fn run_for(&mut self, d: Duration) {
        self.h.run_for(d);
        self.count_replies();
    }

    /// Takes the answers the nodes gave.
    fn count_replies(&mut self) {
        for ((k, id), reply) in std::mem::take(&mut self.h.replies) {
            match reply {
                Reply::Value { .. } => self.acked += 1,
                other => self.failed.push(format!("node {k} request {id}: {other:?}")),
            }
        }
    }

    /// Handles the next event or due timer, not past `end`, noting object deliveries.
    fn step(&mut self, end: Time) {
        let before = self.h.flight.delivered(Subsystem::Objects);
        self.h.step(end);
        if self.h.flight.delivered(Subsystem::Objects) != before {
            self.last_object_delivery = (self.h.now, Instant::now());
        }
    }

    /// Whether nothing about objects is in flight and none has moved for [`QUIET`].
    fn quiet(&self) -> bool {
        let f = &self.h.flight;
        f.in_flight(Subsystem::Objects) == 0 && f.flushes == 0 && self.h.now >= self.last_object_delivery.0 + QUIET
    }

    fn digests(&self, k: usize) -> Vec<(ObjectName, Digest)> {
        self.h.node(k).objects().digests().map(|(n, d)| (n.clone(), d)).collect()
    }

    /// Whether every node holds exactly `expect` objects, with the same digests.
    fn converged(&self, expect: usize) -> bool {
        let first = self.digests(0);
        first.len() == expect && (1..self.h.nodes.len()).all(|k| self.digests(k) == first)
    }

    fn ensure_no_failures(&self) -> Result<()> {
        ensure!(self.failed.is_empty(), "{} requests failed, first: {}", self.failed.len(), self.failed[0]);
        Ok(())
    }
}

/// How a healing phase went.
#[derive(Clone, Debug, Default)]
struct Heal {
    /// Virtual time from the heal to equal digests everywhere.
    virtual_converged: Duration,
    /// Virtual time from the heal to the last object message.
    virtual_quiet: Duration,
    /// Wall time of the nodes' work until equal digests (checks excluded).
    wall_converged: Duration,
    /// Wall time until the last object message was handled (checks excluded).
    wall_quiet: Duration,
    /// Wall time spent in `wire::encode`/`decode` until quiet.
    codec: Duration,
    traffic: Traffic,
}

/// Heals the cut links and runs until every node holds `expect` objects with equal digests,
/// then until quiet.
fn heal_and_converge(net: &mut Net, expect: usize) -> Result<Heal> {
    net.h.traffic = Traffic::default();
    net.codec.set(Duration::ZERO);
    let t0 = net.h.now;
    let start = Instant::now();
    let mut checks = Duration::ZERO;
    net.last_object_delivery = (t0, start);
    net.h.heal();
    let end = t0 + PHASE_LIMIT;
    let mut converged: Option<(Time, Duration)> = None;
    let mut checked_at = None;
    let mut checks_at_quiet = Duration::ZERO;
    while net.h.now < end {
        net.step(end);
        // Check once per virtual instant, after its events (digests of every object cost).
        let next = net.h.queue.keys().next().map(|k| k.0);
        if converged.is_none() && checked_at != Some(net.h.now) && next != Some(net.h.now) {
            checked_at = Some(net.h.now);
            let t = Instant::now();
            let done = net.converged(expect);
            let wall = start.elapsed().saturating_sub(checks);
            checks += t.elapsed();
            if done {
                converged = Some((net.h.now, wall));
            }
        }
        if converged.is_some() && net.quiet() {
            checks_at_quiet = checks;
            break;
        }
    }
    let Some((at, wall_converged)) = converged else {
        bail!("no convergence within {} s of virtual time", PHASE_LIMIT.as_secs());
    };
    ensure!(net.quiet(), "object messages still flowing {} s after the heal", PHASE_LIMIT.as_secs());
    let (last, last_wall) = net.last_object_delivery;
    Ok(Heal {
        virtual_converged: at.since(t0),
        virtual_quiet: last.since(t0),
        wall_converged,
        wall_quiet: last_wall.duration_since(start).saturating_sub(checks_at_quiet),
        codec: net.codec.get(),
        traffic: net.h.traffic.clone(),
    })
}

// ---- part 2 ----

struct Baseline {
    wall: Duration,
    messages: u64,
    bytes: u64,
    round_trips: u64,
}

/// Automerge's own sync between two documents in memory (fresh sync states), encoding and
/// decoding every message.
fn automerge_sync(a: &[u8], b: &[u8]) -> Result<(Baseline, Automerge)> {
    let mut a = Automerge::load(a)?;
    let mut b = Automerge::load(b)?;
    let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
    let (mut messages, mut bytes, mut round_trips) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    loop {
        ensure!(round_trips < 10_000, "automerge sync does not terminate");
        let to_b = a.generate_sync_message(&mut sa).map(sync::Message::encode);
        if let Some(m) = &to_b {
            messages += 1;
            bytes += m.len() as u64;
            b.receive_sync_message(&mut sb, sync::Message::decode(m)?)?;
        }
        let to_a = b.generate_sync_message(&mut sb).map(sync::Message::encode);
        if let Some(m) = &to_a {
            messages += 1;
            bytes += m.len() as u64;
            a.receive_sync_message(&mut sa, sync::Message::decode(m)?)?;
        }
        if to_b.is_none() && to_a.is_none() {
            break;
        }
        round_trips += 1;
    }
    let wall = start.elapsed();
    ensure!(a.get_heads() == b.get_heads(), "automerge sync ended with different heads");
    Ok((Baseline { wall, messages, bytes, round_trips }, a))
}

struct Part2 {
    ops: usize,
    apart_wall: Duration,
    apart_virtual: Duration,
    heal: Heal,
    baseline: Baseline,
    doc_bytes: usize,
    changes: usize,
    /// One `Document::read` of the merged document.
    read: Duration,
}

fn apart_op(side: usize, i: usize) -> String {
    match i % 3 {
        0 => format!(r#"[{{"op":"set","path":"k{}","value":"s{side}-{i}"}}]"#, i % 100),
        1 => r#"[{"op":"inc","path":"n"}]"#.to_string(),
        _ => format!(r#"[{{"op":"insert","path":"items","value":{i}}}]"#),
    }
}

fn part2(s: &Settings) -> Result<Part2> {
    let mut net = Net::new(2)?;
    let object = obj("bench/apart")?;
    // The shared starting point: the counter and the list exist on both sides.
    net.request(
        0,
        write(&object, change(r#"[{"op":"inc","path":"n","by":0},{"op":"set","path":"items","value":[]}]"#)?),
    );
    net.run_for(Duration::from_secs(1));
    ensure!(net.converged(1), "the object did not replicate before the split");
    // Apart: no message passes.
    let changes: Vec<[Change; 2]> =
        (0..s.apart_ops).map(|i| Ok([change(&apart_op(0, i))?, change(&apart_op(1, i))?])).collect::<Result<_>>()?;
    net.h.partition(&[0], &[1]);
    let (t0, start) = (net.h.now, Instant::now());
    for (i, pair) in changes.into_iter().enumerate() {
        for (side, c) in pair.into_iter().enumerate() {
            net.request(side, write(&object, c));
        }
        if i % 64 == 63 {
            net.run_for(DISK);
        }
    }
    net.run_for(Duration::from_millis(50));
    let (apart_wall, apart_virtual) = (start.elapsed(), net.h.now.since(t0));
    net.ensure_no_failures()?;
    ensure!(net.acked == 1 + 2 * s.apart_ops as u64, "{} writes acknowledged", net.acked);
    let save =
        |k: usize| -> Result<Vec<u8>> { Ok(net.h.node(k).objects().doc(&object).context("object missing")?.save()) };
    let (save_a, save_b) = (save(0)?, save(1)?);
    ensure!(save_a != save_b, "the replicas did not diverge");
    let heal = heal_and_converge(&mut net, 1)?;
    let doc = |k: usize| net.h.node(k).objects().doc(&object).context("object missing");
    let (a, b) = (doc(0)?, doc(1)?);
    ensure!(a.heads() == b.heads() && a.value() == b.value(), "the replicas differ after convergence");
    let v = a.value();
    let incs = 2 * ((0..s.apart_ops).filter(|i| i % 3 == 1).count() as u64);
    let inserts = 2 * ((0..s.apart_ops).filter(|i| i % 3 == 2).count());
    ensure!(v["n"] == json!(incs), "n = {} instead of {incs}", v["n"]);
    ensure!(v["items"].as_array().map(Vec::len) == Some(inserts), "the list lost inserts");
    // What every acknowledged write and every read costs on this document (`Document::read`
    // materialises the whole value).
    let t = Instant::now();
    for _ in 0..10 {
        std::hint::black_box(a.read());
    }
    let read = t.elapsed() / 10;
    let (baseline, merged) = automerge_sync(&save_a, &save_b)?;
    ensure!(merged.get_heads() == a.heads().0, "automerge's own sync reached other heads than the nodes");
    Ok(Part2 {
        ops: s.apart_ops,
        apart_wall,
        apart_virtual,
        heal,
        baseline,
        doc_bytes: a.save().len(),
        changes: merged.get_changes(&[]).len(),
        read,
    })
}

// ---- part 3 ----

struct Part3 {
    objects: usize,
    setup_wall: Duration,
    partition_wall: Duration,
    down_seen: usize,
    heal: Heal,
}

fn part3(s: &Settings) -> Result<Part3> {
    let mut net = Net::new(3)?;
    let names: Vec<ObjectName> = (0..s.objects).map(|j| obj(&format!("bench/p{j:05}"))).collect::<Result<_>>()?;
    let start = Instant::now();
    for (j, name) in names.iter().enumerate() {
        net.request(0, write(name, change(r#"[{"op":"inc","path":"n","by":0}]"#)?));
        if j % 64 == 63 {
            net.run_for(DISK);
        }
    }
    let end = net.h.now + PHASE_LIMIT;
    while !net.converged(s.objects) {
        ensure!(net.h.now < end, "the objects did not replicate to all three nodes");
        net.run_for(Duration::from_millis(10));
    }
    let setup_wall = start.elapsed();
    net.ensure_no_failures()?;
    // Node 0 on one side, nodes 1 and 2 on the other; every object written on both.
    net.h.partition(&[0], &[1, 2]);
    let start = Instant::now();
    for (j, name) in names.iter().enumerate() {
        net.request(
            0,
            write(name, change(&format!(r#"[{{"op":"set","path":"a","value":{j}}},{{"op":"inc","path":"n"}}]"#))?),
        );
        net.request(
            1 + j % 2,
            write(name, change(&format!(r#"[{{"op":"set","path":"b","value":{j}}},{{"op":"inc","path":"n"}}]"#))?),
        );
        if j % 64 == 63 {
            net.run_for(DISK);
        }
    }
    net.run_for(PARTITION);
    let partition_wall = start.elapsed();
    net.ensure_no_failures()?;
    ensure!(net.acked == 3 * s.objects as u64, "{} writes acknowledged", net.acked);
    ensure!(!net.converged(s.objects), "the sides converged through a cut link");
    let [_, _, down, _] = net.h.node(0).membership().counts();
    let heal = heal_and_converge(&mut net, s.objects)?;
    for (j, name) in names.iter().enumerate() {
        let v = net.h.node(0).objects().doc(name).context("object missing")?.value();
        ensure!(v == json!({ "n": 2, "a": j, "b": j }), "{name} = {v}");
        for k in 1..3 {
            let w = net.h.node(k).objects().doc(name).context("object missing")?.value();
            ensure!(w == v, "{name} differs on node {k}: {w} vs {v}");
        }
    }
    Ok(Part3 { objects: s.objects, setup_wall, partition_wall, down_seen: down, heal })
}

// ---------------------------------------------------------------------------------------------
// Report

fn flush_sizes(per_flush: &[usize]) -> (f64, usize, usize) {
    let n = per_flush.len().max(1);
    let mean = per_flush.iter().sum::<usize>() as f64 / n as f64;
    (mean, per_flush.iter().copied().min().unwrap_or(0), per_flush.iter().copied().max().unwrap_or(0))
}

/// Median, minimum and maximum.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let mid = if v.is_empty() { 0.0 } else { v[v.len() / 2] };
    (mid, v.first().copied().unwrap_or(0.0), v.last().copied().unwrap_or(0.0))
}

/// The per-round rates of part 1, writes per second.
struct Rates {
    node_unbatched: Vec<f64>,
    node_batched: Vec<f64>,
    raw_unbatched: Vec<f64>,
    raw_batched: Vec<f64>,
    raw_grouped: Vec<f64>,
}

impl Rates {
    fn of(p: &Part1) -> Rates {
        let r = |f: &dyn Fn(&Round) -> f64| p.rounds.iter().map(f).collect::<Vec<f64>>();
        Rates {
            node_unbatched: r(&|r| rate(r.unbatched.drive.writes, r.unbatched.drive.wall)),
            node_batched: r(&|r| rate(r.batched.drive.writes, r.batched.drive.wall)),
            raw_unbatched: r(&|r| rate(r.unbatched.drive.writes, r.replay_unbatched)),
            raw_batched: r(&|r| rate(r.batched.drive.writes, r.replay_batched)),
            raw_grouped: r(&|r| rate(p.raw_records, r.raw_grouped)),
        }
    }

    /// Per-round ratios `a / b`.
    fn ratio(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
        spread(a.iter().zip(b).map(|(a, b)| a / b.max(1e-9)).collect())
    }
}

fn print_part1(p: &Part1) {
    let Some(last) = p.rounds.last() else { return };
    let rates = Rates::of(p);
    let cell = |v: &[f64]| {
        let (m, lo, hi) = spread(v.to_vec());
        format!("{m:.0} ({lo:.0}–{hi:.0})")
    };
    let ratio = |a: &[f64], b: &[f64]| {
        let (m, lo, hi) = Rates::ratio(a, b);
        format!("{m:.2}× ({lo:.2}–{hi:.2})")
    };
    println!("\n== 1. Durable writes on one node (real FileStore, fdatasync), {} rounds ==", p.rounds.len());
    println!("writes/s: median (min–max) over the rounds; disk counts from the last round");
    println!(
        "| run | writes | writes/s | flushes (sync calls) | files fsynced | writes per flush mean (min–max) | compactions | appended KiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let u = &last.unbatched;
    let b = &last.batched;
    for (label, r, v) in [
        ("node, unbatched (1 outstanding)".to_string(), u, &rates.node_unbatched),
        (format!("node, batched ({} outstanding)", p.window), b, &rates.node_batched),
    ] {
        let (mean, lo, hi) = flush_sizes(&r.drive.per_flush);
        println!(
            "| {label} | {} | {} | {} | {} | {mean:.1} ({lo}–{hi}) | {} | {:.0} |",
            r.drive.writes,
            cell(v),
            r.counts.flushes,
            r.counts.files_synced,
            r.counts.compacts,
            kib(r.counts.append_bytes),
        );
    }
    for (label, r, v) in [
        ("raw FileStore: the unbatched run's disk ops replayed (append+sync)", u, &rates.raw_unbatched),
        ("raw FileStore: the batched run's disk ops replayed", b, &rates.raw_batched),
    ] {
        println!(
            "| {label} | {} | {} | {} | {} | – | {} | {:.0} |",
            r.drive.writes,
            cell(v),
            r.counts.flushes,
            r.counts.files_synced,
            r.counts.compacts,
            kib(r.counts.append_bytes)
        );
    }
    println!(
        "| raw FileStore: single-write appends, {} per sync (ideal group commit) | {} | {} | {} | – | {} | 0 | – |",
        p.window,
        p.raw_records,
        cell(&rates.raw_grouped),
        p.raw_records.div_ceil(p.window),
        p.window
    );
    println!("node batched / node unbatched: {}", ratio(&rates.node_batched, &rates.node_unbatched));
    println!("node unbatched / raw replay of its disk ops: {}", ratio(&rates.node_unbatched, &rates.raw_unbatched));
    println!("node batched / raw replay of its disk ops: {}", ratio(&rates.node_batched, &rates.raw_batched));
    println!(
        "node batched / raw ideal group commit ({} per sync): {}",
        p.window,
        ratio(&rates.node_batched, &rates.raw_grouped)
    );
}

fn json_part1(p: &Part1) -> Value {
    let rates = Rates::of(p);
    let run = |r: &NodeRun, v: &[f64]| {
        let (mean, lo, hi) = flush_sizes(&r.drive.per_flush);
        json!({
            "writes": r.drive.writes,
            "writes_per_s_rounds": v,
            "flushes": r.counts.flushes,
            "files_fsynced": r.counts.files_synced,
            "writes_per_flush": { "mean": mean, "min": lo, "max": hi },
            "compactions": r.counts.compacts,
            "appended_bytes": r.counts.append_bytes,
        })
    };
    let Some(last) = p.rounds.last() else { return Value::Null };
    json!({
        "window": p.window,
        "node_unbatched": run(&last.unbatched, &rates.node_unbatched),
        "node_batched": run(&last.batched, &rates.node_batched),
        "raw_replay_unbatched_writes_per_s_rounds": rates.raw_unbatched,
        "raw_replay_batched_writes_per_s_rounds": rates.raw_batched,
        "raw_grouped_appends_per_s_rounds": rates.raw_grouped,
        "ratio_batched_over_unbatched_median": Rates::ratio(&rates.node_batched, &rates.node_unbatched).0,
        "ratio_node_over_raw_unbatched_median": Rates::ratio(&rates.node_unbatched, &rates.raw_unbatched).0,
        "ratio_node_over_raw_batched_median": Rates::ratio(&rates.node_batched, &rates.raw_batched).0,
    })
}

fn print_traffic(t: &Traffic) {
    println!("| kind | messages | bytes |");
    println!("|---|---|---|");
    for (kind, (m, b)) in &t.by_kind {
        println!("| {kind} | {m} | {b} |");
    }
    let (m, b) = t.total(false);
    println!("| total | {m} | {b} |");
}

fn print_part2(p: &Part2) {
    let h = &p.heal;
    let (om, ob) = h.traffic.total(true);
    let b = &p.baseline;
    println!("\n== 2. Two replicas that each made {} operations apart, converging ==", p.ops);
    println!(
        "apart phase (setup, not the measurement): {} writes per node in {:.2} s wall, {:.0} ms virtual ({:.0} writes/s per node, acknowledgements included)",
        p.ops,
        secs(p.apart_wall),
        ms(p.apart_virtual),
        rate(2 * p.ops, p.apart_wall) / 2.0,
    );
    println!("| | nodes (liquid_core) | automerge sync in memory | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| wall time to equal documents (ms) | {:.1} | {:.1} | {:.2}× |",
        ms(h.wall_converged),
        ms(b.wall),
        ms(h.wall_converged) / ms(b.wall).max(1e-6)
    );
    println!(
        "| wall time until quiet (ms) | {:.1} | {:.1} | {:.2}× |",
        ms(h.wall_quiet),
        ms(b.wall),
        ms(h.wall_quiet) / ms(b.wall).max(1e-6)
    );
    println!(
        "| bytes (object messages, encoded envelopes / sync messages) | {ob} | {} | {:.2}× |",
        b.bytes,
        ob as f64 / b.bytes.max(1) as f64
    );
    println!("| messages (object) | {om} | {} | |", b.messages);
    println!("| round trips | | {} | |", b.round_trips);
    println!(
        "| virtual time to equal / quiet ({} ms per message) | {:.0} / {:.0} ms | | |",
        LATENCY.as_millis(),
        ms(h.virtual_converged),
        ms(h.virtual_quiet)
    );
    println!(
        "wire encode+decode: {:.1} ms of the nodes' wall time; largest message {} B; merged document: {} changes, save {} B",
        ms(h.codec),
        h.traffic.largest,
        p.changes,
        p.doc_bytes
    );
    println!("one Document::read of the merged document (done for every acknowledged write): {:.2} ms", ms(p.read));
    print_traffic(&h.traffic);
}

fn json_heal(h: &Heal) -> Value {
    json!({
        "virtual_to_equal_ms": ms(h.virtual_converged),
        "virtual_to_quiet_ms": ms(h.virtual_quiet),
        "wall_to_equal_ms": ms(h.wall_converged),
        "wall_to_quiet_ms": ms(h.wall_quiet),
        "wire_codec_ms": ms(h.codec),
        "largest_message_bytes": h.traffic.largest,
        "traffic": traffic_json(&h.traffic),
    })
}

fn json_part2(p: &Part2) -> Value {
    let (om, ob) = p.heal.traffic.total(true);
    json!({
        "ops_per_side": p.ops,
        "apart_wall_s": secs(p.apart_wall),
        "nodes": json_heal(&p.heal),
        "nodes_object_messages": om,
        "nodes_object_bytes": ob,
        "automerge": {
            "wall_ms": ms(p.baseline.wall),
            "messages": p.baseline.messages,
            "bytes": p.baseline.bytes,
            "round_trips": p.baseline.round_trips,
        },
        "ratio_wall_equal": ms(p.heal.wall_converged) / ms(p.baseline.wall).max(1e-6),
        "ratio_bytes": ob as f64 / p.baseline.bytes.max(1) as f64,
        "changes": p.changes,
        "document_save_bytes": p.doc_bytes,
        "document_read_ms": ms(p.read),
    })
}

fn print_part3(p: &Part3) {
    let h = &p.heal;
    let (om, ob) = h.traffic.total(true);
    println!("\n== 3. {} objects after a partition heals (3 nodes, node 0 | nodes 1, 2) ==", p.objects);
    println!(
        "setup: {} objects created and replicated in {:.2} s wall; partition writes + {} s apart in {:.2} s wall; node 0 saw {} peers down",
        p.objects,
        secs(p.setup_wall),
        PARTITION.as_secs(),
        secs(p.partition_wall),
        p.down_seen
    );
    println!(
        "virtual time to equal digests everywhere: {:.0} ms (quiet after {:.0} ms; {} ms per message)",
        ms(h.virtual_converged),
        ms(h.virtual_quiet),
        LATENCY.as_millis()
    );
    println!(
        "wall time: {:.1} ms to equal digests, {:.1} ms to quiet (wire encode+decode {:.1} ms)",
        ms(h.wall_converged),
        ms(h.wall_quiet),
        ms(h.codec)
    );
    println!(
        "object messages: {om}, {:.1} KiB ({:.0} B per object); largest message {} B",
        kib(ob),
        ob as f64 / p.objects as f64,
        h.traffic.largest
    );
    print_traffic(&h.traffic);
}

fn json_part3(p: &Part3) -> Value {
    json!({
        "objects": p.objects,
        "setup_wall_s": secs(p.setup_wall),
        "partition_s": PARTITION.as_secs(),
        "heal": json_heal(&p.heal),
    })
}

fn main() -> Result<()> {
    let s = Settings::from_env()?;
    let p1 = part1(&s).context("part 1 (durable writes)")?;
    let p2 = part2(&s).context("part 2 (two replicas apart)")?;
    let p3 = part3(&s).context("part 3 (partition heal)")?;
    if s.json {
        let out = json!({
            "durable_writes": json_part1(&p1),
            "two_replicas_apart": json_part2(&p2),
            "partition_heal": json_part3(&p3),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_part1(&p1);
        print_part2(&p2);
        print_part3(&p3);
    }
    Ok(())
}
