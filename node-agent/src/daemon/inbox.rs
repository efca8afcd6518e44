//! The driver's inbox: everything the driver loop takes in besides transport events, timers
//! and disk completions. Questions from the HTTP API, completions from the executor, and host
//! calls of running guests all arrive here, each with the channel its answer goes back on.
//!
//! A leaf: the API and the executor send into the inbox without importing the driver.

use liquid_core::NodeId;
use liquid_core::functions::{Entry, ExecId};
use liquid_core::objects::{self, Reply};
use tokio::sync::oneshot;

use crate::views::{FunctionJson, LogLine, MemberJson, PlacementChange, StatusJson};

/// A message in the driver's inbox: a question from the HTTP API (answered from the core's
/// state), an executor's completion, or a running guest's host call.
pub enum DriverMsg {
    /// This node's status.
    Status(oneshot::Sender<StatusJson>),
    /// Every member.
    Nodes(oneshot::Sender<Vec<MemberJson>>),
    /// An object request, answered when the core replies.
    Object(objects::Request, oneshot::Sender<Reply>),
    /// An object request from a running function (a host call of this execution).
    HostObject(ExecId, objects::Request, oneshot::Sender<Reply>),
    /// Fault injection (`--dev` only): drop every message to and from these peers,
    /// replacing the previous set; answers the set now blocked.
    Block(Vec<NodeId>, oneshot::Sender<Vec<NodeId>>),
    /// Invoke a function (from the API, or nested from a running function).
    Invoke {
        /// The function.
        name: String,
        /// The input.
        input: Vec<u8>,
        /// Nesting depth (0 from the API).
        depth: u32,
        /// Where the outcome goes.
        reply: InvokeReply,
    },
    /// Register a function whose module is already in the local module store.
    Deploy(Box<Entry>, oneshot::Sender<Reply>),
    /// The registry as this node holds it, with each function's placement in its view.
    Functions(oneshot::Sender<Vec<FunctionJson>>),
    /// Recent log lines of a function on this node.
    Logs(String, oneshot::Sender<Vec<LogLine>>),
    /// The executor fetched and compiled a module for an incoming migration.
    Prefetched {
        /// The actor.
        name: String,
        /// Ready, or why not.
        result: Result<(), String>,
    },
    /// The executor streamed an actor's snapshot (its size) or failed.
    HandoffSent {
        /// The actor.
        name: String,
        /// The target's epoch.
        epoch: u64,
        /// Bytes sent, or why it failed.
        result: Result<u64, String>,
    },
    /// The executor received and stored an actor's snapshot.
    SnapshotReceived {
        /// The source.
        from: NodeId,
        /// The actor.
        name: String,
        /// Its new epoch.
        epoch: u64,
    },
    /// The executor stored a standby's copy of an actor's checkpoint; the core says whether
    /// it may be acknowledged.
    ReplicaStored {
        /// The actor.
        name: String,
        /// The copy's position.
        pos: liquid_core::functions::actors::lease::Pos,
        /// Whether to acknowledge it.
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    /// Move actor `name` to `to` (answered with its current home, which runs the migration).
    Migrate {
        /// The actor.
        name: String,
        /// The target.
        to: NodeId,
        /// Answered once the migration started (or could not).
        reply: oneshot::Sender<Result<NodeId, String>>,
    },
    /// Change a function's placement: pin it to a node or a tier (or unpin), and turn
    /// automatic placement on or off.
    SetPlacement {
        /// The function.
        name: String,
        /// The change.
        change: PlacementChange,
        /// Answered when the registry write is durable here.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Where an invocation's outcome goes.
pub type InvokeReply = oneshot::Sender<Result<Vec<u8>, wasm_host::InvokeError>>;
