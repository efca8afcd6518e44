//! Snapshots of actors: an actor saved between calls and restored (on the same runtime or on
//! another, as a second node would) carries on where it was; a snapshot of mostly-zero
//! memory is small; a damaged, truncated, foreign or oversized snapshot is refused with the
//! reason and yields no actor; a poisoned actor is not saved.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::Value as Json;
use wasm_host::abi::{AbiError, Level, ObjCall};
use wasm_host::runtime::{Actor, Compiled, Host, Invocation, Runtime, RuntimeConfig};
use wasm_host::snapshot::{MAGIC, SnapshotError, VERSION, verify};
use wasm_host::{Kind, Manifest};

/// Counts its calls three ways: an i32 in memory at 0, the exported mutable global `calls`
/// and the exported f64 global `half` (+0.5 a call). On its first call it grows memory to two
/// pages and from then on keeps the count at 65636 too. Output: the four counts as i32s.
/// Any input makes it trap (to poison it). `sp` is a non-exported global, like
/// `__stack_pointer`, back at its initial value between calls.
const COUNTER: &str = r#"
(module
  (import "liquid" "input_len" (func $input_len (result i32)))
  (import "liquid" "output" (func $output (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $calls (export "calls") (mut i32) (i32.const 0))
  (global $half (export "half") (mut f64) (f64.const 0))
  (global $sp (mut i32) (i32.const 4096))
  (global (export "version") i32 (i32.const 1))
  (data (i32.const 100) "initialized")
  (func (export "liquid_call") (result i32)
    (if (i32.gt_u (call $input_len) (i32.const 0)) (then unreachable))
    (global.set $sp (i32.sub (global.get $sp) (i32.const 16)))
    (if (i32.lt_u (memory.size) (i32.const 2)) (then (drop (memory.grow (i32.const 1)))))
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (global.set $half (f64.add (global.get $half) (f64.const 0.5)))
    (i32.store (i32.const 65636) (i32.add (i32.load (i32.const 65636)) (i32.const 1)))
    (i32.store (i32.const 4) (global.get $calls))
    (i32.store (i32.const 8) (i32.trunc_f64_s (f64.mul (global.get $half) (f64.const 2))))
    (i32.store (i32.const 12) (i32.load (i32.const 65636)))
    (drop (call $output (i32.const 0) (i32.const 16)))
    (global.set $sp (i32.add (global.get $sp) (i32.const 16)))
    (i32.const 0)))
"#;

/// 16 MiB of memory from the start; each call bumps a counter in the last word.
const BIG: &str = r#"
(module
  (import "liquid" "output" (func $output (param i32 i32) (result i32)))
  (memory (export "memory") 256)
  (func (export "liquid_call") (result i32)
    (i32.store (i32.const 16777212) (i32.add (i32.load (i32.const 16777212)) (i32.const 1)))
    (drop (call $output (i32.const 16777212) (i32.const 4)))
    (i32.const 0)))
"#;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig { pool_instances: 16, memory_max_mib: 64, ..RuntimeConfig::default() }).unwrap()
}

fn manifest(name: &str) -> Manifest {
    let mut m = Manifest::for_module(name);
    m.kind = Kind::Actor;
    m.limits.fuel = 50_000_000;
    m.limits.wall_ms = 2_000;
    m.limits.memory_mib = 16;
    m.limits.output_kib = 256;
    m.objects.read = vec!["demo".into()];
    m.objects.write = vec!["demo".into()];
    m
}

fn inv(input: &[u8]) -> Invocation {
    Invocation { input: input.to_vec(), now_ms: 1_700_000_000_000, seed: 7, depth: 0 }
}

/// A host with no objects (the WAT actors use none).
struct NoObjects;

impl Host for NoObjects {
    fn object(&mut self, _call: ObjCall) -> Result<Json, AbiError> {
        Err(AbiError::new(wasm_host::abi::ERR_NOT_FOUND, "no objects here"))
    }
    fn invoke(&mut self, f: &str, _input: Vec<u8>, _depth: u32) -> Result<Vec<u8>, AbiError> {
        Err(AbiError::new(wasm_host::abi::ERR_NOT_FOUND, format!("no function {f}")))
    }
    fn log(&mut self, _level: Level, _line: &str) {}
}

fn compile(rt: &Runtime, wat: &str, m: &Manifest) -> Compiled {
    rt.compile(wat.as_bytes(), m).unwrap()
}

/// One call; the counter actor's four counts.
fn call(rt: &Runtime, actor: &mut Actor, m: &Manifest) -> [i32; 4] {
    let out = rt.invoke_actor(actor, m, inv(b""), Box::new(NoObjects)).result.unwrap();
    std::array::from_fn(|i| i32::from_le_bytes(out[i * 4..i * 4 + 4].try_into().unwrap()))
}

fn snapshot(actor: &mut Actor) -> Vec<u8> {
    let mut buf = Vec::new();
    let info = actor.write_snapshot(&mut buf).unwrap();
    assert_eq!(info.written_bytes, buf.len() as u64);
    assert_eq!(info.memory_bytes, actor.memory_size() as u64);
    buf
}

fn refused(r: Result<Actor, SnapshotError>) -> SnapshotError {
    match r {
        Ok(_) => panic!("a bad snapshot was restored"),
        Err(e) => e,
    }
}

/// A counter actor called `n` times, and its snapshot.
fn counted(rt: &Runtime, c: &Compiled, m: &Manifest, n: i32) -> Vec<u8> {
    let mut actor = rt.activate(c, m, inv(b"")).unwrap();
    for i in 1..=n {
        assert_eq!(call(rt, &mut actor, m), [i; 4]);
    }
    snapshot(&mut actor)
}

#[test]
fn a_restored_actor_carries_on_here_and_on_another_node() {
    let m = manifest("counter");
    let rt = runtime();
    let c = compile(&rt, COUNTER, &m);
    let n = 5;
    let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
    for i in 1..=n {
        assert_eq!(call(&rt, &mut actor, &m), [i; 4]);
    }
    let mut buf = Vec::new();
    let info = actor.write_snapshot(&mut buf).unwrap();
    assert_eq!(info.memory_bytes, 2 * 65536);
    assert_eq!(info.globals, 2, "calls and half; not the immutable version nor the unexported sp");
    assert_eq!(actor.module(), c.hash());

    // The original goes on independently of its snapshot.
    assert_eq!(call(&rt, &mut actor, &m), [n + 1; 4]);

    // Same runtime, a new instance.
    let mut again = rt.restore(&c, &m, inv(b""), &mut buf.as_slice()).unwrap();
    assert_eq!(again.memory_size(), 2 * 65536);
    assert_eq!(call(&rt, &mut again, &m), [n + 1; 4]);
    assert_eq!(call(&rt, &mut again, &m), [n + 2; 4]);

    // Another node: its own engine, the module compiled there.
    let other = runtime();
    let c2 = compile(&other, COUNTER, &m);
    let mut moved = other.restore(&c2, &m, inv(b""), &mut buf.as_slice()).unwrap();
    assert_eq!(call(&other, &mut moved, &m), [n + 1; 4]);

    // A snapshot of the restored actor restores too (migration goes on).
    let buf2 = snapshot(&mut moved);
    let mut back = rt.restore(&c, &m, inv(b""), &mut buf2.as_slice()).unwrap();
    assert_eq!(call(&rt, &mut back, &m), [n + 2; 4]);
}

#[test]
fn a_fresh_actor_round_trips_before_any_call() {
    let m = manifest("counter");
    let rt = runtime();
    let c = compile(&rt, COUNTER, &m);
    let buf = counted(&rt, &c, &m, 0);
    let mut actor = rt.restore(&c, &m, inv(b""), &mut buf.as_slice()).unwrap();
    assert_eq!(call(&rt, &mut actor, &m), [1; 4]);
}

#[test]
fn a_mostly_zero_16_mib_memory_snapshots_small() {
    let m = manifest("big");
    let rt = runtime();
    let c = compile(&rt, BIG, &m);
    let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
    for _ in 0..3 {
        rt.invoke_actor(&mut actor, &m, inv(b""), Box::new(NoObjects)).result.unwrap();
    }
    let mut buf = Vec::new();
    let info = actor.write_snapshot(&mut buf).unwrap();
    assert_eq!(info.memory_bytes, 16 << 20);
    eprintln!("a 16 MiB mostly-zero memory snapshots to {} bytes", info.written_bytes);
    assert!(info.written_bytes < 16 << 10, "{} bytes", info.written_bytes);

    let mut again = rt.restore(&c, &m, inv(b""), &mut buf.as_slice()).unwrap();
    let out = rt.invoke_actor(&mut again, &m, inv(b""), Box::new(NoObjects)).result.unwrap();
    assert_eq!(out, 4i32.to_le_bytes());

    // A node that allows this function less memory refuses it before allocating any.
    let mut small = m.clone();
    small.limits.memory_mib = 8;
    let err = refused(rt.restore(&c, &small, inv(b""), &mut buf.as_slice()));
    assert!(matches!(err, SnapshotError::MemoryTooLarge { bytes, limit } if bytes == 16 << 20 && limit == 8 << 20));
}

#[test]
fn every_flipped_byte_is_refused() {
    let m = manifest("counter");
    let rt = runtime();
    let c = compile(&rt, COUNTER, &m);
    let buf = counted(&rt, &c, &m, 3);
    for i in 0..buf.len() {
        let mut bad = buf.clone();
        bad[i] ^= 0x01;
        let err = refused(rt.restore(&c, &m, inv(b""), &mut bad.as_slice()));
        assert!(!err.to_string().is_empty());
    }
    // Past the magic and the version, a flip in the hash or the memory shows as such.
    let mut bad = buf.clone();
    bad[20] ^= 0x01;
    assert!(matches!(refused(rt.restore(&c, &m, inv(b""), &mut bad.as_slice())), SnapshotError::WrongModule { .. }));
    let mut bad = buf.clone();
    bad[0] ^= 0x01;
    assert!(matches!(refused(rt.restore(&c, &m, inv(b""), &mut bad.as_slice())), SnapshotError::NotASnapshot));
    let mut bad = buf.clone();
    bad[8] ^= 0x01;
    assert!(matches!(
        refused(rt.restore(&c, &m, inv(b""), &mut bad.as_slice())),
        SnapshotError::Version { found: 0, supported: 1 }
    ));
    let mut bad = buf.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let err = refused(rt.restore(&c, &m, inv(b""), &mut bad.as_slice()));
    assert!(matches!(err, SnapshotError::Corrupt(_)), "{err}");
}

#[test]
fn a_flipped_memory_byte_fails_the_checksum() {
    // Incompressible memory, so a flip lands in a raw block and zstd cannot notice it.
    let m = manifest("noise");
    let rt = runtime();
    let noise = r#"
      (module
        (memory (export "memory") 1)
        (func (export "liquid_call") (result i32)
          (local $i i32) (local $x i32)
          (local.set $x (i32.const 12345))
          (loop $l
            (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1103515245)) (i32.const 12345)))
            (i32.store (local.get $i) (local.get $x))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br_if $l (i32.lt_u (local.get $i) (i32.const 65536))))
          (i32.const 0)))"#;
    let c = compile(&rt, noise, &m);
    let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
    rt.invoke_actor(&mut actor, &m, inv(b""), Box::new(NoObjects)).result.unwrap();
    let buf = snapshot(&mut actor);
    assert!(buf.len() > 60_000, "noise does not compress");
    let mut bad = buf.clone();
    bad[buf.len() / 2] ^= 0x40;
    let err = refused(rt.restore(&c, &m, inv(b""), &mut bad.as_slice()));
    assert!(matches!(&err, SnapshotError::Corrupt(msg) if msg.contains("checksum")), "{err}");
    rt.restore(&c, &m, inv(b""), &mut buf.as_slice()).unwrap();
}

#[test]
fn a_truncated_snapshot_is_refused() {
    let m = manifest("counter");
    let rt = runtime();
    let c = compile(&rt, COUNTER, &m);
    let buf = counted(&rt, &c, &m, 3);
    for len in 0..buf.len() {
        let err = refused(rt.restore(&c, &m, inv(b""), &mut &buf[..len]));
        assert!(matches!(err, SnapshotError::Truncated(_) | SnapshotError::Corrupt(_)), "cut at {len}: {err}");
    }
    let err = refused(rt.restore(&c, &m, inv(b""), &mut &buf[..buf.len() - 1]));
    assert!(matches!(err, SnapshotError::Truncated(_)), "{err}");
    let err = refused(rt.restore(&c, &m, inv(b""), &mut &buf[..30]));
    assert!(matches!(err, SnapshotError::Truncated(_)), "{err}");
}

#[test]
fn a_snapshot_of_another_module_is_refused() {
    let m = manifest("counter");
    let rt = runtime();
    let c = compile(&rt, COUNTER, &m);
    let buf = counted(&rt, &c, &m, 2);
    let big_m = manifest("big");
    let big = compile(&rt, BIG, &big_m);
    let err = refused(rt.restore(&big, &big_m, inv(b""), &mut buf.as_slice()));
    assert!(
        matches!(&err, SnapshotError::WrongModule { snapshot, module } if *snapshot == c.hash() && *module == big.hash())
    );
    assert!(err.to_string().contains(&c.hash().to_hex()), "{err}");
}

#[test]
fn an_oversized_memory_claim_is_refused_before_allocating() {
    let m = manifest("counter");
    let rt = runtime();
    let c = compile(&rt, COUNTER, &m);
    let buf = counted(&rt, &c, &m, 2);
    // The memory size sits after the magic (8), the version (4) and the hash (32).
    for claim in [u64::MAX, 4 << 30, (16 << 20) + 65536] {
        let mut bad = buf.clone();
        bad[44..52].copy_from_slice(&claim.to_le_bytes());
        let err = refused(rt.restore(&c, &m, inv(b""), &mut bad.as_slice()));
        assert!(matches!(err, SnapshotError::MemoryTooLarge { bytes, limit } if bytes == claim && limit == 16 << 20));
    }
    // Within the limit but not what the stream holds: the checksum (or the stream) says so.
    let mut bad = buf.clone();
    bad[44..52].copy_from_slice(&(4u64 << 20).to_le_bytes());
    let err = refused(rt.restore(&c, &m, inv(b""), &mut bad.as_slice()));
    assert!(matches!(err, SnapshotError::Truncated(_) | SnapshotError::Corrupt(_)), "{err}");
}

#[test]
fn a_poisoned_actor_is_not_saved() {
    let m = manifest("counter");
    let rt = runtime();
    let c = compile(&rt, COUNTER, &m);
    let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
    call(&rt, &mut actor, &m);
    assert!(rt.invoke_actor(&mut actor, &m, inv(b"trap"), Box::new(NoObjects)).result.is_err());
    let mut buf = Vec::new();
    let err = actor.write_snapshot(&mut buf).unwrap_err();
    assert!(matches!(&err, SnapshotError::Poisoned(why) if why.contains("unreachable")), "{err}");
    assert!(buf.is_empty(), "nothing written");
}

#[test]
fn the_counter_example_restores_as_an_actor() {
    // The Rust example (its heap, its allocator and its stack pointer live in memory and
    // in an unexported global), activated as an actor. Committed; rebuilt by scripts/build-guests.sh.
    let dir = format!("{}/../examples/functions/counter", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(format!("{dir}/counter.wasm")).unwrap_or_else(|e| {
        panic!("{dir}: {e}: restore it with git checkout, or rebuild with scripts/build-guests.sh")
    });
    let mut m = Manifest::from_toml(&std::fs::read_to_string(format!("{dir}/liquid.toml")).unwrap()).unwrap();
    m.kind = Kind::Actor;
    let rt = runtime();
    let c = rt.compile(&bytes, &m).unwrap();
    let docs = Docs::default();
    let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
    for i in 1..=3 {
        let out = rt.invoke_actor(&mut actor, &m, inv(b""), Box::new(docs.clone())).result.unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!(r#"{{"count":{i}}}"#));
    }
    let buf = snapshot(&mut actor);
    let other = runtime();
    let c2 = other.compile(&bytes, &m).unwrap();
    let mut moved = other.restore(&c2, &m, inv(b""), &mut buf.as_slice()).unwrap();
    for i in 4..=6 {
        let out = other.invoke_actor(&mut moved, &m, inv(b""), Box::new(docs.clone())).result.unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!(r#"{{"count":{i}}}"#));
    }
}

/// The counter example's object: one integer field per object.
#[derive(Clone, Default)]
struct Docs(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Json>>>);

impl Host for Docs {
    fn object(&mut self, call: ObjCall) -> Result<Json, AbiError> {
        let mut docs = self.0.lock().unwrap();
        match call {
            ObjCall::Get { object, .. } => docs
                .get(&object.to_string())
                .cloned()
                .ok_or_else(|| AbiError::new(wasm_host::abi::ERR_NOT_FOUND, "no such object")),
            ObjCall::Apply { object, ops } => {
                let doc = docs.entry(object.to_string()).or_insert_with(|| serde_json::json!({}));
                for op in ops {
                    if let state_sync::ops::Op::Inc { path, by } = op {
                        let key = path.to_string();
                        let now = doc[&key].as_i64().unwrap_or(0) + by;
                        doc[&key] = serde_json::json!(now);
                    }
                }
                Ok(Json::Null)
            }
            ObjCall::List { .. } => Ok(serde_json::json!([])),
        }
    }
    fn invoke(&mut self, f: &str, _input: Vec<u8>, _depth: u32) -> Result<Vec<u8>, AbiError> {
        Err(AbiError::new(wasm_host::abi::ERR_NOT_FOUND, format!("no function {f}")))
    }
    fn log(&mut self, _level: Level, _line: &str) {}
}

#[test]
fn verify_checks_a_snapshot_without_a_runtime() {
    let m = manifest("counter");
    let rt = runtime();
    let c = compile(&rt, COUNTER, &m);
    let buf = counted(&rt, &c, &m, 3);
    let (hash, memory) = verify(buf.as_slice(), 1 << 20).unwrap();
    assert_eq!((hash, memory), (c.hash(), 2 * 65536));
    assert!(matches!(verify(buf.as_slice(), 65536), Err(SnapshotError::MemoryTooLarge { .. })));
    for i in [0, 8, 20, 60, buf.len() / 2, buf.len() - 1] {
        let mut bad = buf.clone();
        bad[i] ^= 0x01;
        assert!(verify(bad.as_slice(), 1 << 20).is_err(), "a flip at {i} passed");
    }
    assert!(matches!(verify(&buf[..buf.len() - 3], 1 << 20), Err(SnapshotError::Truncated(_))));
}

proptest! {
    /// Whatever follows a valid magic and version (a torn file, a hostile peer's hand-off)
    /// is refused with a reason, never a panic or an allocation past the limit.
    #[test]
    fn arbitrary_bytes_after_the_header_start_are_refused(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(VERSION.to_le_bytes());
        bytes.extend(&tail);
        prop_assert!(verify(bytes.as_slice(), 1 << 20).is_err());
    }
}
