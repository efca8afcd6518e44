//! Failover benchmark (issue 18): how long an actor is unavailable after kill -9 of its home,
//! and how many answered calls a standby's takeover loses, against the lease duration plus
//! 1 s (the bound: a standby may take over only once the dead home's lease ran out).
//!
//! Run with `cargo bench -p node-agent --bench failover`. Cargo builds the `liquid` binary
//! (bench profile) first and hands its path to this binary (`CARGO_BIN_EXE_liquid`).
//!
//! Four real agents in a QUIC mesh on loopback (`--placement-every 0`: the policy never moves
//! the actor by itself). `wasm-host/tests/guests/ballast.wat` is deployed as an actor with
//! the default `group` durability and called once with `LIQUID_BENCH_FO_MIB` (default 1): it
//! fills that many MiB of its memory, so a takeover restores a real checkpoint. Then
//! `LIQUID_BENCH_FO_ROUNDS` (default 3) rounds, each:
//!
//! 1. a client thread invokes the actor in a tight loop through an agent that is not its
//!    home, for 1 s;
//! 2. the home is killed with SIGKILL. **Failover time**: from the kill to the completion of
//!    the first successful call after it;
//! 3. **lost**: every answer is the actor's call count, so an answered call lost by the
//!    takeover shows as a count at or below one answered before the kill (a failed call may
//!    have run, so a skip is counted, not lost);
//! 4. the killed agent restarts on its data dir (bootstrapping from a live agent) and rejoins
//!    as a standby before the next round.

// A bench binary, not library code: it reads the clock, spawns processes and threads, and has
// no public API to document.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use support::{Agent, client, env_usize, invoke_count, liquid_cmd, load_average};

const BALLAST: &str = include_str!("../../wasm-host/tests/guests/ballast.wat");
const NAMES: [&str; 4] = ["fo-a", "fo-b", "fo-c", "fo-d"];
/// The lease a takeover waits out (`LeaseConfig::default().duration`).
const LEASE: Duration = Duration::from_secs(6);

#[derive(Default)]
struct Seen {
    ok: Vec<(Instant, u64)>,
    errors: usize,
}

fn spawn_client(url: String, token: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Result<Seen>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let http = client(Duration::from_secs(30))?;
            let mut seen = Seen::default();
            while !stop.load(Ordering::Relaxed) {
                match invoke_count(&http, &url, &token, b"").await {
                    Ok(n) => seen.ok.push((Instant::now(), n)),
                    Err(_) => {
                        seen.errors += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            Ok(seen)
        })
    })
}

struct Round {
    from: String,
    to: String,
    failover: Duration,
    before: usize,
    after: usize,
    lost: u64,
    skipped: u64,
    errors: usize,
}

async fn home_of(a: &Agent, http: &reqwest::Client) -> Result<(String, u64)> {
    let v = a.get(http, "/v1/functions/fo").await?;
    Ok((v["home"].as_str().unwrap_or_default().to_string(), v["epoch"].as_u64().unwrap_or(0)))
}

async fn run(root: &std::path::Path, rounds: usize, mib: usize) -> Result<Vec<Round>> {
    let http = client(Duration::from_secs(30))?;
    let key = root.join("cluster.key");
    let out = liquid_cmd()?.args(["cluster", "init", "--out"]).arg(&key).output()?;
    ensure!(out.status.success(), "liquid cluster init: {}", String::from_utf8_lossy(&out.stderr));
    let key = key.to_str().context("utf-8 path")?.to_string();
    let common = ["--cluster-key", key.as_str(), "--placement-every", "0"];
    let mut agents: Vec<Agent> = Vec::new();
    let mut boot = String::new();
    for (i, name) in NAMES.iter().enumerate() {
        let mut args: Vec<&str> = common.to_vec();
        if i > 0 {
            args.extend(["--bootstrap", boot.as_str()]);
        }
        let mut a = Agent::start(root, name, &args)?;
        let st = a.ready(&http).await?;
        if i == 0 {
            boot = st["listen_addrs"][0].as_str().context("no listen address")?.to_string();
        }
        agents.push(a);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for a in &agents {
        loop {
            let alive = a.get(&http, "/v1/status").await?["peers"]["alive"].as_u64().unwrap_or(0);
            if alive as usize >= NAMES.len() - 1 {
                break;
            }
            ensure!(Instant::now() < deadline, "{} sees {alive} peers alive after 30 s", a.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let fuel = 15 * (mib as u64 + 1) * (1 << 17) * 4;
    let manifest = format!(
        "name = \"fo\"\nkind = \"actor\"\n\n[limits]\nmemory_mib = {}\nfuel = {fuel}\nwall_ms = 5000\n",
        mib + 2
    );
    agents[0].deploy(&http, "fo", &wat::parse_str(BALLAST)?, Some(&manifest)).await?;
    let first = Instant::now();
    loop {
        match invoke_count(&http, &agents[0].invoke_url("fo"), &agents[0].token, mib.to_string().as_bytes()).await {
            Ok(_) => break,
            Err(e) if first.elapsed() > Duration::from_secs(30) => bail!("the actor never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut last: Option<u64> = None;
    let mut out = Vec::new();
    for round in 0..rounds {
        let (home_id, _) = home_of(&agents[0], &http).await?;
        let home = agents.iter().position(|a| a.id == home_id).context("the home is not one of the agents")?;
        let caller = (home + 1) % agents.len();
        let stop = Arc::new(AtomicBool::new(false));
        let url = agents[caller].invoke_url("fo");
        let client = spawn_client(url, agents[caller].token.clone(), stop.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        agents[home].child.kill().context("killing the home")?;
        let killed = Instant::now();
        let _ = agents[home].child.wait();
        // Wait for the client to see a success after the kill.
        let watch_until = killed + LEASE * 10;
        let mut seen_after = false;
        while Instant::now() < watch_until && !seen_after {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // The client reports only when stopped: probe through the caller instead.
            seen_after =
                invoke_count(&http, &agents[caller].invoke_url("fo"), &agents[caller].token, b"").await.is_ok();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let seen = client.join().map_err(|_| anyhow::anyhow!("the client thread panicked"))??;
        ensure!(seen_after, "round {round}: no call succeeded within {:?} of the kill", LEASE * 10);
        let before: Vec<u64> = seen.ok.iter().filter(|(t, _)| *t < killed).map(|(_, n)| *n).collect();
        let after: Vec<(Instant, u64)> = seen.ok.iter().filter(|(t, _)| *t >= killed).copied().collect();
        let first_after = after.first().context("the client saw no success after the kill")?;
        let last_before = before.last().copied().or(last).unwrap_or(0);
        // Counts after the kill must go on from the last answered one (the probes above
        // count too, so only a count at or below it is a loss).
        let lost = last_before.saturating_sub(first_after.1.saturating_sub(1));
        let skipped = first_after.1.saturating_sub(last_before + 1);
        last = after.last().map(|(_, n)| *n);
        let (new_home, _) = home_of(&agents[caller], &http).await?;
        let to = agents.iter().find(|a| a.id == new_home).map_or(new_home.clone(), |a| a.name.clone());
        out.push(Round {
            from: agents[home].name.clone(),
            to,
            failover: first_after.0.duration_since(killed),
            before: before.len(),
            after: after.len(),
            lost,
            skipped,
            errors: seen.errors,
        });
        // The killed agent comes back (bootstrapping from the caller) and rejoins the group.
        let st = agents[caller].get(&http, "/v1/status").await?;
        let via = st["listen_addrs"][0].as_str().context("no listen address")?.to_string();
        let name = agents[home].name.clone();
        let mut args: Vec<&str> = common.to_vec();
        args.extend(["--bootstrap", via.as_str()]);
        // The dead agent's API address file names its old port: the new one writes its own.
        let _ = std::fs::remove_file(agents[home].dir.join("api.addr"));
        let mut back = Agent::start(root, &name, &args)?;
        back.ready(&http).await?;
        agents[home] = back;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Ok(out)
}

fn main() -> Result<()> {
    let rounds = env_usize("LIQUID_BENCH_FO_ROUNDS", 3)?.max(1);
    let mib = env_usize("LIQUID_BENCH_FO_MIB", 1)?.clamp(1, 256);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("failover benchmark: {cores} cores, load average at start {}", load_average());
    let root = tempfile::Builder::new().prefix("liquid-bench-fo-").tempdir()?;
    let io = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let results = io.block_on(run(root.path(), rounds, mib))?;
    println!(
        "\n== kill -9 of an actor's home ({mib} MiB of state, group durability, 4 agents on loopback, {rounds} rounds) =="
    );
    println!(
        "| round | killed home | new home | kill → first answer | bound: lease + 1 s | answered before / after | lost | skipped | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let bound = LEASE + Duration::from_secs(1);
    for (i, r) in results.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:.0} ms | {:.0} ms ({:.2}×) | {} / {} | {} | {} | {} |",
            i + 1,
            r.from,
            r.to,
            r.failover.as_secs_f64() * 1e3,
            bound.as_secs_f64() * 1e3,
            r.failover.as_secs_f64() / bound.as_secs_f64(),
            r.before,
            r.after,
            r.lost,
            r.skipped,
            r.errors
        );
    }
    let lost: u64 = results.iter().map(|r| r.lost).sum();
    println!("answered calls lost in all: {lost} (must be 0 with group durability)");
    println!("load average at end {}", load_average());
    ensure!(lost == 0, "{lost} answered calls were lost");
    Ok(())
}
