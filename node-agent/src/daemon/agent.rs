//! `liquid agent`: start the daemon.
//!
//! Data dir layout: `identity.key` (Ed25519, 0600), `cluster.key` (only with `--dev`),
//! `api.addr` (the API URL actually bound), `api.token` (0600), `membership.json` (the
//! incarnation and some peers' addresses, to rejoin after a restart), `boot` (how many times
//! the agent started: part of the actor id of its object changes), `objects/` (one
//! checksummed log per object, see `state_sync::store`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use liquid_core::{Node, NodeInfo};
use mesh::cluster::ClusterKey;
use mesh::{Event, Mesh};
use prometheus_client::registry::Registry;
use state_sync::FileStore;
use state_sync::store::Store;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::daemon::config::{AgentArgs, ApiTls, Settings};
use crate::daemon::driver::{Channels, Driver, DriverMetrics, Parts, load_persisted};

/// File names inside the data dir.
pub mod files {
    /// The node's identity key.
    pub const IDENTITY: &str = "identity.key";
    /// The dev-mode cluster key.
    pub const CLUSTER_KEY: &str = "cluster.key";
    /// The API URL the agent bound.
    pub const API_ADDR: &str = "api.addr";
    /// The API bearer token.
    pub const API_TOKEN: &str = "api.token";
    /// The membership memory.
    pub const MEMBERSHIP: &str = "membership.json";
    /// The boot counter.
    pub const BOOT: &str = "boot";
    /// The object store's directory.
    pub const OBJECTS: &str = "objects";
}

/// Reads, increments and durably rewrites the boot counter; every start gets a new number.
fn next_boot(dir: &Path) -> Result<u64> {
    let path = dir.join(files::BOOT);
    let prev = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().with_context(|| {
            format!(
                "{} is damaged (not a number); it must only grow: write a number larger than any before",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let boot = prev + 1;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, format!("{boot}\n").as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error).with_context(|| format!("writing {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(boot)
}

fn unix_now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Opens the object store and loads every object, as documents of this boot's actor.
/// Returns the store and how many logs were found damaged.
fn restore_objects(dir: &Path, node: &mut Node, boot: u64) -> Result<(FileStore, u64)> {
    let mut store = FileStore::open(dir.join(files::OBJECTS))?.with_unix_clock(unix_now_s);
    let actor = liquid_core::objects::actor_id(&node.id(), boot);
    let names = store.list()?;
    let (mut torn, mut damaged, mut incomplete) = (0, 0, 0);
    for name in &names {
        let Some(r) = state_sync::store::restore(&mut store, name, actor.clone())? else { continue };
        torn += usize::from(r.torn.is_some());
        damaged += u64::from(r.damage.is_some());
        let kept = match &r.damage {
            Some(d) => d.kept.display().to_string(),
            None => store.kept(name)?.last().map_or_else(|| "(not found)".into(), |p| p.display().to_string()),
        };
        let missing = r.incomplete();
        let stats = store.stats(name).unwrap_or_default();
        node.restore_object(name.clone(), r.doc, stats);
        if missing {
            incomplete += 1;
            node.mark_object_damaged(name, kept);
        }
    }
    info!(
        objects = names.len(),
        torn_tails_dropped = torn,
        damaged_logs = damaged,
        awaiting_repair = incomplete,
        "object store loaded"
    );
    if incomplete > 0 {
        warn!(
            objects = incomplete,
            "objects lack changes lost to damaged logs: reads of them are refused until their replicas send the changes back (see `liquid status`)"
        );
    }
    Ok((store, damaged))
}

fn cluster_key(s: &Settings) -> Result<ClusterKey> {
    if let Some(path) = &s.cluster_key {
        let key = ClusterKey::load(path)?;
        super::private::warn_if_readable(path, "cluster key");
        return Ok(key);
    }
    if !s.dev {
        bail!(
            "no cluster key: give --cluster-key FILE (create one with `liquid cluster init --out FILE` and copy it to \
             every node), or run with --dev to create a throwaway one in the data dir"
        );
    }
    let path = s.data_dir.join(files::CLUSTER_KEY);
    let key = if path.exists() {
        ClusterKey::load(&path)?
    } else {
        let key = ClusterKey::generate();
        key.save(&path)?;
        key
    };
    eprintln!(
        "dev mode: the cluster key is {}\n  other agents join this mesh with: liquid agent --cluster-key {} --bootstrap <an address from `liquid status`>",
        path.display(),
        path.display()
    );
    Ok(key)
}

fn api_token(dir: &Path) -> Result<String> {
    let path = dir.join(files::API_TOKEN);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if t.len() >= 32 {
            return Ok(t);
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    mesh::identity::write_private(&path, token.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

fn memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(args: AgentArgs) -> Result<()> {
    let s = args.resolve()?;
    super::private::private_umask();
    std::fs::create_dir_all(&s.data_dir).with_context(|| format!("creating data dir {}", s.data_dir.display()))?;
    let tightened = super::private::tighten(&s.data_dir);
    if tightened > 0 {
        tracing::warn!(
            data_dir = %s.data_dir.display(),
            entries = tightened,
            "made the data dir private: folders 0700, files 0600 (they were readable by other users)"
        );
    }
    let key = cluster_key(&s)?;
    let identity = mesh::identity::load_or_create(&s.data_dir.join(files::IDENTITY))?;
    let peer_id = identity.public().to_peer_id();
    let node_id = mesh::node_id(&peer_id).context("the identity key is not Ed25519")?;
    let restored = load_persisted(&s.data_dir.join(files::MEMBERSHIP));

    let mut registry = Registry::default();
    let mesh_metrics = mesh::Metrics::default();
    mesh_metrics.register(&mut registry);
    let driver_metrics = DriverMetrics::default();
    driver_metrics.register(&mut registry);
    let fn_metrics = crate::daemon::executor::FnMetrics::default();
    fn_metrics.register(&mut registry);

    let mut cfg = mesh::Config::new(key, s.listen.clone());
    cfg.bootstrap = s.bootstrap.clone();
    cfg.mdns = s.mdns;
    let (mesh, mut events) = Mesh::start(cfg, identity, mesh_metrics)?;
    if let Some(p) = &restored {
        for addr in p.peer_addrs.iter().filter_map(|a| a.parse().ok()) {
            mesh.dial(addr);
        }
    }

    // Learn the addresses actually bound (port 0, 0.0.0.0) before describing ourselves.
    let mut listen_addrs = Vec::new();
    let mut early = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        match ev {
            Event::Listening(a) => listen_addrs.push(a.to_string()),
            other => early.push(other),
        }
    }
    if listen_addrs.is_empty() {
        bail!("the mesh is not listening on any address: check --listen");
    }

    let info = NodeInfo {
        id: node_id,
        name: s.name.clone(),
        tier: s.tier,
        labels: s.labels.clone(),
        arch: std::env::consts::ARCH.to_string(),
        cpus: std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1)),
        memory_mib: memory_mib(),
        addrs: listen_addrs.iter().filter(|a| !a.contains("/ip4/0.0.0.0/")).cloned().collect(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let epoch = Instant::now();
    let boot = next_boot(&s.data_dir)?;
    let unix_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let unix_offset_us = u64::try_from(unix_now.as_micros()).unwrap_or(0);
    let objects = liquid_core::objects::Config {
        replication: s.replication.clone(),
        objects_max: s.object_limits.objects_max,
        namespace_objects_max: s.object_limits.namespace_objects_max,
        storage_bytes_max: s.object_limits.storage_bytes_max,
        cache_bytes: s.object_limits.cache_bytes,
        unix_epoch_offset_us: unix_offset_us,
        ..Default::default()
    };
    let functions = liquid_core::functions::Config {
        policy_every: s.placement_every,
        policy: s.placement.clone(),
        ..Default::default()
    };
    let cfg = liquid_core::node::Config { objects, functions, boot, ..Default::default() };
    let mut node = Node::new(cfg, info, restored.as_ref(), rand::random(), liquid_core::Time::ZERO);
    let (store, damaged_logs) = restore_objects(&s.data_dir, &mut node, boot)?;
    driver_metrics.count_damaged_logs(damaged_logs);
    let actor = node.objects().actor().clone();
    let (disk_tx, disk_rx) = std::sync::mpsc::channel();
    let (flushed_tx, flushed_rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("liquid-disk".into())
        .spawn(move || crate::daemon::driver::disk_worker(store, actor, disk_rx, flushed_tx))
        .context("starting the disk thread")?;
    let (changes, _) = tokio::sync::broadcast::channel(1024);

    let listener =
        tokio::net::TcpListener::bind(s.api).await.with_context(|| format!("binding the API on {}", s.api))?;
    let local_api = listener.local_addr()?;
    let tls = match &s.api_tls {
        ApiTls::Plain => {
            if !local_api.ip().is_loopback() {
                warn!(api = %local_api, "the API is served in PLAIN HTTP on a network address (--api-insecure-plaintext): its bearer token crosses the network in the clear");
            }
            None
        }
        ApiTls::SelfSigned => Some(crate::tls::server(&s.data_dir, None, local_api.ip(), &s.name)?),
        ApiTls::Operator { cert, key } => {
            Some(crate::tls::server(&s.data_dir, Some((cert, key)), local_api.ip(), &s.name)?)
        }
    };
    let api_url = format!("{}://{local_api}", if tls.is_some() { "https" } else { "http" });
    let token = api_token(&s.data_dir)?;
    let fingerprint_file = s.data_dir.join(crate::tls::FINGERPRINT);
    match &tls {
        Some(t) => std::fs::write(&fingerprint_file, format!("{}\n", t.fingerprint))?,
        None => {
            let _ = std::fs::remove_file(&fingerprint_file);
        }
    }
    std::fs::write(s.data_dir.join(files::API_ADDR), format!("{api_url}\n"))?;
    let (inbox_tx, inbox_rx) = mpsc::channel(256);
    let runtime = wasm_host::runtime::Runtime::new(wasm_host::runtime::RuntimeConfig::default())
        .map_err(|e| anyhow::anyhow!("starting the Wasm runtime: {e}"))?;
    let modules = Arc::new(
        wasm_host::store::ModuleStore::open(&s.data_dir, Arc::new(runtime))
            .with_context(|| format!("opening the module cache in {}", s.data_dir.display()))?,
    );
    let (executed_tx, executed_rx) = mpsc::unbounded_channel();
    let checkpoints = crate::daemon::checkpoint::Checkpoints::open(s.data_dir.join("actors"))
        .with_context(|| format!("opening the actor checkpoints in {}", s.data_dir.display()))?;
    // Checkpoints held here (this node's own, or standby copies) make it a takeover candidate.
    for (name, epoch, n) in checkpoints.actors() {
        let pos = liquid_core::functions::actors::lease::Pos { epoch, n };
        node.handle_replica_stored(liquid_core::Time::ZERO, &name, pos);
    }
    let executor = crate::daemon::executor::Executor::new(
        modules.clone(),
        mesh.clone(),
        inbox_tx.clone(),
        executed_tx,
        fn_metrics.clone(),
        unix_offset_us,
        checkpoints,
        s.trust.clone(),
    );
    let app = crate::daemon::api::router(modules, s.trust.clone(), token, inbox_tx, registry, changes.clone(), s.dev);

    let (stop_tx, stop_rx) = oneshot::channel();
    let parts = Parts {
        mesh,
        listen_addrs: listen_addrs.clone(),
        executor,
        state_file: s.data_dir.join(files::MEMBERSHIP),
        metrics: driver_metrics,
        fn_metrics,
    };
    let channels =
        Channels { events, early, inbox: inbox_rx, disk: disk_tx, flushed: flushed_rx, executed: executed_rx, changes };
    let driver = Driver::new(node, epoch, parts, channels);
    let driver = tokio::spawn(driver.run(stop_rx));
    info!(id = %peer_id, name = %s.name, tier = %s.tier, api = %api_url, addrs = ?listen_addrs, "agent started");

    let served = match tls {
        Some(t) => {
            info!(fingerprint = %t.fingerprint, "the API is served over TLS (the CLI pins this certificate fingerprint)");
            let listener = crate::tls::TlsListener::new(listener, t.config)?;
            axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await
        }
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await,
    };
    if let Err(e) = served {
        warn!(error = %e, "API server failed");
    }
    let _ = stop_tx.send(());
    if tokio::time::timeout(Duration::from_secs(5), driver).await.is_err() {
        warn!("the driver did not stop within 5 s");
    }
    info!("agent stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
