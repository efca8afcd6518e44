//! The one virtual-time harness for whole [`Node`](crate::Node)s: the core's tests (the
//! membership, objects and functions ones) and the benches drive nodes through it.
//!
//! Compiled for the crate's own tests and under the cargo feature `testing` (which a bench
//! enables through a dev-dependency); normal builds do not contain it. It adds no
//! dependency.
//!
//! What it models, and what it does not:
//! - one global virtual clock; a queue of deliveries and disk completions ordered by
//!   (time, sequence), so a run is a function of its inputs and [`Faults::seed`];
//! - a fixed one-way latency per message ([`Setup::latency`]), links cut by pairs, and
//!   optional seeded loss, extra delay and per-node clock drift ([`Faults`]);
//! - [`SimStore`](state_sync::SimStore) disks whose flushes take [`Setup::disk`] and which
//!   lose unsynced writes on a crash; restarts with or without the membership memory;
//! - executions and actor hand-offs answered by the test ([`Cluster::run_actors`],
//!   [`Cluster::execute_all`]), not by a Wasm engine;
//! - optionally, every message through the wire format ([`Wire`]) and counted
//!   ([`Traffic`]).
//!
//! It has no bandwidth, no reordering on one link beyond [`Faults::delay_max`], and no
//! processing time: the simulator (`sim`) is the product's model of a network and runs
//! functions for real.
//!
//! Modules: `cluster` (the nodes and the event loop), `network` (faults, the wire trip,
//! counters), `actors` (the driver's side of functions).
//!
//! ```
//! use std::time::Duration;
//! use liquid_core::testing::{Cluster, value_of};
//!
//! let mut h = Cluster::new(3); // node 0 cloud, 1 and 2 edge; joined and settled
//! h.partition(&[0], &[1, 2]);
//! h.write(0, "app/a", r#"[{"op":"set","path":"x","value":1}]"#);
//! h.write(1, "app/a", r#"[{"op":"set","path":"y","value":2}]"#);
//! h.heal(); // reconnects both sides of each cut link
//! h.run_for(Duration::from_secs(5));
//! assert_eq!(value_of(&h.get(2, "app/a"))["x"], 1);
//! assert_eq!(h.value(0, "app/a").unwrap()["y"], 2);
//! ```

// A harness: a broken expectation is a failed test, so it panics rather than return errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actors;
mod cluster;
mod network;

pub use actors::{ActorDisk, ActorExec, Answer};
pub use cluster::{Cluster, DISK, Event, Join, LATENCY, Setup, index};
pub use network::{Cbor, Faults, Flight, Payload, Subsystem, Traffic, Wire};

use state_sync::ObjectName;
use state_sync::ops::Op;

use crate::objects::{Change, Reply};
use crate::{NodeId, NodeInfo, Tier};

/// The id of node `k`: `k + 1` in every byte.
pub fn id(k: usize) -> NodeId {
    NodeId([k as u8 + 1; 32])
}

/// Node `k`'s description, with this tier and no labels.
pub fn info(k: usize, tier: Tier) -> NodeInfo {
    NodeInfo {
        id: id(k),
        name: format!("n{k}"),
        tier,
        labels: Default::default(),
        arch: "x86_64".into(),
        cpus: 1,
        memory_mib: 512,
        addrs: vec![],
        version: "test".into(),
    }
}

/// The object name `s`, which must be valid.
pub fn obj(s: &str) -> ObjectName {
    ObjectName::parse(s).unwrap()
}

/// A change of the ops in `json`, which must parse.
pub fn ops(json: &str) -> Change {
    Change::Ops(Op::parse_batch(json).unwrap())
}

/// The value in a [`Reply::Value`]; panics on any other reply.
pub fn value_of(r: &Reply) -> serde_json::Value {
    match r {
        Reply::Value { snapshot, .. } => snapshot.value.clone(),
        other => panic!("expected a value, got {other:?}"),
    }
}
