//! Transport benchmark: the Liquid mesh against raw quinn, on loopback, in one process.
//!
//! Run with `cargo bench -p mesh --bench transport` (add `-- --json` for JSON output).
//!
//! It measures, for both transports:
//! - request/response round-trip latency: `LIQUID_BENCH_REQUESTS` (default 2,000) sequential
//!   echoes of a membership `Ping` after `LIQUID_BENCH_WARMUP` (default 200) warm-up ones. The
//!   mesh uses `Mesh::request` (libp2p request-response: a new QUIC stream per request); quinn
//!   opens a bidirectional stream per request carrying the same byte counts (the mesh's 5-byte
//!   frame header plus the CBOR envelope, each way), like libp2p request-response does.
//! - bulk throughput: `LIQUID_BENCH_BULK_MIB` (default 256) MiB written in 64 KiB chunks on one
//!   stream (`Mesh::open_bulk`; a quinn uni stream), the receiver reading to the end.
//!
//! Two quinn baselines run: rustls/ring with its default cipher-suite order (AES-256-GCM is
//! negotiated) and one preferring ChaCha20-Poly1305, which is what libp2p's TLS config
//! negotiates, so the cipher's share of the bulk gap can be told from the transport's.
//!
//! Ratios are always oriented so that > 1 means "the mesh is slower by this factor":
//! latency ratio = mesh / quinn, throughput ratio = quinn / mesh.

// A bench binary: failing loudly on a broken setup is what we want, and it has no public API
// to document.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use libp2p::{Multiaddr, PeerId};
use liquid_core::{membership, wire};
use mesh::{Config, Event, Mesh, Metrics, cluster::ClusterKey};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::mpsc;

/// Write and read buffer size of the bulk transfers.
const CHUNK: usize = 64 * 1024;
/// Upper bound for each phase (setup, latency, bulk) of each transport.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// The mesh's request framing: one kind byte and a big-endian `u32` length (see `codec.rs`).
const FRAME_HEADER: usize = 5;

struct Settings {
    requests: usize,
    warmup: usize,
    bulk_mib: usize,
    json: bool,
}

impl Settings {
    fn from_env_and_args() -> Result<Self> {
        fn var(name: &str, default: usize) -> Result<usize> {
            match std::env::var(name) {
                Ok(v) => v.trim().parse().with_context(|| format!("{name}={v:?} is not a number")),
                Err(_) => Ok(default),
            }
        }
        let mut json = false;
        // `cargo bench` passes `--bench`; ignore it and anything else we do not know.
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--json" => json = true,
                "-h" | "--help" => {
                    println!(
                        "usage: cargo bench -p mesh --bench transport [-- --json]\n\
                         env: LIQUID_BENCH_REQUESTS (2000), LIQUID_BENCH_WARMUP (200), LIQUID_BENCH_BULK_MIB (256)"
                    );
                    std::process::exit(0);
                }
                _ => {}
            }
        }
        let s = Settings {
            requests: var("LIQUID_BENCH_REQUESTS", 2000)?,
            warmup: var("LIQUID_BENCH_WARMUP", 200)?,
            bulk_mib: var("LIQUID_BENCH_BULK_MIB", 256)?,
            json,
        };
        ensure!(s.requests > 0, "LIQUID_BENCH_REQUESTS must be at least 1");
        ensure!(s.bulk_mib > 0, "LIQUID_BENCH_BULK_MIB must be at least 1");
        Ok(s)
    }

    fn bulk_bytes(&self) -> u64 {
        self.bulk_mib as u64 * 1024 * 1024
    }
}

/// Round-trip latency statistics in microseconds.
#[derive(Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    mean: f64,
    min: f64,
    max: f64,
}

impl Latency {
    fn from_samples(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        // Nearest-rank percentile.
        let pct = |p: f64| {
            let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            us(samples[rank.clamp(1, samples.len()) - 1])
        };
        let total: Duration = samples.iter().sum();
        Latency {
            p50: pct(50.0),
            p99: pct(99.0),
            mean: us(total) / samples.len() as f64,
            min: us(samples[0]),
            max: us(samples[samples.len() - 1]),
        }
    }
}

/// What one transport achieved.
struct Side {
    name: &'static str,
    /// From start to both sides connected (and, for the mesh, authenticated), in ms.
    connect_ms: f64,
    latency: Latency,
    bulk_secs: f64,
    bulk_mib_s: f64,
}

/// The echo request and the byte counts it produces on the wire (payload level).
struct Payload {
    msg: wire::Message,
    /// Frame header + CBOR envelope of the request, and of the (identical) echoed response.
    framed_len: usize,
}

fn main() -> Result<()> {
    let settings = Settings::from_env_and_args()?;
    // Both `ring` and `aws-lc-rs` (pulled in by libp2p) are compiled into rustls here, so
    // there is no implicit default provider: install ring explicitly. The quinn configs below
    // also name their provider; libp2p names aws-lc-rs for its own.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let msg = wire::Message::Membership(membership::Message::Ping { seq: 1, gossip: vec![] });
    let payload = Payload { framed_len: FRAME_HEADER + wire::encoded_len(&msg), msg };

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let workers = rt.metrics().num_workers();
    let started = Instant::now();
    let (mesh, quinn_aes, quinn_chacha) = rt.block_on(async {
        if !settings.json {
            eprintln!(
                "transport bench: {} requests (+{} warm-up), {} MiB bulk in {} KiB chunks, {} tokio workers",
                settings.requests,
                settings.warmup,
                settings.bulk_mib,
                CHUNK / 1024,
                workers
            );
            eprintln!("running: liquid mesh ...");
        }
        let mesh = bench_mesh(&settings, &payload).await.context("liquid mesh")?;
        if !settings.json {
            eprintln!("running: raw quinn (ring default suites) ...");
        }
        let aes = bench_quinn(&settings, &payload, Cipher::RingDefault).await.context("raw quinn")?;
        if !settings.json {
            eprintln!("running: raw quinn (ChaCha20-Poly1305 preferred) ...");
        }
        let chacha = bench_quinn(&settings, &payload, Cipher::ChaCha20).await.context("raw quinn, chacha20")?;
        anyhow::Ok((mesh, aes, chacha))
    })?;
    rt.shutdown_timeout(Duration::from_secs(2));
    let codec_us = cbor_round_trip_us(&payload.msg);
    let elapsed = started.elapsed().as_secs_f64();

    if settings.json {
        print_json(&settings, &payload, workers, codec_us, elapsed, &mesh, &quinn_aes, &quinn_chacha);
    } else {
        print_table(&settings, &payload, workers, codec_us, elapsed, &mesh, &quinn_aes, &quinn_chacha);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The Liquid mesh.

async fn bench_mesh(s: &Settings, payload: &Payload) -> Result<Side> {
    let t0 = Instant::now();
    let key = ClusterKey::generate();
    let listen: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse()?];
    let mut cfg_a = Config::new(key.clone(), listen.clone());
    cfg_a.mdns = false;
    let (a, mut a_events) = Mesh::start(cfg_a, libp2p::identity::Keypair::generate_ed25519(), Metrics::default())?;
    let a_addr = tokio::time::timeout(PHASE_TIMEOUT, async {
        loop {
            match a_events.recv().await {
                Some(Event::Listening(addr)) => return Ok(addr),
                Some(_) => {}
                None => bail!("mesh A stopped before listening"),
            }
        }
    })
    .await
    .context("mesh A did not start listening")??;

    let mut cfg_b = Config::new(key, listen);
    cfg_b.mdns = false;
    cfg_b.bootstrap = vec![a_addr];
    let (b, mut b_events) = Mesh::start(cfg_b, libp2p::identity::Keypair::generate_ed25519(), Metrics::default())?;
    let (a_id, b_id) = (a.peer_id(), b.peer_id());
    tokio::time::timeout(PHASE_TIMEOUT, async {
        tokio::try_join!(wait_authenticated(&mut a_events, b_id), wait_authenticated(&mut b_events, a_id))
    })
    .await
    .context("the two meshes did not authenticate each other in time")??;
    let connect_ms = t0.elapsed().as_secs_f64() * 1e3;

    // B answers requests with the request itself and drains bulk streams; A's events are
    // drained so its channel never fills.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<std::io::Result<u64>>();
    tokio::spawn(async move {
        while let Some(ev) = b_events.recv().await {
            match ev {
                Event::Request { msg, reply, .. } => reply.send(&msg),
                Event::Bulk { mut stream, .. } => {
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        let _ = done.send(drain_async(&mut stream).await);
                    });
                }
                _ => {}
            }
        }
    });
    tokio::spawn(async move { while a_events.recv().await.is_some() {} });

    // Request/response latency.
    let samples = tokio::time::timeout(PHASE_TIMEOUT, async {
        let mut samples = Vec::with_capacity(s.requests);
        for i in 0..s.warmup + s.requests {
            let t = Instant::now();
            let answer = a.request(b_id, Vec::new(), &payload.msg).await?;
            let rtt = t.elapsed();
            ensure!(answer == payload.msg, "the echo differs from the request");
            if i >= s.warmup {
                samples.push(rtt);
            }
        }
        anyhow::Ok(samples)
    })
    .await
    .context("mesh requests timed out")??;

    // Bulk throughput.
    let total = s.bulk_bytes();
    let bulk = tokio::time::timeout(PHASE_TIMEOUT, async {
        let mut stream = a.open_bulk(b_id).await?;
        let chunk = vec![0xa5u8; CHUNK];
        let t = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let n = CHUNK.min((total - sent) as usize);
            stream.write_all(&chunk[..n]).await?;
            sent += n as u64;
        }
        stream.close().await?;
        let received = done_rx.recv().await.ok_or_else(|| anyhow!("the bulk receiver vanished"))??;
        let secs = t.elapsed().as_secs_f64();
        ensure!(received == total, "bulk receiver got {received} of {total} bytes");
        anyhow::Ok(secs)
    })
    .await
    .context("mesh bulk transfer timed out")??;

    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
    Ok(Side {
        name: "liquid mesh",
        connect_ms,
        latency: Latency::from_samples(samples),
        bulk_secs: bulk,
        bulk_mib_s: s.bulk_mib as f64 / bulk,
    })
}

async fn wait_authenticated(events: &mut mpsc::Receiver<Event>, peer: PeerId) -> Result<()> {
    loop {
        match events.recv().await {
            Some(Event::Authenticated(p)) if p == peer => return Ok(()),
            Some(_) => {}
            None => bail!("the mesh stopped before authenticating {peer}"),
        }
    }
}

async fn drain_async<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf).await? {
            0 => return Ok(n),
            k => n += k as u64,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw quinn.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cipher {
    /// rustls/ring's default order: AES-256-GCM first.
    RingDefault,
    /// ChaCha20-Poly1305 first, like libp2p-tls (AES-128-GCM stays listed: QUIC needs it for
    /// the initial packets).
    ChaCha20,
}

fn provider(cipher: Cipher) -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    if cipher == Cipher::ChaCha20 {
        p.cipher_suites =
            vec![cs::TLS13_CHACHA20_POLY1305_SHA256, cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_AES_128_GCM_SHA256];
    }
    Arc::new(p)
}

fn quinn_endpoints(cipher: Cipher) -> Result<(quinn::Endpoint, quinn::Endpoint, SocketAddr)> {
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert_der: CertificateDer<'static> = cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));

    let server_tls = rustls::ServerConfig::builder_with_provider(provider(cipher))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)?;
    let server_cfg = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server_tls)?));
    let server = quinn::Endpoint::server(server_cfg, "127.0.0.1:0".parse()?)?;
    let server_addr = server.local_addr()?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let client_tls = rustls::ClientConfig::builder_with_provider(provider(cipher))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client_tls)?)));
    Ok((server, client, server_addr))
}

async fn bench_quinn(s: &Settings, payload: &Payload, cipher: Cipher) -> Result<Side> {
    let t0 = Instant::now();
    let (server, client, server_addr) = quinn_endpoints(cipher)?;
    let accept = tokio::spawn({
        let server = server.clone();
        async move {
            let incoming = server.accept().await.ok_or_else(|| anyhow!("server endpoint closed"))?;
            anyhow::Ok(incoming.await?)
        }
    });
    let conn = tokio::time::timeout(PHASE_TIMEOUT, client.connect(server_addr, "localhost")?)
        .await
        .context("quinn connect timed out")??;
    let server_conn = accept.await??;
    let connect_ms = t0.elapsed().as_secs_f64() * 1e3;

    // Server: echo each bidirectional stream (a task per stream, as a server handling
    // concurrent requests must); drain each uni stream.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<u64>>();
    let len = payload.framed_len;
    tokio::spawn({
        let conn = server_conn.clone();
        async move {
            while let Ok(mut recv) = conn.accept_uni().await {
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; CHUNK];
                    let mut n = 0u64;
                    let r = loop {
                        match recv.read(&mut buf).await {
                            Ok(Some(k)) => n += k as u64,
                            Ok(None) => break Ok(n),
                            Err(e) => break Err(e.into()),
                        }
                    };
                    let _ = done.send(r);
                });
            }
        }
    });
    tokio::spawn({
        let conn = server_conn.clone();
        async move {
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let req = recv.read_to_end(wire::MESSAGE_BYTES_MAX + FRAME_HEADER).await?;
                    send.write_all(&req).await?;
                    send.finish()?;
                    anyhow::Ok(())
                });
            }
        }
    });

    // Request/response latency: a fresh bidirectional stream per request.
    let request = vec![0x5au8; len];
    let samples = tokio::time::timeout(PHASE_TIMEOUT, async {
        let mut samples = Vec::with_capacity(s.requests);
        for i in 0..s.warmup + s.requests {
            let t = Instant::now();
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(&request).await?;
            send.finish()?;
            let answer = recv.read_to_end(wire::MESSAGE_BYTES_MAX + FRAME_HEADER).await?;
            let rtt = t.elapsed();
            ensure!(answer.len() == len, "the echo has {} bytes, not {len}", answer.len());
            if i >= s.warmup {
                samples.push(rtt);
            }
        }
        anyhow::Ok(samples)
    })
    .await
    .context("quinn requests timed out")??;

    // Bulk throughput on one uni stream.
    let total = s.bulk_bytes();
    let bulk = tokio::time::timeout(PHASE_TIMEOUT, async {
        let mut send = conn.open_uni().await?;
        let chunk = vec![0xa5u8; CHUNK];
        let t = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let n = CHUNK.min((total - sent) as usize);
            send.write_all(&chunk[..n]).await?;
            sent += n as u64;
        }
        send.finish()?;
        let received = done_rx.recv().await.ok_or_else(|| anyhow!("the bulk receiver vanished"))??;
        let secs = t.elapsed().as_secs_f64();
        ensure!(received == total, "bulk receiver got {received} of {total} bytes");
        anyhow::Ok(secs)
    })
    .await
    .context("quinn bulk transfer timed out")??;

    conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(2), client.wait_idle()).await;
    server.close(0u32.into(), b"done");
    Ok(Side {
        name: match cipher {
            Cipher::RingDefault => "raw quinn",
            Cipher::ChaCha20 => "raw quinn (chacha20)",
        },
        connect_ms,
        latency: Latency::from_samples(samples),
        bulk_secs: bulk,
        bulk_mib_s: s.bulk_mib as f64 / bulk,
    })
}

// ---------------------------------------------------------------------------------------------
// Reporting.

/// What encoding and decoding the echo envelope costs, in µs (the mesh does it on both sides
/// of every request; the quinn baseline moves opaque bytes).
fn cbor_round_trip_us(msg: &wire::Message) -> f64 {
    const N: u32 = 20_000;
    let t = Instant::now();
    for _ in 0..N {
        let bytes = wire::encode(std::hint::black_box(msg));
        let back = wire::decode(&bytes).expect("decoding what we encoded");
        std::hint::black_box(back);
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(N)
}

struct Row {
    metric: &'static str,
    key: &'static str,
    unit: &'static str,
    /// true: smaller is better (ratio = mesh / quinn); false: larger is better (quinn / mesh).
    lower_is_better: bool,
    get: fn(&Side) -> f64,
}

const ROWS: &[Row] = &[
    Row { metric: "rr latency p50", key: "latency_p50_us", unit: "µs", lower_is_better: true, get: |s| s.latency.p50 },
    Row { metric: "rr latency p99", key: "latency_p99_us", unit: "µs", lower_is_better: true, get: |s| s.latency.p99 },
    Row {
        metric: "rr latency mean",
        key: "latency_mean_us",
        unit: "µs",
        lower_is_better: true,
        get: |s| s.latency.mean,
    },
    Row { metric: "rr latency min", key: "latency_min_us", unit: "µs", lower_is_better: true, get: |s| s.latency.min },
    Row { metric: "rr latency max", key: "latency_max_us", unit: "µs", lower_is_better: true, get: |s| s.latency.max },
    Row {
        metric: "bulk throughput",
        key: "bulk_mib_per_s",
        unit: "MiB/s",
        lower_is_better: false,
        get: |s| s.bulk_mib_s,
    },
    Row { metric: "bulk time", key: "bulk_secs", unit: "s", lower_is_better: true, get: |s| s.bulk_secs },
    Row { metric: "connect", key: "connect_ms", unit: "ms", lower_is_better: true, get: |s| s.connect_ms },
];

/// > 1 means the mesh is slower by that factor.
fn ratio(row: &Row, mesh: &Side, quinn: &Side) -> f64 {
    let (m, q) = ((row.get)(mesh), (row.get)(quinn));
    if row.lower_is_better { m / q } else { q / m }
}

#[allow(clippy::too_many_arguments)]
fn print_table(
    s: &Settings,
    p: &Payload,
    workers: usize,
    codec_us: f64,
    elapsed: f64,
    mesh: &Side,
    quinn: &Side,
    chacha: &Side,
) {
    println!();
    println!(
        "Liquid mesh vs raw quinn on loopback: {} sequential requests of {} B each way (+{} warm-up), \
         {} MiB bulk in {} KiB chunks",
        s.requests,
        p.framed_len,
        s.warmup,
        s.bulk_mib,
        CHUNK / 1024
    );
    println!("ratio > 1 means the mesh is slower: latency/time ratio = mesh / quinn, throughput ratio = quinn / mesh");
    println!();
    let w = 18;
    println!(
        "{:<24} {:>w$} {:>w$} {:>10} {:>w$} {:>10}",
        "metric", mesh.name, quinn.name, "ratio", chacha.name, "ratio"
    );
    println!("{}", "-".repeat(24 + 3 * (w + 1) + 2 * 11));
    for row in ROWS {
        let label = format!("{} ({})", row.metric, row.unit);
        println!(
            "{:<24} {:>w$.1} {:>w$.1} {:>9.2}x {:>w$.1} {:>9.2}x",
            label,
            (row.get)(mesh),
            (row.get)(quinn),
            ratio(row, mesh, quinn),
            (row.get)(chacha),
            ratio(row, mesh, chacha),
        );
    }
    println!();
    println!("notes:");
    println!(
        "  - mesh requests: Mesh::request -> mesh task -> libp2p request-response, a new QUIC stream with \
         multistream-select negotiation per request, CBOR envelope encoded/decoded on both sides"
    );
    println!("  - CBOR encode+decode of the echoed envelope: {codec_us:.2} µs per round (x2 per request: both sides)");
    println!(
        "  - quinn requests: a new bidirectional stream per request with the same byte counts; \
         the server echoes from a task per stream"
    );
    println!(
        "  - libp2p's TLS prefers ChaCha20-Poly1305 (aws-lc-rs); `raw quinn` negotiates AES-256-GCM (ring), \
         `raw quinn (chacha20)` ChaCha20-Poly1305 (ring)"
    );
    println!("  - tokio workers: {workers}; total run time {elapsed:.1} s");
}

#[allow(clippy::too_many_arguments)]
fn print_json(
    s: &Settings,
    p: &Payload,
    workers: usize,
    codec_us: f64,
    elapsed: f64,
    mesh: &Side,
    quinn: &Side,
    chacha: &Side,
) {
    let side = |x: &Side| {
        let fields: Vec<String> = ROWS.iter().map(|r| format!("\"{}\": {:.3}", r.key, (r.get)(x))).collect();
        format!("{{\"name\": \"{}\", {}}}", x.name, fields.join(", "))
    };
    let ratios = |q: &Side| {
        let fields: Vec<String> = ROWS.iter().map(|r| format!("\"{}\": {:.4}", r.key, ratio(r, mesh, q))).collect();
        format!("{{{}}}", fields.join(", "))
    };
    println!("{{");
    println!(
        "  \"settings\": {{\"requests\": {}, \"warmup\": {}, \"request_bytes\": {}, \"bulk_mib\": {}, \
         \"chunk_bytes\": {}, \"tokio_workers\": {}}},",
        s.requests, s.warmup, p.framed_len, s.bulk_mib, CHUNK, workers
    );
    println!(
        "  \"ratio_meaning\": \"> 1 means the mesh is slower: mesh/quinn for latencies and times, quinn/mesh for throughput\","
    );
    println!("  \"mesh\": {},", side(mesh));
    println!("  \"quinn\": {},", side(quinn));
    println!("  \"quinn_chacha20\": {},", side(chacha));
    println!("  \"ratio_vs_quinn\": {},", ratios(quinn));
    println!("  \"ratio_vs_quinn_chacha20\": {},", ratios(chacha));
    println!("  \"cbor_round_trip_us\": {codec_us:.3},");
    println!("  \"elapsed_s\": {elapsed:.2}");
    println!("}}");
}
