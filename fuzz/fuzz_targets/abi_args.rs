//! The Liquid ABI's argument decoding: arbitrary guest memory, pointers, lengths and string
//! contents must decode to a checked call or an error code, never a panic or a read outside
//! the memory.
#![no_main]

use wasm_host::abi;
use wasm_host::manifest::ObjectAccess;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let word = |i: usize| i32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let (p1, l1, p2, l2) = (word(0), word(4), word(8), word(12));
    let mem = &data[16..];
    let access = ObjectAccess { read: vec!["sensors".into()], write: vec!["demo".into()] };
    let (Ok(a), Ok(b)) = (abi::string(mem, p1, l1), abi::string(mem, p2, l2)) else { return };
    let (Ok(a), Ok(b)) = (a, b) else { return };
    let _ = abi::obj_get(a, b, &access);
    let _ = abi::obj_set(a, b, b, &access);
    let _ = abi::obj_inc(a, b, i64::from(p1), &access);
    let _ = abi::obj_del(a, b, &access);
    let _ = abi::obj_apply(a, b, &access);
    let _ = abi::obj_list(a, &access);
});
