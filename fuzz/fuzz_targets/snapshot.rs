//! Actor snapshot decoding: arbitrary bytes (a torn file, a hostile peer's hand-off) must be
//! refused with an error or accepted as a checked snapshot, never panic, and never make the
//! reader allocate past the memory limit or zstd's bounded window.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wasm_host::snapshot::verify(data, 1 << 20);
});
