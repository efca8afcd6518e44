//! The messages functions exchange between nodes (inside the wire envelope's
//! [`Message::Functions`](crate::wire::Message::Functions)).

use serde::{Deserialize, Serialize};
use wasm_host::{InvokeError, ModuleHash};

use super::actors::lease;
use crate::NodeId;
use crate::placement::Facts;

/// Function messages between nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// Run this call (or pass it on).
    Invoke {
        /// The caller's id for it.
        id: u64,
        /// The function.
        name: String,
        /// The input.
        #[serde(with = "serde_bytes")]
        input: Vec<u8>,
        /// Nesting depth.
        depth: u32,
        /// How many times it was passed on already.
        hops: u8,
    },
    /// The outcome of an `Invoke`.
    Done {
        /// The caller's id.
        id: u64,
        /// The output or the error.
        result: Result<serde_bytes::ByteBuf, InvokeError>,
    },
    /// "Not here: try `to`." The caller follows it.
    Redirect {
        /// The caller's id.
        id: u64,
        /// Where the function runs in the answering node's view.
        to: NodeId,
    },
    /// Lease actor `name` at `epoch` to the sender, whose state is that of epoch `base`.
    LeaseAsk {
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// The epoch.
        epoch: u64,
        /// The state's epoch (0: fresh).
        base: u64,
        /// The asker's time when it asked (echoed back).
        sent: u64,
        /// A takeover's copy of the state (absent otherwise): a granter holding a newer copy
        /// refuses it (docs/functions.md, "Failover").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pos: Option<super::actors::lease::Pos>,
    },
    /// Granted.
    LeaseGrant {
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// The epoch.
        epoch: u64,
        /// The `sent` of the request.
        sent: u64,
    },
    /// Refused.
    LeaseDeny {
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// The epoch asked for.
        epoch: u64,
        /// The `sent` of the request.
        sent: u64,
        /// Why.
        denial: lease::Denial,
    },
    /// The sender gives up its lease at `epoch`.
    LeaseRelease {
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// The epoch.
        epoch: u64,
    },
    /// Prepare to take over actor `name` at `epoch` (from state `base`): fetch and compile.
    Prepare {
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// The target's epoch.
        epoch: u64,
        /// The source's epoch (the state's).
        base: u64,
        /// The module.
        hash: ModuleHash,
        /// The actor's group (lease granters) at the target.
        granters: Vec<NodeId>,
        /// The group before the move, when it changes: the target's first lease needs a
        /// majority of both (empty: the group stays).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        joint: Vec<NodeId>,
        /// Why it moves.
        reason: String,
        /// The policy's figures (JSON text), if the policy moved it.
        figures: Option<String>,
    },
    /// The answer to `Prepare`.
    Prepared {
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// The target's epoch.
        epoch: u64,
        /// Ready, or why not.
        result: Result<(), String>,
    },
    /// Move actor `name` (whose home is the recipient) to `to` (an operator's request).
    MigrateAsk {
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// The target.
        to: NodeId,
        /// Why (for logs and `fn where`).
        reason: String,
    },
    /// A `MigrateAsk` was refused.
    MigrateRefused {
        /// The actor, by its function's name (also its registry key).
        name: String,
        /// Why.
        reason: String,
    },
    /// What the sender measured of a stateless function it serves, for its home (rebased to
    /// clock 0: see [`Facts::rebased`]).
    Facts {
        /// The function.
        name: String,
        /// The facts.
        facts: Box<Facts<NodeId>>,
    },
    /// Fetch and compile this function's module: it is about to join its serving set.
    Warm {
        /// The function.
        name: String,
        /// Its module.
        hash: ModuleHash,
    },
    /// The answer to `Warm`.
    Warmed {
        /// The function.
        name: String,
        /// Ready, or why not.
        result: Result<(), String>,
    },
}

impl Message {
    /// A short, stable name of the message kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Invoke { .. } => "fn_invoke",
            Message::Done { .. } => "fn_done",
            Message::Redirect { .. } => "fn_redirect",
            Message::LeaseAsk { .. } => "lease_ask",
            Message::LeaseGrant { .. } => "lease_grant",
            Message::LeaseDeny { .. } => "lease_deny",
            Message::LeaseRelease { .. } => "lease_release",
            Message::Prepare { .. } => "fn_prepare",
            Message::Prepared { .. } => "fn_prepared",
            Message::MigrateAsk { .. } => "fn_migrate",
            Message::MigrateRefused { .. } => "fn_migrate_refused",
            Message::Facts { .. } => "fn_facts",
            Message::Warm { .. } => "fn_warm",
            Message::Warmed { .. } => "fn_warmed",
        }
    }
}
