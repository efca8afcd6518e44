//! Feeds arbitrary bytes to the envelope decoder: it must return an error or a message whose
//! re-encoding decodes to the same message — never panic, never allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liquid_core::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = wire::decode(data) {
        let again = wire::encode(&msg);
        assert_eq!(wire::decode(&again).ok(), Some(msg));
    }
});
