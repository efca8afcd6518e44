//! Carries out the core's [`Execution`]s: makes sure the module is here (fetching it by hash
//! over the mesh's bulk stream from a node that holds it, and checking the hash), loads the
//! compiled artifact (or compiles once and caches it), and runs the call on a blocking
//! thread with the manifest's limits. Host calls from the guest (objects, nested calls) go
//! back to the core through the driver's inbox, blocking only the guest's thread.
//!
//! Actors keep one live instance per node, checkpointed durably after every call
//! ([`crate::daemon::checkpoint`]); a migration streams the newest checkpoint over the bulk stream.
//!
//! Also serves module fetches and incoming actor snapshots from peers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use liquid_core::NodeId;
use liquid_core::functions::{ActorRun, ExecId, Executed, Execution, Handoff, Prefetch};
use wasm_host::Manifest;
use wasm_host::abi::{self, AbiError, Level, ObjCall};
use wasm_host::runtime::{Actor, Host, Invocation};
use wasm_host::store::{ModuleStore, Source};
use wasm_host::{InvokeError, Kind, ModuleHash};

use crate::daemon::checkpoint::{Checkpoints, restore_files};

mod replica;
use mesh::Mesh;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::Value as Json;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::daemon::inbox::DriverMsg;
use crate::views::LogLine;

/// The first byte of a bulk stream: what the opener wants.
const BULK_MODULE: u8 = 1;
/// An actor snapshot pushed by a migration's source.
const BULK_SNAPSHOT: u8 = 2;
/// The largest snapshot accepted, bytes (compressed).
const SNAPSHOT_MAX: u64 = 8 << 30;
/// How long a snapshot transfer may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Answer status bytes.
const BULK_OK: u8 = 0;
const BULK_MISSING: u8 = 1;
/// How long one source may take to deliver a module.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a call waits for a free instance of its function before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// Log lines kept per function.
const LOG_LINES: usize = 500;
/// Lines per second, per function, that reach the agent's own log (bursts of twice as many);
/// the rest stay in the function's log (`liquid fn logs`) and are counted.
const AGENT_LOG_LINES_PER_SEC: f64 = 20.0;
/// The most instances of one function that run at once on a node, whatever its
/// `limits.instances`: a fair share of the executor's threads, so one function's calls cannot
/// starve another's (issue 17). Tokio's blocking pool has 512 threads.
pub const INSTANCES_FAIR_SHARE: usize = 64;

/// Function metrics.
#[derive(Clone)]
pub struct FnMetrics {
    /// Invocations answered to local callers, by outcome.
    pub invocations: Family<Vec<(String, String)>, Counter>,
    /// Latency of invocations from the API, seconds.
    pub latency: Histogram,
    /// Executions that had to load or compile the module, by source.
    pub cold_starts: Family<Vec<(String, String)>, Counter>,
    /// Fuel used by executions here.
    pub fuel: Counter,
    /// Modules fetched from peers.
    pub fetches: Family<Vec<(String, String)>, Counter>,
    /// Actor checkpoints written, and their total bytes.
    pub checkpoints: Counter,
    /// Bytes of actor checkpoints written.
    pub checkpoint_bytes: Counter,
    /// Standby copies of actor checkpoints sent from this node, by outcome.
    pub replica_copies: Family<Vec<(String, String)>, Counter>,
    /// Bytes of standby copies sent.
    pub replica_bytes: Counter,
    /// Checkpoints that were full snapshots (new bases), not deltas.
    pub checkpoint_bases: Counter,
    /// Memory pages carried by delta checkpoints.
    pub checkpoint_pages: Counter,
    /// Actor snapshots sent and received in migrations, by direction and outcome.
    pub snapshots: Family<Vec<(String, String)>, Counter>,
    /// Bytes of actor snapshots moved in migrations, by direction.
    pub snapshot_bytes: Family<Vec<(String, String)>, Counter>,
    /// Migration events on this node (started, finished, rolled_back, activated, fenced,
    /// refused).
    pub migrations: Family<Vec<(String, String)>, Counter>,
    /// Guest log lines dropped, by function and reason (`call_budget`: past a call's budget,
    /// gone; `agent_log_rate`: kept out of the agent's log, still in the function's log).
    pub log_lines_dropped: Family<Vec<(String, String)>, Counter>,
}

impl Default for FnMetrics {
    fn default() -> Self {
        FnMetrics {
            invocations: Family::default(),
            latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 20)),
            cold_starts: Family::default(),
            fuel: Counter::default(),
            fetches: Family::default(),
            checkpoints: Counter::default(),
            checkpoint_bytes: Counter::default(),
            checkpoint_bases: Counter::default(),
            checkpoint_pages: Counter::default(),
            replica_copies: Family::default(),
            replica_bytes: Counter::default(),
            snapshots: Family::default(),
            snapshot_bytes: Family::default(),
            migrations: Family::default(),
            log_lines_dropped: Family::default(),
        }
    }
}

impl FnMetrics {
    /// Registers the metrics.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("liquid");
        r.register("invocations", "Invocations entering at this node, by outcome", self.invocations.clone());
        r.register(
            "invocation_latency_seconds",
            "Latency of invocations entering at this node (API), routing included",
            self.latency.clone(),
        );
        r.register(
            "function_cold_starts",
            "Executions that loaded a compiled artifact from disk or compiled the module",
            self.cold_starts.clone(),
        );
        r.register("function_fuel", "Fuel used by executions on this node", self.fuel.clone());
        r.register("module_fetches", "Module fetches from peers, by outcome", self.fetches.clone());
        r.register("actor_checkpoints", "Actor checkpoints written (one per call)", self.checkpoints.clone());
        r.register("actor_checkpoint_bytes", "Bytes of actor checkpoints written", self.checkpoint_bytes.clone());
        r.register(
            "actor_checkpoint_bases",
            "Actor checkpoints that were full snapshots (a new base) rather than deltas of the pages a call wrote",
            self.checkpoint_bases.clone(),
        );
        r.register(
            "actor_checkpoint_pages",
            "Memory pages carried by delta checkpoints",
            self.checkpoint_pages.clone(),
        );
        r.register(
            "actor_standby_copies",
            "Copies of actor checkpoints sent to the actor's standbys, by outcome (ok; behind: the standby needed the whole checkpoint; failed)",
            self.replica_copies.clone(),
        );
        r.register(
            "actor_standby_copy_bytes",
            "Bytes of actor checkpoints copied to standbys",
            self.replica_bytes.clone(),
        );
        r.register(
            "actor_snapshots",
            "Actor snapshots moved by migrations, by direction and outcome",
            self.snapshots.clone(),
        );
        r.register("actor_snapshot_bytes", "Bytes of actor snapshots moved, by direction", self.snapshot_bytes.clone());
        r.register(
            "migrations",
            "Placement events on this node: migrations started, finished, rolled_back, activated, fenced, refused; takeover (a standby took a down home's actor over), gave_way; replica_added, replica_pruned",
            self.migrations.clone(),
        );
        r.register(
            "function_log_lines_dropped",
            "Guest log lines dropped, by function and reason (call_budget: past a call's budget; agent_log_rate: kept out of the agent's log only)",
            self.log_lines_dropped.clone(),
        );
    }
}

/// Recent log lines, per function.
pub type Logs = Arc<Mutex<HashMap<String, VecDeque<LogLine>>>>;

/// A token bucket per function for the lines that reach the agent's own log.
type LogRate = Arc<Mutex<HashMap<String, Bucket>>>;

struct Bucket {
    tokens: f64,
    at: std::time::Instant,
    /// Lines kept out of the agent's log since the last one that reached it.
    held_back: u64,
}

/// An actor's live instance on this node, at one activation epoch.
struct Live {
    hash: ModuleHash,
    epoch: u64,
    actor: Actor,
}

type ActorSlot = Arc<Mutex<Option<Live>>>;

/// A checkpoint chain's end: (epoch, base id, log bytes).
type ChainTip = (u64, [u8; 32], u64);

/// The executor.
pub struct Executor {
    store: Arc<ModuleStore>,
    mesh: Mesh,
    driver: mpsc::Sender<DriverMsg>,
    done: mpsc::UnboundedSender<(ExecId, Executed)>,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    actors: Mutex<HashMap<String, ActorSlot>>,
    fetching: Mutex<HashMap<ModuleHash, Arc<tokio::sync::Mutex<()>>>>,
    logs: Logs,
    log_rate: LogRate,
    trust: crate::signing::Trust,
    metrics: FnMetrics,
    unix_offset_us: u64,
    checkpoints: Checkpoints,
    /// Modules prepared for an incoming migration: actor → (module, manifest).
    prepared: Mutex<HashMap<String, (ModuleHash, Manifest)>>,
    /// Per (actor, standby) homed here, the newest checkpoint its copy is brought up to.
    replicas: replica::Senders,
    /// What the standbys acknowledged.
    acks: replica::Acks,
    /// Per actor moved here, the chain received with it.
    adopted: Mutex<HashMap<String, ChainTip>>,
}

impl Executor {
    /// An executor; finished executions are sent to `done`.
    #[allow(clippy::too_many_arguments)] // each is a separate handle the agent wires in once
    pub fn new(
        store: Arc<ModuleStore>,
        mesh: Mesh,
        driver: mpsc::Sender<DriverMsg>,
        done: mpsc::UnboundedSender<(ExecId, Executed)>,
        metrics: FnMetrics,
        unix_offset_us: u64,
        checkpoints: Checkpoints,
        trust: crate::signing::Trust,
    ) -> Arc<Executor> {
        Arc::new(Executor {
            store,
            mesh,
            driver,
            done,
            slots: Mutex::new(HashMap::new()),
            actors: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            logs: Arc::default(),
            log_rate: Arc::default(),
            trust,
            metrics,
            unix_offset_us,
            checkpoints,
            prepared: Mutex::new(HashMap::new()),
            replicas: Mutex::new(HashMap::new()),
            acks: replica::Acks::default(),
            adopted: Mutex::new(HashMap::new()),
        })
    }

    /// Recent log lines of `function`, oldest first.
    pub fn logs(&self, function: &str) -> Vec<LogLine> {
        self.logs
            .lock()
            .map(|l| l.get(function).map(|q| q.iter().cloned().collect()).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Runs `exec` in the background; its outcome goes to the driver.
    pub fn spawn(self: &Arc<Self>, exec: Execution) {
        let me = self.clone();
        tokio::spawn(async move {
            let id = exec.id;
            let done = me.run(exec).await;
            let _ = me.done.send((id, done));
        });
    }

    async fn run(self: &Arc<Self>, exec: Execution) -> Executed {
        let fail = |e: InvokeError| Executed { result: Err(e), fuel: 0, fetched: false, state_bytes: 0 };
        let slots = {
            let Ok(mut m) = self.slots.lock() else { return fail(InvokeError::Unavailable("executor lock".into())) };
            let want = (exec.manifest.limits.instances as usize).min(INSTANCES_FAIR_SHARE);
            let s = m.entry(exec.name.clone()).or_insert_with(|| Arc::new(Semaphore::new(want)));
            s.clone()
        };
        let permit = match tokio::time::timeout(QUEUE_WAIT, slots.acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                return fail(InvokeError::Overloaded(format!(
                    "all {} instances of {:?} on this node stayed busy for {} s (limits.instances)",
                    exec.manifest.limits.instances,
                    exec.name,
                    QUEUE_WAIT.as_secs()
                )));
            }
        };
        // Every node checks the package itself, not only the one that took the deploy.
        if let Err(why) = self.trust.check(exec.signature.as_ref(), &exec.hash, &exec.manifest) {
            warn!(function = %exec.name, "refusing to run: {why}");
            return fail(InvokeError::Invalid(format!("package refused on this node: {why}")));
        }
        let fetched = match self.ensure_module(&exec).await {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        let me = self.clone();
        let ran = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            me.execute_blocking(exec)
        })
        .await;
        match ran {
            Ok(mut done) => {
                done.fetched = fetched;
                done
            }
            Err(e) => fail(InvokeError::Trap(format!("the executor thread failed: {e}"))),
        }
    }

    /// Makes sure the module's bytes are on disk; `Ok(true)` if they were fetched now.
    async fn ensure_module(&self, exec: &Execution) -> Result<bool, InvokeError> {
        self.ensure(&exec.name, exec.hash, exec.size, &exec.sources).await
    }

    async fn ensure(&self, name: &str, hash: ModuleHash, size: u64, sources: &[NodeId]) -> Result<bool, InvokeError> {
        if self.store.has(&hash) {
            return Ok(false);
        }
        // One fetch per module at a time: concurrent first calls wait for it.
        let lock = match self.fetching.lock() {
            Ok(mut m) => m.entry(hash).or_default().clone(),
            Err(_) => return Err(InvokeError::Unavailable("executor lock".into())),
        };
        let _guard = lock.lock().await;
        if self.store.has(&hash) {
            return Ok(false);
        }
        let mut why = Vec::new();
        for source in sources {
            let started = Instant::now();
            match tokio::time::timeout(FETCH_TIMEOUT, self.fetch(*source, hash, size)).await {
                Ok(Ok(bytes)) => {
                    let store = self.store.clone();
                    let put = tokio::task::spawn_blocking(move || store.put(&bytes)).await;
                    match put {
                        Ok(Ok(_)) => {
                            info!(function = %name, hash = %hash.short(), from = %source.short(),
                                  ms = started.elapsed().as_millis() as u64, "module fetched");
                            self.metrics.fetches.get_or_create(&vec![("outcome".into(), "ok".into())]).inc();
                            return Ok(true);
                        }
                        Ok(Err(e)) => return Err(InvokeError::Unavailable(format!("storing the module: {e}"))),
                        Err(e) => return Err(InvokeError::Unavailable(format!("storing the module: {e}"))),
                    }
                }
                Ok(Err(e)) => why.push(format!("{}: {e}", source.short())),
                Err(_) => why.push(format!("{}: no module within {} s", source.short(), FETCH_TIMEOUT.as_secs())),
            }
            self.metrics.fetches.get_or_create(&vec![("outcome".into(), "failed".into())]).inc();
        }
        Err(InvokeError::Unavailable(if why.is_empty() {
            format!("module {} is not on this node and no node is known to hold it", hash.short())
        } else {
            format!("could not fetch module {} ({})", hash.short(), why.join("; "))
        }))
    }

    async fn fetch(&self, from: NodeId, hash: ModuleHash, size: u64) -> Result<Vec<u8>, String> {
        let peer = mesh::peer_id(&from).ok_or("not a peer id")?;
        let mut s = self.mesh.open_bulk(peer).await.map_err(|e| e.to_string())?;
        let mut req = vec![BULK_MODULE];
        req.extend_from_slice(&hash.0);
        s.write_all(&req).await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.map_err(|e| format!("reading the answer: {e}"))?;
        if head[0] == BULK_MISSING {
            return Err("does not hold it".into());
        }
        if head[0] != BULK_OK {
            return Err(format!("answered status {}", head[0]));
        }
        let len = u64::from_be_bytes(head[1..9].try_into().map_err(|_| "bad header")?);
        if len != size {
            return Err(format!("offered {len} bytes; the registry says {size}"));
        }
        let len = usize::try_from(len).map_err(|_| "too large")?;
        let mut bytes = vec![0u8; len];
        s.read_exact(&mut bytes).await.map_err(|e| format!("the transfer broke: {e}"))?;
        if ModuleHash::of(&bytes) != hash {
            return Err("sent bytes that do not match the module's hash".into());
        }
        Ok(bytes)
    }

    fn execute_blocking(self: &Arc<Self>, mut exec: Execution) -> Executed {
        let fail = |e: InvokeError| Executed { result: Err(e), fuel: 0, fetched: false, state_bytes: 0 };
        let (compiled, source) = match self.store.load(&exec.hash, &exec.manifest) {
            Ok(Some(c)) => c,
            Ok(None) => return fail(InvokeError::Unavailable("the module vanished from the local cache".into())),
            Err(e) => return fail(InvokeError::Invalid(e.to_string())),
        };
        if source != Source::Warm {
            let label = if source == Source::Artifact { "artifact" } else { "compiled" };
            self.metrics.cold_starts.get_or_create(&vec![("source".into(), label.into())]).inc();
            debug!(function = %exec.name, source = label, "cold start");
        }
        let now_ms = (self.unix_offset_us + exec.now.as_micros()) / 1000;
        let inv = Invocation {
            input: std::mem::take(&mut exec.input),
            now_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
            seed: exec.seed,
            depth: exec.depth,
        };
        let host = Box::new(AgentHost {
            driver: self.driver.clone(),
            exec: exec.id,
            function: exec.name.clone(),
            logs: self.logs.clone(),
            log_rate: self.log_rate.clone(),
            metrics: self.metrics.clone(),
            deadline: std::time::Instant::now() + Duration::from_millis(exec.manifest.limits.wall_ms),
            runtime: tokio::runtime::Handle::try_current().ok(),
        });
        let rt = self.store.runtime();
        let (out, state_bytes) = match (exec.manifest.kind, exec.actor.clone()) {
            (Kind::Actor, Some(run)) => match self.run_actor(&exec, run, &compiled, inv, host) {
                Ok(done) => done,
                Err(e) => return fail(e),
            },
            (Kind::Actor, None) => return fail(InvokeError::Invalid("an actor call without an activation".into())),
            _ => (rt.invoke(&compiled, &exec.manifest, inv, host), 0),
        };
        self.metrics.fuel.inc_by(out.fuel);
        Executed { result: out.result, fuel: out.fuel, fetched: false, state_bytes }
    }

    /// One call on actor `exec.name`'s live instance at `run.epoch` — restored from its
    /// checkpoint, or started fresh, if there is none — then checkpointed before it is
    /// answered (returned with the checkpoint's size). A call that traps drops the instance:
    /// the next one starts again from the last checkpoint, never from half-updated memory.
    fn run_actor(
        self: &Arc<Self>,
        exec: &Execution,
        run: ActorRun,
        compiled: &wasm_host::runtime::Compiled,
        inv: Invocation,
        host: Box<dyn Host>,
    ) -> Result<(wasm_host::runtime::Outcome, u64), InvokeError> {
        let rt = self.store.runtime();
        let slot = self.slot(&exec.name)?;
        let mut guard = slot.lock().map_err(|_| InvokeError::Unavailable("the actor's lock was poisoned".into()))?;
        if guard.as_ref().is_none_or(|l| l.hash != exec.hash || l.epoch != run.epoch) {
            *guard = None;
            self.checkpoints.forget(&exec.name);
            let actor = match self.checkpoints.find(&exec.name, run.epoch, run.fresh) {
                Some((epoch, _)) => {
                    let (a, restored) = self
                        .checkpoints
                        .restore(rt, compiled, &exec.manifest, inv.clone(), &exec.name, epoch)
                        .map_err(|e| {
                            InvokeError::Unavailable(format!("restoring the actor's checkpoint of epoch {epoch}: {e}"))
                        })?;
                    info!(function = %exec.name, epoch = run.epoch, from_epoch = epoch, deltas = restored.deltas, torn_bytes = restored.torn_bytes, "actor restored from its checkpoint");
                    if epoch != run.epoch {
                        // The chain belongs to the old epoch; the first save here writes a base.
                        self.checkpoints.forget(&exec.name);
                    }
                    a
                }
                None if run.fresh => rt.activate(compiled, &exec.manifest, inv.clone())?,
                None => {
                    return Err(InvokeError::Unavailable(format!(
                        "actor {:?} has no checkpoint at or below epoch {} on this node",
                        exec.name, run.epoch
                    )));
                }
            };
            *guard = Some(Live { hash: exec.hash, epoch: run.epoch, actor });
        }
        let Some(live) = guard.as_mut() else {
            return Err(InvokeError::Unavailable("no activation".into()));
        };
        let out = rt.invoke_actor(&mut live.actor, &exec.manifest, inv, host);
        match self.checkpoints.save(&exec.name, run.epoch, &mut live.actor) {
            Ok(saved) => {
                self.metrics.checkpoints.inc();
                self.metrics.checkpoint_bytes.inc_by(saved.bytes);
                if saved.full {
                    self.metrics.checkpoint_bases.inc();
                } else {
                    self.metrics.checkpoint_pages.inc_by(saved.pages as u64);
                }
                self.replicate(&exec.name, (exec.hash, exec.size), run.epoch, &run.standbys, &saved);
                if run.quorum > 0 {
                    // `group` durability: answered once a majority of the group holds it. The
                    // instance stays: the checkpoint is durable here whatever the standbys do.
                    let pos = liquid_core::functions::actors::lease::Pos { epoch: run.epoch, n: saved.n };
                    if let Err(why) = self.await_quorum(&exec.name, &run.standbys, run.quorum, pos) {
                        return Err(InvokeError::Unavailable(format!(
                            "the call ran and is durable on this node, but not yet on a majority of the actor's group: {why}"
                        )));
                    }
                }
                // The policy weighs what a move would carry: the whole checkpoint.
                Ok((out, saved.total_bytes))
            }
            Err(e) => {
                // Poisoned (the call trapped) or the disk failed: the state is not durable,
                // so this instance must not serve again.
                *guard = None;
                match out.result {
                    Err(err) => Ok((wasm_host::runtime::Outcome { result: Err(err), fuel: out.fuel }, 0)),
                    Ok(_) => Err(InvokeError::Unavailable(format!("the actor's checkpoint could not be written: {e}"))),
                }
            }
        }
    }

    fn slot(&self, name: &str) -> Result<ActorSlot, InvokeError> {
        match self.actors.lock() {
            Ok(mut m) => Ok(m.entry(name.to_string()).or_default().clone()),
            Err(_) => Err(InvokeError::Unavailable("executor lock".into())),
        }
    }

    /// Drops actor `name`'s live instance if it is at `epoch` (its activation here ended).
    pub fn deactivate(&self, name: &str, epoch: u64) {
        if let Ok(slot) = self.slot(name)
            && let Ok(mut g) = slot.lock()
            && g.as_ref().is_some_and(|l| l.epoch == epoch)
        {
            *g = None;
            self.checkpoints.forget(name);
        }
    }

    /// Fetches and compiles a module ahead of an incoming migration; tells the core.
    pub fn prefetch(self: &Arc<Self>, p: Prefetch) {
        let me = self.clone();
        tokio::spawn(async move {
            let result = match me.ensure(&p.name, p.hash, p.size, &p.sources).await {
                Ok(_) => {
                    let store = me.store.clone();
                    let (hash, manifest) = (p.hash, p.manifest.clone());
                    match tokio::task::spawn_blocking(move || store.load(&hash, &manifest)).await {
                        Ok(Ok(Some(_))) => Ok(()),
                        Ok(Ok(None)) => Err("the module vanished from the cache".to_string()),
                        Ok(Err(e)) => Err(format!("the module does not load here: {e}")),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            if result.is_ok()
                && let Ok(mut m) = me.prepared.lock()
            {
                m.insert(p.name.clone(), (p.hash, p.manifest));
            }
            let _ = me.driver.send(DriverMsg::Prefetched { name: p.name, result }).await;
        });
    }

    /// Streams actor `h.name`'s newest checkpoint to `h.to`, which stores it as epoch
    /// `h.epoch`; tells the core how it went.
    pub fn handoff(self: &Arc<Self>, h: Handoff) {
        let me = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(SNAPSHOT_TIMEOUT, me.send_snapshot(&h)).await {
                Ok(r) => r,
                Err(_) => Err(format!("the transfer took over {} s", SNAPSHOT_TIMEOUT.as_secs())),
            };
            let outcome = if result.is_ok() { "ok" } else { "failed" };
            me.metrics
                .snapshots
                .get_or_create(&vec![("direction".into(), "out".into()), ("outcome".into(), outcome.into())])
                .inc();
            match &result {
                Ok(bytes) => {
                    me.metrics.snapshot_bytes.get_or_create(&vec![("direction".into(), "out".into())]).inc_by(*bytes);
                    info!(actor = %h.name, to = %h.to.short(), epoch = h.epoch, bytes, ms = started.elapsed().as_millis() as u64, "actor snapshot sent");
                }
                Err(e) => {
                    warn!(actor = %h.name, to = %h.to.short(), epoch = h.epoch, error = %e, "actor snapshot not sent")
                }
            }
            let _ = me.driver.send(DriverMsg::HandoffSent { name: h.name, epoch: h.epoch, result }).await;
        });
    }

    async fn send_snapshot(&self, h: &Handoff) -> Result<u64, String> {
        // The core drained the actor: the newest checkpoint (its base and the deltas after
        // it) is its whole state.
        let (epoch, path) = self
            .checkpoints
            .find(&h.name, h.epoch.saturating_sub(1), false)
            .ok_or("the actor has no checkpoint to hand over (no call ever succeeded here)")?;
        let log_path = self.checkpoints.log_path(&h.name, epoch);
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| format!("opening {}: {e}", path.display()))?;
        let len = file.metadata().await.map_err(|e| e.to_string())?.len();
        let mut log = match tokio::fs::File::open(&log_path).await {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("opening {}: {e}", log_path.display())),
        };
        let log_len = match &log {
            Some(f) => f.metadata().await.map_err(|e| e.to_string())?.len(),
            None => 0,
        };
        let peer = mesh::peer_id(&h.to).ok_or("not a peer id")?;
        let mut s = self.mesh.open_bulk(peer).await.map_err(|e| e.to_string())?;
        let name = h.name.as_bytes();
        let mut head = vec![BULK_SNAPSHOT];
        head.extend_from_slice(&u16::try_from(name.len()).map_err(|_| "name too long")?.to_be_bytes());
        head.extend_from_slice(name);
        head.extend_from_slice(&h.epoch.to_be_bytes());
        head.extend_from_slice(&h.hash.0);
        head.extend_from_slice(&len.to_be_bytes());
        s.write_all(&head).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 256 << 10];
        stream_file(&mut s, &mut file, len, &mut buf).await?;
        s.write_all(&log_len.to_be_bytes()).await.map_err(|e| e.to_string())?;
        if let Some(log) = log.as_mut() {
            stream_file(&mut s, log, log_len, &mut buf).await?;
        }
        s.flush().await.map_err(|e| e.to_string())?;
        let mut status = [0u8; 1];
        s.read_exact(&mut status).await.map_err(|e| format!("no acknowledgement from the target: {e}"))?;
        if status[0] != BULK_OK {
            let mut why = String::new();
            let _ = s.read_to_string(&mut why).await;
            return Err(format!("the target refused the snapshot: {}", why.trim()));
        }
        Ok(len + log_len)
    }

    /// Receives an actor snapshot (after the kind byte): stores it as the checkpoint of its
    /// epoch, checks it by restoring it (the live instance is kept), answers, tells the core.
    async fn receive_snapshot(
        self: &Arc<Self>,
        from: libp2p::PeerId,
        s: &mut libp2p::Stream,
    ) -> Result<(String, u64, u64), String> {
        let mut len2 = [0u8; 2];
        s.read_exact(&mut len2).await.map_err(|e| e.to_string())?;
        let mut name = vec![0u8; usize::from(u16::from_be_bytes(len2))];
        s.read_exact(&mut name).await.map_err(|e| e.to_string())?;
        let name = String::from_utf8(name).map_err(|_| "the actor's name is not UTF-8")?;
        wasm_host::manifest::validate_name(&name).map_err(|e| e.to_string())?;
        let mut rest = [0u8; 8 + 32 + 8];
        s.read_exact(&mut rest).await.map_err(|e| e.to_string())?;
        let epoch = u64::from_be_bytes(rest[..8].try_into().map_err(|_| "bad header")?);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&rest[8..40]);
        let hash = ModuleHash(hash);
        let len = u64::from_be_bytes(rest[40..].try_into().map_err(|_| "bad header")?);
        if len > SNAPSHOT_MAX {
            return Err(format!("a snapshot of {len} bytes is over the limit of {SNAPSHOT_MAX}"));
        }
        let manifest = match self.prepared.lock().map(|m| m.get(&name).cloned()) {
            Ok(Some((h, m))) if h == hash => m,
            _ => return Err(format!("this node was not prepared to take over {name:?} with that module")),
        };
        debug!(%from, actor = %name, epoch, bytes = len, "receiving an actor snapshot");
        // Stream to temporary files, then store them durably under the new epoch.
        let tmp = self.checkpoints.path(&name, epoch).with_extension("incoming");
        let tmp_log = self.checkpoints.log_path(&name, epoch).with_extension("log.incoming");
        if let Some(dir) = tmp.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| e.to_string())?;
        }
        let mut buf = vec![0u8; 256 << 10];
        receive_file(s, &tmp, len, &mut buf).await?;
        let mut len8 = [0u8; 8];
        s.read_exact(&mut len8).await.map_err(|e| format!("the transfer broke: {e}"))?;
        let log_len = u64::from_be_bytes(len8);
        if log_len > SNAPSHOT_MAX {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(format!("a delta log of {log_len} bytes is over the limit of {SNAPSHOT_MAX}"));
        }
        if log_len > 0 {
            receive_file(s, &tmp_log, log_len, &mut buf).await?;
        } else {
            let _ = tokio::fs::remove_file(&tmp_log).await;
        }
        let me = self.clone();
        let n = name.clone();
        let checked = tokio::task::spawn_blocking(move || me.adopt(&n, epoch, hash, &manifest, &tmp, &tmp_log)).await;
        match checked {
            Ok(Ok(())) => Ok((name, epoch, len + log_len)),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Restores a received base and delta log (which checks them), keeps the instance live,
    /// and stores the files as the checkpoint of `epoch`.
    fn adopt(
        &self,
        name: &str,
        epoch: u64,
        hash: ModuleHash,
        manifest: &Manifest,
        tmp: &std::path::Path,
        tmp_log: &std::path::Path,
    ) -> Result<(), String> {
        let fail = |e: String| {
            let _ = std::fs::remove_file(tmp);
            let _ = std::fs::remove_file(tmp_log);
            e
        };
        let (compiled, _) = match self.store.load(&hash, manifest) {
            Ok(Some(c)) => c,
            Ok(None) => return Err(fail("the module is not here".into())),
            Err(e) => return Err(fail(e.to_string())),
        };
        let inv = Invocation { input: Vec::new(), now_ms: 0, seed: 0, depth: 0 };
        let (actor, restored, chain) = restore_files(self.store.runtime(), &compiled, manifest, inv, tmp, tmp_log)
            .map_err(|e| fail(e.to_string()))?;
        debug!(actor = %name, epoch, deltas = restored.deltas, "restored an incoming actor checkpoint");
        let path = self.checkpoints.path(name, epoch);
        let log_path = self.checkpoints.log_path(name, epoch);
        if chain.is_some() {
            std::fs::rename(tmp_log, &log_path).map_err(|e| fail(e.to_string()))?;
        } else {
            // No log, or one that does not belong to this base: drop any older one too.
            let _ = std::fs::remove_file(tmp_log);
            let _ = std::fs::remove_file(&log_path);
        }
        std::fs::rename(tmp, &path).map_err(|e| fail(e.to_string()))?;
        if let Some(dir) = path.parent() {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        let slot = self.slot(name).map_err(|e| e.to_string())?;
        let mut g = slot.lock().map_err(|_| "the actor's lock was poisoned".to_string())?;
        // The log's open handle follows the rename: the next call appends to it.
        self.checkpoints.set_chain(name, epoch, chain);
        if let (Some(tip), Ok(mut m)) = (self.checkpoints.log_tip(name, epoch), self.adopted.lock()) {
            m.insert(name.to_string(), (epoch, tip.0, tip.1));
        }
        *g = Some(Live { hash, epoch, actor });
        Ok(())
    }

    /// Answers a peer's bulk stream (a module fetch, or an actor snapshot it pushes).
    pub fn serve_bulk(self: &Arc<Self>, from: libp2p::PeerId, mut s: libp2p::Stream) {
        let store = self.store.clone();
        let me = self.clone();
        tokio::spawn(async move {
            let mut kind = [0u8; 1];
            if let Err(e) = s.read_exact(&mut kind).await {
                debug!(%from, error = %e, "a bulk stream closed before its request");
                return;
            }
            if kind[0] == BULK_SNAPSHOT {
                let got = tokio::time::timeout(SNAPSHOT_TIMEOUT, me.receive_snapshot(from, &mut s)).await;
                let got = got.unwrap_or_else(|_| Err("the transfer took too long".into()));
                let outcome = if got.is_ok() { "ok" } else { "failed" };
                me.metrics
                    .snapshots
                    .get_or_create(&vec![("direction".into(), "in".into()), ("outcome".into(), outcome.into())])
                    .inc();
                match got {
                    Ok((name, epoch, bytes)) => {
                        me.metrics.snapshot_bytes.get_or_create(&vec![("direction".into(), "in".into())]).inc_by(bytes);
                        info!(%from, actor = %name, epoch, bytes, "actor snapshot received");
                        let _ = async {
                            s.write_all(&[BULK_OK]).await?;
                            s.flush().await?;
                            s.close().await
                        }
                        .await;
                        if let Some(from) = mesh::node_id(&from) {
                            let _ = me.driver.send(DriverMsg::SnapshotReceived { from, name, epoch }).await;
                        }
                    }
                    Err(e) => {
                        warn!(%from, error = %e, "refused an actor snapshot");
                        let _ = async {
                            s.write_all(&[BULK_MISSING]).await?;
                            s.write_all(e.as_bytes()).await?;
                            s.close().await
                        }
                        .await;
                    }
                }
                return;
            }
            if kind[0] == replica::BULK_REPLICA {
                me.receive_copy(from, s).await;
                return;
            }
            if kind[0] != BULK_MODULE {
                warn!(%from, kind = kind[0], "unknown bulk stream request: closed");
                return;
            }
            let mut req = [0u8; 32];
            if let Err(e) = s.read_exact(&mut req).await {
                debug!(%from, error = %e, "a bulk stream closed before its request");
                return;
            }
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&req);
            let hash = ModuleHash(hash);
            let bytes = tokio::task::spawn_blocking(move || store.get(&hash)).await;
            let reply = match bytes {
                Ok(Ok(Some(b))) => {
                    let mut head = vec![BULK_OK];
                    head.extend_from_slice(&(b.len() as u64).to_be_bytes());
                    Some((head, b))
                }
                _ => None,
            };
            let res = match reply {
                Some((head, body)) => {
                    debug!(%from, hash = %hash.short(), bytes = body.len(), "serving a module");
                    async {
                        s.write_all(&head).await?;
                        s.write_all(&body).await?;
                        s.flush().await?;
                        s.close().await
                    }
                    .await
                }
                None => {
                    let mut head = vec![BULK_MISSING];
                    head.extend_from_slice(&0u64.to_be_bytes());
                    async {
                        s.write_all(&head).await?;
                        s.close().await
                    }
                    .await
                }
            };
            if let Err(e) = res {
                debug!(%from, error = %e, "serving a module failed");
            }
        });
    }
}

/// The host side of a running function on the real driver: blocks its (blocking) thread on
/// the core's answers, never past the call's wall-time limit.
struct AgentHost {
    driver: mpsc::Sender<DriverMsg>,
    exec: ExecId,
    function: String,
    logs: Logs,
    log_rate: LogRate,
    metrics: FnMetrics,
    /// When the call's `limits.wall_ms` runs out: a host call waits no longer (issue 17: a
    /// thread blocked in a host call cannot be interrupted by the epoch).
    deadline: std::time::Instant,
    runtime: Option<tokio::runtime::Handle>,
}

fn unavailable() -> AbiError {
    AbiError::new(abi::ERR_UNAVAILABLE, "the agent is shutting down")
}

impl AgentHost {
    fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> DriverMsg) -> Result<T, AbiError> {
        let (tx, rx) = oneshot::channel();
        let out_of_time = || {
            AbiError::new(abi::ERR_UNAVAILABLE, "the call's wall-time limit (limits.wall_ms) ran out in a host call")
        };
        let left = self.deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(out_of_time());
        }
        let Some(rt) = &self.runtime else {
            self.driver.blocking_send(make(tx)).map_err(|_| unavailable())?;
            return rx.blocking_recv().map_err(|_| unavailable());
        };
        rt.block_on(async {
            match tokio::time::timeout(left, async {
                self.driver.send(make(tx)).await.map_err(|_| unavailable())?;
                rx.await.map_err(|_| unavailable())
            })
            .await
            {
                Ok(answer) => answer,
                Err(_) => Err(out_of_time()),
            }
        })
    }

    /// Whether a line may go to the agent's own log now (the per-function rate), saying how
    /// many were held back before it.
    fn to_agent_log(&self) -> Option<u64> {
        let mut rate = self.log_rate.lock().ok()?;
        let now = std::time::Instant::now();
        let b = rate.entry(self.function.clone()).or_insert(Bucket {
            tokens: 2.0 * AGENT_LOG_LINES_PER_SEC,
            at: now,
            held_back: 0,
        });
        let refill = now.duration_since(b.at).as_secs_f64() * AGENT_LOG_LINES_PER_SEC;
        b.tokens = (b.tokens + refill).min(2.0 * AGENT_LOG_LINES_PER_SEC);
        b.at = now;
        if b.tokens < 1.0 {
            b.held_back += 1;
            return None;
        }
        b.tokens -= 1.0;
        Some(std::mem::take(&mut b.held_back))
    }
}

impl Host for AgentHost {
    fn object(&mut self, call: ObjCall) -> Result<Json, AbiError> {
        let (req, is_write) = liquid_core::functions::host_request(call);
        let exec = self.exec;
        let reply = self.ask(|tx| DriverMsg::HostObject(exec, req, tx))?;
        liquid_core::functions::host_answer(reply, is_write)
    }

    fn invoke(&mut self, function: &str, input: Vec<u8>, depth: u32) -> Result<Vec<u8>, AbiError> {
        let name = function.to_string();
        let result = self.ask(|tx| DriverMsg::Invoke { name, input, depth, reply: tx })?;
        liquid_core::functions::host_invoke_answer(result)
    }

    fn log(&mut self, level: Level, line: &str) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        match self.to_agent_log() {
            Some(held_back) => {
                if held_back > 0 {
                    warn!(
                        function = %self.function,
                        held_back,
                        "this function logs faster than {AGENT_LOG_LINES_PER_SEC} lines/s: lines were kept out of the agent's log (all are in `liquid fn logs {}`)",
                        self.function
                    );
                }
                match level {
                    Level::Error | Level::Warn => warn!(function = %self.function, "{line}"),
                    _ => debug!(function = %self.function, "{line}"),
                }
            }
            None => {
                let labels =
                    vec![("function".into(), self.function.clone()), ("reason".into(), "agent_log_rate".into())];
                self.metrics.log_lines_dropped.get_or_create(&labels).inc();
            }
        }
        if let Ok(mut logs) = self.logs.lock() {
            let q = logs.entry(self.function.clone()).or_default();
            if q.len() >= LOG_LINES {
                q.pop_front();
            }
            q.push_back(LogLine { at_ms, level: level.as_str().into(), line: line.to_string() });
        }
    }

    fn logs_dropped(&mut self, n: u64) {
        let labels = vec![("function".into(), self.function.clone()), ("reason".into(), "call_budget".into())];
        self.metrics.log_lines_dropped.get_or_create(&labels).inc_by(n);
    }
}

/// Writes `len` bytes of `file` to the stream; fails if the file does not hold exactly that.
async fn stream_file(
    s: &mut libp2p::Stream,
    file: &mut tokio::fs::File,
    len: u64,
    buf: &mut [u8],
) -> Result<(), String> {
    let mut sent = 0u64;
    while sent < len {
        let want = usize::try_from((len - sent).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = tokio::io::AsyncReadExt::read(file, &mut buf[..want]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await.map_err(|e| format!("the transfer broke: {e}"))?;
        sent += n as u64;
    }
    if sent != len {
        return Err(format!("the checkpoint changed while it was sent ({sent} of {len} bytes)"));
    }
    Ok(())
}

/// Reads `len` bytes from the stream into a new file at `path`, durably.
async fn receive_file(s: &mut libp2p::Stream, path: &std::path::Path, len: u64, buf: &mut [u8]) -> Result<(), String> {
    let mut file = tokio::fs::File::create(path).await.map_err(|e| e.to_string())?;
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        if let Err(e) = s.read_exact(&mut buf[..want]).await {
            drop(file);
            let _ = tokio::fs::remove_file(path).await;
            return Err(format!("the transfer broke: {e}"));
        }
        tokio::io::AsyncWriteExt::write_all(&mut file, &buf[..want]).await.map_err(|e| e.to_string())?;
        left -= want as u64;
    }
    file.sync_all().await.map_err(|e| e.to_string())
}
