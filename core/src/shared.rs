//! What the node's subsystems hand to the node, owned by none of them (as quinn-proto's
//! `shared.rs` is owned by neither its endpoint nor its connections).
//!
//! Each subsystem has its own output type — [`membership::Output`](crate::membership::Output),
//! [`objects::Output`](crate::objects::Output), [`functions::Output`](crate::functions::Output)
//! — and pushes it into a [`Sink`]. The node's queue is a sink for all of them and maps each
//! into its own [`Output`](crate::Output) in the order pushed, so a subsystem never names the
//! node's outputs nor another subsystem's, and the driver still sees one ordered stream.

/// Where a subsystem puts what it asks of the node, in order.
pub trait Sink<T> {
    /// Queues `item` after everything pushed before it.
    fn push(&mut self, item: T);
}
