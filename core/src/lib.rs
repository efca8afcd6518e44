//! The pure core of a Liquid node.
//!
//! This crate holds every decision a node makes — membership and liveness, object replica
//! sets and sync, where function calls run, actor leases and migrations, and the placement
//! policy — as a deterministic state machine ([`Node`]). It takes inputs (`handle_*`) stamped
//! with a [`Time`] and returns outputs ([`Output`]: send a message, persist bytes, run a
//! function, report an event) and the time it wants to be woken at.
//!
//! It does **not** read clocks, spawn tasks, open sockets or touch files, and it depends on
//! neither tokio nor libp2p nor a Wasm engine: the real driver (`node-agent`, over `mesh`) and
//! the simulator (`sim`) run this very code. A seed and the same inputs reproduce a run
//! exactly.
//!
//! Modules:
//! - [`node`]: the node that composes the subsystems and maps their outputs into one queue.
//! - [`membership`]: SWIM-style failure detection, gossip, anti-entropy, RTTs.
//! - [`objects`]: replica sets, object sync, anti-entropy, durability before acknowledgement.
//! - [`functions`]: the registry, invocations, actors and serving sets.
//! - [`placement`]: the placement policy — facts, candidates and the move rule.
//! - [`rendezvous`]: rendezvous hashing, shared by replica sets and function homes.
//! - [`shared`]: what the subsystems hand the node, owned by none of them.
//! - `testing` (tests, and the cargo feature `testing`): the virtual-time harness that drives
//!   whole nodes for the crate's tests and the benches.
//! - [`wire`]: the versioned CBOR envelope every message travels in.
//!
//! ```
//! use liquid_core::{Node, NodeId, NodeInfo, Output, Time, Tier, node::Config};
//!
//! let info = |k: u8| NodeInfo {
//!     id: NodeId([k; 32]), name: format!("n{k}"), tier: Tier::Edge, labels: Default::default(),
//!     arch: "x86_64".into(), cpus: 2, memory_mib: 1024, addrs: vec![], version: "0.1.0".into(),
//! };
//! let (mut a, mut b) = (Node::new(Config::default(), info(1), None, 1, Time::ZERO),
//!                       Node::new(Config::default(), info(2), None, 2, Time::ZERO));
//! a.handle_connected(Time::ZERO, b.id());
//! // Deliver messages between the two until both are quiet.
//! fn pump(from: &mut Node, to: &mut Node) -> bool {
//!     let mut moved = false;
//!     while let Some(out) = from.poll_output() {
//!         if let Output::Send { msg, .. } = out {
//!             to.handle_message(Time::ZERO, from.id(), msg);
//!             moved = true;
//!         }
//!     }
//!     moved
//! }
//! while pump(&mut a, &mut b) | pump(&mut b, &mut a) {}
//! assert_eq!(a.membership().digest(), b.membership().digest());
//! ```

pub mod functions;
pub mod id;
pub mod info;
pub mod membership;
pub mod node;
pub mod objects;
pub mod placement;
pub mod rendezvous;
pub mod shared;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod wire;

pub use id::NodeId;
pub use info::{NodeInfo, Tier};
pub use membership::Status;
pub use node::{Node, Output};
pub use time::Time;
