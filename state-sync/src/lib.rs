//! Liquid's objects: named automerge documents, the JSON operations that change them, their
//! replication between two nodes, and their crash-safe local store.
//!
//! # What this crate does
//! - Names objects (`namespace/key`) and parses paths into them (`stats.count`, `items.0`):
//!   [`object`].
//! - Applies batches of JSON operations (`set`, `del`, `inc`, `insert`, `splice`) to a
//!   document atomically as one automerge change, with typed errors naming the path, and
//!   reads a document back as JSON with its heads: [`ops`], [`doc`].
//! - Replicates one document with any number of peers through automerge's sans-IO sync
//!   protocol, one session per peer, in size-bounded messages, with a digest per document
//!   for anti-entropy to skip what a peer already has: [`replica`].
//! - Stores each document as an append-only, checksummed log of automerge saves behind a
//!   small synchronous [`Store`] trait, with a file implementation and a simulated one whose
//!   crash loses unsynced writes; torn tails are dropped on load; logs are compacted:
//!   [`store`].
//!
//! # What it does not do
//! No networking, no clocks, no threads, no async: it is pure logic plus a synchronous
//! storage trait, and depends on neither tokio, libp2p nor wasmtime. It does not decide
//! *which* nodes replicate an object, when to sync, how sync messages travel or when a
//! write is acknowledged: the node core composes these pieces (replica sets from the
//! membership view, sync messages in the wire envelope, persistence before
//! acknowledgement, anti-entropy timers) and the drivers carry out its outputs.
//!
//! # Modules
//! - [`object`]: [`ObjectName`] and [`Path`], validated.
//! - [`ops`]: [`ops::Op`], its JSON format, and the errors of applying it.
//! - [`doc`]: [`Document`]: apply, read as JSON, heads, incremental and full saves.
//! - [`replica`]: [`Replica`]: sync sessions per peer, bounded messages, [`Digest`].
//! - [`store`]: [`Store`], [`FileStore`], [`SimStore`], the on-disk format, `persist` and
//!   `restore`.
//!
//! # Example: two replicas, apart, then synced
//! ```
//! use state_sync::{Document, ObjectName, Replica, SimStore, replica, store};
//! use state_sync::automerge::ActorId;
//! use state_sync::ops::Op;
//!
//! let name = ObjectName::parse("app/stats").unwrap();
//! let new = |actor: &str| Replica::new(Document::new(ActorId::from(actor.as_bytes())), replica::Config::default());
//! let (mut a, mut b) = (new("node-a.1"), new("node-b.1"));
//!
//! // The counter exists on both sides before they part…
//! a.doc_mut().apply(&Op::parse_batch(r#"[{"op":"inc","path":"visits","by":0}]"#).unwrap(), 0).unwrap();
//! fn sync(a: &mut Replica<&'static str>, b: &mut Replica<&'static str>) {
//!     loop {
//!         let to_b = a.generate(&"b");
//!         if let Some(m) = &to_b { b.receive(&"a", m).unwrap(); }
//!         let to_a = b.generate(&"a");
//!         if let Some(m) = &to_a { a.receive(&"b", m).unwrap(); }
//!         if to_a.is_none() && to_b.is_none() { break; }
//!     }
//! }
//! sync(&mut a, &mut b);
//!
//! // …then each side writes while cut off, and persists before acknowledging.
//! let mut disk = SimStore::new();
//! let batch = Op::parse_batch(r#"[{"op":"inc","path":"visits"},{"op":"set","path":"by","value":"a"}]"#).unwrap();
//! a.doc_mut().apply(&batch, 0).unwrap();
//! store::persist(&mut disk, &name, a.doc_mut(), &store::Compaction::default()).unwrap();
//! store::Store::sync(&mut disk).unwrap(); // now the write may be acknowledged
//! b.doc_mut().apply(&Op::parse_batch(r#"[{"op":"inc","path":"visits","by":2}]"#).unwrap(), 0).unwrap();
//!
//! // The partition heals: reset the sessions (a reconnect) and sync.
//! a.reset(&"b");
//! b.reset(&"a");
//! sync(&mut a, &mut b);
//! assert_eq!(a.doc().read(), b.doc().read());
//! assert_eq!(a.doc().value()["visits"], 3);
//!
//! // A crash loses nothing that was synced to disk.
//! disk.crash();
//! let back = store::restore(&mut disk, &name, ActorId::from(b"node-a.2".as_slice())).unwrap().unwrap();
//! assert_eq!(back.doc.value()["by"], "a");
//! ```

pub mod doc;
pub mod object;
pub mod ops;
pub mod replica;
pub mod store;

pub use automerge;
pub use doc::{Document, Heads, Snapshot};
pub use object::{ObjectName, Path};
pub use replica::{Digest, Replica};
pub use store::{FileStore, SimStore, Store};
