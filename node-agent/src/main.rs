//! `liquid`: the Liquid agent and its command-line tool.

mod cli;
mod daemon;
mod signing;
mod tls;
mod views;

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use cli::{client, demo, fn_cmd, obj_cmd, sim_cmd};
use daemon::{agent, config};

/// Liquid: an edge-cloud continuum runtime. Agents on edge boards and cloud VMs form one mesh
/// over QUIC; `liquid` starts an agent and talks to it.
///
/// Quick start: `liquid demo` runs a few agents on this machine and shows their mesh.
#[derive(Parser, Debug)]
#[command(name = "liquid", version, propagate_version = true, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log format of `liquid agent`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LIQUID_LOG_FORMAT")]
    log_format: LogFormat,
}

const AFTER_HELP: &str = "\
Examples:
  liquid cluster init --out cluster.key          create a cluster secret (copy it to every node)
  liquid agent --cluster-key cluster.key         start an agent (API on 127.0.0.1:7070, mesh on port 7400)
  liquid agent --cluster-key cluster.key --bootstrap /ip4/10.0.0.5/udp/7400/quic-v1/p2p/12D3Koo...
  liquid nodes                                    list the mesh's members as this agent sees them
  liquid status --json                            this agent's id, addresses and peer counts
  liquid obj set app/cfg limits.max 10            write into an object (any node; it replicates)
  liquid obj inc app/stats visits                 increment a counter (concurrent increments add up)
  liquid obj get app/stats --json                 read an object's value as JSON
  liquid fn deploy examples/functions/counter     deploy a Wasm function (once, to any node)
  liquid fn invoke counter --input 5              invoke it from any node; prints its output
  liquid demo                                     a local mesh of 4 agents, shown with `liquid nodes`
  liquid sim run sim/scenarios/small.toml --seed 3   a simulated continuum; writes sim-out/report.json

Logging: RUST_LOG=debug (or e.g. RUST_LOG=mesh=debug) and --log-format json.";

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the agent daemon (stop it with Ctrl-C or SIGTERM: it tells its peers it is leaving).
    Agent(Box<config::AgentArgs>),
    /// This agent's id, name, tier, listen addresses, uptime and peer counts.
    Status(client::Target),
    /// Every member of the mesh, this node included, with status and round-trip time.
    Nodes(client::Target),
    /// Read, write, watch, list, export and import objects (replicated automerge documents).
    #[command(subcommand)]
    Obj(obj_cmd::ObjCmd),
    /// Deploy, invoke, list and inspect functions (WebAssembly modules run by the mesh).
    #[command(subcommand)]
    Fn(fn_cmd::FnCmd),
    /// Manage the cluster secret.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Publisher keys that sign function packages (`liquid fn deploy --sign KEY`); agents run
    /// with `--require-signed --trust-publisher PUBLIC` refuse anything else.
    #[command(subcommand)]
    Publisher(PublisherCmd),
    /// Run a local demo continuum: several agents on loopback form a mesh, then `liquid nodes`.
    Demo(demo::DemoArgs),
    /// The simulated continuum: the real node core over thousands of simulated nodes.
    #[command(subcommand)]
    Sim(sim_cmd::SimCmd),
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Create a new cluster secret file (mode 0600). Every agent of the mesh needs a copy.
    Init {
        /// Where to write the secret.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum PublisherCmd {
    /// Create a publisher signing key (mode 0600) and print its public key.
    Init {
        /// Where to write the key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a publisher key file (what agents are told to trust).
    Show {
        /// The key file.
        key: PathBuf,
    },
}

fn init_logs(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: a log redirected to a file or a collector
    // should not carry escape sequences.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// A panic anywhere in the agent ends the process with code 101 (issue 17: a panic in the
/// driver left a zombie that answered 503 to everything and never exited, so no supervisor
/// restarted it). Every acknowledged write is durable before it is acknowledged, so a
/// restart loses nothing.
fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        tracing::error!(%info, "the agent panicked (a bug: please report it) and exits with code 101 so its supervisor restarts it");
        std::process::exit(101);
    }));
}

fn main() {
    tls::install_provider();
    let cli = Cli::parse();
    let is_agent = matches!(cli.cmd, Cmd::Agent(_));
    init_logs(cli.log_format, if is_agent { "info,libp2p_mdns=warn" } else { "warn" });
    if is_agent {
        exit_on_panic();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli.cmd)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Agent(args) => agent::run(*args).await,
        Cmd::Status(t) => client::status(&t).await,
        Cmd::Nodes(t) => client::nodes(&t).await,
        Cmd::Obj(cmd) => obj_cmd::run(cmd).await,
        Cmd::Fn(cmd) => fn_cmd::run(cmd).await,
        Cmd::Cluster(ClusterCmd::Init { out, force }) => {
            if out.exists() && !force {
                bail!(
                    "{} already exists: pass --force to replace it (agents holding the old key will be cut off)",
                    out.display()
                );
            }
            mesh::cluster::ClusterKey::generate().save(&out)?;
            println!("created cluster secret {} (mode 0600)", out.display());
            println!("copy it to every node and start each agent with: liquid agent --cluster-key {}", out.display());
            Ok(())
        }
        Cmd::Publisher(PublisherCmd::Init { out, force }) => {
            if out.exists() && !force {
                bail!("{} already exists: pass --force to replace it (packages it signed stay signed)", out.display());
            }
            let key = signing::PublisherKey::generate();
            key.save(&out)?;
            println!("created publisher key {} (mode 0600; keep it off the agents)", out.display());
            println!("public key: {}", key.public_hex());
            println!("sign deploys with:  liquid fn deploy PATH --sign {}", out.display());
            println!("agents that require it:  liquid agent --require-signed --trust-publisher {}", key.public_hex());
            Ok(())
        }
        Cmd::Publisher(PublisherCmd::Show { key }) => {
            println!("{}", signing::PublisherKey::load(&key)?.public_hex());
            Ok(())
        }
        Cmd::Demo(args) => demo::run(args).await,
        Cmd::Sim(cmd) => tokio::task::spawn_blocking(move || sim_cmd::run(cmd)).await?,
    }
}

#[cfg(test)]
mod tests {
    /// Set in the child process of [`a_panic_in_a_task_exits_101_instead_of_leaving_a_zombie`].
    const CHILD: &str = "LIQUID_TEST_PANIC_CHILD";

    /// The child's side: with the hook installed, a panic inside a tokio task — which tokio
    /// would otherwise catch, leaving the process running (the zombie of issue 17) — ends the
    /// process with 101. Without the variable this test does nothing.
    #[test]
    fn panic_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        super::exit_on_panic();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        let Ok(rt) = rt else { std::process::exit(3) };
        rt.block_on(async {
            let task = tokio::spawn(async { panic!("a bug in the driver") });
            let _ = task.await;
            // Reached only if the panic was caught: the zombie.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        });
        std::process::exit(0);
    }

    #[test]
    fn a_panic_in_a_task_exits_101_instead_of_leaving_a_zombie() {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let out = std::process::Command::new(exe)
            .args(["--exact", "tests::panic_child", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out.status.code(),
            Some(101),
            "the child should have exited 101: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
