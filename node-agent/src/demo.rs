//! `liquid demo`: a local continuum on loopback — one cloud node, a fog node and edge
//! devices — started as real agent processes, shown with `liquid nodes`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::api::{MemberJson, StatusJson};
use crate::client::{Target, nodes_table};

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
