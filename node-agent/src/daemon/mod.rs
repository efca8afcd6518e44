//! The agent daemon: the real driver of the node core (tokio, the mesh, the disk), the
//! executor that runs functions with wasmtime, actor checkpoints, the HTTP API and the
//! agent's settings. `liquid agent` runs it.

pub mod agent;
pub mod api;
pub mod checkpoint;
pub mod config;
pub mod driver;
pub mod executor;
pub mod inbox;
pub mod private;
