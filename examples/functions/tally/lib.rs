//! tally: an actor that keeps its running totals in its own linear memory. Each call reads
//! `value` from the object named by the input (default `readings/here`; a missing object
//! counts as 0) and answers `{"calls":N,"sum":S,"last":V}`.
//!
//! The totals are plain statics: the node checkpoints the actor's memory after each call,
//! and a migration carries it to the next node, so they survive restarts and moves.

use std::sync::atomic::{AtomicU64, Ordering};

static CALLS: AtomicU64 = AtomicU64::new(0);
static SUM_BITS: AtomicU64 = AtomicU64::new(0);

fn handler(input: Vec<u8>) -> Result<Vec<u8>, String> {
    let object = std::str::from_utf8(&input).map_err(|_| "the input is not UTF-8".to_string())?.trim();
    let object = if object.is_empty() { "readings/here" } else { object };
    let last = match liquid_guest::obj::get(object, "value") {
        Ok(v) => v.trim().parse::<f64>().unwrap_or(0.0),
        Err(e) if e.is_not_found() => 0.0,
        Err(e) => return Err(format!("reading {}: {}", object, e)),
    };
    let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let sum = f64::from_bits(SUM_BITS.load(Ordering::Relaxed)) + last;
    SUM_BITS.store(sum.to_bits(), Ordering::Relaxed);
    Ok(format!("{{\"calls\":{},\"sum\":{},\"last\":{}}}", calls, sum, last).into_bytes())
}

liquid_guest::entry!(handler);
