//! Functions benchmark: the executor, cold starts, the HTTP path, forwarding and an agent's
//! memory, each against a baseline measured in the same run.
//!
//! Run with `cargo bench -p node-agent --bench functions`. Cargo builds the `liquid` binary
//! (bench profile) first and hands its path to this binary (`CARGO_BIN_EXE_liquid`).
//!
//! 1. **Warm invoke, in process.** `wasm_host::runtime::Runtime::invoke` of
//!    `wasm-host/tests/guests/echo.wat` (a fresh instance per call; pooling allocator, WASI
//!    context, fuel, epoch deadline: the agent's `RuntimeConfig::default()`) against raw
//!    wasmtime: an `Engine` with the same pooling configuration, a `Module`, an `InstancePre`,
//!    and per call a minimal `Store` (input and output buffers), instantiate, call. Two more
//!    raw variants attribute the difference: + fuel and epoch deadline, and + a fresh WASI p1
//!    context built per call like the runtime builds it. Interleaved rounds.
//! 2. **Cold start from a cached artifact.** `ModuleStore::load` in a fresh `ModuleStore`
//!    over a directory holding the module's artifact (so it is deserialized, not compiled) and
//!    the first invoke, against `Runtime::compile` of the bytes and the first invoke. For echo
//!    and the committed `examples/functions/hello/hello.wasm`.
//! 3. **HTTP invoke** on one real agent (`liquid agent --dev` on loopback):
//!    `POST /v1/functions/{name}/invoke` of echo with reqwest (keep-alive), 1 client and
//!    `LIQUID_BENCH_FN_CLIENTS` (64) concurrent clients, each with its own connection.
//! 4. **Forwarded invoke.** Two agents in a QUIC mesh on loopback, A and B; a function pinned
//!    to B (`[placement] node = "<B>"`) invoked through A's API against the same function
//!    invoked through B's own API. Interleaved rounds, one client.
//! 5. **Memory of an agent with 100 functions.** VmRSS (`/proc/<pid>/status`) of an idle
//!    agent, then after deploying `LIQUID_BENCH_FN_MANY` (100) distinct modules (echo with a
//!    distinct exported global) and invoking each once.
//!
//! Clients and agents share this machine's cores, so HTTP numbers include the client's work.
//! Every invoke's output is checked against its input.

// A bench binary, not library code: it reads the clock, spawns processes, and has no public
// API to document.
#![allow(missing_docs)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::Value;
use support::{Agent, env_usize, liquid_cmd, load_average};
use wasm_host::Manifest;
use wasm_host::abi::{self, AbiError, Level, ObjCall};
use wasm_host::runtime::{Host, Invocation, Runtime, RuntimeConfig};
use wasm_host::store::{ModuleStore, Source};
use wasmtime::{
    Caller, Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig, Store,
};

const ECHO_WAT: &str = include_str!("../../wasm-host/tests/guests/echo.wat");
/// The input of every echo call.
const INPUT: &[u8] = b"hello, liquid!!!";

struct Settings {
    calls: usize,
    rounds: usize,
    cold: usize,
    http: usize,
    http1: usize,
    clients: usize,
    forwarded: usize,
    many: usize,
    fair: usize,
    hogs: usize,
}

impl Settings {
    fn from_env() -> Result<Self> {
        Ok(Settings {
            calls: env_usize("LIQUID_BENCH_FN_CALLS", 40_000)?.max(1),
            rounds: env_usize("LIQUID_BENCH_FN_ROUNDS", 8)?.max(1),
            cold: env_usize("LIQUID_BENCH_FN_COLD", 30)?.max(1),
            http: env_usize("LIQUID_BENCH_FN_HTTP", 20_000)?.max(1),
            http1: env_usize("LIQUID_BENCH_FN_HTTP1", 3_000)?.max(1),
            clients: env_usize("LIQUID_BENCH_FN_CLIENTS", 64)?.max(1),
            forwarded: env_usize("LIQUID_BENCH_FN_FORWARDED", 2_000)?.max(1),
            many: env_usize("LIQUID_BENCH_FN_MANY", 100)?.max(1),
            fair: env_usize("LIQUID_BENCH_FN_FAIR", 400)?.max(1),
            hogs: env_usize("LIQUID_BENCH_FN_HOGS", 540)?.max(1),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// Durations in microseconds.
#[derive(Default, Clone)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e6);
    }

    fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    fn quantile(&self, q: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i.min(v.len() - 1)]
    }

    fn p50(&self) -> f64 {
        self.quantile(0.5)
    }

    fn p99(&self) -> f64 {
        self.quantile(0.99)
    }

    fn mean(&self) -> f64 {
        self.0.iter().sum::<f64>() / self.0.len().max(1) as f64
    }
}

fn us(v: f64) -> String {
    if v >= 10_000.0 { format!("{:.1} ms", v / 1e3) } else { format!("{v:.1} µs") }
}

// ---------------------------------------------------------------------------------------------
// Part 1: warm invoke in process

struct NullHost;

impl Host for NullHost {
    fn object(&mut self, _call: ObjCall) -> Result<Value, AbiError> {
        Err(AbiError::new(abi::ERR_UNAVAILABLE, "no objects in the bench"))
    }
    fn invoke(&mut self, _f: &str, _i: Vec<u8>, _d: u32) -> Result<Vec<u8>, AbiError> {
        Err(AbiError::new(abi::ERR_UNAVAILABLE, "no calls in the bench"))
    }
    fn log(&mut self, _level: Level, _line: &str) {}
}

fn invocation(input: &[u8], n: u64) -> Invocation {
    Invocation { input: input.to_vec(), now_ms: 1_700_000_000_000 + n as i64, seed: n, depth: 0 }
}

/// The raw baseline's store data.
struct Raw {
    input: Vec<u8>,
    output: Vec<u8>,
    wasi: Option<wasmtime_wasi::p1::WasiP1Ctx>,
}

/// Pooling as the runtime configures it (`Runtime::new` with `RuntimeConfig::default()`).
fn pooling(cfg: &RuntimeConfig) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(cfg.pool_instances)
        .total_memories(cfg.pool_instances)
        .total_tables(cfg.pool_instances)
        .max_memory_size((cfg.memory_max_mib as usize) << 20);
    pool
}

#[derive(Clone, Copy, PartialEq)]
enum RawKind {
    /// Pooling, nothing else.
    Minimal,
    /// + fuel and an epoch deadline.
    Fuel,
    /// + fuel, epoch deadline and a fresh WASI p1 context per call.
    Wasi,
}

struct RawSetup {
    kind: RawKind,
    engine: Engine,
    pre: InstancePre<Raw>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for RawSetup {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// wasmtime 48's own error type into anyhow.
fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow!("{e}")
}

fn raw_memory(c: &mut Caller<'_, Raw>) -> wasmtime::Result<wasmtime::Memory> {
    c.get_export("memory").and_then(|e| e.into_memory()).ok_or_else(|| wasmtime::Error::msg("no memory"))
}

// The WASI variant's stores always hold a context (`raw_call` builds one), so `expect` cannot fail.
#[allow(clippy::expect_used)]
fn raw_setup(kind: RawKind, wasm: &[u8]) -> Result<RawSetup> {
    let cfg = RuntimeConfig::default();
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(&cfg)));
    config.max_wasm_stack(cfg.stack_kib << 10);
    if kind != RawKind::Minimal {
        config.consume_fuel(true).epoch_interruption(true);
    }
    let engine = Engine::new(&config).map_err(wt)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if kind != RawKind::Minimal {
        // The same 5 ms epoch ticker as the runtime's.
        let (engine, stop) = (engine.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                engine.increment_epoch();
            }
        });
    }
    let module = Module::new(&engine, wasm).map_err(wt)?;
    let mut linker: Linker<Raw> = Linker::new(&engine);
    if kind == RawKind::Wasi {
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut Raw| s.wasi.as_mut().expect("a WASI context"))
            .map_err(wt)?;
    }
    linker.func_wrap("liquid", "input_len", |c: Caller<'_, Raw>| -> i32 { c.data().input.len() as i32 }).map_err(wt)?;
    linker
        .func_wrap("liquid", "input_read", |mut c: Caller<'_, Raw>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let mem = raw_memory(&mut c)?;
            let (data, state) = mem.data_and_store_mut(&mut c);
            let n = (len.max(0) as usize).min(state.input.len());
            let start = ptr as u32 as usize;
            let dst = data.get_mut(start..start + n).ok_or_else(|| wasmtime::Error::msg("out of bounds"))?;
            dst.copy_from_slice(&state.input[..n]);
            Ok(n as i32)
        })
        .map_err(wt)?;
    linker
        .func_wrap("liquid", "output", |mut c: Caller<'_, Raw>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let mem = raw_memory(&mut c)?;
            let (data, state) = mem.data_and_store_mut(&mut c);
            let start = ptr as u32 as usize;
            let src =
                data.get(start..start + len.max(0) as usize).ok_or_else(|| wasmtime::Error::msg("out of bounds"))?;
            state.output.extend_from_slice(src);
            Ok(0)
        })
        .map_err(wt)?;
    let pre = linker.instantiate_pre(&module).map_err(wt)?;
    Ok(RawSetup { kind, engine, pre, stop })
}

/// A WASI p1 context built like the runtime's (`wasi_ctx` in wasm-host/src/runtime.rs):
/// memory pipes, fixed clocks, deterministic randomness from 4 KiB of BLAKE3 output.
fn raw_wasi(input: &[u8], seed: u64) -> wasmtime_wasi::p1::WasiP1Ctx {
    use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
    let mut random = vec![0u8; 4096];
    blake3::Hasher::new_derive_key("bench wasi randomness")
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut random);
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    b.stdin(MemoryInputPipe::new(input.to_vec()))
        .stdout(MemoryOutputPipe::new(1 << 20))
        .stderr(MemoryOutputPipe::new(64 << 10))
        .args(&["echo"])
        .secure_random(wasmtime_wasi::Deterministic::new(random.clone()))
        .insecure_random(wasmtime_wasi::Deterministic::new(random))
        .insecure_random_seed(u128::from(seed));
    b.build_p1()
}

fn raw_call(s: &RawSetup, input: &[u8], seed: u64) -> Result<Vec<u8>> {
    let wasi = (s.kind == RawKind::Wasi).then(|| raw_wasi(input, seed));
    let mut store = Store::new(&s.engine, Raw { input: input.to_vec(), output: Vec::new(), wasi });
    if s.kind != RawKind::Minimal {
        store.set_fuel(1_000_000_000).map_err(wt)?;
        store.set_epoch_deadline(1000);
        store.epoch_deadline_trap();
    }
    let instance = s.pre.instantiate(&mut store).map_err(wt)?;
    let f = instance.get_typed_func::<(), i32>(&mut store, "liquid_call").map_err(wt)?;
    let rc = f.call(&mut store, ()).map_err(wt)?;
    ensure!(rc == 0, "raw echo returned {rc}");
    Ok(std::mem::take(&mut store.data_mut().output))
}

struct Part1 {
    ours: Samples,
    raw: Samples,
    raw_fuel: Samples,
    raw_wasi: Samples,
    /// Calls per variant.
    calls: usize,
}

fn part1(s: &Settings, rt: &Runtime, wasm: &[u8]) -> Result<Part1> {
    let manifest = Manifest::for_module("echo");
    let compiled = rt.compile(wasm, &manifest).map_err(|e| anyhow!("compiling echo: {e}"))?;
    let setups = [raw_setup(RawKind::Minimal, wasm)?, raw_setup(RawKind::Fuel, wasm)?, raw_setup(RawKind::Wasi, wasm)?];
    let ours_call = |n: u64| -> Result<()> {
        let out = rt.invoke(&compiled, &manifest, invocation(INPUT, n), Box::new(NullHost));
        let bytes = out.result.map_err(|e| anyhow!("echo failed: {e}"))?;
        ensure!(bytes == INPUT, "echo answered {bytes:?}");
        Ok(())
    };
    // Warm-up: every pool slot path, code pages and caches.
    for n in 0..2_000 {
        ours_call(n)?;
        for setup in &setups {
            ensure!(raw_call(setup, INPUT, n)? == INPUT, "raw echo answered wrong");
        }
    }
    let per_round = s.calls.div_ceil(s.rounds);
    let mut p = Part1 {
        ours: Samples::default(),
        raw: Samples::default(),
        raw_fuel: Samples::default(),
        raw_wasi: Samples::default(),
        calls: per_round * s.rounds,
    };
    let mut n = 10_000u64;
    for _ in 0..s.rounds {
        for _ in 0..per_round {
            n += 1;
            let t = Instant::now();
            ours_call(n)?;
            p.ours.push(t.elapsed());
        }
        for (setup, samples) in setups.iter().zip([&mut p.raw, &mut p.raw_fuel, &mut p.raw_wasi]) {
            for _ in 0..per_round {
                n += 1;
                let t = Instant::now();
                let out = raw_call(setup, INPUT, n)?;
                samples.push(t.elapsed());
                ensure!(out == INPUT, "raw echo answered {out:?}");
            }
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Part 2: cold start

struct Cold {
    name: String,
    size: usize,
    artifact_size: u64,
    load: Samples,
    load_first: Samples,
    compile: Samples,
    compile_first: Samples,
}

fn part2_one(
    s: &Settings,
    rt: &Arc<Runtime>,
    name: &str,
    wasm: &[u8],
    manifest: &Manifest,
    input: &[u8],
) -> Result<Cold> {
    let dir = tempfile::tempdir()?;
    let hash = ModuleStore::open(dir.path(), rt.clone())?.install(wasm, manifest).map_err(|e| anyhow!("{e}"))?;
    let artifact_size = std::fs::read_dir(dir.path().join("artifacts"))?
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    let first = |c: &wasm_host::runtime::Compiled, n: u64| -> Result<Duration> {
        let t = Instant::now();
        let out = rt.invoke(c, manifest, invocation(input, n), Box::new(NullHost));
        let d = t.elapsed();
        out.result.map_err(|e| anyhow!("{name} failed: {e}"))?;
        Ok(d)
    };
    let mut cold = Cold {
        name: name.to_string(),
        size: wasm.len(),
        artifact_size,
        load: Samples::default(),
        load_first: Samples::default(),
        compile: Samples::default(),
        compile_first: Samples::default(),
    };
    for round in 0..s.cold + 1 {
        let store = ModuleStore::open(dir.path(), rt.clone())?;
        let t = Instant::now();
        let (c, source) = store.load(&hash, manifest).map_err(|e| anyhow!("{e}"))?.context("module missing")?;
        let load = t.elapsed();
        ensure!(source == Source::Artifact, "{name} came from {source:?}, not the artifact cache");
        let inv = first(&c, round as u64)?;
        let t = Instant::now();
        let c = rt.compile(wasm, manifest).map_err(|e| anyhow!("{e}"))?;
        let compile = t.elapsed();
        let inv2 = first(&c, round as u64)?;
        if round > 0 {
            // Round 0 is a warm-up.
            cold.load.push(load);
            cold.load_first.push(inv);
            cold.compile.push(compile);
            cold.compile_first.push(inv2);
        }
    }
    Ok(cold)
}

fn part2(s: &Settings, rt: &Arc<Runtime>, echo: &[u8]) -> Result<Vec<Cold>> {
    let mut out = vec![part2_one(s, rt, "echo.wat", echo, &Manifest::for_module("echo"), INPUT)?];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/functions/hello");
    match std::fs::read(root.join("hello.wasm")) {
        Ok(wasm) => {
            let manifest = Manifest::from_toml(&std::fs::read_to_string(root.join("liquid.toml"))?)?;
            out.push(part2_one(s, rt, "hello.wasm (C, WASI command)", &wasm, &manifest, b"bench")?);
        }
        Err(_) => {
            eprintln!("(examples/functions/hello/hello.wasm is missing: restore it with git checkout to include it)")
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Real agents

/// What this bench asks of an agent besides [`support::Agent`].
impl Agent {
    async fn status(&self, http: &reqwest::Client) -> Result<Value> {
        let r = http.get(format!("{}/v1/status", self.base)).bearer_auth(&self.token).send().await?;
        ensure!(r.status().is_success(), "status: {}", r.status());
        Ok(r.json().await?)
    }

    /// VmRSS and VmHWM, KiB.
    fn memory(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |k: &str| -> Result<u64> {
            let line = status.lines().find(|l| l.starts_with(k)).with_context(|| format!("no {k} in status"))?;
            Ok(line.split_whitespace().nth(1).context("field value")?.parse()?)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

/// One invoke; checks the answer is the input.
async fn invoke(http: &reqwest::Client, url: &str, token: &str, input: &[u8]) -> Result<()> {
    let r = http.post(url).bearer_auth(token).body(input.to_vec()).send().await?;
    let code = r.status();
    let body = r.bytes().await?;
    ensure!(code.is_success(), "{url}: {code} {}", String::from_utf8_lossy(&body));
    ensure!(body.as_ref() == input, "{url} answered {body:?}");
    Ok(())
}

/// Invokes until it succeeds (a function deployed elsewhere takes a moment to arrive).
async fn invoke_eventually(http: &reqwest::Client, url: &str, token: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        match invoke(http, url, token, INPUT).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e.context(format!("still failing after {within:?}"))),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn client() -> Result<reqwest::Client> {
    // reqwest's rustls needs a process-wide provider even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder().pool_max_idle_per_host(4).build()?)
}

/// `n` invokes by each of `clients` clients (one connection each); latencies and wall time.
async fn load(url: &str, token: &str, clients: usize, n: usize) -> Result<(Samples, Duration)> {
    let mut conns = Vec::new();
    for _ in 0..clients {
        let c = client()?;
        // Open the connection before the clock starts.
        for _ in 0..20 {
            invoke(&c, url, token, INPUT).await?;
        }
        conns.push(c);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in conns {
        let (url, token) = (url.to_string(), token.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Samples::default();
            for _ in 0..n {
                let t = Instant::now();
                invoke(&c, &url, &token, INPUT).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, start.elapsed()))
}

/// A distinct echo module: echo.wat with an exported global of value `k`.
fn echo_variant(k: usize) -> Result<Vec<u8>> {
    let body = ECHO_WAT.trim_end();
    let body = body.strip_suffix(')').context("echo.wat ends with `)`")?;
    Ok(wat::parse_str(format!("{body}\n  (global (export \"variant\") i32 (i32.const {k})))"))?)
}

struct Part3 {
    one: (Samples, Duration),
    many: (Samples, Duration),
    clients: usize,
    rss_after_http: (u64, u64),
}

struct Part5 {
    idle: (u64, u64),
    deployed: (u64, u64),
    invoked: (u64, u64),
    deploy_wall: Duration,
    first_invokes: Samples,
    many: usize,
}

/// Part 6: one hostile function's load against another function's latency.
struct Part6 {
    alone: Samples,
    /// Per hog: echo latencies with the hog's calls in flight, and the hog calls' outcomes
    /// (HTTP status → count).
    loaded: Vec<(&'static str, Samples, std::collections::BTreeMap<u16, u64>)>,
    hogs: usize,
}

/// Sequential echo calls; latencies.
async fn echo_run(http: &reqwest::Client, url: &str, token: &str, n: usize) -> Result<Samples> {
    let mut lat = Samples::default();
    for _ in 0..n {
        let t = Instant::now();
        invoke(http, url, token, INPUT).await?;
        lat.push(t.elapsed());
    }
    Ok(lat)
}

async fn part6(s: &Settings, agent: &Agent, echo_url: &str) -> Result<Part6> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let http = client()?;
    let hogs: [(&'static str, &str); 2] = [
        ("spin", include_str!("../../wasm-host/tests/guests/loop.wat")),
        ("sleep", include_str!("../../wasm-host/tests/guests/sleep.wat")),
    ];
    for (name, wat) in hogs {
        // limits.instances asks for more than the fair share; fuel is high so the wall limit
        // is what ends a spinning call.
        let manifest = format!("name = \"{name}\"\n\n[limits]\nwall_ms = 1000\nfuel = 100000000000\ninstances = 256\n");
        agent.deploy(&http, name, &wat::parse_str(wat)?, Some(&manifest)).await?;
    }
    let rounds = 2;
    let per = s.fair.div_ceil(rounds);
    let mut p = Part6 { alone: Samples::default(), loaded: Vec::new(), hogs: s.hogs };
    for (name, _) in hogs {
        p.loaded.push((name, Samples::default(), Default::default()));
    }
    for _ in 0..rounds {
        p.alone.extend(echo_run(&http, echo_url, &agent.token, per).await?);
        for (i, (name, _)) in hogs.iter().enumerate() {
            let stop = Arc::new(AtomicBool::new(false));
            let url = agent.invoke_url(name);
            let hog_http = reqwest::Client::builder().pool_max_idle_per_host(s.hogs).build()?;
            let mut tasks = Vec::new();
            for _ in 0..s.hogs {
                let (stop, url, token, c) = (stop.clone(), url.clone(), agent.token.clone(), hog_http.clone());
                tasks.push(tokio::spawn(async move {
                    let mut seen = std::collections::BTreeMap::<u16, u64>::new();
                    while !stop.load(Ordering::Relaxed) {
                        let code = match c.post(&url).bearer_auth(&token).body(Vec::new()).send().await {
                            Ok(r) => {
                                let code = r.status().as_u16();
                                let _ = r.bytes().await;
                                code
                            }
                            Err(_) => 0,
                        };
                        *seen.entry(code).or_default() += 1;
                    }
                    seen
                }));
            }
            // Let the hogs fill the function's instances and queue first.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let lat = echo_run(&http, echo_url, &agent.token, per).await;
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                for (code, n) in t.await? {
                    *p.loaded[i].2.entry(code).or_default() += n;
                }
            }
            p.loaded[i].1.extend(lat.with_context(|| format!("echo while {name} hogs run"))?);
        }
    }
    Ok(p)
}

/// Parts 5, 3 and 6 on one standalone agent (`--dev`).
async fn parts_5_3(s: &Settings, root: &Path) -> Result<(Part5, Part3, Part6)> {
    let http = client()?;
    let mut agent = Agent::start(root, "solo", &["--dev"])?;
    agent.ready(&http).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = agent.memory()?;
    let modules = (0..s.many).map(echo_variant).collect::<Result<Vec<_>>>()?;
    let t = Instant::now();
    for (k, m) in modules.iter().enumerate() {
        agent.deploy(&http, &format!("f{k:03}"), m, None).await?;
    }
    let deploy_wall = t.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deployed = agent.memory()?;
    let mut first_invokes = Samples::default();
    for k in 0..s.many {
        let url = agent.invoke_url(&format!("f{k:03}"));
        let t = Instant::now();
        invoke_eventually(&http, &url, &agent.token, Duration::from_secs(10)).await?;
        first_invokes.push(t.elapsed());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let invoked = agent.memory()?;
    let p5 = Part5 { idle, deployed, invoked, deploy_wall, first_invokes, many: s.many };

    // Part 3 on the same agent, function f000 (a local, stateless echo).
    let url = agent.invoke_url("f000");
    let one = load(&url, &agent.token, 1, s.http1).await?;
    let per = s.http.div_ceil(s.clients);
    let many = load(&url, &agent.token, s.clients, per).await?;
    let rss_after_http = agent.memory()?;
    let p6 = part6(s, &agent, &url).await.context("part 6 (fairness)")?;
    Ok((p5, Part3 { one, many, clients: s.clients, rss_after_http }, p6))
}

struct Part4 {
    forwarded: Samples,
    local: Samples,
}

async fn part4(s: &Settings, root: &Path, echo: &[u8]) -> Result<Part4> {
    let http = client()?;
    let key = root.join("cluster.key");
    let out = liquid_cmd()?.args(["cluster", "init", "--out"]).arg(&key).output()?;
    ensure!(out.status.success(), "liquid cluster init: {}", String::from_utf8_lossy(&out.stderr));
    let key = key.to_str().context("utf-8 path")?.to_string();
    let mut a = Agent::start(root, "fwd-a", &["--cluster-key", &key])?;
    let st = a.ready(&http).await?;
    let boot = st["listen_addrs"][0].as_str().context("A has no listen address")?.to_string();
    let mut b = Agent::start(root, "fwd-b", &["--cluster-key", &key, "--bootstrap", &boot])?;
    let st_b = b.ready(&http).await?;
    let b_id = st_b["id"].as_str().context("B's status has no id")?.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alive = |v: &Value| v["peers"]["alive"].as_u64().unwrap_or(0);
        if alive(&a.status(&http).await?) >= 1 && alive(&b.status(&http).await?) >= 1 {
            break;
        }
        ensure!(Instant::now() < deadline, "A and B did not see each other alive within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let manifest = format!("name = \"pinned\"\n\n[placement]\nnode = \"{b_id}\"\n");
    a.deploy(&http, "pinned", echo, Some(&manifest)).await?;
    let via_a = a.invoke_url("pinned");
    let via_b = b.invoke_url("pinned");
    invoke_eventually(&http, &via_b, &b.token, Duration::from_secs(30)).await?;
    invoke_eventually(&http, &via_a, &a.token, Duration::from_secs(30)).await?;
    let rounds = 4;
    let per = s.forwarded.div_ceil(rounds);
    let mut p = Part4 { forwarded: Samples::default(), local: Samples::default() };
    for _ in 0..rounds {
        let (lat, _) = load(&via_a, &a.token, 1, per).await?;
        p.forwarded.extend(lat);
        let (lat, _) = load(&via_b, &b.token, 1, per).await?;
        p.local.extend(lat);
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Output

fn row(label: &str, v: &Samples, base: Option<&Samples>) {
    let ratio = base.map(|b| format!("{:.2}×", v.p50() / b.p50())).unwrap_or_default();
    let ratio99 = base.map(|b| format!("{:.2}×", v.p99() / b.p99())).unwrap_or_default();
    println!("| {label} | {} | {} | {} | {ratio} | {ratio99} |", us(v.p50()), us(v.p99()), us(v.mean()));
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn main() -> Result<()> {
    let s = Settings::from_env()?;
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("functions benchmark: {cores} cores, load average at start {}", load_average());
    let echo = wat::parse_str(ECHO_WAT)?;
    let rt = Arc::new(Runtime::new(RuntimeConfig::default()).map_err(|e| anyhow!(e))?);

    let p1 = part1(&s, &rt, &echo).context("part 1 (warm invoke)")?;
    println!(
        "\n== 1. Warm invoke of echo in process ({} calls each, {} interleaved rounds, 16-byte input) ==",
        p1.calls, s.rounds
    );
    println!("| | p50 | p99 | mean | ratio p50 | ratio p99 |");
    println!("|---|---|---|---|---|---|");
    row("Runtime::invoke (fresh instance, pooling, WASI ctx, fuel, epoch)", &p1.ours, Some(&p1.raw));
    row("raw wasmtime: InstancePre (pooling) + minimal Store + call", &p1.raw, None);
    row("raw + fuel + epoch deadline", &p1.raw_fuel, Some(&p1.raw));
    row("raw + fuel + epoch + fresh WASI p1 ctx", &p1.raw_wasi, Some(&p1.raw));
    println!(
        "Runtime::invoke / raw minimal: {:.2}× (aim ≤ 1.5×); / raw with fuel, epoch and WASI: {:.2}×",
        p1.ours.p50() / p1.raw.p50(),
        p1.ours.p50() / p1.raw_wasi.p50()
    );
    drop(p1);

    let p2 = part2(&s, &rt, &echo).context("part 2 (cold start)")?;
    println!(
        "\n== 2. Cold start: artifact on disk (fresh ModuleStore) vs compile, then the first invoke ({} rounds) ==",
        s.cold
    );
    println!(
        "| module | module / artifact size | ModuleStore::load (artifact) p50 / p99 | + first invoke p50 | Runtime::compile p50 / p99 | + first invoke p50 | compile / load |"
    );
    println!("|---|---|---|---|---|---|---|");
    for c in &p2 {
        println!(
            "| {} | {} B / {} B | {} / {} | {} | {} / {} | {} | {:.0}× |",
            c.name,
            c.size,
            c.artifact_size,
            us(c.load.p50()),
            us(c.load.p99()),
            us(c.load_first.p50()),
            us(c.compile.p50()),
            us(c.compile.p99()),
            us(c.compile_first.p50()),
            (c.compile.p50() + c.compile_first.p50()) / (c.load.p50() + c.load_first.p50()),
        );
    }

    let root = tempfile::Builder::new().prefix("liquid-bench-fn-").tempdir()?;
    let io = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (p5, p3, p6) = io.block_on(parts_5_3(&s, root.path())).context("parts 3 and 5 (one agent)")?;
    let p4 = io.block_on(part4(&s, root.path(), &echo)).context("part 4 (forwarding)")?;

    println!("\n== 3. HTTP invoke of echo on one agent (loopback, reqwest keep-alive, a connection per client) ==");
    println!("| clients | requests | p50 | p99 | mean | requests/s |");
    println!("|---|---|---|---|---|---|");
    for (clients, (lat, wall)) in [(1, &p3.one), (p3.clients, &p3.many)] {
        println!(
            "| {clients} | {} | {} | {} | {} | {:.0} |",
            lat.0.len(),
            us(lat.p50()),
            us(lat.p99()),
            us(lat.mean()),
            lat.0.len() as f64 / wall.as_secs_f64()
        );
    }
    println!("agent RSS after the HTTP runs: {} (peak {})", mib(p3.rss_after_http.0), mib(p3.rss_after_http.1));

    println!("\n== 4. Forwarded invoke: pinned to B, through A vs through B (1 client, 4 interleaved rounds) ==");
    println!("| | p50 | p99 | mean | ratio p50 | ratio p99 |");
    println!("|---|---|---|---|---|---|");
    row("through A (forwarded to B over the mesh)", &p4.forwarded, Some(&p4.local));
    row("through B (local)", &p4.local, None);

    println!("\n== 5. Agent memory with {} functions deployed and each invoked once ==", p5.many);
    println!("| | VmRSS | VmHWM |");
    println!("|---|---|---|");
    println!("| idle agent (3 s after start) | {} | {} |", mib(p5.idle.0), mib(p5.idle.1));
    println!("| after {} deploys | {} | {} |", p5.many, mib(p5.deployed.0), mib(p5.deployed.1));
    println!("| after invoking each once | {} | {} |", mib(p5.invoked.0), mib(p5.invoked.1));
    println!(
        "per function: {:.0} KiB (aim: ≤ 100 MiB in all); {} deploys took {:.2} s ({:.1} ms each); first invokes p50 {} p99 {}",
        (p5.invoked.0.saturating_sub(p5.idle.0)) as f64 / p5.many as f64,
        p5.many,
        p5.deploy_wall.as_secs_f64(),
        p5.deploy_wall.as_secs_f64() * 1e3 / p5.many as f64,
        us(p5.first_invokes.p50()),
        us(p5.first_invokes.p99()),
    );

    println!(
        "\n== 6. Fairness: echo from one client, alone and with {} clients keeping a hostile function's calls in flight ({} calls each, 2 interleaved rounds) ==",
        p6.hogs,
        p6.alone.0.len()
    );
    println!("| | p50 | p99 | mean | ratio p50 | ratio p99 |");
    println!("|---|---|---|---|---|---|");
    row("echo alone", &p6.alone, None);
    for (name, lat, _) in &p6.loaded {
        row(&format!("echo while {} hogs call `{name}`", p6.hogs), lat, Some(&p6.alone));
    }
    for (name, _, codes) in &p6.loaded {
        let codes: Vec<String> = codes
            .iter()
            .map(|(c, n)| format!("{n} × {}", if *c == 0 { "no answer".to_string() } else { c.to_string() }))
            .collect();
        println!("`{name}` calls answered: {}", codes.join(", "));
    }
    println!("\nload average at end {}; total {:.0} s", load_average(), started.elapsed().as_secs_f64());
    Ok(())
}
