//! Feeds arbitrary text to the simulator's scenario parser: an error naming what is wrong,
//! or a scenario — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = sim::scenario::Scenario::parse(text, "fuzz.toml");
});
