//! How an invocation ends when it does not succeed. Travels in forwarded answers, so it is
//! plain data.

use serde::{Deserialize, Serialize};

/// Why an invocation failed. Every invocation ends with a result or exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum InvokeError {
    /// No function has this name.
    #[error("no function named {0:?} is deployed")]
    NotFound(String),
    /// It ran out of fuel or over its wall-clock limit.
    #[error("timed out: {0}")]
    Timeout(String),
    /// It trapped (unreachable, out-of-bounds access, stack overflow…).
    #[error("trapped: {0}")]
    Trap(String),
    /// It tried to grow its memory past its limit.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// Its output went past its limit.
    #[error("output larger than its limit of {0} KiB")]
    OutputTooLarge(u32),
    /// A WASI command exited with a non-zero code.
    #[error("exited with code {code}{}", if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    Exit {
        /// The exit code.
        code: i32,
        /// The end of its stderr.
        stderr: String,
    },
    /// A Liquid ABI function returned non-zero; the message is its output.
    #[error("the function failed: {0}")]
    Failed(String),
    /// Too many calls at once on the node that serves it.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// No node can run it now (its module could not be fetched, no eligible node is up…).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The module or the request is unusable.
    #[error("invalid: {0}")]
    Invalid(String),
}

impl InvokeError {
    /// A short name for metrics and JSON: `not_found`, `timeout`, `trap`…
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::NotFound(_) => "not_found",
            InvokeError::Timeout(_) => "timeout",
            InvokeError::Trap(_) => "trap",
            InvokeError::OutOfMemory(_) => "out_of_memory",
            InvokeError::OutputTooLarge(_) => "output_too_large",
            InvokeError::Exit { .. } => "exit",
            InvokeError::Failed(_) => "failed",
            InvokeError::Overloaded(_) => "overloaded",
            InvokeError::Unavailable(_) => "unavailable",
            InvokeError::Invalid(_) => "invalid",
        }
    }
}
