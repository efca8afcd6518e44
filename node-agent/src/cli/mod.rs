//! The command-line tool: each `liquid` subcommand that talks to an agent over its HTTP API
//! (`status`, `nodes`, `obj`, `fn`), the local demo mesh, and the simulator's commands.

pub mod client;
pub mod demo;
pub mod fn_cmd;
pub mod obj_cmd;
pub mod sim_cmd;
