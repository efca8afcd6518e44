//! The Wasm host of Liquid functions: what a function is (a Wasm module plus a manifest,
//! content-addressed by the module's BLAKE3 hash), the guest ABI's host side, and — with the
//! `runtime` feature — the wasmtime executor with its limits, actor snapshots and the
//! module/artifact store.
//!
//! The pure node core uses this crate without `runtime` (manifests, hashes, outcomes), so the
//! core stays free of a Wasm engine; where a function runs is decided in the core
//! (`liquid_core::placement`). The agent and the simulator use the runtime.

pub mod abi;
pub mod manifest;
pub mod outcome;
pub mod package;

#[cfg(feature = "runtime")]
mod dirty;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "runtime")]
pub mod snapshot;
#[cfg(feature = "runtime")]
pub mod store;

pub use manifest::{ActorOptions, Durability, Kind, Limits, Manifest, ManifestError, ModuleHash};
pub use outcome::InvokeError;
