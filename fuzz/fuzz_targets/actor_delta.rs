//! Actor delta decoding (a checkpoint log's records, a migration's stream): arbitrary bytes
//! must be refused with an error or accepted as a checked delta, never panic, and never make
//! the decoder allocate past the memory limit. Half the inputs are sealed with a valid
//! checksum first, so the fuzzer also reaches the parser behind it (page size, counts,
//! indices, the snapshot header, the compressed pages).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let _ = wasm_host::snapshot::verify_delta(body, 1 << 22);
    } else {
        let mut sealed = body.to_vec();
        sealed.extend_from_slice(&wasm_host::snapshot::delta_checksum(body));
        let _ = wasm_host::snapshot::verify_delta(&sealed, 1 << 22);
    }
});
