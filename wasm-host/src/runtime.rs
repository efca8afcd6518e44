//! The executor: wasmtime with the pooling allocator, pre-instantiated modules, fuel, epoch
//! deadlines, memory and stack caps, WASI preview 1 and the Liquid ABI's host functions.
//!
//! It is driver-neutral: object access and nested calls go through the [`Host`] trait, which
//! the real driver answers by asking its node core (blocking this thread, never the core's)
//! and the simulator answers in lock-step with virtual time. Time and randomness come in the
//! [`Invocation`] from the core, so a simulated run is deterministic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value as Json;
use wasmtime::{
    Caller, Config, Engine, Global, Instance, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module,
    Mutability, PoolingAllocationConfig, ResourceLimiter, Store, Trap, Val,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder};

use crate::abi::{self, AbiError, Level, ObjCall};
use crate::dirty::{Tracker, Written};
use crate::manifest::{Kind, Manifest, ModuleHash};
use crate::outcome::InvokeError;
use crate::snapshot::{self, DeltaInfo, GlobalValue, Link, SnapshotError, SnapshotInfo};

/// Engine-wide settings, chosen by the node's operator.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Instance slots in the pooling allocator (concurrent instances, actors included).
    pub pool_instances: u32,
    /// The largest memory any function may have, MiB (a manifest may ask for less).
    pub memory_max_mib: u32,
    /// Wasm stack per call, KiB: deep recursion traps here instead of overflowing the host.
    pub stack_kib: usize,
    /// Enforce `limits.wall_ms` with epoch interruption (the real driver). The simulator
    /// turns it off: wall time is not virtual time, and fuel bounds every call anyway.
    pub wall_deadlines: bool,
    /// The largest module accepted, bytes.
    pub module_max: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            pool_instances: 1000,
            memory_max_mib: 1024,
            stack_kib: 512,
            wall_deadlines: true,
            module_max: 64 << 20,
        }
    }
}

/// How long one epoch tick is: wall-time limits are enforced to this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The names the Liquid ABI provides (module `liquid`).
pub const LIQUID_IMPORTS: &[&str] = &[
    "input_len",
    "input_read",
    "output",
    "result_read",
    "obj_get",
    "obj_set",
    "obj_inc",
    "obj_del",
    "obj_apply",
    "obj_list",
    "log",
    "now_ms",
    "random",
    "call",
];

/// How a module talks to the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interface {
    /// Exports `_start`: stdin in, stdout out.
    WasiCommand,
    /// Exports `liquid_call`.
    Liquid,
}

/// Why a module is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// Over the size limit.
    #[error("the module is {size} bytes; the limit is {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not WebAssembly, or invalid.
    #[error("not a valid WebAssembly module: {0}")]
    NotWasm(String),
    /// Imports something the node does not provide.
    #[error(
        "the module imports {module}.{name}, which Liquid does not provide (allowed: the `liquid` ABI in docs/abi.md and WASI preview 1)"
    )]
    Import {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// Exports neither entry point, or a wrong shape.
    #[error("{0}")]
    Exports(String),
    /// The manifest does not fit the module.
    #[error("{0}")]
    Manifest(String),
    /// A cached artifact could not be used.
    #[error("compiled artifact: {0}")]
    Artifact(String),
}

/// A module compiled and linked, ready to instantiate in microseconds.
pub struct Compiled {
    hash: ModuleHash,
    interface: Interface,
    /// Imports WASI: only then is a WASI context built for each instance (≈2 µs a call).
    wasi: bool,
    module: Module,
    pre: InstancePre<State>,
}

impl Compiled {
    /// The module's hash.
    pub fn hash(&self) -> ModuleHash {
        self.hash
    }

    /// How it talks to the node.
    pub fn interface(&self) -> Interface {
        self.interface
    }

    /// The compiled code, in wasmtime's serialized form, for the artifact cache.
    pub fn serialize(&self) -> Result<Vec<u8>, ModuleError> {
        self.module.serialize().map_err(|e| ModuleError::Artifact(e.to_string()))
    }
}

/// What the node asks the executing function's host calls to do. Implemented by each driver.
pub trait Host: Send {
    /// An object read, write or list. Reads answer the JSON value (the whole document for a
    /// `Get` without a path: the runtime extracts the path), writes answer `Json::Null` once
    /// they are applied locally; `List` answers a JSON array of names.
    fn object(&mut self, call: ObjCall) -> Result<Json, AbiError>;
    /// Invoke another function (`depth` is the callee's nesting depth).
    fn invoke(&mut self, function: &str, input: Vec<u8>, depth: u32) -> Result<Vec<u8>, AbiError>;
    /// A line for the function's log.
    fn log(&mut self, level: Level, line: &str);

    /// The call wrote `n` log lines past its budget, which were dropped.
    fn logs_dropped(&mut self, n: u64) {
        let _ = n;
    }
}

/// One call's inputs, all chosen by the node core.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The input bytes.
    pub input: Vec<u8>,
    /// The invocation's time, Unix milliseconds.
    pub now_ms: i64,
    /// Seeds the function's randomness.
    pub seed: u64,
    /// Nesting depth (0 for a call from outside).
    pub depth: u32,
}

/// How a call went.
#[derive(Debug)]
pub struct Outcome {
    /// The output bytes, or why there are none.
    pub result: Result<Vec<u8>, InvokeError>,
    /// Fuel consumed.
    pub fuel: u64,
}

/// The engine, the linker with every host function, and the epoch ticker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    cfg: RuntimeConfig,
    stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// An engine with the pooling allocator; starts the epoch ticker if wall deadlines are on.
    pub fn new(cfg: RuntimeConfig) -> Result<Runtime, String> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(cfg.pool_instances)
            .total_memories(cfg.pool_instances)
            .total_tables(cfg.pool_instances)
            .max_memory_size((cfg.memory_max_mib as usize) << 20);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .consume_fuel(true)
            .epoch_interruption(cfg.wall_deadlines)
            .max_wasm_stack(cfg.stack_kib << 10);
        let engine = Engine::new(&config).map_err(|e| format!("wasmtime engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        // Only modules that import WASI get a context; one that does not never reaches this
        // accessor, and the fallback exists only to give it a total type.
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut State| {
            s.wasi.get_or_insert_with(|| WasiCtxBuilder::new().build_p1())
        })
        .map_err(|e| format!("linking WASI: {e}"))?;
        linker.allow_shadowing(true);
        add_poll_oneoff(&mut linker).map_err(|e| format!("linking WASI poll_oneoff: {e}"))?;
        linker.allow_shadowing(false);
        add_liquid(&mut linker).map_err(|e| format!("linking the Liquid ABI: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        if cfg.wall_deadlines {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| format!("starting the epoch ticker: {e}"))?;
        }
        Ok(Runtime { engine, linker, cfg, stop })
    }

    /// Identifies the engine's code generation (wasmtime version, target CPU, settings):
    /// compiled artifacts are cached under it, so an upgrade or another CPU recompiles.
    pub fn fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{}-{}-{:016x}", std::env::consts::ARCH, wasmtime_version(), h.finish())
    }

    /// Compiles and checks a module against its manifest: valid Wasm, only imports we
    /// provide, one of the two entry points, sizes within limits.
    pub fn compile(&self, bytes: &[u8], manifest: &Manifest) -> Result<Compiled, ModuleError> {
        if bytes.len() > self.cfg.module_max {
            return Err(ModuleError::TooLarge { size: bytes.len(), max: self.cfg.module_max });
        }
        let module = if bytes.starts_with(b"\0asm") {
            Module::from_binary(&self.engine, bytes).map_err(|e| ModuleError::NotWasm(error_chain(&e)))?
        } else if looks_like_wat(bytes) {
            Module::new(&self.engine, bytes).map_err(|e| ModuleError::NotWasm(without_source(&error_chain(&e))))?
        } else {
            return Err(ModuleError::NotWasm(
                "these bytes are neither a WebAssembly binary (which starts with \\0asm) nor WebAssembly text"
                    .to_owned(),
            ));
        };
        self.link(module, ModuleHash::of(bytes), manifest)
    }

    /// Loads a compiled artifact written by [`Compiled::serialize`] with this engine.
    pub fn load_artifact(
        &self,
        artifact: &[u8],
        hash: ModuleHash,
        manifest: &Manifest,
    ) -> Result<Compiled, ModuleError> {
        // SAFETY: `artifact` is one this node serialized into its own data directory (never
        // bytes from a peer); wasmtime checks its header against this engine's version and
        // settings and refuses an incompatible one.
        #[allow(unsafe_code)]
        let module = unsafe { Module::deserialize(&self.engine, artifact) }
            .map_err(|e| ModuleError::Artifact(error_chain(&e)))?;
        self.link(module, hash, manifest)
    }

    fn link(&self, module: Module, hash: ModuleHash, manifest: &Manifest) -> Result<Compiled, ModuleError> {
        for import in module.imports() {
            let ok = match import.module() {
                "liquid" => LIQUID_IMPORTS.contains(&import.name()),
                "wasi_snapshot_preview1" => true,
                _ => false,
            };
            if !ok {
                return Err(ModuleError::Import { module: import.module().into(), name: import.name().into() });
            }
        }
        let interface = if module.get_export("liquid_call").is_some() {
            match module.get_export("liquid_call").and_then(|e| e.func().cloned()) {
                Some(f) if f.params().len() == 0 && f.results().len() == 1 => {}
                _ => return Err(ModuleError::Exports("export liquid_call must be a function () -> i32".into())),
            }
            if module.get_export("memory").and_then(|e| e.memory().cloned()).is_none() {
                return Err(ModuleError::Exports("a Liquid ABI module must export its memory as \"memory\"".into()));
            }
            Interface::Liquid
        } else if module.get_export("_start").is_some() {
            if manifest.kind == Kind::Actor {
                return Err(ModuleError::Manifest(
                    "an actor must export liquid_call: a WASI command's instance ends when _start returns".into(),
                ));
            }
            Interface::WasiCommand
        } else {
            return Err(ModuleError::Exports(
                "the module exports neither _start (a WASI command) nor liquid_call (the Liquid ABI)".into(),
            ));
        };
        for m in module.imports().filter_map(|i| i.ty().memory().cloned()) {
            let min_mib = m.minimum().saturating_mul(64) >> 10;
            if min_mib > u64::from(manifest.limits.memory_mib) {
                return Err(ModuleError::Manifest(format!(
                    "the module needs {min_mib} MiB of memory at start; limits.memory_mib is {}",
                    manifest.limits.memory_mib
                )));
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| ModuleError::Import { module: "?".into(), name: error_chain(&e) })?;
        let wasi = module.imports().any(|i| i.module() == "wasi_snapshot_preview1");
        Ok(Compiled { hash, interface, wasi, module, pre })
    }

    fn store(
        &self,
        c: &Compiled,
        manifest: &Manifest,
        name: &str,
        inv: &Invocation,
        host: Box<dyn Host>,
    ) -> Store<State> {
        let limits = &manifest.limits;
        let cap = ((limits.memory_mib.min(self.cfg.memory_max_mib)) as usize) << 20;
        let output_max = (limits.output_kib as usize) << 10;
        let stdout = MemoryOutputPipe::new(output_max);
        let stderr = MemoryOutputPipe::new(STDERR_MAX);
        let wasi = c.wasi.then(|| wasi_ctx(name, inv, &stdout, &stderr));
        let state = State {
            wasi,
            stdout,
            stderr,
            memory_cap: cap,
            memory_denied: false,
            input: Vec::new(),
            output: Vec::new(),
            output_max,
            output_overflow: false,
            result: Vec::new(),
            host: Some(host),
            access: manifest.objects.clone(),
            now_ms: inv.now_ms,
            rng: blake3::Hasher::new_derive_key("liquid guest randomness")
                .update(&inv.seed.to_le_bytes())
                .finalize_xof(),
            depth: inv.depth,
            log_lines_left: LOG_LINES_PER_CALL,
            log_bytes_left: LOG_BYTES_PER_CALL,
            log_dropped: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store
    }

    fn arm(&self, store: &mut Store<State>, manifest: &Manifest, inv: Invocation, host: Box<dyn Host>) -> u64 {
        let fuel = manifest.limits.fuel;
        let _ = store.set_fuel(fuel);
        if self.cfg.wall_deadlines {
            store.set_epoch_deadline(manifest.limits.wall_ms.div_ceil(EPOCH_TICK.as_millis() as u64).max(1));
            store.epoch_deadline_trap();
        }
        let s = store.data_mut();
        s.input = inv.input;
        s.output.clear();
        s.output_overflow = false;
        (s.log_lines_left, s.log_bytes_left, s.log_dropped) = (LOG_LINES_PER_CALL, LOG_BYTES_PER_CALL, 0);
        s.result.clear();
        s.host = Some(host);
        s.now_ms = inv.now_ms;
        s.depth = inv.depth;
        s.rng =
            blake3::Hasher::new_derive_key("liquid guest randomness").update(&inv.seed.to_le_bytes()).finalize_xof();
        fuel
    }

    /// Runs one call on a fresh instance (a stateless function).
    pub fn invoke(&self, c: &Compiled, manifest: &Manifest, inv: Invocation, host: Box<dyn Host>) -> Outcome {
        let mut store = self.store(c, manifest, &manifest.name, &inv, Box::new(NoHost));
        let fuel = self.arm(&mut store, manifest, inv, host);
        let ran = match c.interface {
            Interface::WasiCommand => c
                .pre
                .instantiate(&mut store)
                .and_then(|i| i.get_typed_func::<(), ()>(&mut store, "_start"))
                .and_then(|f| f.call(&mut store, ()))
                .map(|()| 0),
            Interface::Liquid => c
                .pre
                .instantiate(&mut store)
                .and_then(|i| initialize(&mut store, &i).map(|()| i))
                .and_then(|i| i.get_typed_func::<(), i32>(&mut store, "liquid_call"))
                .and_then(|f| f.call(&mut store, ())),
        };
        finish(&mut store, c.interface, manifest, ran, fuel)
    }

    /// Starts an actor's long-lived instance (its start function runs now, without fuel
    /// accounting against any call).
    pub fn activate(&self, c: &Compiled, manifest: &Manifest, inv: Invocation) -> Result<Actor, InvokeError> {
        if c.interface != Interface::Liquid {
            return Err(InvokeError::Invalid("an actor must use the Liquid ABI".into()));
        }
        let mut store = self.store(c, manifest, &manifest.name, &inv, Box::new(NoHost));
        let _ = store.set_fuel(manifest.limits.fuel);
        if self.cfg.wall_deadlines {
            store.set_epoch_deadline(manifest.limits.wall_ms.div_ceil(EPOCH_TICK.as_millis() as u64).max(1));
            store.epoch_deadline_trap();
        }
        let instance = c
            .pre
            .instantiate(&mut store)
            .and_then(|i| initialize(&mut store, &i).map(|()| i))
            .map_err(|e| classify(&e, store.data(), manifest))?;
        let call = instance
            .get_typed_func::<(), i32>(&mut store, "liquid_call")
            .map_err(|e| InvokeError::Invalid(error_chain(&e)))?;
        let memory = instance.get_memory(&mut store, "memory");
        Ok(Actor::new(store, call, memory, instance, c.hash))
    }

    /// Brings back an actor saved by [`Actor::write_snapshot`], here or on another node: a
    /// new instance of `c` whose memory and exported mutable globals are the snapshot's.
    ///
    /// `_initialize` does not run (the snapshot's memory is already initialized). Refused,
    /// with no actor returned, when the snapshot is of another module, claims more memory
    /// than `manifest.limits.memory_mib` (checked before anything is allocated), or is
    /// truncated or altered (its checksum covers the header and the memory). See
    /// [`crate::snapshot`] for the format and why memory plus exported globals is the whole
    /// state between calls.
    pub fn restore(
        &self,
        c: &Compiled,
        manifest: &Manifest,
        inv: Invocation,
        r: &mut impl std::io::Read,
    ) -> Result<Actor, SnapshotError> {
        if c.interface != Interface::Liquid {
            return Err(SnapshotError::Instance(InvokeError::Invalid("an actor must use the Liquid ABI".into())));
        }
        let mut reader = snapshot::Reader::new(r);
        let header = reader.header()?;
        if header.hash != c.hash {
            return Err(SnapshotError::WrongModule { snapshot: header.hash, module: c.hash });
        }
        let limit = u64::from(manifest.limits.memory_mib.min(self.cfg.memory_max_mib)) << 20;
        if header.memory_bytes > limit {
            return Err(SnapshotError::MemoryTooLarge { bytes: header.memory_bytes, limit });
        }
        let mut store = self.store(c, manifest, &manifest.name, &inv, Box::new(NoHost));
        let _ = store.set_fuel(manifest.limits.fuel);
        if self.cfg.wall_deadlines {
            store.set_epoch_deadline(manifest.limits.wall_ms.div_ceil(EPOCH_TICK.as_millis() as u64).max(1));
            store.epoch_deadline_trap();
        }
        let instance =
            c.pre.instantiate(&mut store).map_err(|e| SnapshotError::Instance(classify(&e, store.data(), manifest)))?;
        let call = instance
            .get_typed_func::<(), i32>(&mut store, "liquid_call")
            .map_err(|e| SnapshotError::Instance(InvokeError::Invalid(error_chain(&e))))?;
        let memory = instance.get_memory(&mut store, "memory");
        let want = usize::try_from(header.memory_bytes)
            .map_err(|_| SnapshotError::MemoryTooLarge { bytes: header.memory_bytes, limit })?;
        let globals = mutable_globals(&mut store, &instance);
        if globals.len() != header.globals.len() {
            return Err(SnapshotError::Corrupt(format!(
                "the snapshot holds {} exported mutable globals; the module has {}",
                header.globals.len(),
                globals.len()
            )));
        }
        set_globals(&mut store, &globals, &header.globals)?;
        match memory {
            Some(mem) => {
                let have = mem.data_size(&store);
                if want < have {
                    return Err(SnapshotError::Corrupt(format!(
                        "the snapshot holds {want} bytes of memory; the module starts with {have}"
                    )));
                }
                let page = usize::try_from(mem.page_size(&store)).unwrap_or(usize::MAX);
                if (want - have) % page != 0 {
                    return Err(SnapshotError::Corrupt(format!("{want} bytes is not a whole number of pages")));
                }
                mem.grow(&mut store, ((want - have) / page) as u64).map_err(|e| {
                    SnapshotError::Instance(InvokeError::OutOfMemory(format!(
                        "growing to the snapshot's {want} bytes: {}",
                        error_chain(&e)
                    )))
                })?;
                reader.memory(&mut mem.data_mut(&mut store)[..want])?;
            }
            None if want == 0 => reader.memory(&mut [])?,
            None => return Err(SnapshotError::Corrupt("the snapshot holds memory; the module has none".into())),
        }
        Ok(Actor::new(store, call, memory, instance, c.hash))
    }

    /// Runs one call on an actor's instance; its memory persists to the next call. A call
    /// that traps or times out poisons the instance (its memory may be half-updated): later
    /// calls fail until the actor is activated again.
    pub fn invoke_actor(
        &self,
        actor: &mut Actor,
        manifest: &Manifest,
        inv: Invocation,
        host: Box<dyn Host>,
    ) -> Outcome {
        if let Some(why) = &actor.poisoned {
            return Outcome {
                result: Err(InvokeError::Unavailable(format!("the actor's instance failed earlier: {why}"))),
                fuel: 0,
            };
        }
        let fuel = self.arm(&mut actor.store, manifest, inv, host);
        let ran = actor.call.call(&mut actor.store, ());
        let out = finish(&mut actor.store, Interface::Liquid, manifest, ran, fuel);
        if let Err(e) = &out.result
            && !matches!(e, InvokeError::Failed(_) | InvokeError::OutputTooLarge(_))
        {
            actor.poisoned = Some(e.to_string());
        }
        out
    }
}

/// An actor's live instance.
///
/// Writes to its memory are tracked between checkpoints (see `dirty.rs`): after
/// [`Actor::mark_base`] or [`Actor::write_delta`], the next [`Actor::write_delta`] carries
/// only the pages written since.
pub struct Actor {
    store: Store<State>,
    call: wasmtime::TypedFunc<(), i32>,
    memory: Option<Memory>,
    instance: Instance,
    hash: ModuleHash,
    poisoned: Option<String>,
    tracker: Tracker,
    tracking_disabled: bool,
}

impl Drop for Actor {
    fn drop(&mut self) {
        // SAFETY: the instance is alive (the store drops after this) and no call runs (we
        // hold it by &mut). The pooling allocator reuses the slot and expects it writable.
        #[allow(unsafe_code)]
        unsafe {
            self.tracker.disarm()
        };
    }
}

impl Actor {
    fn new(
        mut store: Store<State>,
        call: wasmtime::TypedFunc<(), i32>,
        memory: Option<Memory>,
        instance: Instance,
        hash: ModuleHash,
    ) -> Actor {
        let tracker = Tracker::new(store.data().memory_cap);
        #[cfg(target_os = "linux")]
        {
            use wasmtime::unix::StoreExt;
            // SAFETY: the handler is async-signal-safe: it reads atomics, sets a bit and
            // calls mprotect, and only for addresses inside the range it was armed with.
            #[allow(unsafe_code)]
            unsafe {
                store.set_signal_handler(tracker.handler())
            };
        }
        let mut actor =
            Actor { store, call, memory, instance, hash, poisoned: None, tracker, tracking_disabled: false };
        actor.track_from_here();
        actor
    }

    /// Starts tracking writes afresh: the current memory is the base.
    fn track_from_here(&mut self) {
        if self.tracking_disabled {
            return;
        }
        let (base, size) = self.memory_range();
        // SAFETY: base/size are the live instance's accessible memory; no call is running.
        #[allow(unsafe_code)]
        unsafe {
            self.tracker.arm(base, size)
        };
    }

    fn memory_range(&self) -> (*mut u8, usize) {
        match self.memory {
            Some(m) => (m.data_ptr(&self.store), m.data_size(&self.store)),
            None => (std::ptr::null_mut(), 0),
        }
    }

    /// Whether writes are being tracked (false on platforms without tracking, or when
    /// `mprotect` was refused): then every delta carries every page.
    pub fn tracking_writes(&self) -> bool {
        self.tracker.armed()
    }

    /// Turns write tracking off for good: every later delta carries every page. For
    /// baselines (the call without tracking's faults) and for platforms where `mprotect`
    /// misbehaves.
    pub fn disable_write_tracking(&mut self) {
        // SAFETY: the instance is live and no call runs (we hold it by &mut).
        #[allow(unsafe_code)]
        unsafe {
            self.tracker.disarm()
        };
        self.tracking_disabled = true;
    }

    /// Write faults taken so far (a page's first write after each checkpoint).
    pub fn write_faults(&self) -> u64 {
        self.tracker.faults()
    }

    /// The size of its linear memory, bytes.
    pub fn memory_size(&self) -> usize {
        self.memory.map(|m| m.data_size(&self.store)).unwrap_or(0)
    }

    /// The hash of the module it runs.
    pub fn module(&self) -> ModuleHash {
        self.hash
    }

    /// Writes its state between calls (memory and exported mutable globals) to `w`, for
    /// [`Runtime::restore`] here or on another node. Memory streams from the instance through
    /// zstd (level 1) in chunks; no copy of it is made. A poisoned actor is refused: its
    /// memory may be half-updated. Format: [`crate::snapshot`].
    ///
    /// Write tracking is left alone: if the snapshot becomes the base of a delta chain, call
    /// [`Actor::mark_base`] after it is durable, so the next delta holds only later writes.
    /// (Forgetting costs bytes, never state: the next delta then also carries pages the base
    /// already holds.)
    pub fn write_snapshot(&mut self, w: &mut impl std::io::Write) -> Result<SnapshotInfo, SnapshotError> {
        let header = self.header()?;
        let memory = self.memory.map(|m| m.data(&self.store)).unwrap_or(&[]);
        snapshot::write(w, &header, memory)
    }

    /// Declares the current state a checkpoint's base: tracking starts afresh, and the next
    /// [`Actor::write_delta`] carries only pages written after this.
    pub fn mark_base(&mut self) {
        self.track_from_here();
    }

    /// The header of a snapshot or delta of the current state; refused if poisoned.
    fn header(&mut self) -> Result<snapshot::Header, SnapshotError> {
        if let Some(why) = &self.poisoned {
            return Err(SnapshotError::Poisoned(why.clone()));
        }
        let mut globals = Vec::new();
        for (name, global) in mutable_globals(&mut self.store, &self.instance) {
            let value = match global.get(&mut self.store) {
                Val::I32(v) => GlobalValue::I32(v),
                Val::I64(v) => GlobalValue::I64(v),
                Val::F32(v) => GlobalValue::F32(v),
                Val::F64(v) => GlobalValue::F64(v),
                other => {
                    return Err(SnapshotError::Unsupported(format!(
                        "global {name:?} holds a {:?}, which a snapshot cannot carry",
                        other.ty(&self.store).ok()
                    )));
                }
            };
            globals.push((name, value));
        }
        let memory_bytes = self.memory.map(|m| m.data_size(&self.store)).unwrap_or(0) as u64;
        Ok(snapshot::Header { hash: self.hash, memory_bytes, globals })
    }

    /// How many bytes of pages the next [`Actor::write_delta`] would carry (before
    /// compression), or `None` if every page counts as written (tracking is off). A store
    /// uses it to choose between a delta and a full snapshot.
    pub fn written_bytes(&self) -> Option<u64> {
        let (_, size) = self.memory_range();
        self.tracker.written_bytes(size)
    }

    /// Writes the changes since the last checkpoint (snapshot or delta) as one delta record,
    /// `link` naming its base and place: the pages written since (every page if tracking is
    /// off), the memory's size and every exported mutable global. Format:
    /// [`crate::snapshot`]'s deltas. Tracking starts afresh after it.
    ///
    /// If writing fails the pages taken are lost to tracking: the next checkpoint must be a
    /// full snapshot (the node drops the instance instead, which comes to the same).
    pub fn write_delta(&mut self, w: &mut impl std::io::Write, link: &Link) -> Result<DeltaInfo, SnapshotError> {
        let header = self.header()?;
        let (base, size) = self.memory_range();
        let page = self.tracker.page_size();
        // SAFETY: base/size are the live instance's memory; no call is running.
        #[allow(unsafe_code)]
        let written = if self.tracking_disabled { Written::All } else { unsafe { self.tracker.take(base, size) } };
        let indices: Vec<u32> = match written {
            Written::Pages(p) => p,
            Written::All => (0..(size / page) as u32).collect(),
        };
        let memory = self.memory.map(|m| m.data(&self.store)).unwrap_or(&[]);
        let bytes = snapshot::encode_delta(link, &header, page, memory, &indices)?;
        w.write_all(&bytes)?;
        Ok(DeltaInfo {
            pages: indices.len(),
            page_size: page,
            memory_bytes: size as u64,
            written_bytes: bytes.len() as u64,
        })
    }

    /// Applies a delta written by [`Actor::write_delta`] (here or on another node) on top of
    /// this actor's state, which must be the state `expect` names (its base, and the delta
    /// before it). The delta is verified whole before anything changes; a delta of another
    /// module or out of sequence is refused. `memory_limit` bounds the memory it may claim.
    ///
    /// Write tracking is off afterwards (re-protecting the whole memory after each of
    /// thousands of deltas made restores slow): call [`Actor::mark_base`] once the last delta
    /// is applied, or the next delta carries every page.
    pub fn apply_delta(&mut self, bytes: &[u8], expect: &Link, memory_limit: u64) -> Result<DeltaInfo, SnapshotError> {
        if let Some(why) = &self.poisoned {
            return Err(SnapshotError::Poisoned(why.clone()));
        }
        let d = snapshot::decode_delta(bytes, memory_limit)?;
        if d.header.hash != self.hash {
            return Err(SnapshotError::WrongModule { snapshot: d.header.hash, module: self.hash });
        }
        if d.link != *expect {
            return Err(SnapshotError::Corrupt(format!(
                "the delta is number {} after base {}; expected number {} after base {}",
                d.link.seq,
                hex::encode(&d.link.base[..8]),
                expect.seq,
                hex::encode(&expect.base[..8])
            )));
        }
        let globals = mutable_globals(&mut self.store, &self.instance);
        if globals.len() != d.header.globals.len() {
            return Err(SnapshotError::Corrupt(format!(
                "the delta holds {} exported mutable globals; the module has {}",
                d.header.globals.len(),
                globals.len()
            )));
        }
        let want = usize::try_from(d.header.memory_bytes)
            .map_err(|_| SnapshotError::MemoryTooLarge { bytes: d.header.memory_bytes, limit: memory_limit })?;
        // Host writes outside a call: tracking must be off (see crate::dirty).
        // SAFETY: the instance is live and no call runs.
        #[allow(unsafe_code)]
        unsafe {
            self.tracker.disarm()
        };
        let result = self.write_delta_pages(&d, want, &globals);
        if let Err(e) = &result {
            self.poisoned = Some(format!("a delta failed half-way: {e}"));
        }
        result.map(|()| DeltaInfo {
            pages: d.indices.len(),
            page_size: d.page,
            memory_bytes: d.header.memory_bytes,
            written_bytes: bytes.len() as u64,
        })
    }

    fn write_delta_pages(
        &mut self,
        d: &snapshot::Delta,
        want: usize,
        globals: &[(String, Global)],
    ) -> Result<(), SnapshotError> {
        match self.memory {
            Some(mem) => {
                let have = mem.data_size(&self.store);
                let page = usize::try_from(mem.page_size(&self.store)).unwrap_or(usize::MAX);
                if want < have || !(want - have).is_multiple_of(page) {
                    return Err(SnapshotError::Corrupt(format!(
                        "the delta's memory of {want} bytes cannot follow the actor's {have}"
                    )));
                }
                if want > have {
                    mem.grow(&mut self.store, ((want - have) / page) as u64).map_err(|e| {
                        SnapshotError::Instance(InvokeError::OutOfMemory(format!(
                            "growing to the delta's {want} bytes: {}",
                            error_chain(&e)
                        )))
                    })?;
                }
                let data = mem.data_mut(&mut self.store);
                for (n, &i) in d.indices.iter().enumerate() {
                    let at = i as usize * d.page;
                    let dst = data
                        .get_mut(at..at + d.page)
                        .ok_or_else(|| SnapshotError::Corrupt(format!("page {i} lies past the memory")))?;
                    dst.copy_from_slice(&d.data[n * d.page..(n + 1) * d.page]);
                }
            }
            None if want == 0 && d.indices.is_empty() => {}
            None => return Err(SnapshotError::Corrupt("the delta holds memory; the module has none".into())),
        }
        set_globals(&mut self.store, globals, &d.header.globals)
    }
}

/// Sets exported mutable globals from saved values, by name.
fn set_globals(
    store: &mut Store<State>,
    globals: &[(String, Global)],
    values: &[(String, GlobalValue)],
) -> Result<(), SnapshotError> {
    for (name, value) in values {
        let global =
            globals.iter().find(|(n, _)| n == name).map(|(_, g)| *g).ok_or_else(|| {
                SnapshotError::Corrupt(format!("the module exports no mutable global named {name:?}"))
            })?;
        let val = match *value {
            GlobalValue::I32(v) => Val::I32(v),
            GlobalValue::I64(v) => Val::I64(v),
            GlobalValue::F32(v) => Val::F32(v),
            GlobalValue::F64(v) => Val::F64(v),
        };
        global
            .set(&mut *store, val)
            .map_err(|e| SnapshotError::Corrupt(format!("global {name:?}: {}", error_chain(&e))))?;
    }
    Ok(())
}

/// The instance's exported mutable globals, in export order.
fn mutable_globals(store: &mut Store<State>, instance: &Instance) -> Vec<(String, Global)> {
    let exports: Vec<(String, Global)> = instance
        .exports(&mut *store)
        .filter_map(|e| {
            let name = e.name().to_string();
            e.into_global().map(|g| (name, g))
        })
        .collect();
    exports.into_iter().filter(|(_, g)| g.ty(&*store).mutability() == Mutability::Var).collect()
}

fn finish(
    store: &mut Store<State>,
    interface: Interface,
    manifest: &Manifest,
    ran: wasmtime::Result<i32>,
    fuel: u64,
) -> Outcome {
    let used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    let s = store.data_mut();
    let mut host = s.host.take().unwrap_or_else(|| Box::new(NoHost));
    s.host = Some(Box::new(NoHost));
    let stderr = s.stderr.contents();
    for line in String::from_utf8_lossy(&stderr).lines().take(100) {
        host.log(Level::Info, line);
    }
    if s.log_dropped > 0 {
        let line = format!(
            "dropped {} more log lines of this call: a call logs at most {LOG_LINES_PER_CALL} lines and {} KiB",
            s.log_dropped,
            LOG_BYTES_PER_CALL >> 10
        );
        host.log(Level::Warn, &line);
        host.logs_dropped(s.log_dropped);
    }
    let stdout = s.stdout.contents();
    let result = match (interface, ran) {
        (_, Err(e)) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(0)) if interface == Interface::WasiCommand => Ok(stdout.to_vec()),
            Some(I32Exit(code)) => Err(InvokeError::Exit { code: *code, stderr: tail(&stderr) }),
            None => Err(classify(&e, s, manifest)),
        },
        (Interface::WasiCommand, Ok(_)) => Ok(stdout.to_vec()),
        (Interface::Liquid, Ok(0)) => Ok(std::mem::take(&mut s.output)),
        (Interface::Liquid, Ok(_)) => Err(InvokeError::Failed(String::from_utf8_lossy(&s.output).into_owned())),
    };
    let result = match result {
        Err(_) if s.output_overflow || stdout.len() >= s.output_max && interface == Interface::WasiCommand => {
            Err(InvokeError::OutputTooLarge(manifest.limits.output_kib))
        }
        other => other,
    };
    Outcome { result, fuel: used }
}

/// Runs a reactor's `_initialize` (wasi-libc's constructors), if it exports one: once per
/// instance, before the first `liquid_call`.
fn initialize(store: &mut Store<State>, instance: &wasmtime::Instance) -> wasmtime::Result<()> {
    match instance.get_typed_func::<(), ()>(&mut *store, "_initialize") {
        Ok(f) => f.call(store, ()),
        Err(_) => Ok(()),
    }
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim_end();
    let start = s.char_indices().rev().nth(499).map(|(i, _)| i).unwrap_or(0);
    s[start..].to_string()
}

fn classify(e: &wasmtime::Error, s: &State, manifest: &Manifest) -> InvokeError {
    if s.memory_denied {
        return InvokeError::OutOfMemory(format!(
            "it tried to grow its memory past limits.memory_mib = {}",
            manifest.limits.memory_mib
        ));
    }
    if s.output_overflow {
        return InvokeError::OutputTooLarge(manifest.limits.output_kib);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            InvokeError::Timeout(format!("used all its fuel (limits.fuel = {})", manifest.limits.fuel))
        }
        Some(Trap::Interrupt) => InvokeError::Timeout(format!("ran past limits.wall_ms = {}", manifest.limits.wall_ms)),
        Some(Trap::StackOverflow) => InvokeError::Trap("stack overflow (too deep a recursion)".into()),
        Some(t) => InvokeError::Trap(t.to_string()),
        None => InvokeError::Trap(error_chain(e)),
    }
}

/// Whether `bytes` can be WebAssembly text (UTF-8 that starts, after blanks, with a form
/// or a comment); anything else is refused without handing it to the text parser.
fn looks_like_wat(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|t| {
        let t = t.trim_start();
        t.starts_with('(') || t.starts_with(";;") || t.starts_with("(;")
    })
}

/// A text-parser error without the source lines it quotes: an upload's error must not echo
/// the file's contents back (issue 17: a manifest pointing at /etc/passwd did).
fn without_source(message: &str) -> String {
    message
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with('|') || t.split_once(" |").is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit())))
        })
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn error_chain(e: &wasmtime::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        s.push_str(": ");
        s.push_str(&cause.to_string());
    }
    s
}

fn wasmtime_version() -> &'static str {
    "48"
}

/// A host for calls made outside an invocation (an actor's start function).
struct NoHost;

impl Host for NoHost {
    fn object(&mut self, _call: ObjCall) -> Result<Json, AbiError> {
        Err(AbiError::new(abi::ERR_UNAVAILABLE, "objects are not available outside a call"))
    }
    fn invoke(&mut self, _f: &str, _i: Vec<u8>, _d: u32) -> Result<Vec<u8>, AbiError> {
        Err(AbiError::new(abi::ERR_UNAVAILABLE, "calls are not available outside a call"))
    }
    fn log(&mut self, _level: Level, _line: &str) {}
}

/// Per-store state: WASI, limits and the Liquid ABI's buffers.
struct State {
    wasi: Option<WasiP1Ctx>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    memory_cap: usize,
    memory_denied: bool,
    input: Vec<u8>,
    output: Vec<u8>,
    output_max: usize,
    output_overflow: bool,
    result: Vec<u8>,
    host: Option<Box<dyn Host>>,
    access: crate::manifest::ObjectAccess,
    now_ms: i64,
    rng: blake3::OutputReader,
    depth: u32,
    /// Log lines and bytes this call may still write, and how many it wrote past them.
    log_lines_left: u32,
    log_bytes_left: usize,
    log_dropped: u64,
}

impl ResourceLimiter for State {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            // A trap rather than a failed grow: the guest's allocator would abort anyway,
            // and the caller learns the real reason.
            self.memory_denied = true;
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

struct FixedWall(Duration);
impl HostWallClock for FixedWall {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

struct FixedMono(u64);
impl HostMonotonicClock for FixedMono {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.0
    }
}

/// The largest stderr kept from one call (it goes to the function's log).
const STDERR_MAX: usize = 64 << 10;
/// The longest line `liquid.log` keeps (the rest is cut).
pub const LOG_LINE_BYTES_MAX: usize = 4096;
/// The most `liquid.log` lines one call writes; later ones are dropped and counted, and the
/// call's log ends with one line saying how many (issue 17: one call of a module logging in
/// a loop wrote 794 MiB to the agent's log in 5 s).
pub const LOG_LINES_PER_CALL: u32 = 1000;
/// The most `liquid.log` bytes one call writes (the same rule as lines).
pub const LOG_BYTES_PER_CALL: usize = 256 << 10;

/// WASI's `poll_oneoff`, without blocking: every subscription is reported ready at once.
///
/// Why: wasmtime's own implementation sleeps the calling thread for a clock subscription, and
/// a thread inside a host call cannot be interrupted by the epoch, so `wall_ms` did not
/// bound a module sleeping for 120 s (issue 17), and such calls held executor threads that
/// other functions needed. Inside a call time does not pass anyway (the WASI clocks read the
/// call's start, see `wasi_ctx`), so a sleep that returns at once is what the guest would
/// observe; a guest that waits for its clock to move spins until `wall_ms` or its fuel ends
/// it. The only readable or writable descriptors are the in-memory stdio pipes, which never
/// block.
fn add_poll_oneoff(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    /// Bytes of one `subscription` and one `event` in WASI preview 1.
    const SUB: usize = 48;
    const EVENT: usize = 32;
    const ERRNO_INVAL: i32 = 28;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut c: Ctx<'_>, subs: i32, events: i32, n: i32, nevents: i32| -> wasmtime::Result<i32> {
            let mem = memory(&mut c)?;
            let data = mem.data_mut(&mut c);
            let Ok(count) = usize::try_from(n) else { return Ok(ERRNO_INVAL) };
            if count == 0 {
                return Ok(ERRNO_INVAL);
            }
            let in_len = i32::try_from(count.saturating_mul(SUB)).unwrap_or(i32::MAX);
            let subscriptions = abi::slice(data, subs, in_len)?.to_vec();
            let out_len = i32::try_from(count.saturating_mul(EVENT)).unwrap_or(i32::MAX);
            let out = abi::slice_mut(data, events, out_len)?;
            for (sub, event) in subscriptions.chunks_exact(SUB).zip(out.chunks_exact_mut(EVENT)) {
                event.fill(0);
                event[..8].copy_from_slice(&sub[..8]); // userdata
                event[10] = sub[8]; // the event's type is the subscription's tag
            }
            abi::slice_mut(data, nevents, 4)?.copy_from_slice(&(n as u32).to_le_bytes());
            Ok(0)
        },
    )?;
    Ok(())
}

fn wasi_ctx(name: &str, inv: &Invocation, stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) -> WasiP1Ctx {
    let mut random = vec![0u8; 4096];
    blake3::Hasher::new_derive_key("liquid wasi randomness")
        .update(&inv.seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut random);
    let ms = u64::try_from(inv.now_ms).unwrap_or(0);
    let mut b = WasiCtxBuilder::new();
    b.stdin(MemoryInputPipe::new(inv.input.clone()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .args(&[name])
        .wall_clock(FixedWall(Duration::from_millis(ms)))
        .monotonic_clock(FixedMono(ms.saturating_mul(1_000_000)))
        .secure_random(wasmtime_wasi::Deterministic::new(random.clone()))
        .insecure_random(wasmtime_wasi::Deterministic::new(random))
        .insecure_random_seed(u128::from(inv.seed));
    b.build_p1()
}

type Ctx<'a> = Caller<'a, State>;

fn memory(caller: &mut Ctx<'_>) -> wasmtime::Result<Memory> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::Error::msg("the module exports no memory named \"memory\""))
}

/// Copies `bytes` into guest memory at `ptr` (at most `len`), returning how many.
fn copy_out(caller: &mut Ctx<'_>, ptr: i32, len: i32, from_result: bool) -> wasmtime::Result<i32> {
    let mem = memory(caller)?;
    let (data, state) = mem.data_and_store_mut(caller);
    let src: &[u8] = if from_result { &state.result } else { &state.input };
    let want = usize::try_from(len).unwrap_or(0).min(src.len());
    let dst = abi::slice_mut(data, ptr, i32::try_from(want).unwrap_or(i32::MAX))?;
    dst.copy_from_slice(&src[..want]);
    Ok(i32::try_from(want).unwrap_or(i32::MAX))
}

/// Sets the result buffer from a host call's answer and returns the ABI's i64.
fn answer(state: &mut State, r: Result<Vec<u8>, AbiError>) -> i64 {
    match r {
        Ok(bytes) => {
            let n = bytes.len() as i64;
            state.result = bytes;
            n
        }
        Err(e) => {
            let mut msg = e.message;
            if msg.len() > abi::MESSAGE_MAX {
                let cut = (0..=abi::MESSAGE_MAX).rev().find(|&i| msg.is_char_boundary(i)).unwrap_or(0);
                msg.truncate(cut);
            }
            state.result = msg.into_bytes();
            i64::from(e.code)
        }
    }
}

/// Decodes string arguments, runs `f` with the host, and answers.
fn with_strings<const N: usize>(
    caller: &mut Ctx<'_>,
    args: [(i32, i32); N],
    f: impl FnOnce(&mut State, [&str; N]) -> Result<Vec<u8>, AbiError>,
) -> wasmtime::Result<i64> {
    let mem = memory(caller)?;
    let (data, state) = mem.data_and_store_mut(caller);
    let mut owned: Vec<String> = Vec::with_capacity(N);
    for (ptr, len) in args {
        match abi::string(data, ptr, len)? {
            Ok(s) => owned.push(s.to_string()),
            Err(e) => return Ok(answer(state, Err(e))),
        }
    }
    let strs: [&str; N] = std::array::from_fn(|i| owned[i].as_str());
    let r = f(state, strs);
    Ok(answer(state, r))
}

fn run_object(state: &mut State, call: Result<ObjCall, AbiError>) -> Result<Vec<u8>, AbiError> {
    let call = call?;
    let path = match &call {
        ObjCall::Get { path, .. } => path.clone(),
        _ => None,
    };
    let is_get = matches!(call, ObjCall::Get { .. });
    let host = state.host.as_mut().ok_or_else(|| AbiError::new(abi::ERR_UNAVAILABLE, "no host"))?;
    let value = host.object(call)?;
    if !is_get {
        return Ok(if value.is_null() { Vec::new() } else { value.to_string().into_bytes() });
    }
    let at = match &path {
        Some(p) => {
            abi::value_at(&value, p).ok_or_else(|| AbiError::new(abi::ERR_NOT_FOUND, format!("no value at {p}")))?
        }
        None => &value,
    };
    Ok(at.to_string().into_bytes())
}

fn add_liquid(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap("liquid", "input_len", |c: Ctx<'_>| -> i32 {
        i32::try_from(c.data().input.len()).unwrap_or(i32::MAX)
    })?;
    linker.func_wrap("liquid", "input_read", |mut c: Ctx<'_>, ptr: i32, len: i32| copy_out(&mut c, ptr, len, false))?;
    linker.func_wrap("liquid", "result_read", |mut c: Ctx<'_>, ptr: i32, len: i32| copy_out(&mut c, ptr, len, true))?;
    linker.func_wrap("liquid", "output", |mut c: Ctx<'_>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
        let mem = memory(&mut c)?;
        let (data, state) = mem.data_and_store_mut(&mut c);
        let bytes = abi::slice(data, ptr, len)?;
        if state.output.len() + bytes.len() > state.output_max {
            state.output_overflow = true;
            return Ok(abi::ERR_TOO_LARGE);
        }
        state.output.extend_from_slice(bytes);
        Ok(0)
    })?;
    linker.func_wrap(
        "liquid",
        "obj_get",
        |mut c: Ctx<'_>, np: i32, nl: i32, pp: i32, pl: i32| -> wasmtime::Result<i64> {
            with_strings(&mut c, [(np, nl), (pp, pl)], |s, [name, path]| {
                let call = abi::obj_get(name, path, &s.access);
                run_object(s, call)
            })
        },
    )?;
    linker.func_wrap(
        "liquid",
        "obj_set",
        |mut c: Ctx<'_>, np: i32, nl: i32, pp: i32, pl: i32, jp: i32, jl: i32| -> wasmtime::Result<i64> {
            with_strings(&mut c, [(np, nl), (pp, pl), (jp, jl)], |s, [name, path, json]| {
                let call = abi::obj_set(name, path, json, &s.access);
                run_object(s, call)
            })
        },
    )?;
    linker.func_wrap(
        "liquid",
        "obj_inc",
        |mut c: Ctx<'_>, np: i32, nl: i32, pp: i32, pl: i32, by: i64| -> wasmtime::Result<i64> {
            with_strings(&mut c, [(np, nl), (pp, pl)], |s, [name, path]| {
                let call = abi::obj_inc(name, path, by, &s.access);
                run_object(s, call)
            })
        },
    )?;
    linker.func_wrap(
        "liquid",
        "obj_del",
        |mut c: Ctx<'_>, np: i32, nl: i32, pp: i32, pl: i32| -> wasmtime::Result<i64> {
            with_strings(&mut c, [(np, nl), (pp, pl)], |s, [name, path]| {
                let call = abi::obj_del(name, path, &s.access);
                run_object(s, call)
            })
        },
    )?;
    linker.func_wrap(
        "liquid",
        "obj_apply",
        |mut c: Ctx<'_>, np: i32, nl: i32, op: i32, ol: i32| -> wasmtime::Result<i64> {
            with_strings(&mut c, [(np, nl), (op, ol)], |s, [name, ops]| {
                let call = abi::obj_apply(name, ops, &s.access);
                run_object(s, call)
            })
        },
    )?;
    linker.func_wrap("liquid", "obj_list", |mut c: Ctx<'_>, pp: i32, pl: i32| -> wasmtime::Result<i64> {
        with_strings(&mut c, [(pp, pl)], |s, [prefix]| {
            let call = abi::obj_list(prefix, &s.access);
            run_object(s, call)
        })
    })?;
    linker.func_wrap("liquid", "log", |mut c: Ctx<'_>, level: i32, ptr: i32, len: i32| -> wasmtime::Result<()> {
        let mem = memory(&mut c)?;
        let (data, state) = mem.data_and_store_mut(&mut c);
        let bytes = abi::slice(data, ptr, len)?;
        let bytes = &bytes[..bytes.len().min(LOG_LINE_BYTES_MAX)];
        if state.log_lines_left == 0 || state.log_bytes_left < bytes.len() {
            state.log_dropped += 1;
            return Ok(());
        }
        state.log_lines_left -= 1;
        state.log_bytes_left -= bytes.len();
        let line = String::from_utf8_lossy(bytes).into_owned();
        if let Some(h) = state.host.as_mut() {
            h.log(Level::from_guest(level), &line);
        }
        Ok(())
    })?;
    linker.func_wrap("liquid", "now_ms", |c: Ctx<'_>| -> i64 { c.data().now_ms })?;
    linker.func_wrap("liquid", "random", |mut c: Ctx<'_>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
        let mem = memory(&mut c)?;
        let (data, state) = mem.data_and_store_mut(&mut c);
        let dst = abi::slice_mut(data, ptr, len)?;
        state.rng.fill(dst);
        Ok(0)
    })?;
    linker.func_wrap(
        "liquid",
        "call",
        |mut c: Ctx<'_>, np: i32, nl: i32, ip: i32, il: i32| -> wasmtime::Result<i64> {
            let mem = memory(&mut c)?;
            let (data, state) = mem.data_and_store_mut(&mut c);
            let input = abi::slice(data, ip, il)?.to_vec();
            let name = match abi::string(data, np, nl)? {
                Ok(n) => n.to_string(),
                Err(e) => return Ok(answer(state, Err(e))),
            };
            let depth = state.depth + 1;
            let r = if depth > abi::CALL_DEPTH_MAX {
                Err(AbiError::new(abi::ERR_FAILED, format!("calls nest at most {} deep", abi::CALL_DEPTH_MAX)))
            } else {
                match state.host.as_mut() {
                    Some(h) => h.invoke(&name, input, depth),
                    None => Err(AbiError::new(abi::ERR_UNAVAILABLE, "no host")),
                }
            };
            Ok(answer(state, r))
        },
    )?;
    Ok(())
}
