//! Checkpoint cost against pages written (issue 18): what a call costs an actor when its
//! checkpoint is a delta of the pages it wrote, against today's full snapshot and against
//! the call on raw wasmtime with no write tracking — all measured in the same run.
//!
//! Run with `cargo bench -p wasm-host --bench checkpoint` (`TMPDIR` picks the disk the
//! durable variants write to). Settings: `LIQUID_BENCH_CK_SIZES` (MiB, default `1,16,64`),
//! `LIQUID_BENCH_CK_PAGES` (pages written per call, default `1,7,64,512`),
//! `LIQUID_BENCH_CK_ROUNDS` (default 200; full snapshots of 64 MiB run at most 10 times).
//!
//! The actor fills N MiB of its memory with xorshift output once (incompressible, so a full
//! snapshot really is N MiB), then each call adds one to a word in K host pages spread over
//! that memory (stride 4099 pages, so no two are neighbours). Per size and K, medians over
//! the rounds:
//! - **raw call**: the call with write tracking off (wasmtime as it comes);
//! - **tracked call**: the same call with tracking on (one write fault per page it first
//!   writes after a checkpoint);
//! - **delta**: `Actor::write_delta` into memory (collect and re-protect the written pages,
//!   compress them, checksum);
//! - **delta, durable**: the delta appended to a file and `fdatasync`ed, as the agent's
//!   checkpoint log does before it answers;
//! - **full snapshot** and **full, durable** (write to a new file, fsync, rename, fsync the
//!   directory): what every call cost before deltas.
//!
//! **Added per call** = tracked call + delta − raw call (in memory), and the same with the
//! durable delta. Ratio of bytes = delta bytes / full snapshot bytes.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use wasm_host::abi::{AbiError, Level, ObjCall};
use wasm_host::runtime::{Actor, Host, Invocation, Runtime, RuntimeConfig};
use wasm_host::snapshot::Link;
use wasm_host::{Kind, Manifest};

/// Input: mode (u32), argument (u32). Mode 0 grows memory to 1 + 16·arg Wasm pages and
/// fills the arg MiB after page 0 with xorshift64 words. Mode 1 adds one to the word at the
/// start of arg host pages (4 KiB) of that memory, page (j · 4099) mod n for j < arg.
const WAT: &str = r#"
(module
  (import "liquid" "input_read" (func $input_read (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "liquid_call") (result i32)
    (local $mode i32) (local $arg i32) (local $addr i32) (local $end i32) (local $x i64)
    (local $j i32) (local $n i32)
    (drop (call $input_read (i32.const 0) (i32.const 8)))
    (local.set $mode (i32.load (i32.const 0)))
    (local.set $arg (i32.load (i32.const 4)))
    (if (i32.eqz (local.get $mode))
      (then
        (if (i32.eq (memory.grow (i32.mul (local.get $arg) (i32.const 16))) (i32.const -1))
          (then (return (i32.const 1))))
        (local.set $addr (i32.const 65536))
        (local.set $end (i32.add (i32.const 65536) (i32.shl (local.get $arg) (i32.const 20))))
        (local.set $x (i64.const 0x9E3779B97F4A7C15))
        (loop $word
          (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
          (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
          (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
          (i64.store (local.get $addr) (local.get $x))
          (local.set $addr (i32.add (local.get $addr) (i32.const 8)))
          (br_if $word (i32.lt_u (local.get $addr) (local.get $end))))
        (return (i32.const 0))))
    (local.set $n (i32.mul (i32.sub (memory.size) (i32.const 1)) (i32.const 16)))
    (block $done
      (loop $page
        (br_if $done (i32.ge_u (local.get $j) (local.get $arg)))
        (local.set $addr (i32.add (i32.const 65536)
          (i32.shl (i32.rem_u (i32.mul (local.get $j) (i32.const 4099)) (local.get $n)) (i32.const 12))))
        (i32.store (local.get $addr) (i32.add (i32.load (local.get $addr)) (i32.const 1)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $page)))
    (i32.const 0)))
"#;

struct NoHost;

impl Host for NoHost {
    fn object(&mut self, _: ObjCall) -> Result<Json, AbiError> {
        Err(AbiError::new(wasm_host::abi::ERR_NOT_FOUND, "none"))
    }
    fn invoke(&mut self, _: &str, _: Vec<u8>, _: u32) -> Result<Vec<u8>, AbiError> {
        Err(AbiError::new(wasm_host::abi::ERR_NOT_FOUND, "none"))
    }
    fn log(&mut self, _: Level, _: &str) {}
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn input(mode: u32, arg: u32) -> Invocation {
    let mut input = mode.to_le_bytes().to_vec();
    input.extend_from_slice(&arg.to_le_bytes());
    Invocation { input, now_ms: 0, seed: 0, depth: 0 }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn call(rt: &Runtime, a: &mut Actor, m: &Manifest, pages: u32) -> Duration {
    let t = Instant::now();
    rt.invoke_actor(a, m, input(1, pages), Box::new(NoHost)).result.unwrap();
    t.elapsed()
}

fn main() {
    let sizes = env_list("LIQUID_BENCH_CK_SIZES", &[1, 16, 64]);
    let pages_list = env_list("LIQUID_BENCH_CK_PAGES", &[1, 7, 64, 512]);
    let rounds = env_list("LIQUID_BENCH_CK_ROUNDS", &[200])[0].max(3);
    let rt =
        Runtime::new(RuntimeConfig { pool_instances: 4, memory_max_mib: 128, ..RuntimeConfig::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!("# checkpoint cost against pages written; {rounds} rounds; files in {}", dir.path().display());
    println!(
        "| memory | pages written | raw call | tracked call | delta | delta, durable | added (memory) | added (durable) | full snapshot | full, durable | delta bytes | full bytes | bytes ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &mib in &sizes {
        let mut m = Manifest::for_module("ballast");
        m.kind = Kind::Actor;
        m.limits.memory_mib = (mib + 1) as u32;
        m.limits.fuel = (40 * mib as u64) << 17;
        m.limits.wall_ms = 60_000;
        let c = rt.compile(WAT.as_bytes(), &m).unwrap();
        let mut a = rt.activate(&c, &m, input(0, 0)).unwrap();
        rt.invoke_actor(&mut a, &m, input(0, mib as u32), Box::new(NoHost)).result.unwrap();
        let mut raw = rt.activate(&c, &m, input(0, 0)).unwrap();
        rt.invoke_actor(&mut raw, &m, input(0, mib as u32), Box::new(NoHost)).result.unwrap();
        raw.disable_write_tracking();

        // Full snapshots: today's cost per call.
        let full_rounds = if mib >= 16 { rounds.min(10) } else { rounds.min(50) };
        let (mut full_t, mut full_d) = (Vec::new(), Vec::new());
        let mut full_bytes = 0;
        for i in 0..full_rounds {
            let mut buf = Vec::with_capacity((mib << 20) + 4096);
            let t = Instant::now();
            a.write_snapshot(&mut buf).unwrap();
            full_t.push(t.elapsed());
            full_bytes = buf.len();
            let path = dir.path().join(format!("base-{mib}-{i}"));
            let t = Instant::now();
            let tmp = path.with_extension("tmp");
            let mut f = File::create(&tmp).unwrap();
            a.write_snapshot(&mut std::io::BufWriter::with_capacity(1 << 20, &mut f)).unwrap();
            f.sync_all().unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            File::open(dir.path()).unwrap().sync_all().unwrap();
            full_d.push(t.elapsed());
            std::fs::remove_file(&path).unwrap();
        }
        a.mark_base();
        let (full_t, full_d) = (median(&mut full_t), median(&mut full_d));

        for &k in &pages_list {
            let k = k as u32;
            let mut log =
                OpenOptions::new().create(true).append(true).open(dir.path().join(format!("log-{mib}-{k}"))).unwrap();
            let (mut raw_t, mut tracked_t, mut delta_t, mut durable_t) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut delta_bytes = 0;
            for r in 0..rounds {
                // Alternate which goes first, so neither always meets a warm cache.
                if r % 2 == 0 {
                    raw_t.push(call(&rt, &mut raw, &m, k));
                    tracked_t.push(call(&rt, &mut a, &m, k));
                } else {
                    tracked_t.push(call(&rt, &mut a, &m, k));
                    raw_t.push(call(&rt, &mut raw, &m, k));
                }
                let seq = r as u64 + 1;
                let mut buf = Vec::with_capacity(64 << 10);
                let t = Instant::now();
                a.write_delta(&mut buf, &Link { base: [1; 32], seq }).unwrap();
                let dt = t.elapsed();
                delta_t.push(dt);
                delta_bytes = buf.len();
                let t = Instant::now();
                log.write_all(&(buf.len() as u32).to_le_bytes()).unwrap();
                log.write_all(&buf).unwrap();
                log.sync_data().unwrap();
                durable_t.push(dt + t.elapsed());
            }
            let (raw_m, tracked_m, delta_m, durable_m) =
                (median(&mut raw_t), median(&mut tracked_t), median(&mut delta_t), median(&mut durable_t));
            let added = us(tracked_m + delta_m) - us(raw_m);
            let added_durable = us(tracked_m + durable_m) - us(raw_m);
            println!(
                "| {mib} MiB | {k} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | **{:.0} µs** | {:.0} µs | {:.1} ms | {:.1} ms | {} | {} | **{:.3} %** |",
                us(raw_m),
                us(tracked_m),
                us(delta_m),
                us(durable_m),
                added,
                added_durable,
                us(full_t) / 1000.0,
                us(full_d) / 1000.0,
                delta_bytes,
                full_bytes,
                100.0 * delta_bytes as f64 / full_bytes as f64,
            );
        }
    }
    println!("\nwrite faults taken by the tracked actors: counted per actor; tracking on: {}", {
        let m = {
            let mut m = Manifest::for_module("probe");
            m.kind = Kind::Actor;
            m
        };
        let c = rt.compile(WAT.as_bytes(), &m).unwrap();
        rt.activate(&c, &m, input(0, 0)).unwrap().tracking_writes()
    });
}
