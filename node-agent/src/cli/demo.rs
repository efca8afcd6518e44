//! `liquid demo`: a local continuum on loopback — one cloud node, a fog node and edge
//! devices — started as real agent processes, shown with `liquid nodes`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cli::client::{Client, Target, nodes_table};
use crate::views::{BlockedJson, MemberJson, ObjectJson, StatusJson};

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

/// The demo agents' config: the placement policy runs every 2 s, and a move is cheap on
/// loopback (modules are compiled in milliseconds), so the actor demo moves within seconds.
const DEMO_CONFIG: &str = "placement_every = 2.0\n[placement]\nactivation_ms = 5.0\nmargin = 0.2\n";

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
        // Readings live on two nodes: the cloud's always-on copy and one other.
        .args(["--replication", "readings=2"])
        .arg("--config")
        .arg(dir.parent().unwrap_or(dir).join("demo-agent.toml"))
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

/// Finds examples/functions/NAME (from the working directory or the binary's checkout).
/// Its module is committed next to it (scripts/build-guests.sh rebuilds it after an edit),
/// so the demo needs no guest toolchain.
fn example(name: &str) -> Result<PathBuf> {
    // The working directory or one above it (a subdirectory of the checkout), else the
    // checkout the binary was built in (target/{debug,release}/liquid).
    let cwd = std::env::current_dir()?;
    let mut roots: Vec<PathBuf> = cwd.ancestors().map(Path::to_path_buf).collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().nth(3).map(Path::to_path_buf));
    }
    let rel = format!("examples/functions/{name}");
    let root = roots
        .into_iter()
        .find(|r| r.join(&rel).join("liquid.toml").exists())
        .with_context(|| format!("{rel} not found: run the demo from the repository's checkout"))?;
    let dir = root.join(&rel);
    let wasm = dir.join(format!("{name}.wasm"));
    if !wasm.is_file() {
        bail!(
            "{} is missing: it is committed with the repository (`git checkout -- {rel}` restores it; \
             scripts/build-guests.sh rebuilds it from its source)",
            wasm.display()
        );
    }
    Ok(dir)
}

async fn functions_demo(clients: &[Client], names: &[String], dir: &Path) -> Result<()> {
    use base64::Engine as _;
    let (manifest, module) = crate::cli::fn_cmd::load_package(dir, None)?;
    let header = base64::engine::general_purpose::STANDARD.encode(toml::to_string(&manifest)?);
    let first = &clients[0];
    let resp = first
        .raw(reqwest::Method::PUT, "/v1/functions/counter")
        .header(crate::views::MANIFEST_HEADER, header)
        .body(module.clone())
        .send()
        .await
        .context("deploying counter")?;
    if !resp.status().is_success() {
        bail!("deploying counter failed: {}", resp.text().await.unwrap_or_default());
    }
    println!("Functions: deployed the `counter` example ({} bytes of Wasm) on {}.", module.len(), names[0]);
    let last = clients.len() - 1;
    let caller = &clients[last];
    let deadline = Instant::now() + Duration::from_secs(20);
    for round in 1..=2 {
        let out = loop {
            let resp = caller.raw(reqwest::Method::POST, "/v1/functions/counter/invoke").send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            if status.is_success() {
                break String::from_utf8_lossy(&body).into_owned();
            }
            // The registry reaches the caller within a moment of the deploy.
            if Instant::now() > deadline {
                bail!("invoking counter on {} failed: {}", names[last], String::from_utf8_lossy(&body));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let how = if round == 1 { "fetched the module by hash over QUIC, compiled it, ran it" } else { "warm" };
        println!("  invoked from {} ({how}): {out}", names[last]);
    }
    let f: crate::views::FunctionJson = caller.get("/v1/functions/counter").await?;
    println!(
        "  `liquid fn where counter`: module held by {} nodes; the counter lives in object demo/counter.
",
        f.holders.len()
    );
    Ok(())
}

/// A `readings/…` object replicated on node `owner` (and the cloud node), written through it.
async fn reading_on(c: &Client, owner: &str) -> Result<String> {
    for k in 0..64 {
        let name = format!("readings/r{k}");
        write(c, &name, serde_json::json!([{ "op": "set", "path": "value", "value": 20 + k }])).await?;
        let list: Vec<crate::views::ListedJson> = c.get("/v1/objects?prefix=readings/").await?;
        if list.iter().any(|l| l.object == name && l.replicas.iter().any(|r| r == owner)) {
            return Ok(name);
        }
    }
    bail!("no readings object among 64 landed on the edge node")
}

/// The actor part: `tally` deployed on the cloud node follows its callers and its data to
/// an edge node, by itself, with its memory; the reason is printed.
async fn actor_demo(clients: &[Client], names: &[String], ids: &[String], dir: &Path) -> Result<()> {
    use base64::Engine as _;
    let (manifest, module) = crate::cli::fn_cmd::load_package(dir, None)?;
    let header = base64::engine::general_purpose::STANDARD.encode(toml::to_string(&manifest)?);
    let resp = clients[0]
        .raw(reqwest::Method::PUT, "/v1/functions/tally")
        .header(crate::views::MANIFEST_HEADER, header)
        .body(module)
        .send()
        .await
        .context("deploying tally")?;
    if !resp.status().is_success() {
        bail!("deploying tally failed: {}", resp.text().await.unwrap_or_default());
    }
    let edge = clients.len() - 1;
    let data = reading_on(&clients[edge], &ids[edge]).await?;
    println!(
        "Liquid actors: deployed `tally` (an actor: its totals live in its own memory) on {}.\n  {} calls it about 30 times a second with {data}, which lives on {} (and in the cloud).",
        names[0], names[edge], names[edge]
    );
    let started = Instant::now();
    let mut last = String::new();
    let mut calls = 0u64;
    while started.elapsed() < Duration::from_secs(60) {
        let resp =
            clients[edge].raw(reqwest::Method::POST, "/v1/functions/tally/invoke").body(data.clone()).send().await?;
        let ok = resp.status().is_success();
        let body = String::from_utf8_lossy(&resp.bytes().await?).into_owned();
        if ok {
            last = body;
            calls += 1;
        }
        if calls.is_multiple_of(15) {
            let f: crate::views::FunctionJson = clients[edge].get("/v1/functions/tally").await?;
            if f.home.as_deref() == Some(ids[edge].as_str()) && f.activation_here.as_ref().is_some_and(|a| a.leased) {
                println!(
                    "  after {:.1} s it moved itself to {} (epoch {}), with its state: the last answer was {last}",
                    started.elapsed().as_secs_f64(),
                    names[edge],
                    f.epoch.unwrap_or(0)
                );
                println!("  why: {}", f.reason.unwrap_or_default());
                println!(
                    "  (`liquid fn where tally` shows this; `liquid fn migrate tally --to NODE` moves it by hand)\n"
                );
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let f: crate::views::FunctionJson = clients[0].get("/v1/functions/tally").await?;
    bail!(
        "it did not move within 60 s; the policy on its home says: {}",
        f.decision_here.map(|d| d.to_string()).unwrap_or_else(|| "nothing yet".into())
    )
}

/// Runs the demo: every part (mesh, objects through a partition, functions, actors) or an error.
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
    // The example functions the demo deploys (committed modules), found before any agent starts.
    let counter = example("counter")?;
    let tally = example("tally")?;
    let exe = std::env::current_exe().context("locating the liquid binary")?;
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let key = root.join("cluster.key");
    mesh::cluster::ClusterKey::generate().save(&key)?;
    std::fs::write(root.join("demo-agent.toml"), DEMO_CONFIG).context("writing the demo agents' config")?;
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
    let names: Vec<String> = list_names(&clients).await;
    // Every part runs: a failure ends the demo with an error.
    functions_demo(&clients, &names, &counter).await.context("the functions part of the demo failed")?;
    actor_demo(&clients, &names, &ids, &tally).await.context("the actor part of the demo failed")?;
    if args.keep {
        println!("The agents keep running. Try, in another terminal:");
        println!("  liquid nodes --data-dir {}", dir(1).display());
        println!("  liquid status --json --data-dir {}", dir(3).display());
        println!("  liquid fn invoke counter --input 10 --data-dir {}", dir(2).display());
        println!("  liquid fn where tally --data-dir {}", dir(1).display());
        println!("Press Ctrl-C to stop them.");
        let _ = tokio::signal::ctrl_c().await;
    } else {
        println!("Run `liquid demo --keep` to keep them running and try other commands.");
    }
    drop(agents);
    Ok(())
}

async fn list_names(clients: &[Client]) -> Vec<String> {
    let mut names = Vec::new();
    for c in clients {
        names.push(c.get::<StatusJson>("/v1/status").await.map(|s| s.name).unwrap_or_else(|_| "?".into()));
    }
    names
}
