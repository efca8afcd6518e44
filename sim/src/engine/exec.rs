//! Functions in simulated nodes: real wasmtime executions, in lock-step with virtual time.
//!
//! An execution runs on its own OS thread, but only while the engine waits for it: the
//! engine starts (or resumes) the guest and blocks until the guest either finishes or makes
//! a host call. A host call becomes an ordinary input to the node's core (an object request,
//! a nested invocation) at the current virtual time, and the guest stays parked until the
//! core's answer comes out of the event loop. So a run stays deterministic — fuel is
//! deterministic and nothing runs concurrently with the engine — and a guest that writes an
//! object waits for the simulated disk's fsync exactly as it waits for the real one.
//!
//! Virtual time: the guest's compute takes `fuel × ns_per_fuel × slowdown(tier)`, charged
//! when it finishes (host calls are made at the virtual time the execution started or was
//! last resumed: an approximation that ignores compute between host calls). A module the
//! node does not hold is fetched from the first reachable holder the core lists: one round
//! trip plus the transfer over the link.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;

use liquid_core::functions::Execution;
use serde_json::Value as Json;
use wasm_host::abi::{self, AbiError, Level, ObjCall};
use wasm_host::runtime::{Compiled, Host, Invocation, Outcome, Runtime, RuntimeConfig};
use wasm_host::{InvokeError, ModuleHash};

/// What a parked guest asks, or how it ended.
pub(crate) enum GuestEvent {
    Object(ObjCall),
    Invoke { name: String, input: Vec<u8>, depth: u32 },
    Done(Outcome),
}

/// The engine's answer to a host call.
pub(crate) enum HostAnswer {
    Object(Result<Json, AbiError>),
    Invoke(Result<Vec<u8>, AbiError>),
}

struct SimHost {
    tx: mpsc::Sender<GuestEvent>,
    rx: mpsc::Receiver<HostAnswer>,
}

fn gone() -> AbiError {
    AbiError::new(abi::ERR_UNAVAILABLE, "the node crashed")
}

impl Host for SimHost {
    fn object(&mut self, call: ObjCall) -> Result<Json, AbiError> {
        self.tx.send(GuestEvent::Object(call)).map_err(|_| gone())?;
        match self.rx.recv() {
            Ok(HostAnswer::Object(r)) => r,
            _ => Err(gone()),
        }
    }

    fn invoke(&mut self, function: &str, input: Vec<u8>, depth: u32) -> Result<Vec<u8>, AbiError> {
        self.tx.send(GuestEvent::Invoke { name: function.to_string(), input, depth }).map_err(|_| gone())?;
        match self.rx.recv() {
            Ok(HostAnswer::Invoke(r)) => r,
            _ => Err(gone()),
        }
    }

    fn log(&mut self, _level: Level, _line: &str) {}
}

/// One execution in progress.
pub(crate) struct Exec {
    pub node: u32,
    pub life: u32,
    pub exec: Execution,
    pub fetched: bool,
    /// Set once the guest runs.
    pub to_guest: Option<mpsc::Sender<HostAnswer>>,
    pub from_guest: Option<mpsc::Receiver<GuestEvent>>,
    /// Set when the guest finished (its answer is delivered after its virtual compute time).
    pub outcome: Option<Outcome>,
}

/// What the functions subsystem of the simulator keeps.
pub(crate) struct FnState {
    runtime: Option<Arc<Runtime>>,
    compiled: BTreeMap<ModuleHash, Arc<Compiled>>,
    pub modules: BTreeMap<ModuleHash, Arc<Vec<u8>>>,
    /// Modules each node holds on disk (kept across crashes).
    pub held: Vec<std::collections::BTreeSet<ModuleHash>>,
    pub execs: BTreeMap<u64, Exec>,
    pub next_exec: u64,
    /// Host calls waiting for the core: (node, request or invocation id) → (execution,
    /// whether it is a write).
    pub host_waits: BTreeMap<(u32, u64), (u64, bool)>,
    /// Ids the simulator gives its requests and invocations (below the core's internal ids).
    pub next_id: u64,
    /// Module fetches of migration targets in flight: (node, function) → module.
    pub prefetching: BTreeMap<(u32, String), ModuleHash>,
}

/// The first id of the simulator's own requests and invocations: above the workloads' ids,
/// below the core's internal ones.
pub(crate) const SIM_IDS: u64 = 1 << 61;

impl FnState {
    pub fn new(nodes: usize) -> FnState {
        FnState {
            runtime: None,
            compiled: BTreeMap::new(),
            modules: BTreeMap::new(),
            held: vec![Default::default(); nodes],
            execs: BTreeMap::new(),
            next_exec: 0,
            host_waits: BTreeMap::new(),
            next_id: SIM_IDS,
            prefetching: BTreeMap::new(),
        }
    }

    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn runtime(&mut self) -> Result<Arc<Runtime>, InvokeError> {
        if let Some(rt) = &self.runtime {
            return Ok(rt.clone());
        }
        // No wall-clock deadlines: wall time is not virtual time; fuel bounds every call.
        let cfg = RuntimeConfig { wall_deadlines: false, pool_instances: 256, ..RuntimeConfig::default() };
        let rt = Arc::new(Runtime::new(cfg).map_err(InvokeError::Unavailable)?);
        self.runtime = Some(rt.clone());
        Ok(rt)
    }

    /// Starts the guest of execution `key` on its thread and waits for its first event.
    pub fn start(&mut self, key: u64) -> Result<GuestEvent, InvokeError> {
        let rt = self.runtime()?;
        let Some(e) = self.execs.get(&key) else { return Err(InvokeError::Unavailable("no such execution".into())) };
        let hash = e.exec.hash;
        let compiled = match self.compiled.get(&hash) {
            Some(c) => c.clone(),
            None => {
                let bytes = self
                    .modules
                    .get(&hash)
                    .ok_or_else(|| InvokeError::Unavailable("the module is unknown to the simulator".into()))?;
                let c = Arc::new(rt.compile(bytes, &e.exec.manifest).map_err(|e| InvokeError::Invalid(e.to_string()))?);
                self.compiled.insert(hash, c.clone());
                c
            }
        };
        let (to_guest, guest_rx) = mpsc::channel();
        let (guest_tx, from_guest) = mpsc::channel();
        let manifest = e.exec.manifest.clone();
        let inv = Invocation {
            input: e.exec.input.clone(),
            now_ms: i64::try_from(e.exec.now.as_micros() / 1000).unwrap_or(i64::MAX),
            seed: e.exec.seed,
            depth: e.exec.depth,
        };
        let done_tx = guest_tx.clone();
        let spawned = std::thread::Builder::new().name("sim-guest".into()).spawn(move || {
            let host = Box::new(SimHost { tx: guest_tx, rx: guest_rx });
            let out = rt.invoke(&compiled, &manifest, inv, host);
            let _ = done_tx.send(GuestEvent::Done(out));
        });
        if let Err(err) = spawned {
            return Err(InvokeError::Unavailable(format!("cannot start a guest thread: {err}")));
        }
        if let Some(e) = self.execs.get_mut(&key) {
            e.to_guest = Some(to_guest);
            e.from_guest = Some(from_guest);
        }
        self.next_event(key)
    }

    /// Resumes a parked guest with its host call's answer and waits for its next event.
    pub fn resume(&mut self, key: u64, answer: HostAnswer) -> Result<GuestEvent, InvokeError> {
        let sent = self.execs.get(&key).and_then(|e| e.to_guest.as_ref()).map(|tx| tx.send(answer).is_ok());
        if sent != Some(true) {
            return Err(InvokeError::Trap("the guest thread is gone".into()));
        }
        self.next_event(key)
    }

    fn next_event(&mut self, key: u64) -> Result<GuestEvent, InvokeError> {
        let rx = self.execs.get(&key).and_then(|e| e.from_guest.as_ref());
        match rx.map(mpsc::Receiver::recv) {
            Some(Ok(ev)) => Ok(ev),
            _ => Err(InvokeError::Trap("the guest thread ended without an answer".into())),
        }
    }

    /// Drops every execution of node `i` (it crashed): parked guests get "unavailable"
    /// from their host calls and finish on their own, unobserved.
    pub fn crashed(&mut self, i: u32) {
        self.execs.retain(|_, e| e.node != i);
        self.host_waits.retain(|(n, _), _| *n != i);
    }
}
