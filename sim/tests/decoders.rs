#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The fuzz targets' smoke on the stable toolchain (issue 17): every decoder that takes bytes
//! from outside — sync messages from peers, object logs from disk, manifests, scenarios, ABI
//! arguments, snapshots, wire envelopes — gets arbitrary bytes and bit-flipped valid inputs,
//! and must answer with a value or an error, never a panic. The long runs use cargo-fuzz on
//! the same bodies (fuzz/fuzz_targets/*.rs; they need a nightly toolchain).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use state_sync::automerge::ActorId;
use state_sync::{Document, FileStore, ObjectName, Replica, replica::Config, store};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `bytes` with the bits of `flips` (positions modulo its length) inverted.
fn flipped(mut bytes: Vec<u8>, flips: &[(usize, u8)]) -> Vec<u8> {
    if !bytes.is_empty() {
        for &(at, mask) in flips {
            let i = at % bytes.len();
            bytes[i] ^= mask.max(1);
        }
    }
    bytes
}

/// A real sync message: a document with a few writes, as its first message to a new peer.
fn sync_message() -> Vec<u8> {
    let mut doc = Document::new(ActorId::from(&b"writer"[..]));
    let ops = state_sync::ops::Op::parse_batch(
        r#"[{"op":"inc","path":"n","by":3},{"op":"set","path":"m.k","value":"v"},{"op":"insert","path":"l","value":1}]"#,
    )
    .expect("valid ops");
    doc.apply(&ops, 0).expect("applies");
    let mut r: Replica<&'static str> = Replica::new(doc, Config::default());
    r.generate(&"peer").unwrap_or_default()
}

/// A real object log: a few durable writes in a file store, read back as bytes.
fn object_log(dir: &Path, name: &ObjectName) -> Vec<u8> {
    let mut s = FileStore::open(dir).expect("a store");
    let mut doc = Document::new(ActorId::from(&b"writer"[..]));
    for i in 0..4 {
        let ops = state_sync::ops::Op::parse_batch(&format!(r#"[{{"op":"set","path":"k{i}","value":{i}}}]"#))
            .expect("valid ops");
        doc.apply(&ops, 0).expect("applies");
        store::persist(&mut s, name, &mut doc, &store::Compaction::default()).expect("persists");
        store::Store::sync(&mut s).expect("syncs");
    }
    std::fs::read(s.path(name)).expect("the log")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sync_messages_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                 flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        for input in [bytes, flipped(sync_message(), &flips)] {
            let mut r: Replica<&'static str> = Replica::new(Document::new(ActorId::from(&b"fuzz"[..])), Config::default());
            if r.receive(&"peer", &input).is_ok() {
                let _ = r.doc().value();
                let _ = r.generate(&"peer");
            }
        }
    }

    #[test]
    fn object_logs_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..256),
                               flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let dir = std::env::temp_dir().join(format!("liquid-decoders-{}-{}", std::process::id(), flips[0].0 % 1_000_000));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let name = ObjectName::new("fuzz", "obj").expect("a name");
        let valid = object_log(&dir, &name);
        let mut with_tail = valid.clone();
        with_tail.extend_from_slice(&tail);
        for input in [flipped(valid, &flips), with_tail] {
            let mut s = FileStore::open(&dir).expect("a store");
            std::fs::write(s.path(&name), &input).expect("writes");
            if let Ok(Some(r)) = store::restore(&mut s, &name, ActorId::from(&b"reader"[..])) {
                let _ = r.doc.value();
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn manifests_and_scenarios_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
                                           junk in "\\PC{0,200}") {
        let manifest = std::fs::read(root().join("examples/functions/counter/liquid.toml")).expect("a manifest");
        let scenario = std::fs::read(root().join("sim/scenarios/small.toml")).expect("a scenario");
        for text in [String::from_utf8_lossy(&flipped(manifest, &flips)).into_owned(), junk.clone()] {
            if let Ok(m) = wasm_host::Manifest::from_toml(&text) {
                let _ = m.validate();
            }
        }
        for text in [String::from_utf8_lossy(&flipped(scenario, &flips)).into_owned(), junk] {
            let _ = sim::Scenario::parse(&text, "fuzz.toml");
        }
    }

    #[test]
    fn wire_abi_and_snapshots_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(msg) = liquid_core::wire::decode(&data) {
            let again = liquid_core::wire::encode(&msg);
            prop_assert_eq!(liquid_core::wire::decode(&again).ok(), Some(msg));
        }
        let _ = wasm_host::snapshot::verify(&data[..], 1 << 20);
        if data.len() >= 16 {
            let word = |i: usize| i32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            let access = wasm_host::manifest::ObjectAccess { read: vec!["sensors".into()], write: vec!["demo".into()] };
            if let (Ok(Ok(a)), Ok(Ok(b))) = (wasm_host::abi::string(&data[16..], word(0), word(4)), wasm_host::abi::string(&data[16..], word(8), word(12))) {
                let _ = wasm_host::abi::obj_apply(a, b, &access);
                let _ = wasm_host::abi::obj_list(a, &access);
            }
        }
    }
}
