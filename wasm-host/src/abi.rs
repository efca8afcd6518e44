//! The host side of the Liquid guest ABI (see `docs/abi.md`), minus the engine: error codes,
//! and decoding a host call's arguments from guest memory into a checked request. Kept free
//! of wasmtime so it can be tested (and fuzzed) on plain byte slices.

use serde_json::Value as Json;
use state_sync::ops::Op;
use state_sync::{ObjectName, Path};

use crate::manifest::ObjectAccess;

/// `ERR_NOT_FOUND`: no such object, path or function.
pub const ERR_NOT_FOUND: i32 = -1;
/// `ERR_DENIED`: the manifest does not allow this namespace.
pub const ERR_DENIED: i32 = -2;
/// `ERR_INVALID`: a bad name, path, JSON value or operation, or invalid UTF-8.
pub const ERR_INVALID: i32 = -3;
/// `ERR_UNAVAILABLE`: no replica answered in time.
pub const ERR_UNAVAILABLE: i32 = -4;
/// `ERR_TOO_LARGE`: over a size limit, or a quota (objects per namespace, the node's storage budget).
pub const ERR_TOO_LARGE: i32 = -5;
/// `ERR_FAILED`: the called function failed, or a write could not be made durable.
pub const ERR_FAILED: i32 = -6;

/// The longest error message a host call leaves in the result, bytes: a guest that reads
/// 1 KiB after an error gets all of it.
pub const MESSAGE_MAX: usize = 1024;

/// How deep `call` may nest.
pub const CALL_DEPTH_MAX: u32 = 4;

/// An error a host function returns to the guest: a code from the table above and a
/// message the guest can read with `result_read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiError {
    /// One of the `ERR_*` codes.
    pub code: i32,
    /// What went wrong, for the guest's logs.
    pub message: String,
}

impl AbiError {
    /// An error with this code.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        AbiError { code, message: message.into() }
    }

    /// `ERR_INVALID`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ERR_INVALID, message)
    }
}

impl std::fmt::Display for AbiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// A guest pointer range that does not fit its memory: this traps the invocation, since it
/// is a bug in the guest rather than a condition it can handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host call argument out of bounds: {len} bytes at {ptr} in a memory of {size} bytes")]
pub struct OutOfBounds {
    /// The pointer.
    pub ptr: i64,
    /// The length.
    pub len: i64,
    /// The memory's size.
    pub size: usize,
}

/// The guest bytes `ptr..ptr+len`, checked against the memory.
pub fn slice(mem: &[u8], ptr: i32, len: i32) -> Result<&[u8], OutOfBounds> {
    let oob = || OutOfBounds { ptr: ptr.into(), len: len.into(), size: mem.len() };
    let start = usize::try_from(ptr).map_err(|_| oob())?;
    let len = usize::try_from(len).map_err(|_| oob())?;
    let end = start.checked_add(len).ok_or_else(oob)?;
    mem.get(start..end).ok_or_else(oob)
}

/// The guest bytes `ptr..ptr+len` as a mutable slice, checked against the memory.
pub fn slice_mut(mem: &mut [u8], ptr: i32, len: i32) -> Result<&mut [u8], OutOfBounds> {
    let size = mem.len();
    let oob = || OutOfBounds { ptr: ptr.into(), len: len.into(), size };
    let start = usize::try_from(ptr).map_err(|_| oob())?;
    let len = usize::try_from(len).map_err(|_| oob())?;
    let end = start.checked_add(len).ok_or_else(oob)?;
    mem.get_mut(start..end).ok_or_else(oob)
}

/// A string argument: in bounds (else a trap) and UTF-8 (else `ERR_INVALID`).
pub fn string(mem: &[u8], ptr: i32, len: i32) -> Result<Result<&str, AbiError>, OutOfBounds> {
    let bytes = slice(mem, ptr, len)?;
    Ok(std::str::from_utf8(bytes).map_err(|e| AbiError::invalid(format!("argument is not UTF-8: {e}"))))
}

/// An object request a function made, after its arguments were decoded and checked against
/// the manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjCall {
    /// Read the value at `path` (the whole document for `None`).
    Get {
        /// The object.
        object: ObjectName,
        /// Where in it.
        path: Option<Path>,
    },
    /// Apply these operations atomically.
    Apply {
        /// The object.
        object: ObjectName,
        /// The operations, never empty.
        ops: Vec<Op>,
    },
    /// The names of the objects held here that start with `prefix`.
    List {
        /// The prefix; it names a namespace the function may read.
        prefix: String,
    },
}

/// What a function may do with a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read.
    Read,
    /// Write.
    Write,
}

fn object(name: &str, access: Access, allowed: &ObjectAccess) -> Result<ObjectName, AbiError> {
    let object = ObjectName::parse(name).map_err(|e| AbiError::invalid(e.to_string()))?;
    let ok = match access {
        Access::Read => allowed.may_read(object.namespace()),
        Access::Write => allowed.may_write(object.namespace()),
    };
    if !ok {
        let verb = if access == Access::Read { "read" } else { "write" };
        return Err(AbiError::new(
            ERR_DENIED,
            format!("the manifest does not allow this function to {verb} namespace {:?}", object.namespace()),
        ));
    }
    Ok(object)
}

fn path(p: &str) -> Result<Path, AbiError> {
    Path::parse(p).map_err(|e| AbiError::invalid(e.to_string()))
}

/// `obj_get(name, path)`.
pub fn obj_get(name: &str, p: &str, allowed: &ObjectAccess) -> Result<ObjCall, AbiError> {
    let object = object(name, Access::Read, allowed)?;
    let path = if p.is_empty() { None } else { Some(path(p)?) };
    Ok(ObjCall::Get { object, path })
}

/// `obj_set(name, path, json)`.
pub fn obj_set(name: &str, p: &str, json: &str, allowed: &ObjectAccess) -> Result<ObjCall, AbiError> {
    let object = object(name, Access::Write, allowed)?;
    let value: Json = serde_json::from_str(json).map_err(|e| AbiError::invalid(format!("value is not JSON: {e}")))?;
    Ok(ObjCall::Apply { object, ops: vec![Op::Set { path: path(p)?, value, text: false }] })
}

/// `obj_inc(name, path, by)`.
pub fn obj_inc(name: &str, p: &str, by: i64, allowed: &ObjectAccess) -> Result<ObjCall, AbiError> {
    let object = object(name, Access::Write, allowed)?;
    Ok(ObjCall::Apply { object, ops: vec![Op::Inc { path: path(p)?, by }] })
}

/// `obj_del(name, path)`.
pub fn obj_del(name: &str, p: &str, allowed: &ObjectAccess) -> Result<ObjCall, AbiError> {
    let object = object(name, Access::Write, allowed)?;
    Ok(ObjCall::Apply { object, ops: vec![Op::Del { path: path(p)? }] })
}

/// `obj_apply(name, ops)`: at most [`OPS_MAX`] operations.
pub fn obj_apply(name: &str, ops: &str, allowed: &ObjectAccess) -> Result<ObjCall, AbiError> {
    let object = object(name, Access::Write, allowed)?;
    let ops = Op::parse_batch(ops).map_err(|e| AbiError::invalid(format!("operations: {e}")))?;
    if ops.is_empty() {
        return Err(AbiError::invalid("operations: the list is empty"));
    }
    if ops.len() > OPS_MAX {
        return Err(AbiError::new(ERR_TOO_LARGE, format!("{} operations in one batch; at most {OPS_MAX}", ops.len())));
    }
    Ok(ObjCall::Apply { object, ops })
}

/// The most operations in one `obj_apply`, as for the HTTP API.
pub const OPS_MAX: usize = 1000;

/// `obj_list(prefix)`: the prefix must name (or start within) a readable namespace.
pub fn obj_list(prefix: &str, allowed: &ObjectAccess) -> Result<ObjCall, AbiError> {
    let ns = prefix.split('/').next().unwrap_or_default();
    let whole_ns = prefix.contains('/');
    let ok = if whole_ns {
        allowed.may_read(ns)
    } else {
        // A prefix inside a namespace name ("sen" for "sensors") may list only namespaces
        // that are all readable; keep it simple and require one readable namespace to match.
        !ns.is_empty() && allowed.read.iter().chain(&allowed.write).any(|n| n.starts_with(ns))
    };
    if !ok {
        return Err(AbiError::new(ERR_DENIED, format!("the manifest does not allow listing {prefix:?}")));
    }
    Ok(ObjCall::List { prefix: prefix.to_string() })
}

/// The value at `path` inside `value`, if there is one. Numbers index lists.
pub fn value_at<'a>(value: &'a Json, path: &Path) -> Option<&'a Json> {
    path.segments().iter().try_fold(value, |v, seg| match v {
        Json::Object(m) => m.get(seg.as_str()),
        Json::Array(a) => state_sync::object::segment_index(seg).and_then(|i| a.get(i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn access() -> ObjectAccess {
        ObjectAccess { read: vec!["sensors".into()], write: vec!["demo".into()] }
    }

    #[test]
    fn object_access_follows_the_manifest() {
        assert!(obj_get("sensors/a", "", &access()).is_ok());
        assert!(obj_get("demo/a", "x.y", &access()).is_ok());
        assert_eq!(obj_set("sensors/a", "x", "1", &access()).unwrap_err().code, ERR_DENIED);
        assert_eq!(obj_get("other/a", "", &access()).unwrap_err().code, ERR_DENIED);
        assert_eq!(obj_inc("demo/a", "a..b", 1, &access()).unwrap_err().code, ERR_INVALID);
        assert_eq!(obj_set("demo/a", "x", "{nope", &access()).unwrap_err().code, ERR_INVALID);
        assert_eq!(obj_get("no-slash", "", &access()).unwrap_err().code, ERR_INVALID);
        assert_eq!(obj_apply("demo/a", "[]", &access()).unwrap_err().code, ERR_INVALID);
        assert!(obj_apply("demo/a", r#"[{"op":"insert","path":"l","value":1}]"#, &access()).is_ok());
        assert!(obj_list("sensors/site-1.", &access()).is_ok());
        assert!(obj_list("sens", &access()).is_ok());
        assert_eq!(obj_list("other/", &access()).unwrap_err().code, ERR_DENIED);
        assert_eq!(obj_list("", &access()).unwrap_err().code, ERR_DENIED);
    }

    #[test]
    fn value_at_walks_maps_and_lists() {
        let v = serde_json::json!({"a": {"b": [10, {"c": 3}]}});
        assert_eq!(value_at(&v, &Path::parse("a.b.1.c").unwrap()), Some(&serde_json::json!(3)));
        assert_eq!(value_at(&v, &Path::parse("a.b.01").unwrap()), None);
        assert_eq!(value_at(&v, &Path::parse("a.z").unwrap()), None);
    }

    proptest! {
        /// Any pointer and length either decode to exactly the bytes in range or are refused:
        /// never a panic, never a read outside the memory.
        #[test]
        fn pointer_decoding_is_total(size in 0usize..4096, ptr in any::<i32>(), len in any::<i32>()) {
            let mem: Vec<u8> = (0..size).map(|i| i as u8).collect();
            match slice(&mem, ptr, len) {
                Ok(s) => {
                    prop_assert!(ptr >= 0 && len >= 0);
                    prop_assert!(ptr as usize + len as usize <= size);
                    prop_assert_eq!(s.len(), len as usize);
                    if len > 0 { prop_assert_eq!(s[0], mem[ptr as usize]); }
                }
                Err(e) => prop_assert!(ptr < 0 || len < 0 || (ptr as i64 + len as i64) as usize > size, "{e}"),
            }
        }

        /// Arbitrary argument bytes give a decoded call or an error code: never a panic.
        #[test]
        fn argument_decoding_is_total(name in ".{0,40}", p in ".{0,40}", json in ".{0,60}", by in any::<i64>()) {
            let a = access();
            for r in [obj_get(&name, &p, &a), obj_set(&name, &p, &json, &a), obj_inc(&name, &p, by, &a),
                      obj_del(&name, &p, &a), obj_apply(&name, &json, &a), obj_list(&name, &a)] {
                if let Err(e) = r {
                    prop_assert!([ERR_DENIED, ERR_INVALID, ERR_TOO_LARGE].contains(&e.code));
                }
            }
        }
    }
}

/// A log line's level, as the guest passes it to `log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// 0.
    Error,
    /// 1.
    Warn,
    /// 2 (and anything unknown).
    Info,
    /// 3.
    Debug,
}

impl Level {
    /// The level for the guest's number; unknown numbers are `Info`.
    pub fn from_guest(n: i32) -> Level {
        match n {
            0 => Level::Error,
            1 => Level::Warn,
            3 => Level::Debug,
            _ => Level::Info,
        }
    }

    /// `"error"`, `"warn"`…
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}
