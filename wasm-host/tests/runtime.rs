//! The executor against real modules: the hostile ones in tests/guests/ each end their own
//! invocation with the right error, and a well-behaved function keeps answering on the same
//! runtime in between. Objects come from a small in-memory host (the node core's objects are
//! tested in the core and end to end).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};
use wasm_host::abi::{AbiError, Level, ObjCall};
use wasm_host::runtime::{Compiled, Host, Invocation, ModuleError, Runtime, RuntimeConfig};
use wasm_host::{InvokeError, Manifest};

fn guest(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/guests/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig { pool_instances: 64, memory_max_mib: 256, ..RuntimeConfig::default() }).unwrap()
}

fn manifest(name: &str) -> Manifest {
    let mut m = Manifest::for_module(name);
    m.limits.fuel = 50_000_000;
    m.limits.wall_ms = 2_000;
    m.limits.memory_mib = 16;
    m.limits.output_kib = 256;
    m.objects.write = vec!["demo".into()];
    m
}

#[derive(Clone, Default)]
struct MemHost {
    docs: Arc<Mutex<BTreeMap<String, Json>>>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Host for MemHost {
    fn object(&mut self, call: ObjCall) -> Result<Json, AbiError> {
        let mut docs = self.docs.lock().unwrap();
        match call {
            ObjCall::Get { object, .. } => docs
                .get(&object.to_string())
                .cloned()
                .ok_or_else(|| AbiError::new(wasm_host::abi::ERR_NOT_FOUND, "no such object")),
            ObjCall::Apply { object, ops } => {
                let doc = docs.entry(object.to_string()).or_insert_with(|| json!({}));
                for op in ops {
                    if let state_sync::ops::Op::Inc { path, by } = op {
                        let key = path.to_string();
                        let now = doc[&key].as_i64().unwrap_or(0) + by;
                        doc[&key] = json!(now);
                    }
                }
                Ok(Json::Null)
            }
            ObjCall::List { prefix } => Ok(json!(docs.keys().filter(|k| k.starts_with(&prefix)).collect::<Vec<_>>())),
        }
    }
    fn invoke(&mut self, f: &str, _input: Vec<u8>, _depth: u32) -> Result<Vec<u8>, AbiError> {
        Err(AbiError::new(wasm_host::abi::ERR_NOT_FOUND, format!("no function {f}")))
    }
    fn log(&mut self, level: Level, line: &str) {
        self.logs.lock().unwrap().push(format!("{}: {line}", level.as_str()));
    }
}

fn inv(input: &[u8]) -> Invocation {
    Invocation { input: input.to_vec(), now_ms: 1_700_000_000_000, seed: 7, depth: 0 }
}

fn compile(rt: &Runtime, file: &str) -> (Compiled, Manifest) {
    let m = manifest(file.trim_end_matches(".wat"));
    (rt.compile(&guest(file), &m).unwrap_or_else(|e| panic!("{file}: {e}")), m)
}

fn echo_still_works(rt: &Runtime, echo: &Compiled, m: &Manifest) {
    let out = rt.invoke(echo, m, inv(b"still here"), Box::new(MemHost::default()));
    assert_eq!(out.result.unwrap(), b"still here");
}

#[test]
fn echo_round_trips_and_counts_fuel() {
    let rt = runtime();
    let (echo, m) = compile(&rt, "echo.wat");
    let big = vec![7u8; 200_000];
    let out = rt.invoke(&echo, &m, inv(&big), Box::new(MemHost::default()));
    assert_eq!(out.result.unwrap(), big);
    assert!(out.fuel > 0);
}

#[test]
fn hostile_modules_end_only_their_own_invocation() {
    let rt = runtime();
    let (echo, em) = compile(&rt, "echo.wat");
    type Check = fn(&InvokeError) -> bool;
    let cases: [(&str, Check); 5] = [
        ("loop.wat", |e| matches!(e, InvokeError::Timeout(m) if m.contains("fuel"))),
        ("memory-bomb.wat", |e| matches!(e, InvokeError::OutOfMemory(_))),
        ("recursion.wat", |e| matches!(e, InvokeError::Trap(m) if m.contains("stack overflow"))),
        ("huge-output.wat", |e| matches!(e, InvokeError::OutputTooLarge(256))),
        ("trap.wat", |e| matches!(e, InvokeError::Trap(_))),
    ];
    for (file, expected) in cases {
        let (c, m) = compile(&rt, file);
        let out = rt.invoke(&c, &m, inv(b""), Box::new(MemHost::default()));
        let err = out.result.expect_err(file);
        assert!(expected(&err), "{file}: got {err:?}");
        echo_still_works(&rt, &echo, &em);
    }
}

#[test]
fn wall_clock_limit_ends_a_loop_with_fuel_to_spare() {
    let rt = runtime();
    let mut m = manifest("loop");
    m.limits.fuel = 100_000_000_000;
    m.limits.wall_ms = 100;
    let c = rt.compile(&guest("loop.wat"), &m).unwrap();
    let t = std::time::Instant::now();
    let err = rt.invoke(&c, &m, inv(b""), Box::new(MemHost::default())).result.unwrap_err();
    assert!(matches!(&err, InvokeError::Timeout(m) if m.contains("wall_ms")), "{err:?}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

/// Issue 17: a module sleeping 120 s in WASI's poll_oneoff ran for 120 s under
/// `wall_ms = 5000`; sleeping now returns at once, and the call ends well within its limit.
#[test]
fn a_blocking_wasi_sleep_does_not_outlive_the_wall_limit() {
    let rt = runtime();
    let (c, m) = compile(&rt, "sleep.wat");
    let t = std::time::Instant::now();
    let out = rt.invoke(&c, &m, inv(b""), Box::new(MemHost::default()));
    assert_eq!(out.result.expect("the sleeper finishes"), b"slept");
    assert!(t.elapsed() < std::time::Duration::from_millis(m.limits.wall_ms), "{:?}", t.elapsed());
}

/// Issue 17: one call logging in a loop flooded the agent's log. A call keeps its first
/// lines, drops the rest, and says how many it dropped.
#[test]
fn a_log_flood_is_cut_and_counted() {
    let rt = runtime();
    let (c, mut m) = compile(&rt, "log-flood.wat");
    m.limits.fuel = 1_000_000_000;
    let host = MemHost::default();
    let out = rt.invoke(&c, &m, inv(b""), Box::new(host.clone()));
    assert!(out.result.is_ok(), "{:?}", out.result);
    let logs = host.logs.lock().unwrap();
    let max = wasm_host::runtime::LOG_LINES_PER_CALL as usize;
    assert_eq!(logs.len(), max + 1, "the budget and one line about the rest");
    assert!(logs[..max].iter().all(|l| l == "warn: flood line"), "{:?}", &logs[..3]);
    let last = logs.last().unwrap();
    assert!(last.contains(&format!("dropped {} more log lines", 1_000_000 - max)), "{last}");
    drop(logs);
    // The budget is per call: a second call on the same runtime logs again.
    let again = MemHost::default();
    rt.invoke(&c, &m, inv(b""), Box::new(again.clone())).result.unwrap();
    assert_eq!(again.logs.lock().unwrap().len(), max + 1);
}

#[test]
fn bad_modules_are_refused_with_the_reason() {
    let rt = runtime();
    let m = manifest("x");
    let err = |file: &str| rt.compile(&guest(file), &m).err().unwrap_or_else(|| panic!("{file} accepted"));
    assert!(matches!(err("not-wasm.bin"), ModuleError::NotWasm(_)));
    // Issue 17: non-Wasm bytes said "input bytes aren't valid utf-8", and a text file's
    // parse error quoted its lines back (a manifest could point a deploy at /etc/passwd).
    let passwd = b"root:x:0:0:root:/root:/bin/bash\nsecret-user:x:1000:1000::/home/s:/bin/sh\n";
    let binary = [0xff_u8, 0xfe, 0x00, 0x01, 0x80];
    for bytes in [&passwd[..], &binary[..]] {
        let e = rt.compile(bytes, &m).err().expect("refused").to_string();
        assert!(e.contains("neither a WebAssembly binary") && !e.contains("utf-8"), "{e}");
        assert!(!e.contains("root") && !e.contains("secret"), "echoes the contents: {e}");
    }
    let bad_text = b"(module (func $f (secret-token-123)))";
    let e = rt.compile(bad_text, &m).err().expect("refused").to_string();
    assert!(e.contains("not a valid WebAssembly module") && !e.contains("secret-token-123"), "{e}");
    match err("bad-import.wat") {
        ModuleError::Import { module, name } => assert_eq!((module.as_str(), name.as_str()), ("env", "system")),
        other => panic!("{other:?}"),
    }
    assert!(err("no-export.wat").to_string().contains("neither _start"));
    let small = Runtime::new(RuntimeConfig { module_max: 10, pool_instances: 4, ..RuntimeConfig::default() }).unwrap();
    assert!(matches!(small.compile(&guest("echo.wat"), &m), Err(ModuleError::TooLarge { .. })));
}

#[test]
fn objects_go_through_the_host_and_the_manifest() {
    let rt = runtime();
    let (c, m) = compile(&rt, "objects.wat");
    let host = MemHost::default();
    for want in ["1", "2"] {
        let out = rt.invoke(&c, &m, inv(b""), Box::new(host.clone()));
        assert_eq!(String::from_utf8(out.result.unwrap()).unwrap(), want);
    }
    let mut denied = m.clone();
    denied.objects.write.clear();
    denied.objects.read = vec!["demo".into()];
    let err = rt.invoke(&c, &denied, inv(b""), Box::new(host.clone())).result.unwrap_err();
    assert!(matches!(&err, InvokeError::Failed(msg) if msg.contains("does not allow")), "{err:?}");
}

#[test]
fn actors_keep_their_memory_between_calls() {
    let rt = runtime();
    let mut m = manifest("objects");
    m.kind = wasm_host::Kind::Actor;
    let c = rt.compile(&guest("echo.wat"), &m).unwrap();
    let mut actor = rt.activate(&c, &m, inv(b"")).unwrap();
    for i in 0..3 {
        let input = format!("call {i}");
        let out = rt.invoke_actor(&mut actor, &m, inv(input.as_bytes()), Box::new(MemHost::default()));
        assert_eq!(out.result.unwrap(), input.as_bytes());
    }
    assert!(actor.memory_size() >= 65536);
}

#[test]
fn examples_run_when_built() {
    // Committed (CI checks scripts/build-guests.sh rebuilds it byte for byte); a missing example fails loudly.
    let dir = format!("{}/../examples/functions", env!("CARGO_MANIFEST_DIR"));
    let load = |name: &str| {
        let path = format!("{dir}/{name}/{name}.wasm");
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{path}: {e}: restore it with git checkout, or rebuild with scripts/build-guests.sh")
        })
    };
    let rt = runtime();
    let hello_m = Manifest::from_toml(&std::fs::read_to_string(format!("{dir}/hello/liquid.toml")).unwrap()).unwrap();
    let hello = rt.compile(&load("hello"), &hello_m).unwrap();
    let host = MemHost::default();
    let out = rt.invoke(&hello, &hello_m, inv(b"liquid"), Box::new(host.clone()));
    assert_eq!(String::from_utf8(out.result.unwrap()).unwrap().trim_end(), "hello, liquid!");
    assert!(!host.logs.lock().unwrap().is_empty(), "stderr goes to the log");

    let counter_m =
        Manifest::from_toml(&std::fs::read_to_string(format!("{dir}/counter/liquid.toml")).unwrap()).unwrap();
    let counter = rt.compile(&load("counter"), &counter_m).unwrap();
    let out = rt.invoke(&counter, &counter_m, inv(b""), Box::new(host.clone()));
    assert_eq!(String::from_utf8(out.result.unwrap()).unwrap(), r#"{"count":1}"#);
    let out = rt.invoke(&counter, &counter_m, inv(b"41"), Box::new(host.clone()));
    assert_eq!(String::from_utf8(out.result.unwrap()).unwrap(), r#"{"count":42}"#);
}
