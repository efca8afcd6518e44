#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of objects: real `liquid agent` processes, driven only through
//! `liquid obj …`, the HTTP API, signals, network namespaces and the agents' logs.
//!
//! Every test runs in its own temporary directory with ports chosen by the OS (and, for the
//! partition test, its own network namespaces named after the test process's pid), so the tests
//! run in parallel; every wait is a poll with a deadline; every agent is SIGKILLed when its test
//! ends, however it ends, and a failing test prints the tail of each agent's log.

#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use support::{Cli, Cluster, Lines, Output, eventually, http_get, http_send, ip, mode, run, str_of};

/// How long a fresh mesh of a few agents may take to see itself whole.
const FORM_WITHIN: Duration = Duration::from_secs(20);
/// How long a change may take to reach every agent of a connected mesh (changes are pushed
/// within milliseconds; anti-entropy repairs anything missed every 10 s).
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);

/// Runs `liquid ARGS… --data-dir DIR` against `a` (panics if it cannot be run or hangs).
fn obj(a: &Cli, args: &[&str]) -> Output {
    a.run(args).unwrap_or_else(|e| panic!("{}: {e}", a.name))
}

/// Like [`obj`], and the command must succeed.
fn ok(a: &Cli, args: &[&str]) -> Output {
    let out = obj(a, args);
    assert!(out.status.success(), "`liquid {}` on {} failed ({}): {}", args.join(" "), a.name, out.status, out.stderr);
    out
}

/// `liquid obj get OBJECT --json` on `a`, parsed.
fn read(a: &Cli, object: &str) -> Result<Value, String> {
    let out = a.run(&["obj", "get", object, "--json"])?;
    if !out.status.success() {
        return Err(format!("`liquid obj get {object}` on {} failed ({}): {}", a.name, out.status, out.stderr.trim()));
    }
    serde_json::from_str(&out.stdout)
        .map_err(|e| format!("`liquid obj get --json` printed no JSON ({e}): {}", out.stdout))
}

/// Waits until every agent of `agents` reads `want` as the value of `object`.
fn wait_value(what: &str, agents: &[Cli], object: &str, want: &Value, within: Duration) {
    eventually(what, within, || {
        for a in agents {
            let v = read(a, object)?;
            if &v != want {
                return Err(format!("{} reads {v}, not {want}", a.name));
            }
        }
        Ok(())
    });
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

/// The status of the first member other than itself in `a`'s view.
fn peer_status(c: &Cluster, a: usize) -> Result<String, String> {
    let list = c.agents[a].nodes()?;
    list.iter()
        .find(|m| m["is_self"] == false)
        .map(|m| str_of(m, "status").to_string())
        .ok_or_else(|| format!("{} lists no peer", c.agents[a].name))
}

/// Starts agents on loopback QUIC, every one bootstrapped to the first one, and waits until
/// every agent sees every other one alive.
fn start_mesh(c: &mut Cluster, key: &Path, members: &[(&str, &str)]) -> Vec<Cli> {
    let first = c.quic_agent(members[0].0, members[0].1, key, None);
    let boot = c.agents[first].wait_ready()["listen_addrs"][0].as_str().expect("a listen address").to_string();
    let mut idx = vec![first];
    for &(name, tier) in &members[1..] {
        idx.push(c.quic_agent(name, tier, key, Some(&boot)));
    }
    for &i in &idx {
        c.agents[i].wait_ready();
    }
    eventually("every agent sees every member alive", FORM_WITHIN, || {
        idx.iter().try_for_each(|&i| sees_alive(c, i, idx.len()))
    });
    idx.iter().map(|&i| c.agents[i].cli_target()).collect()
}

#[test]
fn concurrent_increments_from_three_agents_all_count() {
    let started = Instant::now();
    let mut c = Cluster::new("obj-inc");
    let key = c.cluster_key("cluster.key");
    let agents = start_mesh(&mut c, &key, &[("inc-1", "cloud"), ("inc-2", "fog"), ("inc-3", "edge")]);

    let formed = started.elapsed();

    // The counter does not exist yet: every agent creates it at once (issue 17: creation at
    // first use lost 1-2 of 120 acknowledged increments). Two threads per agent, released
    // together, each incrementing several times by the agent's own amount, so the sum shows
    // whose increments counted.
    const THREADS_PER_AGENT: usize = 2;
    const INCS_PER_THREAD: i64 = 5;
    let amounts = [1_i64, 10, 100];
    let go = std::sync::Barrier::new(amounts.len() * THREADS_PER_AGENT);
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        for (a, by) in agents.iter().zip(amounts) {
            for _ in 0..THREADS_PER_AGENT {
                let go = &go;
                threads.push(s.spawn(move || {
                    go.wait();
                    for _ in 0..INCS_PER_THREAD {
                        ok(a, &["obj", "inc", "app/c", "n", &by.to_string()]);
                    }
                }));
            }
        }
        for t in threads {
            t.join().expect("an increment thread failed");
        }
    });
    let sum: i64 = amounts.iter().map(|by| by * INCS_PER_THREAD * THREADS_PER_AGENT as i64).sum();
    let incremented = started.elapsed();
    wait_value("every agent reads the sum", &agents, "app/c", &json!({ "n": sum }), CONVERGE_WITHIN);

    // Every agent holds it, with the three of them as its replica set.
    for a in &agents {
        let out = ok(a, &["obj", "ls", "app/", "--json"]);
        let list: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
        let entry = list.iter().find(|l| l["object"] == "app/c").unwrap_or_else(|| panic!("{}: {list:?}", a.name));
        assert_eq!(entry["replicas"].as_array().map(Vec::len), Some(3), "{}: {entry}", a.name);
    }

    // A quorum write is durable on a majority of the three; another agent reads it at once
    // when asked for the write's heads.
    let out = ok(&agents[2], &["obj", "set", "app/c", "done", "true", "--durability", "quorum", "--json"]);
    let written: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(written["durable_on"].as_u64().is_some_and(|n| n >= 2), "durable on a majority: {written}");
    let heads: Vec<&str> = written["heads"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    let out = ok(&agents[0], &["obj", "get", "app/c", "--after", &heads.join(","), "--heads", "--json"]);
    let got: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(got["value"], json!({ "n": sum, "done": true }), "{got}");
    for h in &heads {
        assert!(got["heads"].as_array().unwrap().iter().any(|g| g == h), "read at the write's heads: {got}");
    }
    eprintln!(
        "mesh + counter on every agent after {formed:?}, {} increments done after {incremented:?}, \
         converged to {sum} after {:?}",
        amounts.len() * THREADS_PER_AGENT * INCS_PER_THREAD as usize,
        started.elapsed()
    );
}

#[test]
fn acknowledged_writes_survive_kill_9_of_the_agent_written_to() {
    let started = Instant::now();
    let mut c = Cluster::new("obj-kill");
    let key = c.cluster_key("cluster.key");
    let agents = start_mesh(&mut c, &key, &[("kill-1", "cloud"), ("kill-2", "edge"), ("kill-3", "edge")]);
    let (victim, others) = (1, [0, 2]);
    let b = agents[victim].clone();
    ok(&b, &["obj", "inc", "app/log", "total", "0"]);
    wait_value("every agent reads app/log", &agents, "app/log", &json!({ "total": 0 }), CONVERGE_WITHIN);

    // A writer writes to the victim, one write after another, through its kills and restarts:
    // write i sets k<i> = i, except every fourth one, which increments `total`. It records the
    // writes whose command exited 0 (acknowledged: durable on the victim's disk).
    let is_inc = |i: u64| i % 4 == 3;
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (b, acked, stop) = (b.clone(), Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut failed = Vec::new();
            let mut i = 0_u64;
            while !stop.load(Ordering::SeqCst) && i < 100_000 {
                let (k, v) = (format!("k{i}"), i.to_string());
                let args: &[&str] =
                    if is_inc(i) { &["obj", "inc", "app/log", "total"] } else { &["obj", "set", "app/log", &k, &v] };
                match b.run(args) {
                    Ok(out) if out.status.success() => acked.lock().unwrap().push(i),
                    Ok(out) => failed.push((i, out.stderr.trim().to_string())),
                    Err(e) => failed.push((i, e)),
                }
                i += 1;
            }
            (i, failed)
        })
    };
    // `Ok` when `value` holds every write of `acked`; `total` may also count increments that
    // were not acknowledged (applied, then the kill came before the answer), but no more than
    // were attempted.
    let holds = |value: &Value, acked: &[u64], attempted: Option<u64>| -> Result<(), String> {
        let missing: Vec<u64> =
            acked.iter().copied().filter(|&i| !is_inc(i) && value.get(format!("k{i}")) != Some(&json!(i))).collect();
        let incs = acked.iter().filter(|&&i| is_inc(i)).count() as i64;
        let total = value["total"].as_i64().unwrap_or(-1);
        let most = attempted.map_or(i64::MAX, |n| (0..n).filter(|&i| is_inc(i)).count() as i64);
        if !missing.is_empty() || total < incs || total > most {
            return Err(format!(
                "acknowledged sets missing: {missing:?}; total {total}, {incs} increments acknowledged, at most {most} \
                 attempted"
            ));
        }
        Ok(())
    };

    const ROUNDS: usize = 3;
    const WRITES_PER_ROUND: usize = 15;
    for round in 1..=ROUNDS {
        let before = acked.lock().unwrap().len();
        eventually("the writer has writes acknowledged", Duration::from_secs(40), || {
            let n = acked.lock().unwrap().len() - before;
            if n >= WRITES_PER_ROUND { Ok(n) } else { Err(format!("{n} acknowledged in round {round} so far")) }
        });
        c.agents[victim].kill9();
        let snapshot: Vec<u64> = acked.lock().unwrap().clone();
        // Freeze the others so that what the victim reads after its restart comes from its own
        // disk, not from them.
        for o in others {
            c.agents[o].signal(Signal::SIGSTOP);
        }
        c.agents[victim].restart();
        c.agents[victim].wait_ready();
        eprintln!("round {round}: restarted at {:?}", started.elapsed());
        let own = read(&b, "app/log").expect("the restarted agent reads its object from its own disk");
        if let Err(e) = holds(&own, &snapshot, None) {
            panic!("round {round}: the restarted agent lost acknowledged writes: {e}; it reads {own}");
        }
        for o in others {
            c.agents[o].signal(Signal::SIGCONT);
        }
        eprintln!(
            "round {round}: killed after {} acknowledged writes, all on disk ({:?})",
            snapshot.len(),
            started.elapsed()
        );
    }
    // Let the writer write to the last incarnation, then stop it.
    let before = acked.lock().unwrap().len();
    eventually("the writer writes to the restarted agent", Duration::from_secs(20), || {
        if acked.lock().unwrap().len() > before { Ok(()) } else { Err("no write acknowledged yet".into()) }
    });
    stop.store(true, Ordering::SeqCst);
    let (attempted, failed) = writer.join().expect("the writer thread");
    let acked: Vec<u64> = acked.lock().unwrap().clone();
    assert!(!failed.is_empty(), "writes to a killed agent cannot all succeed");
    eprintln!(
        "{} writes attempted, {} acknowledged, {} failed (first: {:?})",
        attempted,
        acked.len(),
        failed.len(),
        failed.first()
    );

    // After convergence, all three read the same value, with every acknowledged write in it.
    // (The victim's lives here are shorter than 2 s, so this takes about 10 s as of this commit,
    // not milliseconds: see `an_agent_restarted_twice_in_quick_succession_is_back_in_the_mesh_at_once`.)
    eprintln!("writer stopped at {:?}", started.elapsed());
    let converged = eventually("all three agents converge", Duration::from_secs(40), || {
        let values = agents.iter().map(|a| read(a, "app/log")).collect::<Result<Vec<_>, _>>()?;
        if values.iter().any(|v| v != &values[0]) {
            return Err(format!("they differ: {} keys vs {} vs {}", len(&values[0]), len(&values[1]), len(&values[2])));
        }
        Ok(values.into_iter().next().unwrap())
    });
    if let Err(e) = holds(&converged, &acked, Some(attempted)) {
        panic!("after convergence: {e}; they read {converged}");
    }

    // A torn tail (a write cut by the kill) is only a warning, never a panic.
    let log = c.agents[victim].log_text();
    assert!(!log.contains("panicked"), "the agent panicked: {log}");
    let torn: Vec<&str> = log.lines().filter(|l| l.contains("torn tail")).collect();
    for l in &torn {
        assert!(l.contains("WARN"), "a torn tail is reported as a warning: {l}");
    }
    eprintln!(
        "every acknowledged write present after {ROUNDS} kills and convergence ({} keys, total = {}); torn tail \
         warnings: {}; took {:?}",
        len(&converged),
        converged["total"],
        torn.len(),
        started.elapsed()
    );
}

/// An agent killed shortly (under 2 s) after it was restarted, and restarted again, must be
/// back in the mesh at once like any restarted agent: it sees its peers, its writes reach
/// them, and they never declare it down while it runs.
///
/// Fails as of this commit: the peers keep the connection to the short-lived previous process
/// (the mesh closes only connections opened more than 2 s before a peer re-authenticates), send
/// to it, and the messages are lost until it times out: for about 10 s the restarted agent
/// sees no peer, its writes reach nobody, and the peers declare it down.
#[test]
fn an_agent_restarted_twice_in_quick_succession_is_back_in_the_mesh_at_once() {
    let started = Instant::now();
    let mut c = Cluster::new("obj-quick-restart");
    let key = c.cluster_key("cluster.key");
    let agents = start_mesh(&mut c, &key, &[("quick-1", "cloud"), ("quick-2", "edge"), ("quick-3", "edge")]);
    let victim = 1;
    let b = &agents[victim];
    ok(b, &["obj", "set", "app/r", "life", "0"]);
    wait_value("every agent reads app/r", &agents, "app/r", &json!({ "life": 0 }), CONVERGE_WITHIN);

    // Restart it, and kill it again as soon as it answers (a crash loop, or a crash soon after
    // an upgrade): its first life lasts well under 2 s.
    c.agents[victim].kill9();
    c.agents[victim].restart();
    c.agents[victim].wait_ready();
    c.agents[victim].kill9();
    c.agents[victim].restart();
    c.agents[victim].wait_ready();
    let restarted = Instant::now();

    // A restarted agent normally sees its peers within a second: the bootstrap node answers
    // its join with the whole membership.
    let prompt = Duration::from_secs(3);
    eventually("the restarted agent sees its peers alive", prompt, || sees_alive(&c, victim, 3));
    let sees_after = restarted.elapsed();
    ok(b, &["obj", "set", "app/r", "life", "2"]);
    wait_value("its write reaches every agent", &agents, "app/r", &json!({ "life": 2 }), prompt);
    let back_after = restarted.elapsed();
    // And no peer declares it down while it runs.
    let id = str_of(&c.agents[victim].status().unwrap(), "id").to_string();
    while restarted.elapsed() < Duration::from_secs(10) {
        for peer in [0, 2] {
            let list = c.agents[peer].nodes().unwrap();
            let m = list.iter().find(|m| m["id"] == id.as_str()).expect("the peer lists the restarted agent");
            assert_ne!(m["status"], "down", "{} declared the running agent down: {m}", c.agents[peer].name);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "quickly restarted agent sees its peers after {sees_after:?}, its write reached them after {back_after:?}; \
         total {:?}",
        started.elapsed()
    );
}

/// POSTs `len` bytes to `path` over a raw connection and returns the raw answer (the agent may
/// answer and close before the body is sent: write errors are not failures).
fn oversized_post(base: &str, token: &str, path: &str, len: usize) -> String {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b' '; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        if s.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n;
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

fn len(v: &Value) -> usize {
    v.as_object().map_or(0, serde_json::Map::len)
}

/// Network namespaces created by a test, deleted (with the veth ends in them) when dropped.
struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Two network namespaces joined by a veth pair, `SUBNET.1` and `SUBNET.2`, loopback up in each.
/// `Err` says why they cannot be created here.
fn two_namespaces(ns: &[String; 2], dev: &[String; 2], subnet: &str) -> Result<Netns, String> {
    let mut guard = Netns(Vec::new());
    for n in ns {
        ip(&["netns", "add", n])?;
        guard.0.push(n.clone());
    }
    ip(&["link", "add", &dev[0], "netns", &ns[0], "type", "veth", "peer", "name", &dev[1], "netns", &ns[1]])?;
    for k in 0..2 {
        ip(&["-n", &ns[k], "addr", "add", &format!("{subnet}.{}/24", k + 1), "dev", &dev[k]])?;
        ip(&["-n", &ns[k], "link", "set", &dev[k], "up"])?;
        ip(&["-n", &ns[k], "link", "set", "lo", "up"])?;
    }
    Ok(guard)
}

#[test]
fn both_sides_of_a_real_partition_write_and_converge_after_it_heals() {
    let started = Instant::now();
    let pid = std::process::id();
    let subnet = format!("10.231.{}", pid % 250);
    let ns = [format!("liquid-e2e-{pid}-a"), format!("liquid-e2e-{pid}-b")];
    let dev = [format!("lqa{pid}"), format!("lqb{pid}")];
    // Declared before the cluster, so dropped after it: the agents die before their namespaces.
    let _netns = match two_namespaces(&ns, &dev, &subnet) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("SKIPPED: cannot create network namespaces (root and `ip netns` are needed): {e}");
            return;
        }
    };
    let mut c = Cluster::new("obj-partition");
    let key = c.cluster_key("cluster.key");
    let key = key.to_str().unwrap();
    let listen = |k: usize| format!("/ip4/{subnet}.{}/udp/0/quic-v1", k + 1);
    let a = c.spawn_in(
        Some(&ns[0]),
        "part-a",
        &["--listen", &listen(0), "--cluster-key", key, "--name", "part-a", "--tier", "cloud"],
        &[],
    );
    let boot = c.agents[a].wait_ready()["listen_addrs"][0].as_str().unwrap().to_string();
    assert!(boot.starts_with(&format!("/ip4/{subnet}.1/udp/")), "{boot}");
    let b = c.spawn_in(
        Some(&ns[1]),
        "part-b",
        &["--listen", &listen(1), "--cluster-key", key, "--name", "part-b", "--tier", "edge", "--bootstrap", &boot],
        &[],
    );
    c.agents[b].wait_ready();
    eventually("the two agents see each other alive", FORM_WITHIN, || {
        sees_alive(&c, a, 2)?;
        sees_alive(&c, b, 2)
    });
    let (ca, cb) = (c.agents[a].cli_target(), c.agents[b].cli_target());
    let both = [ca.clone(), cb.clone()];

    ok(&ca, &["obj", "inc", "app/p", "n", "0"]);
    ok(&ca, &["obj", "set", "app/p", "before", "\"cut\""]);
    let start = json!({ "n": 0, "before": "cut" });
    wait_value("both sides hold the object", &both, "app/p", &start, CONVERGE_WITHIN);
    let formed = started.elapsed();

    // Cut the link.
    ip(&["-n", &ns[0], "link", "set", &dev[0], "down"]).unwrap();
    let cut = Instant::now();

    // Both sides write, with local durability, and increment concurrently.
    ok(&ca, &["obj", "set", "app/p", "side_a", "1", "--durability", "local"]);
    ok(&cb, &["obj", "set", "app/p", "side_b", "2", "--durability", "local"]);
    const THREADS_PER_SIDE: usize = 2;
    const INCS_PER_THREAD: i64 = 3;
    let amounts = [1_i64, 10];
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        for (side, by) in both.iter().zip(amounts) {
            for _ in 0..THREADS_PER_SIDE {
                threads.push(s.spawn(move || {
                    for _ in 0..INCS_PER_THREAD {
                        ok(side, &["obj", "inc", "app/p", "n", &by.to_string(), "--durability", "local"]);
                    }
                }));
            }
        }
        for t in threads {
            t.join().expect("an increment thread failed");
        }
    });
    let per_side: Vec<i64> = amounts.iter().map(|by| by * INCS_PER_THREAD * THREADS_PER_SIDE as i64).collect();
    // The partition is real: each side reads only its own writes.
    assert_eq!(read(&ca, "app/p").unwrap(), json!({ "n": per_side[0], "before": "cut", "side_a": 1 }));
    assert_eq!(read(&cb, "app/p").unwrap(), json!({ "n": per_side[1], "before": "cut", "side_b": 2 }));
    // Membership notices: each side declares the other down.
    eventually("each side declares the other down", Duration::from_secs(30), || {
        let seen = [peer_status(&c, a)?, peer_status(&c, b)?];
        if seen.iter().all(|s| s == "down") { Ok(()) } else { Err(format!("{seen:?}")) }
    });
    let down_after = cut.elapsed();
    // Still apart: nothing crossed.
    assert_eq!(read(&ca, "app/p").unwrap()["side_b"], Value::Null);

    // Heal.
    ip(&["-n", &ns[0], "link", "set", &dev[0], "up"]).unwrap();
    let healed = Instant::now();
    let want = json!({ "n": per_side.iter().sum::<i64>(), "before": "cut", "side_a": 1, "side_b": 2 });
    wait_value("both sides converge after the partition heals", &both, "app/p", &want, Duration::from_secs(60));
    let converged_after = healed.elapsed();
    eventually("the two agents see each other alive again", Duration::from_secs(30), || {
        sees_alive(&c, a, 2)?;
        sees_alive(&c, b, 2)
    });
    eprintln!(
        "partition test: mesh + object after {formed:?}; peer declared down {down_after:?} after the cut; \
         converged {converged_after:?} after healing; total {:?}",
        started.elapsed()
    );
}

#[test]
fn the_api_and_the_cli_refuse_bad_requests_clearly() {
    let started = Instant::now();
    let mut c = Cluster::new("obj-api");
    let key = c.cluster_key("cluster.key");
    let agents = start_mesh(&mut c, &key, &[("api-1", "cloud")]);
    let a = &agents[0];
    let (url, token) = c.agents[0].api();

    // A missing object on a lone agent: not found (after waiting for peers while it is young).
    let out = obj(a, &["obj", "get", "app/missing"]);
    assert!(!out.status.success(), "a missing object: {out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");
    assert!(out.stderr.contains("app/missing does not exist"), "a clear message: {out:?}");

    // No token: 401, and nothing happens.
    let none = http_get(&url, "/v1/objects/app/x", None).unwrap();
    assert_eq!(none.code, 401, "{none:?}");
    assert!(none.body.contains("\"error\"") && none.body.contains("token"), "{none:?}");
    let set = r#"[{"op":"set","path":"a","value":1}]"#;
    let none = http_send(&url, "POST", "/v1/objects/app/x", None, set).unwrap();
    assert_eq!(none.code, 401, "{none:?}");
    let got = http_get(&url, "/v1/objects/app/x", Some(&token)).unwrap();
    assert_eq!(got.code, 404, "a write without the token created nothing: {got:?}");
    assert!(got.body.contains("does not exist"), "{got:?}");

    // Malformed JSON and unknown operations: 400 with a message.
    for body in ["[{\"op\": \"set\", \"path\": ", "{\"op\":\"set\"}", "[{\"op\":\"frobnicate\",\"path\":\"a\"}]", "[]"]
    {
        let bad = http_send(&url, "POST", "/v1/objects/app/x", Some(&token), body).unwrap();
        assert_eq!(bad.code, 400, "{body}: {bad:?}");
        let msg: Value = serde_json::from_str(bad.body.trim())
            .unwrap_or_else(|e| panic!("{body}: the answer is not JSON ({e}): {bad:?}"));
        assert!(msg["error"].as_str().is_some_and(|m| m.len() > 10), "{body}: a message: {bad:?}");
    }
    let bad = http_send(&url, "POST", "/v1/objects/app/x", Some(&token), "[{\"op\": \"set\", \"path\": ").unwrap();
    assert!(bad.body.contains("JSON list of operations"), "says what is expected: {bad:?}");
    let got = http_get(&url, "/v1/objects/app/x", Some(&token)).unwrap();
    assert_eq!(got.code, 404, "refused writes created nothing: {got:?}");
    let bad = http_send(&url, "POST", "/v1/objects/app/x?durability=eventually", Some(&token), set).unwrap();
    assert_eq!(bad.code, 400, "{bad:?}");
    assert!(bad.body.contains("local or quorum"), "{bad:?}");

    // The CLI: a VALUE that is not JSON.
    let out = obj(a, &["obj", "set", "app/x", "name", "edge-7"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("is not JSON") && out.stderr.contains("quotes"), "a clear message: {out:?}");

    // `set` on a counter is refused and changes nothing.
    ok(a, &["obj", "inc", "app/ctr", "n", "5"]);
    let out = obj(a, &["obj", "set", "app/ctr", "n", "7"]);
    assert!(!out.status.success(), "set on a counter must fail: {out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("is a counter") && out.stderr.contains("inc"), "a clear message: {out:?}");
    assert_eq!(read(a, "app/ctr").unwrap(), json!({ "n": 5 }));
    // `inc` on something that is not a counter, too.
    ok(a, &["obj", "set", "app/ctr", "label", "\"x\""]);
    let out = obj(a, &["obj", "inc", "app/ctr", "label"]);
    assert!(!out.status.success() && out.stderr.contains("not a counter"), "{out:?}");
    assert_eq!(read(a, "app/ctr").unwrap(), json!({ "n": 5, "label": "x" }));

    // A counter cannot leave ±2^53 (issue 17: it wrapped to a negative number in release
    // builds and panicked the agent in debug builds): a clear 400, and nothing changes.
    let max = (1_i64 << 53).to_string();
    ok(a, &["obj", "inc", "app/big", "n", &max]);
    let over =
        http_send(&url, "POST", "/v1/objects/app/big", Some(&token), r#"[{"op":"inc","path":"n","by":1}]"#).unwrap();
    assert_eq!(over.code, 400, "{over:?}");
    assert!(over.body.contains("2^53"), "says why: {over:?}");
    assert_eq!(read(a, "app/big").unwrap(), json!({ "n": 1_i64 << 53 }));
    let out = obj(a, &["obj", "inc", "app/big", "n", "-1"]);
    assert!(out.status.success(), "the way back is open: {out:?}");

    // Values at the edges (issue 17): a negative float needs no `--`; an integer beyond 64
    // bits is refused, not rounded to a float; 1,001 operations are more than the 1,000 the
    // docs promise; every refusal is JSON, also a bad query string and a body over the limit.
    ok(a, &["obj", "set", "app/edge", "neg", "-0.5"]);
    let out = obj(a, &["obj", "set", "app/edge", "huge", "123456789012345678901234"]);
    assert!(!out.status.success() && out.stderr.contains("as a string"), "{out:?}");
    let huge = r#"[{"op":"set","path":"huge","value":123456789012345678901234}]"#;
    let r = http_send(&url, "POST", "/v1/objects/app/edge", Some(&token), huge).unwrap();
    assert_eq!(r.code, 400, "{r:?}");
    let many = format!("[{}]", vec![r#"{"op":"set","path":"x","value":1}"#; 1001].join(","));
    let r = http_send(&url, "POST", "/v1/objects/app/edge", Some(&token), &many).unwrap();
    assert!(r.code == 400 && r.body.contains("limit of 1000"), "{r:?}");
    assert_eq!(read(a, "app/edge").unwrap(), json!({ "neg": -0.5 }));
    let r = http_get(&url, "/v1/objects?limit=abc", Some(&token)).unwrap();
    assert_eq!(r.code, 400, "{r:?}");
    assert!(serde_json::from_str::<Value>(r.body.trim()).is_ok_and(|v| v["error"].is_string()), "JSON: {r:?}");
    let r = oversized_post(&url, &token, "/v1/objects/app/edge", 16 * 1024 * 1024 + 1);
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let body = r.split_once("\r\n\r\n").map(|(_, b)| b.trim()).unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("a 413 answers JSON ({e}): {r}"));
    assert!(v["error"].as_str().is_some_and(|m| m.contains("16 MiB")), "{v}");

    // The data dir is private: folders 0700, files 0600 (issue 17: object logs were 0644).
    let mut stack = vec![c.agents[0].dir.clone()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_symlink() {
            continue;
        }
        seen += 1;
        let m = mode(&p);
        if meta.is_dir() {
            assert_eq!(m, 0o700, "{}", p.display());
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(m & 0o077, 0, "{} is readable by others: {m:o}", p.display());
        }
    }
    assert!(seen > 5, "walked the data dir: {seen} entries");
    eprintln!("API checks took {:?}", started.elapsed());
}

#[test]
fn watch_sees_a_remote_write_and_export_import_round_trips() {
    let started = Instant::now();
    let mut c = Cluster::new("obj-watch");
    let key = c.cluster_key("cluster.key");
    let agents = start_mesh(&mut c, &key, &[("watch-1", "cloud"), ("watch-2", "edge")]);
    let (a, b) = (&agents[0], &agents[1]);

    // `obj watch` on one agent: the value now, then a line for a write made on the other.
    ok(a, &["obj", "set", "app/w", "v", "1"]);
    wait_value("both agents read app/w", &agents, "app/w", &json!({ "v": 1 }), CONVERGE_WITHIN);
    let mut watch = Lines::spawn(a.command(&["obj", "watch", "app/w"])).unwrap();
    let first = watch.next_line(Duration::from_secs(10)).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&first).ok(), Some(json!({ "v": 1 })), "the first line: {first:?}");
    let wrote = Instant::now();
    ok(b, &["obj", "set", "app/w", "v", "2"]);
    let deadline = wrote + Duration::from_secs(15);
    let mut seen = Vec::new();
    loop {
        let line = watch.next_line(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|e| {
            panic!("the watch printed no line with v = 2 (lines so far: {seen:?}): {e}");
        });
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        seen.push(line);
        if v == json!({ "v": 2 }) {
            break;
        }
    }
    let watch_latency = wrote.elapsed();
    drop(watch);

    // Export on one agent, import under another name on the other: the same value, and the
    // imported counter keeps counting.
    let cfg = r#"{"name":"edge-7","limits":{"max":10,"ratio":0.5},"tags":["a","b"],"on":true,"none":null}"#;
    ok(a, &["obj", "set", "app/src", "cfg", cfg]);
    ok(a, &["obj", "inc", "app/src", "hits", "3"]);
    ok(a, &["obj", "set", "app/src", "items", "[1,2,3]"]);
    ok(a, &["obj", "del", "app/src", "items.1"]);
    let src = read(a, "app/src").unwrap();
    let want = json!({
        "cfg": serde_json::from_str::<Value>(cfg).unwrap(), "hits": 3, "items": [1, 3]
    });
    assert_eq!(src, want);
    let file = c.path().join("src.automerge");
    let file_s = file.to_str().unwrap();
    let out = ok(a, &["obj", "export", "app/src", file_s, "--json"]);
    let exported: Value = serde_json::from_str(&out.stdout).unwrap();
    let bytes = std::fs::metadata(&file).unwrap().len();
    assert_eq!(exported["bytes"].as_u64(), Some(bytes), "{exported}");
    assert!(bytes > 0);
    ok(b, &["obj", "import", "app/copy", file_s]);
    assert_eq!(read(b, "app/copy").unwrap(), src, "the imported copy reads the same");
    wait_value("the copy reaches the exporting agent", &agents, "app/copy", &src, CONVERGE_WITHIN);
    ok(b, &["obj", "inc", "app/copy", "hits", "2"]);
    let mut more = src.clone();
    more["hits"] = json!(5);
    wait_value("the copy's counter keeps counting", &agents, "app/copy", &more, CONVERGE_WITHIN);
    assert_eq!(read(a, "app/src").unwrap(), src, "the original is untouched");

    // Every agent lists the three objects, each with both agents as its replicas.
    eventually("both agents list every object", CONVERGE_WITHIN, || {
        for x in &agents {
            let out = ok(x, &["obj", "ls", "app/", "--json"]);
            let list: Vec<Value> = serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))?;
            let names: BTreeMap<String, usize> = list
                .iter()
                .map(|l| {
                    (l["object"].as_str().unwrap_or("?").to_string(), l["replicas"].as_array().map_or(0, Vec::len))
                })
                .collect();
            let want: BTreeMap<String, usize> =
                ["app/copy", "app/src", "app/w"].iter().map(|o| (o.to_string(), 2)).collect();
            if names != want {
                return Err(format!("{} lists {names:?}", x.name));
            }
        }
        Ok(())
    });
    eprintln!("watch saw a remote write after {watch_latency:?}; total {:?}", started.elapsed());
}

/// Issue 17: an API on a network address is served over TLS, and the CLI pins the agent's
/// certificate. Plain HTTP to it, or another fingerprint, gets nowhere near the token.
#[test]
fn an_api_on_a_network_address_is_tls_with_a_pinned_certificate() {
    let pid = std::process::id();
    let ns = format!("liquid-e2e-{pid}-tls");
    let ip_addr = format!("10.232.{}.1", pid % 250);
    let setup = || -> Result<Netns, String> {
        ip(&["netns", "add", &ns])?;
        let guard = Netns(vec![ns.clone()]);
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        // A veth pair inside the namespace gives it a network address (no dummy driver here).
        ip(&["-n", &ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1"])?;
        ip(&["-n", &ns, "addr", "add", &format!("{ip_addr}/24"), "dev", "d0"])?;
        ip(&["-n", &ns, "link", "set", "d0", "up"])?;
        ip(&["-n", &ns, "link", "set", "d1", "up"])?;
        Ok(guard)
    };
    let _netns = match setup() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("SKIPPED: cannot create a network namespace (root and `ip netns` are needed): {e}");
            return;
        }
    };
    let mut c = Cluster::new("obj-tls");
    let key = c.cluster_key("cluster.key");
    let a = c.spawn_in_at(
        Some(&ns),
        "tls-1",
        &format!("{ip_addr}:0"),
        &["--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--cluster-key", key.to_str().unwrap()],
        &[],
    );
    // The CLI finds the agent through its data dir, address, token and fingerprint included.
    c.agents[a].wait_ready();
    let dir = c.agents[a].dir.clone();
    let (url, token) = c.agents[a].api();
    assert!(url.starts_with(&format!("https://{ip_addr}:")), "{url}");
    let pin = std::fs::read_to_string(dir.join("api.fingerprint")).unwrap().trim().to_string();
    assert!(pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()), "{pin}");
    assert_eq!(mode(&dir.join("api-key.pem")), 0o600);
    let cli = c.agents[a].cli_target();
    ok(&cli, &["obj", "set", "app/tls", "over", "\"tls\""]);
    assert_eq!(read(&cli, "app/tls").unwrap(), json!({ "over": "tls" }));

    let status = |extra: &[&str]| {
        let mut cmd = support::liquid_in(Some(&ns));
        cmd.args(["status", "--json"]).args(extra);
        run(cmd, Duration::from_secs(20)).unwrap()
    };
    let given = status(&["--api", &url, "--token", &token, "--api-fingerprint", &pin]);
    assert!(given.status.success(), "the pin given by hand: {given:?}");
    let wrong = "ab".repeat(32);
    let out = status(&["--api", &url, "--token", &token, "--api-fingerprint", &wrong]);
    assert!(!out.status.success(), "another fingerprint is refused: {out:?}");
    let out = status(&["--api", &url, "--token", &token]);
    assert!(!out.status.success() && out.stderr.contains("--api-fingerprint"), "https without a pin: {out:?}");
    let plain = url.replacen("https://", "http://", 1);
    let out = status(&["--api", &plain, "--token", &token]);
    assert!(!out.status.success(), "plain HTTP to the TLS port: {out:?}");
    // Restarted, it keeps its certificate: the pin stays valid.
    c.agents[a].kill9();
    c.agents[a].restart();
    c.agents[a].wait_ready();
    assert_eq!(std::fs::read_to_string(dir.join("api.fingerprint")).unwrap().trim(), pin);
}

/// Flips a byte in the middle record of `object`'s log in the data dir `dir`; returns the log's path.
fn damage_log(dir: &Path, object: &str) -> std::path::PathBuf {
    let objects = dir.join("objects");
    for entry in std::fs::read_dir(&objects).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let header = 8 + 9 + object.len();
        if path.extension().is_none_or(|e| e != "log") || bytes.get(13..13 + object.len()) != Some(object.as_bytes()) {
            continue;
        }
        let mut starts = Vec::new();
        let mut off = header;
        while off + 4 <= bytes.len() {
            starts.push(off);
            off += 9 + u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        }
        assert!(starts.len() >= 5, "{} records in {}", starts.len(), path.display());
        bytes[starts[starts.len() / 2] + 6] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        return path;
    }
    panic!("no log of {object} in {}", objects.display());
}

/// The story (issue 17): a disk damages the middle of a counter's log while its agent is
/// down. At restart the agent keeps the damaged file, refuses to serve the counter older
/// (503 naming the kept file), says so in `liquid status`, its log and `/metrics`, and serves
/// it again — with every acknowledged increment — once its replica has sent the lost changes.
#[test]
fn a_damaged_object_log_is_refused_loudly_then_repaired_by_its_replica() {
    let mut c = Cluster::new("obj-damage");
    let key = c.cluster_key("cluster.key");
    let agents = start_mesh(&mut c, &key, &[("dmg-1", "cloud"), ("dmg-2", "edge")]);
    let (victim, other) = (1, 0);
    let b = agents[victim].clone();
    for _ in 0..20 {
        ok(&b, &["obj", "inc", "app/c", "n"]);
    }
    wait_value("both agents read the count", &agents, "app/c", &json!({ "n": 20 }), CONVERGE_WITHIN);
    c.agents[victim].kill9();
    // Freeze the replica, so the restarted agent can only rely on its own disk at first.
    c.agents[other].signal(Signal::SIGSTOP);
    let log = damage_log(&c.agents[victim].dir, "app/c");
    c.agents[victim].restart();
    c.agents[victim].wait_ready();

    let out = obj(&b, &["obj", "get", "app/c", "--json"]);
    assert!(!out.status.success(), "a damaged object was served: {}", out.stdout);
    assert!(out.stderr.contains("damaged") && out.stderr.contains(".corrupt-"), "{}", out.stderr);
    let (base, token) = c.agents[victim].api();
    let r = http_get(&base, "/v1/objects/app/c", Some(&token)).unwrap();
    assert_eq!(r.code, 503, "{}", r.body);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["kind"], "damaged", "{body}");
    let kept = str_of(&body, "kept").to_string();
    assert!(kept.starts_with(&format!("{}.corrupt-", log.display())) && Path::new(&kept).exists(), "{body}");
    let status = c.agents[victim].status().unwrap();
    assert_eq!(status["damaged_objects"][0]["object"], "app/c", "{status}");
    assert!(ok(&b, &["status"]).stdout.contains("DAMAGED"));
    let metrics = http_get(&base, "/metrics", Some(&token)).unwrap().body;
    assert!(metrics.contains("liquid_objects_damaged 1"), "{metrics}");
    assert!(metrics.contains("liquid_object_logs_corrupt_total 1"), "{metrics}");
    assert!(c.agents[victim].log_text().contains("ERROR"), "the damage is logged as an error");

    c.agents[other].signal(Signal::SIGCONT);
    wait_value(
        "the damaged agent is repaired",
        std::slice::from_ref(&b),
        "app/c",
        &json!({ "n": 20 }),
        CONVERGE_WITHIN,
    );
    let status = c.agents[victim].status().unwrap();
    assert_eq!(status["damaged_objects"], json!([]), "{status}");
    eventually("the damaged-objects gauge (updated every second) drops", Duration::from_secs(5), || {
        let metrics = http_get(&base, "/metrics", Some(&token))?.body;
        if metrics.contains("liquid_objects_damaged 0") { Ok(()) } else { Err(metrics) }
    });
}

/// A tmpfs mounted by a test, unmounted (lazily, in case a process still holds it) when
/// dropped.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a tmpfs of `size` (`4m`) at `dir`; `Err` says why it cannot be done here.
fn tmpfs(dir: &Path, size: &str) -> Result<Tmpfs, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(Tmpfs(dir.to_path_buf()))
}

#[test]
fn a_full_disk_refuses_writes_clearly_and_corrupts_nothing_and_quotas_and_pages_hold() {
    let started = Instant::now();
    let mut c = Cluster::new("obj-full");
    let dir = c.path().join("full-1");
    // Declared after the cluster, so dropped before it: the lazy unmount leaves the agent's
    // files to its kill, and the cluster's directory removable.
    let _mount = match tmpfs(&dir, "3m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED: cannot mount a tmpfs (root is needed): {e}");
            return;
        }
    };
    let key = c.cluster_key("cluster.key");
    let key = key.to_str().unwrap();
    let a = c.spawn(
        "full-1",
        &["--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--cluster-key", key, "--namespace-objects-max", "40"],
        &[],
    );
    c.agents[a].wait_ready();
    let (url, token) = c.agents[a].api();
    let cli = c.agents[a].cli_target();
    let post = |object: &str, body: &str| http_send(&url, "POST", &format!("/v1/objects/{object}"), Some(&token), body);

    // Quota: a flood of creations in one namespace stops at 40 with a clear 403; what was
    // created is all there, and other namespaces still take new objects.
    let mut created = 0;
    let refused = loop {
        let r = post(&format!("flood/k{created:03}"), r#"[{"op":"inc","path":"n"}]"#).unwrap();
        if r.code != 200 {
            break r;
        }
        created += 1;
        assert!(created <= 40, "the quota of 40 did not hold");
    };
    assert_eq!(created, 40);
    assert_eq!(refused.code, 403, "{refused:?}");
    assert!(refused.body.contains("\"kind\":\"quota\"") && refused.body.contains("flood"), "{refused:?}");
    assert_eq!(post("flood/k000", r#"[{"op":"inc","path":"n"}]"#).unwrap().code, 200, "existing objects take writes");

    // Paged listing: three pages of 15, 15 and 10, in order, with a cursor header on full
    // pages only; and the CLI pages through them the same way.
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/v1/objects?prefix=flood/&limit=15".to_string();
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let r = http_get(&url, &path, Some(&token)).unwrap();
        assert_eq!(r.code, 200, "{r:?}");
        let page: Vec<Value> = serde_json::from_str(r.body.trim()).unwrap_or_else(|e| panic!("{e}: {r:?}"));
        pages += 1;
        names.extend(page.iter().map(|v| str_of(v, "object").to_string()));
        match page.last() {
            Some(last) if page.len() == 15 => after = Some(str_of(last, "object").to_string()),
            _ => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    let want: Vec<String> = (0..40).map(|k| format!("flood/k{k:03}")).collect();
    assert_eq!(names, want);
    let out = ok(&cli, &["obj", "ls", "flood/", "--after", "flood/k009", "--limit", "3", "--json"]);
    let got: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(got.iter().map(|v| str_of(v, "object")).collect::<Vec<_>>(), ["flood/k010", "flood/k011", "flood/k012"]);
    let bad = http_get(&url, "/v1/objects?limit=0", Some(&token)).unwrap();
    assert_eq!(bad.code, 400, "{bad:?}");

    // Fill the 3 MiB disk with 16 KiB values until a write is refused (30 objects per
    // namespace, below the quota).
    let fill = |i: usize| format!("fill-{}/k{i:04}", i / 30);
    // Incompressible (automerge compresses its saves): a 64-bit LCG's top bits, in hex.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let big: String = (0..16 * 1024)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            char::from(b"0123456789abcdef"[(x >> 60) as usize])
        })
        .collect();
    let mut acked = Vec::new();
    let full = loop {
        let i = acked.len();
        // Every fourth write appends to one object's log instead of creating a log: a
        // full disk must not leave a partial record in the middle of a log either.
        let (object, path) = if i % 4 == 3 { ("grow/one".to_string(), format!("k{i}")) } else { (fill(i), "v".into()) };
        let r = post(&object, &format!(r#"[{{"op":"set","path":"{path}","value":"{big}"}}]"#)).unwrap();
        if r.code != 200 {
            break r;
        }
        acked.push(i);
        assert!(acked.len() < 1000, "a 3 MiB disk took 1,000 values of 16 KiB");
    };
    eprintln!("disk full after {} writes ({:?}): {full:?}", acked.len(), started.elapsed());
    assert_eq!(full.code, 507, "a full disk is 507 Insufficient Storage: {full:?}");
    assert!(full.body.contains("\"kind\":\"disk_full\""), "{full:?}");
    assert!(acked.len() > 10, "only {} writes fitted", acked.len());
    // Reads still work, and the agent keeps answering writes with the same clear error.
    let r = http_get(&url, &format!("/v1/objects/{}", fill(0)), Some(&token)).unwrap();
    assert_eq!(r.code, 200, "{r:?}");
    let again = post(&fill(0), r#"[{"op":"set","path":"w","value":1}]"#).unwrap();
    assert!(again.code == 507 || again.code == 200, "{again:?}");

    // Make room and restart: every acknowledged write is there, and no log was damaged.
    c.agents[a].kill9();
    let out = std::process::Command::new("mount").args(["-o", "remount,size=16m"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "remount: {}", String::from_utf8_lossy(&out.stderr));
    c.agents[a].restart();
    c.agents[a].wait_ready();
    let (url, token) = c.agents[a].api();
    let grow = http_get(&url, "/v1/objects/grow/one", Some(&token)).unwrap();
    assert_eq!(grow.code, 200, "{grow:?}");
    let grow: Value = serde_json::from_str(grow.body.trim()).unwrap();
    for i in &acked {
        if i % 4 == 3 {
            assert_eq!(grow["value"][format!("k{i}")].as_str(), Some(big.as_str()), "acknowledged append {i} lost");
            continue;
        }
        let r = http_get(&url, &format!("/v1/objects/{}", fill(*i)), Some(&token)).unwrap();
        assert_eq!(r.code, 200, "acknowledged write {i} lost: {r:?}");
        assert!(r.body.contains(&big), "acknowledged write {i} is not whole");
    }
    let status = c.agents[a].status().unwrap();
    assert_eq!(status["damaged_objects"].as_array().map(Vec::len), Some(0), "{status}");
    let log = c.agents[a].log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ") || l.contains("torn tail")).collect();
    assert!(errors.is_empty(), "no damage, torn tail or error was reported: {errors:#?}");
    let corrupt = std::fs::read_dir(dir.join("objects"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().contains(".corrupt-")).count())
        .unwrap_or(0);
    assert_eq!(corrupt, 0, "no log was set aside as corrupt");
    let r = http_send(&url, "POST", "/v1/objects/fill/after", Some(&token), r#"[{"op":"set","path":"v","value":1}]"#)
        .unwrap();
    assert_eq!(r.code, 200, "writes work again once there is room: {r:?}");
    eprintln!("done in {:?}", started.elapsed());
}

/// A metric's value in a Prometheus text exposition (`None` if absent).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn a_small_object_cache_keeps_documents_on_disk_and_serves_them_all() {
    let started = Instant::now();
    let mut c = Cluster::new("obj-cache");
    let key = c.cluster_key("cluster.key");
    let key = key.to_str().unwrap();
    let args = |name: &'static str| {
        vec!["--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--cluster-key", key, "--name", name, "--object-cache", "1MiB"]
    };
    let a = c.spawn("cache-a", &args("cache-a"), &[]);
    let boot = c.agents[a].wait_ready()["listen_addrs"][0].as_str().unwrap().to_string();
    let mut b_args = args("cache-b");
    b_args.extend(["--bootstrap", boot.as_str()]);
    let b = c.spawn("cache-b", &b_args, &[]);
    c.agents[b].wait_ready();
    eventually("both agents see each other", FORM_WITHIN, || sees_alive(&c, a, 2).and_then(|()| sees_alive(&c, b, 2)));
    let (url_a, token_a) = c.agents[a].api();
    let (url_b, token_b) = c.agents[b].api();

    // 200 objects of about 1 KB: some 5 MB of documents in memory without a cache bound.
    let filler = "y".repeat(1000);
    for k in 0..200 {
        let body = format!(r#"[{{"op":"set","path":"k","value":{k}}},{{"op":"set","path":"pad","value":"{filler}"}}]"#);
        let r = http_send(&url_a, "POST", &format!("/v1/objects/many/o{k:03}"), Some(&token_a), &body).unwrap();
        assert_eq!(r.code, 200, "{r:?}");
    }
    // The other agent replicates them all (digests of cold objects, syncs into cold ones).
    eventually("agent b holds all 200", CONVERGE_WITHIN, || {
        let m = http_get(&url_b, "/metrics", Some(&token_b))?.body;
        match metric(&m, "liquid_objects_held") {
            Some(n) if n >= 200.0 => Ok(()),
            n => Err(format!("b holds {n:?}")),
        }
    });
    for (url, token) in [(&url_a, &token_a), (&url_b, &token_b)] {
        eventually("the cache gauges (updated every second) show the bound", Duration::from_secs(5), || {
            let m = http_get(url, "/metrics", Some(token))?.body;
            let docs = metric(&m, "liquid_object_cache_documents").unwrap_or(f64::MAX);
            let bytes = metric(&m, "liquid_object_cache_bytes").unwrap_or(f64::MAX);
            let evicted = metric(&m, "liquid_object_evictions_total").unwrap_or(0.0);
            if docs < 100.0 && bytes <= 1.25 * 1024.0 * 1024.0 && evicted > 0.0 {
                Ok(())
            } else {
                Err(format!("{docs} documents, {bytes} bytes, {evicted} evicted"))
            }
        });
    }
    // Every object reads back whole from b, and writes at b to cold objects reach a.
    for k in 0..200 {
        let r = http_get(&url_b, &format!("/v1/objects/many/o{k:03}"), Some(&token_b)).unwrap();
        assert_eq!(r.code, 200, "{r:?}");
        let v: Value = serde_json::from_str(r.body.trim()).unwrap();
        assert_eq!(v["value"]["k"], k, "{v}");
    }
    for k in (0..200).step_by(4) {
        let body = r#"[{"op":"inc","path":"seen"}]"#;
        let r = http_send(&url_b, "POST", &format!("/v1/objects/many/o{k:03}"), Some(&token_b), body).unwrap();
        assert_eq!(r.code, 200, "{r:?}");
    }
    let cli_a = c.agents[a].cli_target();
    for k in (0..200).step_by(20) {
        wait_value(
            "a sees b's write",
            std::slice::from_ref(&cli_a),
            &format!("many/o{k:03}"),
            &json!({ "k": k, "pad": filler, "seen": 1 }),
            CONVERGE_WITHIN,
        );
    }
    eventually("b's reads went to disk (the counter is updated every second)", Duration::from_secs(5), || {
        let m = http_get(&url_b, "/metrics", Some(&token_b))?.body;
        let loads = metric(&m, "liquid_object_loads_total");
        if loads.unwrap_or(0.0) > 0.0 { Ok(()) } else { Err(format!("loads {loads:?}")) }
    });

    // A restart reads every document once and keeps only the cache's worth in memory.
    c.agents[a].kill9();
    c.agents[a].restart();
    c.agents[a].wait_ready();
    let (url_a, token_a) = c.agents[a].api();
    for k in (0..200).step_by(7) {
        let r = http_get(&url_a, &format!("/v1/objects/many/o{k:03}"), Some(&token_a)).unwrap();
        assert_eq!(r.code, 200, "{r:?}");
    }
    eventually("after the restart, the cache is bounded", Duration::from_secs(5), || {
        let m = http_get(&url_a, "/metrics", Some(&token_a))?.body;
        let docs = metric(&m, "liquid_object_cache_documents").unwrap_or(f64::MAX);
        let held = metric(&m, "liquid_objects_held").unwrap_or(0.0);
        if docs < 100.0 && held >= 200.0 { Ok(()) } else { Err(format!("{docs} in memory, {held} held")) }
    });
    eprintln!("done in {:?}", started.elapsed());
}
