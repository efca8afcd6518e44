//! Feeds arbitrary text to the manifest parser: an error or a manifest that validates or is
//! refused with a reason, and that survives a round trip through TOML — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_host::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = Manifest::from_toml(text) {
        if m.validate().is_ok()
            && let Ok(again) = toml::to_string(&m)
        {
            let back = Manifest::from_toml(&again).expect("a manifest we wrote parses");
            assert_eq!(back, m);
        }
    }
});
