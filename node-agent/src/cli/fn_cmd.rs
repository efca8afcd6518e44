//! `liquid fn …`: deploy, invoke, list, remove and inspect functions.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use wasm_host::Manifest;

use crate::cli::client::Target;
use crate::views::FunctionJson;
use crate::views::LogLine;

/// Function commands. A function is a WebAssembly module plus a manifest (`liquid.toml`,
/// see docs/functions.md); deployed once to any agent, it can be invoked from every node.
#[derive(Subcommand, Debug)]
pub enum FnCmd {
    /// Deploy a function: a `.wasm` file (default manifest, named after the file or --name)
    /// or a directory holding `liquid.toml` (whose `module` names the .wasm). The agent
    /// validates the module first; a refused module registers nothing.
    Deploy(DeployArgs),
    /// Invoke a function on any node and print its output bytes as they are. Input from
    /// --input, --input-file, or `-` for stdin. Exits non-zero on an error.
    Invoke(InvokeArgs),
    /// List the deployed functions.
    Ls {
        #[command(flatten)]
        target: Target,
    },
    /// Remove a function: calls get "not found" everywhere once the registry replicates.
    Rm {
        /// The function.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Recent log lines of a function on this node (its `log` calls and WASI stderr).
    Logs {
        /// The function.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Where a function runs and why: its placement constraints, the node an actor lives on
    /// with its epoch and lease, the reason and cost figures of its last move, the policy's
    /// latest decision, and what this node measured of its calls.
    Where {
        /// The function.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Move an actor to another node by hand, with its state: the target prepares, the
    /// actor drains, its snapshot streams over, and the target takes over at the next epoch.
    /// A failed move rolls back to the source. Waits (with a progress line) until it is done.
    Migrate {
        /// The actor.
        name: String,
        /// The target node: its name or peer id (see `liquid nodes`).
        #[arg(long)]
        to: String,
        /// Give up waiting after this many seconds (the migration itself goes on).
        #[arg(long, default_value_t = 60)]
        wait: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Pin a function to a node, or to a tier; `--unpin` removes both pins. An actor whose
    /// home no longer matches moves (give `--no-move` to only record the pin).
    Pin {
        /// The function.
        name: String,
        /// The node: its name or peer id.
        #[arg(conflicts_with_all = ["tier", "unpin"], required_unless_present_any = ["tier", "unpin"])]
        node: Option<String>,
        /// A tier: edge, fog or cloud.
        #[arg(long, conflicts_with = "unpin")]
        tier: Option<String>,
        /// Remove the node and tier pins.
        #[arg(long)]
        unpin: bool,
        /// Record the pin only; do not move an actor now.
        #[arg(long)]
        no_move: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Turn automatic placement of a function on or off (on by default): when off, the
    /// policy never moves it (except off a node its placement no longer allows).
    Auto {
        /// The function.
        name: String,
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `liquid fn deploy` flags.
#[derive(Args, Debug)]
pub struct DeployArgs {
    /// A .wasm file or a directory with liquid.toml.
    path: PathBuf,
    /// The function's name (default: the manifest's, else the file name).
    #[arg(long)]
    name: Option<String>,
    /// Sign the package with this publisher key (from `liquid publisher init`).
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    target: Target,
}

/// `liquid fn invoke` flags.
#[derive(Args, Debug)]
pub struct InvokeArgs {
    /// The function.
    name: String,
    /// The input, as text (JSON or anything else; the function gets these bytes).
    #[arg(long, conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the input from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    input_file: Option<PathBuf>,
    /// `-` reads the input from stdin.
    #[arg(value_name = "-", conflicts_with_all = ["input", "input_file"])]
    stdin: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// Runs a `liquid fn` command.
pub async fn run(cmd: FnCmd) -> Result<()> {
    match cmd {
        FnCmd::Deploy(a) => deploy(a).await,
        FnCmd::Invoke(a) => invoke(a).await,
        FnCmd::Ls { target } => ls(&target).await,
        FnCmd::Rm { name, target } => {
            let c = target.connect()?;
            let resp = c.raw(reqwest::Method::DELETE, &format!("/v1/functions/{name}")).send().await;
            let v = answer(resp, c.base()).await?;
            if target.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("removed {name}");
            }
            Ok(())
        }
        FnCmd::Logs { name, target } => {
            let lines: Vec<LogLine> = target.connect()?.get(&format!("/v1/functions/{name}/logs")).await?;
            if target.json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
            } else {
                for l in lines {
                    println!("{} {:<5} {}", l.at_ms, l.level, l.line);
                }
            }
            Ok(())
        }
        FnCmd::Migrate { name, to, wait, target } => migrate(&name, &to, wait, &target).await,
        FnCmd::Pin { name, node, tier, unpin, no_move, target } => {
            let change = if unpin {
                serde_json::json!({ "node": "", "tier": "" })
            } else {
                serde_json::json!({ "node": node, "tier": tier })
            };
            let c = target.connect()?;
            let resp =
                c.raw(reqwest::Method::POST, &format!("/v1/functions/{name}/placement")).json(&change).send().await;
            answer(resp, c.base()).await?;
            let f: FunctionJson = c.get(&format!("/v1/functions/{name}")).await?;
            let moving = match (&node, f.kind.as_str(), &f.home) {
                (Some(n), "actor", Some(home)) if !no_move && !unpin && !home.is_empty() => {
                    let resp = c
                        .raw(reqwest::Method::POST, &format!("/v1/functions/{name}/migrate"))
                        .json(&serde_json::json!({ "to": n }))
                        .send()
                        .await;
                    // Already there is fine: the pin holds.
                    answer(resp, c.base()).await.is_ok()
                }
                _ => false,
            };
            if target.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "pinned": f.placement, "moving": moving }))?
                );
            } else {
                println!("{name}: placement is now {}{}", f.placement, if moving { "; moving it there" } else { "" });
            }
            Ok(())
        }
        FnCmd::Auto { name, state, target } => {
            let c = target.connect()?;
            let body = serde_json::json!({ "auto": state == "on" });
            let resp =
                c.raw(reqwest::Method::POST, &format!("/v1/functions/{name}/placement")).json(&body).send().await;
            let v = answer(resp, c.base()).await?;
            if target.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{name}: automatic placement {state}");
            }
            Ok(())
        }
        FnCmd::Where { name, target } => {
            let f: FunctionJson = target.connect()?.get(&format!("/v1/functions/{name}")).await?;
            if target.json {
                println!("{}", serde_json::to_string_pretty(&f)?);
                return Ok(());
            }
            println!("function:  {} {} ({}, module {})", f.name, f.version, f.kind, &f.hash[..12.min(f.hash.len())]);
            println!("placement: {}", f.placement);
            match (f.kind.as_str(), &f.home) {
                ("actor", Some(h)) => println!(
                    "runs on:   {h} (the actor's one activation, epoch {})",
                    f.epoch.map_or("?".to_string(), |e| e.to_string())
                ),
                (_, Some(_)) if !f.serving.is_empty() => println!(
                    "runs on:   any eligible node where it is invoked; others forward to the nearest of {}",
                    f.serving.iter().map(|s| short(s)).collect::<Vec<_>>().join(", ")
                ),
                (_, Some(h)) => println!("runs on:   any eligible node where it is invoked; others forward to {h}"),
                (_, None) => println!("runs on:   nowhere now: no alive node matches its placement"),
            }
            if let Some(r) = f.reason.as_deref().filter(|r| !r.is_empty()) {
                println!("because:   {r}");
            }
            if let Some(auto) = f.auto {
                println!("automatic placement: {}", if auto { "on" } else { "off" });
            }
            if let Some(a) = &f.activation_here {
                println!(
                    "here:      epoch {}, {:?}, lease {} ({} ms left), {} running, {} waiting",
                    a.epoch,
                    a.phase,
                    if a.leased { "held" } else { "not held" },
                    a.lease_left_ms,
                    a.running,
                    a.held
                );
            }
            if let Some(d) = &f.decision_here {
                println!("policy here: {}", describe_decision(d));
            }
            println!("eligible:  {} node(s)", f.eligible.len());
            for e in &f.eligible {
                println!("  {e}");
            }
            println!("module held by {} node(s)", f.holders.len());
            for h in &f.holders {
                println!("  {h}");
            }
            match &f.facts_here {
                Some(x) => {
                    println!(
                        "measured on this node: {:.2} calls/s, {:.0} fuel/call, {:.1} ms/call; calls came from:",
                        x.calls_per_s, x.fuel_per_call, x.latency_ms
                    );
                    for o in &x.origins {
                        println!(
                            "  {} ({}): {:.2} calls/s",
                            o.node,
                            o.site.as_deref().unwrap_or("no site"),
                            o.calls_per_s
                        );
                    }
                    for o in &x.objects {
                        println!(
                            "  touches {}: {:.2} reads/s, {:.2} writes/s; replicas on {} node(s)",
                            o.object,
                            o.reads_per_s,
                            o.writes_per_s,
                            o.replicas.len()
                        );
                    }
                }
                None => println!("measured on this node: no calls ran here yet"),
            }
            Ok(())
        }
    }
}

/// One line for a policy decision (the JSON of `liquid_core::placement::Decision`).
fn describe_decision(d: &serde_json::Value) -> String {
    let fig = |v: &serde_json::Value| {
        let f = &v["figures"];
        format!(
            "home {:.1} ms/call, best {:.1} ms/call on {}, gain {:.0} ms over {:.0} calls vs move cost {:.0} ms",
            f["home"]["cost_ms"].as_f64().unwrap_or(f64::NAN),
            f["best"]["cost_ms"].as_f64().unwrap_or(f64::NAN),
            f["best"]["node"].as_str().map(short).unwrap_or_else(|| "-".into()),
            f["gain_ms"].as_f64().unwrap_or(0.0),
            f["window_calls"].as_f64().unwrap_or(0.0),
            f["move_cost_ms"].as_f64().unwrap_or(0.0)
        )
    };
    if let Some(s) = d.as_str() {
        return s.to_string();
    }
    if let Some(v) = d.get("Stay") {
        return format!("stay ({}): {}", v["reason"], fig(v));
    }
    if let Some(v) = d.get("Move") {
        return format!("move to {} ({}): {}", v["to"].as_str().map(short).unwrap_or_default(), v["reason"], fig(v));
    }
    if let Some(v) = d.get("AddReplica") {
        return format!("add a replica of {} near {}", v["object"], v["near"]);
    }
    d.to_string()
}

fn short(id: &str) -> String {
    id.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect()
}

/// `liquid fn migrate`: starts the move, then follows the placement until the actor runs on
/// the target (or the migration rolled back).
async fn migrate(name: &str, to: &str, wait: u64, target: &crate::cli::client::Target) -> Result<()> {
    let c = target.connect()?;
    let before: FunctionJson = c.get(&format!("/v1/functions/{name}")).await?;
    let resp = c
        .raw(reqwest::Method::POST, &format!("/v1/functions/{name}/migrate"))
        .json(&serde_json::json!({ "to": to }))
        .send()
        .await;
    let started = answer(resp, c.base()).await?;
    let to_id = started["to"].as_str().unwrap_or_default().to_string();
    let bar = if target.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} moving {prefix}: {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let epoch0 = before.epoch.unwrap_or(0);
    let t0 = std::time::Instant::now();
    let deadline = t0 + std::time::Duration::from_secs(wait);
    loop {
        let f: FunctionJson = c.get(&format!("/v1/functions/{name}")).await?;
        let home = f.home.clone().unwrap_or_default();
        let epoch = f.epoch.unwrap_or(0);
        if epoch > epoch0 && home == to_id {
            bar.finish_and_clear();
            if target.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "name": name, "home": home, "epoch": epoch, "ms": t0.elapsed().as_millis() as u64,
                    }))?
                );
            } else {
                println!(
                    "{name} now runs on {} at epoch {epoch} (took {:.1} s)",
                    short(&home),
                    t0.elapsed().as_secs_f64()
                );
            }
            return Ok(());
        }
        if epoch > epoch0 && home != to_id {
            bar.finish_and_clear();
            bail!(
                "the migration rolled back: {name} stays on {} at epoch {epoch} ({}); `liquid fn logs`/the agent's log says why",
                short(&home),
                f.reason.unwrap_or_default()
            );
        }
        let phase = f
            .activation_here
            .as_ref()
            .map(|a| format!("{:?}", a.phase))
            .unwrap_or_else(|| format!("on {} at epoch {epoch}", short(&home)));
        bar.set_message(phase);
        if std::time::Instant::now() > deadline {
            bar.finish_and_clear();
            bail!(
                "{name} did not reach {} within {wait} s (it is still moving, or stuck: see `liquid fn where {name}`)",
                short(&to_id)
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn answer(resp: reqwest::Result<reqwest::Response>, base: &str) -> Result<serde_json::Value> {
    let resp = resp.with_context(|| format!("cannot reach the agent at {base}: is `liquid agent` running?"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        let msg = body.get("error").and_then(|e| e.as_str()).unwrap_or("no details");
        bail!("the agent answered {status}: {msg}");
    }
    Ok(body)
}

/// Reads the module and manifest a deploy names.
pub fn load_package(path: &Path, name: Option<&str>) -> Result<(Manifest, Vec<u8>)> {
    Ok(wasm_host::package::load(path, name)?)
}

async fn deploy(a: DeployArgs) -> Result<()> {
    use base64::Engine as _;
    let (manifest, bytes) = load_package(&a.path, a.name.as_deref())?;
    let signature = match &a.sign {
        Some(key) => {
            let key = crate::signing::PublisherKey::load(key)?;
            Some(crate::signing::header_value(&key.sign(&wasm_host::manifest::ModuleHash::of(&bytes), &manifest)))
        }
        None => None,
    };
    let toml = toml::to_string(&manifest).context("encoding the manifest")?;
    let header = base64::engine::general_purpose::STANDARD.encode(toml);
    let c = a.target.connect()?;
    let total = bytes.len() as u64;
    let bar =
        if a.quiet || a.target.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("uploading {msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(manifest.name.clone());
    let chunks: Vec<Vec<u8>> = bytes.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    let progress = bar.clone();
    let stream = futures::stream::iter(chunks.into_iter().map(move |c| {
        progress.inc(c.len() as u64);
        Ok::<_, std::io::Error>(c)
    }));
    let mut req = c.raw(reqwest::Method::PUT, &format!("/v1/functions/{}", manifest.name));
    if let Some(sig) = signature {
        req = req.header(crate::signing::SIGNATURE_HEADER, sig);
    }
    let resp = req
        .header("content-type", "application/wasm")
        .header("content-length", total)
        .header(crate::views::MANIFEST_HEADER, header)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    bar.finish_and_clear();
    let v = answer(resp, c.base()).await?;
    if a.target.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let hash = v.get("hash").and_then(|h| h.as_str()).unwrap_or("?");
        println!(
            "deployed {} {} ({}, {} bytes, module {})",
            manifest.name,
            manifest.version,
            manifest.kind.as_str(),
            total,
            &hash[..12.min(hash.len())]
        );
        println!("invoke it from any node: liquid fn invoke {} --input '...'", manifest.name);
    }
    Ok(())
}

async fn invoke(a: InvokeArgs) -> Result<()> {
    let input = match (&a.input, &a.input_file, &a.stdin) {
        (Some(s), _, _) => s.clone().into_bytes(),
        (_, Some(p), _) if p.as_os_str() == "-" => read_stdin()?,
        (_, Some(p), _) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        (_, _, Some(dash)) if dash == "-" => read_stdin()?,
        (_, _, Some(other)) => bail!("unexpected argument {other:?}: use --input TEXT, --input-file F, or - for stdin"),
        _ => Vec::new(),
    };
    let c = a.target.connect()?;
    let resp = c
        .raw(reqwest::Method::POST, &format!("/v1/functions/{}/invoke", a.name))
        .body(input)
        .send()
        .await
        .with_context(|| format!("cannot reach the agent at {}: is `liquid agent` running?", c.base()))?;
    let status = resp.status();
    let body = resp.bytes().await.context("the answer was cut off")?;
    if status.is_success() {
        if a.target.json {
            let text = String::from_utf8_lossy(&body);
            let out =
                serde_json::from_str::<serde_json::Value>(&text).unwrap_or(serde_json::Value::String(text.into()));
            println!("{}", serde_json::json!({"ok": true, "output": out}));
        } else {
            std::io::stdout().write_all(&body)?;
        }
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if a.target.json {
        println!("{}", serde_json::json!({"ok": false, "status": status.as_u16(), "error": v}));
        std::process::exit(1);
    }
    let msg = v.get("error").and_then(|e| e.as_str()).unwrap_or("no details");
    let kind = v.get("kind").and_then(|e| e.as_str()).unwrap_or("error");
    bail!("{} failed ({kind}, HTTP {status}): {msg}", a.name)
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).context("reading stdin")?;
    Ok(buf)
}

async fn ls(target: &Target) -> Result<()> {
    let list: Vec<FunctionJson> = target.connect()?.get("/v1/functions").await?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no functions deployed: liquid fn deploy examples/functions/counter");
        return Ok(());
    }
    println!("{:<24} {:<10} {:<9} {:<12} {:>9}  PLACEMENT", "NAME", "VERSION", "KIND", "MODULE", "SIZE");
    for f in list {
        println!(
            "{:<24} {:<10} {:<9} {:<12} {:>9}  {}",
            f.name,
            f.version,
            f.kind,
            &f.hash[..12.min(f.hash.len())],
            f.size,
            f.placement
        );
    }
    Ok(())
}
