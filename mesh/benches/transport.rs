//! Transport benchmark: the Liquid mesh against raw quinn, on loopback, in one process.
//!
//! Run with `cargo bench -p mesh --bench transport` (add `-- --json` for JSON output).
//!
//! It measures, for each transport:
//! - request/response round-trip latency: `LIQUID_BENCH_REQUESTS` (default 2,000) sequential
//!   echoes of a membership `Ping` after `LIQUID_BENCH_WARMUP` (default 200) warm-up ones. The
//!   mesh uses `Mesh::request` (libp2p request-response: a new QUIC stream per request); quinn
//!   opens a bidirectional stream per request carrying the same byte counts (the mesh's 5-byte
//!   frame header plus the CBOR envelope, each way), like libp2p request-response does.
//! - bulk throughput: `LIQUID_BENCH_BULK_MIB` (default 256) MiB written in 64 KiB chunks on
//!   streams (`Mesh::open_bulk`; quinn uni streams), the receiver reading to the end.
//! - to locate the mesh's latency overhead, two more echo patterns with the same byte counts:
//!   a fresh bulk stream per echo (`open_bulk`: libp2p stream + protocol negotiation, no
//!   request-response, no CBOR) and ping-pong on one long-lived stream (the bare data path).
//!
//! Three transports run, connected once, then measured in `LIQUID_BENCH_ROUNDS` (default 8)
//! interleaved rounds in rotating order, so a noisy neighbour hurts them all alike: the mesh;
//! raw quinn with rustls/ring's default cipher-suite order (AES-256-GCM is negotiated); and raw
//! quinn preferring ChaCha20-Poly1305, which is what libp2p's TLS config negotiates, so the
//! cipher's share of the bulk gap can be told from the transport's.
//!
//! Ratios are always oriented so that > 1 means "the mesh is slower by this factor":
//! latency ratio = mesh / quinn, throughput ratio = quinn / mesh.

// A bench binary: failing loudly on a broken setup is what we want, and it has no public API
// to document.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/raw_quinn.rs"]
mod raw_quinn;

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{Multiaddr, PeerId};
use liquid_core::{membership, wire};
use mesh::{Config, Event, Mesh, Metrics, cluster::ClusterKey};
use raw_quinn::Cipher;
use tokio::sync::mpsc;

/// Write and read buffer size of the bulk transfers.
const CHUNK: usize = 64 * 1024;
/// Upper bound for each phase (setup, one round of one transport, shutdown).
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// The mesh's request framing: one kind byte and a big-endian `u32` length (see `codec.rs`).
const FRAME_HEADER: usize = 5;
/// The largest echo answer read back.
const ECHO_MAX: usize = wire::MESSAGE_BYTES_MAX + FRAME_HEADER;
/// First byte of a stream: echo everything back once the writer has finished.
const MARK_ECHO_ONCE: u8 = 0x01;
/// First byte of a stream: echo fixed-size messages back one by one until the end.
const MARK_PING_PONG: u8 = 0x02;
/// Bulk payload (any first byte other than the marks means: count and discard).
const BULK_BYTE: u8 = 0xa5;

struct Settings {
    requests: usize,
    warmup: usize,
    bulk_mib: usize,
    rounds: usize,
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
                         env: LIQUID_BENCH_REQUESTS (2000), LIQUID_BENCH_WARMUP (200), \
                         LIQUID_BENCH_BULK_MIB (256), LIQUID_BENCH_ROUNDS (8)"
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
            rounds: var("LIQUID_BENCH_ROUNDS", 8)?,
            json,
        };
        ensure!(s.rounds > 0, "LIQUID_BENCH_ROUNDS must be at least 1");
        ensure!(s.requests >= s.rounds, "LIQUID_BENCH_REQUESTS must be at least LIQUID_BENCH_ROUNDS");
        ensure!(s.bulk_mib > 0, "LIQUID_BENCH_BULK_MIB must be at least 1");
        Ok(s)
    }

    /// `total` split over the rounds: this round's share.
    fn share(&self, total: u64, round: usize) -> u64 {
        let r = self.rounds as u64;
        total / r + u64::from((round as u64) < total % r)
    }
}

/// Round-trip latency statistics in microseconds.
#[derive(Clone, Copy)]
struct Latency {
    n: usize,
    p50: f64,
    p99: f64,
    mean: f64,
    min: f64,
    max: f64,
}

impl Latency {
    fn from_samples(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut samples = samples.to_vec();
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        // Nearest-rank percentile.
        let pct = |p: f64| {
            let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            us(samples[rank.clamp(1, samples.len()) - 1])
        };
        let total: Duration = samples.iter().sum();
        Some(Latency {
            n: samples.len(),
            p50: pct(50.0),
            p99: pct(99.0),
            mean: us(total) / samples.len() as f64,
            min: us(samples[0]),
            max: us(samples[samples.len() - 1]),
        })
    }

    fn json(&self) -> String {
        format!(
            "{{\"n\": {}, \"p50_us\": {:.2}, \"p99_us\": {:.2}, \"mean_us\": {:.2}, \"min_us\": {:.2}, \"max_us\": {:.2}}}",
            self.n, self.p50, self.p99, self.mean, self.min, self.max
        )
    }
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
    let load_before = loadavg();
    let started = Instant::now();
    let log = |m: &str| {
        if !settings.json {
            eprintln!("{m}");
        }
    };
    log(&format!(
        "transport bench: {} requests (+{} warm-up) and {} MiB bulk per transport in {} KiB chunks, \
         {} interleaved rounds, {} tokio workers",
        settings.requests,
        settings.warmup,
        settings.bulk_mib,
        CHUNK / 1024,
        settings.rounds,
        workers
    ));
    let mut benches = rt.block_on(async {
        let mut benches = Vec::new();
        for kind in [Kind::Mesh, Kind::Quinn(Cipher::RingDefault), Kind::Quinn(Cipher::ChaCha20)] {
            log(&format!("connecting: {}", kind.name()));
            let b = tokio::time::timeout(PHASE_TIMEOUT, Bench::connect(kind, &payload, &settings))
                .await
                .with_context(|| format!("{}: setting up timed out", kind.name()))?
                .with_context(|| kind.name())?;
            benches.push(b);
        }
        for round in 0..settings.rounds {
            log(&format!("round {}/{}", round + 1, settings.rounds));
            for i in 0..benches.len() {
                let k = (i + round) % benches.len();
                let b = &mut benches[k];
                let name = b.kind.name();
                tokio::time::timeout(PHASE_TIMEOUT, b.round(&settings, round))
                    .await
                    .with_context(|| format!("{name}: round {} timed out", round + 1))?
                    .with_context(|| name)?;
            }
        }
        for b in &mut benches {
            let _ = tokio::time::timeout(Duration::from_secs(5), b.transport.close()).await;
        }
        anyhow::Ok(benches)
    })?;
    rt.shutdown_timeout(Duration::from_secs(2));
    let codec_us = cbor_round_trip_us(&payload.msg);
    let elapsed = started.elapsed().as_secs_f64();
    let load_after = loadavg();

    let quinn_chacha = benches.pop().expect("three benches").summary();
    let quinn = benches.pop().expect("three benches").summary();
    let mesh = benches.pop().expect("three benches").summary();
    let report = Report {
        settings: &settings,
        payload: &payload,
        workers,
        codec_us,
        elapsed,
        load: (load_before, load_after),
        mesh,
        quinn,
        quinn_chacha,
    };
    if settings.json {
        report.print_json()
    } else {
        report.print_table()
    }
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------------
// The transports.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mesh,
    Quinn(Cipher),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mesh => "liquid mesh",
            Kind::Quinn(Cipher::RingDefault) => "raw quinn",
            Kind::Quinn(Cipher::ChaCha20) => "raw quinn (chacha20)",
        }
    }
}

enum Transport {
    Mesh {
        a: Mesh,
        b: Mesh,
        b_id: PeerId,
        done: mpsc::UnboundedReceiver<std::io::Result<u64>>,
    },
    Quinn {
        server: quinn::Endpoint,
        client: quinn::Endpoint,
        conn: quinn::Connection,
        done: mpsc::UnboundedReceiver<std::io::Result<u64>>,
    },
}

/// One open stream for ping-pong.
enum PingPong {
    Mesh(libp2p::Stream),
    Quinn(quinn::SendStream, quinn::RecvStream),
}

struct Bench {
    kind: Kind,
    transport: Transport,
    /// Setting up the first connection of this kind in the process (includes one-time
    /// initialisation), and the one that is measured.
    connect_cold_ms: f64,
    connect_ms: f64,
    /// A request bearing the echo's byte count, for the byte-level patterns.
    raw_request: Vec<u8>,
    rr: Vec<Duration>,
    stream_echo: Vec<Duration>,
    ping_pong: Vec<Duration>,
    bulk_bytes: u64,
    bulk_secs: f64,
    bulk_rounds_mib_s: Vec<f64>,
    msg: wire::Message,
}

impl Bench {
    async fn connect(kind: Kind, payload: &Payload, s: &Settings) -> Result<Bench> {
        let connect = || async {
            match kind {
                Kind::Mesh => connect_mesh(payload.framed_len).await,
                Kind::Quinn(cipher) => connect_quinn(cipher, payload.framed_len).await,
            }
        };
        // The first libp2p connection of a process pays tens of ms of one-time set-up: connect
        // a throwaway pair first and measure the second.
        let t = Instant::now();
        let mut cold = connect().await?;
        let connect_cold_ms = t.elapsed().as_secs_f64() * 1e3;
        let _ = tokio::time::timeout(Duration::from_secs(5), cold.close()).await;
        let t = Instant::now();
        let transport = connect().await?;
        let connect_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut raw_request = vec![0x5a; payload.framed_len];
        raw_request[0] = MARK_ECHO_ONCE;
        let mut b = Bench {
            kind,
            transport,
            connect_cold_ms,
            connect_ms,
            raw_request,
            rr: Vec::new(),
            stream_echo: Vec::new(),
            ping_pong: Vec::new(),
            bulk_bytes: 0,
            bulk_secs: 0.0,
            bulk_rounds_mib_s: Vec::new(),
            msg: payload.msg.clone(),
        };
        // Warm-up, not recorded: requests, stream echoes, a little bulk.
        for _ in 0..s.warmup {
            b.request().await?;
        }
        for _ in 0..s.warmup / 4 {
            b.echo_on_new_stream().await?;
        }
        b.bulk(8 * CHUNK as u64).await?;
        Ok(b)
    }

    async fn round(&mut self, s: &Settings, round: usize) -> Result<()> {
        let n = s.share(s.requests as u64, round);
        for _ in 0..n {
            let t = Instant::now();
            self.request().await?;
            self.rr.push(t.elapsed());
        }
        // Diagnostics. For quinn a request already is an echo on a new stream.
        if self.kind == Kind::Mesh {
            for _ in 0..n {
                let t = Instant::now();
                self.echo_on_new_stream().await?;
                self.stream_echo.push(t.elapsed());
            }
        }
        let mut pp = self.open_ping_pong().await?;
        let mut answer = vec![0u8; self.raw_request.len()];
        for _ in 0..n {
            let t = Instant::now();
            match &mut pp {
                PingPong::Mesh(st) => {
                    st.write_all(&self.raw_request).await?;
                    st.flush().await?;
                    st.read_exact(&mut answer).await?;
                }
                PingPong::Quinn(send, recv) => {
                    send.write_all(&self.raw_request).await?;
                    recv.read_exact(&mut answer).await?;
                }
            }
            self.ping_pong.push(t.elapsed());
        }
        match pp {
            PingPong::Mesh(mut st) => st.close().await?,
            PingPong::Quinn(mut send, _) => send.finish()?,
        }

        let bytes = s.share(s.bulk_mib as u64 * 1024 * 1024, round);
        let secs = self.bulk(bytes).await?;
        self.bulk_bytes += bytes;
        self.bulk_secs += secs;
        self.bulk_rounds_mib_s.push(bytes as f64 / (1024.0 * 1024.0) / secs);
        Ok(())
    }

    /// One request/response round trip.
    async fn request(&self) -> Result<()> {
        match &self.transport {
            Transport::Mesh { a, b_id, .. } => {
                let answer = a.request(*b_id, Vec::new(), &self.msg).await?;
                ensure!(answer == self.msg, "the echo differs from the request");
            }
            Transport::Quinn { .. } => self.echo_on_new_stream().await?,
        }
        Ok(())
    }

    /// Opens a stream, writes the request, finishes, reads the echo to the end.
    async fn echo_on_new_stream(&self) -> Result<()> {
        let answer = match &self.transport {
            Transport::Mesh { a, b_id, .. } => {
                let mut st = a.open_bulk(*b_id).await?;
                st.write_all(&self.raw_request).await?;
                st.close().await?;
                let mut answer = Vec::new();
                (&mut st).take(ECHO_MAX as u64).read_to_end(&mut answer).await?;
                answer
            }
            Transport::Quinn { conn, .. } => {
                let (mut send, mut recv) = conn.open_bi().await?;
                send.write_all(&self.raw_request).await?;
                send.finish()?;
                recv.read_to_end(ECHO_MAX).await?
            }
        };
        ensure!(
            answer.len() == self.raw_request.len(),
            "the echo has {} bytes, not {}",
            answer.len(),
            self.raw_request.len()
        );
        Ok(())
    }

    async fn open_ping_pong(&self) -> Result<PingPong> {
        Ok(match &self.transport {
            Transport::Mesh { a, b_id, .. } => {
                let mut st = a.open_bulk(*b_id).await?;
                st.write_all(&[MARK_PING_PONG]).await?;
                st.flush().await?;
                PingPong::Mesh(st)
            }
            Transport::Quinn { conn, .. } => {
                let (mut send, recv) = conn.open_bi().await?;
                send.write_all(&[MARK_PING_PONG]).await?;
                PingPong::Quinn(send, recv)
            }
        })
    }

    /// Writes `total` bytes on a new stream; returns the seconds until the receiver has read
    /// them all.
    async fn bulk(&mut self, total: u64) -> Result<f64> {
        let chunk = vec![BULK_BYTE; CHUNK];
        let (t, done) = match &mut self.transport {
            Transport::Mesh { a, b_id, done, .. } => {
                let mut st = a.open_bulk(*b_id).await?;
                let t = Instant::now();
                let mut sent = 0u64;
                while sent < total {
                    let n = CHUNK.min((total - sent) as usize);
                    st.write_all(&chunk[..n]).await?;
                    sent += n as u64;
                }
                st.close().await?;
                (t, done)
            }
            Transport::Quinn { conn, done, .. } => {
                let mut send = conn.open_uni().await?;
                let t = Instant::now();
                let mut sent = 0u64;
                while sent < total {
                    let n = CHUNK.min((total - sent) as usize);
                    send.write_all(&chunk[..n]).await?;
                    sent += n as u64;
                }
                send.finish()?;
                (t, done)
            }
        };
        let received = done.recv().await.ok_or_else(|| anyhow!("the bulk receiver vanished"))??;
        let secs = t.elapsed().as_secs_f64();
        ensure!(received == total, "the bulk receiver got {received} of {total} bytes");
        Ok(secs)
    }

    fn summary(self) -> Side {
        Side {
            name: self.kind.name(),
            connect_cold_ms: self.connect_cold_ms,
            connect_ms: self.connect_ms,
            rr: Latency::from_samples(&self.rr).expect("requests > 0"),
            stream_echo: Latency::from_samples(&self.stream_echo),
            ping_pong: Latency::from_samples(&self.ping_pong).expect("requests > 0"),
            bulk_mib_s: self.bulk_bytes as f64 / (1024.0 * 1024.0) / self.bulk_secs,
            bulk_secs: self.bulk_secs,
            bulk_median_mib_s: median(&self.bulk_rounds_mib_s),
            bulk_rounds_mib_s: self.bulk_rounds_mib_s,
        }
    }
}

impl Transport {
    async fn close(&mut self) {
        match self {
            Transport::Mesh { a, b, .. } => {
                a.shutdown().await;
                b.shutdown().await;
            }
            Transport::Quinn { server, client, conn, .. } => {
                conn.close(0u32.into(), b"done");
                client.wait_idle().await;
                server.close(0u32.into(), b"done");
            }
        }
    }
}

/// The receiving side's handling of an inbound stream, chosen by its first byte (see the
/// `MARK_*` constants): echo once, ping-pong `len`-byte messages, or count and discard.
/// Bulk counts are reported on `done`.
async fn serve_stream<S>(mut st: S, len: usize, done: mpsc::UnboundedSender<std::io::Result<u64>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut first = [0u8; 1];
    match st.read(&mut first).await {
        Ok(0) => return,
        Ok(_) => {}
        Err(e) => {
            let _ = done.send(Err(e));
            return;
        }
    }
    // Errors of echo streams surface at the client; only bulk counts are reported.
    let _ = async {
        match first[0] {
            MARK_ECHO_ONCE => {
                let mut all = first.to_vec();
                (&mut st).take(ECHO_MAX as u64).read_to_end(&mut all).await?;
                st.write_all(&all).await?;
                st.close().await
            }
            MARK_PING_PONG => {
                let mut buf = vec![0u8; len];
                loop {
                    match st.read_exact(&mut buf).await {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return st.close().await,
                        Err(e) => return Err(e),
                    }
                    st.write_all(&buf).await?;
                    st.flush().await?;
                }
            }
            _ => {
                let n = drain(&mut st).await.map(|n| n + 1);
                let _ = done.send(n);
                Ok(())
            }
        }
    }
    .await;
}

/// A reader and a writer as one stream (quinn's halves, for [`serve_stream`]).
struct Duplex<R, W>(R, W);

impl<R: AsyncRead + Unpin, W: Unpin> AsyncRead for Duplex<R, W> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<R: Unpin, W: AsyncWrite + Unpin> AsyncWrite for Duplex<R, W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().1).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().1).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().1).poll_close(cx)
    }
}

async fn drain<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<u64> {
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
// The Liquid mesh: two in-process instances with the same cluster key, B bootstrapping to A.

async fn connect_mesh(len: usize) -> Result<Transport> {
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
    tokio::try_join!(wait_authenticated(&mut a_events, b_id), wait_authenticated(&mut b_events, a_id))?;

    // B answers requests with the request itself and serves bulk streams; A's events are
    // drained so its channel never fills.
    let (done_tx, done) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = b_events.recv().await {
            match ev {
                Event::Request { msg, reply, .. } => reply.send(&msg),
                Event::Bulk { stream, .. } => {
                    tokio::spawn(serve_stream(stream, len, done_tx.clone()));
                }
                _ => {}
            }
        }
    });
    tokio::spawn(async move { while a_events.recv().await.is_some() {} });
    Ok(Transport::Mesh { a, b, b_id, done })
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

// ---------------------------------------------------------------------------------------------
// Raw quinn (`support/raw_quinn.rs`).

async fn connect_quinn(cipher: Cipher, len: usize) -> Result<Transport> {
    let raw_quinn::Pair { server, client, conn, server_conn } = raw_quinn::connect(cipher).await?;

    // Server: a task per inbound stream, as a server handling concurrent requests must
    // (libp2p also handles each inbound stream on its own).
    let (done_tx, done) = mpsc::unbounded_channel();
    tokio::spawn({
        let conn = server_conn.clone();
        let done_tx = done_tx.clone();
        async move {
            while let Ok(recv) = conn.accept_uni().await {
                tokio::spawn(serve_stream(Duplex(recv, futures::io::sink()), len, done_tx.clone()));
            }
        }
    });
    tokio::spawn(async move {
        while let Ok((send, recv)) = server_conn.accept_bi().await {
            tokio::spawn(serve_stream(Duplex(recv, send), len, done_tx.clone()));
        }
    });
    Ok(Transport::Quinn { server, client, conn, done })
}

// ---------------------------------------------------------------------------------------------
// Reporting.

/// What one transport achieved.
struct Side {
    name: &'static str,
    /// From the start of the setup to both sides connected (the mesh: authenticated), in ms:
    /// the first connection of its kind in the process, and a second one.
    connect_cold_ms: f64,
    connect_ms: f64,
    rr: Latency,
    /// The mesh only: echo on a fresh `open_bulk` stream.
    stream_echo: Option<Latency>,
    ping_pong: Latency,
    bulk_secs: f64,
    bulk_mib_s: f64,
    /// The median of the rounds' throughputs (steadier than the total on a busy machine).
    bulk_median_mib_s: f64,
    bulk_rounds_mib_s: Vec<f64>,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

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
    Row { metric: "rr latency p50", key: "latency_p50_us", unit: "µs", lower_is_better: true, get: |s| s.rr.p50 },
    Row { metric: "rr latency p99", key: "latency_p99_us", unit: "µs", lower_is_better: true, get: |s| s.rr.p99 },
    Row { metric: "rr latency mean", key: "latency_mean_us", unit: "µs", lower_is_better: true, get: |s| s.rr.mean },
    Row { metric: "rr latency min", key: "latency_min_us", unit: "µs", lower_is_better: true, get: |s| s.rr.min },
    Row {
        metric: "bulk throughput",
        key: "bulk_mib_per_s",
        unit: "MiB/s",
        lower_is_better: false,
        get: |s| s.bulk_mib_s,
    },
    Row {
        metric: "bulk median round",
        key: "bulk_median_round_mib_per_s",
        unit: "MiB/s",
        lower_is_better: false,
        get: |s| s.bulk_median_mib_s,
    },
    Row { metric: "bulk time", key: "bulk_secs", unit: "s", lower_is_better: true, get: |s| s.bulk_secs },
    Row { metric: "connect", key: "connect_ms", unit: "ms", lower_is_better: true, get: |s| s.connect_ms },
    Row {
        metric: "connect, 1st in process",
        key: "connect_cold_ms",
        unit: "ms",
        lower_is_better: true,
        get: |s| s.connect_cold_ms,
    },
];

/// > 1 means the mesh is slower by that factor.
fn ratio(row: &Row, mesh: &Side, quinn: &Side) -> f64 {
    let (m, q) = ((row.get)(mesh), (row.get)(quinn));
    if row.lower_is_better { m / q } else { q / m }
}

struct Report<'a> {
    settings: &'a Settings,
    payload: &'a Payload,
    workers: usize,
    codec_us: f64,
    elapsed: f64,
    load: (String, String),
    mesh: Side,
    quinn: Side,
    quinn_chacha: Side,
}

impl Report<'_> {
    fn print_table(&self) {
        let (s, mesh, quinn, chacha) = (self.settings, &self.mesh, &self.quinn, &self.quinn_chacha);
        println!();
        println!(
            "Liquid mesh vs raw quinn on loopback: {} sequential requests of {} B each way (+{} warm-up), \
             {} MiB bulk in {} KiB chunks, {} interleaved rounds",
            s.requests,
            self.payload.framed_len,
            s.warmup,
            s.bulk_mib,
            CHUNK / 1024,
            s.rounds
        );
        println!(
            "ratio > 1 means the mesh is slower: latency/time ratio = mesh / quinn, throughput ratio = quinn / mesh"
        );
        println!();
        let w = 20;
        println!(
            "{:<30} {:>w$} {:>w$} {:>8} {:>w$} {:>8}",
            "metric", mesh.name, quinn.name, "ratio", chacha.name, "ratio"
        );
        println!("{}", "-".repeat(30 + 3 * (w + 1) + 2 * 9));
        for row in ROWS {
            println!(
                "{:<30} {:>w$.1} {:>w$.1} {:>7.2}x {:>w$.1} {:>7.2}x",
                format!("{} ({})", row.metric, row.unit),
                (row.get)(mesh),
                (row.get)(quinn),
                ratio(row, mesh, quinn),
                (row.get)(chacha),
                ratio(row, mesh, chacha),
            );
        }
        let rounds = |x: &Side| x.bulk_rounds_mib_s.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join("/");
        println!();
        println!("bulk per round, MiB/s:");
        for x in [mesh, quinn, chacha] {
            println!("  {:<22} {}", x.name, rounds(x));
        }
        println!();
        println!("latency breakdown, p50 / p99 in µs (same byte counts each way):");
        let pp = |l: &Latency| format!("{:.1} / {:.1}", l.p50, l.p99);
        println!("{:<44} {:>w$} {:>w$} {:>w$}", "", mesh.name, quinn.name, chacha.name);
        println!(
            "{:<44} {:>w$} {:>w$} {:>w$}",
            "request/response (Mesh::request | new stream)",
            pp(&mesh.rr),
            pp(&quinn.rr),
            pp(&chacha.rr)
        );
        if let Some(se) = &mesh.stream_echo {
            println!(
                "{:<44} {:>w$} {:>w$} {:>w$}",
                "echo on a new open_bulk stream",
                pp(se),
                "(= row above)",
                "(= row above)"
            );
        }
        println!(
            "{:<44} {:>w$} {:>w$} {:>w$}",
            "ping-pong on one open stream",
            pp(&mesh.ping_pong),
            pp(&quinn.ping_pong),
            pp(&chacha.ping_pong)
        );
        println!();
        println!("notes:");
        println!(
            "  - Mesh::request: caller -> mesh task -> libp2p swarm -> connection task -> a new QUIC stream with \
             multistream-select (V1) negotiation -> request-response codec; the answer goes B's swarm -> mesh \
             task -> event channel -> app -> Reply command -> back; CBOR envelope encoded/decoded on both sides"
        );
        println!(
            "  - CBOR encode+decode of the echoed envelope: {:.2} µs per round (x2 per request: both sides)",
            self.codec_us
        );
        println!(
            "  - quinn requests: a new bidirectional stream per request, the server echoes from a task per stream"
        );
        println!(
            "  - connect: setup until both sides are connected (the mesh: and authenticated); the first \
             connection of each kind in the process is timed separately (one-time initialisation)"
        );
        println!(
            "  - libp2p's TLS prefers ChaCha20-Poly1305 (aws-lc-rs); `raw quinn` negotiates AES-256-GCM (ring), \
             `raw quinn (chacha20)` ChaCha20-Poly1305 (ring). libp2p-quic sets 10 MB stream / 15 MB connection \
             receive windows, quinn defaults are 1.25 MB / unlimited"
        );
        println!(
            "  - tokio workers: {}; load average before {} / after {}; total run time {:.1} s",
            self.workers, self.load.0, self.load.1, self.elapsed
        );
    }

    fn print_json(&self) {
        let (s, mesh) = (self.settings, &self.mesh);
        let side = |x: &Side| {
            let rounds: Vec<String> = x.bulk_rounds_mib_s.iter().map(|v| format!("{v:.2}")).collect();
            format!(
                "{{\"name\": \"{}\", \"connect_ms\": {:.3}, \"connect_cold_ms\": {:.3}, \"request_response\": {}, \"stream_echo\": {}, \
                 \"ping_pong\": {}, \"bulk_mib_per_s\": {:.2}, \"bulk_median_round_mib_per_s\": {:.2}, \"bulk_secs\": {:.4}, \
                 \"bulk_rounds_mib_per_s\": [{}]}}",
                x.name,
                x.connect_ms,
                x.connect_cold_ms,
                x.rr.json(),
                x.stream_echo.as_ref().map_or_else(|| "null".to_string(), Latency::json),
                x.ping_pong.json(),
                x.bulk_mib_s,
                x.bulk_median_mib_s,
                x.bulk_secs,
                rounds.join(", ")
            )
        };
        let ratios = |q: &Side| {
            let fields: Vec<String> = ROWS.iter().map(|r| format!("\"{}\": {:.4}", r.key, ratio(r, mesh, q))).collect();
            format!("{{{}}}", fields.join(", "))
        };
        println!("{{");
        println!(
            "  \"settings\": {{\"requests\": {}, \"warmup\": {}, \"request_bytes\": {}, \"bulk_mib\": {}, \
             \"chunk_bytes\": {}, \"rounds\": {}, \"tokio_workers\": {}}},",
            s.requests, s.warmup, self.payload.framed_len, s.bulk_mib, CHUNK, s.rounds, self.workers
        );
        println!(
            "  \"ratio_meaning\": \"> 1 means the mesh is slower: mesh/quinn for latencies and times, quinn/mesh for throughput\","
        );
        println!("  \"mesh\": {},", side(mesh));
        println!("  \"quinn\": {},", side(&self.quinn));
        println!("  \"quinn_chacha20\": {},", side(&self.quinn_chacha));
        println!("  \"ratio_vs_quinn\": {},", ratios(&self.quinn));
        println!("  \"ratio_vs_quinn_chacha20\": {},", ratios(&self.quinn_chacha));
        println!("  \"cbor_round_trip_us\": {:.3},", self.codec_us);
        println!("  \"loadavg_before\": \"{}\",", self.load.0);
        println!("  \"loadavg_after\": \"{}\",", self.load.1);
        println!("  \"elapsed_s\": {:.2}", self.elapsed);
        println!("}}");
    }
}
