#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of functions: real `liquid agent` processes, driven only through
//! `liquid fn …`, the HTTP API (`/v1/functions`, `/metrics`), and signals.
//!
//! The example modules (`examples/functions/*/*.wasm`) are committed (rebuilt byte for byte by `scripts/build-guests.sh`);
//! a test that needs one fails (never skips) with a message saying so when it is missing. The
//! hostile and well-behaved WAT modules come from `wasm-host/tests/guests/` (the agent accepts
//! WAT text as a module).
//!
//! Every test runs in its own temporary directory with ports chosen by the OS; every wait is a
//! poll with a deadline; every agent is SIGKILLed when its test ends, however it ends, and a
//! failing test prints the tail of each agent's log.

#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Cli, Cluster, Http, Output, eventually, http, str_of};

/// How long a fresh mesh of a few agents may take to see itself whole.
const FORM_WITHIN: Duration = Duration::from_secs(20);
/// How long a deploy may take to reach the other agents' registries (pushed within about a
/// second; the bound leaves room for a loaded machine).
const REPLICATE_WITHIN: Duration = Duration::from_secs(10);

/// The workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("node-agent is inside the workspace").to_path_buf()
}

/// `examples/functions/NAME`, after checking that its module was built.
fn example(name: &str) -> PathBuf {
    let dir = root().join("examples/functions").join(name);
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(
        wasm.is_file(),
        "{} is missing: it is committed; restore it with git checkout, or rebuild it with scripts/build-guests.sh",
        wasm.display()
    );
    dir
}

/// `wasm-host/tests/guests/FILE`, after checking that it exists.
fn guest(file: &str) -> PathBuf {
    let path = root().join("wasm-host/tests/guests").join(file);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// Runs `liquid ARGS… --data-dir DIR` against `a` (panics if it cannot be run or hangs).
fn cmd(a: &Cli, args: &[&str]) -> Output {
    a.run(args).unwrap_or_else(|e| panic!("{}: {e}", a.name))
}

/// Like [`cmd`], and the command must succeed.
fn ok(a: &Cli, args: &[&str]) -> Output {
    let out = cmd(a, args);
    assert!(out.status.success(), "`liquid {}` on {} failed ({}): {}", args.join(" "), a.name, out.status, out.stderr);
    out
}

/// `liquid fn invoke NAME [--input INPUT]` on `a`: its output bytes (as text), or what it
/// printed on stderr and how it exited.
fn invoke(a: &Cli, name: &str, input: Option<&str>) -> Result<String, String> {
    let mut args = vec!["fn", "invoke", name];
    if let Some(i) = input {
        args.extend(["--input", i]);
    }
    let out = cmd(a, &args);
    if out.status.success() { Ok(out.stdout) } else { Err(format!("{} — {}", out.status, out.stderr.trim())) }
}

/// `liquid fn invoke NAME --input INPUT --json` on `a`, which must fail: exits non-zero and
/// prints `{"ok": false, "status": HTTP status, "error": {"error", "kind"}}`; returns that.
fn invoke_fails(a: &Cli, name: &str, input: &str) -> Value {
    let out = cmd(a, &["fn", "invoke", name, "--input", input, "--json"]);
    assert!(!out.status.success(), "`liquid fn invoke {name}` on {} should fail, but printed {:?}", a.name, out.stdout);
    let v: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("`liquid fn invoke {name} --json` printed no JSON ({e}): {:?}", out.stdout));
    assert_eq!(v["ok"], false, "{v}");
    v
}

/// `liquid fn ls --json` on `a`: the names listed.
fn listed(a: &Cli) -> Result<Vec<String>, String> {
    let out = a.run(&["fn", "ls", "--json"])?;
    if !out.status.success() {
        return Err(format!("`liquid fn ls` on {} failed: {}", a.name, out.stderr.trim()));
    }
    let v: Value = serde_json::from_str(&out.stdout).map_err(|e| format!("no JSON ({e}): {}", out.stdout))?;
    let list = v.as_array().ok_or_else(|| format!("not a list: {v}"))?;
    Ok(list.iter().map(|f| str_of(f, "name").to_string()).collect())
}

/// Waits until `a` lists the function `name`.
fn wait_listed(a: &Cli, name: &str) {
    eventually(&format!("{} lists function {name}", a.name), REPLICATE_WITHIN, || {
        let names = listed(a)?;
        if names.iter().any(|n| n == name) { Ok(()) } else { Err(format!("it lists {names:?}")) }
    });
}

/// `liquid fn where NAME --json` on `a`.
fn where_is(a: &Cli, name: &str) -> Result<Value, String> {
    let out = a.run(&["fn", "where", name, "--json"])?;
    if !out.status.success() {
        return Err(format!("`liquid fn where {name}` on {} failed: {}", a.name, out.stderr.trim()));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("no JSON ({e}): {}", out.stdout))
}

/// The strings of a JSON array field.
fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not a list in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Standard base64 with padding (the `liquid-manifest` header's encoding).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An agent's API address and token.
struct Api {
    base: String,
    token: String,
}

impl Api {
    fn of(c: &Cluster, i: usize) -> Api {
        let (base, token) = c.agents[i].api();
        Api { base, token }
    }

    /// `PUT /v1/functions/NAME` with `module` and, if given, `manifest` (liquid.toml text).
    fn deploy(&self, name: &str, module: &[u8], manifest: Option<&str>) -> Http {
        let encoded = manifest.map(|m| base64(m.as_bytes()));
        let headers: Vec<(&str, &str)> = encoded.iter().map(|m| ("liquid-manifest", m.as_str())).collect();
        http(&self.base, "PUT", &format!("/v1/functions/{name}"), Some(&self.token), &headers, module).unwrap()
    }

    /// The value of a metric: the sum over its series whose labels include every one of
    /// `labels` (`key="value"`); 0 if there is none.
    fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let m = http(&self.base, "GET", "/metrics", Some(&self.token), &[], b"").unwrap();
        assert_eq!(m.code, 200, "GET /metrics: {}", m.body);
        metric_in(&m.body, name, labels)
    }
}

/// The sum of the series of metric `name` in a Prometheus text exposition whose labels
/// include every one of `labels`.
fn metric_in(text: &str, name: &str, labels: &[&str]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (metric, lbls) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric == name && labels.iter().all(|l| lbls.split(',').any(|x| x == *l)) {
            sum += value.trim().parse::<f64>().unwrap_or_else(|e| panic!("{line:?}: {e}"));
        }
    }
    sum
}

/// `Ok` when `a` lists `n` members, every one alive.
fn sees_alive(c: &Cluster, a: usize, n: usize) -> Result<(), String> {
    let list = c.agents[a].nodes()?;
    let statuses: Vec<&str> = list.iter().map(|m| m["status"].as_str().unwrap_or("?")).collect();
    if list.len() == n && statuses.iter().all(|s| *s == "alive") {
        Ok(())
    } else {
        Err(format!("{} sees {statuses:?}", c.agents[a].name))
    }
}

/// Starts agents on loopback QUIC, every one bootstrapped to the first one, waits until every
/// agent sees every other one alive, and returns their peer ids.
fn start_mesh(c: &mut Cluster, key: &Path, members: &[(&str, &str)]) -> Vec<String> {
    let first = c.quic_agent(members[0].0, members[0].1, key, None);
    let boot = c.agents[first].wait_ready()["listen_addrs"][0].as_str().expect("a listen address").to_string();
    let mut idx = vec![first];
    for &(name, tier) in &members[1..] {
        idx.push(c.quic_agent(name, tier, key, Some(&boot)));
    }
    let ids = idx.iter().map(|&i| str_of(&c.agents[i].wait_ready(), "id").to_string()).collect();
    eventually("every agent sees every member alive", FORM_WITHIN, || {
        idx.iter().try_for_each(|&i| sees_alive(c, i, idx.len()))
    });
    ids
}

/// Writes `DIR/liquid.toml` (`manifest`) and a copy of `module` next to it, for `fn deploy DIR`.
fn package(dir: &Path, manifest: &str, module: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("liquid.toml"), manifest).unwrap();
    std::fs::copy(module, dir.join(module.file_name().unwrap())).unwrap();
    dir.to_path_buf()
}

/// Every file under `dir`, recursively, as paths relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

/// (a) deploy on A, invoke from C (the module is fetched by hash and runs on C);
/// (b) a function pinned to A, invoked from C, runs on A (forwarded);
/// (e) C restarted with the same data dir, no bootstrap and no peer alive, still runs the
/// function from its cache, loading the compiled artifact instead of compiling again.
#[test]
fn deploy_anywhere_invoke_anywhere_pinned_forwarding_and_offline_restart() {
    let started = Instant::now();
    let counter_dir = example("counter");
    let echo = std::fs::read(guest("echo.wat")).unwrap();
    let mut c = Cluster::new("fn-mesh");
    let key = c.cluster_key("cluster.key");
    let ids = start_mesh(&mut c, &key, &[("fn-a", "cloud"), ("fn-b", "fog"), ("fn-c", "edge")]);
    let (a, cc) = (c.agents[0].cli_target(), c.agents[2].cli_target());
    let (api_a, api_c) = (Api::of(&c, 0), Api::of(&c, 2));
    let (id_a, id_c) = (ids[0].clone(), ids[2].clone());
    let formed = started.elapsed();

    // (a) Deploy the counter example on A; C learns it through the replicated registry.
    let out = ok(&a, &["fn", "deploy", counter_dir.to_str().unwrap(), "--quiet", "--json"]);
    let deployed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(deployed["name"], "counter", "{deployed}");
    wait_listed(&cc, "counter");
    assert_eq!(api_c.metric("liquid_module_fetches_total", &[]), 0.0, "C fetched nothing yet");

    // Invoked from C through the CLI: C fetches the module by hash and runs it.
    assert_eq!(invoke(&cc, "counter", None).unwrap(), r#"{"count":1}"#);
    assert_eq!(invoke(&cc, "counter", Some("41")).unwrap(), r#"{"count":42}"#);
    assert!(
        api_c.metric("liquid_module_fetches_total", &[r#"outcome="ok""#]) >= 1.0,
        "C fetched the module from a peer"
    );
    assert!(
        api_c.metric("liquid_function_cold_starts_total", &[r#"source="compiled""#]) >= 1.0,
        "C compiled the fetched module"
    );
    assert!(api_c.metric("liquid_function_fuel_total", &[]) > 0.0, "the counter ran on C");
    let w = eventually("`fn where counter` on C lists C among the holders", REPLICATE_WITHIN, || {
        let w = where_is(&cc, "counter")?;
        let holders = strings(&w, "holders");
        if holders.iter().any(|h| h.contains(&id_c)) { Ok(w) } else { Err(format!("holders: {holders:?}")) }
    });
    assert_eq!(w["hash"], deployed["hash"], "the module C holds is the one deployed: {w}");
    assert!(strings(&w, "holders").iter().any(|h| h.contains(&id_a)), "A holds it too: {w}");
    let part_a = started.elapsed();

    // (b) A function pinned to A (its manifest through the liquid-manifest header), invoked
    // from C: it runs on A. The distinguishing observable: fuel is counted only where an
    // execution happens, and C neither fetches nor loads the module.
    let manifest = format!("name = \"pinned\"\n\n[placement]\nnode = \"{id_a}\"\n");
    let put = api_a.deploy("pinned", &echo, Some(&manifest));
    assert_eq!(put.code, 201, "deploying pinned on A: {}", put.body);
    wait_listed(&cc, "pinned");
    let w = where_is(&cc, "pinned").unwrap();
    let eligible = strings(&w, "eligible");
    assert!(eligible.len() == 1 && eligible[0].contains(&id_a), "only A may run it: {w}");
    assert!(w["home"].as_str().is_some_and(|h| h == id_a), "C forwards to A: {w}");
    let fuel_c = api_c.metric("liquid_function_fuel_total", &[]);
    let fetches_c = api_c.metric("liquid_module_fetches_total", &[]);
    let cold_c = api_c.metric("liquid_function_cold_starts_total", &[]);
    let fuel_a = api_a.metric("liquid_function_fuel_total", &[]);
    for i in 0..3 {
        let input = format!("pinned call {i} from C");
        assert_eq!(invoke(&cc, "pinned", Some(&input)).unwrap(), input);
    }
    assert_eq!(api_c.metric("liquid_function_fuel_total", &[]), fuel_c, "nothing ran on C");
    assert_eq!(api_c.metric("liquid_module_fetches_total", &[]), fetches_c, "C fetched nothing");
    assert_eq!(api_c.metric("liquid_function_cold_starts_total", &[]), cold_c, "C loaded no module");
    assert!(api_a.metric("liquid_function_fuel_total", &[]) > fuel_a, "the calls ran on A");
    assert!(
        api_c.metric("liquid_invocations_total", &[r#"outcome="ok""#]) >= 5.0,
        "C counts the invocations entering there (2 counter + 3 pinned)"
    );
    let w = where_is(&cc, "pinned").unwrap();
    assert!(!strings(&w, "holders").iter().any(|h| h.contains(&id_c)), "C does not hold the pinned module: {w}");

    // Deployed on B but pinned to A: A fetches the module from B, C forwards to A.
    let b = c.agents[1].cli_target();
    let api_b = Api::of(&c, 1);
    // (A comment makes it another module, with a hash A does not hold yet.)
    let echo_b = [&echo[..], b"\n;; deployed on B\n"].concat();
    let put = api_b.deploy("pinned-b", &echo_b, Some(&manifest.replace("\"pinned\"", "\"pinned-b\"")));
    assert_eq!(put.code, 201, "deploying pinned-b on B: {}", put.body);
    wait_listed(&cc, "pinned-b");
    let fetches_a = api_a.metric("liquid_module_fetches_total", &[r#"outcome="ok""#]);
    assert_eq!(invoke(&cc, "pinned-b", Some("via A")).unwrap(), "via A");
    assert_eq!(invoke(&b, "pinned-b", Some("from B")).unwrap(), "from B");
    assert!(
        api_a.metric("liquid_module_fetches_total", &[r#"outcome="ok""#]) > fetches_a,
        "A fetched pinned-b's module from B"
    );
    assert_eq!(api_c.metric("liquid_function_fuel_total", &[]), fuel_c, "still nothing ran on C");

    // `fn rm` on A: C answers not_found once the registry replicates, and stops listing it.
    ok(&a, &["fn", "rm", "pinned"]);
    eventually("C sees pinned removed", REPLICATE_WITHIN, || {
        let v = invoke_fails(&cc, "pinned", "gone?");
        if v["error"]["kind"] == "not_found" && v["status"] == 404 { Ok(()) } else { Err(format!("{v}")) }
    });
    assert!(!listed(&cc).unwrap().iter().any(|n| n == "pinned"), "C no longer lists pinned");

    // A function nobody deployed: not_found (404), answered by the peers at once.
    let t = Instant::now();
    let v = invoke_fails(&cc, "never-deployed", "");
    assert_eq!(v["error"]["kind"], "not_found", "{v}");
    assert_eq!(v["status"], 404, "{v}");
    assert!(t.elapsed() < Duration::from_secs(3), "not_found took {:?} with every peer up", t.elapsed());
    let part_b = started.elapsed();

    // (e) kill -9 C, then A and B: no peer left. C restarts with the same data dir and no
    // bootstrap, and still runs the counter, from the artifact compiled before its death.
    c.agents[2].kill9();
    c.agents[0].kill9();
    c.agents[1].kill9();
    let again = c.quic_agent("fn-c", "edge", &key, None);
    let status = c.agents[again].wait_ready();
    assert_eq!(str_of(&status, "id"), id_c, "same data dir, same identity");
    let api_c = Api::of(&c, again);
    let cc = c.agents[again].cli_target();
    let restarted = Instant::now();
    let out = eventually("the restarted C runs the counter on its own", Duration::from_secs(10), || {
        invoke(&cc, "counter", None)
    });
    assert_eq!(out, r#"{"count":43}"#, "C's own durable counter, incremented once more");
    let offline_call = restarted.elapsed();
    assert!(
        api_c.metric("liquid_function_cold_starts_total", &[r#"source="artifact""#]) >= 1.0,
        "the cached compiled artifact was loaded"
    );
    assert_eq!(
        api_c.metric("liquid_function_cold_starts_total", &[r#"source="compiled""#]),
        0.0,
        "nothing was compiled again"
    );
    assert_eq!(api_c.metric("liquid_module_fetches_total", &[]), 0.0, "nothing was fetched (no peer is alive)");
    assert_eq!(invoke(&cc, "counter", Some("7")).unwrap(), r#"{"count":50}"#);

    // A function pinned to the dead A: a prompt, clear failure, not a hang.
    let t = Instant::now();
    let v = invoke_fails(&cc, "pinned-b", "anyone?");
    let took = t.elapsed();
    eprintln!("pinned-b with A down: {v} after {took:?}");
    assert!(matches!(v["error"]["kind"].as_str(), Some("unavailable" | "timeout")), "{v}");
    assert!(took < Duration::from_secs(15), "the call failed only after {took:?}");
    eprintln!(
        "mesh formed after {formed:?}; (a) done after {part_a:?}; (b) after {part_b:?}; offline call on the \
         restarted C took {offline_call:?}; total {:?}",
        started.elapsed()
    );
}

/// (c) hostile modules are stopped with the right error kind while a well-behaved function on
/// the same node keeps answering; (d) refused modules register nothing; (f) the token is
/// required, and an unknown function is `not_found`.
#[test]
fn hostile_and_refused_modules_on_one_node_and_api_auth() {
    let started = Instant::now();
    let mut c = Cluster::new("fn-hostile");
    let key = c.cluster_key("cluster.key");
    let n = c.quic_agent("fn-solo", "edge", &key, None);
    c.agents[n].wait_ready();
    let a = c.agents[n].cli_target();
    let api = Api::of(&c, n);

    // A well-behaved function, deployed from a .wat file with the default manifest.
    ok(&a, &["fn", "deploy", guest("echo.wat").to_str().unwrap(), "--quiet"]);
    assert_eq!(invoke(&a, "echo", Some("first")).unwrap(), "first");

    // A WASI command (the hello example): input on stdin (here from --input-file), output on
    // stdout, stderr in the function's log.
    ok(&a, &["fn", "deploy", example("hello").to_str().unwrap(), "--quiet"]);
    let input = c.path().join("hello-input.txt");
    std::fs::write(&input, "Liquid\n").unwrap();
    let out = ok(&a, &["fn", "invoke", "hello", "--input-file", input.to_str().unwrap()]);
    assert_eq!(out.stdout, "hello, Liquid!\n");
    let logs: Value = serde_json::from_str(&ok(&a, &["fn", "logs", "hello", "--json"]).stdout).unwrap();
    assert!(
        logs.as_array().is_some_and(|l| l.iter().any(|l| str_of(l, "line").contains("greeting 6 bytes"))),
        "hello's stderr line is in its log: {logs}"
    );

    // (c) Each hostile module with small limits: the right error, in bounded time, and echo
    // still answers on the same node afterwards.
    let limits = "[limits]\nfuel = 50000000\nmemory_mib = 16\noutput_kib = 64\nwall_ms = 2000\n";
    let cases: [(&str, &str, u16, &str); 5] = [
        ("loop", "timeout", 504, "limits."),
        ("memory-bomb", "out_of_memory", 422, "memory_mib"),
        ("recursion", "trap", 422, "stack overflow"),
        ("huge-output", "output_too_large", 422, ""),
        ("trap", "trap", 422, ""),
    ];
    for (i, (name, kind, status, says)) in cases.into_iter().enumerate() {
        let file = guest(&format!("{name}.wat"));
        let manifest = format!("name = \"{name}\"\nmodule = \"{name}.wat\"\n\n{limits}");
        let dir = package(&c.path().join("packages").join(name), &manifest, &file);
        ok(&a, &["fn", "deploy", dir.to_str().unwrap(), "--quiet"]);
        let t = Instant::now();
        let v = invoke_fails(&a, name, "x");
        let took = t.elapsed();
        assert_eq!(v["error"]["kind"], kind, "{name}: {v}");
        assert_eq!(v["status"], status, "{name}: {v}");
        let msg = v["error"]["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{name}: the message should mention {says:?}: {v}");
        assert!(took < Duration::from_secs(8), "{name} was stopped only after {took:?}");
        let input = format!("still here after {name} ({i})");
        assert_eq!(invoke(&a, "echo", Some(&input)).unwrap(), input, "echo after {name}");
    }
    // Without --json too, a failed invocation exits non-zero and says why.
    let err = invoke(&a, "trap", None).unwrap_err();
    assert!(err.contains("trap") && err.contains("422"), "{err}");
    let hostile = started.elapsed();

    // (d) Refused modules: 400 naming the problem, and nothing registered.
    let refused = [
        ("not-wasm", "not-wasm.bin", "not a valid WebAssembly module"),
        ("bad-import", "bad-import.wat", "env.system"),
        ("no-export", "no-export.wat", "neither _start"),
    ];
    let data_dir = c.agents[n].dir.clone();
    let files_in = |sub: &str| -> Vec<String> {
        let mut v: Vec<String> = walk(&data_dir.join(sub));
        v.sort();
        v
    };
    let (modules_before, artifacts_before) = (files_in("modules"), files_in("artifacts"));
    assert_eq!(modules_before.len(), 7, "the seven accepted modules are stored: {modules_before:?}");
    for (name, file, says) in refused {
        let bytes = std::fs::read(guest(file)).unwrap();
        let put = api.deploy(name, &bytes, None);
        assert_eq!(put.code, 400, "{file}: {}", put.body);
        let body: Value = serde_json::from_str(&put.body).unwrap_or_else(|e| panic!("{file}: {e}: {}", put.body));
        assert!(str_of(&body, "error").contains(says), "{file}: the error should say {says:?}: {body}");
        // The CLI says so too, and exits non-zero.
        let out = cmd(&a, &["fn", "deploy", guest(file).to_str().unwrap(), "--name", name, "--quiet"]);
        assert!(!out.status.success(), "deploying {file} with the CLI should fail: {}", out.stdout);
        assert!(out.stderr.contains("400") && out.stderr.contains(says), "{file}: {}", out.stderr);
        let get = http(&api.base, "GET", &format!("/v1/functions/{name}"), Some(&api.token), &[], b"").unwrap();
        assert_eq!(get.code, 404, "{name} must not be registered: {}", get.body);
    }
    assert_eq!(files_in("modules"), modules_before, "no refused module was stored");
    assert_eq!(files_in("artifacts"), artifacts_before, "no refused module was compiled and cached");
    let names = listed(&a).unwrap();
    for (name, ..) in refused {
        assert!(!names.iter().any(|n| n == name), "{name} is listed: {names:?}");
    }
    let mut want: Vec<String> =
        ["echo", "hello", "loop", "memory-bomb", "recursion", "huge-output", "trap"].map(String::from).into();
    let mut got = names.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "exactly the accepted functions are listed");

    // (f) No token, or a wrong one: 401 on deploy and invoke, and nothing happens.
    let wrong = format!("{}x", api.token);
    for token in [None, Some(wrong.as_str())] {
        let put = http(&api.base, "PUT", "/v1/functions/x", token, &[], b"(module)").unwrap();
        assert_eq!(put.code, 401, "PUT with token {token:?}: {}", put.body);
        let call = http(&api.base, "POST", "/v1/functions/echo/invoke", token, &[], b"hi").unwrap();
        assert_eq!(call.code, 401, "invoke with token {token:?}: {}", call.body);
        assert!(!call.body.contains("hi"), "no output without the token: {}", call.body);
    }
    assert!(!listed(&a).unwrap().iter().any(|n| n == "x"), "x was not deployed");

    // An unknown function: 404 not_found, through the API and the CLI. (A lone node that has
    // been up for less than the objects' fetch timeout (5 s) waits that long before saying
    // "not found", in case it has not met its peers yet: so the first call may take a while.)
    let call = http(&api.base, "POST", "/v1/functions/nope/invoke", Some(&api.token), &[], b"").unwrap();
    assert_eq!(call.code, 404, "{}", call.body);
    let body: Value = serde_json::from_str(&call.body).unwrap_or_else(|e| panic!("{e}: {}", call.body));
    assert_eq!(body["kind"], "not_found", "{body}");
    let v = invoke_fails(&a, "nope", "");
    assert_eq!(v["error"]["kind"], "not_found", "{v}");
    assert_eq!(v["status"], 404, "{v}");
    let err = invoke(&a, "nope", None).unwrap_err();
    assert!(err.contains("not_found"), "{err}");
    eprintln!("hostile modules done after {hostile:?}; total {:?}", started.elapsed());
}

/// Signed packages (issue 17): a cluster that requires signatures refuses unsigned packages
/// and unknown publishers at deploy, and every strict node refuses to run a package that a
/// lenient node accepted, so the check does not rest on the deploying node alone.
#[test]
fn signed_packages_are_checked_at_deploy_and_on_every_node() {
    let mut c = Cluster::new("signed");
    let key = c.cluster_key("cluster.key");
    let publisher = c.path().join("publisher.key");
    let rogue = c.path().join("rogue.key");
    let mut public = Vec::new();
    for k in [&publisher, &rogue] {
        let out = support::run_liquid(&["publisher", "init", "--out", k.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        let line = out.stdout.lines().find_map(|l| l.strip_prefix("public key: ")).expect("prints the public key");
        public.push(line.trim().to_string());
        assert_eq!(support::mode(k), 0o600);
    }
    let show = support::run_liquid(&["publisher", "show", publisher.to_str().unwrap()]);
    assert_eq!(show.stdout.trim(), public[0]);

    // A lenient agent (no requirement) and a strict one that trusts `publisher` only.
    let keyp = key.to_str().unwrap();
    let lenient = c.spawn(
        "sig-lenient",
        &[
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--cluster-key",
            keyp,
            "--name",
            "sig-lenient",
            "--tier",
            "cloud",
        ],
        &[],
    );
    let boot = c.agents[lenient].wait_ready()["listen_addrs"][0].as_str().unwrap().to_string();
    let strict = c.spawn(
        "sig-strict",
        &[
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--cluster-key",
            keyp,
            "--name",
            "sig-strict",
            "--tier",
            "edge",
            "--bootstrap",
            &boot,
            "--require-signed",
            "--trust-publisher",
            &public[0],
        ],
        &[],
    );
    c.agents[strict].wait_ready();
    eventually("the two agents see each other", FORM_WITHIN, || {
        sees_alive(&c, lenient, 2)?;
        sees_alive(&c, strict, 2)
    });
    let (l, s) = (c.agents[lenient].cli_target(), c.agents[strict].cli_target());
    let hello = example("hello");

    // At the strict node's door: unsigned and a rogue signature are refused, with the reason.
    let out = cmd(&s, &["fn", "deploy", hello.to_str().unwrap(), "--name", "hello-unsigned"]);
    assert!(!out.status.success() && out.stderr.contains("not signed"), "{out:?}");
    assert_eq!(out.stderr.matches("not signed").count(), 1, "the error is printed once: {}", out.stderr);
    let out =
        cmd(&s, &["fn", "deploy", hello.to_str().unwrap(), "--name", "hello-rogue", "--sign", rogue.to_str().unwrap()]);
    assert!(!out.status.success() && out.stderr.contains("does not trust"), "{out:?}");
    // A forged header (a signature of another module) is refused even by the lenient node.
    let api = Api::of(&c, lenient);
    let module = std::fs::read(hello.join("hello.wasm")).unwrap();
    let forged = format!("{}:{}", public[0], "ab".repeat(64));
    let encoded = base64(b"name = \"hello-forged\"\n");
    let r = http(
        &api.base,
        "PUT",
        "/v1/functions/hello-forged",
        Some(&api.token),
        &[("liquid-manifest", encoded.as_str()), ("liquid-signature", forged.as_str())],
        &module,
    )
    .unwrap();
    assert_eq!(r.code, 403, "{r:?}");

    // Signed by the trusted publisher: accepted, and runs on both nodes.
    ok(&s, &["fn", "deploy", hello.to_str().unwrap(), "--sign", publisher.to_str().unwrap()]);
    wait_listed(&l, "hello");
    for a in [&s, &l] {
        let got = eventually(&format!("{} runs the signed hello", a.name), REPLICATE_WITHIN, || {
            invoke(a, "hello", Some("x"))
        });
        assert!(got.contains("hello"), "{got}");
    }

    // Unsigned, deployed through the lenient node: the lenient node runs it, the strict node
    // refuses to (it checks the registry's entry itself before running the module).
    ok(&l, &["fn", "deploy", hello.to_str().unwrap(), "--name", "hello-lax"]);
    wait_listed(&s, "hello-lax");
    assert!(invoke(&l, "hello-lax", Some("x")).is_ok());
    let refused = invoke_fails(&s, "hello-lax", "x");
    assert!(
        refused["error"]["error"].as_str().is_some_and(|e| e.contains("not signed")),
        "the strict node refuses to run it: {refused}"
    );
}
