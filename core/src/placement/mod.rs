//! The placement policy: where a function should serve, decided from measured facts.
//!
//! Pure: no clock, no I/O, no randomness of its own. The caller passes the time (`now_s`,
//! seconds on whatever monotonic scale it likes), the facts, the candidate nodes, a round-trip
//! lookup and a random source; the same inputs and the same random stream give the same
//! decision. The node id is a type parameter (`N: Copy + Ord`): the node uses its own
//! [`NodeId`](crate::NodeId), the unit tests small integers.
//!
//! The pieces:
//! - [`Facts`]: what the serving node(s) measured for one function, as decaying counters —
//!   calls by origin node and site (top-K, the rest folded), objects touched per call and
//!   where their replicas live, fuel and latency per call. Mergeable, serializable.
//! - [`Candidate`] / [`Nodes`]: the nodes the policy may choose from, indexed by id, site and
//!   tier so that a decision samples instead of scanning.
//! - [`Rtt`]: round-trip times between nodes; unknown ones fall back to pessimistic defaults
//!   by tier pair ([`UnknownRtt`]).
//! - [`Constraints`] and [`Subject`]: the manifest's placement and SLO, the current home, the
//!   last move, sizes.
//! - [`Policy::decide`]: the move rule (cost model, hysteresis, cool-down, data placement),
//!   answering a [`Decision`] that carries its figures; [`Policy::spread`]: the serving set of
//!   a stateless function, one node per busy site.
//!
//! The cost model and the rules are written down in `docs/placement.md`.
//!
//! The node applies the decisions: `functions::policy` for actors, `functions::serving` for
//! the serving sets of stateless functions.

mod candidates;
mod facts;
mod policy;
#[cfg(test)]
mod tests;

pub use candidates::*;
pub use facts::*;
pub use policy::*;
