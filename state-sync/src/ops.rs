//! The operations users and functions apply to an object, and their JSON form.
//!
//! # The JSON format
//! A write is a JSON list of operations; the whole list applies atomically as **one**
//! automerge change (if any operation fails, none is applied). Each operation is an object
//! with an `"op"` field; unknown fields are refused, so a typo never silently does nothing.
//!
//! | op | fields | effect |
//! |---|---|---|
//! | `set` | `path`, `value`, `text` (optional, default `false`) | Puts a JSON value at `path`, creating maps on the way. Objects become maps, arrays become lists, strings become plain (last-writer-wins) strings. With `"text": true` the value must be a string and becomes a collaborative text that `splice` edits. Setting a counter is an error (use `inc`, or `del` it first). On a list, `items.2` replaces element 2. |
//! | `del` | `path` | Deletes a map key or a list element (`items.2`). Deleting nothing is an error. |
//! | `inc` | `path`, `by` (optional, default `1`, may be negative) | Adds to a counter. A missing path becomes a new counter holding `by` (maps are created on the way). Incrementing anything but a counter is an error. |
//! | `insert` | `path`, `value`, `index` (optional, default: the end) | Inserts one value into the list at `path`, before `index` (`0..=len`). A missing path becomes a new list. |
//! | `splice` | `path`, `index`, `delete` (default `0`), `insert` (default `""`) | Edits the text at `path`: deletes `delete` characters at `index`, then inserts `insert` there. Indexes count Unicode code points. |
//!
//! ```json
//! [
//!   {"op": "set", "path": "profile", "value": {"name": "Ada", "tags": ["math"]}},
//!   {"op": "set", "path": "notes", "value": "hello", "text": true},
//!   {"op": "splice", "path": "notes", "index": 5, "insert": " world"},
//!   {"op": "inc", "path": "stats.visits", "by": 2},
//!   {"op": "insert", "path": "profile.tags", "index": 0, "value": "logic"},
//!   {"op": "del", "path": "profile.tags.1"}
//! ]
//! ```
//!
//! Paths are described in [`crate::object`]. Numbers that fit `i64` are stored as integers,
//! larger positive ones as unsigned integers, the rest as floats.
//!
//! # Concurrency, what to expect
//! `set` and `del` are last-writer-wins per key: two replicas that `set` the same key while
//! apart keep one of the two values (the same one everywhere).
//!
//! *Creating* is not a write that can lose: the maps an operation creates on the way to a
//! missing path, the counter a first `inc` creates and the list a first `insert` creates are
//! made by a **deterministic structural change**: every replica that creates the same
//! container at the same path in the same parent produces the byte-identical change (same
//! synthetic actor, same dependencies, timestamp 0), which automerge stores once. So replicas
//! that concurrently create a counter and increment it all increment the *same* counter, and
//! every acknowledged increment counts; fields set concurrently in a map both replicas
//! created land in the same map. (If the container was deleted since, the next creation is a
//! new generation with its own actor, and replicas that saw the same history agree on it.)
//! The structural change carries no user data; the operation's own writes follow in the
//! batch's one change.
//!
//! # Bounds
//! At most [`OPS_PER_BATCH_MAX`] operations per batch, values nested at most
//! [`VALUE_DEPTH_MAX`] deep, increments of at most ±[`INC_ABS_MAX`], counters within
//! ±[`COUNTER_ABS_MAX`]; the byte size of a batch is bounded by whoever receives it (the
//! HTTP API's body limit).

mod apply;

use serde::{Deserialize, Serialize};

use crate::object::Path;

pub(crate) use apply::{Created, Made, apply};

/// The most operations in one batch.
pub const OPS_PER_BATCH_MAX: usize = 1000;
/// The deepest nesting of maps and lists inside one `set` or `insert` value.
pub const VALUE_DEPTH_MAX: usize = 32;
/// The largest increment, in absolute value: 2^53, the largest integer JavaScript's automerge
/// reads exactly. (A counter itself is an `i64`; automerge wraps it past `i64::MAX` in release
/// builds and panics in debug builds, which needs ~1,000 maximal increments.)
pub const INC_ABS_MAX: u64 = 1 << 53;
/// The range of a counter, in absolute value: ±2^53. An `inc` whose result would leave it is
/// refused ([`OpError::CounterOutOfRange`]). Automerge stores counters as `i64` and sums them
/// when read, so the bound also leaves room for the increments of up to 1,024 replicas
/// that each reached it while apart before an `i64` could overflow on merge.
pub const COUNTER_ABS_MAX: u64 = 1 << 53;

/// One operation. See the [module docs](self) for the JSON format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum Op {
    /// Put a value at a path.
    Set {
        /// Where.
        path: Path,
        /// What: any JSON value.
        value: serde_json::Value,
        /// Store a string value as collaborative text.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        text: bool,
    },
    /// Delete a map key or a list element.
    Del {
        /// What.
        path: Path,
    },
    /// Add to a counter, creating it if missing.
    Inc {
        /// Which counter.
        path: Path,
        /// How much (default 1).
        #[serde(default = "one")]
        by: i64,
    },
    /// Insert one value into a list, creating the list if missing.
    Insert {
        /// Which list.
        path: Path,
        /// Before which element; `None` appends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<usize>,
        /// What: any JSON value.
        value: serde_json::Value,
    },
    /// Edit a text.
    Splice {
        /// Which text.
        path: Path,
        /// Where, in Unicode code points.
        index: usize,
        /// How many code points to delete.
        #[serde(default)]
        delete: usize,
        /// What to insert.
        #[serde(default)]
        insert: String,
    },
}

fn one() -> i64 {
    1
}

impl Op {
    /// The operation's name as written in JSON (`"set"`, `"inc"`…).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Set { .. } => "set",
            Op::Del { .. } => "del",
            Op::Inc { .. } => "inc",
            Op::Insert { .. } => "insert",
            Op::Splice { .. } => "splice",
        }
    }

    /// The path the operation acts on.
    pub fn path(&self) -> &Path {
        match self {
            Op::Set { path, .. }
            | Op::Del { path }
            | Op::Inc { path, .. }
            | Op::Insert { path, .. }
            | Op::Splice { path, .. } => path,
        }
    }

    /// Parses a JSON list of operations (the HTTP API's request body). An integer literal
    /// that fits neither `i64` nor `u64` is refused: JSON parsers read it as an approximate
    /// float, which would store a different number than the one sent.
    pub fn parse_batch(json: &str) -> Result<Vec<Op>, serde_json::Error> {
        if let Some(literal) = oversized_integer(json) {
            return Err(<serde_json::Error as serde::de::Error>::custom(oversized_message(literal)));
        }
        serde_json::from_str(json)
    }
}

/// The first integer literal in the JSON text `json` (outside strings) that fits neither
/// `i64` nor `u64`, if any. Numbers with a fraction or an exponent are floats by intent.
pub fn oversized_integer(json: &str) -> Option<&str> {
    let bytes = json.as_bytes();
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                i += 1;
            }
            let token = &json[start..i];
            let integral = !token.contains(['.', 'e', 'E']);
            if integral && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() && token.len() > 1 {
                return Some(token);
            }
            continue;
        }
        i += 1;
    }
    None
}

/// The error for an [`oversized_integer`].
pub fn oversized_message(literal: &str) -> String {
    format!(
        "the integer {literal} does not fit 64 bits, so it would be stored as an approximate float: send it as a string (\"{literal}\"), or as a float on purpose (with a fraction or an exponent)"
    )
}

/// Why one operation cannot apply. Every variant names the path it is about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// Nothing exists at the path (or at one of its parents).
    #[error("nothing at {path}")]
    NotFound {
        /// The first missing path.
        path: Path,
    },
    /// A path goes through something that is not a map or a list.
    #[error("{path} is a {found}, not a map or a list: a path cannot go inside it")]
    NotAContainer {
        /// The path of the thing in the way.
        path: Path,
        /// What it is (`string`, `text`, `counter`…).
        found: &'static str,
    },
    /// `insert` on something that is not a list.
    #[error("{path} is a {found}, not a list: insert needs a list (set it to [] first)")]
    NotAList {
        /// The path.
        path: Path,
        /// What it is.
        found: &'static str,
    },
    /// `splice` on something that is not a text.
    #[error("{path} is a {found}, not a text: create texts with {{\"op\":\"set\",\"text\":true,...}}")]
    NotText {
        /// The path.
        path: Path,
        /// What it is.
        found: &'static str,
    },
    /// `inc` on something that is not a counter.
    #[error("{path} is a {found}, not a counter: only counters can be incremented (del it first to make a counter)")]
    NotACounter {
        /// The path.
        path: Path,
        /// What it is.
        found: &'static str,
    },
    /// `inc` whose result leaves ±[`COUNTER_ABS_MAX`].
    #[error("{path} holds {before}: adding {by} would take it past ±2^53 ({COUNTER_ABS_MAX}), the range of a counter")]
    CounterOutOfRange {
        /// The counter.
        path: Path,
        /// The counter's value before the refused increment.
        before: i64,
        /// The refused increment.
        by: i64,
    },
    /// `set` on an existing counter, which would lose concurrent increments.
    #[error("{path} is a counter: change it with inc, or del it first to replace it")]
    SetOnCounter {
        /// The path.
        path: Path,
    },
    /// A list reached with a segment that is not an index.
    #[error("{path} is a list: segment {segment:?} must be an index (0, 1, 2…)")]
    BadIndex {
        /// The list's path.
        path: Path,
        /// The refused segment.
        segment: String,
    },
    /// A list or text index past the end.
    #[error("index {index} is out of range for {path}, which has length {len}")]
    IndexOutOfRange {
        /// The list's or text's path.
        path: Path,
        /// The refused index (for `splice`, the end of the deleted range).
        index: usize,
        /// The length.
        len: usize,
    },
    /// The value cannot be stored as asked (too deep, `text` with a non-string…).
    #[error("invalid value for {path}: {reason}")]
    InvalidValue {
        /// The path.
        path: Path,
        /// What is wrong.
        reason: String,
    },
    /// Automerge refused the operation (not expected for validated input).
    #[error("automerge refused the operation at {path}: {message}")]
    Automerge {
        /// The path.
        path: Path,
        /// Automerge's message.
        message: String,
    },
}

/// Why a batch was not applied. Nothing of a refused batch is applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// More than [`OPS_PER_BATCH_MAX`] operations.
    #[error("a batch of {count} operations exceeds the limit of {OPS_PER_BATCH_MAX}: split it")]
    TooManyOps {
        /// The batch's length.
        count: usize,
    },
    /// One operation failed, so the whole batch was rolled back.
    #[error("operation #{index} ({kind} {path}) failed, nothing was applied: {source}")]
    Op {
        /// The failed operation's position in the batch, from 0.
        index: usize,
        /// Its kind (`set`, `inc`…).
        kind: &'static str,
        /// Its path.
        path: Path,
        /// What went wrong.
        source: OpError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    #[test]
    fn json_round_trips() {
        let json = r#"[
            {"op":"set","path":"a.b","value":{"x":[1,2]}},
            {"op":"set","path":"t","value":"hi","text":true},
            {"op":"del","path":"a.b"},
            {"op":"inc","path":"n"},
            {"op":"inc","path":"n","by":-3},
            {"op":"insert","path":"l","value":1},
            {"op":"insert","path":"l","index":0,"value":null},
            {"op":"splice","path":"t","index":1,"delete":1,"insert":"o"}
        ]"#;
        let ops = Op::parse_batch(json).unwrap();
        assert_eq!(ops[3], Op::Inc { path: p("n"), by: 1 });
        assert_eq!(ops[5], Op::Insert { path: p("l"), index: None, value: serde_json::json!(1) });
        assert_eq!(ops[7], Op::Splice { path: p("t"), index: 1, delete: 1, insert: "o".into() });
        let again: Vec<Op> = serde_json::from_str(&serde_json::to_string(&ops).unwrap()).unwrap();
        assert_eq!(again, ops);
        assert_eq!(serde_json::to_value(&ops[2]).unwrap(), serde_json::json!({"op":"del","path":"a.b"}));
        assert_eq!(
            ops.iter().map(Op::kind).collect::<Vec<_>>(),
            ["set", "set", "del", "inc", "inc", "insert", "insert", "splice"]
        );
    }

    #[test]
    fn json_refuses_mistakes() {
        for bad in [
            r#"[{"op":"set","path":"a"}]"#,               // no value
            r#"[{"op":"sett","path":"a","value":1}]"#,    // unknown op
            r#"[{"op":"inc","path":"a","by":1.5}]"#,      // not an integer
            r#"[{"op":"del","path":"a..b"}]"#,            // bad path
            r#"[{"op":"del","path":"a","extra":true}]"#,  // unknown field
            r#"[{"op":"splice","path":"t","index":-1}]"#, // negative index
            r#"{"op":"del","path":"a"}"#,                 // not a list
        ] {
            assert!(Op::parse_batch(bad).is_err(), "{bad}");
        }
        let err = Op::parse_batch(r#"[{"op":"del","path":"a..b"}]"#).unwrap_err().to_string();
        assert!(err.contains("empty segment"), "{err}");
    }

    /// Issue 17: integers beyond 64 bits silently became floats.
    #[test]
    fn integers_beyond_64_bits_are_refused_not_rounded() {
        let big = r#"[{"op":"set","path":"n","value":{"x":[1, 123456789012345678901234]}}]"#;
        let err = Op::parse_batch(big).unwrap_err().to_string();
        assert!(err.contains("123456789012345678901234") && err.contains("as a string"), "{err}");
        assert_eq!(oversized_integer("-9223372036854775809"), Some("-9223372036854775809"));
        for fine in [
            r#"[{"op":"set","path":"n","value":18446744073709551615}]"#,
            r#"[{"op":"set","path":"n","value":-9223372036854775808}]"#,
            r#"[{"op":"set","path":"n","value":1e30}]"#,
            r#"[{"op":"set","path":"n","value":123456789012345678901234.5}]"#,
            r#"[{"op":"set","path":"n","value":"123456789012345678901234"}]"#,
            r#"[{"op":"set","path":"n","value":"a \" 123456789012345678901234"}]"#,
            r#"[{"op":"set","path":"n","value":-0.0}]"#,
        ] {
            assert!(Op::parse_batch(fine).is_ok(), "{fine}");
        }
    }
}
