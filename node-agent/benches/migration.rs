//! Migration benchmark: how long moving an actor takes, and how long it serves no call, for
//! actors with 1, 16 and 64 MiB of memory, against moving the same bytes over raw quinn.
//!
//! Run with `cargo bench -p node-agent --bench migration`. Cargo builds the `liquid` binary
//! (bench profile) first and hands its path to this binary (`CARGO_BIN_EXE_liquid`).
//!
//! For each size N (`LIQUID_BENCH_MIG_SIZES`, default `1,16,64`, MiB):
//! 1. Two real agents A and B in a QUIC mesh on loopback, `--placement-every 0` (the policy
//!    never moves an actor by itself). `wasm-host/tests/guests/ballast.wat` is deployed on A
//!    as an actor and called once with N: it fills N MiB of its memory with xorshift output,
//!    so its checkpoint (zstd) is N MiB on the wire too.
//! 2. `LIQUID_BENCH_MIG_ROUNDS` (default 4) moves, alternately A → B and B → A, each asked
//!    for through A's API (`POST /v1/functions/{name}/migrate`) while a client thread invokes
//!    the actor through A's API in a tight loop. **Migration time**: from sending the migrate
//!    request to A's `GET /v1/functions/{name}` showing the target as home at a higher epoch.
//!    **Downtime**: the longest gap between two consecutive successful invocations (completion
//!    times) from the last one before the request to the end of the round; the steady gap (the
//!    median before the request) is printed beside it. Every answer is the actor's call count:
//!    it must go up by one per acknowledged call (a failed call may have run, so a skip is
//!    counted, not fatal); a repeat or a step back aborts the bench.
//! 3. **Baselines, same run**, after the moves of each size: the snapshot's byte count moved in
//!    the framing the executor uses (`send_snapshot`: an 8-byte length header, 256 KiB writes
//!    on one stream, a one-byte acknowledgement once the receiver has read everything), timed
//!    from opening the stream to the acknowledgement, over three in-process transports on
//!    loopback, each connected once per run:
//!    - **raw quinn, ChaCha20-Poly1305** (the headline baseline): a quinn client and server
//!      endpoint (rustls with the ring provider, a self-signed rcgen certificate, quinn's
//!      default transport settings) preferring ChaCha20-Poly1305, the cipher libp2p's TLS
//!      negotiates for the mesh, so the ratio does not credit Liquid or blame it for a cipher
//!      choice. One bidirectional stream per transfer; the sender finishes it after the last
//!      write, the receiver reads the announced bytes and the end of the stream, then answers
//!      one byte.
//!    - **raw quinn, default ciphers**: the same with rustls/ring's default order, which
//!      negotiates AES-256-GCM (what a plain quinn user gets).
//!    - **mesh bulk**: two `mesh::Mesh` instances (`open_bulk`, the transport the migration
//!      uses), showing how much of the gap is the mesh and how much the migration protocol.
//!
//!    One unrecorded warm-up transfer each, then `LIQUID_BENCH_MIG_BASE_ROUNDS` (default 5)
//!    rounds, each transport once per round in rotating order (a noisy neighbour hurts all
//!    alike); medians. The raw-quinn endpoints are `mesh/benches/support/raw_quinn.rs`, shared
//!    with `mesh/benches/transport.rs`.
//!
//! Ratio = median migration time / median raw-quinn (ChaCha20-Poly1305) transfer time of the
//! same bytes. The agents' logs (the source's "actor snapshot sent … ms=" is parsed into the
//! table) stay in the printed directory when `LIQUID_BENCH_KEEP=1`.

// A bench binary, not library code: it reads the clock, spawns processes and threads, and has
// no public API to document.
#![allow(missing_docs)]

#[path = "../../mesh/benches/support/raw_quinn.rs"]
mod raw_quinn;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{Multiaddr, PeerId};
use mesh::{Config, Event, Mesh, Metrics, cluster::ClusterKey};
use raw_quinn::Cipher;
use serde_json::Value;
use support::{Agent, client, env_usize, invoke_count, liquid_cmd, load_average};
use tokio::sync::mpsc;

const BALLAST_WAT: &str = include_str!("../../wasm-host/tests/guests/ballast.wat");
/// How long one move may take before the bench gives up on it.
const MOVE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often A is asked where the actor lives during a move.
const POLL_EVERY: Duration = Duration::from_millis(5);
/// The executor's snapshot write size (`send_snapshot`).
const CHUNK: usize = 256 << 10;

struct Settings {
    sizes: Vec<u32>,
    rounds: usize,
    base_rounds: usize,
    keep: bool,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let sizes = std::env::var("LIQUID_BENCH_MIG_SIZES").unwrap_or_else(|_| "1,16,64".into());
        let sizes = sizes
            .split(',')
            .map(|s| s.trim().parse::<u32>().with_context(|| format!("LIQUID_BENCH_MIG_SIZES: {s:?} is not a number")))
            .collect::<Result<Vec<_>>>()?;
        ensure!(sizes.iter().all(|&n| (1..=512).contains(&n)), "sizes are 1..=512 MiB");
        Ok(Settings {
            sizes,
            rounds: env_usize("LIQUID_BENCH_MIG_ROUNDS", 4)?.max(1),
            base_rounds: env_usize("LIQUID_BENCH_MIG_BASE_ROUNDS", 5)?.max(1),
            keep: std::env::var("LIQUID_BENCH_KEEP").is_ok_and(|v| v == "1"),
        })
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.0}–{hi:.0}")
}

// ---------------------------------------------------------------------------------------------
// Real agents (as in benches/functions.rs)

/// What this bench asks of an agent besides [`support::Agent`].
impl Agent {
    async fn send(&self, http: &reqwest::Client, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<Value> {
        let r = http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let code = r.status();
        let body = r.text().await?;
        ensure!(code.is_success(), "{method} {path} on {}: {code} {body}", self.name);
        Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// The newest checkpoint of actor `name` in this agent's data dir: (epoch, bytes).
    fn newest_snapshot(&self, name: &str) -> Option<(u64, u64)> {
        std::fs::read_dir(self.dir.join("actors").join(name))
            .ok()?
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let epoch = p.file_name()?.to_str()?.strip_suffix(".snap")?.parse::<u64>().ok()?;
                Some((epoch, e.metadata().ok()?.len()))
            })
            .max()
    }

    /// The `ms=` of the newest "actor snapshot sent" line about `name` in this agent's log.
    fn snapshot_sent_ms(&self, name: &str) -> Option<f64> {
        let text = self.log_text();
        let line = text.lines().rev().find(|l| l.contains("actor snapshot sent") && l.contains(name))?;
        let v = line.split_whitespace().find_map(|w| w.strip_prefix("ms="))?;
        v.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok()
    }
}

// ---------------------------------------------------------------------------------------------
// The continuous client

/// What the client thread saw: each success's completion time and count, and the errors.
#[derive(Default)]
struct Seen {
    ok: Vec<(Instant, u64)>,
    errors: Vec<(Instant, String)>,
}

/// Invokes `url` in a tight loop on its own thread (and its own connection) until `stop`.
fn spawn_client(url: String, token: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Result<Seen>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let http = client(Duration::from_secs(180))?;
            let mut seen = Seen::default();
            while !stop.load(Ordering::Relaxed) {
                match invoke_count(&http, &url, &token, b"").await {
                    Ok(n) => seen.ok.push((Instant::now(), n)),
                    Err(e) => {
                        seen.errors.push((Instant::now(), e));
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            Ok(seen)
        })
    })
}

// ---------------------------------------------------------------------------------------------
// One size

struct Move {
    from: String,
    to: String,
    total: Duration,
    downtime: Duration,
    steady_gap: Duration,
    /// The source agent's own figure for streaming the snapshot (its log), ms.
    sent_ms: Option<f64>,
    calls: usize,
    errors: usize,
    skips: u64,
}

struct SizeResult {
    mib: u32,
    snapshot_bytes: u64,
    first_call: Duration,
    steady_call_ms: f64,
    moves: Vec<Move>,
    baseline: BaseTimes,
}

/// Where A says the actor lives: (home, epoch).
async fn whereabouts(a: &Agent, http: &reqwest::Client, name: &str) -> Result<(String, u64)> {
    let v = a.get(http, &format!("/v1/functions/{name}")).await?;
    Ok((v["home"].as_str().unwrap_or_default().to_string(), v["epoch"].as_u64().unwrap_or(0)))
}

/// The counts must rise: by one after each call, or more when calls failed in between.
fn check_counts(seen: &Seen, last: &mut Option<u64>, ctx: &str) -> u64 {
    let mut skips = 0;
    for &(_, n) in &seen.ok {
        if let Some(prev) = *last {
            assert!(n > prev, "{ctx}: the actor's count went from {prev} to {n}: state lost or a call replayed");
            skips += n - prev - 1;
        }
        *last = Some(n);
    }
    skips
}

async fn one_move(
    http: &reqwest::Client,
    agents: [&Agent; 2],
    src: usize,
    name: &str,
    last: &mut Option<u64>,
) -> Result<Move> {
    let (a, from, to) = (agents[0], agents[src], agents[1 - src]);
    let (home, e0) = whereabouts(a, http, name).await?;
    ensure!(home == from.id, "{name} lives on {home}, not on {} before the move", from.name);
    let stop = Arc::new(AtomicBool::new(false));
    let client = spawn_client(format!("{}/v1/functions/{name}/invoke", a.base), a.token.clone(), stop.clone());
    // Let the client settle into its loop (at least a second and a few calls).
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let t0 = Instant::now();
    let body = serde_json::json!({ "to": to.id }).to_string().into_bytes();
    let asked = a.send(http, reqwest::Method::POST, &format!("/v1/functions/{name}/migrate"), body).await;
    let outcome = match asked {
        Ok(_) => loop {
            let (home, epoch) = whereabouts(a, http, name).await?;
            if epoch > e0 && home == to.id {
                break Ok(t0.elapsed());
            }
            if epoch > e0 && home == from.id {
                break Err(anyhow::anyhow!("the move rolled back: epoch {e0} → {epoch}, home still {}", from.name));
            }
            if t0.elapsed() > MOVE_TIMEOUT {
                break Err(anyhow::anyhow!("no move within {MOVE_TIMEOUT:?}: home {home} epoch {epoch}"));
            }
            tokio::time::sleep(POLL_EVERY).await;
        },
        Err(e) => Err(e),
    };
    // Keep invoking for a while after the switch: a downtime may end later than the switch.
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_millis(1500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let t_end = Instant::now();
    let seen = client.join().map_err(|_| anyhow::anyhow!("the client thread panicked"))??;
    let total = outcome.with_context(|| {
        format!(
            "moving {name} {} → {}\n{} log:\n{}\n{} log:\n{}",
            from.name,
            to.name,
            from.name,
            from.log_tail(),
            to.name,
            to.log_tail()
        )
    })?;
    let ctx = format!("{name} {} → {}", from.name, to.name);
    let skips = check_counts(&seen, last, &ctx);
    // Successes after the switch prove the actor serves on its new home through A.
    let after = seen.ok.iter().filter(|(t, _)| *t > t0 + total).count();
    ensure!(after > 0, "{ctx}: no call succeeded within 1.5 s after the switch ({} errors)", seen.errors.len());
    let before: Vec<Instant> = seen.ok.iter().map(|(t, _)| *t).filter(|t| *t <= t0).collect();
    let steady: Vec<f64> = before.windows(2).map(|w| ms(w[1] - w[0])).collect();
    let start = before.last().copied().unwrap_or(t0);
    let mut times: Vec<Instant> = vec![start];
    times.extend(seen.ok.iter().map(|(t, _)| *t).filter(|t| *t > start && *t <= t_end));
    let downtime = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    let errors = seen.errors.iter().filter(|(t, _)| *t > start).collect::<Vec<_>>();
    if !errors.is_empty() {
        let mut kinds: Vec<&str> = errors.iter().map(|(_, e)| e.as_str()).collect();
        kinds.dedup();
        eprintln!("  {ctx}: {} failed calls during the move, e.g. {:?}", errors.len(), &kinds[..kinds.len().min(3)]);
    }
    // The source logs the stream's duration once it has the target's acknowledgement.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(Move {
        from: from.name.clone(),
        to: to.name.clone(),
        total,
        downtime,
        steady_gap: Duration::from_secs_f64(median(&steady) / 1e3),
        sent_ms: from.snapshot_sent_ms(name),
        calls: seen.ok.len(),
        errors: errors.len(),
        skips,
    })
}

async fn size_run(s: &Settings, root: &Path, mib: u32, wasm: &[u8], base: &Baselines) -> Result<SizeResult> {
    let http = client(Duration::from_secs(180))?;
    let dir = root.join(format!("{mib}mib"));
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("cluster.key");
    let out = liquid_cmd()?.args(["cluster", "init", "--out"]).arg(&key).output()?;
    ensure!(out.status.success(), "liquid cluster init: {}", String::from_utf8_lossy(&out.stderr));
    let key = key.to_str().context("utf-8 path")?.to_string();
    let mut a = Agent::start(&dir, "mig-a", &["--cluster-key", &key, "--placement-every", "0"])?;
    let st = a.ready(&http).await?;
    let boot = st["listen_addrs"][0].as_str().context("A has no listen address")?.to_string();
    let mut b = Agent::start(&dir, "mig-b", &["--cluster-key", &key, "--bootstrap", &boot, "--placement-every", "0"])?;
    b.ready(&http).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alive = |v: &Value| v["peers"]["alive"].as_u64().unwrap_or(0);
        if alive(&a.get(&http, "/v1/status").await?) >= 1 && alive(&b.get(&http, "/v1/status").await?) >= 1 {
            break;
        }
        ensure!(Instant::now() < deadline, "A and B did not see each other alive within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let name = "ballast";
    let manifest = format!(
        "name = \"{name}\"\nkind = \"actor\"\n\n[limits]\nfuel = 20000000000\nwall_ms = 5000\nmemory_mib = {}\n",
        (mib + 16).max(80)
    );
    a.deploy(&http, name, wasm, Some(&manifest)).await?;
    let url = format!("{}/v1/functions/{name}/invoke", a.base);
    let t = Instant::now();
    let first = loop {
        match invoke_count(&http, &url, &a.token, mib.to_string().as_bytes()).await {
            Ok(n) => break n,
            Err(e) if t.elapsed() > Duration::from_secs(30) => bail!("the first call failed: {e}\n{}", a.log_tail()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let first_call = t.elapsed();
    ensure!(first == 1, "the first call answered {first}, not 1");
    let mut last = Some(first);
    let (home, _) = whereabouts(&a, &http, name).await?;
    let agents = [&a, &b];
    let mut src = if home == a.id {
        0
    } else if home == b.id {
        1
    } else {
        bail!("{name} lives on {home}, neither A nor B")
    };
    let (_, snapshot_bytes) =
        agents[src].newest_snapshot(name).context("no checkpoint on the home after the first call")?;
    // The steady cost of one call (each writes an N MiB checkpoint), through A.
    let mut steady = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let n = invoke_count(&http, &url, &a.token, b"").await.map_err(anyhow::Error::msg)?;
        steady.push(ms(t.elapsed()));
        check_counts(&Seen { ok: vec![(Instant::now(), n)], errors: vec![] }, &mut last, "steady calls");
    }

    let mut moves = Vec::new();
    for round in 0..s.rounds {
        let m = one_move(&http, agents, src, name, &mut last)
            .await
            .with_context(|| format!("{mib} MiB, move {}", round + 1))?;
        eprintln!(
            "  {mib} MiB move {}: {} → {} in {:.0} ms, downtime {:.0} ms (steady gap {:.0} ms), {} calls, {} errors",
            round + 1,
            m.from,
            m.to,
            ms(m.total),
            ms(m.downtime),
            ms(m.steady_gap),
            m.calls,
            m.errors
        );
        moves.push(m);
        src = 1 - src;
    }
    if s.keep {
        eprintln!("  logs: {} and {}", a.log.display(), b.log.display());
    }
    let baseline = base.measure(snapshot_bytes, s.base_rounds).await?;
    eprintln!(
        "  baselines, {:.2} MiB: raw quinn chacha20 {:.1} ms, raw quinn aes-256-gcm {:.1} ms, mesh bulk {:.1} ms (medians)",
        snapshot_bytes as f64 / (1 << 20) as f64,
        median(&baseline.ms(Base::QuinnChaCha20)),
        median(&baseline.ms(Base::QuinnDefault)),
        median(&baseline.ms(Base::Mesh)),
    );
    Ok(SizeResult { mib, snapshot_bytes, first_call, steady_call_ms: median(&steady), moves, baseline })
}

// ---------------------------------------------------------------------------------------------
// Baselines: the same bytes over raw quinn (`raw_quinn`) and over two in-process meshes (as in
// mesh/benches/transport.rs)

/// The baseline transports, in the order of their columns (and of `BASES`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Base {
    /// Raw quinn preferring ChaCha20-Poly1305, like libp2p-tls: the headline baseline.
    QuinnChaCha20,
    /// Raw quinn with rustls/ring's default order (AES-256-GCM is negotiated).
    QuinnDefault,
    /// `mesh::Mesh::open_bulk`.
    Mesh,
}

const BASES: [Base; 3] = [Base::QuinnChaCha20, Base::QuinnDefault, Base::Mesh];

/// The baselines' transfer times of one size, per transport (indexed like `BASES`).
struct BaseTimes([Vec<Duration>; 3]);

impl BaseTimes {
    fn ms(&self, base: Base) -> Vec<f64> {
        self.0[base as usize].iter().map(|d| ms(*d)).collect()
    }
}

struct Baselines {
    quinn_chacha20: BaseQuinn,
    quinn_default: BaseQuinn,
    mesh: BaseMesh,
}

impl Baselines {
    async fn connect() -> Result<Baselines> {
        Ok(Baselines {
            quinn_chacha20: BaseQuinn::connect(Base::QuinnChaCha20).await.context("raw quinn (chacha20)")?,
            quinn_default: BaseQuinn::connect(Base::QuinnDefault).await.context("raw quinn (default ciphers)")?,
            mesh: BaseMesh::connect().await.context("the meshes")?,
        })
    }

    /// One transfer of `bytes` over `base`: from opening the stream to the acknowledgement.
    async fn transfer(&self, base: Base, bytes: u64) -> Result<Duration> {
        match base {
            Base::QuinnChaCha20 => self.quinn_chacha20.transfer(bytes).await,
            Base::QuinnDefault => self.quinn_default.transfer(bytes).await,
            Base::Mesh => self.mesh.transfer(bytes).await,
        }
    }

    /// A warm-up transfer on each transport, then `rounds` rounds of one transfer on each, in
    /// rotating order.
    async fn measure(&self, bytes: u64, rounds: usize) -> Result<BaseTimes> {
        for base in BASES {
            self.transfer(base, bytes).await?;
        }
        let mut out = BaseTimes(Default::default());
        for round in 0..rounds {
            for i in 0..BASES.len() {
                let k = (i + round) % BASES.len();
                let base = BASES[k];
                out.0[base as usize].push(self.transfer(base, bytes).await?);
            }
        }
        Ok(out)
    }
}

/// The sizes of the writes (and reads) that move `bytes` after the header: `CHUNK`s and the
/// rest.
fn chunks(bytes: u64) -> impl Iterator<Item = usize> {
    let full = bytes / CHUNK as u64;
    let rest = (bytes % CHUNK as u64) as usize;
    std::iter::repeat_n(CHUNK, full as usize).chain((rest > 0).then_some(rest))
}

struct BaseQuinn {
    /// Keeps the server endpoint (and so its accept loop) alive.
    _server: quinn::Endpoint,
    _client: quinn::Endpoint,
    conn: quinn::Connection,
    data: Vec<u8>,
}

impl BaseQuinn {
    async fn connect(base: Base) -> Result<BaseQuinn> {
        let cipher = if base == Base::QuinnChaCha20 { Cipher::ChaCha20 } else { Cipher::RingDefault };
        let raw_quinn::Pair { server, client, conn, server_conn } = raw_quinn::connect(cipher).await?;
        // The server: a task per inbound stream, as the agent's mesh does.
        tokio::spawn(async move {
            while let Ok((send, recv)) = server_conn.accept_bi().await {
                tokio::spawn(receive_quinn(send, recv));
            }
        });
        Ok(BaseQuinn { _server: server, _client: client, conn, data: vec![0x5au8; CHUNK] })
    }

    async fn transfer(&self, bytes: u64) -> Result<Duration> {
        let t = Instant::now();
        let (mut send, mut recv) = self.conn.open_bi().await?;
        send.write_all(&bytes.to_be_bytes()).await?;
        for n in chunks(bytes) {
            send.write_all(&self.data[..n]).await?;
        }
        send.finish()?;
        let mut ack = [0u8; 1];
        recv.read_exact(&mut ack).await?;
        ensure!(ack[0] == 0, "the receiver answered {}", ack[0]);
        Ok(t.elapsed())
    }
}

/// Receives like `receive_snapshot` (the header, exactly the announced bytes in `CHUNK`
/// reads), then the end of the stream, then answers one byte.
async fn receive_quinn(mut send: quinn::SendStream, mut recv: quinn::RecvStream) -> Result<()> {
    let mut len = [0u8; 8];
    recv.read_exact(&mut len).await?;
    let mut buf = vec![0u8; CHUNK];
    for n in chunks(u64::from_be_bytes(len)) {
        recv.read_exact(&mut buf[..n]).await?;
    }
    ensure!(recv.read(&mut buf[..1]).await?.is_none(), "more bytes than announced");
    send.write_all(&[0]).await?;
    send.finish()?;
    Ok(())
}

struct BaseMesh {
    a: Mesh,
    b_id: PeerId,
    data: Vec<u8>,
}

impl BaseMesh {
    async fn connect() -> Result<BaseMesh> {
        let key = ClusterKey::generate();
        let listen: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse()?];
        let mut cfg_a = Config::new(key.clone(), listen.clone());
        cfg_a.mdns = false;
        let (a, mut a_events) = Mesh::start(cfg_a, libp2p::identity::Keypair::generate_ed25519(), Metrics::default())?;
        let a_addr = loop {
            match a_events.recv().await {
                Some(Event::Listening(addr)) => break addr,
                Some(_) => {}
                None => bail!("mesh A stopped before listening"),
            }
        };
        let mut cfg_b = Config::new(key, listen);
        cfg_b.mdns = false;
        cfg_b.bootstrap = vec![a_addr];
        let (b, mut b_events) = Mesh::start(cfg_b, libp2p::identity::Keypair::generate_ed25519(), Metrics::default())?;
        let (a_id, b_id) = (a.peer_id(), b.peer_id());
        tokio::try_join!(authenticated(&mut a_events, b_id), authenticated(&mut b_events, a_id))?;
        // B receives like `receive_snapshot`: the header, exactly the announced bytes, then a
        // one-byte acknowledgement. (B is kept alive by its task.)
        tokio::spawn(async move {
            let _keep = b;
            while let Some(ev) = b_events.recv().await {
                if let Event::Bulk { stream, .. } = ev {
                    tokio::spawn(receive(stream));
                }
            }
        });
        tokio::spawn(async move { while a_events.recv().await.is_some() {} });
        Ok(BaseMesh { a, b_id, data: vec![0x5au8; CHUNK] })
    }

    async fn transfer(&self, bytes: u64) -> Result<Duration> {
        let t = Instant::now();
        let mut s = self.a.open_bulk(self.b_id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        s.write_all(&bytes.to_be_bytes()).await?;
        for n in chunks(bytes) {
            s.write_all(&self.data[..n]).await?;
        }
        s.flush().await?;
        let mut ack = [0u8; 1];
        s.read_exact(&mut ack).await?;
        ensure!(ack[0] == 0, "the receiver answered {}", ack[0]);
        Ok(t.elapsed())
    }
}

async fn receive(mut s: libp2p::Stream) -> std::io::Result<()> {
    let mut len = [0u8; 8];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; CHUNK];
    for n in chunks(u64::from_be_bytes(len)) {
        s.read_exact(&mut buf[..n]).await?;
    }
    s.write_all(&[0]).await?;
    s.close().await
}

async fn authenticated(events: &mut mpsc::Receiver<Event>, peer: PeerId) -> Result<()> {
    loop {
        match events.recv().await {
            Some(Event::Authenticated(p)) if p == peer => return Ok(()),
            Some(_) => {}
            None => bail!("the mesh stopped before authenticating {peer}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output

fn print_table(s: &Settings, results: &[SizeResult]) {
    println!(
        "\n== Actor migration between two agents on loopback ({} moves per size, alternating A → B and B → A; medians, [min–max]) ==",
        s.rounds
    );
    println!(
        "| memory | snapshot | migration time | downtime (steady gap) | snapshot stream (source's log) | raw quinn, ChaCha20-Poly1305 | ratio | raw quinn, AES-256-GCM | mesh bulk | calls / errors / skipped counts | first call, steady call |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let base = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{:.1} ms [{lo:.1}–{hi:.1}]", median(v))
    };
    for r in results {
        let total: Vec<f64> = r.moves.iter().map(|m| ms(m.total)).collect();
        let down: Vec<f64> = r.moves.iter().map(|m| ms(m.downtime)).collect();
        let steady: Vec<f64> = r.moves.iter().map(|m| ms(m.steady_gap)).collect();
        let sent: Vec<f64> = r.moves.iter().filter_map(|m| m.sent_ms).collect();
        let quinn = r.baseline.ms(Base::QuinnChaCha20);
        let sent = if sent.is_empty() { "—".into() } else { format!("{:.0} ms [{}]", median(&sent), range(&sent)) };
        println!(
            "| {} MiB | {:.2} MiB | {:.0} ms [{}] | {:.0} ms [{}] ({:.0} ms) | {sent} | {} | {:.1}× | {} | {} | {} / {} / {} | {:.0} ms, {:.0} ms |",
            r.mib,
            r.snapshot_bytes as f64 / (1 << 20) as f64,
            median(&total),
            range(&total),
            median(&down),
            range(&down),
            median(&steady),
            base(&quinn),
            median(&total) / median(&quinn),
            base(&r.baseline.ms(Base::QuinnDefault)),
            base(&r.baseline.ms(Base::Mesh)),
            r.moves.iter().map(|m| m.calls).sum::<usize>(),
            r.moves.iter().map(|m| m.errors).sum::<usize>(),
            r.moves.iter().map(|m| m.skips).sum::<u64>(),
            ms(r.first_call),
            r.steady_call_ms,
        );
    }
    println!(
        "ratio = median migration time / median raw-quinn transfer of the snapshot's bytes with ChaCha20-Poly1305 (the \
         cipher libp2p's TLS negotiates for the mesh), in process, same run; {} rounds per baseline, rotating order. \
         Raw quinn: ring provider, quinn's default transport settings; AES-256-GCM is what rustls/ring's default order \
         negotiates. Downtime = longest gap between consecutive successful invokes through A; steady gap = median gap \
         before the move.",
        s.base_rounds
    );
}

fn main() -> Result<()> {
    let s = Settings::from_env()?;
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("migration benchmark: {cores} cores, load average at start {}", load_average());
    let wasm = wat::parse_str(BALLAST_WAT)?;
    // Both ring and aws-lc-rs (libp2p's) are compiled into rustls here, so there is no
    // implicit default provider: install ring. The quinn configs name theirs anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = tempfile::Builder::new().prefix("liquid-bench-mig-").tempdir()?;
    let io = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let results = io.block_on(async {
        let base = Baselines::connect().await.context("the baselines")?;
        let mut results = Vec::new();
        for &mib in &s.sizes {
            eprintln!("{mib} MiB:");
            results.push(size_run(&s, root.path(), mib, &wasm, &base).await.with_context(|| format!("{mib} MiB"))?);
        }
        anyhow::Ok(results)
    });
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            let kept = root.keep();
            eprintln!("agents' data dirs and logs kept in {}", kept.display());
            return Err(e);
        }
    };
    print_table(&s, &results);
    if s.keep {
        let kept = root.keep();
        println!("data dirs and logs kept in {}", kept.display());
    }
    println!("\nload average at end {}; total {:.0} s", load_average(), started.elapsed().as_secs_f64());
    Ok(())
}
