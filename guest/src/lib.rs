//! `liquid_guest`: write Liquid functions in Rust.
//!
//! A safe, dependency-free wrapper over the Liquid guest ABI (`docs/abi.md`): the host
//! functions the node imports into module `liquid`, and the `liquid_call` entry point.
//!
//! ```ignore
//! fn handler(input: Vec<u8>) -> Result<Vec<u8>, String> {
//!     let n = liquid_guest::obj::inc("demo/counter", "count", 1).map_err(|e| e.to_string())?;
//!     let _ = n;
//!     Ok(input)
//! }
//! liquid_guest::entry!(handler);
//! ```
//!
//! Builds with rustc 1.63 (`wasm32-wasi`) and with current Rust (`wasm32-wasip1`). On other
//! targets the crate compiles, but every host function panics: there is no host to call.
#![allow(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

/// No such object, path or function.
pub const ERR_NOT_FOUND: i32 = -1;
/// The manifest does not allow this namespace.
pub const ERR_DENIED: i32 = -2;
/// A bad name, path, JSON value or operation, or invalid UTF-8.
pub const ERR_INVALID: i32 = -3;
/// No replica answered in time; retrying later may work.
pub const ERR_UNAVAILABLE: i32 = -4;
/// Over a size limit.
pub const ERR_TOO_LARGE: i32 = -5;
/// The called function failed, or the write could not be made durable.
pub const ERR_FAILED: i32 = -6;

/// The raw host imports, exactly as `docs/abi.md` lists them. Prefer the safe wrappers.
#[cfg(target_arch = "wasm32")]
pub mod raw {
    #[link(wasm_import_module = "liquid")]
    extern "C" {
        /// Length of the invocation's input.
        pub fn input_len() -> i32;
        /// Copies up to `len` input bytes to `ptr`; returns how many.
        pub fn input_read(ptr: i32, len: i32) -> i32;
        /// Appends to the invocation's output; `ERR_TOO_LARGE` past the limit.
        pub fn output(ptr: i32, len: i32) -> i32;
        /// Copies up to `len` bytes of the current result to `ptr`; returns how many.
        pub fn result_read(ptr: i32, len: i32) -> i32;
        /// The JSON value at a dot path of object `ns/key`.
        pub fn obj_get(name_ptr: i32, name_len: i32, path_ptr: i32, path_len: i32) -> i64;
        /// Sets the path to a JSON value.
        pub fn obj_set(name_ptr: i32, name_len: i32, path_ptr: i32, path_len: i32, json_ptr: i32, json_len: i32)
            -> i64;
        /// Increments the counter at the path.
        pub fn obj_inc(name_ptr: i32, name_len: i32, path_ptr: i32, path_len: i32, by: i64) -> i64;
        /// Deletes the path.
        pub fn obj_del(name_ptr: i32, name_len: i32, path_ptr: i32, path_len: i32) -> i64;
        /// Applies a JSON list of operations atomically.
        pub fn obj_apply(name_ptr: i32, name_len: i32, ops_ptr: i32, ops_len: i32) -> i64;
        /// A JSON array of the object names this node holds that start with the prefix.
        pub fn obj_list(prefix_ptr: i32, prefix_len: i32) -> i64;
        /// A line in the function's log.
        pub fn log(level: i32, ptr: i32, len: i32);
        /// The invocation's time, Unix milliseconds.
        pub fn now_ms() -> i64;
        /// Fills `len` bytes with randomness; returns 0.
        pub fn random(ptr: i32, len: i32) -> i32;
        /// Invokes another function and makes its output the result.
        pub fn call(name_ptr: i32, name_len: i32, input_ptr: i32, input_len: i32) -> i64;
    }
}

/// Stand-ins for the host imports on targets other than wasm32, so that the crate (and code
/// using it) can be checked and documented natively. Calling any of them panics.
#[cfg(not(target_arch = "wasm32"))]
#[allow(missing_docs, clippy::missing_safety_doc)]
pub mod raw {
    fn no_host() -> ! {
        panic!("liquid_guest: host functions exist only when running as wasm32 under Liquid")
    }
    pub unsafe fn input_len() -> i32 {
        no_host()
    }
    pub unsafe fn input_read(_: i32, _: i32) -> i32 {
        no_host()
    }
    pub unsafe fn output(_: i32, _: i32) -> i32 {
        no_host()
    }
    pub unsafe fn result_read(_: i32, _: i32) -> i32 {
        no_host()
    }
    pub unsafe fn obj_get(_: i32, _: i32, _: i32, _: i32) -> i64 {
        no_host()
    }
    pub unsafe fn obj_set(_: i32, _: i32, _: i32, _: i32, _: i32, _: i32) -> i64 {
        no_host()
    }
    pub unsafe fn obj_inc(_: i32, _: i32, _: i32, _: i32, _: i64) -> i64 {
        no_host()
    }
    pub unsafe fn obj_del(_: i32, _: i32, _: i32, _: i32) -> i64 {
        no_host()
    }
    pub unsafe fn obj_apply(_: i32, _: i32, _: i32, _: i32) -> i64 {
        no_host()
    }
    pub unsafe fn obj_list(_: i32, _: i32) -> i64 {
        no_host()
    }
    pub unsafe fn log(_: i32, _: i32, _: i32) {
        no_host()
    }
    pub unsafe fn now_ms() -> i64 {
        no_host()
    }
    pub unsafe fn random(_: i32, _: i32) -> i32 {
        no_host()
    }
    pub unsafe fn call(_: i32, _: i32, _: i32, _: i32) -> i64 {
        no_host()
    }
}

/// An error from a host function: one of the `ERR_*` codes and the host's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// One of the `ERR_*` constants (negative).
    pub code: i32,
    /// What went wrong, as the host said it (may be empty).
    pub message: String,
}

impl Error {
    /// The ABI name of the error code (`"ERR_NOT_FOUND"`, ...), or `"ERR_UNKNOWN"`.
    pub fn name(&self) -> &'static str {
        match self.code {
            ERR_NOT_FOUND => "ERR_NOT_FOUND",
            ERR_DENIED => "ERR_DENIED",
            ERR_INVALID => "ERR_INVALID",
            ERR_UNAVAILABLE => "ERR_UNAVAILABLE",
            ERR_TOO_LARGE => "ERR_TOO_LARGE",
            ERR_FAILED => "ERR_FAILED",
            _ => "ERR_UNKNOWN",
        }
    }

    /// Whether this is `ERR_NOT_FOUND`.
    pub fn is_not_found(&self) -> bool {
        self.code == ERR_NOT_FOUND
    }

    fn new(code: i32, message: &str) -> Error {
        Error { code, message: message.to_string() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{} ({})", self.name(), self.code)
        } else {
            write!(f, "{} ({}): {}", self.name(), self.code, self.message)
        }
    }
}

impl std::error::Error for Error {}

/// A log level, as `log` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// 0
    Error = 0,
    /// 1
    Warn = 1,
    /// 2
    Info = 2,
    /// 3
    Debug = 3,
}

fn ptr(bytes: &[u8]) -> i32 {
    bytes.as_ptr() as usize as i32
}

fn len(bytes: &[u8]) -> i32 {
    // Wasm32 slices never exceed i32::MAX bytes in practice (linear memory is 4 GiB at most);
    // saturate rather than wrap if one somehow does.
    if bytes.len() > i32::MAX as usize {
        i32::MAX
    } else {
        bytes.len() as i32
    }
}

/// Copies the current host result (exactly `n` bytes long) into a new vector.
fn read_result(n: usize) -> Vec<u8> {
    let mut buf: Vec<u8> = vec![0; n];
    if n > 0 {
        let got = unsafe { raw::result_read(buf.as_mut_ptr() as usize as i32, n as i32) };
        buf.truncate(if got < 0 { 0 } else { got as usize });
    }
    buf
}

/// Reads the message the host left as the result after an error. Its length is not
/// returned, so read into a growing buffer until it is not filled.
fn read_error_message() -> String {
    let mut cap = 1024usize;
    loop {
        let mut buf: Vec<u8> = vec![0; cap];
        let got = unsafe { raw::result_read(buf.as_mut_ptr() as usize as i32, cap as i32) };
        let got = if got < 0 { 0 } else { got as usize };
        if got < cap || cap >= 1 << 20 {
            buf.truncate(got.min(cap));
            return String::from_utf8_lossy(&buf).into_owned();
        }
        cap *= 4;
    }
}

/// Turns an `i64` return of a data-producing host function into its result bytes.
fn take_result(ret: i64) -> Result<Vec<u8>, Error> {
    if ret < 0 {
        let code = if ret < i32::MIN as i64 { i32::MIN } else { ret as i32 };
        return Err(Error { code, message: read_error_message() });
    }
    if ret > i32::MAX as i64 {
        return Err(Error::new(ERR_TOO_LARGE, "host result larger than wasm32 memory"));
    }
    Ok(read_result(ret as usize))
}

fn take_text(ret: i64) -> Result<String, Error> {
    let bytes = take_result(ret)?;
    String::from_utf8(bytes).map_err(|_| Error::new(ERR_INVALID, "host result is not UTF-8"))
}

/// Checks a return of a host function that returns 0 on success.
fn take_unit(ret: i64) -> Result<(), Error> {
    take_result(ret).map(|_| ())
}

/// The invocation's whole input.
pub fn input() -> Vec<u8> {
    let n = unsafe { raw::input_len() };
    if n <= 0 {
        return Vec::new();
    }
    let mut buf: Vec<u8> = vec![0; n as usize];
    let got = unsafe { raw::input_read(buf.as_mut_ptr() as usize as i32, n) };
    buf.truncate(if got < 0 { 0 } else { got as usize });
    buf
}

/// Appends bytes to the invocation's output. `ERR_TOO_LARGE` past the output limit.
pub fn output(bytes: &[u8]) -> Result<(), Error> {
    let ret = unsafe { raw::output(ptr(bytes), len(bytes)) };
    if ret == ERR_TOO_LARGE {
        Err(Error::new(ret, "output limit reached"))
    } else if ret < 0 {
        Err(Error::new(ret, "output failed"))
    } else {
        Ok(())
    }
}

/// Writes a line to the function's log.
pub fn log(level: Level, msg: &str) {
    unsafe { raw::log(level as i32, ptr(msg.as_bytes()), len(msg.as_bytes())) }
}

/// The invocation's time, Unix milliseconds, from the node core.
pub fn now_ms() -> i64 {
    unsafe { raw::now_ms() }
}

/// Fills `buf` with randomness seeded by the node core.
pub fn random(buf: &mut [u8]) {
    if buf.is_empty() {
        return;
    }
    let n = len(buf);
    unsafe {
        raw::random(buf.as_mut_ptr() as usize as i32, n);
    }
}

/// Invokes another function (anywhere in the mesh) and returns its output. `ERR_FAILED`
/// (with its error as the message) if it failed, `ERR_NOT_FOUND` if there is no such function.
pub fn call(name: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
    let n = name.as_bytes();
    take_result(unsafe { raw::call(ptr(n), len(n), ptr(input), len(input)) })
}

/// Objects: `name` is `ns/key`, `path` a dot path (`""` for the whole document); values are
/// JSON text.
pub mod obj {
    use super::{len, ptr, raw, take_text, take_unit, Error};

    /// The JSON value at `path` of object `name` (`path = ""`: the whole document).
    /// `ERR_NOT_FOUND` if there is no such object or path.
    pub fn get(name: &str, path: &str) -> Result<String, Error> {
        let (n, p) = (name.as_bytes(), path.as_bytes());
        take_text(unsafe { raw::obj_get(ptr(n), len(n), ptr(p), len(p)) })
    }

    /// Sets `path` of object `name` to the JSON value `json`, creating maps on the way.
    pub fn set(name: &str, path: &str, json: &str) -> Result<(), Error> {
        let (n, p, j) = (name.as_bytes(), path.as_bytes(), json.as_bytes());
        take_unit(unsafe { raw::obj_set(ptr(n), len(n), ptr(p), len(p), ptr(j), len(j)) })
    }

    /// Increments the counter at `path` of object `name` by `by` (creating it at 0).
    pub fn inc(name: &str, path: &str, by: i64) -> Result<(), Error> {
        let (n, p) = (name.as_bytes(), path.as_bytes());
        take_unit(unsafe { raw::obj_inc(ptr(n), len(n), ptr(p), len(p), by) })
    }

    /// Deletes `path` of object `name`.
    pub fn del(name: &str, path: &str) -> Result<(), Error> {
        let (n, p) = (name.as_bytes(), path.as_bytes());
        take_unit(unsafe { raw::obj_del(ptr(n), len(n), ptr(p), len(p)) })
    }

    /// Applies a JSON list of operations to object `name` atomically, in the format of
    /// `POST /v1/objects` (`[{"op": "inc", "path": "visits"}, ...]`).
    pub fn apply(name: &str, ops_json: &str) -> Result<(), Error> {
        let (n, o) = (name.as_bytes(), ops_json.as_bytes());
        take_unit(unsafe { raw::obj_apply(ptr(n), len(n), ptr(o), len(o)) })
    }

    /// A JSON array (text) of the object names this node holds that start with `prefix`.
    pub fn list(prefix: &str) -> Result<String, Error> {
        let p = prefix.as_bytes();
        take_text(unsafe { raw::obj_list(ptr(p), len(p)) })
    }
}

/// Runs a handler as the body of `liquid_call`: used by [`entry!`]. Returns the value
/// `liquid_call` returns: 0 after writing the handler's output, 1 after writing its error
/// message (or if the output did not fit within the output limit).
#[doc(hidden)]
pub fn __run<F>(handler: F) -> i32
where
    F: FnOnce(Vec<u8>) -> Result<Vec<u8>, String>,
{
    match handler(input()) {
        Ok(out) => match output(&out) {
            Ok(()) => 0,
            Err(_) => 1,
        },
        Err(msg) => {
            let _ = output(msg.as_bytes());
            1
        }
    }
}

/// Defines the `liquid_call` export around a handler
/// `fn(input: Vec<u8>) -> Result<Vec<u8>, String>`: `Ok` bytes become the output and the call
/// succeeds; an `Err` message becomes the output and the call fails.
///
/// ```ignore
/// fn handler(input: Vec<u8>) -> Result<Vec<u8>, String> { Ok(input) }
/// liquid_guest::entry!(handler);
/// ```
#[macro_export]
macro_rules! entry {
    ($handler:path) => {
        #[no_mangle]
        pub extern "C" fn liquid_call() -> i32 {
            $crate::__run($handler)
        }
    };
}
