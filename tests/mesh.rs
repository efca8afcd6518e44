#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of the mesh: real `liquid agent` processes on loopback, driven and observed
//! only through the command line (`liquid nodes/status --json`), the HTTP API, signals and the
//! files in their data dirs.
//!
//! Every test runs in its own temporary directory with ports chosen by the OS, so the tests run
//! in parallel; every wait is a poll with a deadline; every agent is SIGKILLed when its test
//! ends, however it ends, and a failing test prints the tail of each agent's log.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use support::{Cluster, describe, entry, eventually, http_get, mode, run_liquid, str_of};

/// How long a fresh mesh of a few agents may take to see itself whole (every member alive).
/// Joining takes one round trip to the bootstrap node and gossip spreads within a few probe
/// periods (1 s each), so this is a generous bound.
const FORM_WITHIN: Duration = Duration::from_secs(20);
/// How long until every agent has measured the round-trip time to every other one. Each agent
/// probes one random member per second, so measuring all of them is a coupon collector's wait:
/// about 6 s on average for 3 peers, with a tail this bound makes negligible.
const RTT_WITHIN: Duration = Duration::from_secs(30);

/// Starts agents on loopback QUIC, the first one alone and every other one bootstrapped to the
/// first one's listen address only. Returns the agents' indices and ids.
fn start_quic_mesh(c: &mut Cluster, key: &Path, members: &[(&str, &str)]) -> (Vec<usize>, Vec<String>) {
    let (name, tier) = members[0];
    let first = c.quic_agent(name, tier, key, None);
    let status = c.agents[first].wait_ready();
    let boot = status["listen_addrs"][0].as_str().expect("the first agent has a listen address").to_string();
    let mut idx = vec![first];
    for &(name, tier) in &members[1..] {
        idx.push(c.quic_agent(name, tier, key, Some(&boot)));
    }
    let ids = idx.iter().map(|&i| str_of(&c.agents[i].wait_ready(), "id").to_string()).collect();
    (idx, ids)
}

/// `Ok` when `agent`'s `liquid nodes` lists exactly `ids`, each alive (and, if `rtt`, each with a
/// measured round-trip time).
fn sees_all_alive(c: &Cluster, agent: usize, ids: &[String], rtt: bool) -> Result<Vec<Value>, String> {
    let a = &c.agents[agent];
    let list = a.nodes()?;
    let listed: BTreeSet<&str> = list.iter().filter_map(|m| m["id"].as_str()).collect();
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let whole = listed == wanted
        && list.len() == ids.len()
        && list.iter().all(|m| m["status"] == "alive" && (!rtt || m["rtt_ms"].is_number()));
    if whole { Ok(list) } else { Err(format!("{} sees [{}]", a.name, describe(&list))) }
}

/// Waits until every agent of `agents` sees exactly `ids`, all alive.
fn wait_all_alive(c: &Cluster, agents: &[usize], ids: &[String], within: Duration) -> Vec<Vec<Value>> {
    eventually("every agent sees every member alive", within, || {
        agents.iter().map(|&a| sees_all_alive(c, a, ids, false)).collect::<Result<Vec<_>, _>>()
    })
}

/// The status of `id` in the view of each agent of `agents`, as `(status, left)`.
fn statuses_of(c: &Cluster, agents: &[usize], id: &str) -> Result<Vec<(String, bool)>, String> {
    agents
        .iter()
        .map(|&a| {
            let list = c.agents[a].nodes()?;
            let m = entry(&list, id).ok_or_else(|| format!("{} does not list {id}", c.agents[a].name))?;
            Ok((str_of(m, "status").to_string(), m["left"].as_bool().unwrap_or(false)))
        })
        .collect()
}

#[test]
fn four_agents_form_a_mesh_through_one_bootstrap_node() {
    let mut c = Cluster::new("form");
    let key = c.cluster_key("cluster.key");
    let members = [("agent-1", "cloud"), ("agent-2", "fog"), ("agent-3", "edge"), ("agent-4", "edge")];
    let (idx, ids) = start_quic_mesh(&mut c, &key, &members);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 4, "every agent has its own id: {ids:?}");
    wait_all_alive(&c, &idx, &ids, FORM_WITHIN);
    let views = eventually("every agent measured every RTT", RTT_WITHIN, || {
        idx.iter().map(|&a| sees_all_alive(&c, a, &ids, true)).collect::<Result<Vec<_>, _>>()
    });

    for (k, list) in views.iter().enumerate() {
        let me = &ids[k];
        for (j, (name, tier)) in members.iter().enumerate() {
            let m = entry(list, &ids[j]).unwrap();
            assert_eq!(str_of(m, "name"), *name, "{m}");
            assert_eq!(str_of(m, "tier"), *tier, "{m}");
            assert_eq!(str_of(m, "status"), "alive", "{m}");
            assert_eq!(m["left"], false, "{m}");
            assert_eq!(m["is_self"], j == k, "only the answering agent is is_self: {m}");
            let rtt = m["rtt_ms"].as_f64().unwrap_or_else(|| panic!("rtt_ms is not a number: {m}"));
            assert!((0.0..1000.0).contains(&rtt), "loopback rtt_ms {rtt} in {m}");
            if j != k {
                assert!(rtt > 0.0, "a peer's rtt is measured, not zero: {m}");
            }
            let addrs = m["addrs"].as_array().unwrap_or_else(|| panic!("addrs is not a list: {m}"));
            assert!(!addrs.is_empty(), "{m}");
            for a in addrs {
                let a = a.as_str().unwrap();
                assert!(
                    a.starts_with("/ip4/127.0.0.1/udp/") && a.ends_with(&format!("/quic-v1/p2p/{}", ids[j])),
                    "{a}"
                );
            }
        }

        let s = c.agents[idx[k]].status().unwrap();
        assert_eq!(str_of(&s, "id"), me);
        assert!(me.starts_with("12D3KooW"), "an Ed25519 peer id: {me}");
        assert_eq!(str_of(&s, "name"), members[k].0);
        assert_eq!(str_of(&s, "tier"), members[k].1);
        let listen = s["listen_addrs"].as_array().unwrap();
        assert!(!listen.is_empty(), "{s}");
        for a in listen {
            assert!(a.as_str().unwrap().ends_with(&format!("/p2p/{me}")), "listen address {a} of {me}");
        }
        let uptime = s["uptime_s"].as_f64().unwrap();
        assert!(uptime > 0.0 && uptime < 120.0, "uptime_s {uptime}");
        let peers = &s["peers"];
        assert_eq!(
            (&peers["alive"], &peers["suspect"], &peers["down"], &peers["total"]),
            (&Value::from(3), &Value::from(0), &Value::from(0), &Value::from(3)),
            "{s}"
        );
    }
}

#[test]
fn a_killed_agent_is_detected_and_rejoins_with_the_same_id() {
    let mut c = Cluster::new("crash");
    let key = c.cluster_key("cluster.key");
    let members = [("agent-1", "cloud"), ("agent-2", "fog"), ("agent-3", "edge"), ("agent-4", "edge")];
    let (idx, ids) = start_quic_mesh(&mut c, &key, &members);
    wait_all_alive(&c, &idx, &ids, FORM_WITHIN);

    let (victim, victim_id) = (idx[2], ids[2].clone());
    let others = [idx[0], idx[1], idx[3]];
    c.agents[victim].kill9();
    let killed = Instant::now();
    let noticed = eventually("every other agent suspects the killed one", Duration::from_secs(15), || {
        let seen = statuses_of(&c, &others, &victim_id)?;
        if seen.iter().all(|(s, _)| s == "suspect" || s == "down") { Ok(seen) } else { Err(format!("{seen:?}")) }
    });
    let suspected_after = killed.elapsed();
    let down = eventually("every other agent declares the killed one down", Duration::from_secs(30), || {
        let seen = statuses_of(&c, &others, &victim_id)?;
        if seen.iter().all(|(s, _)| s == "down") { Ok(seen) } else { Err(format!("{seen:?}")) }
    });
    let down_after = killed.elapsed();
    assert!(down.iter().all(|(_, left)| !left), "a crashed agent did not leave on purpose: {down:?}");
    eprintln!("killed agent suspected after {suspected_after:?} ({noticed:?}), down after {down_after:?}");
    assert!(down_after < Duration::from_secs(30));

    // Restart it at once, as a supervisor would: the survivors may still hold their (now dead)
    // connections to its previous life.
    c.agents[victim].restart();
    let s = c.agents[victim].wait_ready();
    assert_eq!(str_of(&s, "id"), victim_id, "same data dir, same id");
    assert!(s["incarnation"].as_u64().unwrap() >= 1, "a restart continues above the last incarnation: {s}");
    let restarted = Instant::now();
    wait_all_alive(&c, &idx, &ids, Duration::from_secs(30));
    eprintln!("restarted agent alive in every view after {:?}", restarted.elapsed());
}

#[test]
fn an_agent_with_another_cluster_key_is_never_admitted() {
    let mut c = Cluster::new("intruder");
    let key = c.cluster_key("cluster.key");
    let other_key = c.cluster_key("other.key");
    let (idx, ids) = start_quic_mesh(&mut c, &key, &[("agent-1", "cloud"), ("agent-2", "edge")]);
    wait_all_alive(&c, &idx, &ids, FORM_WITHIN);
    let boot = c.agents[idx[0]].status().unwrap()["listen_addrs"][0].as_str().unwrap().to_string();
    let x = c.quic_agent("intruder", "edge", &other_key, Some(&boot));
    let x_id = str_of(&c.agents[x].wait_ready(), "id").to_string();

    let (url, token) = c.agents[idx[0]].api();
    let failures = || -> Result<f64, String> {
        let m = http_get(&url, "/metrics", Some(&token))?;
        m.body
            .lines()
            .find_map(|l| l.strip_prefix("liquid_mesh_auth_failures_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("no liquid_mesh_auth_failures_total in /metrics ({}): {}", m.code, m.body))
    };
    eventually("agent-1 counts the intruder's failed proof", Duration::from_secs(15), || match failures()? {
        n if n > 0.0 => Ok(n),
        n => Err(format!("liquid_mesh_auth_failures_total = {n}")),
    });

    // Watch for a while: neither side may ever list the other.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        for &a in &idx {
            let list = c.agents[a].nodes().unwrap();
            assert!(entry(&list, &x_id).is_none(), "{} lists the intruder: [{}]", c.agents[a].name, describe(&list));
            assert_eq!(list.len(), 2, "{}: [{}]", c.agents[a].name, describe(&list));
        }
        let own = c.agents[x].nodes().unwrap();
        assert!(
            own.len() == 1 && own[0]["id"] == x_id.as_str() && own[0]["is_self"] == true,
            "the intruder learnt something: [{}]",
            describe(&own)
        );
        let s = c.agents[x].status().unwrap();
        assert_eq!(s["peers"]["total"], 0, "{s}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The members still see each other.
    wait_all_alive(&c, &idx, &ids, Duration::from_secs(5));
    assert!(failures().unwrap() > 0.0);
}

#[test]
fn the_api_requires_the_token() {
    let mut c = Cluster::new("token");
    let key = c.cluster_key("cluster.key");
    let a = c.quic_agent("agent-1", "edge", &key, None);
    let id = str_of(&c.agents[a].wait_ready(), "id").to_string();
    let (url, token) = c.agents[a].api();
    assert!(token.len() >= 32, "a long token: {token:?}");
    assert_eq!(mode(&c.agents[a].dir.join("api.token")), 0o600);

    for path in ["/v1/status", "/v1/nodes", "/metrics"] {
        let none = http_get(&url, path, None).unwrap();
        assert_eq!(none.code, 401, "{path} without a token: {none:?}");
        assert!(none.body.contains("\"error\""), "{path}: a JSON error: {none:?}");
        let wrong = http_get(&url, path, Some("0123456789abcdef0123456789abcdef0123456789abcdef")).unwrap();
        assert_eq!(wrong.code, 401, "{path} with a wrong token: {wrong:?}");
        let almost = http_get(&url, path, Some(&token[..token.len() - 1])).unwrap();
        assert_eq!(almost.code, 401, "{path} with a truncated token: {almost:?}");
        let right = http_get(&url, path, Some(&token)).unwrap();
        assert_eq!(right.code, 200, "{path} with the token: {right:?}");
    }
    assert!(http_get(&url, "/v1/status", Some(&token)).unwrap().body.contains(&id));

    let out = run_liquid(&["nodes", "--api", &url, "--token", "WRONG"]);
    assert!(!out.status.success(), "a wrong token must fail: {out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");
    assert!(out.stderr.contains("401") && out.stderr.contains("token"), "a clear message: {out:?}");
    let out = run_liquid(&["nodes", "--api", &url]);
    assert!(!out.status.success() && out.stderr.contains("--token"), "--api without --token: {out:?}");
    let out = run_liquid(&["nodes", "--json", "--api", &url, "--token", &token]);
    assert!(out.status.success(), "the right token: {out:?}");
    let list: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert!(list.len() == 1 && list[0]["id"] == id.as_str(), "{}", out.stdout);
}

#[test]
fn agents_listening_only_on_tcp_form_a_mesh() {
    let mut c = Cluster::new("tcp");
    let key = c.cluster_key("cluster.key");
    let key = key.to_str().unwrap();
    let tcp = ["--listen", "/ip4/127.0.0.1/tcp/0", "--cluster-key", key];
    let a = c.spawn("tcp-1", &[&tcp[..], &["--name", "tcp-1"]].concat(), &[]);
    let s = c.agents[a].wait_ready();
    let listen: Vec<&str> = s["listen_addrs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(
        !listen.is_empty() && listen.iter().all(|l| l.starts_with("/ip4/127.0.0.1/tcp/") && !l.contains("/udp/")),
        "TCP only: {listen:?}"
    );
    let b = c.spawn("tcp-2", &[&tcp[..], &["--name", "tcp-2", "--bootstrap", listen[0]]].concat(), &[]);
    let ids = vec![str_of(&s, "id").to_string(), str_of(&c.agents[b].wait_ready(), "id").to_string()];
    let views = wait_all_alive(&c, &[a, b], &ids, FORM_WITHIN);
    for list in views {
        for m in list {
            for addr in m["addrs"].as_array().unwrap() {
                assert!(addr.as_str().unwrap().contains("/tcp/"), "{m}");
            }
        }
    }
}

#[test]
fn sigterm_leaves_gracefully() {
    let mut c = Cluster::new("leave");
    let key = c.cluster_key("cluster.key");
    let members = [("agent-1", "cloud"), ("agent-2", "edge"), ("agent-3", "edge")];
    let (idx, ids) = start_quic_mesh(&mut c, &key, &members);
    wait_all_alive(&c, &idx, &ids, FORM_WITHIN);

    let (leaver, leaver_id) = (idx[1], ids[1].clone());
    let others = [idx[0], idx[2]];
    c.agents[leaver].signal(Signal::SIGTERM);
    let sent = Instant::now();
    // Without the farewell, the others would need a failed probe (≥ 0.5 s) and then the whole
    // suspicion timeout (4 s here) to declare it down — and then without `left`.
    let seen = eventually("the others see the agent as left", Duration::from_secs(3), || {
        let seen = statuses_of(&c, &others, &leaver_id)?;
        if seen.iter().all(|(s, left)| s == "down" && *left) { Ok(seen) } else { Err(format!("{seen:?}")) }
    });
    let after = sent.elapsed();
    eprintln!("the leaver was seen as left after {after:?}: {seen:?}");
    let status = c.agents[leaver].wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "a SIGTERMed agent exits 0: {status}");
    // The two remaining agents still see each other alive.
    for &a in &others {
        let list = c.agents[a].nodes().unwrap();
        for id in [&ids[0], &ids[2]] {
            assert_eq!(entry(&list, id).map(|m| str_of(m, "status")), Some("alive"), "[{}]", describe(&list));
        }
    }
}

#[test]
fn bad_input_is_refused_with_clear_messages() {
    let mut c = Cluster::new("input");
    let loopback = ["--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--no-mdns"];
    let dir = |name: &str| c.path().join(name).to_str().unwrap().to_string();

    // No cluster key, no --dev.
    let nokey = dir("nokey");
    let out = run_liquid(&[&["agent", "--data-dir", &nokey][..], &loopback].concat());
    assert!(!out.status.success(), "an agent without a cluster key must not start: {out:?}");
    assert!(out.stderr.contains("liquid cluster init"), "the message points at `liquid cluster init`: {out:?}");
    assert!(!Path::new(&nokey).join("api.addr").exists(), "it never served its API");

    // A config file with an unknown key.
    let config = c.path().join("agent.toml");
    std::fs::write(&config, "name = \"typo-test\"\ntier = \"fog\"\nnmae = \"oops\"\n").unwrap();
    let out = run_liquid(
        &[&["agent", "--dev", "--data-dir", &dir("badconfig"), "--config", config.to_str().unwrap()][..], &loopback]
            .concat(),
    );
    assert!(!out.status.success(), "an unknown config key must be refused: {out:?}");
    assert!(out.stderr.contains("nmae") && out.stderr.contains("line 3"), "names the key and the line: {out:?}");

    // `cluster init` refuses to overwrite without --force.
    let key = c.path().join("cluster.key");
    let key_s = key.to_str().unwrap();
    let out = run_liquid(&["cluster", "init", "--out", key_s]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&key), 0o600);
    let first = std::fs::read_to_string(&key).unwrap();
    let out = run_liquid(&["cluster", "init", "--out", key_s]);
    assert!(!out.status.success(), "a second init must fail without --force: {out:?}");
    assert!(out.stderr.contains("already exists") && out.stderr.contains("--force"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), first, "the existing key is untouched");
    let out = run_liquid(&["cluster", "init", "--out", key_s, "--force"]);
    assert!(out.status.success(), "{out:?}");
    assert_ne!(std::fs::read_to_string(&key).unwrap(), first, "--force writes a new key");
    assert_eq!(mode(&key), 0o600);

    // --dev creates a private cluster key in the data dir, and the agent starts.
    let a = c.spawn("dev", &["--dev", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--name", "dev-node"], &[]);
    let s = c.agents[a].wait_ready();
    assert_eq!(str_of(&s, "name"), "dev-node");
    let data = c.agents[a].dir.clone();
    let dev_key = std::fs::read_to_string(data.join("cluster.key")).unwrap();
    assert!(dev_key.starts_with("liquid-cluster-key-v1:"), "{dev_key:?}");
    for f in ["cluster.key", "api.token", "identity.key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f} is private");
    }
    // The key is kept across restarts.
    c.agents[a].signal(Signal::SIGTERM);
    assert_eq!(c.agents[a].wait_exit(Duration::from_secs(10)).code(), Some(0));
    c.agents[a].restart();
    let again = c.agents[a].wait_ready();
    assert_eq!(again["id"], s["id"]);
    assert_eq!(std::fs::read_to_string(data.join("cluster.key")).unwrap(), dev_key);
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let mut c = Cluster::new("precedence");
    let key = c.cluster_key("cluster.key");
    let config = c.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"from-file\"\ntier = \"fog\"\nmdns = false\nlisten = [\"/ip4/127.0.0.1/udp/0/quic-v1\"]\n\
             cluster_key = {:?}\n",
            key.to_str().unwrap()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let file = c.spawn("file", &["--config", config], &[]);
    let env = c.spawn("env", &["--config", config], &[("LIQUID_NAME", "from-env")]);
    let flag = c.spawn("flag", &["--config", config, "--name", "from-flag"], &[("LIQUID_NAME", "from-env")]);
    for (a, want) in [(file, "from-file"), (env, "from-env"), (flag, "from-flag")] {
        let s = c.agents[a].wait_ready();
        assert_eq!(str_of(&s, "name"), want, "{s}");
        assert_eq!(str_of(&s, "tier"), "fog", "the file's other settings still apply: {s}");
    }
}
