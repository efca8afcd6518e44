//! `liquid demo`: a local continuum on loopback — one cloud node, a fog node and edge
//! devices — started as real agent processes, shown with `liquid nodes`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::api::{BlockedJson, MemberJson, ObjectJson, StatusJson};
use crate::client::{Client, Target, nodes_table};

/// `liquid demo` flags.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How many agents to start (at least 2).
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Keep the agents running until Ctrl-C, so you can try other commands against them.
    #[arg(long)]
    keep: bool,
    /// Where to put the agents' data dirs (default: a temporary directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn spawn(
    exe: &Path,
    dir: &Path,
    key: &Path,
    name: &str,
    tier: &str,
    site: &str,
    bootstrap: Option<&str>,
) -> Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.arg("agent")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0", "--no-mdns"])
        .arg("--cluster-key")
        .arg(key)
        .args(["--name", name, "--tier", tier, "--label", &format!("site={site}")])
        // For the demo's partition (fault injection is only served in dev mode).
        .arg("--dev")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    cmd.spawn().with_context(|| format!("starting agent {name}"))
}

async fn wait_for_status(t: &Target, deadline: Instant) -> Result<StatusJson> {
    loop {
        if let Ok(c) = t.connect()
            && let Ok(s) = c.get::<StatusJson>("/v1/status").await
        {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("an agent did not start within the time limit");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn write(c: &Client, object: &str, ops: serde_json::Value) -> Result<ObjectJson> {
    c.send(reqwest::Method::POST, &format!("/v1/objects/{object}"), serde_json::to_vec(&ops)?, "application/json").await
}

async fn block(c: &Client, peers: &[String]) -> Result<()> {
    let body = serde_json::to_vec(&BlockedJson { peers: peers.to_vec() })?;
    let _: BlockedJson = c.send(reqwest::Method::PUT, "/v1/debug/blocked", body, "application/json").await?;
    Ok(())
}

/// Waits until every agent reads `object` at the same heads; returns that value.
async fn converged(clients: &[Client], object: &str, within: Duration) -> Result<ObjectJson> {
    let deadline = Instant::now() + within;
    loop {
        let mut reads = Vec::new();
        for c in clients {
            reads.push(c.get::<ObjectJson>(&format!("/v1/objects/{object}")).await.ok());
        }
        if let Some(Some(first)) = reads.first()
            && reads.iter().all(|r| r.as_ref().is_some_and(|r| r.heads == first.heads))
        {
            return Ok(first.clone());
        }
        if Instant::now() > deadline {
            bail!("{object} did not converge on every agent within {} s", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Cuts the mesh in two, writes the same object on both sides, heals, and shows it converge.
async fn partition_demo(clients: &[Client], ids: &[String]) -> Result<()> {
    let object = "demo/visits";
    let half = clients.len().div_ceil(2);
    let (left, right) = (0..half, half..clients.len());
    write(&clients[0], object, serde_json::json!([{"op": "inc", "path": "visits", "by": 0}])).await?;
    converged(clients, object, Duration::from_secs(20)).await?;
    println!("Objects: demo/visits, a replicated automerge document, is on every agent.");
    println!("Cutting the mesh in two: agents 1-{half} | agents {}-{}.", half + 1, clients.len());
    for (i, c) in clients.iter().enumerate() {
        let others: Vec<String> =
            if left.contains(&i) { ids[right.clone()].to_vec() } else { ids[left.clone()].to_vec() };
        block(c, &others).await?;
    }
    let side = |by: i64, key: &str| {
        serde_json::json!([
            {"op": "inc", "path": "visits", "by": by},
            {"op": "set", "path": key, "value": "written while cut off"}
        ])
    };
    let a = write(&clients[0], object, side(2, "left_side")).await?;
    let b = write(&clients[half], object, side(3, "right_side")).await?;
    println!("  left side  (agent 1) acknowledged: {}", a.value);
    println!("  right side (agent {}) acknowledged: {}", half + 1, b.value);
    let started = Instant::now();
    for c in clients {
        block(c, &[]).await?;
    }
    let v = converged(clients, object, Duration::from_secs(30)).await?;
    println!(
        "Healed: every agent converged in {:.1} s to {} (both sides' increments count).\n",
        started.elapsed().as_secs_f64(),
        v.value
    );
    Ok(())
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<()> {
    if args.nodes < 2 {
        bail!("--nodes must be at least 2");
    }
    let tmp;
    let root = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::TempDir::with_prefix("liquid-demo-")?;
            tmp.path().to_path_buf()
        }
    };
    let exe = std::env::current_exe().context("locating the liquid binary")?;
    let key = root.join("cluster.key");
    mesh::cluster::ClusterKey::generate().save(&key)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(100));
    bar.set_message("starting the cloud node");

    let mut agents = Agents(Vec::new());
    let dir = |k: usize| root.join(format!("node-{k}"));
    agents.0.push(spawn(&exe, &dir(1), &key, "cloud-1", "cloud", "region-1", None)?);
    let first = Target { data_dir: Some(dir(1)), ..Default::default() };
    let status = wait_for_status(&first, deadline).await?;
    let boot = status.listen_addrs.first().context("the first agent listens nowhere")?.clone();
    for k in 2..=args.nodes {
        let (name, tier, site) = if k == 2 {
            ("fog-1".to_string(), "fog", "metro-1".to_string())
        } else {
            (format!("edge-{}", k - 2), "edge", format!("site-{}", (k - 1) / 2))
        };
        bar.set_message(format!("starting {name}"));
        agents.0.push(spawn(&exe, &dir(k), &key, &name, tier, &site, Some(&boot))?);
    }
    bar.set_message(format!("waiting for {} agents to see each other", args.nodes));
    let client = first.connect()?;
    let list = loop {
        let list: Vec<MemberJson> = client.get("/v1/nodes").await.unwrap_or_default();
        let alive = list.iter().filter(|m| m.status == "alive").count();
        let measured = list.iter().filter(|m| m.is_self || m.rtt_ms.is_some()).count();
        if alive == args.nodes && measured == args.nodes {
            break list;
        }
        if Instant::now() > deadline {
            bar.finish_and_clear();
            println!("{}", nodes_table(&list));
            bail!("the mesh did not form within 30 s ({alive} of {} alive)", args.nodes);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish_and_clear();
    println!("A local continuum of {} agents formed a mesh over QUIC. `liquid nodes` on cloud-1 shows:\n", args.nodes);
    println!("{}\n", nodes_table(&list));
    let targets: Vec<Target> =
        (1..=args.nodes).map(|k| Target { data_dir: Some(dir(k)), ..Default::default() }).collect();
    let clients = targets.iter().map(Target::connect).collect::<Result<Vec<_>>>()?;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for c in &clients {
            ids.push(c.get::<StatusJson>("/v1/status").await?.id);
        }
        ids
    };
    partition_demo(&clients, &ids).await?;
    if args.keep {
        println!("The agents keep running. Try, in another terminal:");
        println!("  liquid nodes --data-dir {}", dir(1).display());
        println!("  liquid status --json --data-dir {}", dir(3).display());
        println!("Press Ctrl-C to stop them.");
        let _ = tokio::signal::ctrl_c().await;
    } else {
        println!("Run `liquid demo --keep` to keep them running and try other commands.");
    }
    drop(agents);
    Ok(())
}
