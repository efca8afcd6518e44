//! Incremental checkpoints of actors: a delta carries the pages a call wrote (tracked by
//! write-protection, see `wasm-host/src/dirty.rs`), and a base snapshot plus its deltas,
//! applied in order to a fresh instance, is the live actor's state exactly — here or on
//! another runtime. Damaged, foreign, out-of-order deltas are refused before anything
//! changes; real out-of-bounds accesses still trap; pool slots come back writable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::Value as Json;
use wasm_host::abi::{AbiError, Level, ObjCall};
use wasm_host::runtime::{Actor, Compiled, Host, Invocation, Runtime, RuntimeConfig};
use wasm_host::snapshot::{Link, SnapshotError, delta_checksum, verify_delta};
use wasm_host::{InvokeError, Kind, Manifest};

/// Input: little-endian u32 words. Word `p` < 0x8000_0000 adds one to the i32 at byte
/// `p × 4096 + 64` (growing memory first if that lies past its end); 0xFFFF_FFFF stores past
/// the end of memory (a real out-of-bounds trap). The input is copied by the host into page
/// 0 (offset 0..4096), so host-side writes are exercised on every call. Bumps the exported
/// mutable global `calls`. Output: the sum of the values it bumped.
const PAGES: &str = r#"
(module
  (import "liquid" "input_len" (func $input_len (result i32)))
  (import "liquid" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "liquid" "output" (func $output (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $calls (export "calls") (mut i64) (i64.const 0))
  (func (export "liquid_call") (result i32)
    (local $n i32) (local $i i32) (local $p i32) (local $addr i32) (local $sum i32) (local $need i32)
    (local.set $n (call $input_read (i32.const 0) (i32.const 4096)))
    (global.set $calls (i64.add (global.get $calls) (i64.const 1)))
    (block $done
      (loop $word
        (br_if $done (i32.ge_u (i32.add (local.get $i) (i32.const 3)) (local.get $n)))
        (local.set $p (i32.load (local.get $i)))
        (if (i32.eq (local.get $p) (i32.const -1))
          (then (i32.store (i32.mul (memory.size) (i32.const 65536)) (i32.const 1))))
        (local.set $addr (i32.add (i32.shl (local.get $p) (i32.const 12)) (i32.const 64)))
        ;; Wasm pages needed to hold addr + 4.
        (local.set $need (i32.add (i32.shr_u (local.get $addr) (i32.const 16)) (i32.const 1)))
        (if (i32.gt_u (local.get $need) (memory.size))
          (then (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
            (then (return (i32.const 1))))))
        (i32.store (local.get $addr) (i32.add (i32.load (local.get $addr)) (i32.const 1)))
        (local.set $sum (i32.add (local.get $sum) (i32.load (local.get $addr))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $word)))
    (i32.store (i32.const 4096) (local.get $sum))
    (drop (call $output (i32.const 4096) (i32.const 4)))
    (i32.const 0)))
"#;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig { pool_instances: 16, memory_max_mib: 64, ..RuntimeConfig::default() }).unwrap()
}

fn manifest() -> Manifest {
    let mut m = Manifest::for_module("pages");
    m.kind = Kind::Actor;
    m.limits.fuel = 50_000_000;
    m.limits.wall_ms = 2_000;
    m.limits.memory_mib = 16;
    m.limits.output_kib = 16;
    m
}

const LIMIT: u64 = 16 << 20;

fn inv(input: &[u8]) -> Invocation {
    Invocation { input: input.to_vec(), now_ms: 1_700_000_000_000, seed: 7, depth: 0 }
}

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

fn compile(rt: &Runtime, m: &Manifest) -> Compiled {
    rt.compile(PAGES.as_bytes(), m).unwrap()
}

fn words(pages: &[u32]) -> Vec<u8> {
    pages.iter().flat_map(|p| p.to_le_bytes()).collect()
}

fn call(rt: &Runtime, actor: &mut Actor, m: &Manifest, pages: &[u32]) -> Result<Vec<u8>, InvokeError> {
    rt.invoke_actor(actor, m, inv(&words(pages)), Box::new(NoObjects)).result
}

fn snapshot(actor: &mut Actor) -> Vec<u8> {
    let mut buf = Vec::new();
    actor.write_snapshot(&mut buf).unwrap();
    buf
}

/// A snapshot that becomes the base of the deltas after it.
fn base(actor: &mut Actor) -> Vec<u8> {
    let buf = snapshot(actor);
    actor.mark_base();
    buf
}

fn delta(actor: &mut Actor, link: &Link) -> Vec<u8> {
    let mut buf = Vec::new();
    actor.write_delta(&mut buf, link).unwrap();
    buf
}

const BASE: [u8; 32] = [7; 32];

fn link(seq: u64) -> Link {
    Link { base: BASE, seq }
}

#[test]
fn a_delta_carries_only_the_pages_a_call_wrote() {
    let m = manifest();
    let rt = runtime();
    let c = compile(&rt, &m);
    let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
    if !actor.tracking_writes() {
        eprintln!("SKIPPED: write tracking is off on this platform (deltas carry every page)");
        return;
    }
    // Grow to 8 MiB first (pages 0..2047), then checkpoint.
    call(&rt, &mut actor, &m, &[2047]).unwrap();
    let _base = base(&mut actor);
    assert_eq!(actor.written_bytes(), Some(0), "nothing written since the snapshot");
    // The input lands in page 0 and the output in page 1; three pages far apart are bumped.
    call(&rt, &mut actor, &m, &[100, 900, 2000]).unwrap();
    let page = 4096u64;
    let written = actor.written_bytes().unwrap();
    assert!(written <= 5 * page, "{written} bytes");
    let mut buf = Vec::new();
    let info = actor.write_delta(&mut buf, &link(1)).unwrap();
    assert!(info.pages <= 5 && info.pages >= 3, "{info:?}");
    assert_eq!(info.memory_bytes, 8 << 20);
    assert!(buf.len() < 4 << 10, "a delta of {} bytes for {} pages", buf.len(), info.pages);
    // Tracking starts afresh: a call writing nothing new but page 0/1 carries little.
    call(&rt, &mut actor, &m, &[]).unwrap();
    let info = actor.write_delta(&mut Vec::new(), &link(2)).unwrap();
    assert!(info.pages <= 2, "{info:?}");
    assert!(actor.write_faults() >= 5);
}

#[test]
fn base_and_deltas_rebuild_the_actor_here_and_on_another_runtime() {
    let m = manifest();
    let rt = runtime();
    let c = compile(&rt, &m);
    let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
    call(&rt, &mut actor, &m, &[1, 5]).unwrap();
    let base = base(&mut actor);
    let mut deltas = Vec::new();
    for (i, pages) in [&[5u32, 300][..], &[1500], &[5, 5, 5], &[]].iter().enumerate() {
        call(&rt, &mut actor, &m, pages).unwrap();
        deltas.push(delta(&mut actor, &link(i as u64 + 1)));
    }
    let want = snapshot(&mut actor);
    for other in [&rt, &runtime()] {
        let c2 = compile(other, &m);
        let mut back = other.restore(&c2, &m, inv(b""), &mut base.as_slice()).unwrap();
        for (i, d) in deltas.iter().enumerate() {
            back.apply_delta(d, &link(i as u64 + 1), LIMIT).unwrap();
        }
        assert_eq!(snapshot(&mut back), want, "base + deltas is the live state, memory and globals");
        // It goes on from there: page 5 was bumped 1 + 1 + 3 times.
        assert_eq!(call(other, &mut back, &m, &[5]).unwrap(), 6i32.to_le_bytes());
    }
}

#[test]
fn a_damaged_foreign_or_out_of_order_delta_is_refused_and_changes_nothing() {
    let m = manifest();
    let rt = runtime();
    let c = compile(&rt, &m);
    let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
    let base = base(&mut actor);
    call(&rt, &mut actor, &m, &[3, 40]).unwrap();
    let d = delta(&mut actor, &link(1));
    let mut target = rt.restore(&c, &m, inv(b""), &mut base.as_slice()).unwrap();
    let before = snapshot(&mut target);
    for i in 0..d.len() {
        let mut bad = d.clone();
        bad[i] ^= 0x01;
        assert!(target.apply_delta(&bad, &link(1), LIMIT).is_err(), "flipping byte {i} went unnoticed");
    }
    for len in [0, 10, 60, d.len() / 2, d.len() - 1] {
        assert!(target.apply_delta(&d[..len], &link(1), LIMIT).is_err(), "truncated to {len}");
    }
    assert!(verify_delta(&d[..d.len() - 1], LIMIT).is_err());
    assert!(matches!(target.apply_delta(&d, &link(2), LIMIT), Err(SnapshotError::Corrupt(_))), "out of order");
    let other_base = Link { base: [8; 32], seq: 1 };
    assert!(matches!(target.apply_delta(&d, &other_base, LIMIT), Err(SnapshotError::Corrupt(_))), "another base");
    assert!(matches!(target.apply_delta(&d, &link(1), 4096), Err(SnapshotError::MemoryTooLarge { .. })));
    let mut foreign_m = m.clone();
    foreign_m.name = "other".into();
    let foreign = rt.compile(format!("{PAGES} ").as_bytes(), &foreign_m).unwrap();
    let mut stranger = rt.activate(&foreign, &foreign_m, inv(b"")).unwrap();
    if foreign.hash() != c.hash() {
        assert!(matches!(stranger.apply_delta(&d, &link(1), LIMIT), Err(SnapshotError::WrongModule { .. })));
    }
    assert_eq!(snapshot(&mut target), before, "nothing changed");
    target.apply_delta(&d, &link(1), LIMIT).unwrap();
    assert_eq!(call(&rt, &mut target, &m, &[40]).unwrap(), 2i32.to_le_bytes());
}

#[test]
fn out_of_bounds_still_traps_and_slots_come_back_writable() {
    let m = manifest();
    let rt = runtime();
    let c = compile(&rt, &m);
    for round in 0..40 {
        let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
        call(&rt, &mut actor, &m, &[round % 30]).unwrap();
        let _ = base(&mut actor);
        // Written after a checkpoint (protected pages), then a real out-of-bounds store.
        let err = call(&rt, &mut actor, &m, &[round % 30, u32::MAX]).unwrap_err();
        assert!(matches!(err, InvokeError::Trap(ref t) if t.contains("out of bounds")), "{err}");
        assert!(actor.write_delta(&mut Vec::new(), &link(1)).is_err(), "a poisoned actor writes no delta");
        // Dropped protected: the pool must hand the slot out writable again (16 slots, 40
        // rounds: every slot is reused).
    }
    let mut fresh = rt.activate(&c, &m, inv(b"")).unwrap();
    assert_eq!(call(&rt, &mut fresh, &m, &[0, 1, 2]).unwrap(), 3i32.to_le_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any sequence of calls, checkpointed after each by a delta or (sometimes) a new base:
    /// the newest base plus the deltas after it rebuild the live actor exactly.
    #[test]
    fn newest_base_plus_its_deltas_is_the_live_state(
        steps in prop::collection::vec((prop::collection::vec(0u32..1024, 0..12), prop::bool::weighted(0.15), prop::bool::weighted(0.2)), 1..12),
    ) {
        let m = manifest();
        let rt = runtime();
        let c = compile(&rt, &m);
        let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
        let mut base_bytes = base(&mut actor);
        let mut deltas: Vec<Vec<u8>> = Vec::new();
        for (pages, full, peek) in steps {
            call(&rt, &mut actor, &m, &pages).unwrap();
            if peek {
                // A snapshot that is not a base (a state comparison, say) must not make the
                // next delta forget pages.
                let _ = snapshot(&mut actor);
            }
            if full {
                base_bytes = base(&mut actor);
                deltas.clear();
            } else {
                deltas.push(delta(&mut actor, &link(deltas.len() as u64 + 1)));
            }
        }
        let want = snapshot(&mut actor);
        let mut back = rt.restore(&c, &m, inv(b""), &mut base_bytes.as_slice()).unwrap();
        for (i, d) in deltas.iter().enumerate() {
            back.apply_delta(d, &link(i as u64 + 1), LIMIT).unwrap();
        }
        prop_assert_eq!(snapshot(&mut back), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes, sealed with a valid checksum so the parser behind it is reached
    /// (page size, counts, indices, header, compressed pages), and mutations of a real delta:
    /// refused or accepted, never a panic, never past the memory limit. (The `actor_delta`
    /// fuzz target does the same at scale.)
    #[test]
    fn any_sealed_bytes_decode_or_are_refused(body in prop::collection::vec(any::<u8>(), 0..600), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6)) {
        let mut sealed = body.clone();
        sealed.extend_from_slice(&delta_checksum(&body));
        let _ = verify_delta(&sealed, 1 << 20);
        // A real delta's body, mutated and re-sealed.
        let mut real = REAL.with(|r| r.clone());
        real.truncate(real.len() - 32);
        for (at, x) in flips {
            if !real.is_empty() {
                let i = at % real.len();
                real[i] ^= x;
            }
        }
        let sum = delta_checksum(&real);
        real.extend_from_slice(&sum);
        if let Ok((_, _, memory)) = verify_delta(&real, 1 << 20) {
            prop_assert!(memory <= 1 << 20);
        }
    }
}

thread_local! {
    /// A real delta of three pages.
    static REAL: Vec<u8> = {
        let m = manifest();
        let rt = runtime();
        let c = compile(&rt, &m);
        let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
        let _ = base(&mut actor);
        call(&rt, &mut actor, &m, &[2, 9, 30]).unwrap();
        delta(&mut actor, &link(1))
    };
}
