//! Rough numbers for the state-sync layer (not a benchmark suite; run it in release):
//!
//! ```text
//! cargo run --release -p state-sync --example measure
//! ```
//!
//! 1. in-memory apply rate of single-op batches (`inc`, `set`);
//! 2. durable writes per second through the file store (one fsync per write, and batched);
//! 3. two replicas that each made 1,000 increments apart: bytes, messages and round trips
//!    to converge, with the default and with a small message bound.

// A measuring tool, not part of the pure library: it reads the clock.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use automerge::ActorId;
use state_sync::ops::Op;
use state_sync::replica::Config;
use state_sync::store::{self, Compaction, FileStore, Store};
use state_sync::{Document, ObjectName, Replica};

fn ops(json: &str) -> Vec<Op> {
    Op::parse_batch(json).unwrap_or_default()
}

fn apply_rate(label: &str, n: usize, make: impl Fn(usize) -> Vec<Op>) {
    let mut doc = Document::new(ActorId::from(b"m".as_slice()));
    let batches: Vec<Vec<Op>> = (0..n).map(make).collect();
    let start = Instant::now();
    for (i, b) in batches.iter().enumerate() {
        if let Err(e) = doc.apply(b, i as i64) {
            eprintln!("apply failed: {e}");
            return;
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "apply {label:<28} {n:>6} batches in {s:.3} s = {:>8.0} ops/s ({:.1} us/op)",
        n as f64 / s,
        s * 1e6 / n as f64
    );
}

fn durable_rate(label: &str, writes: usize, per_sync: usize) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let Ok(mut store) = FileStore::open(dir.path()) else { return };
    let Ok(name) = ObjectName::parse("bench/counter") else { return };
    let mut doc = Document::new(ActorId::from(b"m".as_slice()));
    let compaction = Compaction::default();
    let start = Instant::now();
    for i in 0..writes {
        let set = ops(&format!(r#"[{{"op":"set","path":"k{}","value":{i}}}]"#, i % 100));
        if doc.apply(&set, i as i64).is_err() {
            return;
        }
        if let Err(e) = store::persist(&mut store, &name, &mut doc, &compaction) {
            return eprintln!("persist: {e}");
        }
        if (i + 1) % per_sync == 0
            && let Err(e) = store.sync()
        {
            return eprintln!("sync: {e}");
        }
    }
    let s = start.elapsed().as_secs_f64();
    let bytes = store.stats(&name).map_or(0, |s| s.bytes);
    println!(
        "durable {label:<26} {writes:>6} writes in {s:.3} s = {:>8.0} writes/s (log {bytes} B)",
        writes as f64 / s
    );
}

/// Runs the protocol until both sides are quiet: (messages, bytes, round trips).
fn pump(a: &mut Replica<&str>, b: &mut Replica<&str>) -> (usize, usize, usize) {
    let (mut msgs, mut bytes, mut rounds) = (0, 0, 0);
    for _ in 0..100_000 {
        let to_b = a.generate(&"b");
        if let Some(m) = &to_b {
            let _ = b.receive(&"a", m);
        }
        let back = b.generate(&"a");
        if let Some(m) = &back {
            let _ = a.receive(&"b", m);
        }
        if to_b.is_none() && back.is_none() {
            break;
        }
        rounds += 1;
        for m in to_b.iter().chain(&back) {
            msgs += 1;
            bytes += m.len();
        }
    }
    (msgs, bytes, rounds)
}

fn converge(label: &str, config: Config, increments: usize, op: &str) {
    let mk = |a: &[u8]| Replica::new(Document::new(ActorId::from(a)), config.clone());
    let (mut a, mut b) = (mk(b"a"), mk(b"b"));
    // A shared starting point: the counter exists on both sides.
    if a.doc_mut().apply(&ops(r#"[{"op":"inc","path":"n","by":0}]"#), 0).is_err() {
        return;
    }
    pump(&mut a, &mut b);
    for i in 0..increments {
        let _ = a.doc_mut().apply(&ops(&op.replace("{i}", &format!("a{i}"))), i as i64);
        let _ = b.doc_mut().apply(&ops(&op.replace("{i}", &format!("b{i}"))), i as i64);
    }
    a.reset(&"b");
    b.reset(&"a");
    let start = Instant::now();
    let (msgs, bytes, rounds) = pump(&mut a, &mut b);
    let s = start.elapsed().as_secs_f64();
    let same = a.doc().read() == b.doc().read();
    println!(
        "converge {label:<36} {increments} + {increments} changes: {bytes:>7} B in {msgs:>3} messages, {rounds:>3} round trips, {:>6.1} ms; equal: {same}, n = {}",
        s * 1e3,
        a.doc().value()["n"]
    );
}

fn main() {
    apply_rate("inc (one counter)", 20_000, |_| ops(r#"[{"op":"inc","path":"n"}]"#));
    apply_rate("set (20k distinct keys)", 20_000, |i| ops(&format!(r#"[{{"op":"set","path":"k{i}","value":{i}}}]"#)));
    apply_rate("set (one nested key)", 20_000, |i| ops(&format!(r#"[{{"op":"set","path":"a.b","value":{i}}}]"#)));
    durable_rate("fsync every write", 2_000, 1);
    durable_rate("fsync every 10 writes", 10_000, 10);
    durable_rate("fsync every 100 writes", 20_000, 100);
    let inc = r#"[{"op":"inc","path":"n"}]"#;
    let set = r#"[{"op":"set","path":"k{i}","value":"{i}"}]"#;
    let kib = |k: usize| Config { message_bytes_max: k * 1024, ..Config::default() };
    converge("inc, default bound (1 MiB)", Config::default(), 1_000, inc);
    converge("inc, message_bytes_max 4 KiB", kib(4), 1_000, inc);
    converge("set new keys, default bound (1 MiB)", Config::default(), 10_000, set);
    converge("set new keys, message_bytes_max 64 KiB", kib(64), 10_000, set);
}
